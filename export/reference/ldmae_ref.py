"""Independent PyTorch reference of the LDMAE inference path.

Written from shared/spec/ldmae-official.md (section numbers below refer to it):
the VMAE f8d16 autoencoder (§1), LightningDiT with SwiGLU / RoPE / RMSNorm /
optional qk-norm (§2), the latent normalisation (§3) and the Euler
flow-matching sampler with channel-restricted, interval-gated CFG (§4).
Module attribute names reproduce the official state-dict keys (§1.7, §2.3).
Every module also runs in float64 (`.double()`), which is how the float32
rounding noise of the fixtures is measured.
"""

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# Architectures by the names the official files carry (VMAE: args.model,
# DiT: config['model']['model_type']). The "tiny" entries are test-only.
VMAE_ARCHS = {
    "mae_for_ldmae_f8d16_prev": dict(
        patch=8, embed_dim=192, depth=12, heads=12, dec_embed_dim=192,
        dec_depth=12, dec_heads=12, mlp_ratio=4, latent_dim=16),
    "mae_for_ldmae_photo": dict(
        patch=8, embed_dim=128, depth=4, heads=8, dec_embed_dim=128,
        dec_depth=4, dec_heads=8, mlp_ratio=4, latent_dim=8),
    "mae_for_ldmae_tiny": dict(
        patch=8, embed_dim=32, depth=2, heads=2, dec_embed_dim=32,
        dec_depth=2, dec_heads=2, mlp_ratio=4, latent_dim=4),
}
DIT_ARCHS = {
    "LightningDiT-B/1": dict(hidden=768, depth=12, heads=12, patch=1),
    "LightningDiT-tiny/1": dict(hidden=64, depth=2, heads=2, patch=1),
}

LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0
TIME_FREQ_DIM = 256


def _compute_dtype(x):
    """float64 in float64 mode, float32 otherwise (spec §8)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


# --------------------------------------------------------------------------
# Position tables
# --------------------------------------------------------------------------

def sincos_1d(dim, pos):
    """[sin(pos*w_k) | cos(pos*w_k)], w_k = 10000^(-k/(dim/2)), float64."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2))
    out = np.outer(pos.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d(dim, grid):
    """MAE-style (grid*grid, dim) table in float64, token n = row*grid+col.

    First half of the channels encodes the column index, second half the
    row index (spec §1.5, §2.2).
    """
    rows, cols = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    return np.concatenate(
        [sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], axis=1)


def rope_tables(head_dim, grid):
    """EVA-02 style 2-D RoPE cos/sin tables (grid*grid, head_dim), float32.

    Per axis dim = head_dim/2 with frequencies 10000^(-2j/(head_dim/2)),
    each repeated twice (interleaved); dims [0, head_dim/2) follow the row
    index, dims [head_dim/2, head_dim) the column index (spec §2.2).
    """
    axis_dim = head_dim // 2
    freqs = 1.0 / 10000 ** (
        torch.arange(0, axis_dim, 2, dtype=torch.float32) / axis_dim)
    freqs = freqs.repeat_interleave(2)                       # (axis_dim,)
    pos = torch.arange(grid, dtype=torch.float32)
    ang = pos[:, None] * freqs[None]                         # (grid, axis_dim)
    table = torch.cat([
        ang[:, None, :].expand(grid, grid, axis_dim),        # row index
        ang[None, :, :].expand(grid, grid, axis_dim),        # column index
    ], dim=-1).reshape(grid * grid, head_dim)
    return table.cos(), table.sin()


# --------------------------------------------------------------------------
# VMAE (spec §1)
# --------------------------------------------------------------------------

class PatchEmbed(nn.Module):
    def __init__(self, in_chans, dim, patch):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)       # (B, N, dim)


def attention(q, k, v):
    """Softmax attention on (B, heads, N, head_dim), scale head_dim^-0.5."""
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    return scores.softmax(dim=-1) @ v


def merge_heads(x):
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class VitAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(merge_heads(attention(q, k, v)))


class GeluMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))                 # exact erf GELU


class VitBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = VitAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = GeluMlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DecoderPred(nn.Module):
    """Per-token linear head, un-patchify, 3x3 smoothing conv (spec §1.4)."""

    def __init__(self, dim, patch, out_chans=3):
        super().__init__()
        self.patch = patch
        self.out_chans = out_chans
        self.linear_pred = nn.Linear(dim, patch * patch * out_chans)
        self.conv_smoother = nn.Conv2d(out_chans, out_chans, 3, padding=1)

    def forward(self, x, gh, gw):
        return self.conv_smoother(
            unpatchify(self.linear_pred(x), gh, gw, self.patch,
                       self.out_chans))


def unpatchify(tokens, gh, gw, p, c):
    """(B, gh*gw, p*p*c) -> (B, c, gh*p, gw*p); value (pp*p+q)*c+ch of token
    row*gw+col lands at pixel (ch, p*row+pp, p*col+q)."""
    b = tokens.shape[0]
    x = tokens.reshape(b, gh, gw, p, p, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, c, gh * p, gw * p)


class VMAE(nn.Module):
    """mae_for_ldmae_f8d16_prev as used by LDMAE (no cls/mask token)."""

    def __init__(self, img_size, patch, in_chans=3, embed_dim=192, depth=12,
                 heads=12, dec_embed_dim=192, dec_depth=12, dec_heads=12,
                 mlp_ratio=4, latent_dim=16):
        super().__init__()
        self.patch = patch
        self.latent_dim = latent_dim
        n = (img_size // patch) ** 2
        self.patch_embed = PatchEmbed(in_chans, embed_dim, patch)
        # Frozen tables; always taken from the checkpoint (spec §1.5).
        self.register_buffer("pos_embed", torch.zeros(1, n, embed_dim))
        self.blocks = nn.ModuleList(
            VitBlock(embed_dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.to_latent = nn.Linear(embed_dim, 2 * latent_dim)
        self.from_latent = nn.Linear(latent_dim, embed_dim)
        self.decoder_embed = nn.Linear(embed_dim, dec_embed_dim)
        self.register_buffer("decoder_pos_embed",
                             torch.zeros(1, n, dec_embed_dim))
        self.decoder_blocks = nn.ModuleList(
            VitBlock(dec_embed_dim, dec_heads, mlp_ratio)
            for _ in range(dec_depth))
        self.decoder_norm = nn.LayerNorm(dec_embed_dim, eps=1e-6)
        self.decoder_pred = DecoderPred(dec_embed_dim, patch, in_chans)

    def encode_params(self, x):
        """[-1, 1] images (B,3,H,W) -> raw posterior params (B,2L,h,w)."""
        b, _, hgt, wid = x.shape
        gh, gw = hgt // self.patch, wid // self.patch
        h = self.patch_embed(x) + self.pos_embed
        for blk in self.blocks:
            h = blk(h)
        p = self.to_latent(self.norm(h))                     # (B, N, 2L)
        return p.transpose(1, 2).reshape(b, -1, gh, gw)

    @staticmethod
    def posterior(params):
        """Diagonal Gaussian: (mean, logvar clamped to [-30, 20])."""
        mean, logvar = params.chunk(2, dim=1)
        return mean, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def decode(self, z):
        """Latent (B,L,h,w) -> float pixels (B,3,h*p,w*p), not clamped."""
        _, _, gh, gw = z.shape
        h = self.decoder_embed(self.from_latent(z.flatten(2).transpose(1, 2)))
        h = h + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            h = blk(h)
        return self.decoder_pred(self.decoder_norm(h), gh, gw)

    @staticmethod
    def to_uint8(x):
        """Official PNG conversion: truncate(clamp(127.5x+128)), NHWC."""
        y = (127.5 * x + 128.0).clamp(0, 255).to(torch.uint8)
        return y.permute(0, 2, 3, 1).contiguous()


# --------------------------------------------------------------------------
# LightningDiT (spec §2)
# --------------------------------------------------------------------------

class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) in float32 (float64 in f64 mode), cast
    back, times a learnable weight."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.to(_compute_dtype(x))
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return y.to(x.dtype) * self.weight


def modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


def rotate_half(x):
    """Adjacent pairs (a, b) -> (-b, a)."""
    a, b = x.unflatten(-1, (-1, 2)).unbind(-1)
    return torch.stack([-b, a], dim=-1).flatten(-2)


class VisionRope(nn.Module):
    """Holds the RoPE tables as persistent buffers (`feat_rope.*`)."""

    def __init__(self, head_dim, grid):
        super().__init__()
        cos, sin = rope_tables(head_dim, grid)
        self.register_buffer("freqs_cos", cos)
        self.register_buffer("freqs_sin", sin)

    def forward(self, x):
        return x * self.freqs_cos + rotate_half(x) * self.freqs_sin


class DitAttention(nn.Module):
    def __init__(self, dim, heads, use_qknorm):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        if use_qknorm:
            self.q_norm = RMSNorm(dim // heads)
            self.k_norm = RMSNorm(dim // heads)
        else:
            self.q_norm = self.k_norm = nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, rope):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        q, k = rope(self.q_norm(q)), rope(self.k_norm(k))
        return self.proj(merge_heads(attention(q, k, v)))


class SwiGLU(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x):
        gate, val = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(gate) * val)


class DitBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, use_qknorm):
        super().__init__()
        self.norm1 = RMSNorm(dim)
        self.attn = DitAttention(dim, heads, use_qknorm)
        self.norm2 = RMSNorm(dim)
        self.mlp = SwiGLU(dim, int(2 / 3 * int(dim * mlp_ratio)))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(),
                                              nn.Linear(dim, 6 * dim))

    def forward(self, x, c, rope):
        (shift_msa, scale_msa, gate_msa,
         shift_mlp, scale_mlp, gate_mlp) = self.adaLN_modulation(c).chunk(6, 1)
        h = modulate(self.norm1(x), shift_msa, scale_msa)
        x = x + gate_msa[:, None] * self.attn(h, rope)
        h = modulate(self.norm2(x), shift_mlp, scale_mlp)
        return x + gate_mlp[:, None] * self.mlp(h)


class TimestepEmbedder(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(TIME_FREQ_DIM, dim), nn.SiLU(),
                                 nn.Linear(dim, dim))

    def forward(self, t):
        """t: raw flow time in [0, 1], shape (B,). Features [cos | sin]."""
        w = self.mlp[0].weight
        ct = _compute_dtype(w)
        half = TIME_FREQ_DIM // 2
        freqs = torch.exp(-math.log(10000) *
                          torch.arange(half, dtype=ct) / half)
        args = t.to(ct)[:, None] * freqs[None]
        feats = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        return self.mlp(feats.to(w.dtype))


class LabelEmbedder(nn.Module):
    def __init__(self, num_classes, dim, class_dropout_prob):
        super().__init__()
        extra = 1 if class_dropout_prob > 0 else 0           # null class row
        self.embedding_table = nn.Embedding(num_classes + extra, dim)

    def forward(self, y):
        return self.embedding_table(y)


class FinalLayer(nn.Module):
    def __init__(self, dim, out_dim):
        super().__init__()
        self.norm_final = RMSNorm(dim)
        self.linear = nn.Linear(dim, out_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(),
                                              nn.Linear(dim, 2 * dim))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class LightningDiT(nn.Module):
    """LightningDiT, always SwiGLU + RoPE + RMSNorm, learn_sigma=False."""

    def __init__(self, input_size, patch=1, in_channels=16, hidden=768,
                 depth=12, heads=12, mlp_ratio=4, num_classes=1000,
                 class_dropout_prob=0.1, use_qknorm=True):
        super().__init__()
        self.patch = patch
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.has_null = class_dropout_prob > 0
        grid = input_size // patch
        self.x_embedder = PatchEmbed(in_channels, hidden, patch)
        self.t_embedder = TimestepEmbedder(hidden)
        self.y_embedder = LabelEmbedder(num_classes, hidden,
                                        class_dropout_prob)
        # Fixed table; always taken from the checkpoint (spec §2.2).
        self.register_buffer("pos_embed", torch.zeros(1, grid * grid, hidden))
        self.feat_rope = VisionRope(hidden // heads, grid)
        self.blocks = nn.ModuleList(
            DitBlock(hidden, heads, mlp_ratio, use_qknorm)
            for _ in range(depth))
        self.final_layer = FinalLayer(hidden, patch * patch * in_channels)

    def forward(self, x, t, y):
        """x (B,C,H,W) normalised latent, t (B,) in [0,1], y (B,) labels;
        returns the velocity (B,C,H,W)."""
        _, _, hgt, wid = x.shape
        h = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y)
        for blk in self.blocks:
            h = blk(h, c, self.feat_rope)
        out = self.final_layer(h, c)
        return unpatchify(out, hgt // self.patch, wid // self.patch,
                          self.patch, self.in_channels)


# --------------------------------------------------------------------------
# Sampler (spec §3, §4)
# --------------------------------------------------------------------------

def time_grid(steps, shift):
    """steps+1 float32 grid points on [0, 1] (t=0 noise, t=1 data)."""
    t = torch.linspace(0, 1, steps + 1, dtype=torch.float32)
    if shift > 0:
        t = shift * t / (1 + (shift - 1) * t)
    return t


@torch.no_grad()
def sample(dit, noise, labels, steps, shift, cfg_scale, cfg_interval_start,
           cfg_channels=(0, 1, 2), stats_mean=None, stats_std=None):
    """Euler flow-matching sampler; returns the de-normalised latent.

    `steps` = number of network evaluations. CFG (iff cfg_scale > 1) runs
    the doubled batch [x, x] with labels [y, null] and guides only
    `cfg_channels`, and only where t_k >= cfg_interval_start.
    """
    t = time_grid(steps, shift)
    x = noise
    b = x.shape[0]
    use_cfg = cfg_scale > 1.0
    if use_cfg:
        if not dit.has_null:
            raise ValueError("CFG needs a model with a null class")
        null = torch.full_like(labels, dit.num_classes)
        y_in = torch.cat([labels, null])
        ch = list(cfg_channels)
    for k in range(steps):
        tk = t[k]
        if use_cfg:
            v_c, v_u = dit(torch.cat([x, x]), tk.expand(2 * b),
                           y_in).chunk(2)
            v = v_c.clone()
            if not tk < cfg_interval_start:
                v[:, ch] = v_u[:, ch] + cfg_scale * (v_c[:, ch] - v_u[:, ch])
        else:
            v = dit(x, tk.expand(b), labels)
        x = x + (t[k + 1] - tk).to(x.dtype) * v
    if stats_std is not None:
        x = x * stats_std.to(x.dtype) + stats_mean.to(x.dtype)
    return x


# --------------------------------------------------------------------------
# Loading from official-format checkpoints
# --------------------------------------------------------------------------

def vmae_config(ckpt):
    """Constructor kwargs from a VMAE checkpoint's `args` (model name and
    input size), as the official scripts hard-code the architecture."""
    args = ckpt["args"]
    return dict(VMAE_ARCHS[args.model], img_size=args.input_size)


def vmae_from_checkpoint(ckpt):
    """Strictly loads `ckpt['model']` minus the LPIPS `perceptual_loss.*`
    tensors (which the official non-strict load silently ignores)."""
    sd = {k: v for k, v in ckpt["model"].items()
          if not k.startswith("perceptual_loss.")}
    model = VMAE(**vmae_config(ckpt))
    model.load_state_dict(sd, strict=True)
    return model.eval()


def dit_config(ckpt):
    """Constructor kwargs from a DiT checkpoint's YAML-like `config`."""
    cfg = ckpt["config"]
    num_classes = cfg["data"]["num_classes"]
    return dict(
        DIT_ARCHS[cfg["model"]["model_type"]],
        input_size=cfg["data"]["image_size"] // cfg["vae"]["downsample_ratio"],
        in_channels=cfg["model"]["in_chans"],
        num_classes=num_classes,
        class_dropout_prob=0.1 if num_classes > 1 else 0.0,
        use_qknorm=cfg["model"]["use_qknorm"])


def dit_from_checkpoint(ckpt, which="ema"):
    """Strictly loads `ckpt[which]` (`ema` = the sampling weights); strips
    a `module.` prefix if present."""
    sd = {k.removeprefix("module."): v for k, v in ckpt[which].items()}
    model = LightningDiT(**dit_config(ckpt))
    model.load_state_dict(sd, strict=True)
    return model.eval()
