"""Train a small photo VMAE (our ldmae_ref.VMAE architecture) on CPU.

    nice -n 10 python3 export/train/train_vmae.py --out /work/artifacts/vmae-photo
    (add --resume to continue from <out>/train_state.pt)

Recipe = the paper's VMAE recipe (spec §1.8) scaled down:
  phase 1  MAE pre-training: a random `--mask-ratio` of the patch tokens is
           dropped from the encoder input; a training-only mask token is
           re-inserted (after decoder_embed) before the decoder.
           loss = w_m*MSE(masked patches) + w_v*MSE(visible patches)
                  + w_p*LPIPS-VGG + w_kl*KL(N(mu, s^2) || N(mu, fixed_std^2))
           The KL pulls only the posterior variance toward fixed_std; the
           mean is not regularised. z is a posterior sample.
  phase 2  decoder tuning at mask ratio 0 on the posterior mean:
           loss = MSE + w_p2*LPIPS-VGG (all weights train, as in the paper).
Position tables are the fixed 2-D sin-cos tables (stored in the state dict).
Data: random crops, at random downscales, of the training photos in
photo_data.py (photo24 test photos and the validation photos are excluded).
Output: <out>/vmae_photo.pth = {"model": VMAE.state_dict()} (inference
tensors only: no mask token, no LPIPS weights).
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import ldmae_ref as ref  # noqa: E402
from lpips import LPIPS  # noqa: E402
import photo_data  # noqa: E402
from sincos_vmae import vmae_with_sincos  # noqa: E402


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------

def build_vmae(arch, img_size):
    return vmae_with_sincos(img_size=img_size, **ref.VMAE_ARCHS[arch])


def init_weights(m, fixed_std):
    """MAE-style init; the logvar half of to_latent starts at log(fixed_std^2)
    so that the variance KL starts near 0."""
    for mod in m.modules():
        if isinstance(mod, nn.Linear):
            nn.init.xavier_uniform_(mod.weight)
            nn.init.zeros_(mod.bias)
        elif isinstance(mod, nn.LayerNorm):
            nn.init.ones_(mod.weight)
            nn.init.zeros_(mod.bias)
    w = m.patch_embed.proj.weight
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    nn.init.zeros_(m.patch_embed.proj.bias)
    L = m.latent_dim
    with torch.no_grad():
        m.to_latent.weight[L:].zero_()
        m.to_latent.bias[L:].fill_(2 * math.log(fixed_std))
        # conv_smoother starts as identity (+ small noise): the linear head
        # alone already maps tokens to pixels.
        cs = m.decoder_pred.conv_smoother
        cs.weight.zero_()
        for c in range(3):
            cs.weight[c, c, 1, 1] = 1.0
        cs.weight.add_(0.01 * torch.randn_like(cs.weight))
        cs.bias.zero_()


class MaskedVMAE(nn.Module):
    """Training wrapper: the VMAE plus a training-only mask token."""

    def __init__(self, vmae):
        super().__init__()
        self.vmae = vmae
        dec_dim = vmae.decoder_embed.out_features
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_dim))
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, x, mask_ratio, sample=True):
        """Returns (recon, keep (B,N) bool, mean, logvar) with mean/logvar
        only for the visible tokens (B, Nv, L)."""
        m = self.vmae
        b, _, hh, ww = x.shape
        p = m.patch
        gh, gw = hh // p, ww // p
        n = gh * gw
        tok = m.patch_embed(x) + m.pos_embed                    # (B,N,E)
        n_keep = n - int(round(n * mask_ratio))
        if n_keep < n:
            noise = torch.rand(b, n, device=x.device)
            idx = noise.argsort(1)[:, :n_keep].sort(1).values    # visible
            tok = tok.gather(1, idx[..., None].expand(-1, -1, tok.shape[-1]))
            keep = torch.zeros(b, n, dtype=torch.bool, device=x.device)
            keep.scatter_(1, idx, True)
        else:
            idx = None
            keep = torch.ones(b, n, dtype=torch.bool, device=x.device)
        for blk in m.blocks:
            tok = blk(tok)
        params = m.to_latent(m.norm(tok))                        # (B,Nv,2L)
        mean, logvar = params.chunk(2, dim=-1)
        logvar = logvar.clamp(ref.LOGVAR_MIN, ref.LOGVAR_MAX)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean) \
            if sample else mean
        h = m.decoder_embed(m.from_latent(z))                    # (B,Nv,D)
        if idx is not None:
            full = self.mask_token.expand(b, n, -1).clone()
            full = full.scatter(1, idx[..., None].expand(-1, -1, h.shape[-1]), h)
            h = full
        h = h + m.decoder_pos_embed
        for blk in m.decoder_blocks:
            h = blk(h)
        out = m.decoder_pred(m.decoder_norm(h), gh, gw)
        return out, keep, mean, logvar


def variance_kl(logvar, fixed_std):
    """KL(N(mu, s^2) || N(mu, fixed_std^2)) summed over latent elements,
    averaged over the batch: only the variance is pulled."""
    r = torch.exp(logvar) / fixed_std ** 2
    return 0.5 * (r - 1.0 - torch.log(r)).sum((1, 2)).mean()


def patch_mse(out, x, keep, patch):
    """Mean squared error per patch -> (masked mean, visible mean)."""
    b, _, hh, ww = x.shape
    se = (out - x).pow(2).mean(1)                                # (B,H,W)
    se = se.reshape(b, hh // patch, patch, ww // patch, patch).mean((2, 4))
    se = se.flatten(1)                                           # (B,N)
    kf = keep.float()
    vis = (se * kf).sum() / kf.sum().clamp(min=1)
    msk = (se * (1 - kf)).sum() / (1 - kf).sum().clamp(min=1)
    return msk, vis


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------

def lr_at(step, total, warmup, base, minimum):
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return minimum + 0.5 * (base - minimum) * (1 + math.cos(math.pi * t))


@torch.no_grad()
def quick_val(vmae, val_batch):
    vmae.eval()
    mean, _ = vmae.posterior(vmae.encode_params(val_batch))
    out = vmae.decode(mean).clamp(-1, 1)
    vmae.train()
    mse = ((out - val_batch) / 2).pow(2).mean((1, 2, 3))
    return (10 * torch.log10(1 / mse)).mean().item()


def save_state(path, model, opt, step, args):
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                "step": step, "args": vars(args),
                "torch_rng": torch.get_rng_state()}, tmp)
    os.replace(tmp, path)


def export_checkpoint(vmae, path):
    sd = {k: v.detach().clone().float().contiguous()
          for k, v in vmae.state_dict().items()}
    # Serialise with the final file name as the archive root (torch.save
    # derives it from the path), write to a temp file, then rename.
    tmpdir = os.path.join(os.path.dirname(path), ".tmp_export")
    os.makedirs(tmpdir, exist_ok=True)
    tmp = os.path.join(tmpdir, os.path.basename(path))
    torch.save({"model": sd}, tmp)
    os.replace(tmp, path)
    try:
        os.rmdir(tmpdir)
    except OSError:
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default="/work/artifacts/vmae-photo")
    ap.add_argument("--arch", default="mae_for_ldmae_photo")
    ap.add_argument("--img-size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps1", type=int, default=3000,
                    help="phase-1 (masked) steps")
    ap.add_argument("--steps2", type=int, default=500,
                    help="phase-2 (mask ratio 0, decoder tuning) steps")
    ap.add_argument("--mask-ratio", type=float, default=0.25)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr2", type=float, default=2e-4)
    ap.add_argument("--min-lr", type=float, default=2e-5)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--w-masked", type=float, default=0.25)
    ap.add_argument("--w-visible", type=float, default=0.75)
    ap.add_argument("--w-lpips", type=float, default=0.5)
    ap.add_argument("--w-lpips2", type=float, default=1.0)
    ap.add_argument("--lpips-every", type=int, default=1,
                    help="apply the LPIPS term every k-th step (CPU time)")
    ap.add_argument("--lpips-subset", type=int, default=4,
                    help="LPIPS-VGG on only the first k images of each batch "
                         "(VGG costs ~6x the VMAE step on CPU); 0 = all")
    ap.add_argument("--w-kl", type=float, default=1e-6)
    ap.add_argument("--fixed-std", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--val-every", type=int, default=250)
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--bench", type=int, default=0,
                    help="time this many steps of each phase and exit")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    state_path = os.path.join(args.out, "train_state.pt")

    vmae = build_vmae(args.arch, args.img_size)
    init_weights(vmae, args.fixed_std)
    model = MaskedVMAE(vmae)
    lp = LPIPS("vgg")
    decay = [p for n, p in model.named_parameters()
             if p.ndim >= 2 and "mask_token" not in n]
    no_decay = [p for n, p in model.named_parameters()
                if not (p.ndim >= 2 and "mask_token" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.wd},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.95))

    step = 0
    if args.resume and os.path.exists(state_path):
        st = torch.load(state_path, map_location="cpu", weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step = st["step"]
        torch.set_rng_state(st["torch_rng"])
        print(f"resumed from {state_path} at step {step}", flush=True)

    n_params = sum(p.numel() for p in vmae.parameters())
    print(f"arch {args.arch} {ref.VMAE_ARCHS[args.arch]} img {args.img_size} "
          f"params {n_params:,}", flush=True)

    data = photo_data.TrainCrops(args.img_size, seed=args.seed)
    print(data.describe(), flush=True)
    val_batch = photo_data.val_crops(args.img_size, per_photo=8)
    print(f"quick-val crops: {tuple(val_batch.shape)}", flush=True)

    total = args.steps1 + args.steps2
    if args.bench:
        plan = [(0, args.bench), (args.steps1, args.bench)]
    else:
        plan = [(step, total - step)]
    t0 = time.time()
    acc = {}
    for start, count in plan:
        tb = time.time()
        for step in range(start, start + count):
            phase2 = step >= args.steps1
            if phase2:
                lr = lr_at(step - args.steps1, args.steps2,
                           min(50, args.steps2 // 10), args.lr2, args.min_lr)
            else:
                lr = lr_at(step, args.steps1, args.warmup, args.lr, args.min_lr)
            for g in opt.param_groups:
                g["lr"] = lr
            x = data.batch(args.batch, step)
            if phase2:
                out, keep, mean, logvar = model(x, 0.0, sample=False)
                mse = (out - x).pow(2).mean()
                loss = mse
                parts = {"mse": mse.item()}
                wp = args.w_lpips2
            else:
                out, keep, mean, logvar = model(x, args.mask_ratio)
                msk, vis = patch_mse(out, x, keep, vmae.patch)
                kl = variance_kl(logvar, args.fixed_std)
                loss = args.w_masked * msk + args.w_visible * vis \
                    + args.w_kl * kl
                parts = {"mse_m": msk.item(), "mse_v": vis.item(),
                         "kl": kl.item()}
                wp = args.w_lpips
            if wp > 0 and step % args.lpips_every == 0:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    k = args.lpips_subset or x.shape[0]
                    perc = lp(out[:k].clamp(-1.5, 1.5), x[:k]).float().mean()
                loss = loss + wp * args.lpips_every * perc
                parts["lpips"] = perc.item()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            parts["loss"] = loss.item()
            parts["gnorm"] = gn.item()
            for k, v in parts.items():
                acc.setdefault(k, []).append(v)
            done = step + 1
            if done % args.log_every == 0 or args.bench:
                el = time.time() - t0
                msg = " ".join(f"{k} {np.mean(v):.5g}" for k, v in acc.items())
                sd = logvar.detach().float().mul(0.5).exp().mean().item()
                print(f"step {done}/{total} phase {2 if phase2 else 1} "
                      f"lr {lr:.2e} {msg} post_std {sd:.2e} "
                      f"elapsed {el/60:.1f}m", flush=True)
                acc = {}
            if args.bench:
                continue
            if done % args.val_every == 0 or done == total:
                print(f"val step {done} psnr {quick_val(vmae, val_batch):.3f}",
                      flush=True)
            if done % args.save_every == 0 or done == total:
                save_state(state_path, model, opt, done, args)
            if done == args.steps1 or done == total:
                name = "vmae_photo.pth" if done == total else "vmae_photo_phase1.pth"
                export_checkpoint(vmae, os.path.join(args.out, name))
                print(f"wrote {name}", flush=True)
        if args.bench:
            print(f"bench: {(time.time() - tb) / count:.2f} s/step "
                  f"(phase {'2' if start >= args.steps1 else '1'})", flush=True)
    if not args.bench:
        with open(os.path.join(args.out, "train_args.json"), "w") as f:
            json.dump(vars(args), f, indent=1)
        print(f"done in {(time.time() - t0) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
