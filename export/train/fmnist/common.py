"""Shared helpers for the Fashion-MNIST demo models (data, model builders, checkpoints)."""

import gzip
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "reference"))
sys.path.insert(0, os.path.join(HERE, ".."))
import ldmae_ref as ref  # noqa: E402,F401
from sincos_vmae import vmae_with_sincos  # noqa: E402

DATA_DIR = "/usr/share/datasets/fashion-mnist"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

# Architecture of the demo models (kwargs of ldmae_ref.VMAE / LightningDiT).
VMAE_CFG = dict(img_size=32, patch=4, embed_dim=128, depth=2, heads=4,
                dec_embed_dim=128, dec_depth=2, dec_heads=4, mlp_ratio=4,
                latent_dim=4)
DIT_CFG = dict(input_size=8, patch=1, in_channels=4, hidden=128, depth=4,
               heads=2, mlp_ratio=4, num_classes=10, class_dropout_prob=0.1,
               use_qknorm=True)


def setup(threads=2):
    torch.set_num_threads(threads)
    try:
        os.nice(0)
    except OSError:
        pass


def _read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(split):
    """uint8 images (N,28,28) and int64 labels (N,) of 'train' or 't10k'."""
    img = _read_idx(os.path.join(DATA_DIR, f"{split}-images-idx3-ubyte.gz"))
    lab = _read_idx(os.path.join(DATA_DIR, f"{split}-labels-idx1-ubyte.gz"))
    return img, lab.astype(np.int64)


def to_model_input(img_u8):
    """uint8 (N,28,28) -> float32 (N,3,32,32) in [-1,1], zero-padded (black = -1)."""
    x = torch.from_numpy(np.ascontiguousarray(img_u8)).float() / 127.5 - 1.0
    x = torch.nn.functional.pad(x, (2, 2, 2, 2), value=-1.0)
    return x[:, None].expand(-1, 3, -1, -1).contiguous()


def make_vmae():
    return vmae_with_sincos(**VMAE_CFG)


def make_dit(cfg=None):
    cfg = dict(DIT_CFG if cfg is None else cfg)
    m = ref.LightningDiT(**cfg)
    grid = cfg["input_size"] // cfg["patch"]
    with torch.no_grad():
        m.pos_embed.copy_(torch.from_numpy(
            ref.sincos_2d(cfg["hidden"], grid)).float()[None])
    return m


class Logger:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)
        self.t0 = time.time()

    def __call__(self, msg):
        line = f"[{time.strftime('%H:%M:%S')} +{time.time() - self.t0:7.1f}s] {msg}"
        print(line, flush=True)
        self.f.write(line + "\n")


def save_atomic(obj, path):
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def training_args(ap, *, minutes, batch, lr):
    """The options every training script here shares (output folder, time budget, batch,
    learning rate, threads, seed, resume)."""
    ap.add_argument("--out", default="/work/artifacts/fmnist")
    ap.add_argument("--minutes", type=float, default=minutes)
    ap.add_argument("--batch", type=int, default=batch)
    ap.add_argument("--lr", type=float, default=lr)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true")


def load_train_state(path, model, ema, opt):
    """Restores a `--resume` state saved by these scripts; returns (step, seconds trained)."""
    st = torch.load(path, weights_only=False)
    model.load_state_dict(st["model"])
    ema.load_state_dict(st["ema"])
    opt.load_state_dict(st["opt"])
    torch.set_rng_state(st["rng"])
    return st["step"], st["elapsed"]
