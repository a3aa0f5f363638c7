"""Where a training step's time goes on this CPU (export/train/README.md):

    python3 export/train/bench_step.py [--batch 16] [--threads 2] [--crops export/train/data/crops192.npy]

Times (mean of 3 after one warm-up): VMAE forward+backward of a batch for
mae_for_ldmae_photo (8 heads, ldmae_ref attention) and mae_for_ldmae_photo_h4
(4 heads, SDPA), each in float32 and under bf16 autocast; LPIPS-VGG
forward+backward on 2 and 4 images (float32, bf16); one data batch from the
pre-cut array and from the photo pyramids (photo_data.TrainCrops).
"""

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train_vmae as T  # noqa: E402
import ldmae_ref as ref  # noqa: E402
import photo_data  # noqa: E402
from lpips import LPIPS  # noqa: E402


def tm(f, n=3):
    f()
    t = time.time()
    for _ in range(n):
        f()
    return (time.time() - t) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--crops", default=os.path.join(HERE, "data", "crops192.npy"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    b = args.batch
    x = torch.rand(b, 3, 128, 128) * 2 - 1
    ref_attn = ref.attention
    for arch, sdpa in (("mae_for_ldmae_photo", False), ("mae_for_ldmae_photo_h4", True)):
        ref.attention = (lambda q, k, v: F.scaled_dot_product_attention(q, k, v)) if sdpa else ref_attn
        m = T.build_vmae(arch, 128)

        def step(bf):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf):
                out = m.decode(m.posterior(m.encode_params(x))[0])
            (out.float() - x).pow(2).mean().backward()
        t32 = tm(lambda: step(False))
        t16 = tm(lambda: step(True), 1)
        print(f"VMAE {arch} ({'sdpa' if sdpa else 'ref'} attention) batch {b} fwd+bwd: "
              f"fp32 {t32:.2f} s ({b / t32:.1f} img/s), bf16 autocast {t16:.2f} s", flush=True)
    ref.attention = ref_attn
    lp = LPIPS("vgg")
    for k in (2, 4):
        xa = x[:k].clone().requires_grad_(True)

        def lstep(bf):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf):
                v = lp(xa, x[:k].flip(0)).float().mean()
            v.backward()
        print(f"LPIPS-VGG {k} images fwd+bwd: fp32 {tm(lambda: lstep(False)):.2f} s, "
              f"bf16 autocast {tm(lambda: lstep(True), 1):.2f} s", flush=True)
    if os.path.exists(args.crops):
        d = T.ArrayCrops(args.crops, 128)
        print(f"data batch from {os.path.basename(args.crops)}: "
              f"{tm(lambda: d.batch(b, 1), 10) * 1e3:.1f} ms", flush=True)
    d = photo_data.TrainCrops(128)
    print(f"data batch from photo pyramids: {tm(lambda: d.batch(b, 1), 10) * 1e3:.1f} ms", flush=True)


if __name__ == "__main__":
    main()
