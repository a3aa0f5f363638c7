//! Criterion benchmarks at the official sizes (random weights from the full-size fixtures that
//! `scripts/test.sh` generates; set `LDMAE_FULL_FIXTURES` to their folder): VMAE f8d16 encode
//! and decode of one 256² image, LightningDiT-B/1 forward at batch 1 and 2, a 4-step guided
//! sample, and loading f32 / f16 / int8 packs. Run with `cargo bench --bench models`; on a GPU with
//! `LDMAE_DEVICE=wgpu LDMAE_DTYPE=f16 cargo bench --bench models --features wgpu` (the device is
//! chosen by `device::select_from_env`, default `auto`: see docs/gpu.md).

use burn::tensor::Tensor;
use criterion::{Criterion, criterion_group, criterion_main};
use ldmae::diffusion;
use ldmae::diffusion::noise;
use ldmae::io::image::tensor_values;
use ldmae::weights::VmaeOverrides;
use ldmae::weights::checkpoint::latent_stats;
use ldmae::weights::convert::{convert_dit, convert_vmae};
use ldmae::{Dit, Pack, Precision, SamplerConfig, Storage, Vmae, device};
use std::path::PathBuf;
use std::time::Duration;

fn fixtures() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var("LDMAE_FULL_FIXTURES").unwrap_or_else(|_| "fixtures-full".into()));
    if dir.join("vmae.pth").exists() {
        Some(dir)
    } else {
        eprintln!("{}: no full-size fixtures (run scripts/test.sh first); nothing to benchmark", dir.display());
        None
    }
}

/// Reads a result back to the host so that the timing includes the computation.
fn sync(t: Tensor<4>) -> f32 {
    tensor_values(t, "benchmark output").map(|v| v[0]).unwrap_or(f32::NAN)
}

fn benches(c: &mut Criterion) {
    ldmae::process::setup();
    let Some(dir) = fixtures() else { return };
    let selected = device::select_from_env().unwrap();
    eprintln!("device: {selected}");
    let device = selected.device;
    let vmae_f32 = convert_vmae(&dir.join("vmae.pth"), Precision::F32, VmaeOverrides::default()).unwrap();
    let vmae_f16 = convert_vmae(&dir.join("vmae.pth"), Precision::F16, VmaeOverrides::default()).unwrap();
    let vmae_int8 = convert_vmae(&dir.join("vmae.pth"), Storage::Int8, VmaeOverrides::default()).unwrap();
    let stats = latent_stats(&dir.join("latents_stats.pt")).unwrap();
    let dit_pack = convert_dit(&dir.join("dit.pt"), Some(stats), Precision::F32).unwrap();
    let vmae = Vmae::load(&Pack::from_bytes(&vmae_f32).unwrap(), &device).unwrap();
    let dit = Dit::load(&Pack::from_bytes(&dit_pack).unwrap(), &device).unwrap();
    let (s, g, ch) = (vmae.config().image_size, vmae.config().grid(), vmae.config().latent_channels);

    let mut group = c.benchmark_group(format!("official {} {}", selected.name, selected.precision));
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    let image = noise::standard_normal([1, 3, s, s], 1, &device).clamp(-1.0, 1.0);
    group.bench_function("vmae_encode_256", |b| b.iter(|| sync(vmae.encode(image.clone()).unwrap().mean)));
    let latent = noise::standard_normal([1, ch, g, g], 2, &device);
    group.bench_function("vmae_decode_256", |b| b.iter(|| sync(vmae.decode(latent.clone()).unwrap())));
    for batch in [1, 2] {
        let x = noise::standard_normal([batch, ch, g, g], 3, &device);
        let (t, y) = (vec![0.5; batch], vec![207; batch]);
        group.bench_function(format!("dit_b1_forward_batch{batch}"), |b| {
            b.iter(|| sync(dit.forward(x.clone(), &t, &y).unwrap()))
        });
    }
    let config = SamplerConfig { steps: 4, cfg_scale: 4.0, cfg_interval_start: 0.0, ..SamplerConfig::default() };
    let z0 = noise::standard_normal([1, ch, g, g], 4, &device);
    group.bench_function("sample_4_steps_cfg4", |b| {
        b.iter(|| sync(diffusion::sample(&dit, z0.clone(), &[207], &config, |_, _| {}).unwrap()))
    });
    for (name, bytes) in
        [("load_vmae_pack_f32", vmae_f32), ("load_vmae_pack_f16", vmae_f16), ("load_vmae_pack_int8", vmae_int8)]
    {
        // Borrowed as an app's `include_bytes!` would be: no copy of the pack itself.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        group.bench_function(name, |b| b.iter(|| Vmae::load(&Pack::from_static(bytes).unwrap(), &device).unwrap()));
    }
    group.finish();
}

criterion_group!(models, benches);
criterion_main!(models);
