"""Distil the guided teacher into 1-, 2- and 4-evaluation students.

    python distill.py --out /work/artifacts/fmnist traj [--n 4096] [--resume]
    python distill.py --out /work/artifacts/fmnist student --nfe 4 [--minutes 6] [--resume]

Method: trajectory ("knowledge") distillation in the sense of Luhman & Luhman (2021),
generalised to N student steps on the official Euler grid. `traj` integrates the
teacher ODE with classifier-free guidance (--teacher-steps Euler steps on
ldmae_ref.time_grid(T, shift)) from random noise and stores the states at the points
of time_grid(4, shift) (a subset of the teacher grid because T is a multiple of 4;
they include the grids for N = 1 and 2). A student (a plain LightningDiT of the
teacher's size, initialised from the teacher EMA) then regresses, on each of its N
grid intervals [t_k, t_k+1], the teacher's guided multi-step displacement divided by
the interval length:  v_s(x_{t_k}, t_k, y) ~ (x_{t_k+1} - x_{t_k}) / (t_k+1 - t_k),
with x_{t_k} the teacher's state. Sampled with our Euler sampler, N steps, CFG 1, the
student reproduces the teacher's N-point trajectory (for N = 1: noise -> sample in
one evaluation, Luhman & Luhman). Guidance is folded in (the targets are guided).
"""

import argparse
import copy
import math
import os
import time

import torch

import common as C
from dit import config_dict, optimise

GRID_POINTS = 4


def load_teacher(out):
    ck = torch.load(os.path.join(out, "dit_teacher.pt"), weights_only=False)
    m = C.make_dit()
    m.load_state_dict(ck["ema"])
    return m.eval()


@torch.no_grad()
def teacher_traj(dit, z0, y, steps, shift, cfg, interval, keep_every):
    """Guided Euler on time_grid(steps, shift) (ldmae_ref.sample semantics, all
    channels guided); returns the states at every `keep_every`-th grid point."""
    t = C.ref.time_grid(steps, shift)
    x = z0
    b = x.shape[0]
    null = torch.full_like(y, C.DIT_CFG["num_classes"])
    yy = torch.cat([y, null])
    keep = [x]
    for k in range(steps):
        tk = t[k]
        if cfg > 1.0:
            vc, vu = dit(torch.cat([x, x]), tk.expand(2 * b), yy).chunk(2)
            v = vc if tk < interval else vu + cfg * (vc - vu)
        else:
            v = dit(x, tk.expand(b), y)
        x = x + (t[k + 1] - tk) * v
        if (k + 1) % keep_every == 0:
            keep.append(x)
    return torch.stack(keep, 1)                                 # (B, P+1, C, H, W)


def cmd_traj(a, log):
    path = os.path.join(a.out, "traj.pt")
    dit = load_teacher(a.out)
    assert a.teacher_steps % GRID_POINTS == 0
    data = {"z": [], "y": []}
    if a.resume and os.path.exists(path):
        old = torch.load(path)
        data = {"z": [old["z"]], "y": [old["y"]]}
    have = sum(len(v) for v in data["y"])
    g = torch.Generator().manual_seed(a.seed + 1000 + have)
    t0 = time.time()
    while have < a.n:
        b = min(a.chunk, a.n - have)
        z0 = torch.randn(b, C.DIT_CFG["in_channels"], 8, 8, generator=g)
        y = torch.arange(have, have + b) % 10
        states = teacher_traj(dit, z0, y, a.teacher_steps, a.shift, a.cfg, a.cfg_interval,
                              a.teacher_steps // GRID_POINTS)
        data["z"].append(states)
        data["y"].append(y)
        have += b
        C.save_atomic({"z": torch.cat(data["z"]), "y": torch.cat(data["y"]),
                       "teacher_steps": a.teacher_steps, "shift": a.shift, "cfg": a.cfg,
                       "cfg_interval": a.cfg_interval,
                       "grid": C.ref.time_grid(GRID_POINTS, a.shift)}, path)
        log(f"traj {have}/{a.n} ({have / (time.time() - t0 + 1e-9):.1f}/s this run)")


def student_grid_index(nfe):
    return [i * (GRID_POINTS // nfe) for i in range(nfe + 1)]


@torch.no_grad()
def student_sample(m, z0, y, nfe, shift):
    t = C.ref.time_grid(nfe, shift)
    x = z0
    for k in range(nfe):
        x = x + (t[k + 1] - t[k]) * m(x, t[k].expand(len(x)), y)
    return x


def cmd_student(a, log):
    nfe = a.nfe
    assert GRID_POINTS % nfe == 0
    tr = torch.load(os.path.join(a.out, "traj.pt"))
    assert abs(tr["shift"] - a.shift) < 1e-9
    Z, Y = tr["z"], tr["y"]
    n_val = 256
    Zv, Yv = Z[-n_val:], Y[-n_val:]
    Z, Y = Z[:-n_val], Y[:-n_val]
    gi = student_grid_index(nfe)
    tg = C.ref.time_grid(nfe, a.shift)
    assert torch.equal(tg, tr["grid"][gi]), (tg, tr["grid"])
    model = load_teacher(a.out).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.0)
    state_path = os.path.join(a.out, f"student{nfe}_train_state.pt")
    step, elapsed = 0, 0.0
    if a.resume and os.path.exists(state_path):
        step, elapsed = C.load_train_state(state_path, model, ema, opt)
        log(f"resumed student{nfe} at step {step}")
    torch.manual_seed(a.seed + nfe + step)

    def val():
        x = student_sample(ema, Zv[:, 0], Yv, nfe, a.shift)
        return (x - Zv[:, -1]).pow(2).mean().item()

    log(f"student{nfe}: {len(Y)} trajectories, grid {tg.tolist()}, "
        f"teacher-init val mse vs teacher sample {val():.4f}")
    t0 = time.time() - elapsed
    t_save = time.time()
    ema_loss = None
    budget = a.minutes * 60
    while time.time() - t0 < budget:
        idx = torch.randint(0, len(Y), (a.batch,))
        k = torch.randint(0, nfe, (a.batch,))
        i0 = torch.tensor(gi)[k]
        i1 = torch.tensor(gi)[k + 1]
        x = Z[idx, i0]
        target = (Z[idx, i1] - x) / (tg[k + 1] - tg[k])[:, None, None, None]
        v = model(x, tg[k], Y[idx])
        loss = (v - target).pow(2).mean()
        step = optimise(model, ema, opt, loss, step, a.ema)
        ema_loss = loss.item() if ema_loss is None else 0.98 * ema_loss + 0.02 * loss.item()
        if step % 100 == 0:
            log(f"student{nfe} step {step} loss {loss.item():.4f} (ema {ema_loss:.4f})"
                + (f" val_mse {val():.4f}" if step % 500 == 0 else ""))
        if time.time() - t_save > 120:
            C.save_atomic({"model": model.state_dict(), "ema": ema.state_dict(),
                           "opt": opt.state_dict(), "step": step,
                           "elapsed": time.time() - t0, "rng": torch.get_rng_state()},
                          state_path)
            t_save = time.time()
    extra = {"distill": {"method": "trajectory distillation (Luhman & Luhman 2021), N-interval",
                         "nfe": nfe, "shift": a.shift, "teacher_steps": tr["teacher_steps"],
                         "teacher_cfg": tr["cfg"], "teacher_cfg_interval": tr["cfg_interval"],
                         "sample_with": {"steps": nfe, "shift": a.shift, "cfg": 1.0}}}
    C.save_atomic({"model": model.state_dict(), "ema": ema.state_dict(),
                   "opt": opt.state_dict(), "config": config_dict(C.DIT_CFG, step, extra)},
                  os.path.join(a.out, f"dit_student{nfe}.pt"))
    C.save_atomic({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                   "step": step, "elapsed": time.time() - t0, "rng": torch.get_rng_state()},
                  state_path)
    log(f"saved dit_student{nfe}.pt after {step} steps, loss ema {ema_loss:.4f}, "
        f"val mse vs teacher {val():.4f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["traj", "student"])
    C.training_args(ap, minutes=6.0, batch=128, lr=1e-4)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--teacher-steps", type=int, default=32)
    ap.add_argument("--shift", type=float, default=0.3)
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--cfg-interval", type=float, default=0.1)
    ap.add_argument("--nfe", type=int, default=4)
    ap.add_argument("--ema", type=float, default=0.995)
    a = ap.parse_args()
    C.setup(a.threads)
    log = C.Logger(os.path.join(a.out, "distill.log"))
    log(f"args {vars(a)}")
    (cmd_traj if a.cmd == "traj" else cmd_student)(a, log)


if __name__ == "__main__":
    main()
