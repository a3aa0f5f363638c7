//! The `ldmae` command line, end to end on the tiny fixtures: outputs equal the library's
//! (and so the reference's), bad input exits non-zero with a message and no panic.

mod common;

use common::{Fixture, Tol, max_abs_diff, repo_path};
use ldmae::Precision;
use ldmae::io::image;
use ldmae::io::npy;
use ldmae::weights::VmaeOverrides;
use ldmae::weights::checkpoint::latent_stats;
use ldmae::weights::convert::{convert_dit, convert_vmae};
use std::path::PathBuf;
use std::process::{Command, Output};

struct Env {
    fixture: Fixture,
    /// The test's own directory, removed when the test ends (passed or not).
    dir: common::TempPath,
    vmae: PathBuf,
    dit: PathBuf,
}

fn env(name: &str) -> Env {
    let fixture = Fixture::open(repo_path("tests/fixtures/tiny"));
    let dir = common::TempPath::dir(&format!("cli-{name}"));
    let vmae = dir.join("vmae.pack");
    let dit = dir.join("dit.pack");
    let bytes = convert_vmae(&fixture.path("vmae.pth"), Precision::F32, VmaeOverrides::default()).unwrap();
    std::fs::write(&vmae, bytes).unwrap();
    let bytes = convert_dit(
        &fixture.path("dit.pt"),
        Some(latent_stats(&fixture.path("latents_stats.pt")).unwrap()),
        Precision::F32,
    )
    .unwrap();
    std::fs::write(&dit, bytes).unwrap();
    Env { fixture, dir, vmae, dit }
}

fn ldmae(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ldmae")).args(args).output().expect("runs ldmae")
}

fn ok(args: &[&str]) -> Output {
    let out = ldmae(args);
    assert!(out.status.success(), "ldmae {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn fails(args: &[&str], needle: &str) {
    let out = ldmae(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "ldmae {args:?} should fail: {err}");
    assert!(!err.contains("panicked"), "ldmae {args:?} panicked: {err}");
    assert!(err.contains(needle), "ldmae {args:?}: expected `{needle}` in: {err}");
}

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn encode_decode_and_sample_match_the_reference() {
    let e = env("roundtrip");
    let f = &e.fixture;
    let latent = e.dir.join("latent.npy");
    ok(&["encode", "--vmae", s(&e.vmae), s(&f.path("image.png")), "-o", s(&latent)]);
    let ours = npy::read(&latent).unwrap();
    let theirs = f.npy("enc_mean.npy");
    assert_eq!(ours.shape, theirs.shape);
    assert!(max_abs_diff(&ours.data, &theirs.data) <= f.tolerance("enc_mean", Tol::F32));

    // Posterior sampling is seeded: same seed, same latent; another seed, another latent.
    let sample = |seed: &str, name: &str| {
        let path = e.dir.join(name);
        ok(&["encode", "--vmae", s(&e.vmae), s(&f.path("image.png")), "-o", s(&path), "--sample", "--seed", seed]);
        npy::read(&path).unwrap().data
    };
    let (a, b, c) = (sample("3", "a.npy"), sample("3", "b.npy"), sample("4", "c.npy"));
    assert_eq!(a, b);
    assert_ne!(a, c);

    let png = e.dir.join("dec.png");
    let raw = e.dir.join("dec.npy");
    ok(&["decode", "--vmae", s(&e.vmae), s(&f.path("dec_latent.npy")), "-o", s(&png), "--raw", s(&raw)]);
    let raw = npy::read(&raw).unwrap();
    assert!(max_abs_diff(&raw.data, &f.npy("dec_pixels.npy").data) <= f.tolerance("dec_pixels", Tol::F32));
    let ours = image::read_png(&png).unwrap();
    let theirs = image::read_png(&f.path("dec_image.png")).unwrap();
    assert_eq!((ours.width, ours.height), (theirs.width, theirs.height));
    assert!(ours.pixels.iter().zip(&theirs.pixels).all(|(a, b)| a.abs_diff(*b) <= 1));

    let s_ = &f.manifest["sample"];
    let labels: Vec<String> = s_["labels"].as_array().unwrap().iter().map(|v| v.to_string()).collect();
    let out = e.dir.join("sample.png");
    let z = e.dir.join("z.npy");
    ok(&[
        "sample",
        "--dit",
        s(&e.dit),
        "--vmae",
        s(&e.vmae),
        "--class",
        &labels.join(","),
        "--steps",
        "4",
        "--shift",
        "0.3",
        "--cfg",
        "4",
        "--cfg-interval",
        "0.1",
        "--noise",
        s(&f.path("sample_noise.npy")),
        "-o",
        s(&out),
        "--latent",
        s(&z),
    ]);
    let z = npy::read(&z).unwrap();
    let tol = f.tolerance("sample_cfg4_latent", Tol::F32);
    assert!(max_abs_diff(&z.data, &f.npy("sample_cfg4_latent.npy").data) <= tol);
    let grid = image::read_png(&out).unwrap();
    let side = f.manifest["vmae"]["img_size"].as_u64().unwrap() as usize;
    assert_eq!((grid.width, grid.height), (side * labels.len(), side));

    let info = ok(&["info", s(&e.dit)]);
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("dit") && text.contains("latent std"), "{text}");
    let info = ok(&["info", s(&f.path("vmae.pth"))]);
    assert!(String::from_utf8_lossy(&info.stdout).contains("VMAE"));
}

#[test]
fn bad_input_exits_with_a_message() {
    let e = env("errors");
    let f = &e.fixture;
    let out = e.dir.join("out.npy");
    // A pack of the wrong kind.
    fails(&["encode", "--vmae", s(&e.dit), s(&f.path("image.png")), "-o", s(&out)], "expected a vmae weight pack");
    // A truncated pack.
    let bytes = std::fs::read(&e.vmae).unwrap();
    let cut = e.dir.join("cut.pack");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    fails(&["encode", "--vmae", s(&cut), s(&f.path("image.png")), "-o", s(&out)], "invalid weight pack");
    // An image of the wrong size for the fixed-grid model.
    let big = e.dir.join("big.png");
    image::write_png(&big, &image::RgbImage::new(40, 32, vec![7; 40 * 32 * 3]).unwrap()).unwrap();
    fails(&["encode", "--vmae", s(&e.vmae), s(&big), "-o", s(&out)], "fixed input size");
    // Not a PNG, a missing file, a latent of the wrong shape, noise of the wrong shape.
    fails(&["encode", "--vmae", s(&e.vmae), s(&f.path("dit_v.npy")), "-o", s(&out)], "image error");
    fails(&["decode", "--vmae", s(&e.vmae), s(&e.dir.join("nope.npy")), "-o", s(&out)], "nope.npy");
    fails(&["decode", "--vmae", s(&e.vmae), s(&f.path("image.npy")), "-o", s(&out)], "VMAE latent has shape");
    let sample = ["sample", "--dit", s(&e.dit), "--vmae", s(&e.vmae), "--steps", "1", "-o", s(&out)];
    fails(&[&sample[..], &["--class", "3", "--noise", s(&f.path("sample_noise.npy"))]].concat(), "initial noise");
    fails(&[&sample[..], &["--class", "99"]].concat(), "class label");
    // A DiT checkpoint where a VMAE is expected, and garbage for `info`.
    fails(
        &["decode", "--vmae", s(&f.path("dit.pt")), s(&f.path("dec_latent.npy")), "-o", s(&out)],
        "like a LightningDiT",
    );
    let junk = e.dir.join("junk.bin");
    std::fs::write(&junk, b"\x80\x02garbage that is not a pickle").unwrap();
    fails(&["info", s(&junk)], "checkpoint");
}

#[test]
fn compress_info_and_decompress_any_size() {
    let e = env("ldz");
    let (png, ldz, back) = (e.dir.join("in.png"), e.dir.join("x.ldz"), e.dir.join("back.png"));
    let pixels = (0..45 * 30 * 3).map(|i| ((i * 37) % 251) as u8).collect();
    let img = image::RgbImage::new(45, 30, pixels).unwrap();
    image::write_png(&png, &img).unwrap();
    ok(&["compress", "--vmae", s(&e.vmae), s(&png), "-o", s(&ldz), "--quality", "70"]);
    let info = ok(&["info", s(&ldz)]);
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("45x30 pixels, quality 70") && text.contains("latent 4x4x6"), "{text}");
    ok(&["decompress", "--vmae", s(&e.vmae), s(&ldz), "-o", s(&back)]);
    let codec = ldmae::Codec::new(&ldmae::Pack::from_file(&e.vmae).unwrap(), &ldmae::device::cpu()).unwrap();
    assert_eq!(image::read_png(&back).unwrap(), codec.decompress(&std::fs::read(&ldz).unwrap()).unwrap());

    let bytes = std::fs::read(&ldz).unwrap();
    let cut = e.dir.join("cut.ldz");
    std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    fails(&["decompress", "--vmae", s(&e.vmae), s(&cut), "-o", s(&back)], "invalid .ldz file: checksum mismatch");
    fails(&["info", s(&cut)], "checksum mismatch");
    fails(&["decompress", "--vmae", s(&e.dit), s(&ldz), "-o", s(&back)], "expected a vmae weight pack");
    fails(&["compress", "--vmae", s(&e.vmae), s(&png), "-o", s(&ldz), "--quality", "0"], "quality");
    fails(&["compress", "--vmae", s(&e.vmae), s(&png), "-o", s(&ldz), "--overlap", "4"], "overlap 4");
    fails(&["compress", "--vmae", s(&ldz), s(&png), "-o", s(&ldz)], "is a .ldz compressed image");
}

#[test]
fn a_recorded_sampling_schedule_is_the_default() {
    let e = env("schedule");
    let schedule = ldmae::SamplerConfig {
        steps: 2,
        shift: 0.0,
        cfg_scale: 2.0,
        cfg_interval_start: 0.0,
        cfg_channels: vec![0, 1, 2, 3],
    };
    let scheduled = e.dir.join("scheduled.pack");
    std::fs::write(&scheduled, ldmae::Pack::from_file(&e.dit).unwrap().with_sampling(schedule).unwrap()).unwrap();
    let text = String::from_utf8_lossy(&ok(&["info", s(&scheduled)]).stdout).to_string();
    assert!(text.contains("recommended sampling") && text.contains("steps: 2"), "{text}");
    let (a, b) = (e.dir.join("a.png"), e.dir.join("b.png"));
    let common = ["sample", "--vmae", s(&e.vmae), "--class", "1,2", "--seed", "3"];
    ok(&[&common[..], &["--dit", s(&scheduled), "-o", s(&a)]].concat());
    let explicit = ["--steps", "2", "--shift", "0", "--cfg", "2", "--cfg-interval", "0", "--cfg-channels", "0,1,2,3"];
    ok(&[&common[..], &["--dit", s(&e.dit), "-o", s(&b)], &explicit[..]].concat());
    assert_eq!(image::read_png(&a).unwrap(), image::read_png(&b).unwrap());
    // The official default (guidance on channels 0-2 only, 249 steps) gives another picture.
    let c = e.dir.join("c.png");
    ok(&[&common[..], &["--dit", s(&e.dit), "-o", s(&c), "--steps", "2", "--shift", "0", "--cfg", "2"]].concat());
    assert_ne!(image::read_png(&a).unwrap(), image::read_png(&c).unwrap());
}

#[test]
fn device_and_precision_flags() {
    let e = env("device");
    let latent = e.fixture.path("dec_latent.npy");
    let overflowing = e.dir.join("overflow.pack");
    std::fs::write(&overflowing, common::f16_overflowing_vmae()).unwrap();
    let (vmae, latent) = (s(&overflowing), s(&latent));
    let f32_png = e.dir.join("f32.png");
    let out = ok(&["decode", "--vmae", vmae, latent, "-o", s(&f32_png), "--device", "cpu", "--dtype", "f32"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("device: cpu"));
    let f16_png = e.dir.join("f16.png");
    let args = ["decode", "--vmae", vmae, latent, "-o", s(&f16_png), "--device", "cpu", "--dtype", "f16"];
    fails(&args, "in f16 on the CPU: run again with --dtype f32");

    let out = ldmae(&["decode", "--device", "tpu", "--vmae", vmae, latent, "-o", "x.png"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown device `tpu`"));

    // Without `wgpu` a GPU request is refused; with it, f16 that overflows on the GPU is run
    // again in f32 on the CPU, with a warning, and gives the CPU's picture.
    #[cfg(not(feature = "wgpu"))]
    fails(&["decode", "--device", "wgpu", "--vmae", vmae, latent, "-o", "x.png"], "enable the `wgpu` feature");
    #[cfg(feature = "wgpu")]
    {
        let gpu_png = e.dir.join("gpu.png");
        let out = ok(&["decode", "--vmae", vmae, latent, "-o", s(&gpu_png), "--device", "wgpu", "--dtype", "f16"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("warning: decoded pixels contains NaN") && err.contains("running again on cpu"), "{err}");
        assert_eq!(image::read_png(&gpu_png).unwrap(), image::read_png(&f32_png).unwrap());
    }
}
