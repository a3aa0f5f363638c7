"""Rate-distortion comparison: our .ldz codec vs JPEG / WebP / AVIF.

    python3 export/eval/rd_eval.py --ldmae target/release/ldmae \\
        --vmae vmae_photo.pack --photos /work/artifacts/photo24 --out rd_out
    (--skip-ldz: baselines only; --reuse OLD/rd_per_image.csv skips
     re-measuring baseline settings an earlier run already has)

For every codec the quality knob is swept; per image we measure
  bpp      = encoded file bytes * 8 / (width * height)
  PSNR     = 10 log10(255^2 / MSE) over all RGB samples (8-bit)
  MS-SSIM  = pytorch_msssim.ms_ssim (5 scales, data_range 255, RGB)
  LPIPS    = LPIPS v0.1 AlexNet (export/train/lpips.py), inputs in [-1, 1]
and average each over the images (PSNR is the mean of per-image PSNRs).
Writes <out>/rd.csv (per codec and setting), <out>/rd_per_image.csv,
<out>/rd.md (tables, incl. baselines interpolated to the ldz bitrates) and
<out>/rd.png (bpp vs PSNR / MS-SSIM / LPIPS).

The ldz codec is run through the CLI:
  ldmae compress --vmae PACK IN.png -o OUT.ldz --quality Q
  ldmae decompress --vmae PACK IN.ldz -o OUT.png
JPEG (libjpeg via Pillow, 4:2:0, optimised Huffman), WebP (libwebp, method
6) and AVIF (libavif via Pillow >= 11.3, speed 6, 4:2:0) are run in-process.
"""

import argparse
import csv
import glob
import io
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image, features

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "train"))
from lpips import LPIPS  # noqa: E402

DEFAULT_Q = {
    "jpeg": [5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95],
    "webp": [0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
    "avif": [10, 20, 30, 40, 50, 60, 70, 80, 90],
    "ldz": [1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100],
}
METRICS = ["bpp", "psnr", "msssim", "lpips"]


# --------------------------------------------------------------------------
# Codecs: each returns (encoded bytes count, decoded uint8 HWC, enc s, dec s)
# --------------------------------------------------------------------------

def pil_codec(fmt, **opts):
    def run(path, img, q, tmp):
        t0 = time.perf_counter()
        buf = io.BytesIO()
        img.save(buf, fmt, quality=q, **opts)
        t1 = time.perf_counter()
        data = buf.getvalue()
        dec = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        t2 = time.perf_counter()
        return len(data), dec, t1 - t0, t2 - t1
    return run


def cli(cmd):
    """Run the ldmae CLI quietly; show its output only when it fails."""
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")


def ldz_codec(ldmae, pack):
    def run(path, img, q, tmp):
        ldz = os.path.join(tmp, "x.ldz")
        png = os.path.join(tmp, "x.png")
        for f in (ldz, png):
            if os.path.exists(f):
                os.remove(f)
        t0 = time.perf_counter()
        cli([ldmae, "compress", "--vmae", pack, path, "-o", ldz,
             "--quality", str(q)])
        t1 = time.perf_counter()
        cli([ldmae, "decompress", "--vmae", pack, ldz, "-o", png])
        t2 = time.perf_counter()
        dec = np.asarray(Image.open(png).convert("RGB"))
        return os.path.getsize(ldz), dec, t1 - t0, t2 - t1
    return run


# --------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------

def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


class Metrics:
    def __init__(self):
        from pytorch_msssim import ms_ssim
        self.ms_ssim = ms_ssim
        self.lpips = LPIPS("alex")

    @staticmethod
    def _t(a):
        return torch.from_numpy(np.array(a, np.float32)).permute(2, 0, 1)[None]

    @torch.no_grad()
    def __call__(self, ref, dec):
        r, d = self._t(ref), self._t(dec)
        ms = self.ms_ssim(r, d, data_range=255, size_average=True).item()
        lp = self.lpips(r / 127.5 - 1, d / 127.5 - 1).item()
        return {"psnr": psnr(ref, dec), "msssim": ms, "lpips": lp}


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------

def interp_at(rows, bpp):
    """Linear interpolation of a codec's mean curve at `bpp` (None outside
    the swept range)."""
    rows = sorted(rows, key=lambda r: r["bpp"])
    xs = np.array([r["bpp"] for r in rows])
    if len(xs) < 2 or bpp < xs[0] or bpp > xs[-1]:
        return None
    return {m: float(np.interp(bpp, xs, [r[m] for r in rows]))
            for m in METRICS[1:]}


def write_md(path, summary, ref_codec, n_images):
    codecs = list(summary)
    lines = [f"# Rate-distortion on {n_images} images", "",
             "Means over images; PSNR in dB on 8-bit RGB; MS-SSIM higher is "
             "better; LPIPS (AlexNet, v0.1) lower is better.", ""]
    for c in codecs:
        lines += [f"## {c}", "",
                  "| quality | bpp | PSNR | MS-SSIM | LPIPS | enc s | dec s |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for r in summary[c]:
            lines.append(f"| {r['quality']} | {r['bpp']:.4f} | {r['psnr']:.2f}"
                         f" | {r['msssim']:.4f} | {r['lpips']:.4f} | "
                         f"{r['enc_s']:.3f} | {r['dec_s']:.3f} |")
        lines.append("")
    if ref_codec:
        others = [c for c in codecs if c != ref_codec]
        lines += [f"## At matched bitrate ({ref_codec} points; other codecs "
                  "linearly interpolated on their mean curves)", ""]
        head = "| bpp | " + " | ".join(
            f"{c} {m}" for c in [ref_codec] + others
            for m in ("PSNR", "MS-SSIM", "LPIPS")) + " |"
        lines += [head, "|" + "---:|" * (1 + 3 * (1 + len(others)))]
        for r in sorted(summary[ref_codec], key=lambda r: r["bpp"]):
            cells = [f"{r['bpp']:.4f}", f"{r['psnr']:.2f}",
                     f"{r['msssim']:.4f}", f"{r['lpips']:.4f}"]
            for c in others:
                v = interp_at(summary[c], r["bpp"])
                cells += ["n/a"] * 3 if v is None else [
                    f"{v['psnr']:.2f}", f"{v['msssim']:.4f}",
                    f"{v['lpips']:.4f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def write_plot(path, summary, n_images):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    labels = {"psnr": "PSNR (dB) ↑", "msssim": "MS-SSIM ↑",
              "lpips": "LPIPS-Alex ↓"}
    xmax = 0
    for c, rows in summary.items():
        rows = sorted(rows, key=lambda r: r["bpp"])
        xs = [r["bpp"] for r in rows]
        xmax = max(xmax, min(max(xs), 3.0))
        style = dict(marker="o", ms=3, lw=2.2 if c == "ldz" else 1.4)
        for ax, m in zip(axes, ("psnr", "msssim", "lpips")):
            ax.plot(xs, [r[m] for r in rows], label=c, **style)
    for ax, m in zip(axes, ("psnr", "msssim", "lpips")):
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(labels[m])
        ax.set_xlim(0, xmax * 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"Rate-distortion, mean over {n_images} images")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# --------------------------------------------------------------------------

def parse_q(s):
    return [int(v) for v in s.split(",")] if s else None


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--ldmae", help="path of the ldmae binary")
    ap.add_argument("--vmae", help="VMAE weight pack for the ldz codec")
    ap.add_argument("--photos", required=True, help="directory of PNGs")
    ap.add_argument("--out", required=True)
    ap.add_argument("--skip-ldz", action="store_true")
    ap.add_argument("--codecs", default="ldz,jpeg,webp,avif",
                    help="comma list (avif is dropped if Pillow lacks it)")
    for c in DEFAULT_Q:
        ap.add_argument(f"--q-{c}", type=parse_q, default=None,
                        help=f"comma list (default {DEFAULT_Q[c]})")
    ap.add_argument("--limit", type=int, default=0,
                    help="use only the first N photos (quick tests)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reuse", help="rd_per_image.csv of an earlier run: its "
                    "JPEG/WebP/AVIF rows are reused instead of re-encoding "
                    "(same photos and Pillow build assumed)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    photos = sorted(glob.glob(os.path.join(args.photos, "*.png")))
    if args.limit:
        photos = photos[:args.limit]
    if not photos:
        sys.exit(f"no PNGs in {args.photos}")
    os.makedirs(args.out, exist_ok=True)

    codecs = {}
    for c in args.codecs.split(","):
        if c == "ldz":
            if args.skip_ldz:
                continue
            if not (args.ldmae and args.vmae):
                sys.exit("--ldmae and --vmae are required (or --skip-ldz)")
            codecs[c] = ldz_codec(args.ldmae, args.vmae)
        elif c == "jpeg":
            codecs[c] = pil_codec("JPEG", optimize=True, subsampling="4:2:0")
        elif c == "webp":
            codecs[c] = pil_codec("WEBP", method=6)
        elif c == "avif":
            if not features.check("avif"):
                print("Pillow has no AVIF support; skipping avif")
                continue
            codecs[c] = pil_codec("AVIF", speed=6, subsampling="4:2:0")
        else:
            sys.exit(f"unknown codec {c}")

    metrics = Metrics()
    # Per-image rows of an earlier run (baselines only: ldz rows depend on
    # the pack and the CLI, so they are always recomputed).
    reuse = {}
    if args.reuse:
        with open(args.reuse, newline="") as f:
            for r in csv.DictReader(f):
                if r["codec"] != "ldz":
                    reuse[(r["codec"], int(r["quality"]), r["image"])] = {
                        k: (int(v) if k in ("quality", "bytes") else
                            v if k in ("codec", "image") else float(v))
                        for k, v in r.items()}
    fields = ["codec", "quality", "bpp", "psnr", "msssim", "lpips",
              "enc_s", "dec_s"]
    img_fields = ["codec", "quality", "image", "bytes"] + fields[2:]
    per_image, summary = [], {}
    # Per-image rows are written as they come (a long run can be inspected
    # or reused with --reuse even if it is stopped).
    pif = open(os.path.join(args.out, "rd_per_image.csv"), "w", newline="")
    piw = csv.DictWriter(pif, fieldnames=img_fields)
    piw.writeheader()
    with tempfile.TemporaryDirectory() as tmp:
        for c, run in codecs.items():
            qs = getattr(args, f"q_{c}") or DEFAULT_Q[c]
            summary[c] = []
            for q in qs:
                acc = []
                for path in photos:
                    old = reuse.get((c, q, os.path.basename(path)))
                    if old is not None:
                        per_image.append(old)
                        acc.append(old)
                        piw.writerow(old)
                        continue
                    img = Image.open(path).convert("RGB")
                    ref = np.asarray(img)
                    nbytes, dec, te, td = run(path, img, q, tmp)
                    if dec.shape != ref.shape:
                        sys.exit(f"{c} q{q} {path}: decoded {dec.shape} "
                                 f"!= {ref.shape}")
                    m = metrics(ref, dec)
                    row = dict(codec=c, quality=q,
                               image=os.path.basename(path),
                               bpp=nbytes * 8 / (ref.shape[0] * ref.shape[1]),
                               bytes=nbytes, enc_s=te, dec_s=td, **m)
                    per_image.append(row)
                    acc.append(row)
                    piw.writerow(row)
                    pif.flush()
                mean = {k: float(np.mean([r[k] for r in acc]))
                        for k in METRICS + ["enc_s", "dec_s"]}
                summary[c].append(dict(codec=c, quality=q, **mean))
                print(f"{c:5s} q{q:3d}  bpp {mean['bpp']:.4f}  PSNR "
                      f"{mean['psnr']:.2f}  MS-SSIM {mean['msssim']:.4f}  "
                      f"LPIPS {mean['lpips']:.4f}", flush=True)

    pif.close()
    with open(os.path.join(args.out, "rd.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for rows in summary.values():
            for r in rows:
                w.writerow({k: r[k] for k in fields})
    # Matched-bitrate table against the ldz points; without ldz (baseline
    # test runs) against WebP's points so the table is still exercised.
    ref_codec = "ldz" if "ldz" in summary else (
        "webp" if "webp" in summary else None)
    write_md(os.path.join(args.out, "rd.md"), summary, ref_codec, len(photos))
    write_plot(os.path.join(args.out, "rd.png"), summary, len(photos))
    print(f"wrote {args.out}/rd.csv, rd_per_image.csv, rd.md, rd.png")


if __name__ == "__main__":
    main()
