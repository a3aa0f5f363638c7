//! `ldmae`: encode, decode and sample with VMAE / LightningDiT weight packs.

use burn::tensor::{Device, Tensor, TensorData};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use ldmae::codec::ldz::LdzFile;
use ldmae::io::{image, npy};
use ldmae::weights::{self, FileKind};
use ldmae::{Codec, DeviceChoice, Dit, Error, Generator, Pack, Precision, Result, SamplerOverrides, Vmae, device};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Clone)]
#[command(name = "ldmae", version, about = "Latent diffusion with masked autoencoders (VMAE + LightningDiT)")]
struct Cli {
    /// Where to run: auto (a CUDA device with the `cuda` feature, else a hardware GPU with the
    /// `wgpu` feature, else the CPU), cpu, wgpu, vulkan, metal or cuda.
    #[arg(long, global = true, default_value = "auto")]
    device: DeviceChoice,
    /// Compute precision, f16 or f32 (default: f16 on a GPU with shader-f16, else f32).
    #[arg(long, global = true)]
    dtype: Option<Precision>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Clone)]
enum Command {
    /// Encode a PNG or JPEG into a latent `.npy` (float32 NCHW): the posterior mean unless `--sample`.
    Encode {
        #[arg(long)]
        vmae: PathBuf,
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Write a posterior sample (mean + std · noise) instead of the mean.
        #[arg(long)]
        sample: bool,
        /// Seed of the posterior noise (with `--sample`).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write the raw posterior parameters (mean channels, then clamped log-variance).
        #[arg(long, conflicts_with = "sample")]
        params: bool,
    },
    /// Decode a latent `.npy` `[B, C, h, w]` to a PNG (B images side by side).
    Decode {
        #[arg(long)]
        vmae: PathBuf,
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Also write the float pixels before the uint8 conversion, `[B, 3, H, W]`.
        #[arg(long)]
        raw: Option<PathBuf>,
    },
    /// Generate images of the given classes; writes one PNG with the images side by side in
    /// class order.
    Sample {
        /// DiT weights: a pack, an ONNX export or a checkpoint (then with `--stats`).
        #[arg(long)]
        dit: PathBuf,
        /// `latents_stats.pt`, needed when `--dit` is a checkpoint or an ONNX export without them.
        #[arg(long)]
        stats: Option<PathBuf>,
        #[arg(long)]
        vmae: PathBuf,
        /// Class labels, comma separated.
        #[arg(long = "class", value_delimiter = ',', required = true)]
        classes: Vec<usize>,
        /// Network evaluations (Euler steps); the official 250-point grid is 249 steps.
        #[arg(long)]
        steps: Option<usize>,
        /// Time shift s of t' = s·t / (1 + (s−1)·t); 0 disables it.
        #[arg(long)]
        shift: Option<f32>,
        /// Classifier-free guidance scale (on when above 1).
        #[arg(long)]
        cfg: Option<f32>,
        /// Guidance only from this time on (0 = always).
        #[arg(long)]
        cfg_interval: Option<f32>,
        /// Guided latent channels, comma separated (official: 0,1,2).
        #[arg(long, value_delimiter = ',')]
        cfg_channels: Option<Vec<usize>>,
        /// Seed of the initial noise.
        #[arg(long, default_value_t = 0, conflicts_with = "noise")]
        seed: u64,
        /// Initial noise `[B, C, h, w]` as `.npy` (e.g. from PyTorch), one per class.
        #[arg(long)]
        noise: Option<PathBuf>,
        #[arg(short, long)]
        output: PathBuf,
        /// Also write the de-normalised latent that is decoded.
        #[arg(long)]
        latent: Option<PathBuf>,
    },
    /// Compress a PNG or JPEG of any size to a `.ldz` file.
    Compress {
        /// VMAE weights (default: the embedded photo VMAE).
        #[arg(long)]
        vmae: Option<PathBuf>,
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// 1 (smallest file) … 100 (best picture).
        #[arg(long, default_value_t = ldmae::codec::DEFAULT_QUALITY)]
        quality: u8,
        /// Overlap of neighbouring tiles in latent cells (default: a quarter tile).
        #[arg(long)]
        overlap: Option<usize>,
    },
    /// Decompress a `.ldz` file to a PNG, with the VMAE weights it was compressed with.
    Decompress {
        /// VMAE weights (default: the embedded photo VMAE).
        #[arg(long)]
        vmae: Option<PathBuf>,
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Describe a weight pack, a `.npy` file, a `.ldz` file, a PyTorch checkpoint or an ONNX graph.
    Info { file: PathBuf },
}

fn load_vmae(path: &Path, device: &Device) -> Result<Vmae> {
    Vmae::load(&*weights::open_vmae(path)?, device)
}

/// The codec's VMAE: the given weights, else the embedded photo VMAE.
fn open_codec(path: Option<&Path>, device: &Device) -> Result<Codec> {
    match path {
        Some(p) => Codec::new(&*weights::open_vmae(p)?, device),
        #[cfg(feature = "embedded-models")]
        None => Codec::new(&weights::embedded::photo_vmae()?, device),
        #[cfg(not(feature = "embedded-models"))]
        None => Err(Error::InputValue {
            what: "arguments",
            reason: "--vmae is required (built without embedded models)".into(),
        }),
    }
}

/// `latents_stats.pt` (needs the `checkpoint` feature).
fn latent_stats(path: &Path) -> Result<ldmae::LatentStats> {
    #[cfg(feature = "checkpoint")]
    return weights::checkpoint::latent_stats(path);
    #[cfg(not(feature = "checkpoint"))]
    Err(Error::InputValue {
        what: "--stats",
        reason: format!("{}: reading checkpoints needs the `checkpoint` feature", path.display()),
    })
}

fn npy_tensor(path: &Path, device: &Device, what: &'static str) -> Result<Tensor<4>> {
    let a = npy::read(path)?;
    let shape: [usize; 4] = a.shape.clone().try_into().map_err(|_| Error::InputShape {
        what,
        expected: "a 4-D NCHW array".into(),
        found: a.shape.clone(),
    })?;
    if a.data.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite { what });
    }
    Ok(Tensor::from_data(TensorData::new(a.data, shape), device))
}

fn write_npy(path: &Path, t: Tensor<4>, what: &'static str) -> Result<()> {
    let dims = t.dims();
    npy::write(path, &dims, &image::tensor_values(t, what)?)
}

fn write_images(path: &Path, pixels: Tensor<4>) -> Result<()> {
    let images = image::tensor_to_images(pixels)?;
    image::write_png(path, &image::horizontal_strip(&images)?)
}

fn progress_bar(total: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    if let Ok(style) = ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} [{elapsed} < {eta}]") {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar
}

fn tick(bar: &ProgressBar, done: usize, total: usize) {
    bar.set_length(total as u64);
    bar.set_position(done as u64);
}

/// Runs a model command on the chosen device (in f32 on the CPU again if f16 fails on a GPU).
fn run_on_device(cli: Cli) -> Result<()> {
    let selected = device::select(cli.device, cli.dtype)?;
    eprintln!("device: {selected}");
    #[cfg(feature = "flex")]
    if selected.cpu {
        eprintln!("cpu: {}", device::cpu_kernels());
    }
    device::run_with_f32_fallback(
        &selected,
        |device| run(cli.command.clone(), device),
        |warning| eprintln!("warning: {warning}"),
    )
}

fn run(command: Command, device: &Device) -> Result<()> {
    let device = device.clone();
    match command {
        Command::Encode { vmae, input, output, sample, seed, params } => {
            let vmae = load_vmae(&vmae, &device)?;
            let img = image::read_image(&input)?;
            let x = image::images_to_tensor(&[img], &device)?;
            let latent = if params {
                let p = ldmae::Posterior::from_params(vmae.encode_params(x)?);
                Tensor::cat(vec![p.mean, p.logvar], 1)
            } else if sample {
                vmae.encode(x)?.sample(seed)?
            } else {
                vmae.encode(x)?.mean
            };
            write_npy(&output, latent, "latent")
        }
        Command::Decode { vmae, input, output, raw } => {
            let vmae = load_vmae(&vmae, &device)?;
            let pixels = vmae.decode(npy_tensor(&input, &device, "latent")?)?;
            if let Some(raw) = raw {
                write_npy(&raw, pixels.clone(), "decoded pixels")?;
            }
            write_images(&output, pixels)
        }
        Command::Sample {
            dit,
            stats,
            vmae,
            classes,
            steps,
            shift,
            cfg,
            cfg_interval,
            cfg_channels,
            seed,
            noise: noise_path,
            output,
            latent,
        } => {
            let stats = stats.map(|p| latent_stats(&p)).transpose()?;
            let dit = Dit::load(&*weights::open_dit(&dit, stats)?, &device)?;
            let generator = Generator::new(dit, load_vmae(&vmae, &device)?)?;
            let overrides =
                SamplerOverrides { steps, shift, cfg_scale: cfg, cfg_interval_start: cfg_interval, cfg_channels };
            let settings = generator.sampling(&overrides);
            let z0 = match noise_path {
                Some(p) => npy_tensor(&p, &device, "initial noise")?,
                None => generator.noise(classes.len(), seed),
            };
            let bar = progress_bar(settings.steps, "sampling");
            let z = generator.sample_latents(&classes, z0, &settings, |done, _| bar.set_position(done as u64))?;
            bar.finish_and_clear();
            if let Some(path) = latent {
                write_npy(&path, z.clone(), "sampled latent")?;
            }
            write_images(&output, generator.decode(z)?)
        }
        Command::Compress { vmae, input, output, quality, overlap } => {
            let mut codec = open_codec(vmae.as_deref(), &device)?.with_quality(quality)?;
            codec.tiles.overlap = overlap.unwrap_or(codec.tiles.overlap);
            let img = image::read_image(&input)?;
            let bar = progress_bar(0, "compressing");
            let bytes = codec.compress_with(&img, |done, total| tick(&bar, done, total))?;
            bar.finish_and_clear();
            std::fs::write(&output, &bytes).map_err(|e| Error::io(&output, e))?;
            let bpp = bytes.len() as f64 * 8.0 / (img.width * img.height) as f64;
            eprintln!("{}x{} → {} bytes ({bpp:.3} bits per pixel)", img.width, img.height, bytes.len());
            Ok(())
        }
        Command::Decompress { vmae, input, output } => {
            let codec = open_codec(vmae.as_deref(), &device)?;
            let bytes = std::fs::read(&input).map_err(|e| Error::io(&input, e))?;
            let bar = progress_bar(0, "decompressing");
            let img = codec.decompress_with(&bytes, |done, total| tick(&bar, done, total))?;
            bar.finish_and_clear();
            image::write_png(&output, &img)
        }
        Command::Info { file } => info(&file),
    }
}

fn info(path: &Path) -> Result<()> {
    match weights::file_kind(path)? {
        FileKind::Npy => println!("{}", npy::read(path)?),
        FileKind::Pack => println!("{}", Pack::from_file(path)?),
        FileKind::Ldz => {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            println!("{}", LdzFile::parse(&bytes)?);
        }
        FileKind::Torch | FileKind::Onnx => println!("{}", weights::model_state_dict(path)?.summary()?),
    }
    Ok(())
}

fn main() -> ExitCode {
    ldmae::process::setup();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Info { file } => info(file),
        _ => run_on_device(cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
