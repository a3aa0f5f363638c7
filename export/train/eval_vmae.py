"""Reconstruction quality of a trained photo VMAE (PyTorch reference model).

    python3 export/train/eval_vmae.py /work/artifacts/vmae-photo/vmae_photo.pth
        [--photos DIR] [--save DIR]

Each photo is centre-cropped to a multiple of the model's image size (at its
native resolution), cut into non-overlapping image_size x image_size tiles,
encoded (posterior mean) and decoded tile by tile, converted to uint8 the
official way and stitched; PSNR (RGB, 8-bit), SSIM and MS-SSIM
(pytorch_msssim) and LPIPS-Alex are computed on the stitched image (so tile
seams count). Default photos: the held-out validation photos of
photo_data.VAL.
"""

import argparse
import glob
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import ldmae_ref as ref  # noqa: E402
from lpips import LPIPS  # noqa: E402
import photo_data  # noqa: E402
import train_vmae  # noqa: E402,F401  (adds its PHOTO_ARCHS to ref.VMAE_ARCHS)


def arch_hint(path):
    """The arch recorded in train_args.json next to the checkpoint, if any
    (head counts are not visible in the tensors)."""
    import json
    f = os.path.join(os.path.dirname(os.path.abspath(path)), "train_args.json")
    if os.path.exists(f):
        return json.load(open(f)).get("arch")
    return None


def load_vmae(path, arch=None):
    sd = torch.load(path, map_location="cpu", weights_only=False)["model"]
    if "mask_token" in sd:          # a train_state.pt of train_vmae.py
        sd = {k[5:]: v for k, v in sd.items() if k.startswith("vmae.")}
    arch = arch or arch_hint(path)
    names = [arch] if arch else list(ref.VMAE_ARCHS)
    for name in names:
        cfg = ref.VMAE_ARCHS[name]
        e, L = cfg["embed_dim"], cfg["latent_dim"]
        if (sd["patch_embed.proj.weight"].shape[0] == e
                and sd["to_latent.weight"].shape[0] == 2 * L
                and sum(k.startswith("blocks.") and k.endswith("norm1.weight")
                        for k in sd) == cfg["depth"]
                and sum(k.startswith("decoder_blocks.")
                        and k.endswith("norm1.weight") for k in sd)
                == cfg["dec_depth"]):
            grid = int(round(sd["pos_embed"].shape[1] ** 0.5))
            m = ref.VMAE(grid * cfg["patch"], **cfg)
            m.load_state_dict(sd, strict=True)
            return m.eval(), name, grid * cfg["patch"]
    raise SystemExit("no VMAE_ARCHS entry matches the checkpoint")


@torch.no_grad()
def reconstruct(m, img, size, batch=16):
    """uint8 HWC (H, W multiples of size) -> reconstructed uint8 HWC."""
    h, w = img.shape[:2]
    tiles = [img[y:y + size, x:x + size]
             for y in range(0, h, size) for x in range(0, w, size)]
    out = []
    for i in range(0, len(tiles), batch):
        x = photo_data.to_tensor(np.stack(tiles[i:i + batch]))
        mean, _ = m.posterior(m.encode_params(x))
        out.append(ref.VMAE.to_uint8(m.decode(mean)).numpy())
    out = np.concatenate(out)
    cols = w // size
    rows = [np.concatenate(list(out[r * cols:(r + 1) * cols]), 1)
            for r in range(h // size)]
    return np.concatenate(rows, 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("--photos", help="directory of PNGs (default: VAL list)")
    ap.add_argument("--save", help="write reconstructions here")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arch", help="VMAE_ARCHS entry (default: train_args.json "
                    "next to the checkpoint, else the first whose shapes match; "
                    "head counts cannot be told from the shapes)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from pytorch_msssim import ms_ssim, ssim

    m, name, size = load_vmae(args.ckpt, args.arch)
    print(f"{args.ckpt}: arch {name}, image size {size}")
    lp = LPIPS("alex")
    files = sorted(glob.glob(os.path.join(args.photos, "*.png"))) \
        if args.photos else photo_data.VAL
    if args.save:
        os.makedirs(args.save, exist_ok=True)
    res = []
    for f in files:
        a = photo_data.val_photo(f, size)
        r = reconstruct(m, a, size)
        ta = torch.from_numpy(np.array(a, np.float32)).permute(2, 0, 1)[None]
        tr = torch.from_numpy(np.array(r, np.float32)).permute(2, 0, 1)[None]
        mse = np.mean((a.astype(np.float64) - r) ** 2)
        row = dict(psnr=10 * np.log10(255 ** 2 / mse),
                   ssim=ssim(ta, tr, data_range=255).item(),
                   msssim=ms_ssim(ta, tr, data_range=255).item()
                   if min(a.shape[:2]) > 160 else float("nan"),
                   lpips=lp(ta / 127.5 - 1, tr / 127.5 - 1).item())
        res.append(row)
        print(f"  {os.path.basename(f):36s} {a.shape[1]}x{a.shape[0]}  "
              f"PSNR {row['psnr']:.2f}  SSIM {row['ssim']:.4f}  "
              f"MS-SSIM {row['msssim']:.4f}  LPIPS {row['lpips']:.4f}")
        if args.save:
            from PIL import Image
            base = os.path.splitext(os.path.basename(f))[0]
            Image.fromarray(np.concatenate([a, r], 1)).save(
                os.path.join(args.save, base + "_orig_recon.png"))
    mean = {k: float(np.nanmean([r[k] for r in res])) for k in res[0]}
    print(f"mean over {len(res)}: PSNR {mean['psnr']:.2f}  SSIM "
          f"{mean['ssim']:.4f}  MS-SSIM {mean['msssim']:.4f}  "
          f"LPIPS {mean['lpips']:.4f}")


if __name__ == "__main__":
    main()
