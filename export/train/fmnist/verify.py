"""Check a converted DiT pack against PyTorch and draw a class grid with the Rust CLI.

    python verify.py --out /work/artifacts/fmnist --name teacher --steps 32 --shift 0.3 \
        --cfg 3 --cfg-interval 0.1 --cfg-channels 0,1,2,3

Parity: one noise z0 per class (saved as .npy, passed with `ldmae sample --noise`) is
sampled by ldmae_ref.sample (PyTorch, fp32 checkpoint weights) and by the Rust CLI on
(a) an f32 pack made from the same checkpoint (expected agreement ~1e-5) and (b) the
f16 pack (weights rounded to f16; compared also with PyTorch on f16-rounded weights).
Grid: `ldmae sample --seed` with every class repeated --per-class times, the side-by-side
PNG rearranged to one row per class.
"""

import argparse
import json
import os
import subprocess

import numpy as np
import torch
from PIL import Image

import common as C

LDMAE = os.environ.get("LDMAE", "/work/target/release/ldmae")
EXPORT = os.environ.get("LDMAE_EXPORT", "/work/target/release/ldmae-export")


def run(cmd, log):
    log("$ " + " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {r.stderr[-2000:]}")
    return r.stdout


def rows_grid(png, n_rows, size=32):
    im = np.asarray(Image.open(png).convert("RGB"))
    per = im.shape[1] // size // n_rows
    tiles = im.reshape(size, n_rows, per, size, 3)
    return tiles.transpose(1, 0, 2, 3, 4).reshape(n_rows * size, per * size, 3)


def sample_args(a):
    return ["--steps", str(a.steps), "--shift", str(a.shift), "--cfg", str(a.cfg),
            "--cfg-interval", str(a.cfg_interval), "--cfg-channels", a.cfg_channels]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/work/artifacts/fmnist")
    ap.add_argument("--name", required=True, help="teacher | student1 | ...")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--shift", type=float, default=0.3)
    ap.add_argument("--cfg", type=float, default=1.0)
    ap.add_argument("--cfg-interval", type=float, default=0.0)
    ap.add_argument("--cfg-channels", default="0,1,2,3")
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-parity", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    C.setup(a.threads)
    log = C.Logger(os.path.join(a.out, "verify.log"))
    o = a.out
    pt = os.path.join(o, f"dit_{a.name}.pt")
    pack = os.path.join(o, f"dit_{a.name}.pack")
    vpack = os.path.join(o, "vmae_fmnist.pack")
    stats = os.path.join(o, "latents_stats.pt")
    res = {"name": a.name, "steps": a.steps, "shift": a.shift, "cfg": a.cfg,
           "cfg_interval": a.cfg_interval, "cfg_channels": a.cfg_channels}
    if not a.skip_parity:
        ck = torch.load(pt, weights_only=False)
        dit = C.make_dit()
        dit.load_state_dict(ck["ema"])
        dit.eval()
        vm = C.make_vmae()
        vm.load_state_dict(torch.load(os.path.join(o, "vmae_fmnist.pth"))["model"])
        vm.eval()
        st = torch.load(stats)
        g = torch.Generator().manual_seed(1234 + a.seed)
        z0 = torch.randn(10, C.DIT_CFG["in_channels"], 8, 8, generator=g)
        y = torch.arange(10)
        zpath = os.path.join(o, f"parity_{a.name}_z0.npy")
        np.save(zpath, z0.numpy())
        chans = [int(c) for c in a.cfg_channels.split(",")]

        def torch_sample(d, v):
            with torch.no_grad():
                lat = C.ref.sample(d, z0, y, a.steps, a.shift, a.cfg, a.cfg_interval,
                                   chans, st["mean"], st["std"])
                return lat, v.to_uint8(v.decode(lat)).numpy()

        lat32, img32 = torch_sample(dit, vm)
        d16, v16 = C.make_dit(), C.make_vmae()
        d16.load_state_dict({k: t.half().float() for k, t in dit.state_dict().items()})
        v16.load_state_dict({k: t.half().float() for k, t in vm.state_dict().items()})
        lat16, img16 = torch_sample(d16.eval(), v16.eval())
        Image.fromarray(np.concatenate(list(img32), 1)).save(
            os.path.join(o, f"parity_{a.name}_torch.png"))
        # f32 packs for the exact comparison
        tmp32 = os.path.join(o, f"tmp_dit_{a.name}_f32.pack")
        vtmp32 = os.path.join(o, "tmp_vmae_f32.pack")
        run([EXPORT, "dit", pt, "--stats", stats, "-o", tmp32, "--dtype", "f32"], log)
        if not os.path.exists(vtmp32):
            run([EXPORT, "vmae", os.path.join(o, "vmae_fmnist.pth"), "-o", vtmp32,
                 "--dtype", "f32", "--heads", str(C.VMAE_CFG["heads"]),
                 "--decoder-heads", str(C.VMAE_CFG["dec_heads"])], log)
        for tag, dp, vp, rl, ri in (("f32", tmp32, vtmp32, lat32, img32),
                                    ("f16", pack, vpack, lat16, img16)):
            png = os.path.join(o, f"parity_{a.name}_rust_{tag}.png")
            lnp = os.path.join(o, f"parity_{a.name}_rust_{tag}_latent.npy")
            run([LDMAE, "sample", "--dit", dp, "--vmae", vp, "--class",
                 ",".join(map(str, range(10))), *sample_args(a), "--noise", zpath,
                 "-o", png, "--latent", lnp], log)
            rl_rust = torch.from_numpy(np.load(lnp))
            im = np.asarray(Image.open(png).convert("RGB")).astype(np.int32)
            ref_im = np.concatenate(list(ri), 1).astype(np.int32)
            dl = (rl_rust - rl).abs()
            di = np.abs(im - ref_im)
            res[f"rust_{tag}_vs_torch_{tag}_latent_maxabs"] = float(dl.max())
            res[f"rust_{tag}_vs_torch_{tag}_latent_meanabs"] = float(dl.mean())
            res[f"rust_{tag}_vs_torch_{tag}_pixels_maxabs"] = int(di.max())
            res[f"rust_{tag}_vs_torch_{tag}_pixels_frac_diff"] = float((di > 0).mean())
            if tag == "f16":
                res["rust_f16_vs_torch_f32_latent_maxabs"] = float((rl_rust - lat32).abs().max())
        res["torch_f16w_vs_f32_latent_maxabs"] = float((lat16 - lat32).abs().max())
        res["latent_scale_absmax"] = float(lat32.abs().max())
        os.remove(tmp32)
    # class grid from the Rust CLI (f16 pack)
    classes = ",".join(str(c) for c in range(10) for _ in range(a.per_class))
    png = os.path.join(o, f"samples_{a.name}_raw.png")
    run([LDMAE, "sample", "--dit", pack, "--vmae", vpack, "--class", classes,
         *sample_args(a), "--seed", str(a.seed), "-o", png], log)
    grid = rows_grid(png, 10)
    Image.fromarray(grid).save(os.path.join(o, f"samples_{a.name}.png"))
    os.remove(png)
    log("verify " + json.dumps(res))


if __name__ == "__main__":
    main()
