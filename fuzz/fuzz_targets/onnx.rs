//! ONNX DiT graphs from arbitrary bytes (through a file, as the reader takes paths): parse,
//! check the structure, read every official initializer.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("ldmae-fuzz-onnx-{}.onnx", std::process::id()));
    if std::fs::write(&path, data).is_ok()
        && let Ok(sd) = ldmae::weights::dit_state_dict(&path, None)
    {
        let names: Vec<String> = sd.names().map(String::from).collect();
        for name in names {
            let _ = sd.read_f32(&name);
        }
    }
});
