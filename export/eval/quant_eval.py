"""What quantised packs cost on trained weights: the photo VMAE through the `.ldz` codec.

    python3 export/eval/quant_eval.py --bin target/release --vmae assets/vmae-photo.pack \
        --photos /work/artifacts/photo24 --work /tmp/ldmae-quant [--quality 50]

Stores the pack anew as f16, int8 and int4 (`ldmae-export vmae PACK --dtype …`), then
compresses and decompresses every photo with each at the given quality (default: the codec's)
and prints one Markdown table: pack size, mean PSNR over the photos (RGB, 8-bit), mean bits per
pixel, and the differences to f16. The Fashion-MNIST DiT's FID per storage comes from
`export/eval/fid.py` with the packs this script's `--dit` option writes (see docs/performance.md).
"""

import argparse
import glob
import os
import subprocess

import numpy as np
from PIL import Image

STORAGES = ["f16", "int8", "int4"]


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release")
    ap.add_argument("--vmae", required=True)
    ap.add_argument("--photos", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--quality", type=int, default=None)
    ap.add_argument("--dit", help="also store this DiT pack as f16/int8/int4 in --work (for fid.py)")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    ldmae, export = os.path.join(a.bin, "ldmae"), os.path.join(a.bin, "ldmae-export")
    photos = sorted(glob.glob(os.path.join(a.photos, "*.png")))
    rows = {}
    for s in STORAGES:
        pack = os.path.join(a.work, f"vmae-{s}.pack")
        subprocess.run([export, "vmae", a.vmae, "-o", pack, "--dtype", s], check=True, capture_output=True)
        if a.dit:
            subprocess.run([export, "dit", a.dit, "-o", os.path.join(a.work, f"dit-{s}.pack"), "--dtype", s],
                           check=True, capture_output=True)
        psnrs, bpps = [], []
        for p in photos:
            ldz, back = os.path.join(a.work, "x.ldz"), os.path.join(a.work, "x.png")
            q = [] if a.quality is None else ["--quality", str(a.quality)]
            subprocess.run([ldmae, "compress", "--device", "cpu", "--vmae", pack, p, "-o", ldz] + q, check=True,
                           capture_output=True)
            subprocess.run([ldmae, "decompress", "--device", "cpu", "--vmae", pack, ldz, "-o", back], check=True,
                           capture_output=True)
            x = np.asarray(Image.open(p).convert("RGB"))
            y = np.asarray(Image.open(back).convert("RGB"))
            psnrs.append(psnr(x, y))
            bpps.append(os.path.getsize(ldz) * 8 / (x.shape[0] * x.shape[1]))
        rows[s] = (os.path.getsize(pack) / 1e6, float(np.mean(psnrs)), float(np.mean(bpps)))
    f16 = rows["f16"]
    print(f"photos: {len(photos)} from {a.photos}; quality {a.quality or 'default'}; VMAE {a.vmae}")
    print("| pack | MB | PSNR dB | Δ PSNR vs f16 | bpp | Δ size vs f16 |")
    print("|---|---:|---:|---:|---:|---:|")
    for s, (mb, p, bpp) in rows.items():
        print(f"| {s} | {mb:.2f} | {p:.2f} | {p - f16[1]:+.2f} | {bpp:.3f} | {100 * (bpp / f16[2] - 1):+.1f} % |")


if __name__ == "__main__":
    main()
