"""Pre-cut the training photos into one uint8 array of multi-scale regions.

    python3 export/train/make_crops.py export/train/data/crops192.npy [--n 360 --size 192]

Regions of SIZE x SIZE are drawn once (seed 0) from the image pyramids of
photo_data.TrainCrops (training photos only: the photo24 test photos and the
validation photos are excluded there, and checked disjoint), with level
probability ~ sqrt(area) as in training. train_vmae.py --crops then takes
random 128 x 128 windows (+ horizontal flips) out of these regions, so the
data pipeline costs ~nothing per step. 360 regions of 192^2 = 39.8 MB
(< 40 MiB): the same file is carried to the GPU machine (gpu_train.sh).
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import photo_data  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=360)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    d = photo_data.TrainCrops(args.size, seed=args.seed)
    print(d.describe())
    rng = np.random.default_rng(args.seed)
    c = args.size
    out = np.empty((args.n, c, c, 3), np.uint8)
    lv = rng.choice(len(d.levels), size=args.n, p=d.prob)
    for i, j in enumerate(lv):
        a = d.levels[j]
        y = rng.integers(0, a.shape[0] - c + 1)
        x = rng.integers(0, a.shape[1] - c + 1)
        out[i] = a[y:y + c, x:x + c]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.save(args.out, out)
    used = np.bincount(lv, minlength=len(d.levels))
    print(f"wrote {args.out}: {out.shape} uint8, {out.nbytes / 2**20:.1f} MiB, "
          f"{(used > 0).sum()} of {len(d.levels)} pyramid levels used")


if __name__ == "__main__":
    main()
