//! Damaged and hostile weight files: thousands of seeded mutations (truncations, bit flips,
//! huge size fields) of every kind of file the loaders read. Each must end in `Ok` or a typed
//! error — a panic fails the test, an abort or runaway allocation kills it.

mod common;

use common::repo_path;
use ldmae::io::npy;
use ldmae::weights::convert;
use ldmae::weights::{self, VmaeOverrides};
use ldmae::{Precision, Storage};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::path::{Path, PathBuf};

/// One mutation of `bytes`: a cut, a few flipped bytes, or a size-like field set to a huge value.
fn mutate(bytes: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let pick = |rng: &mut ChaCha8Rng, n: usize| (rng.next_u64() % n.max(1) as u64) as usize;
    match rng.next_u32() % 4 {
        0 => b.truncate(pick(rng, bytes.len())),
        1 => {
            for _ in 0..1 + pick(rng, 8) {
                let i = pick(rng, b.len());
                b[i] ^= 1 << (rng.next_u32() % 8);
            }
        }
        2 => {
            // Headers sit near the start: hit the first 512 bytes more often.
            let i = pick(rng, b.len().min(512).saturating_sub(4));
            let v = [u32::MAX, u32::MAX / 2, 1 << 31, 0][pick(rng, 4)];
            b[i..i + 4].copy_from_slice(&v.to_le_bytes());
        }
        _ => {
            let i = pick(rng, b.len());
            let j = (i + 1 + pick(rng, 64)).min(b.len());
            b[i..j].fill(rng.next_u32() as u8);
        }
    }
    b
}

/// Runs `check` (true when the file was accepted) on `rounds` mutations of `source`; some
/// mutations must be refused and, for the larger files, some accepted (flips in weights).
fn fuzz(name: &str, source: &Path, rounds: usize, check: impl Fn(&Path) -> bool) {
    let original = std::fs::read(source).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0x1d_ae);
    let path = std::env::temp_dir().join(format!("ldmae-hostile-{}-{name}", std::process::id()));
    let mut accepted = 0;
    for _ in 0..rounds {
        std::fs::write(&path, mutate(&original, &mut rng)).unwrap();
        accepted += usize::from(check(&path));
    }
    std::fs::remove_file(&path).ok();
    eprintln!("{name}: {accepted} of {rounds} mutations accepted, the rest refused with an error");
    assert!(accepted < rounds, "{name}: no mutation was refused");
}

fn tiny(name: &str) -> PathBuf {
    repo_path("tests/fixtures/tiny").join(name)
}

#[test]
fn damaged_packs() {
    for (storage, rounds) in [(Storage::F16, 4000), (Storage::Int8, 2000), (Storage::Int4, 2000)] {
        let pack = std::env::temp_dir().join(format!("ldmae-hostile-{}-src-{storage}.pack", std::process::id()));
        std::fs::write(&pack, convert::convert_vmae(&tiny("vmae.pth"), storage, VmaeOverrides::default()).unwrap())
            .unwrap();
        fuzz(&format!("{storage} pack"), &pack, rounds, |p| {
            weights::open_vmae(p).and_then(|w| ldmae::Vmae::load(&*w, &ldmae::device::cpu())).is_ok()
        });
        std::fs::remove_file(&pack).ok();
    }
}

#[test]
fn damaged_checkpoints() {
    fuzz("vmae.pth", &tiny("vmae_bare.pth"), 2000, |p| {
        convert::convert_vmae(p, Precision::F32, VmaeOverrides::default()).is_ok()
    });
    fuzz("dit.pt", &tiny("dit_celeba.pt"), 1000, |p| weights::dit_state_dict(p, None).is_ok());
    fuzz("stats.pt", &tiny("latents_stats.pt"), 2000, |p| ldmae::weights::checkpoint::latent_stats(p).is_ok());
}

#[test]
fn damaged_onnx_and_npy() {
    fuzz("dit.onnx", &tiny("onnx/dit_celeba.onnx"), 1000, |p| {
        convert::convert_dit(p, Some(ldmae::LatentStats { mean: vec![0.0; 4], std: vec![1.0; 4] }), Precision::F32)
            .is_ok()
    });
    fuzz("latent.npy", &tiny("dec_latent.npy"), 4000, |p| npy::read(p).is_ok());
}

#[test]
fn damaged_ldz_files() {
    let pack = ldmae::Pack::from_bytes(
        &convert::convert_vmae(&tiny("vmae.pth"), Precision::F32, VmaeOverrides::default()).unwrap(),
    )
    .unwrap();
    let codec = ldmae::Codec::new(&pack, &ldmae::device::cpu()).unwrap();
    let pixels = (0..70 * 40 * 3).map(|i| ((i * 7919) % 256) as u8).collect();
    let bytes = codec.compress(&ldmae::io::image::RgbImage::new(70, 40, pixels).unwrap()).unwrap();
    let seed = std::env::temp_dir().join(format!("ldmae-hostile-{}-src.ldz", std::process::id()));
    std::fs::write(&seed, bytes).unwrap();
    fuzz("ldz", &seed, 2000, |p| codec.decompress(&std::fs::read(p).unwrap()).is_ok());
    // The same with the checksum recomputed, so that mutations reach the header checks, the
    // entropy decoder and the network.
    fuzz("ldz (checksum fixed)", &seed, 2000, |p| {
        let mut b = std::fs::read(p).unwrap();
        if let Some(n) = b.len().checked_sub(4) {
            let crc = crc32fast::hash(&b[..n]);
            b[n..].copy_from_slice(&crc.to_le_bytes());
        }
        codec.decompress(&b).is_ok()
    });
    std::fs::remove_file(&seed).ok();
}
