"""Side-by-side picture: original | .ldz at a quality | JPEG at the same bytes.

    python3 export/eval/side_by_side.py --ldmae BIN --vmae PACK PHOTO.png OUT.png [--quality Q]
        [--crop X,Y,W,H]

JPEG (Pillow, 4:2:0, optimised Huffman) is taken at the largest quality whose
file is not larger than the .ldz file. Prints both sizes and PSNRs.
"""

import argparse
import io
import os
import subprocess
import tempfile

import numpy as np
from PIL import Image, ImageDraw


def psnr(a, b):
    return 10 * np.log10(255.0 ** 2 / np.mean((a.astype(float) - b) ** 2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ldmae", required=True)
    ap.add_argument("--vmae", required=True)
    ap.add_argument("--quality", type=int, help="default: the codec's default")
    ap.add_argument("--crop", help="X,Y,W,H of the panels (default: whole photo)")
    ap.add_argument("photo")
    ap.add_argument("out")
    args = ap.parse_args()
    img = Image.open(args.photo).convert("RGB")
    a = np.asarray(img)
    with tempfile.TemporaryDirectory() as tmp:
        ldz, png = os.path.join(tmp, "x.ldz"), os.path.join(tmp, "x.png")
        q = ["--quality", str(args.quality)] if args.quality else []
        subprocess.run([args.ldmae, "compress", "--vmae", args.vmae, args.photo, "-o", ldz] + q,
                       check=True, capture_output=True)
        subprocess.run([args.ldmae, "decompress", "--vmae", args.vmae, ldz, "-o", png],
                       check=True, capture_output=True)
        nb = os.path.getsize(ldz)
        rec = np.asarray(Image.open(png).convert("RGB"))
    best = None
    for jq in range(1, 101):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=jq, optimize=True, subsampling="4:2:0")
        if buf.tell() <= nb:
            best = (jq, buf.tell(), np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    if best is None:          # even quality 1 is larger: show quality 1
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=1, optimize=True, subsampling="4:2:0")
        best = (1, buf.tell(), np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    jq, jb, jpg = best
    px = a.shape[0] * a.shape[1]
    print(f"ldz: {nb} bytes ({nb * 8 / px:.3f} bpp), PSNR {psnr(a, rec):.2f} dB")
    print(f"jpeg q{jq}: {jb} bytes ({jb * 8 / px:.3f} bpp), PSNR {psnr(a, jpg):.2f} dB")
    panels = [a, rec, jpg]
    if args.crop:
        x, y, w, h = (int(v) for v in args.crop.split(","))
        panels = [p[y:y + h, x:x + w] for p in panels]
    h, w = panels[0].shape[:2]
    gap = 8
    canvas = Image.new("RGB", (3 * w + 2 * gap, h + 22), "white")
    d = ImageDraw.Draw(canvas)
    labels = ["original", f".ldz {nb:,} B ({nb * 8 / px:.3f} bpp)",
              f"JPEG q{jq} {jb:,} B ({jb * 8 / px:.3f} bpp)"]
    for i, (p, t) in enumerate(zip(panels, labels)):
        canvas.paste(Image.fromarray(p), (i * (w + gap), 22))
        d.text((i * (w + gap) + 4, 5), t, fill="black")
    canvas.save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
