//! Seeded standard-normal noise, generated on the host so that a seed gives the same
//! numbers on every device and platform (ChaCha8 stream, Box–Muller in f64, `libm`).
//!
//! These are not PyTorch's numbers: to reproduce a PyTorch run, pass its noise explicitly.

use alloc::vec::Vec;
use burn::tensor::{Device, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// `n` standard-normal values drawn from `seed`.
pub fn standard_normal_values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Uniform in (0, 1] from 53 random bits.
    let mut uniform = || ((rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let radius = libm::sqrt(-2.0 * libm::log(uniform()));
        let angle = 2.0 * core::f64::consts::PI * uniform();
        out.push((radius * libm::cos(angle)) as f32);
        out.push((radius * libm::sin(angle)) as f32);
    }
    out.truncate(n);
    out
}

/// A standard-normal tensor of `shape` drawn from `seed`.
pub fn standard_normal<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
    let n = shape.iter().product();
    Tensor::from_data(TensorData::new(standard_normal_values(n, seed), shape), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_seeded_and_standard() {
        let a = standard_normal_values(100_001, 7);
        assert_eq!(a, standard_normal_values(100_001, 7));
        assert_ne!(a[..10], standard_normal_values(10, 8)[..]);
        let n = a.len() as f64;
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        // Standard errors: 1/sqrt(n) ≈ 0.003 for the mean, sqrt(2/n) ≈ 0.0045 for the variance.
        assert!(mean.abs() < 0.015 && (var - 1.0).abs() < 0.025, "mean {mean} var {var}");
    }
}
