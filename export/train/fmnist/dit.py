"""Train the Fashion-MNIST teacher LightningDiT on the demo VMAE's latents.

    python dit.py --out /work/artifacts/fmnist [--minutes 30] [--resume]

Flow matching exactly as the official code (spec §4): x_t = t*x1 + (1-t)*x0 with
x0 ~ N(0,I) noise and x1 the normalised latent (posterior sample, (z-mean)/std),
target velocity x1 - x0, plain per-sample MSE, logit-normal t. 10% label dropout
to the null class (index 10). AdamW, EMA. Output: dit_teacher.pt in the official
format {"model", "ema", "opt", "config"}.
"""

import argparse
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn

import common as C


def dit_init(m):
    """DiT-style initialisation: xavier linears, adaLN-Zero, zero output layer."""
    for mod in m.modules():
        if isinstance(mod, nn.Linear):
            nn.init.xavier_uniform_(mod.weight)
            nn.init.zeros_(mod.bias)
    w = m.x_embedder.proj.weight
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    nn.init.zeros_(m.x_embedder.proj.bias)
    nn.init.normal_(m.y_embedder.embedding_table.weight, std=0.02)
    nn.init.normal_(m.t_embedder.mlp[0].weight, std=0.02)
    nn.init.normal_(m.t_embedder.mlp[2].weight, std=0.02)
    for blk in m.blocks:
        nn.init.zeros_(blk.adaLN_modulation[-1].weight)
        nn.init.zeros_(blk.adaLN_modulation[-1].bias)
    nn.init.zeros_(m.final_layer.adaLN_modulation[-1].weight)
    nn.init.zeros_(m.final_layer.adaLN_modulation[-1].bias)
    nn.init.zeros_(m.final_layer.linear.weight)
    nn.init.zeros_(m.final_layer.linear.bias)


def config_dict(cfg, steps, extra=None):
    """YAML-like config stored in the checkpoint (as the official trainer does)."""
    d = {"data": {"image_size": 32, "num_classes": cfg["num_classes"],
                  "latent_norm": True, "latent_multiplier": 1.0, "sample": True,
                  "dataset": "fashion-mnist (28x28 padded to 32x32, RGB)"},
         "vae": {"model_name": "vmae_fmnist", "downsample_ratio": 4},
         "model": {"model_type": "LightningDiT-fmnist", "hidden": cfg["hidden"],
                   "depth": cfg["depth"], "heads": cfg["heads"],
                   "use_qknorm": cfg["use_qknorm"], "use_swiglu": True,
                   "use_rope": True, "use_rmsnorm": True, "wo_shift": False,
                   "in_chans": cfg["in_channels"]},
         "transport": {"path_type": "Linear", "prediction": "velocity",
                       "use_lognorm": True},
         "train": {"steps": steps}}
    if extra:
        d.update(extra)
    return d


def load_latents(out):
    lat = torch.load(os.path.join(out, "latents_train.pt"))
    st = torch.load(os.path.join(out, "latents_stats.pt"))
    mean, logvar = C.ref.VMAE.posterior(lat["params"])
    return mean, torch.exp(0.5 * logvar), lat["labels"], st["mean"], st["std"]


@torch.no_grad()
def ema_update(ema, model, decay):
    for (k, e), (_, p) in zip(ema.state_dict().items(), model.state_dict().items()):
        if e.dtype.is_floating_point:
            e.mul_(decay).add_(p, alpha=1 - decay)


def optimise(model, ema, opt, loss, step, ema_max):
    """One clipped AdamW step and the EMA update with the usual warm-up; returns the new step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    step += 1
    ema_update(ema, model, min(ema_max, (1 + step) / (10 + step)))
    return step


def main():
    ap = argparse.ArgumentParser()
    C.training_args(ap, minutes=30.0, batch=64, lr=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--ema", type=float, default=0.999)
    a = ap.parse_args()
    C.setup(a.threads)
    log = C.Logger(os.path.join(a.out, "dit.log"))
    torch.manual_seed(a.seed)
    mean, std, labels, s_mean, s_std = load_latents(a.out)
    n = len(labels)
    model = C.make_dit()
    dit_init(model)
    ema = C.make_dit()
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.0)
    state_path = os.path.join(a.out, "dit_train_state.pt")
    step, elapsed = 0, 0.0
    if a.resume and os.path.exists(state_path):
        step, elapsed = C.load_train_state(state_path, model, ema, opt)
        log(f"resumed at step {step}, {elapsed:.0f}s trained")
    log(f"config {C.DIT_CFG} params {sum(p.numel() for p in model.parameters())} "
        f"args {vars(a)} latents {tuple(mean.shape)}")
    null = C.DIT_CFG["num_classes"]
    budget = a.minutes * 60
    t0 = time.time() - elapsed
    t_save = time.time()
    ema_loss = None

    def save(final=False):
        st = {"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
              "step": step, "elapsed": time.time() - t0, "rng": torch.get_rng_state()}
        C.save_atomic(st, state_path)
        if final:
            C.save_atomic({"model": model.state_dict(), "ema": ema.state_dict(),
                           "opt": opt.state_dict(),
                           "config": config_dict(C.DIT_CFG, step)},
                          os.path.join(a.out, "dit_teacher.pt"))

    while time.time() - t0 < budget:
        frac = (time.time() - t0) / budget
        lr = a.lr * min(1.0, (step + 1) / a.warmup) * (0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * frac)))
        for gp in opt.param_groups:
            gp["lr"] = lr
        idx = torch.randint(0, n, (a.batch,))
        z = mean[idx] + std[idx] * torch.randn_like(mean[idx])       # posterior sample
        x1 = (z - s_mean) / s_std
        x0 = torch.randn_like(x1)
        t = torch.sigmoid(torch.randn(a.batch))                      # logit-normal
        xt = t[:, None, None, None] * x1 + (1 - t[:, None, None, None]) * x0
        y = labels[idx].clone()
        y[torch.rand(a.batch) < 0.1] = null
        v = model(xt, t, y)
        loss = (v - (x1 - x0)).pow(2).mean()
        step = optimise(model, ema, opt, loss, step, a.ema)
        ema_loss = loss.item() if ema_loss is None else 0.99 * ema_loss + 0.01 * loss.item()
        if step % 100 == 0:
            log(f"step {step} lr {lr:.2e} loss {loss.item():.4f} (ema {ema_loss:.4f}) "
                f"samples/s {step * a.batch / (time.time() - t0):.1f}")
        if time.time() - t_save > 180:
            save()
            t_save = time.time()
    save(final=True)
    log(f"saved dit_teacher.pt after {step} steps ({step * a.batch} samples), "
        f"final loss ema {ema_loss:.4f}")


if __name__ == "__main__":
    main()
