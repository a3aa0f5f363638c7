"""PyTorch preview grid of a DiT checkpoint at several CFG scales (to choose the teacher's CFG).

    python preview.py --out /work/artifacts/fmnist --name teacher --steps 16 --cfgs 1,2,3,4
Rows: one per (cfg, class); writes preview_<name>.png.
"""

import argparse
import os

import numpy as np
import torch
from PIL import Image

import common as C


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/work/artifacts/fmnist")
    ap.add_argument("--name", default="teacher")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--shift", type=float, default=0.3)
    ap.add_argument("--cfgs", default="1,2,3,4")
    ap.add_argument("--cfg-interval", type=float, default=0.1)
    ap.add_argument("--per-class", type=int, default=3)
    a = ap.parse_args()
    C.setup(2)
    o = a.out
    dit = C.make_dit()
    dit.load_state_dict(torch.load(os.path.join(o, f"dit_{a.name}.pt"), weights_only=False)["ema"])
    dit.eval()
    vm = C.make_vmae()
    vm.load_state_dict(torch.load(os.path.join(o, "vmae_fmnist.pth"))["model"])
    vm.eval()
    st = torch.load(os.path.join(o, "latents_stats.pt"))
    y = torch.arange(10).repeat_interleave(a.per_class)
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(len(y), C.DIT_CFG["in_channels"], 8, 8, generator=g)
    cols = []
    for cfg in [float(c) for c in a.cfgs.split(",")]:
        lat = C.ref.sample(dit, z0, y, a.steps, a.shift, cfg, a.cfg_interval,
                           range(C.DIT_CFG["in_channels"]), st["mean"], st["std"])
        with torch.no_grad():
            im = vm.to_uint8(vm.decode(lat)).numpy()          # (N,32,32,3)
        im = im.reshape(10, a.per_class, 32, 32, 3).transpose(0, 2, 1, 3, 4)
        cols.append(im.reshape(320, a.per_class * 32, 3))
        cols.append(np.full((320, 4, 3), 128, np.uint8))
    Image.fromarray(np.concatenate(cols, 1)).save(os.path.join(o, f"preview_{a.name}.png"))


if __name__ == "__main__":
    main()
