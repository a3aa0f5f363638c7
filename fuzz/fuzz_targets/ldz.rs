//! `.ldz` files from arbitrary bytes: container parsing and entropy decoding of the latent.
//! Each input is tried as is and with its trailing CRC-32 recomputed, so that mutations get
//! past the checksum into the header checks and the ANS decoder.
#![no_main]
use libfuzzer_sys::fuzz_target;

fn run(data: &[u8]) {
    if let Ok(file) = ldmae::ldz::LdzFile::parse(data) {
        let _ = ldmae::codec::decode_latent(&file);
    }
}

fuzz_target!(|data: &[u8]| {
    run(data);
    if let Some(n) = data.len().checked_sub(4) {
        let mut fixed = data.to_vec();
        let crc = crc32fast::hash(&fixed[..n]);
        fixed[n..].copy_from_slice(&crc.to_le_bytes());
        run(&fixed);
    }
});
