"""Our VMAE (export/reference/ldmae_ref.py) with the fixed 2-D sin-cos position tables that the
official model stores in its state dict, for training scripts."""

import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import ldmae_ref as ref  # noqa: E402


def vmae_with_sincos(**cfg):
    """`ref.VMAE(**cfg)` (cfg includes `img_size`) with sin-cos encoder and decoder tables."""
    m = ref.VMAE(**cfg)
    grid = cfg["img_size"] // cfg["patch"]
    with torch.no_grad():
        for table, dim in ((m.pos_embed, cfg["embed_dim"]), (m.decoder_pos_embed, cfg["dec_embed_dim"])):
            table.copy_(torch.from_numpy(ref.sincos_2d(dim, grid)).float()[None])
    return m
