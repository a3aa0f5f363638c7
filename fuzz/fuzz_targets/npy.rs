//! `.npy` arrays from arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ldmae::io::npy::parse(data);
});
