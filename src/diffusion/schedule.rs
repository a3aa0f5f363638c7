//! Sampling settings: the official defaults, a pack's recorded schedule, caller overrides, and
//! the shifted time grid they give.

use alloc::vec;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Sampler settings. `steps` counts network evaluations: the official 250-point grid is 249 steps.
///
/// Packs record them as JSON (`ldmae.sampling`); `cfg_channels` is left out there when it is the
/// official `[0, 1, 2]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    #[serde(default = "official_channels", skip_serializing_if = "is_official_channels")]
    pub cfg_channels: Vec<usize>,
}

fn official_channels() -> Vec<usize> {
    vec![0, 1, 2]
}

fn is_official_channels(c: &[usize]) -> bool {
    c == [0, 1, 2]
}

impl Default for SamplerConfig {
    /// The official ImageNet settings: 249 steps, shift 0.3, CFG 10 on channels 0..2 from t = 0.1.
    fn default() -> Self {
        Self { steps: 249, shift: 0.3, cfg_scale: 10.0, cfg_interval_start: 0.1, cfg_channels: official_channels() }
    }
}

/// Settings a caller gives explicitly; `None` keeps the resolved default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplerOverrides {
    /// Euler steps.
    pub steps: Option<usize>,
    /// Time shift.
    pub shift: Option<f32>,
    /// Guidance scale.
    pub cfg_scale: Option<f32>,
    /// Start of the guidance interval.
    pub cfg_interval_start: Option<f32>,
    /// Guided channels.
    pub cfg_channels: Option<Vec<usize>>,
}

/// `n` points from 0 to 1 as `torch.linspace` computes them in f32 (each half stepped
/// from its own end).
fn linspace(n: usize) -> Vec<f32> {
    let step = 1.0f32 / (n - 1) as f32;
    let half = n / 2;
    (0..n).map(|i| if i < half { step * i as f32 } else { 1.0 - step * (n - 1 - i) as f32 }).collect()
}

impl SamplerConfig {
    /// The settings to sample with: the `recorded` schedule of a pack if there is one, else the
    /// official defaults (without guidance for a model that has no null class), then the
    /// caller's `overrides`.
    pub fn resolve(recorded: Option<&SamplerConfig>, has_null_class: bool, overrides: &SamplerOverrides) -> Self {
        let mut c = match recorded {
            Some(s) => s.clone(),
            None if has_null_class => Self::default(),
            None => Self { cfg_scale: 1.0, ..Self::default() },
        };
        let o = overrides.clone();
        c.steps = o.steps.unwrap_or(c.steps);
        c.shift = o.shift.unwrap_or(c.shift);
        c.cfg_scale = o.cfg_scale.unwrap_or(c.cfg_scale);
        c.cfg_interval_start = o.cfg_interval_start.unwrap_or(c.cfg_interval_start);
        c.cfg_channels = o.cfg_channels.unwrap_or(c.cfg_channels);
        c
    }

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

    #[test]
    fn a_recorded_schedule_beats_the_defaults_and_overrides_beat_both() {
        let recorded =
            SamplerConfig { steps: 2, shift: 0.0, cfg_scale: 2.0, cfg_interval_start: 0.0, cfg_channels: vec![0] };
        let none = SamplerOverrides::default();
        assert_eq!(SamplerConfig::resolve(Some(&recorded), true, &none), recorded);
        assert_eq!(SamplerConfig::resolve(None, true, &none), SamplerConfig::default());
        assert_eq!(SamplerConfig::resolve(None, false, &none).cfg_scale, 1.0);
        let o = SamplerOverrides { steps: Some(7), cfg_channels: Some(vec![1, 3]), ..Default::default() };
        let r = SamplerConfig::resolve(Some(&recorded), true, &o);
        assert_eq!((r.steps, r.cfg_scale, r.cfg_channels), (7, 2.0, vec![1, 3]));
    }

    #[test]
    fn pack_json_leaves_out_the_official_channels() {
        let json = serde_json::to_string(&SamplerConfig::default()).unwrap();
        assert!(!json.contains("cfg_channels"), "{json}");
        let back: SamplerConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, SamplerConfig::default());
        let other = SamplerConfig { cfg_channels: vec![0, 1, 2, 3], ..Default::default() };
        assert_eq!(serde_json::from_str::<SamplerConfig>(&serde_json::to_string(&other).unwrap()).unwrap(), other);
    }
}
