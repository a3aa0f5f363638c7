//! PyTorch checkpoints from arbitrary bytes (through a file): open, read every tensor.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("ldmae-fuzz-ckpt-{}.pt", std::process::id()));
    if std::fs::write(&path, data).is_ok()
        && let Ok(sd) = ldmae::weights::checkpoint::open(&path, &["ema", "model"])
    {
        let names: Vec<String> = sd.names().map(String::from).collect();
        for name in names {
            let _ = sd.read_f32(&name);
        }
    }
});
