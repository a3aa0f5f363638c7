//! Weight packs from arbitrary bytes: parse, then read every tensor.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(pack) = ldmae::Pack::from_bytes(data) {
        let tensors: Vec<(String, Vec<usize>)> = pack.tensor_shapes().map(|(n, s)| (n.into(), s.to_vec())).collect();
        for (name, shape) in tensors {
            let _ = pack.read_f32(&name, &shape);
        }
    }
});
