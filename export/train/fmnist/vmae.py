"""Train the Fashion-MNIST demo VMAE (ldmae_ref.VMAE, 32x32 RGB -> 4x8x8 latent).

    python vmae.py --out /work/artifacts/fmnist [--minutes 10] [--resume]

Recipe (LDMAE VMAE stage 1 + stage 3, scaled down, no LPIPS at 32x32):
  stage 1: MAE masking (ratio 0.25): masked tokens are dropped from the encoder and
    replaced by a training-only mask token before the decoder; the decoder sees a
    posterior *sample*; loss = 0.25*MSE(masked patches) + 0.75*MSE(visible patches)
    + kl_w * KL(N(mu, s^2) || N(mu, fixed_std^2)) (only the variance is pulled to a
    fixed small std, the mean is not regularised).
  stage 2 (last --stage2-frac of the time): no masking, MSE of the decoded posterior
    mean (as the paper's fine-tuning stage, KL weight 0).
Outputs: vmae_fmnist.pth ({"model": sd}, official format; mask token dropped),
latents_train.pt (posterior params of the 60k train images), latents_stats.pt.
"""

import argparse
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn

import common as C


class MaskedVMAE(nn.Module):
    """Training wrapper: the exported VMAE plus a mask token (training only)."""

    def __init__(self):
        super().__init__()
        self.vmae = C.make_vmae()
        self.mask_token = nn.Parameter(
            0.02 * torch.randn(1, 1, C.VMAE_CFG["dec_embed_dim"]))
        # Start the log-variance head at the KL target (log fixed_std^2).
        lat = C.VMAE_CFG["latent_dim"]
        with torch.no_grad():
            self.vmae.to_latent.weight[lat:] *= 0.01
            self.vmae.to_latent.bias[lat:] = 2 * math.log(1e-3)

    def forward(self, x, mask_ratio, sample=True):
        v = self.vmae
        b = x.shape[0]
        tok = v.patch_embed(x) + v.pos_embed                  # (B,N,D)
        n = tok.shape[1]
        keep_n = n - int(round(mask_ratio * n))
        if keep_n < n:
            order = torch.rand(b, n).argsort(1)
            keep = order[:, :keep_n]
            h = torch.gather(tok, 1, keep[..., None].expand(-1, -1, tok.shape[2]))
        else:
            keep = None
            h = tok
        for blk in v.blocks:
            h = blk(h)
        p = v.to_latent(v.norm(h))                            # (B,K,2L)
        mean, logvar = p.chunk(2, dim=-1)
        logvar = logvar.clamp(ref_min(), ref_max())
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean) if sample else mean
        d = v.decoder_embed(v.from_latent(z))                 # (B,K,Dd)
        if keep is not None:
            full = self.mask_token.expand(b, n, -1).clone()
            full.scatter_(1, keep[..., None].expand(-1, -1, d.shape[2]), d)
            d = full
            masked = torch.ones(b, n, dtype=torch.bool)
            masked.scatter_(1, keep, False)
        else:
            masked = torch.zeros(b, n, dtype=torch.bool)
        d = d + v.decoder_pos_embed
        for blk in v.decoder_blocks:
            d = blk(d)
        g = int(math.isqrt(n))
        out = v.decoder_pred(v.decoder_norm(d), g, g)
        return out, masked, mean, logvar


def ref_min():
    return C.ref.LOGVAR_MIN


def ref_max():
    return C.ref.LOGVAR_MAX


def patch_mse(out, x, masked, patch):
    """Per-token MSE (B,N) on patch x patch pixel blocks."""
    e = (out - x).pow(2).mean(1)                              # (B,H,W)
    b, hh, ww = e.shape
    e = e.reshape(b, hh // patch, patch, ww // patch, patch).mean((2, 4))
    return e.reshape(b, -1)


@torch.no_grad()
def encode_all(vmae, imgs, bs=500):
    out = []
    for i in range(0, len(imgs), bs):
        out.append(vmae.encode_params(C.to_model_input(imgs[i:i + bs])))
    return torch.cat(out)


def main():
    ap = argparse.ArgumentParser()
    C.training_args(ap, minutes=10.0, batch=32, lr=1e-3)
    ap.add_argument("--stage2-frac", type=float, default=0.2)
    ap.add_argument("--warmup", type=int, default=40)
    ap.add_argument("--mask-ratio", type=float, default=0.25)
    ap.add_argument("--kl-weight", type=float, default=1e-6)
    ap.add_argument("--fixed-std", type=float, default=1e-3)
    a = ap.parse_args()
    C.setup(a.threads)
    os.makedirs(a.out, exist_ok=True)
    log = C.Logger(os.path.join(a.out, "vmae.log"))
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)

    imgs, _ = C.load_split("train")
    timgs, _ = C.load_split("t10k")
    val = C.to_model_input(timgs[:256])
    model = MaskedVMAE()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95),
                            weight_decay=0.05)
    state_path = os.path.join(a.out, "vmae_train_state.pt")
    step, elapsed, done = 0, 0.0, False
    if a.resume and os.path.exists(state_path):
        st = torch.load(state_path, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, elapsed, done = st["step"], st["elapsed"], st.get("done", False)
        torch.set_rng_state(st["rng"])
        log(f"resumed at step {step}, {elapsed:.0f}s trained")
    budget = a.minutes * 60
    log(f"config {C.VMAE_CFG} params "
        f"{sum(p.numel() for p in model.vmae.parameters() if p.requires_grad)} "
        f"args {vars(a)}")
    patch = C.VMAE_CFG["patch"]
    t_last_save = time.time()
    t0 = time.time() - elapsed
    ema_loss = None
    while not done:
        elapsed = time.time() - t0
        if elapsed >= budget:
            break
        frac = elapsed / budget
        stage2 = frac >= 1 - a.stage2_frac
        # lr: linear warmup, cosine to 10% over the time budget
        lr = a.lr * min(1.0, (step + 1) / a.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for gp in opt.param_groups:
            gp["lr"] = lr
        idx = torch.randint(0, len(imgs), (a.batch,))
        x = C.to_model_input(imgs[idx.numpy()])
        flip = torch.rand(a.batch) < 0.5
        x[flip] = x[flip].flip(-1)
        model.train()
        if not stage2:
            out, masked, mean, logvar = model(x, a.mask_ratio, sample=True)
            e = patch_mse(out, x, masked, patch)
            m = masked.float()
            mse_m = (e * m).sum() / m.sum().clamp(min=1)
            mse_v = (e * (1 - m)).sum() / (1 - m).sum().clamp(min=1)
            var_ratio = torch.exp(logvar) / a.fixed_std ** 2
            kl = 0.5 * (var_ratio - 1 - torch.log(var_ratio)).sum((1, 2)).mean()
            loss = 0.25 * mse_m + 0.75 * mse_v + a.kl_weight * kl
        else:
            out, masked, mean, logvar = model(x, 0.0, sample=False)
            loss = (out - x).pow(2).mean()
            kl = torch.zeros(())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        ema_loss = loss.item() if ema_loss is None else 0.98 * ema_loss + 0.02 * loss.item()
        if step % 100 == 0:
            with torch.no_grad():
                model.eval()
                p = model.vmae.encode_params(val)
                mu, lv = model.vmae.posterior(p)
                rec = model.vmae.decode(mu)
                vmse = (rec - val).pow(2).mean().item()
                psnr = 10 * math.log10(4 / vmse)
            log(f"step {step} stage {2 if stage2 else 1} lr {lr:.2e} loss {loss.item():.5f} "
                f"(ema {ema_loss:.5f}) kl {kl.item():.1f} val_mse {vmse:.5f} "
                f"val_psnr {psnr:.2f}dB std {torch.exp(0.5 * lv).mean().item():.2e} "
                f"img/s {step * a.batch / (time.time() - t0):.1f}")
        if time.time() - t_last_save > 120:
            C.save_atomic({"model": model.state_dict(), "opt": opt.state_dict(),
                           "step": step, "elapsed": time.time() - t0,
                           "rng": torch.get_rng_state()}, state_path)
            t_last_save = time.time()
    C.save_atomic({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                   "elapsed": time.time() - t0, "rng": torch.get_rng_state(),
                   "done": True}, state_path)
    vm = model.vmae.eval()
    sd = {k: v.detach().clone() for k, v in vm.state_dict().items()}
    C.save_atomic({"model": sd}, os.path.join(a.out, "vmae_fmnist.pth"))
    log(f"saved vmae_fmnist.pth after {step} steps")

    # Posterior params of the whole train set (DiT training data) and stats.
    lat_path = os.path.join(a.out, "latents_train.pt")
    if not (a.resume and os.path.exists(lat_path)):
        t1 = time.time()
        params = encode_all(vm, imgs)
        _, labels = C.load_split("train")
        C.save_atomic({"params": params, "labels": torch.from_numpy(labels)}, lat_path)
        log(f"encoded train set {tuple(params.shape)} in {time.time() - t1:.0f}s")
    params = torch.load(lat_path)["params"]
    mean, logvar = vm.posterior(params)
    # Statistics of the posterior means (std ~1e-3, so means ~ samples),
    # per channel over (N,H,W), unbiased std as the official file.
    L = mean.shape[1]
    flat = mean.transpose(0, 1).reshape(L, -1).double()
    stats = {"mean": flat.mean(1).float().reshape(1, L, 1, 1),
             "std": flat.std(1, unbiased=True).float().reshape(1, L, 1, 1)}
    torch.save(stats, os.path.join(a.out, "latents_stats.pt"))
    log(f"latents_stats mean {stats['mean'].flatten().tolist()} "
        f"std {stats['std'].flatten().tolist()} posterior std mean "
        f"{torch.exp(0.5 * logvar).mean().item():.2e}")
    with torch.no_grad():
        p = vm.encode_params(C.to_model_input(timgs[:1000]))
        rec = vm.decode(vm.posterior(p)[0])
        vmse = (rec - C.to_model_input(timgs[:1000])).pow(2).mean().item()
    log(f"final test (1000 imgs) mse {vmse:.5f} psnr {10 * math.log10(4 / vmse):.2f}dB")


if __name__ == "__main__":
    main()
