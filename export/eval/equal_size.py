"""Per-image comparison of .ldz with JPEG at the same file size.

    python3 export/eval/equal_size.py RD_DIR/rd_per_image.csv [BASELINES/rd_per_image.csv ...] \\
        [--codec jpeg] [--md OUT.md]

For every ldz quality and image, the other codec's curve *for that image*
(its quality sweep in rd_per_image.csv) is linearly interpolated in
log(bytes) at the ldz file's byte count, giving that codec's PSNR, MS-SSIM
and LPIPS at exactly the ldz size; these are averaged over the images.
Where the ldz file is smaller than the codec's smallest setting (JPEG q1),
that setting's values are used (and counted in the 'below range' column:
the baseline then spends *more* bytes than ldz).
Also reports how many images ldz wins on (LPIPS lower, PSNR higher).
"""

import argparse
import csv
import sys
from collections import defaultdict

import numpy as np

METRICS = ("psnr", "msssim", "lpips")


def load(paths):
    rows = []
    for p in paths:
        with open(p, newline="") as f:
            for r in csv.DictReader(f):
                r["quality"] = int(r["quality"])
                r["bytes"] = int(r["bytes"])
                for k in ("bpp",) + METRICS:
                    r[k] = float(r[k])
                rows.append(r)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv", nargs="+")
    ap.add_argument("--codec", default="jpeg")
    ap.add_argument("--md")
    args = ap.parse_args()
    rows = load(args.csv)
    base = defaultdict(dict)                 # image -> quality -> row
    ldz = defaultdict(list)                  # quality -> rows
    for r in rows:
        if r["codec"] == args.codec:
            base[r["image"]][r["quality"]] = r
        elif r["codec"] == "ldz":
            ldz[r["quality"]].append(r)
    if not ldz or not base:
        sys.exit("need ldz rows and rows of --codec")
    c = args.codec
    lines = [f"| ldz q | bpp | ldz PSNR | {c} PSNR | ldz MS-SSIM | {c} MS-SSIM "
             f"| ldz LPIPS | {c} LPIPS | LPIPS wins | PSNR wins | below {c} range |",
             "|" + "---:|" * 11]
    for q in sorted(ldz):
        acc = defaultdict(list)
        wins_l = wins_p = below = 0
        for r in ldz[q]:
            curve = sorted(base[r["image"]].values(), key=lambda b: b["bytes"])
            xs = np.log([b["bytes"] for b in curve])
            x = np.log(r["bytes"])
            if x < xs[0]:
                below += 1
            v = {m: float(np.interp(x, xs, [b[m] for b in curve])) for m in METRICS}
            for m in METRICS:
                acc["ldz_" + m].append(r[m])
                acc[m].append(v[m])
            acc["bpp"].append(r["bpp"])
            wins_l += r["lpips"] < v["lpips"]
            wins_p += r["psnr"] > v["psnr"]
        n = len(ldz[q])
        mean = {k: float(np.mean(v)) for k, v in acc.items()}
        lines.append(
            f"| {q} | {mean['bpp']:.4f} | {mean['ldz_psnr']:.2f} | {mean['psnr']:.2f} "
            f"| {mean['ldz_msssim']:.4f} | {mean['msssim']:.4f} | {mean['ldz_lpips']:.4f} "
            f"| {mean['lpips']:.4f} | {wins_l}/{n} | {wins_p}/{n} | {below}/{n} |")
    out = "\n".join(lines) + "\n"
    print(out)
    if args.md:
        with open(args.md, "w") as f:
            f.write(out)


if __name__ == "__main__":
    main()
