//! The ONNX route: checkpoint → ONNX (export/reference/onnx_export.py) → pack gives the same
//! tensors as checkpoint → pack, ldmae on it matches onnxruntime on the same graphs, ONNX
//! works at run time, and malformed graphs are refused with clear errors.

mod common;

use burn::tensor::Tensor;
use common::{Fixture, TempPath, Tol, assert_same_pack, repo_path};
use ldmae::weights::checkpoint::latent_stats;
use ldmae::weights::convert::{convert_dit, convert_vmae};
use ldmae::weights::{self, VmaeOverrides};
use ldmae::{Dit, Error, LatentStats, Precision, Vmae};
use onnx_ir::{Message, ModelProto};
use std::path::{Path, PathBuf};

fn tiny() -> Fixture {
    Fixture::open(repo_path("tests/fixtures/tiny"))
}

fn onnx(name: &str) -> PathBuf {
    repo_path("tests/fixtures/tiny/onnx").join(name)
}

fn stats(f: &Fixture) -> LatentStats {
    latent_stats(&f.path("latents_stats.pt")).unwrap()
}

#[test]
fn onnx_and_checkpoint_routes_give_bit_identical_packs() {
    let f = tiny();
    let o = VmaeOverrides::default();
    for graph in ["vmae_encoder.onnx", "vmae_decoder.onnx"] {
        let via_onnx = convert_vmae(&onnx(graph), Precision::F32, o).unwrap();
        assert_same_pack(&via_onnx, &convert_vmae(&f.path("vmae.pth"), Precision::F32, o).unwrap());
    }
    for (graph, ckpt) in [("dit.onnx", "dit.pt"), ("dit_celeba.onnx", "dit_celeba.pt")] {
        let via_onnx = convert_dit(&onnx(graph), Some(stats(&f)), Precision::F32).unwrap();
        assert_same_pack(&via_onnx, &convert_dit(&f.path(ckpt), Some(stats(&f)), Precision::F32).unwrap());
    }
}

#[test]
fn ldmae_on_onnx_weights_matches_onnxruntime() {
    let f = tiny();
    let vmae = Vmae::load(&*weights::open_vmae(&onnx("vmae_encoder.onnx")).unwrap(), &f.device).unwrap();
    let posterior = vmae.encode_params(f.tensor("image.npy")).unwrap();
    // onnxruntime and PyTorch differ by float32 noise only, so the f32 tolerances apply.
    let check = |key: &str, ours: Tensor<4>, tol: &str| {
        let ort = f.npy(&format!("onnx/{key}.npy"));
        let diff = common::max_abs_diff(&ldmae::io::image::tensor_values(ours, "output").unwrap(), &ort.data);
        let tol = f.tolerance(tol, Tol::F32);
        eprintln!("{key}: max |diff| vs onnxruntime {diff:.3e} (tolerance {tol:.3e})");
        assert!(diff <= tol, "{key}: {diff:e} > {tol:e}");
    };
    check("ort_enc_posterior", posterior, "enc_mean");
    check("ort_dec_pixels", vmae.decode(f.tensor("dec_latent.npy")).unwrap(), "dec_pixels");
    let t: Vec<f32> = f.manifest["dit_t"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let y: Vec<usize> = f.manifest["dit_y"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    for (graph, key, labels) in [("dit.onnx", "ort_dit_v", y), ("dit_celeba.onnx", "ort_dit_celeba_v", vec![0; 3])] {
        let weights = weights::open_dit(&onnx(graph), Some(stats(&f))).unwrap();
        let v = Dit::load(&*weights, &f.device).unwrap().forward(f.tensor("dit_x.npy"), &t, &labels).unwrap();
        check(key, v, if graph == "dit.onnx" { "dit_v" } else { "dit_celeba_v" });
    }
}

fn edited_dit(edit: impl FnOnce(&mut ModelProto)) -> TempPath {
    let mut model = ModelProto::parse_from_bytes(&std::fs::read(onnx("dit.onnx")).unwrap()).unwrap();
    edit(&mut model);
    write_temp(&model.write_to_bytes().unwrap())
}

/// `bytes` in a file of its own, removed when the returned path is dropped.
fn write_temp(bytes: &[u8]) -> TempPath {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = TempPath::new(&format!("onnx-{}.onnx", N.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&*path, bytes).unwrap();
    path
}

fn dit_error(path: &Path) -> String {
    let err = convert_dit(path, Some(stats(&tiny())), Precision::F32).unwrap_err();
    assert!(matches!(err, Error::Checkpoint { .. }), "{err:?}");
    err.to_string()
}

#[test]
fn malformed_onnx_is_refused_with_a_clear_error() {
    const W3: &str = "blocks.1.mlp.w3.weight";
    let bytes = std::fs::read(onnx("dit.onnx")).unwrap();
    for cut in [1, 100, bytes.len() / 2, bytes.len() - 3] {
        assert!(dit_error(&write_temp(&bytes[..cut])).contains("not a valid ONNX model"), "cut {cut}");
    }
    let graph = |m: &mut ModelProto| m.graph.as_mut().unwrap().initializer.clone();
    let missing = edited_dit(|m| {
        let kept = graph(m).into_iter().filter(|t| t.name != W3).collect();
        m.graph.as_mut().unwrap().initializer = kept;
    });
    assert!(dit_error(&missing).contains(&format!("lacks tensor `{W3}`")));
    let transposed = edited_dit(|m| {
        let g = m.graph.as_mut().unwrap();
        let t = g.initializer.iter_mut().find(|t| t.name == W3).unwrap();
        t.dims.reverse();
    });
    assert!(dit_error(&transposed).contains(W3));
    let renamed = edited_dit(|m| {
        let g = m.graph.as_mut().unwrap();
        for (i, t) in g.initializer.iter_mut().enumerate() {
            t.name = format!("onnx::MatMul_{i}");
        }
    });
    assert!(dit_error(&renamed).contains("carries an official parameter name"));
    let lying = edited_dit(|m| {
        let g = m.graph.as_mut().unwrap();
        let t = g.initializer.iter_mut().find(|t| t.name == W3).unwrap();
        t.dims[0] = i64::MAX / 2;
    });
    assert!(dit_error(&lying).contains("shape overflows") || dit_error(&lying).contains("values stored"));
    assert!(dit_error(&onnx("bad/wrong_ops.onnx")).contains("no `Conv` operator"));
    // Statistics come from the graph's metadata when it has them, else they must be given.
    let embedded = convert_dit(&onnx("dit.onnx"), None, Precision::F32).unwrap();
    assert_same_pack(&embedded, &convert_dit(&onnx("dit.onnx"), Some(stats(&tiny())), Precision::F32).unwrap());
    let err = convert_dit(&onnx("dit_celeba.onnx"), None, Precision::F32).unwrap_err();
    assert!(err.to_string().contains("no latent statistics"), "{err}");
    // A VMAE graph given as a DiT, and a DiT given as a VMAE.
    assert!(dit_error(&onnx("vmae_encoder.onnx")).contains("`vmae_encoder` graph"));
    let err = convert_vmae(&onnx("dit.onnx"), Precision::F32, VmaeOverrides::default()).unwrap_err();
    assert!(err.to_string().contains("`encoder` and `decoder`"), "{err}");
}

#[test]
fn cli_accepts_onnx_wherever_it_accepts_a_pack() {
    let f = tiny();
    let dir = TempPath::dir("onnx-cli");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ldmae")).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    let (enc, dit, st) = (s(&onnx("vmae_encoder.onnx")), s(&onnx("dit.onnx")), s(&f.path("latents_stats.pt")));
    let latent = dir.join("latent.npy");
    run(&["encode", "--vmae", &enc, &s(&f.path("image.png")), "-o", &s(&latent)]);
    let mean = ldmae::io::npy::read(&latent).unwrap();
    assert!(common::max_abs_diff(&mean.data, &f.npy("enc_mean.npy").data) <= f.tolerance("enc_mean", Tol::F32));
    let z = dir.join("z.npy");
    let noise = s(&f.path("sample_noise.npy"));
    let out = s(&dir.join("s.png"));
    let args = ["sample", "--dit", &dit, "--stats", &st, "--vmae", &enc, "--class", "3,8", "--steps", "4"];
    run(&[&args[..], &["--cfg", "4", "--noise", &noise, "-o", &out, "--latent", &s(&z)]].concat());
    let z = ldmae::io::npy::read(&z).unwrap();
    let tol = f.tolerance("sample_cfg4_latent", Tol::F32);
    assert!(common::max_abs_diff(&z.data, &f.npy("sample_cfg4_latent.npy").data) <= tol);
}
