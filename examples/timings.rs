//! Times one model on fixed inputs, for `export/bench/compare.py` (which runs onnxruntime and
//! PyTorch on the same weights and inputs and prints the ratio table).
//!
//! ```text
//! timings FIXTURES INPUTS MODEL REPEAT [DEVICE [DTYPE]]
//!     MODEL: vmae_encode | vmae_decode | dit_b1 | dit_b2 | gemm (2048² f32 product, as in the
//!            linear layers)
//!            | vmae_load | dit_load (opening INPUTS/vmae.pack or dit.pack and loading the model)
//!            | packs (writes INPUTS/vmae.pack and INPUTS/dit.pack and exits; then DEVICE is
//!              the storage: f32 (default), f16, int8 or int4)
//!            | startup_decode | startup_sample (the embedded models, loaded inside the first
//!              run: the photo VMAE decoding a 256² image, or the 2-step Fashion-MNIST DiT and
//!              its VMAE making one image; `since_start_ms` is from `main` to the first result)
//!     DEVICE: auto | cpu (default) | wgpu | vulkan | metal;  DTYPE: f16 | f32
//! ```
//! `FIXTURES` holds the full-size `vmae.pth`, `dit.pt` and `latents_stats.pt`; `INPUTS` the
//! `.npy` inputs written by the script. The models load from the packs in `INPUTS` when they are
//! there (so that peak memory is that of an app loading a pack), else from the checkpoints.
//! Prints one JSON line with the device, the time of the first run (on a GPU it includes
//! compiling the shaders) and of each later run in ms; each time includes reading the result
//! back. On the CPU it also names the kernels that ran (`LDMAE_CPU=baseline|avx2|avx512` picks a
//! narrower level than the CPU's widest).

use burn::tensor::{Tensor, TensorData};
use ldmae::device::{self, DeviceChoice};
use ldmae::diffusion::noise;
use ldmae::io::image::tensor_values;
use ldmae::io::npy;
use ldmae::weights::VmaeOverrides;
use ldmae::weights::checkpoint::latent_stats;
use ldmae::weights::convert::{convert_dit, convert_vmae};
use ldmae::weights::embedded;
use ldmae::{Dit, Generator, Pack, Precision, SamplerOverrides, Storage, Vmae};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn input(dir: &Path, name: &str, device: &burn::tensor::Device) -> ldmae::Result<Tensor<4>> {
    let a = npy::read(&dir.join(name))?;
    let shape: [usize; 4] = a.shape.clone().try_into().expect("4-D input");
    Ok(Tensor::from_data(TensorData::new(a.data, shape), device))
}

fn main() -> ldmae::Result<()> {
    let started = Instant::now();
    ldmae::process::setup();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some([fixtures, inputs, model, repeat]), rest) = (args.get(..4), args.get(4..).unwrap_or_default()) else {
        eprintln!("usage: timings FIXTURES INPUTS vmae_encode|vmae_decode|dit_b1|dit_b2 REPEAT [DEVICE [DTYPE]]");
        std::process::exit(2);
    };
    let (fixtures, inputs) = (PathBuf::from(fixtures), PathBuf::from(inputs));
    let vmae_pack = || -> ldmae::Result<Pack> {
        match Pack::from_file(&inputs.join("vmae.pack")) {
            Ok(pack) => Ok(pack),
            Err(_) => {
                Pack::from_bytes(&convert_vmae(&fixtures.join("vmae.pth"), Precision::F32, VmaeOverrides::default())?)
            }
        }
    };
    let dit_pack = || -> ldmae::Result<Pack> {
        match Pack::from_file(&inputs.join("dit.pack")) {
            Ok(pack) => Ok(pack),
            Err(_) => {
                let stats = latent_stats(&fixtures.join("latents_stats.pt"))?;
                Pack::from_bytes(&convert_dit(&fixtures.join("dit.pt"), Some(stats), Precision::F32)?)
            }
        }
    };
    if model == "packs" {
        let storage: Storage = rest.first().map_or(Ok(Storage::F32), |s| s.parse())?;
        let write = |name: &str, bytes: Vec<u8>| {
            std::fs::write(inputs.join(name), bytes).map_err(|e| ldmae::Error::io(&inputs, e))
        };
        write("vmae.pack", convert_vmae(&fixtures.join("vmae.pth"), storage, VmaeOverrides::default())?)?;
        let stats = latent_stats(&fixtures.join("latents_stats.pt"))?;
        return write("dit.pack", convert_dit(&fixtures.join("dit.pt"), Some(stats), storage)?);
    }
    let repeat: usize = repeat.parse().expect("REPEAT is a count");
    let choice = rest.first().map_or(Ok(DeviceChoice::Cpu), |d| d.parse())?;
    let precision = rest.get(1).map(|p| p.parse::<Precision>()).transpose()?;
    let selected = device::select(choice, precision)?;
    let device = selected.device.clone();
    let read = |t: Tensor<4>| tensor_values(t, "output").map(drop);
    let run: Box<dyn Fn() -> ldmae::Result<()>> = if model == "startup_decode" {
        // What an app does on its first photo: open the embedded pack, build the model, decode.
        Box::new(move || {
            let vmae = Vmae::load(&embedded::photo_vmae()?, &device)?;
            let (c, side) = (vmae.config(), vmae.config().grid());
            read(vmae.decode(noise::standard_normal([1, c.latent_channels, side, side], 0, &device))?)
        })
    } else if model == "startup_sample" {
        Box::new(move || {
            let generator = Generator::fashion_demo(&device)?;
            let settings = generator.sampling(&SamplerOverrides::default());
            generator.generate(&[7], 0, &settings, |_, _| {}).map(drop)
        })
    } else if model == "gemm" {
        // The f32 matrix product of the models' linear layers, 2048², as the hardware reference;
        // one value of it is read back (which waits for a GPU), not a 16 MB copy: the product is
        // what is timed, as torch.matmul's is.
        let a = noise::standard_normal([1, 1, 2048, 2048], 1, &device).reshape([2048, 2048]);
        let b = noise::standard_normal([1, 1, 2048, 2048], 2, &device).reshape([2048, 2048]);
        Box::new(move || read(device::matmul(a.clone(), b.clone()).slice([0..1, 0..1]).unsqueeze()))
    } else if model == "vmae_load" {
        Box::new(|| Vmae::load(&Pack::from_file(&inputs.join("vmae.pack"))?, &device).map(drop))
    } else if model == "dit_load" {
        Box::new(|| Dit::load(&Pack::from_file(&inputs.join("dit.pack"))?, &device).map(drop))
    } else if model.starts_with("vmae") {
        let vmae = Vmae::load(&vmae_pack()?, &device)?;
        if model == "vmae_encode" {
            let x = input(&inputs, "image.npy", &device)?;
            Box::new(move || read(vmae.encode_params(x.clone())?))
        } else {
            let z = input(&inputs, "latent.npy", &device)?;
            Box::new(move || read(vmae.decode(z.clone())?))
        }
    } else {
        let dit = Dit::load(&dit_pack()?, &device)?;
        let batch = if model == "dit_b2" { 2 } else { 1 };
        let x = input(&inputs, "dit_x.npy", &device)?.narrow(0, 0, batch);
        Box::new(move || read(dit.forward(x.clone(), &vec![0.5; batch], &vec![207; batch])?))
    };
    let mut times = Vec::with_capacity(repeat + 1);
    let mut since_start = 0.0;
    for _ in 0..=repeat {
        let start = Instant::now();
        run()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        if since_start == 0.0 {
            since_start = started.elapsed().as_secs_f64() * 1e3;
        }
    }
    #[cfg(feature = "flex")]
    let kernels = if selected.cpu { device::cpu_kernels().to_string() } else { "-".into() };
    #[cfg(not(feature = "flex"))]
    let kernels = "ndarray";
    println!(
        "{{\"model\": \"{model}\", \"device\": \"{}\", \"dtype\": \"{}\", \"kernels\": \"{}\", \"since_start_ms\": {since_start}, \"first_ms\": {}, \"times_ms\": {:?}}}",
        selected.name.replace('"', "'"),
        selected.precision,
        kernels.replace('"', "'"),
        times[0],
        &times[1..]
    );
    Ok(())
}
