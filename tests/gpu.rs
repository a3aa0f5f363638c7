//! The wgpu path on a real graphics driver (in CI Mesa's lavapipe: Vulkan on the CPU, with
//! shader-f16): device selection, and the tiny models in f32 and f16 against the PyTorch
//! reference. f32 keeps the CPU tolerance (4× the reference's own f32 noise); f16 allows 4× the
//! reference's own f16 noise (`Tol::F16Compute`).
#![cfg(feature = "wgpu")]

mod common;

use burn::tensor::Device;
use common::{Fixture, Tol, repo_path};
use ldmae::Precision;
use ldmae::device::{self, DeviceChoice};

/// wgpu pinned to Vulkan, in f32.
fn vulkan_f32() -> Device {
    device::select(DeviceChoice::Vulkan, Some(Precision::F32)).unwrap().device
}

/// wgpu on its automatic graphics API (another runtime than the pinned one), in f16.
fn wgpu_f16() -> Device {
    let selected = device::select(DeviceChoice::Wgpu, Some(Precision::F16)).unwrap();
    assert_eq!(selected.precision, Precision::F16);
    selected.device
}

fn tiny() -> Fixture {
    Fixture::open(repo_path("tests/fixtures/tiny"))
}

#[test]
fn wgpu_f32_matches_reference() {
    tiny().on(vulkan_f32()).check_models(Precision::F32, Precision::F32, Tol::F32);
}

#[test]
fn wgpu_f16_matches_reference() {
    // The VMAE from an f16 pack, the DiTs from f32 packs (rounded once at load).
    tiny().on(wgpu_f16()).check_models(Precision::F16, Precision::F32, Tol::F16Compute);
}

/// The official-size VMAE (f8d16, random weights) encodes and decodes once in f16, from an f16
/// pack (the test command writes the fixtures' `f16_noise.json` with `--vmae-only`).
#[test]
fn full_size_vmae_in_f16_matches_reference() {
    let f = common::full().on(wgpu_f16());
    assert_eq!(f.manifest["preset"], "full");
    f.check_vmae(&f.vmae(Precision::F16), Tol::F16Compute);
}

#[test]
fn auto_prefers_a_hardware_gpu_and_says_why() {
    let gpu = device::select(DeviceChoice::Wgpu, None).unwrap();
    let auto = device::select(DeviceChoice::Auto, None).unwrap();
    eprintln!("wgpu: {gpu}\nauto: {auto}");
    if gpu.name.contains("llvmpipe") {
        assert!(auto.cpu, "{auto}");
        assert!(auto.reason.contains("software renderer") && auto.reason.contains("llvmpipe"), "{auto}");
    } else {
        assert_eq!(auto.name, gpu.name);
    }
    assert_eq!(auto.precision, if auto.cpu { Precision::F32 } else { gpu.precision });
    assert!(gpu.reason.contains("shader-f16"), "{gpu}");
}
