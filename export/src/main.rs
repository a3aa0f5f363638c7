//! `ldmae-export`: trained checkpoints → ldmae weight packs.

use clap::{Parser, Subcommand};
use ldmae::weights::{VmaeOverrides, checkpoint, convert};
use ldmae::{Pack, SamplerConfig, Storage};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "ldmae-export", version, about = "Convert VMAE / LightningDiT checkpoints into ldmae weight packs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert a VMAE checkpoint (`vmaef8d16.pth` as trained, or `{'model': ...}`), ONNX
    /// export (either of `*encoder*.onnx` / `*decoder*.onnx`; the other is found by name) or a
    /// pack (stored anew, e.g. f16 → int8).
    Vmae {
        checkpoint: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Storage: f16, f32, int8 (matrices and convolutions, a scale per output channel) or
        /// int4 (blocks of 32).
        #[arg(long, default_value = "f16")]
        dtype: Storage,
        /// Encoder attention heads (not visible in the weights; default width/16).
        #[arg(long)]
        heads: Option<usize>,
        /// Decoder attention heads (default width/16).
        #[arg(long)]
        decoder_heads: Option<usize>,
    },
    /// Convert a LightningDiT checkpoint (its `ema` weights) or ONNX export, with its
    /// `latents_stats.pt` (optional for an ONNX export that records the statistics), or a
    /// pack (stored anew, keeping its statistics and schedule).
    Dit {
        checkpoint: PathBuf,
        #[arg(long)]
        stats: Option<PathBuf>,
        #[arg(short, long)]
        output: PathBuf,
        /// Storage: f16, f32, int8 (matrices and convolutions, a scale per output channel) or
        /// int4 (blocks of 32).
        #[arg(long, default_value = "f16")]
        dtype: Storage,
        /// Record a recommended sampling schedule (e.g. of a distilled model): Euler steps.
        #[arg(long)]
        steps: Option<usize>,
        /// With `--steps`: time shift (0 = none).
        #[arg(long, default_value_t = 0.0, requires = "steps")]
        shift: f32,
        /// With `--steps`: guidance scale (1 = none).
        #[arg(long, default_value_t = 1.0, requires = "steps")]
        cfg: f32,
        /// With `--steps`: guidance from this time on.
        #[arg(long, default_value_t = 0.0, requires = "steps")]
        cfg_interval: f32,
        /// With `--steps`: guided channels, comma separated (default: the official 0,1,2).
        #[arg(long, value_delimiter = ',', requires = "steps")]
        cfg_channels: Option<Vec<usize>>,
    },
}

fn write(path: &Path, bytes: &[u8]) -> ldmae::Result<()> {
    std::fs::write(path, bytes).map_err(|e| ldmae::Error::io(path, e))
}

fn run(cli: Cli) -> ldmae::Result<()> {
    let (output, bytes) = match cli.command {
        Command::Vmae { checkpoint, output, dtype, heads, decoder_heads } => {
            let o = VmaeOverrides { heads, decoder_heads };
            (output, convert::convert_vmae(&checkpoint, dtype, o)?)
        }
        Command::Dit { checkpoint, stats, output, dtype, steps, shift, cfg, cfg_interval, cfg_channels } => {
            let stats = stats.map(|p| checkpoint::latent_stats(&p)).transpose()?;
            let bytes = convert::convert_dit(&checkpoint, stats, dtype)?;
            let bytes = match steps {
                Some(steps) => {
                    let s = SamplerConfig {
                        steps,
                        shift,
                        cfg_scale: cfg,
                        cfg_interval_start: cfg_interval,
                        cfg_channels: cfg_channels.unwrap_or_else(|| SamplerConfig::default().cfg_channels),
                    };
                    Pack::from_vec(bytes)?.with_sampling(s)?
                }
                None => bytes,
            };
            (output, bytes)
        }
    };
    write(&output, &bytes)?;
    let pack = Pack::from_bytes(&bytes)?;
    eprintln!(
        "wrote {} ({} pack, {} tensors, {} parameters, {})",
        output.display(),
        pack.model().kind(),
        pack.tensor_shapes().count(),
        pack.num_elements(),
        pack.storage()
    );
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
