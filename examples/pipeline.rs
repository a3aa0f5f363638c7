//! The whole pipeline in one program: official-format checkpoints → f16 weight packs →
//! encode/decode a PNG → class-conditional sampling with guidance → PNG.
//!
//! ```text
//! cargo run --release --example pipeline                       # the committed tiny checkpoints
//! cargo run --release --example pipeline -- VMAE.pth DIT.pt latents_stats.pt IMAGE.png
//! ```
//! Outputs go to `target/pipeline-demo/`. The committed checkpoints hold random weights (they
//! exist to test parity with PyTorch), so their pictures are noise; with trained checkpoints
//! the same program produces real images.

use ldmae::io::image;
use ldmae::weights::VmaeOverrides;
use ldmae::weights::checkpoint::latent_stats;
use ldmae::weights::convert::{convert_dit, convert_vmae};
use ldmae::{Dit, Generator, Pack, Precision, SamplerOverrides, Vmae, device};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> ldmae::Result<()> {
    ldmae::process::setup();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tiny = root.join("tests/fixtures/tiny");
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [vmae_ckpt, dit_ckpt, stats, input] = match args.as_slice() {
        [] => ["vmae.pth", "dit.pt", "latents_stats.pt", "image.png"].map(|f| tiny.join(f)),
        [a, b, c, d] => [a.clone(), b.clone(), c.clone(), d.clone()],
        _ => {
            eprintln!("usage: pipeline [VMAE.pth DIT.pt latents_stats.pt IMAGE.png]");
            std::process::exit(2);
        }
    };
    let out = root.join("target/pipeline-demo");
    std::fs::create_dir_all(&out).map_err(|e| ldmae::Error::io(&out, e))?;
    let selected = device::select_from_env()?;
    eprintln!("device: {selected}");
    let device = selected.device;

    let start = Instant::now();
    let vmae_pack = convert_vmae(&vmae_ckpt, Precision::F16, VmaeOverrides::default())?;
    let dit_pack = convert_dit(&dit_ckpt, Some(latent_stats(&stats)?), Precision::F16)?;
    println!(
        "converted checkpoints to f16 packs ({} + {} bytes) in {:.2?}",
        vmae_pack.len(),
        dit_pack.len(),
        start.elapsed()
    );
    let vmae = Vmae::load(&Pack::from_bytes(&vmae_pack)?, &device)?;
    let dit = Dit::load(&Pack::from_bytes(&dit_pack)?, &device)?;

    let start = Instant::now();
    let picture = image::read_png(&input)?;
    let latent = vmae.encode(image::images_to_tensor(&[picture], &device)?)?.mean;
    let recon = image::tensor_to_images(vmae.decode(latent)?)?;
    image::write_png(&out.join("roundtrip.png"), &recon[0])?;
    println!("encode + decode {:?} in {:.2?}", input.display(), start.elapsed());

    let generator = Generator::new(dit, vmae)?;
    let c = *generator.dit().config();
    let labels: Vec<usize> = (0..4).map(|i| i * c.num_classes / 4).collect();
    let cfg = if c.null_class { 4.0 } else { 1.0 };
    let config = generator.sampling(&SamplerOverrides { steps: Some(8), cfg_scale: Some(cfg), ..Default::default() });
    let start = Instant::now();
    let samples = generator.generate(&labels, 0, &config, |done, total| eprint!("\rsampling {done}/{total}"))?;
    eprintln!();
    image::write_png(&out.join("samples.png"), &image::horizontal_strip(&samples)?)?;
    println!(
        "sampled classes {labels:?} ({} steps, cfg {}) in {:.2?}",
        config.steps,
        config.cfg_scale,
        start.elapsed()
    );
    println!("wrote {}/roundtrip.png and samples.png", out.display());
    Ok(())
}
