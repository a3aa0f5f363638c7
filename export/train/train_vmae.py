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
  phase 3  (--steps3) the decoder only (from_latent onwards) on *quantised*
           latents exactly as the .ldz codec quantises them
           (src/codec/quantize.rs): per image, one step for all channels =
           spread*0.5*2^((50-q)/12.5) around each channel's mean (f16 offset
           and step), spread = RMS channel std of the latent, q drawn
           uniformly from [--q-lo, --q-hi] per image; loss = MSE +
           w_p3*LPIPS-VGG. The encoder is frozen, so rounding needs no
           straight-through gradient and the codec's latent statistics (and
           hence its rate at a given quality) do not change.
Position tables are the fixed 2-D sin-cos tables (stored in the state dict).
Data: random crops, at random downscales, of the training photos in
photo_data.py (photo24 test photos and the validation photos are excluded);
with --crops ARRAY.npy (make_crops.py) random 128 px windows of pre-cut
multi-scale regions instead (no image work per step).
Attention runs through F.scaled_dot_product_attention (--attn sdpa, same
maths as ldmae_ref.attention, faster). On CUDA (--device cuda) the VMAE and
LPIPS run under bf16 autocast; on CPU everything is float32 (bf16 autocast
was ~20x slower on an AVX2-only CPU).
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

# Training-side architecture entries (same VMAE class; the Rust side reads
# the shapes from the tensors and the head counts from --heads /
# --decoder-heads of ldmae-export).
PHOTO_ARCHS = {
    # mae_for_ldmae_photo with 4 heads of dim 32 instead of 8 of dim 16:
    # same parameters, ~2x faster training step on CPU.
    "mae_for_ldmae_photo_h4": dict(
        patch=8, embed_dim=128, depth=4, heads=4, dec_embed_dim=128,
        dec_depth=4, dec_heads=4, mlp_ratio=4, latent_dim=8),
}
for _k, _v in PHOTO_ARCHS.items():
    ref.VMAE_ARCHS.setdefault(_k, _v)


def use_sdpa():
    ref.attention = lambda q, k, v: F.scaled_dot_product_attention(q, k, v)


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

class ArrayCrops:
    """Random crop x crop windows (+ horizontal flips) of a uint8
    (N, S, S, 3) array of pre-cut regions (make_crops.py: .npy, or its
    lossless pack_gpu_data.py copy .webp.npz); deterministic in (seed, step)
    like photo_data.TrainCrops. The array lives on `device`; a batch is one
    gather."""

    def __init__(self, path, crop, seed=0, device="cpu"):
        if path.endswith(".webp.npz"):
            from pack_gpu_data import load_webp_npz
            a = load_webp_npz(path)
        else:
            a = np.load(path)
        assert a.ndim == 4 and a.shape[1] >= crop, a.shape
        self.shape, self.nbytes = a.shape, a.nbytes
        self.a = torch.from_numpy(a).to(device)
        self.crop, self.seed, self.device, self.path = crop, seed, device, path
        self.ar = torch.arange(crop, device=device)

    def describe(self):
        return (f"train data: {self.path} {tuple(self.shape)} uint8 "
                f"({self.nbytes / 2**20:.1f} MiB)")

    def batch(self, n, step):
        rng = np.random.default_rng([self.seed, step])
        c, s = self.crop, self.shape[1]
        dev = self.device
        idx = torch.from_numpy(rng.integers(0, self.shape[0], n)).to(dev)
        ys = torch.from_numpy(rng.integers(0, s - c + 1, n)).to(dev)
        xs = torch.from_numpy(rng.integers(0, s - c + 1, n)).to(dev)
        flip = torch.from_numpy(rng.random(n) < 0.5).to(dev)
        rows = ys[:, None] + self.ar                             # (n,c)
        cols = xs[:, None] + torch.where(flip[:, None], c - 1 - self.ar, self.ar)
        out = self.a[idx[:, None, None], rows[:, :, None], cols[:, None, :]]
        return out.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def codec_quantize(z, q):
    """The .ldz quantiser (src/codec/quantize.rs) on latents z (B,L,h,w),
    one quality per image (q: (B,) tensor): round((z - mean_c)/step)*step
    + mean_c, step = spread*0.5*2^((50-q)/12.5), spread = RMS of the
    per-channel std, offset and step rounded to f16 like the file does."""
    zf = z.float()
    mean = zf.mean((2, 3), keepdim=True)
    var = (zf - mean).pow(2).mean((2, 3))                    # (B,L)
    spread = var.mean(1).sqrt()                              # (B,)
    step = (spread * 0.5 * torch.exp2((50.0 - q.float()) / 12.5)).clamp(min=1e-3)
    step = step.half().float()[:, None, None, None]
    off = mean.half().float()
    return torch.round((zf - off) / step) * step + off


def lr_at(step, total, warmup, base, minimum):
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return minimum + 0.5 * (base - minimum) * (1 + math.cos(math.pi * t))


@torch.no_grad()
def quick_val(vmae, val_batch, lp_alex=None, q=None):
    """Mean PSNR (and LPIPS-Alex) of the validation crops, on the posterior
    mean or (q given) on its codec-quantised version."""
    vmae.eval()
    mean, _ = vmae.posterior(vmae.encode_params(val_batch))
    if q is not None:
        mean = codec_quantize(mean, torch.full((mean.shape[0],), float(q),
                                               device=mean.device))
    out = vmae.decode(mean).float().clamp(-1, 1)
    vmae.train()
    mse = ((out - val_batch) / 2).pow(2).mean((1, 2, 3))
    psnr = (10 * torch.log10(1 / mse)).mean().item()
    lpv = lp_alex(out, val_batch).mean().item() if lp_alex is not None else float("nan")
    return psnr, lpv


def save_state(path, model, opt, step, args):
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                "step": step, "args": vars(args),
                "torch_rng": torch.get_rng_state()}, tmp)
    os.replace(tmp, path)


def export_checkpoint(vmae, path):
    sd = {k: v.detach().float().cpu().clone().contiguous()
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
    ap.add_argument("--arch", default="mae_for_ldmae_photo_h4")
    ap.add_argument("--crops", help="uint8 (N,S,S,3) .npy of make_crops.py "
                    "(default: crops cut from the photos every step)")
    ap.add_argument("--attn", choices=["sdpa", "ref"], default="sdpa")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--img-size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps1", type=int, default=3000,
                    help="phase-1 (masked) steps")
    ap.add_argument("--steps2", type=int, default=500,
                    help="phase-2 (mask ratio 0, decoder tuning) steps")
    ap.add_argument("--steps3", type=int, default=0,
                    help="phase-3 steps: decoder on codec-quantised latents")
    ap.add_argument("--q-lo", type=float, default=25)
    ap.add_argument("--q-hi", type=float, default=55)
    ap.add_argument("--lr3", type=float, default=2e-4)
    ap.add_argument("--w-lpips3", type=float, default=0.1)
    ap.add_argument("--val-q", type=int, default=40,
                    help="quality of the quantised validation PSNR/LPIPS")
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
    torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if args.attn == "sdpa":
        use_sdpa()
    os.makedirs(args.out, exist_ok=True)
    state_path = os.path.join(args.out, "train_state.pt")

    vmae = build_vmae(args.arch, args.img_size)
    init_weights(vmae, args.fixed_std)
    model = MaskedVMAE(vmae).to(dev)
    lp = LPIPS("vgg").to(dev)
    lp_alex = LPIPS("alex").to(dev)
    for p in list(lp.parameters()) + list(lp_alex.parameters()):
        p.requires_grad_(False)
    enc_names = ("patch_embed.", "blocks.", "norm.", "to_latent.")
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
        st = torch.load(state_path, map_location=dev, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step = st["step"]
        torch.set_rng_state(st["torch_rng"].cpu())
        print(f"resumed from {state_path} at step {step}", flush=True)

    n_params = sum(p.numel() for p in vmae.parameters())
    print(f"arch {args.arch} {ref.VMAE_ARCHS[args.arch]} img {args.img_size} "
          f"params {n_params:,}", flush=True)

    data = ArrayCrops(args.crops, args.img_size, args.seed, dev) if args.crops \
        else photo_data.TrainCrops(args.img_size, seed=args.seed)
    print(data.describe(), flush=True)
    val_batch = photo_data.val_crops(args.img_size, per_photo=8).to(dev)
    print(f"quick-val crops: {tuple(val_batch.shape)}", flush=True)

    s12 = args.steps1 + args.steps2
    total = s12 + args.steps3
    if args.bench:
        plan = [(0, args.bench), (args.steps1, args.bench), (s12, args.bench)]
    else:
        plan = [(step, total - step)]
    t0 = time.time()
    t_data = 0.0
    acc = {}
    for start, count in plan:
        tb = time.time()
        for step in range(start, start + count):
            phase3 = step >= s12
            phase2 = args.steps1 <= step < s12
            for n_, p_ in model.named_parameters():
                p_.requires_grad_(not (phase3 and (n_.startswith("vmae.") and
                                      n_[5:].startswith(enc_names)
                                      or n_ == "mask_token")))
            if phase3:
                lr = lr_at(step - s12, args.steps3,
                           min(50, args.steps3 // 10), args.lr3, args.min_lr)
            elif phase2:
                lr = lr_at(step - args.steps1, args.steps2,
                           min(50, args.steps2 // 10), args.lr2, args.min_lr)
            else:
                lr = lr_at(step, args.steps1, args.warmup, args.lr, args.min_lr)
            for g in opt.param_groups:
                g["lr"] = lr
            td = time.time()
            x = data.batch(args.batch, step)
            if not cuda:
                t_data += time.time() - td
            amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)
            if phase3:
                with torch.no_grad(), amp:
                    mean, logvar = vmae.posterior(vmae.encode_params(x))
                qs = torch.empty(x.shape[0], device=dev).uniform_(args.q_lo, args.q_hi)
                with amp:
                    out = vmae.decode(codec_quantize(mean, qs)).float()
                mse = (out - x).pow(2).mean()
                loss = mse
                parts = {"mse": mse.item()}
                wp = args.w_lpips3
            elif phase2:
                with amp:
                    out, keep, mean, logvar = model(x, 0.0, sample=False)
                out = out.float()
                mse = (out - x).pow(2).mean()
                loss = mse
                parts = {"mse": mse.item()}
                wp = args.w_lpips2
            else:
                with amp:
                    out, keep, mean, logvar = model(x, args.mask_ratio)
                out, logvar = out.float(), logvar.float()
                msk, vis = patch_mse(out, x, keep, vmae.patch)
                kl = variance_kl(logvar, args.fixed_std)
                loss = args.w_masked * msk + args.w_visible * vis \
                    + args.w_kl * kl
                parts = {"mse_m": msk.item(), "mse_v": vis.item(),
                         "kl": kl.item()}
                wp = args.w_lpips
            if wp > 0 and step % args.lpips_every == 0:
                with amp:
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
                ph = 3 if phase3 else 2 if phase2 else 1
                print(f"step {done}/{total} phase {ph} "
                      f"lr {lr:.2e} {msg} post_std {sd:.2e} "
                      f"data {t_data:.1f}s elapsed {el/60:.1f}m", flush=True)
                acc = {}
            if args.bench:
                continue
            if done % args.val_every == 0 or done == total:
                p0, l0 = quick_val(vmae, val_batch, lp_alex)
                pq, lq = quick_val(vmae, val_batch, lp_alex, args.val_q)
                print(f"val step {done} psnr {p0:.3f} lpips_alex {l0:.4f} | "
                      f"quantised q{args.val_q}: psnr {pq:.3f} lpips_alex {lq:.4f}",
                      flush=True)
            if done % args.save_every == 0 or done == total:
                save_state(state_path, model, opt, done, args)
            if done in (args.steps1, s12) and done != total or done == total:
                name = "vmae_photo.pth" if done == total else \
                    "vmae_photo_phase1.pth" if done == args.steps1 else "vmae_photo_phase2.pth"
                export_checkpoint(vmae, os.path.join(args.out, name))
                print(f"wrote {name}", flush=True)
        if args.bench:
            ph = 3 if start >= s12 else 2 if start >= args.steps1 else 1
            print(f"bench: {(time.time() - tb) / count:.2f} s/step "
                  f"(phase {ph})", flush=True)
    if not args.bench:
        with open(os.path.join(args.out, "train_args.json"), "w") as f:
            json.dump(vars(args), f, indent=1)
        print(f"done in {(time.time() - t0) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
