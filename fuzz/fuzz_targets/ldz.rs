//! `.ldz` files from arbitrary bytes: container parsing and entropy decoding of the latent.
//! Each input is tried as is and with its trailing CRC-32 recomputed, so that mutations get
//! past the checksum into the header checks and the ANS decoder. Files with latents above 2^16
//! values or entropy models above 2^14 levels in all are only parsed, not decoded, to keep
//! executions fast (decoding is the same code at any size).
#![no_main]
use libfuzzer_sys::fuzz_target;

fn run(data: &[u8]) {
    if let Ok(file) = ldmae::codec::ldz::LdzFile::parse(data) {
        let (rows, cols) = file.header.latent_size();
        let levels: i32 = file.header.channels.iter().map(|c| c.hi as i32 - c.lo as i32 + 1).sum();
        if rows * cols * file.header.channels.len() <= 1 << 16 && levels <= 1 << 14 {
            let _ = ldmae::codec::decode_latent(&file);
        }
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
