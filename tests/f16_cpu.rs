//! The f16 compute path on the CPU (burn-flex computes f16 tensors): parity with the PyTorch
//! reference within f16 noise, and what happens when f16 overflows. (A process holds one flex
//! device, so every test here runs in f16.)
#![cfg(feature = "flex")]

mod common;

use burn::tensor::{DType, Device, Tensor, TensorData};
use common::{Fixture, Tol, f16_overflowing_vmae, repo_path};
use ldmae::device::{self, DeviceChoice};
use ldmae::io::image;
use ldmae::{Error, Pack, Precision, Vmae};

fn f16_cpu() -> Device {
    let selected = device::select(DeviceChoice::Cpu, Some(Precision::F16)).unwrap();
    assert_eq!(selected.precision, Precision::F16);
    selected.device
}

#[test]
fn f16_compute_matches_reference_from_either_pack() {
    let f = Fixture::open(repo_path("tests/fixtures/tiny")).on(f16_cpu());
    for dtype in [Precision::F16, Precision::F32] {
        f.check_models(dtype, dtype, Tol::F16Compute);
    }
}

/// Inputs made as f32 tensors on the f16 device (e.g. from another part of an app) are taken in
/// the models' f16, not mixed with it.
#[test]
fn f32_inputs_on_an_f16_device_are_accepted() {
    let device = f16_cpu();
    let f = Fixture::open(repo_path("tests/fixtures/tiny")).on(device.clone());
    let f32_input = |name: &str| {
        let a = f.npy(name);
        let shape: [usize; 4] = a.shape.clone().try_into().unwrap();
        Tensor::<4>::from_data(TensorData::new(a.data, shape), (&device, DType::F32))
    };
    let vmae = f.vmae(Precision::F16);
    let pixels = vmae.decode(f32_input("dec_latent.npy")).unwrap();
    f.check("dec_pixels", pixels, f.tolerance("dec_pixels", Tol::F16Compute));
    let mean = vmae.encode(f32_input("image.npy")).unwrap().mean;
    f.check("enc_mean", mean, f.tolerance("enc_mean", Tol::F16Compute));
    let dit = f.dit("dit.pt", Precision::F16);
    let t: Vec<f32> = f.manifest["dit_t"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let y: Vec<usize> = f.manifest["dit_y"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let v = dit.forward(f32_input("dit_x.npy"), &t, &y).unwrap();
    f.check("dit_v", v, f.tolerance("dit_v", Tol::F16Compute));
}

#[test]
fn f16_overflow_is_an_error_not_a_nan_image() {
    let vmae = Vmae::load(&Pack::from_bytes(&f16_overflowing_vmae()).unwrap(), &f16_cpu()).unwrap();
    let f = Fixture::open(repo_path("tests/fixtures/tiny")).on(f16_cpu());
    let err = image::tensor_to_images(vmae.decode(f.tensor("dec_latent.npy")).unwrap()).unwrap_err();
    assert_eq!(err, Error::NonFinite { what: "decoded pixels" });
}

#[test]
fn weights_beyond_f16_range_are_refused_on_an_f16_device() {
    let f32_pack = Pack::from_bytes(&f16_overflowing_vmae()).unwrap();
    let big =
        common::edited_pack(&f32_pack, |t| t.iter_mut().for_each(|(_, _, v)| v.iter_mut().for_each(|x| *x *= 4.0)));
    let err = Vmae::load(&Pack::from_bytes(&big).unwrap(), &f16_cpu()).unwrap_err();
    assert!(matches!(&err, Error::F16Range(name) if name.starts_with("decoder_blocks.0.mlp.fc2.")), "{err}");
    assert!(err.to_string().contains("load it onto an f32 device"), "{err}");
}

#[test]
fn precision_is_fixed_per_device_once_chosen() {
    let _ = f16_cpu();
    let err = device::select(DeviceChoice::Cpu, Some(Precision::F32)).unwrap_err();
    assert!(matches!(err, Error::Device(_)), "{err}");
}
