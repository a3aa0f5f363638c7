//! Bad input gets a typed error naming the problem, never a panic.

mod common;

use burn::tensor::{Tensor, TensorData};
use common::repo_path;
use ldmae::diffusion;
use ldmae::weights::VmaeOverrides;
use ldmae::weights::checkpoint::latent_stats;
use ldmae::weights::convert::{convert_dit, convert_vmae};
use ldmae::{Dit, Error, Precision, SamplerConfig, Storage, Vmae, WeightSource, device};
use ldmae::{ModelSpec, Pack};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    repo_path("tests/fixtures/tiny").join(name)
}

fn stats() -> ldmae::LatentStats {
    latent_stats(&fixture("latents_stats.pt")).unwrap()
}

fn vmae_pack_bytes() -> Vec<u8> {
    convert_vmae(&fixture("vmae.pth"), Precision::F32, VmaeOverrides::default()).unwrap()
}

/// Rebuilds the tiny VMAE pack with `edit` applied to its (name, shape, values) list.
fn edited_vmae_pack(edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>)) -> Vec<u8> {
    common::edited_pack(&Pack::from_bytes(&vmae_pack_bytes()).unwrap(), edit)
}

fn load_vmae(bytes: &[u8]) -> Result<Vmae, Error> {
    Vmae::load(&Pack::from_bytes(bytes)?, &device::cpu())
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ldmae-errors-{}-{name}", std::process::id()))
}

#[test]
fn truncated_or_flipped_packs_are_format_errors() {
    let bytes = vmae_pack_bytes();
    for cut in [0, 3, 9, 10, 64, bytes.len() / 2, bytes.len() - 1] {
        match load_vmae(&bytes[..cut]) {
            Err(Error::PackFormat(_) | Error::PackMetadata { .. }) => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    // Flip bits all over the header and metadata: each must fail cleanly or load.
    for i in 0..256.min(bytes.len()) {
        let mut b = bytes.clone();
        b[i] ^= 0x5a;
        let _ = load_vmae(&b);
    }
    // A header claiming gigantic metadata is refused without allocating it.
    let mut b = bytes.clone();
    b[6..10].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(load_vmae(&b), Err(Error::PackFormat(_))));
}

#[test]
fn damaged_tensor_data_is_detected() {
    let mut bytes = vmae_pack_bytes();
    // The last bytes of the file are tensor data: flip one bit there.
    let last = bytes.len() - 5;
    bytes[last] ^= 0x10;
    match load_vmae(&bytes).unwrap_err() {
        Error::PackFormat(reason) => assert!(reason.contains("checksum mismatch"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn strict_loading_names_the_tensor() {
    let missing = edited_vmae_pack(|t| t.retain(|(n, _, _)| n != "blocks.1.mlp.fc2.bias"));
    assert_eq!(load_vmae(&missing).unwrap_err(), Error::MissingTensor("blocks.1.mlp.fc2.bias".into()));

    let extra = edited_vmae_pack(|t| t.push(("mask_token".into(), vec![1, 1, 32], vec![0.0; 32])));
    assert_eq!(load_vmae(&extra).unwrap_err(), Error::UnexpectedTensors(vec!["mask_token".into()]));

    let reshaped = edited_vmae_pack(|t| {
        let e = t.iter_mut().find(|(n, _, _)| n == "pos_embed").unwrap();
        e.1 = vec![1, e.2.len()];
    });
    match load_vmae(&reshaped).unwrap_err() {
        Error::TensorShape { name, .. } => assert_eq!(name, "pos_embed"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_dtype_version_and_kind_are_refused() {
    // A tensor stored as f16 in a pack that declares f32.
    let pack = Pack::from_bytes(&vmae_pack_bytes()).unwrap();
    let ModelSpec::Vmae(config) = pack.model().clone() else { unreachable!() };
    let mut tensors = Vec::new();
    let mut checksums = std::collections::BTreeMap::new();
    for (n, s) in pack.tensor_shapes() {
        let v = pack.read_f32(n, s).unwrap();
        let (dtype, bytes): (burn_pack::DType, Vec<u8>) = if n == "norm.weight" {
            (burn_pack::DType::F16, v.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect())
        } else {
            (burn_pack::DType::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect())
        };
        checksums.insert(n.to_string(), crc32fast::hash(&bytes));
        tensors.push(burn_pack::Tensor::new(
            n.into(),
            dtype,
            s.to_vec(),
            None,
            burn_pack::Bytes::from_bytes_vec(bytes),
        ));
    }
    let meta = |version: &str, kind: &str| {
        burn_pack::Writer::new(tensors.clone())
            .with_metadata("ldmae.format", version)
            .with_metadata("ldmae.kind", kind)
            .with_metadata("ldmae.dtype", "f32")
            .with_metadata("ldmae.config", &serde_json::to_string(&config).unwrap())
            .with_metadata("ldmae.checksums", &serde_json::to_string(&checksums).unwrap())
            .into_bytes()
            .unwrap()
            .to_vec()
    };
    match load_vmae(&meta("1", "vmae")).unwrap_err() {
        Error::TensorDtype { name, expected, .. } => {
            assert_eq!((name.as_str(), expected.as_str()), ("norm.weight", "f32"))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(load_vmae(&meta("3", "vmae")), Err(Error::PackMetadata { key, .. }) if key == "ldmae.format"));
    assert!(matches!(load_vmae(&meta("1", "unet")), Err(Error::PackMetadata { key, .. }) if key == "ldmae.kind"));
    let dit_err = Dit::load(&Pack::from_bytes(&vmae_pack_bytes()).unwrap(), &device::cpu()).unwrap_err();
    assert_eq!(dit_err, Error::WrongKind { expected: "dit", found: "vmae".into() });
}

/// The tiny VMAE as an int8 pack, rebuilt with `edit` applied to its raw tensors and metadata.
fn edited_int8_pack(
    edit: impl FnOnce(&mut Vec<burn_pack::Tensor>, &mut std::collections::BTreeMap<String, String>),
) -> Vec<u8> {
    let bytes = convert_vmae(&fixture("vmae.pth"), Storage::Int8, VmaeOverrides::default()).unwrap();
    let reader = burn_pack::Reader::from_bytes(burn_pack::Bytes::from_bytes_vec(bytes)).unwrap();
    let mut meta = reader.metadata().clone();
    let mut tensors = reader.into_tensors().unwrap();
    edit(&mut tensors, &mut meta);
    let mut w = burn_pack::Writer::new(tensors);
    for (k, v) in &meta {
        w = w.with_metadata(k, v);
    }
    w.into_bytes().unwrap().to_vec()
}

#[test]
fn quantized_packs_that_lie_are_refused() {
    assert!(load_vmae(&edited_int8_pack(|_, _| {})).is_ok());
    let quantized = |meta: &mut std::collections::BTreeMap<String, String>, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut q: serde_json::Value = serde_json::from_str(&meta["ldmae.quantized"]).unwrap();
        edit(&mut q);
        meta.insert("ldmae.quantized".into(), q.to_string());
    };
    let metadata_error = |bytes: Vec<u8>| match load_vmae(&bytes) {
        Err(Error::PackMetadata { key, reason }) => {
            assert_eq!(key, "ldmae.quantized");
            reason
        }
        other => panic!("{other:?}"),
    };
    // Scales missing; a 1-D tensor declared quantised; the declaration missing.
    let r = metadata_error(edited_int8_pack(|t, _| t.retain(|t| t.name != "blocks.0.mlp.fc1.weight@scales")));
    assert!(r.contains("blocks.0.mlp.fc1.weight"), "{r}");
    metadata_error(edited_int8_pack(|_, m| quantized(m, &|q| q["norm.weight"] = serde_json::json!([32]))));
    metadata_error(edited_int8_pack(|_, m| {
        m.remove("ldmae.quantized");
    }));
    // Declared shapes that do not fit the codes (one row more; sizes that overflow); codes of
    // the wrong type.
    for bad in [None, Some(u64::MAX / 2)] {
        let r = metadata_error(edited_int8_pack(|_, m| {
            quantized(m, &|q| {
                let shape = q["blocks.0.mlp.fc1.weight"].as_array_mut().unwrap();
                shape[0] = serde_json::json!(bad.unwrap_or(shape[0].as_u64().unwrap() + 1));
            })
        }));
        assert!(r.contains("blocks.0.mlp.fc1.weight"), "{r}");
    }
    let err = load_vmae(&edited_int8_pack(|t, _| {
        let fc1 = t.iter_mut().find(|t| t.name == "blocks.0.mlp.fc1.weight").unwrap();
        fc1.dtype = burn_pack::DType::U8;
    }))
    .unwrap_err();
    assert!(
        matches!(&err, Error::TensorDtype { name, expected, .. } if name == "blocks.0.mlp.fc1.weight" && expected.starts_with("i8")),
        "{err}"
    );
    // Damaged scales are caught by their checksum.
    let err = load_vmae(&edited_int8_pack(|t, _| {
        let i = t.iter().position(|t| t.name == "blocks.0.mlp.fc1.weight@scales").unwrap();
        let old = t.remove(i);
        let mut bytes = old.to_bytes().unwrap().to_vec();
        bytes[0] ^= 1;
        t.push(burn_pack::Tensor::new(old.name, old.dtype, old.shape, None, burn_pack::Bytes::from_bytes_vec(bytes)));
    }))
    .unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    // NaN weights cannot be quantised.
    let sd = ldmae::weights::vmae_state_dict(&fixture("vmae.pth"), VmaeOverrides::default()).unwrap();
    let mut w = ldmae::PackWriter::new(sd.spec().unwrap(), Storage::Int4, "test");
    let err = w.add("blocks.0.mlp.fc1.weight", &[2, 2], &[1.0, f32::NAN, 0.0, 0.0]).unwrap_err();
    assert!(matches!(err, Error::InputValue { .. }), "{err}");
    // Finite weights that f16 would make infinite are refused, not stored as infinity: 65519
    // rounds to f16's largest value (kept), 65520 up to infinity; int8 scales are f16 too.
    let spec = sd.spec().unwrap();
    let mut w = ldmae::PackWriter::new(spec.clone(), Storage::F16, "test");
    w.add("pos_embed", &[2], &[65519.0, -1.0]).unwrap();
    let err = w.add("pos_embed", &[2], &[-65520.0, 1.0]).unwrap_err();
    assert!(matches!(err, Error::InputValue { .. }) && err.to_string().contains("f16"), "{err}");
    let mut w = ldmae::PackWriter::new(spec, Storage::Int8, "test");
    w.add("blocks.0.mlp.fc1.weight", &[2, 2], &[1e6, 1.0, 0.0, 0.0]).unwrap();
    let err = w.add("blocks.0.mlp.fc1.weight", &[2, 2], &[1e7, 1.0, 0.0, 0.0]).unwrap_err();
    assert!(err.to_string().contains("scale"), "{err}");
}

#[test]
fn checkpoint_of_the_wrong_kind_or_damaged_is_refused() {
    let err = convert_vmae(&fixture("dit.pt"), Precision::F32, VmaeOverrides::default()).unwrap_err();
    assert!(err.to_string().contains("looks like a LightningDiT"), "{err}");
    let err = convert_dit(&fixture("vmae.pth"), Some(stats()), Precision::F32).unwrap_err();
    assert!(err.to_string().contains("looks like a VMAE"), "{err}");
    // Stats and model swapped.
    assert!(
        convert_dit(&fixture("latents_stats.pt"), Some(stats()), Precision::F32).is_err()
            && latent_stats(&fixture("dit.pt")).is_err()
    );

    let bytes = std::fs::read(fixture("vmae_bare.pth")).unwrap();
    for (i, cut) in [0, 10, bytes.len() / 3, bytes.len() - 30].into_iter().enumerate() {
        let path = temp(&format!("cut{i}.pth"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = convert_vmae(&path, Precision::F32, VmaeOverrides::default()).unwrap_err();
        assert!(matches!(err, Error::Checkpoint { .. }), "cut {cut}: {err:?}");
        std::fs::remove_file(path).ok();
    }
    let missing = convert_vmae(&temp("does-not-exist.pth"), Precision::F32, VmaeOverrides::default()).unwrap_err();
    assert!(matches!(missing, Error::Io { .. }));
}

#[test]
fn wrong_inputs_are_refused() {
    let device = device::cpu();
    let vmae = load_vmae(&vmae_pack_bytes()).unwrap();
    let s = vmae.config().image_size;
    let odd = Tensor::<4>::zeros([1, 3, s + 8, s], &device);
    assert!(matches!(vmae.encode(odd), Err(Error::InputShape { what: "VMAE input image", .. })));
    let c = vmae.config().latent_channels;
    let wrong = Tensor::<4>::zeros([1, c + 1, s / 8, s / 8], &device);
    assert!(matches!(vmae.decode(wrong), Err(Error::InputShape { .. })));

    let dit_pack = |file: &str| {
        let bytes = convert_dit(&fixture(file), Some(stats()), Precision::F32).unwrap();
        Dit::load(&Pack::from_bytes(&bytes).unwrap(), &device).unwrap()
    };
    let dit = dit_pack("dit.pt");
    let cfg = *dit.config();
    let z = Tensor::<4>::zeros([1, cfg.in_channels, cfg.input_size, cfg.input_size], &device);
    let label_err = dit.forward(z.clone(), &[0.5], &[cfg.label_rows()]).unwrap_err();
    assert!(matches!(label_err, Error::InputValue { what: "class label", .. }));
    assert!(matches!(dit.forward(z.clone(), &[f32::NAN], &[0]), Err(Error::NonFinite { .. })));
    let bad_channel = SamplerConfig { steps: 1, cfg_channels: vec![cfg.in_channels], ..SamplerConfig::default() };
    assert!(matches!(diffusion::sample(&dit, z.clone(), &[0], &bad_channel, |_, _| {}), Err(Error::InputValue { .. })));
    let celeba = dit_pack("dit_celeba.pt");
    let guided = SamplerConfig { steps: 1, cfg_scale: 4.0, ..SamplerConfig::default() };
    assert!(matches!(
        diffusion::sample(&celeba, z, &[0], &guided, |_, _| {}),
        Err(Error::InputValue { what: "cfg scale", .. })
    ));
    let nan = Tensor::<4>::from_data(TensorData::new(vec![f32::NAN; 3 * s * s], [1, 3, s, s]), &device);
    let pixels = vmae.decode(vmae.encode(nan).unwrap().mean).unwrap();
    assert!(matches!(ldmae::io::image::tensor_to_images(pixels), Err(Error::NonFinite { .. })));
}

#[cfg(feature = "embedded-models")]
#[test]
fn a_generator_refuses_models_that_do_not_fit_and_noise_of_another_shape() {
    let device = device::cpu();
    let dit = Dit::load(
        &Pack::from_bytes(&convert_dit(&fixture("dit.pt"), Some(stats()), Precision::F32).unwrap()).unwrap(),
        &device,
    )
    .unwrap();
    // The tiny DiT makes 4x4x4 latents; the Fashion-MNIST VMAE decodes 4x8x8.
    let fashion = Vmae::load(&ldmae::weights::embedded::fashion_vmae().unwrap(), &device).unwrap();
    let err = ldmae::Generator::new(dit.clone(), fashion).unwrap_err();
    assert!(matches!(&err, Error::Config(m) if m.contains("4x4x4") && m.contains("4x8x8")), "{err}");
    let generator = ldmae::Generator::new(dit, load_vmae(&vmae_pack_bytes()).unwrap()).unwrap();
    let settings = generator.sampling(&ldmae::SamplerOverrides { steps: Some(1), ..Default::default() });
    let noise = generator.noise(3, 0);
    let err = generator.sample_latents(&[0, 1], noise, &settings, |_, _| {}).unwrap_err();
    assert!(matches!(err, Error::InputShape { what: "initial noise", .. }), "{err}");
    assert_eq!(generator.generate(&[0, 1], 0, &settings, |_, _| {}).unwrap().len(), 2);
}

#[test]
fn pickled_code_is_refused_and_never_run() {
    // Made by export/reference/make_hostile.py: `os.system` / `eval` calls inside checkpoints.
    let marker = std::path::Path::new("/tmp/ldmae-hostile-pickle-ran");
    std::fs::remove_file(marker).ok();
    for file in ["system_call.pth", "eval_legacy.pth", "bare_pickle.pth"] {
        let path = repo_path("tests/fixtures/hostile").join(file);
        let err = convert_vmae(&path, Precision::F32, VmaeOverrides::default()).unwrap_err();
        assert!(matches!(err, Error::Checkpoint { .. }), "{file}: {err}");
        assert!(matches!(convert_dit(&path, Some(stats()), Precision::F32), Err(Error::Checkpoint { .. })), "{file}");
    }
    assert!(!marker.exists(), "a pickled command ran");
}
