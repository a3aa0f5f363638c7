"""Random-weight checkpoints in the official LDMAE file formats.

    python make_checkpoints.py OUTDIR --preset tiny|full [--seed N]

Writes vmae.pth (training-checkpoint layout with LPIPS tensors, AdamW state,
scaler and an argparse.Namespace), vmae_bare.pth ({'model': sd}), dit.pt and
dit_celeba.pt ({'model', 'ema', 'opt', 'config'}) and latents_stats.pt.
Weights are scaled so that every component visibly matters; the traps of the
real files are reproduced (bilinearly resized VMAE position tables, `ema`
differing from `module.`-prefixed `model`, a DiT position table that is not
exactly the analytic one).
"""

import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ldmae_ref as ref  # noqa: E402

PRESETS = {
    "full": dict(vmae_model="mae_for_ldmae_f8d16_prev", image_size=256,
                 dit_model="LightningDiT-B/1", num_classes=1000,
                 lpips_div=1),
    "tiny": dict(vmae_model="mae_for_ldmae_tiny", image_size=32,
                 dit_model="LightningDiT-tiny/1", num_classes=10,
                 lpips_div=64),
}
DOWNSAMPLE = 8
# Taming LPIPS over VGG16: (slice, conv index, out channels) and lin widths.
VGG_CONVS = [(1, 0, 64), (1, 2, 64), (2, 5, 128), (2, 7, 128),
             (3, 10, 256), (3, 12, 256), (3, 14, 256),
             (4, 17, 512), (4, 19, 512), (4, 21, 512),
             (5, 24, 512), (5, 26, 512), (5, 28, 512)]
LPIPS_LIN = [64, 128, 256, 512, 512]
# `model` (the non-EMA training weights) differs from `ema` in these tensors;
# all others are shared storages, which keeps the files small.
MODEL_DIFF_SUFFIXES = ("bias", "norm1.weight", "norm2.weight",
                       "final_layer.linear.weight")


def randn(shape, g):
    return torch.randn(shape, generator=g)


def init_tensor(name, shape, g):
    """Random value for one parameter, chosen by its role."""
    if len(shape) == 1:                      # biases and norm weights
        if name.endswith("weight"):
            return 1 + 0.1 * randn(shape, g)
        return 0.05 * randn(shape, g)
    if "embedding_table" in name:
        return randn(shape, g)
    fan_in = math.prod(shape[1:])
    gain = 0.5 if "adaLN_modulation" in name else 1.0
    return gain * randn(shape, g) / math.sqrt(fan_in)


def randomize(model, g):
    """Fill every parameter of `model` in place (buffers are left alone)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(init_tensor(name, p.shape, g))


def resized_pos_table(dim, grid):
    """Released-style table: analytic sin-cos for a grid/2 grid, bilinearly
    resized (align_corners=False) to grid x grid (spec §1.5)."""
    half = grid // 2
    small = torch.from_numpy(ref.sincos_2d(dim, half)).float()
    small = small.reshape(1, half, half, dim).permute(0, 3, 1, 2)
    big = F.interpolate(small, size=(grid, grid), mode="bilinear",
                        align_corners=False)
    return big.permute(0, 2, 3, 1).reshape(1, grid * grid, dim).contiguous()


def adamw_state(model, names, g):
    """A real AdamW state_dict after one step where only the parameters in
    `names` received gradients (the model itself is not modified)."""
    params = [p.detach().clone().requires_grad_(True)
              for p in model.parameters()]
    for (name, _), p in zip(model.named_parameters(), params):
        if name in names:
            p.grad = 1e-3 * randn(p.shape, g)
    opt = torch.optim.AdamW(params, lr=2e-4, betas=(0.9, 0.95),
                            weight_decay=0.0)
    opt.step()
    return opt.state_dict()


def lpips_tensors(div, g):
    """The 33 `perceptual_loss.*` tensors (shapes divided by `div`)."""
    out = {"perceptual_loss.scaling_layer.shift": randn((1, 3, 1, 1), g),
           "perceptual_loss.scaling_layer.scale": randn((1, 3, 1, 1), g)}
    cin = 3
    for sl, idx, cout in VGG_CONVS:
        cout //= div
        key = f"perceptual_loss.net.slice{sl}.{idx}"
        out[key + ".weight"] = 0.1 * randn((cout, cin, 3, 3), g)
        out[key + ".bias"] = 0.1 * randn((cout,), g)
        cin = cout
    for i, c in enumerate(LPIPS_LIN):
        out[f"perceptual_loss.lin{i}.model.1.weight"] = \
            randn((1, c // div, 1, 1), g).abs()
    return out


def make_vmae(preset, g):
    args = argparse.Namespace(
        model=preset["vmae_model"], input_size=preset["image_size"],
        batch_size=32, epochs=10, accum_iter=1, mask_ratio=0.0,
        norm_pix_loss=False, weight_decay=0.05, lr=None, blr=1.5e-4,
        min_lr=0.0, warmup_epochs=1, tune_decoder=True, smooth_output=True,
        ldmae_mode=True, no_cls=True, kl_loss_weight=True,
        perceptual_loss_ratio=10.0, output_dir="./output_dir", seed=0,
        resume="checkpoint-90.pth", start_epoch=0, num_workers=10,
        pin_mem=True, world_size=1, local_rank=-1, dist_on_itp=False,
        dist_url="env://", distributed=False)
    model = ref.VMAE(**ref.vmae_config({"args": args}))
    randomize(model, g)
    with torch.no_grad():
        # Posterior std exp(0.5*logvar) spread over roughly 0.08 .. 0.37.
        lat = model.latent_dim
        model.to_latent.weight[lat:] *= 0.2
        model.to_latent.bias[lat:] = torch.linspace(-5, -2, lat)[
            torch.randperm(lat, generator=g)]
        # Pixels mostly inside [-1, 1], some clamped by the uint8 conversion.
        model.decoder_pred.linear_pred.weight *= 0.6
        grid = preset["image_size"] // model.patch
        model.pos_embed.copy_(resized_pos_table(model.pos_embed.shape[2],
                                                grid))
        model.decoder_pos_embed.copy_(resized_pos_table(
            model.decoder_pos_embed.shape[2], grid))
    sd = model.state_dict()
    full_sd = dict(sd, **lpips_tensors(preset["lpips_div"], g))
    opt_names = {n for n, _ in model.named_parameters()
                 if n.startswith(("decoder_pred.conv_smoother.",
                                  "to_latent.", "from_latent."))}
    ckpt = {"model": full_sd,
            "optimizer": adamw_state(model, opt_names, g),
            "epoch": 9,
            "scaler": {"scale": 65536.0, "growth_factor": 2.0,
                       "backoff_factor": 0.5, "growth_interval": 2000,
                       "_growth_tracker": 0},
            "args": args}
    return ckpt, {"model": sd}, model.latent_dim


def dit_yaml(preset, num_classes, use_qknorm, latent_dim, celeba):
    """Nested dict shaped like the LDMAE training YAML."""
    step = "0060000" if celeba else "0100000"
    return {
        "ckpt_path": f"output/lightningdit_b_vmae_f8d16/checkpoints/{step}.pt",
        "data": {"data_path": "latents/vmae_f8d16",
                 "image_size": preset["image_size"],
                 "num_classes": num_classes, "num_workers": 8,
                 "latent_norm": True, "latent_multiplier": 1.0,
                 "sample": True},
        "vae": {"model_name": "vmae_f8d16", "downsample_ratio": DOWNSAMPLE},
        "model": {"model_type": preset["dit_model"],
                  "use_qknorm": use_qknorm, "use_swiglu": True,
                  "use_rope": True, "use_rmsnorm": True, "wo_shift": False,
                  "in_chans": latent_dim},
        "train": {"max_steps": 60000 if celeba else 100000,
                  "global_batch_size": 1024 if celeba else 256,
                  "global_seed": 1 if celeba else 0, "output_dir": "output",
                  "exp_name": "lightningdit_b_vmae_f8d16", "ckpt_every": 20000,
                  "log_every": 100},
        "optimizer": {"lr": 0.0002, "beta2": 0.95},
        "transport": {"path_type": "Linear", "prediction": "velocity",
                      "loss_weight": None, "sample_eps": None,
                      "train_eps": None, "use_cosine_loss": False,
                      "use_lognorm": True},
        "sample": {"mode": "ODE", "sampling_method": "euler", "atol": 1e-6,
                   "rtol": 1e-3, "reverse": False, "likelihood": False,
                   "num_sampling_steps": 250,
                   "cfg_scale": 0.0 if celeba else 10.0,
                   "per_proc_batch_size": 4, "fid_num": 50000,
                   "cfg_interval_start": 0.1, "timestep_shift": 0.3},
    }


def make_dit(preset, latent_dim, celeba, g, real_opt_state):
    num_classes = 1 if celeba else preset["num_classes"]
    config = dit_yaml(preset, num_classes, not celeba, latent_dim, celeba)
    model = ref.LightningDiT(**ref.dit_config({"config": config}))
    randomize(model, g)
    with torch.no_grad():
        grid = int(math.isqrt(model.pos_embed.shape[1]))
        analytic = torch.from_numpy(
            ref.sincos_2d(model.pos_embed.shape[2], grid)).float()[None]
        # The EMA copy drifts off the analytic table (spec §2.2).
        model.pos_embed.copy_(analytic + 1e-3 * randn(analytic.shape, g))
        # Perturb the RoPE buffers too, so that a port recomputing them fails.
        for table in (model.feat_rope.freqs_cos, model.feat_rope.freqs_sin):
            table.add_(1e-3 * randn(table.shape, g))
    ema = model.state_dict()
    train = {}
    for k, v in ema.items():
        if k == "pos_embed":
            v = analytic
        elif k.endswith(MODEL_DIFF_SUFFIXES):
            v = v + 0.3 * v.std() * randn(v.shape, g)
        train["module." + k] = v
    if real_opt_state:
        names = {n for n, _ in model.named_parameters()
                 if n.startswith("final_layer.linear.")}
        opt = adamw_state(model, names, g)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=2e-4,
                                betas=(0.9, 0.95),
                                weight_decay=0.0).state_dict()
    return {"model": train, "ema": ema, "opt": opt, "config": config}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir")
    ap.add_argument("--preset", choices=sorted(PRESETS), required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    preset = PRESETS[a.preset]
    os.makedirs(a.outdir, exist_ok=True)
    g = torch.Generator().manual_seed(a.seed)

    vmae, vmae_bare, latent_dim = make_vmae(preset, g)
    torch.save(vmae, os.path.join(a.outdir, "vmae.pth"))
    torch.save(vmae_bare, os.path.join(a.outdir, "vmae_bare.pth"))
    del vmae, vmae_bare

    # The full preset keeps an empty DiT optimizer state to save disk.
    tiny = a.preset == "tiny"
    for fname, celeba in (("dit.pt", False), ("dit_celeba.pt", True)):
        ckpt = make_dit(preset, latent_dim, celeba, g, real_opt_state=tiny)
        torch.save(ckpt, os.path.join(a.outdir, fname))
        del ckpt

    stats = {"mean": 0.5 * randn((1, latent_dim, 1, 1), g),
             "std": 0.5 + 1.5 * torch.rand((1, latent_dim, 1, 1),
                                           generator=g)}
    torch.save(stats, os.path.join(a.outdir, "latents_stats.pt"))


if __name__ == "__main__":
    main()
