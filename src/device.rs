//! CPU device choice: burn-flex by default, burn-ndarray with `--no-default-features
//! --features ndarray`.

use burn::tensor::Device;

#[cfg(not(any(feature = "flex", feature = "ndarray")))]
compile_error!("enable a CPU backend: the `flex` (default) or `ndarray` feature");

/// The CPU device of the enabled backend (flex when both are enabled), computing in f32.
#[allow(deprecated)] // burn 0.22 deprecates burn-ndarray in favour of flex; we keep it selectable.
pub fn cpu() -> Device {
    #[cfg(feature = "flex")]
    return Device::flex();
    #[cfg(not(feature = "flex"))]
    return Device::ndarray();
}
