//! Flow-matching Euler sampler with classifier-free guidance, as the official `inference.py`
//! runs it: from noise at t = 0 to data at t = 1 over the shifted grid, guidance on the chosen
//! channels inside the interval, the state integrated in f32.

use super::{LatentStats, SamplerConfig};
use crate::error::{Error, Result};
use crate::progress::Progress;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use burn::tensor::{Bool, DType, Tensor, TensorData};

/// A network that predicts the flow velocity of normalised latents (the DiT).
pub trait VelocityModel {
    /// Velocity `[B, C, h, w]` of latents `x` at flow times `t` with class labels `y`.
    fn velocity(&self, x: Tensor<4>, t: &[f32], y: &[usize]) -> Result<Tensor<4>>;
    /// The label of the unconditional (null) class, if the model has one.
    fn null_label(&self) -> Option<usize>;
    /// The statistics that de-normalise the sampled latents.
    fn latent_stats(&self) -> &LatentStats;
}

impl SamplerConfig {
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
/// the de-normalised latent (`x·std + mean`) ready for the VMAE decoder. `progress` hears
/// `(done, total)` after every Euler step and may cancel.
pub fn sample(
    model: &impl VelocityModel,
    z0: Tensor<4>,
    labels: &[usize],
    config: &SamplerConfig,
    mut progress: impl Progress,
) -> Result<Tensor<4>> {
    let [b, ch, h, w] = z0.dims();
    config.validate(ch)?;
    if labels.len() != b {
        return Err(Error::InputValue {
            what: "labels",
            reason: format!("{} labels for {b} noise latents", labels.len()),
        });
    }
    let guided = config.cfg_scale > 1.0;
    let null = match (guided, model.null_label()) {
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
            let both = model.velocity(Tensor::cat(vec![xin.clone(), xin], 0), &vec![t; 2 * b], &doubled)?;
            let cond = both.clone().narrow(0, 0, b);
            let uncond = both.narrow(0, b, b);
            let g = uncond.clone() + (cond.clone() - uncond) * config.cfg_scale;
            cond.mask_where(mask.clone(), g)
        } else {
            model.velocity(xin, &vec![t; b], labels)?
        };
        x = x + v.cast(DType::F32) * (grid[k + 1] - grid[k]);
        progress.report(k + 1, config.steps)?;
    }
    let stats = model.latent_stats();
    let f32_on = (&device, DType::F32);
    let std = Tensor::<4>::from_data(TensorData::new(stats.std.clone(), [1, ch, 1, 1]), f32_on);
    let mean = Tensor::<4>::from_data(TensorData::new(stats.mean.clone(), [1, ch, 1, 1]), f32_on);
    Ok((x * std + mean).cast(dtype))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Cancellable;
    use core::cell::Cell;

    /// `v = a − x` (towards a constant `a`), counting its calls; label 9 is the null class and
    /// pulls towards `−a` instead.
    struct Toward {
        a: f32,
        stats: LatentStats,
        calls: Cell<usize>,
    }

    impl VelocityModel for Toward {
        fn velocity(&self, x: Tensor<4>, _t: &[f32], y: &[usize]) -> Result<Tensor<4>> {
            self.calls.set(self.calls.get() + 1);
            let [b, c, h, w] = x.dims();
            let target: Vec<f32> = y
                .iter()
                .flat_map(|&l| core::iter::repeat_n(if l == 9 { -self.a } else { self.a }, c * h * w))
                .collect();
            Ok(Tensor::<4>::from_data(TensorData::new(target, [b, c, h, w]), &x.device()) - x)
        }
        fn null_label(&self) -> Option<usize> {
            Some(9)
        }
        fn latent_stats(&self) -> &LatentStats {
            &self.stats
        }
    }

    fn values(t: Tensor<4>) -> Vec<f32> {
        crate::io::image::tensor_values(t, "sampled latent").unwrap()
    }

    #[test]
    fn euler_steps_guidance_and_denormalisation_follow_the_formulas() {
        let device = crate::device::cpu();
        let stats = LatentStats { mean: vec![1.0, 0.0], std: vec![2.0, 1.0] };
        let model = Toward { a: 0.5, stats, calls: Cell::new(0) };
        let z0 = Tensor::<4>::zeros([1, 2, 1, 1], &device);
        // Unguided, no shift, 4 steps of dt = 0.25 on x' = a − x: x_k = a(1 − 0.75^k).
        let plain =
            SamplerConfig { steps: 4, shift: 0.0, cfg_scale: 1.0, cfg_interval_start: 0.0, cfg_channels: vec![0] };
        let x = values(sample(&model, z0.clone(), &[0], &plain, |_, _| {}).unwrap());
        let expect = 0.5 * (1.0 - 0.75f32.powi(4));
        assert!((x[0] - (expect * 2.0 + 1.0)).abs() < 1e-6 && (x[1] - expect).abs() < 1e-6, "{x:?}");
        assert_eq!(model.calls.get(), 4);
        // Guided on channel 0 only with scale 3: v = u + 3(c − u) = (−a − x) + 3·2a = 5a − x, so
        // channel 0 moves towards 5a; channel 1 keeps the conditional velocity, towards a.
        let guided = SamplerConfig { cfg_scale: 3.0, ..plain.clone() };
        let x = values(sample(&model, z0.clone(), &[0], &guided, |_, _| {}).unwrap());
        let towards = |target: f32| target * (1.0 - 0.75f32.powi(4));
        assert!((x[0] - (towards(2.5) * 2.0 + 1.0)).abs() < 1e-5 && (x[1] - towards(0.5)).abs() < 1e-6, "{x:?}");
        // A progress callback that says stop ends the sampling after that step.
        model.calls.set(0);
        let stop = Cancellable(|done, _| done < 2);
        assert_eq!(sample(&model, z0, &[0], &plain, stop).unwrap_err(), Error::Cancelled);
        assert_eq!(model.calls.get(), 2);
    }
}
