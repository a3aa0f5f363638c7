//! Compresses a photo of any size to `.ldz` with the embedded photo VMAE, decompresses it, and
//! reports size and PSNR.
//!
//! ```text
//! cargo run --release --example roundtrip -- photo.png [QUALITY]
//! ```
//! Writes `photo.ldz` and `photo.roundtrip.png` next to the input.
//! Runs on a GPU when built with `--features wgpu` and one is found; `LDMAE_DEVICE=cpu|wgpu|…`
//! and `LDMAE_DTYPE=f16|f32` force a choice (see `docs/gpu.md`).

use ldmae::io::image::{RgbImage, read_png, write_png};
use ldmae::weights::embedded;
use ldmae::{Codec, device};
use std::path::PathBuf;
use std::time::Instant;

fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    let se: f64 = a.pixels.iter().zip(&b.pixels).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum();
    10.0 * (255f64.powi(2) / (se / a.pixels.len() as f64)).log10()
}

fn main() -> ldmae::Result<()> {
    ldmae::process::setup();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(input) = args.first().map(PathBuf::from) else {
        eprintln!("usage: roundtrip PHOTO.png [QUALITY 1..100]");
        std::process::exit(2);
    };
    let quality = match args.get(1).map(|q| q.parse::<u8>()) {
        None => ldmae::codec::DEFAULT_QUALITY,
        Some(Ok(q)) => q,
        Some(Err(_)) => {
            eprintln!("QUALITY must be an integer in 1..=100");
            std::process::exit(2);
        }
    };
    let selected = device::select_from_env()?;
    eprintln!("device: {selected}");
    let codec = Codec::new(&embedded::photo_vmae()?, &selected.device)?.with_quality(quality)?;
    let photo = read_png(&input)?;

    let start = Instant::now();
    let bytes = codec.compress(&photo)?;
    let encoded = start.elapsed();
    let start = Instant::now();
    let back = codec.decompress(&bytes)?;
    let decoded = start.elapsed();

    let ldz = input.with_extension("ldz");
    std::fs::write(&ldz, &bytes).map_err(|e| ldmae::Error::io(&ldz, e))?;
    let png = input.with_extension("roundtrip.png");
    write_png(&png, &back)?;
    let pixels = (photo.width * photo.height) as f64;
    println!("{}x{} photo, quality {quality}", photo.width, photo.height);
    println!(
        "compressed to {} bytes ({:.3} bits per pixel) in {encoded:.2?}",
        bytes.len(),
        bytes.len() as f64 * 8.0 / pixels
    );
    println!("decompressed in {decoded:.2?}: PSNR {:.2} dB", psnr(&photo, &back));
    println!("wrote {} and {}", ldz.display(), png.display());
    Ok(())
}
