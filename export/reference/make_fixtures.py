"""Expected outputs for the Rust parity tests.

    python make_fixtures.py CKPTDIR OUTDIR [--seed N]

Reads the checkpoints written by make_checkpoints.py the way the official
scripts do (VMAE from `model`, DiT from `ema`), computes every output in
float32 and again in float64, and writes the float32 results as .npy (float32,
little-endian, C-contiguous, NCHW) plus manifest.json with the configuration,
the inputs' metadata and, per output, the float32-vs-float64 max abs
difference and the max abs value. Also prints a sensitivity check: how far
the outputs move under the semantic slips a port could make.
"""

import argparse
import copy
import json
import os
import struct
import sys
import time
import zlib

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ldmae_ref as ref  # noqa: E402

PRESET_OF = {"LightningDiT-B/1": "full", "LightningDiT-tiny/1": "tiny"}
SAMPLE_LABELS = {"full": [207, 360], "tiny": [3, 8]}
DIT_T = [0.0, 0.37, 1.0]
STEPS, SHIFT, CFG_START, CFG_SCALES = 4, 0.3, 0.1, (1.0, 4.0)


def write_png(path, rgb):
    """Minimal 8-bit RGB PNG writer (no filtering), rgb: (H, W, 3) uint8."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[i].tobytes() for i in range(h))

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data)))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n"
                + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9))
                + chunk(b"IEND", b""))


def test_image(size, rng):
    """Smooth colour structure plus pixel noise, (size, size, 3) uint8."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    r = 0.5 + 0.4 * np.sin(2 * np.pi * (1.3 * xx + 0.4 * yy) + 0.3)
    g = 0.5 + 0.4 * np.cos(2 * np.pi * (0.7 * yy - 0.9 * xx))
    b = np.exp(-((xx - 0.6) ** 2 + (yy - 0.4) ** 2) / 0.05)
    img = (255 * np.stack([r, g, b], axis=-1)
           + rng.normal(0, 12, (size, size, 3)))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def save_npy(path, t):
    np.save(path, np.ascontiguousarray(t.detach().numpy().astype("<f4")))


def max_abs_diff(a, b):
    return (a.double() - b.double()).abs().max().item()


class Runner:
    """Runs each computation with float32 and float64 model copies and
    records the outputs."""

    def __init__(self, models, outdir):
        self.m32 = models
        self.m64 = {k: copy.deepcopy(v).double() for k, v in models.items()}
        self.outdir = outdir
        self.out = {}          # name -> float32 result
        self.f64_diff = {}
        self.max_abs = {}

    @torch.no_grad()
    def run(self, fn):
        """fn(models, dtype) -> {name: tensor}, evaluated in both dtypes."""
        r32 = fn(self.m32, torch.float32)
        r64 = fn(self.m64, torch.float64)
        for name, t in r32.items():
            save_npy(os.path.join(self.outdir, name + ".npy"), t)
            self.out[name] = t
            self.f64_diff[name] = max_abs_diff(t, r64[name])
            self.max_abs[name] = t.abs().max().item()
        return r32, r64


def load(ckptdir, name):
    return torch.load(os.path.join(ckptdir, name), map_location="cpu",
                      weights_only=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckptdir")
    ap.add_argument("outdir")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    t_start = time.time()

    vmae_ck = load(a.ckptdir, "vmae.pth")
    dit_ck = load(a.ckptdir, "dit.pt")
    cel_ck = load(a.ckptdir, "dit_celeba.pt")
    stats = load(a.ckptdir, "latents_stats.pt")
    vmae_cfg = dict(ref.vmae_config(vmae_ck), model=vmae_ck["args"].model)
    dit_cfg = dict(ref.dit_config(dit_ck),
                   model_type=dit_ck["config"]["model"]["model_type"])
    cel_cfg = dict(ref.dit_config(cel_ck),
                   model_type=cel_ck["config"]["model"]["model_type"])
    preset = PRESET_OF[dit_cfg["model_type"]]
    models = {"vmae": ref.vmae_from_checkpoint(vmae_ck),
              "dit": ref.dit_from_checkpoint(dit_ck),
              "cel": ref.dit_from_checkpoint(cel_ck)}
    dit_train = ref.dit_from_checkpoint(dit_ck, "model")
    del vmae_ck, dit_ck, cel_ck
    run = Runner(models, a.outdir)
    vmae, dit = models["vmae"], models["dit"]
    lat_c = vmae.latent_dim
    grid = vmae_cfg["img_size"] // vmae_cfg["patch"]
    g = torch.Generator().manual_seed(a.seed)
    timings = {"load": time.time() - t_start}

    # VMAE encode / decode.
    t0 = time.time()
    rgb = test_image(vmae_cfg["img_size"], np.random.default_rng(a.seed))
    write_png(os.path.join(a.outdir, "image.png"), rgb)
    image = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    image = (image / 255 - 0.5) / 0.5
    save_npy(os.path.join(a.outdir, "image.npy"), image)
    eps = torch.randn((1, lat_c, grid, grid), generator=g)
    save_npy(os.path.join(a.outdir, "enc_sample_eps.npy"), eps)

    def encode(m, dt):
        mean, logvar = m["vmae"].posterior(
            m["vmae"].encode_params(image.to(dt)))
        return {"enc_mean": mean, "enc_logvar": logvar,
                "enc_sample": mean + torch.exp(0.5 * logvar) * eps.to(dt)}
    run.run(encode)

    dec_latent = torch.randn((1, lat_c, grid, grid), generator=g)
    save_npy(os.path.join(a.outdir, "dec_latent.npy"), dec_latent)
    dec32, dec64 = run.run(
        lambda m, dt: {"dec_pixels": m["vmae"].decode(dec_latent.to(dt))})
    img32 = ref.VMAE.to_uint8(dec32["dec_pixels"])
    img64 = ref.VMAE.to_uint8(dec64["dec_pixels"])
    write_png(os.path.join(a.outdir, "dec_image.png"), img32[0].numpy())
    uint8_mismatch = int((img32 != img64).sum())
    timings["vmae"] = time.time() - t0

    # DiT forwards.
    t0 = time.time()
    c, hw = dit.in_channels, dit_cfg["input_size"]
    dit_x = torch.randn((3, c, hw, hw), generator=g)
    save_npy(os.path.join(a.outdir, "dit_x.npy"), dit_x)
    dit_t = torch.tensor(DIT_T, dtype=torch.float32)
    dit_y = torch.tensor([1, 7, dit.num_classes])
    cel_y = torch.zeros(3, dtype=torch.long)
    run.run(lambda m, dt: {"dit_v": m["dit"](dit_x.to(dt), dit_t, dit_y)})
    run.run(lambda m, dt: {
        "dit_celeba_v": m["cel"](dit_x.to(dt), dit_t, cel_y)})
    timings["dit"] = time.time() - t0

    # Sampling and decoding of the samples.
    t0 = time.time()
    noise = torch.randn((2, c, hw, hw), generator=g)
    save_npy(os.path.join(a.outdir, "sample_noise.npy"), noise)
    labels = torch.tensor(SAMPLE_LABELS[preset])

    def sampler(cfg):
        def fn(m, dt):
            lat = ref.sample(m["dit"], noise.to(dt), labels, STEPS, SHIFT,
                             cfg, CFG_START, stats_mean=stats["mean"],
                             stats_std=stats["std"])
            return {f"sample_cfg{cfg:g}_latent": lat,
                    f"sample_cfg{cfg:g}_pixels": m["vmae"].decode(lat)}
        return fn
    for cfg in CFG_SCALES:
        run.run(sampler(cfg))
    timings["sample"] = time.time() - t0

    # Sensitivity to semantic slips (float32).
    t0 = time.time()
    sens = {}
    with torch.no_grad():
        v = copy.deepcopy(vmae)
        v.pos_embed.copy_(torch.from_numpy(ref.sincos_2d(
            v.pos_embed.shape[2], grid)).float()[None])
        v.decoder_pos_embed.copy_(torch.from_numpy(ref.sincos_2d(
            v.decoder_pos_embed.shape[2], grid)).float()[None])
        mean, _ = v.posterior(v.encode_params(image))
        sens["analytic VMAE pos tables: enc_mean"] = (
            max_abs_diff(mean, run.out["enc_mean"]), "enc_mean")
        sens["analytic VMAE pos tables: dec_pixels"] = (
            max_abs_diff(v.decode(dec_latent), run.out["dec_pixels"]),
            "dec_pixels")
        sens["DiT `model` instead of `ema`: dit_v"] = (
            max_abs_diff(dit_train(dit_x, dit_t, dit_y), run.out["dit_v"]),
            "dit_v")
        d = copy.deepcopy(dit)
        d.pos_embed.copy_(torch.from_numpy(ref.sincos_2d(
            d.pos_embed.shape[2], hw)).float()[None])
        sens["analytic DiT pos table: dit_v"] = (
            max_abs_diff(d(dit_x, dit_t, dit_y), run.out["dit_v"]), "dit_v")
        lat = ref.sample(dit, noise, labels, STEPS, SHIFT, CFG_SCALES[-1],
                         CFG_START, cfg_channels=range(c),
                         stats_mean=stats["mean"], stats_std=stats["std"])
        key = f"sample_cfg{CFG_SCALES[-1]:g}_latent"
        sens[f"CFG on all channels: {key}"] = (
            max_abs_diff(lat, run.out[key]), key)
    timings["sensitivity"] = time.time() - t0

    manifest = {
        "preset": preset,
        "seed": a.seed,
        "vmae": dict(vmae_cfg, in_chans=3),
        "dit": dict(dit_cfg, mlp_ratio=4,
                    label_rows=dit.y_embedder.embedding_table.num_embeddings),
        "dit_celeba": dict(
            cel_cfg, mlp_ratio=4,
            label_rows=models["cel"].y_embedder.embedding_table
            .num_embeddings),
        "dit_t": DIT_T,
        "dit_y": dit_y.tolist(),
        "dit_celeba_y": cel_y.tolist(),
        "sample": {"labels": labels.tolist(), "steps": STEPS,
                   "shift": SHIFT, "cfg_interval_start": CFG_START,
                   "cfg_scales": list(CFG_SCALES), "cfg_channels": [0, 1, 2],
                   "latent_multiplier": 1.0},
        "f64_max_abs_diff": run.f64_diff,
        "max_abs": run.max_abs,
        "dec_image_uint8_f64_mismatches": uint8_mismatch,
    }
    with open(os.path.join(a.outdir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")

    print(f"preset {preset}; phase seconds: "
          + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    print("f32 vs f64 max abs diff (max |value|):")
    for k in run.f64_diff:
        print(f"  {k:22s} {run.f64_diff[k]:.2e} ({run.max_abs[k]:.3g})")
    print("sensitivity (max abs change; ratio to the f64 diff):")
    for k, (d, ref_key) in sens.items():
        print(f"  {k:45s} {d:.3e}  x{d / run.f64_diff[ref_key]:.0f}")


if __name__ == "__main__":
    main()
