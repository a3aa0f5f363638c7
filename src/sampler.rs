//! Flow-matching Euler sampler with classifier-free guidance, as the official
//! `inference.py` runs it (spec §4).

use crate::dit::Dit;
use crate::error::{Error, Result};
use crate::pack::SamplingDefaults;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use burn::tensor::{Bool, DType, Tensor, TensorData};

/// Sampler settings. `steps` counts network evaluations: the official 250-point grid is 249 steps.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// Euler steps (grid points − 1).
    pub steps: usize,
    /// Time shift `s` of `t' = s·t / (1 + (s−1)·t)`; applied only when `s > 0`.
    pub shift: f32,
    /// Guidance scale; guidance is on only when it is above 1.
    pub cfg_scale: f32,
    /// No guidance while `t < cfg_interval_start` (0 disables the interval).
    pub cfg_interval_start: f32,
    /// Latent channels that receive guidance. The official code guides channels 0, 1, 2 only
    /// (a quirk inherited from 4-channel SD latents); set all channels to guide everything.
    pub cfg_channels: Vec<usize>,
}

impl Default for SamplerConfig {
    /// The official ImageNet settings: 249 steps, shift 0.3, CFG 10 on channels 0..2 from t = 0.1.
    fn default() -> Self {
        Self { steps: 249, shift: 0.3, cfg_scale: 10.0, cfg_interval_start: 0.1, cfg_channels: vec![0, 1, 2] }
    }
}

impl From<&SamplingDefaults> for SamplerConfig {
    fn from(d: &SamplingDefaults) -> Self {
        Self {
            steps: d.steps,
            shift: d.shift,
            cfg_scale: d.cfg_scale,
            cfg_interval_start: d.cfg_interval_start,
            cfg_channels: d.cfg_channels.clone().unwrap_or_else(|| Self::default().cfg_channels),
        }
    }
}

/// `n` points from 0 to 1 as `torch.linspace` computes them in f32 (each half stepped
/// from its own end).
fn linspace(n: usize) -> Vec<f32> {
    let step = 1.0f32 / (n - 1) as f32;
    let half = n / 2;
    (0..n).map(|i| if i < half { step * i as f32 } else { 1.0 - step * (n - 1 - i) as f32 }).collect()
}

impl SamplerConfig {
    /// The `steps + 1` time points, shifted.
    pub fn time_grid(&self) -> Vec<f32> {
        let grid = linspace(self.steps + 1);
        if self.shift > 0.0 {
            let s = self.shift;
            grid.into_iter().map(|t| s * t / (1.0 + (s - 1.0) * t)).collect()
        } else {
            grid
        }
    }

    fn validate(&self, channels: usize) -> Result<()> {
        let bad = |reason| Err(Error::InputValue { what: "sampler settings", reason });
        if self.steps == 0 {
            return bad("at least one step is needed".into());
        }
        if ![self.shift, self.cfg_scale, self.cfg_interval_start].iter().all(|v| v.is_finite()) {
            return bad("shift, cfg scale and cfg interval must be finite".into());
        }
        if let Some(c) = self.cfg_channels.iter().find(|&&c| c >= channels) {
            return bad(format!("guidance channel {c} does not exist in a {channels}-channel latent"));
        }
        Ok(())
    }
}

/// Samples latents for `labels` starting from noise `z0` `[B, C, h, w]` (t = 0), and returns
/// the de-normalised latent (`x·std + mean`) ready for the VMAE decoder. `progress(done, total)`
/// is called after every network evaluation.
pub fn sample(
    dit: &Dit,
    z0: Tensor<4>,
    labels: &[usize],
    config: &SamplerConfig,
    mut progress: impl FnMut(usize, usize),
) -> Result<Tensor<4>> {
    let c = dit.config();
    config.validate(c.in_channels)?;
    let [b, ch, h, w] = z0.dims();
    if labels.len() != b {
        return Err(Error::InputValue {
            what: "labels",
            reason: format!("{} labels for {b} noise latents", labels.len()),
        });
    }
    let guided = config.cfg_scale > 1.0;
    let null = match (guided, c.null_label()) {
        (true, None) => {
            return Err(Error::InputValue {
                what: "cfg scale",
                reason: "this model has no null class, so guidance (scale > 1) is impossible".into(),
            });
        }
        (_, null) => null.unwrap_or(0),
    };
    let device = z0.device();
    let mask: Vec<bool> = (0..ch).map(|i| config.cfg_channels.contains(&i)).collect();
    let mask = Tensor::<4, Bool>::from_data(TensorData::new(mask, [1, ch, 1, 1]), &device).expand([b, ch, h, w]);
    let doubled: Vec<usize> = labels.iter().copied().chain(core::iter::repeat_n(null, b)).collect();

    // The state is integrated in f32 whatever the device computes in: f16 would lose the small
    // late Euler updates against |x| ~ 1 (its spacing there is 2^-10).
    let dtype = z0.dtype();
    let grid = config.time_grid();
    let mut x = z0.cast(DType::F32);
    for k in 0..config.steps {
        let t = grid[k];
        let xin = x.clone().cast(dtype);
        let v = if guided && t >= config.cfg_interval_start {
            let both = dit.forward(Tensor::cat(vec![xin.clone(), xin], 0), &vec![t; 2 * b], &doubled)?;
            let cond = both.clone().narrow(0, 0, b);
            let uncond = both.narrow(0, b, b);
            let g = uncond.clone() + (cond.clone() - uncond) * config.cfg_scale;
            cond.mask_where(mask.clone(), g)
        } else {
            dit.forward(xin, &vec![t; b], labels)?
        };
        x = x + v.cast(DType::F32) * (grid[k + 1] - grid[k]);
        progress(k + 1, config.steps);
    }
    let stats = dit.stats();
    let f32_on = (&device, DType::F32);
    let std = Tensor::<4>::from_data(TensorData::new(stats.std.clone(), [1, ch, 1, 1]), f32_on);
    let mean = Tensor::<4>::from_data(TensorData::new(stats.mean.clone(), [1, ch, 1, 1]), f32_on);
    Ok((x * std + mean).cast(dtype))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_has_steps_plus_one_points_and_shift_keeps_the_ends() {
        let g = SamplerConfig { steps: 249, ..Default::default() }.time_grid();
        assert_eq!(g.len(), 250);
        assert_eq!((g[0], g[249]), (0.0, 1.0));
        // First step 0.00121 (spec §4.2). The last is 1 − shift(248/249) = 0.013263 (the
        // spec's 0.0263 does not follow from its own formula; the official code uses this one).
        let shifted = |t: f64| 0.3 * t / (1.0 - 0.7 * t);
        assert!((g[1] as f64 - shifted(1.0 / 249.0)).abs() < 1e-8 && (g[1] - 0.00121).abs() < 5e-6);
        assert!(((g[249] - g[248]) as f64 - (1.0 - shifted(248.0 / 249.0))).abs() < 1e-6);
        // 68 of the 249 steps start below t = 0.1.
        assert_eq!(g[..249].iter().filter(|&&t| t < 0.1).count(), 68);
        let plain = SamplerConfig { steps: 4, shift: 0.0, ..Default::default() }.time_grid();
        assert_eq!(plain, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
    }
}
