//! Parity with the PyTorch reference on the committed tiny fixtures (official file formats,
//! random weights): checkpoint → pack → forward, for every public computation.

mod common;

use common::{Fixture, Tol, repo_path};
use ldmae::Pack;
use ldmae::Precision;
use ldmae::weights::VmaeOverrides;
use ldmae::weights::checkpoint;
use ldmae::weights::convert::convert_vmae;

fn tiny() -> Fixture {
    Fixture::open(repo_path("tests/fixtures/tiny"))
}

#[test]
fn vmae_matches_reference() {
    let f = tiny();
    f.check_vmae(&f.vmae(Precision::F32), Tol::F32);
}

#[test]
fn dit_forward_matches_reference() {
    let f = tiny();
    f.check_dit_forward(&f.dit("dit.pt", Precision::F32), &f.dit("dit_celeba.pt", Precision::F32), Tol::F32);
}

#[test]
fn cfg_sampling_matches_reference() {
    let f = tiny();
    f.check_sampling(&f.dit("dit.pt", Precision::F32), &f.vmae(Precision::F32), Tol::F32);
}

/// f16 packs hold weights rounded to 11 significant bits; computed in f32 they stay within
/// 0.5% of the output scale (measured: see the test log) and never produce NaN.
#[test]
fn f16_packs_stay_close() {
    tiny().check_models(Precision::F16, Precision::F16, Tol::F16Weights(5e-3));
}

#[test]
fn bare_and_training_checkpoints_give_the_same_pack() {
    let f = tiny();
    let full = convert_vmae(&f.path("vmae.pth"), Precision::F32, VmaeOverrides::default()).unwrap();
    let bare = convert_vmae(&f.path("vmae_bare.pth"), Precision::F32, VmaeOverrides::default()).unwrap();
    let (full, bare) = (Pack::from_bytes(&full).unwrap(), Pack::from_bytes(&bare).unwrap());
    let names: Vec<_> = full.tensor_shapes().map(|(n, s)| (n.to_string(), s.to_vec())).collect();
    assert_eq!(names, bare.tensor_shapes().map(|(n, s)| (n.to_string(), s.to_vec())).collect::<Vec<_>>());
    for (name, shape) in &names {
        assert_eq!(full.read_f32(name, shape).unwrap(), bare.read_f32(name, shape).unwrap(), "{name}");
    }
    // The training checkpoint carries LPIPS tensors, which the pack leaves out.
    let sd = checkpoint::open(&f.path("vmae.pth"), &["model"]).unwrap();
    assert_eq!(sd.names().filter(|n| n.starts_with("perceptual_loss.")).count(), 33);
}

/// The same parity on the burn-ndarray backend (selectable instead of the default flex).
#[cfg(feature = "ndarray")]
#[test]
#[allow(deprecated)] // burn 0.22 deprecates burn-ndarray in favour of flex; we keep it selectable.
fn ndarray_backend_matches_reference() {
    tiny().on(burn::tensor::Device::ndarray()).check_models(Precision::F32, Precision::F32, Tol::F32);
}
