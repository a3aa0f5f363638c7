//! Parity checks against fixtures made by the PyTorch reference (`export/reference`).
//!
//! Tolerances: the reference records, for every output, how far its float32 result is from
//! the same computation in float64 (`f64_max_abs_diff`). That is the size of float32
//! rounding noise for this output; an independent correct float32 implementation is about as
//! far from float64 in another direction, so we allow 4× that distance (plus 1e-6·scale for
//! outputs whose f64 distance happens to be tiny). Semantic slips move outputs by 1e-1 or
//! more (spec §8), far outside every tolerance used here.

#![allow(dead_code)]

use burn::tensor::{Device, Tensor, TensorData};
use ldmae::diffusion;
use ldmae::io::image::{self, tensor_values};
use ldmae::io::npy;
use ldmae::weights::VmaeOverrides;
use ldmae::weights::checkpoint;
use ldmae::weights::convert;
use ldmae::{Dit, Pack, PackWriter, Precision, SamplerConfig, Storage, Vmae, device};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Which tolerance applies.
#[derive(Clone, Copy)]
pub enum Tol {
    /// f32 weights: 4× the reference's own f32-vs-f64 distance.
    F32,
    /// Rounded (f16) or quantised (int8, int4) weights computed in f32: this fraction of the
    /// output's largest magnitude.
    Weights(f64),
    /// Computed in f16: 4× the distance of the reference's own half-precision run from float64
    /// (`f16_noise.json`, written by `export/gpu/f16_noise.py`).
    F16Compute,
}

pub struct Fixture {
    pub dir: PathBuf,
    pub manifest: Value,
    /// Where the models run (the default CPU device unless changed with [`Fixture::on`]).
    pub device: Device,
}

impl Fixture {
    /// Opens a fixture directory; a missing directory fails the test (it must never skip).
    pub fn open(dir: PathBuf) -> Self {
        let manifest = dir.join("manifest.json");
        let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| {
            panic!(
                "fixture {} is missing ({e}); generate it with `bash export/reference/make_all.sh <preset> {}`",
                manifest.display(),
                dir.display()
            )
        });
        let manifest = serde_json::from_str(&text).expect("manifest.json is valid JSON");
        Self { dir, manifest, device: device::cpu() }
    }

    /// The same fixture, run on `device`.
    pub fn on(self, device: Device) -> Self {
        Self { device, ..self }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn npy(&self, name: &str) -> npy::NpyArray {
        npy::read(&self.path(name)).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn tensor(&self, name: &str) -> Tensor<4> {
        let a = self.npy(name);
        let shape: [usize; 4] = a.shape.clone().try_into().expect("4-D fixture");
        Tensor::from_data(TensorData::new(a.data, shape), &self.device)
    }

    /// The tolerance of output `key` (see the module docs).
    pub fn tolerance(&self, key: &str, tol: Tol) -> f32 {
        let d64 = self.manifest["f64_max_abs_diff"][key].as_f64().unwrap_or_else(|| panic!("no f64 diff for {key}"));
        let scale = self.manifest["max_abs"][key].as_f64().unwrap_or_else(|| panic!("no scale for {key}"));
        match tol {
            Tol::F32 => (4.0 * d64 + 1e-6 * scale) as f32,
            Tol::Weights(rel) => (rel * scale) as f32,
            Tol::F16Compute => {
                let text = std::fs::read_to_string(self.path("f16_noise.json")).expect("f16_noise.json");
                let noise: Value = serde_json::from_str(&text).expect("f16_noise.json is valid JSON");
                let d16 = noise["f16_max_abs_diff"][key].as_f64().unwrap_or_else(|| panic!("no f16 noise for {key}"));
                (4.0 * d16) as f32
            }
        }
    }

    /// Asserts that `actual` matches fixture `key` within `tol`; returns the max difference.
    pub fn check(&self, key: &str, actual: Tensor<4>, tol: f32) -> f32 {
        let expected = self.npy(&format!("{key}.npy"));
        assert_eq!(actual.dims().to_vec(), expected.shape, "{key}: shape");
        let actual = tensor_values(actual, "output").unwrap();
        let diff = max_abs_diff(&actual, &expected.data);
        let mse =
            actual.iter().zip(&expected.data).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / actual.len() as f64;
        eprintln!("{}: {key}: max |diff| {diff:.3e} (tolerance {tol:.3e}), rms {:.3e}", self.dir.display(), mse.sqrt());
        assert!(diff <= tol, "{key}: max |diff| {diff:e} exceeds {tol:e}");
        diff
    }

    pub fn vmae(&self, dtype: impl Into<Storage>) -> Vmae {
        let bytes = convert::convert_vmae(&self.path("vmae.pth"), dtype, VmaeOverrides::default()).unwrap();
        Vmae::load(&Pack::from_bytes(&bytes).unwrap(), &self.device).unwrap()
    }

    pub fn dit(&self, file: &str, dtype: impl Into<Storage>) -> Dit {
        let bytes = convert::convert_dit(
            &self.path(file),
            Some(checkpoint::latent_stats(&self.path("latents_stats.pt")).unwrap()),
            dtype,
        )
        .unwrap();
        Dit::load(&Pack::from_bytes(&bytes).unwrap(), &self.device).unwrap()
    }

    fn usizes(&self, v: &Value) -> Vec<usize> {
        v.as_array().expect("array").iter().map(|x| x.as_u64().expect("integer") as usize).collect()
    }

    /// Encode, posterior sample, decode and uint8 conversion of the VMAE.
    pub fn check_vmae(&self, vmae: &Vmae, tol: Tol) {
        let img = image::read_png(&self.path("image.png")).unwrap();
        let x = image::images_to_tensor(&[img], &self.device).unwrap();
        // Exact in f32; in f16 rounded to 11 significant bits (half an ulp at |x| ≤ 1 is 2^-12).
        let input_tol = if matches!(tol, Tol::F16Compute) { 2f32.powi(-12) } else { 0.0 };
        self.check("image", x.clone(), input_tol);
        let post = vmae.encode(x).unwrap();
        self.check("enc_mean", post.mean.clone(), self.tolerance("enc_mean", tol));
        self.check("enc_logvar", post.logvar.clone(), self.tolerance("enc_logvar", tol));
        let sample = post.sample_with(self.tensor("enc_sample_eps.npy")).unwrap();
        self.check("enc_sample", sample, self.tolerance("enc_sample", tol));
        let pixels = vmae.decode(self.tensor("dec_latent.npy")).unwrap();
        self.check("dec_pixels", pixels.clone(), self.tolerance("dec_pixels", tol));
        if matches!(tol, Tol::F32) {
            let ours = image::tensor_to_images(pixels).unwrap().remove(0);
            let theirs = image::read_png(&self.path("dec_image.png")).unwrap();
            // Truncation flips a level only where 127.5·x + 128 lies within the float error of
            // an integer: at most one level, on a tiny fraction of pixels.
            let off: Vec<i32> = ours.pixels.iter().zip(&theirs.pixels).map(|(&a, &b)| a as i32 - b as i32).collect();
            let flips = off.iter().filter(|d| **d != 0).count();
            assert!(off.iter().all(|d| d.abs() <= 1), "uint8 pixels differ by more than one level");
            assert!(flips * 1000 <= off.len(), "{flips} of {} uint8 values differ", off.len());
        }
    }

    /// Forward passes of the ImageNet-style and CelebA-style DiTs.
    pub fn check_dit_forward(&self, dit: &Dit, celeba: &Dit, tol: Tol) {
        let t: Vec<f32> =
            self.manifest["dit_t"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let y = self.usizes(&self.manifest["dit_y"]);
        let v = dit.forward(self.tensor("dit_x.npy"), &t, &y).unwrap();
        self.check("dit_v", v, self.tolerance("dit_v", tol));
        let v = celeba.forward(self.tensor("dit_x.npy"), &t, &vec![0; t.len()]).unwrap();
        self.check("dit_celeba_v", v, self.tolerance("dit_celeba_v", tol));
    }

    /// Every check of the VMAE and both DiTs, with weights from packs of the given types.
    pub fn check_models(&self, vmae: impl Into<Storage>, dit: impl Into<Storage> + Copy, tol: Tol) {
        let vmae = self.vmae(vmae);
        self.check_vmae(&vmae, tol);
        let celeba = self.dit("dit_celeba.pt", dit);
        let dit = self.dit("dit.pt", dit);
        self.check_dit_forward(&dit, &celeba, tol);
        self.check_sampling(&dit, &vmae, tol);
    }

    /// 4-step sampling at every recorded CFG scale, then decoding.
    pub fn check_sampling(&self, dit: &Dit, vmae: &Vmae, tol: Tol) {
        let s = &self.manifest["sample"];
        let labels = self.usizes(&s["labels"]);
        for cfg in s["cfg_scales"].as_array().unwrap() {
            let cfg = cfg.as_f64().unwrap() as f32;
            let config = SamplerConfig {
                steps: s["steps"].as_u64().unwrap() as usize,
                shift: s["shift"].as_f64().unwrap() as f32,
                cfg_scale: cfg,
                cfg_interval_start: s["cfg_interval_start"].as_f64().unwrap() as f32,
                ..SamplerConfig::default()
            };
            let mut calls = 0;
            let z =
                diffusion::sample(dit, self.tensor("sample_noise.npy"), &labels, &config, |_, _| calls += 1).unwrap();
            assert_eq!(calls, config.steps);
            let key = format!("sample_cfg{}_latent", cfg as u32);
            self.check(&key, z.clone(), self.tolerance(&key, tol));
            let key = format!("sample_cfg{}_pixels", cfg as u32);
            self.check(&key, vmae.decode(z).unwrap(), self.tolerance(&key, tol));
        }
    }
}

/// The full-size fixtures (official sizes, random weights) that the test command generates into
/// `fixtures-full/` or the folder named by `LDMAE_FULL_FIXTURES`.
pub fn full() -> Fixture {
    let dir = std::env::var_os("LDMAE_FULL_FIXTURES").map_or_else(|| repo_path("fixtures-full"), Into::into);
    Fixture::open(dir)
}

/// Rebuilds a pack as f32 with `edit` applied to its (name, shape, values) list.
pub fn edited_pack(pack: &Pack, edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>)) -> Vec<u8> {
    let mut tensors: Vec<_> =
        pack.tensor_shapes().map(|(n, s)| (n.to_string(), s.to_vec(), pack.read_f32(n, s).unwrap())).collect();
    edit(&mut tensors);
    let mut w = PackWriter::new(pack.model().clone(), Precision::F32, "edited");
    for (n, s, v) in tensors {
        w.add(n, &s, &v).unwrap();
    }
    w.to_bytes().unwrap()
}

/// The tiny VMAE with its first decoder block's MLP output scaled so that the residual stream
/// passes f16's 65504 (weights stay within f16's range). The next LayerNorm normalises it, so in
/// f32 the decoder still gives a finite picture: the classic f16 autoencoder overflow.
pub fn f16_overflowing_vmae() -> Vec<u8> {
    let bytes =
        convert::convert_vmae(&repo_path("tests/fixtures/tiny/vmae.pth"), Precision::F32, VmaeOverrides::default())
            .unwrap();
    edited_pack(&Pack::from_bytes(&bytes).unwrap(), |tensors| {
        let fc2 = |n: &str| n.starts_with("decoder_blocks.0.mlp.fc2.");
        let max = tensors.iter().filter(|t| fc2(&t.0)).flat_map(|t| t.2.iter()).fold(0f32, |m, v| m.max(v.abs()));
        let scale = 30000.0 / max;
        for (_, _, v) in tensors.iter_mut().filter(|t| fc2(&t.0)) {
            v.iter_mut().for_each(|x| *x *= scale);
        }
    })
}

/// Asserts two packs hold the same model and bit-identical tensors.
pub fn assert_same_pack(a: &[u8], b: &[u8]) {
    let (a, b) = (Pack::from_bytes(a).unwrap(), Pack::from_bytes(b).unwrap());
    assert_eq!(a.model(), b.model());
    let names: Vec<(String, Vec<usize>)> = a.tensor_shapes().map(|(n, s)| (n.into(), s.to_vec())).collect();
    assert_eq!(names, b.tensor_shapes().map(|(n, s)| (n.into(), s.to_vec())).collect::<Vec<_>>());
    for (name, shape) in &names {
        let (x, y) = (a.read_f32(name, shape).unwrap(), b.read_f32(name, shape).unwrap());
        assert!(x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()), "{name} differs");
    }
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A file or directory under the system's temporary directory, removed when dropped (also when
/// a test fails).
pub struct TempPath(PathBuf);

impl TempPath {
    /// A path unique to this process and `name` (nothing is created).
    pub fn new(name: &str) -> Self {
        Self(std::env::temp_dir().join(format!("ldmae-{}-{name}", std::process::id())))
    }

    /// A fresh, empty directory.
    pub fn dir(name: &str) -> Self {
        let dir = Self::new(name);
        std::fs::create_dir_all(&dir.0).unwrap();
        dir
    }
}

impl std::ops::Deref for TempPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0).or_else(|_| std::fs::remove_file(&self.0));
    }
}
