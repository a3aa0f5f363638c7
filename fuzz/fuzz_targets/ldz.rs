//! `.ldz` files from arbitrary bytes: container parsing and entropy decoding of the latent.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = ldmae::ldz::LdzFile::parse(data) {
        let _ = ldmae::codec::decode_latent(&file);
    }
});
