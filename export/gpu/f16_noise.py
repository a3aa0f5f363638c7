"""How far a float16 computation of the tiny fixtures lands from float64.

    python export/gpu/f16_noise.py [FIXTURES (default tests/fixtures/tiny)] [--vmae-only]

Runs the PyTorch reference (export/reference/ldmae_ref.py) on the committed tiny
checkpoints and inputs with half-precision model copies (normalisations in
float32, as the reference and ldmae both do) and with float64 copies, and writes
`f16_noise.json` beside the fixtures: per output, the f16-vs-f64 max abs
difference. The Rust f16 tests allow a multiple of it (tests/common/mod.rs,
`Tol::F16Compute`). `--vmae-only` skips the DiT (the full-size GPU test checks the VMAE only).
"""

import copy
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import ldmae_ref as ref  # noqa: E402
from make_fixtures import CFG_START, SHIFT, STEPS, load, max_abs_diff  # noqa: E402


def main():
    args = [a for a in sys.argv[1:] if a != "--vmae-only"]
    vmae_only = "--vmae-only" in sys.argv
    fixtures = args[0] if args else "tests/fixtures/tiny"
    manifest = json.load(open(os.path.join(fixtures, "manifest.json")))
    npy = lambda name: torch.from_numpy(np.load(os.path.join(fixtures, name)))  # noqa: E731
    models = {"vmae": ref.vmae_from_checkpoint(load(fixtures, "vmae.pth"))}
    if not vmae_only:
        models |= {"dit": ref.dit_from_checkpoint(load(fixtures, "dit.pt")),
                   "cel": ref.dit_from_checkpoint(load(fixtures, "dit_celeba.pt"))}
    stats = load(fixtures, "latents_stats.pt")
    half = {k: copy.deepcopy(m).half() for k, m in models.items()}
    double = {k: copy.deepcopy(m).double() for k, m in models.items()}
    t = torch.tensor(manifest["dit_t"], dtype=torch.float32)
    y = torch.tensor(manifest["dit_y"])
    s = manifest["sample"]
    labels = torch.tensor(s["labels"])

    def outputs(m, dt):
        mean, logvar = m["vmae"].posterior(m["vmae"].encode_params(npy("image.npy").to(dt)))
        eps = npy("enc_sample_eps.npy").to(dt)
        out = {"enc_mean": mean, "enc_logvar": logvar, "enc_sample": mean + torch.exp(0.5 * logvar) * eps,
               "dec_pixels": m["vmae"].decode(npy("dec_latent.npy").to(dt))}
        if vmae_only:
            return out
        out |= {"dit_v": m["dit"](npy("dit_x.npy").to(dt), t, y),
                "dit_celeba_v": m["cel"](npy("dit_x.npy").to(dt), t, torch.zeros(3, dtype=torch.long))}
        for cfg in s["cfg_scales"]:
            lat = ref.sample(m["dit"], npy("sample_noise.npy").to(dt), labels, STEPS, SHIFT, cfg,
                             CFG_START, stats_mean=stats["mean"], stats_std=stats["std"])
            out[f"sample_cfg{cfg:g}_latent"] = lat
            out[f"sample_cfg{cfg:g}_pixels"] = m["vmae"].decode(lat)
        return out

    with torch.no_grad():
        r16, r64 = outputs(half, torch.float16), outputs(double, torch.float64)
    noise = {k: max_abs_diff(r16[k], r64[k]) for k in r16}
    assert all(np.isfinite(v) for v in noise.values()), noise
    for k, v in noise.items():
        print(f"  {k:22s} f16-f64 {v:.3e}  f32-f64 {manifest['f64_max_abs_diff'][k]:.3e}  "
              f"max |value| {manifest['max_abs'][k]:.3g}")
    with open(os.path.join(fixtures, "f16_noise.json"), "w") as f:
        json.dump({"f16_max_abs_diff": noise}, f, indent=1)


if __name__ == "__main__":
    main()
