//! Class-conditional Fashion-MNIST samples from the demo models, one row per class.
//!
//! ```text
//! cargo run --release --example sample                      # embedded 2-step student
//! cargo run --release --example sample -- MODEL [SEED] [PER_CLASS]
//! ```
//! `MODEL` is `2step` (embedded, default) or a DiT pack such as `assets/dit-fashion-1step.pack`,
//! `assets/dit-fashion-4step.pack` or `assets/dit-fashion-teacher.pack`; each pack records the
//! schedule it was made for (steps, shift, guidance), which is what runs. Writes
//! `target/sample-demo/fashion.png`.
//! Runs on a GPU when built with `--features wgpu` and one is found; `LDMAE_DEVICE=cpu|wgpu|…`
//! and `LDMAE_DTYPE=f16|f32` force a choice (see `docs/gpu.md`).

use ldmae::io::image;
use ldmae::{Dit, Generator, Pack, SamplerOverrides, Vmae, device, weights::embedded};
use std::path::{Path, PathBuf};
use std::time::Instant;

const CLASSES: [&str; 10] =
    ["T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"];

fn main() -> ldmae::Result<()> {
    ldmae::process::setup();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = args.first().map(String::as_str).unwrap_or("2step");
    let number = |i: usize, default: u64| args.get(i).map_or(Ok(default), |a| a.parse::<u64>());
    let (Ok(seed), Ok(per_class)) = (number(1, 0), number(2, 10)) else {
        eprintln!("usage: sample [2step | DIT.pack] [SEED] [PER_CLASS]");
        std::process::exit(2);
    };
    let selected = device::select_from_env()?;
    eprintln!("device: {selected}");
    let device = selected.device;
    let generator = match model {
        "2step" => Generator::fashion_demo(&device)?,
        path => Generator::new(
            Dit::load(&Pack::from_file(Path::new(path))?, &device)?,
            Vmae::load(&embedded::fashion_vmae()?, &device)?,
        )?,
    };
    let settings = generator.sampling(&SamplerOverrides::default());
    let classes = generator.dit().config().num_classes;

    let labels: Vec<usize> = (0..classes).flat_map(|k| std::iter::repeat_n(k, per_class as usize)).collect();
    let start = Instant::now();
    let images = generator.generate(&labels, seed, &settings, |_, _| {})?;
    println!(
        "{} samples in {:.2?}: {} Euler steps, shift {}, guidance scale {}",
        labels.len(),
        start.elapsed(),
        settings.steps,
        settings.shift,
        settings.cfg_scale
    );
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/sample-demo");
    std::fs::create_dir_all(&out).map_err(|e| ldmae::Error::io(&out, e))?;
    let path = out.join("fashion.png");
    image::write_png(&path, &image::grid(&images, per_class as usize)?)?;
    println!("wrote {} (rows: {})", path.display(), CLASSES.join(", "));
    Ok(())
}
