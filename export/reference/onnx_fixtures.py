"""ONNX fixtures for the Rust tests, from the committed tiny checkpoints.

    python onnx_fixtures.py TINYDIR

Writes into TINYDIR/onnx/:
  vmae_encoder.onnx, vmae_decoder.onnx   from TINYDIR/vmae.pth (`model`)
  dit.onnx, dit_celeba.onnx              from TINYDIR/dit.pt, dit_celeba.pt
                                         (dit.onnx with latent statistics)
                                         (`ema`), all via onnx_export.py
                                         (same checks, same onnxruntime test)
  ort_enc_posterior.npy    encoder on TINYDIR/image.npy (raw, 2C channels)
  ort_dec_pixels.npy       decoder on TINYDIR/dec_latent.npy
  ort_dit_v.npy            dit on TINYDIR/dit_x.npy, manifest dit_t / dit_y
  ort_dit_celeba_v.npy     dit_celeba on dit_x.npy, dit_t, dit_celeba_y
  (float32 .npy, NCHW, onnxruntime CPU with one thread; each is also
  compared with the PyTorch fixtures in TINYDIR)
and, for the error tests, TINYDIR/onnx/bad/wrong_ops.onnx: a valid 2-layer
MLP (x, t, y -> velocity, kind metadata `dit`, no Conv/Softmax/Sin/Cos).
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import onnx_export as ox  # noqa: E402
from make_fixtures import load, save_npy  # noqa: E402



def ort_run(path, feeds):
    return ox.ort_session(path, threads=1).run(None, feeds)[0]


def compare(name, got, want, tol=ox.TOL):
    diff = float(np.abs(got.astype(np.float64) - want).max())
    print(f"  {name:42s} max abs diff {diff:.3e}")
    if got.shape != want.shape or not diff <= tol:
        raise ox.CheckError(f"{name}: {got.shape} vs {want.shape}, "
                            f"diff {diff:.3e} > {tol:g}")


def fixture_outputs(tiny, onnx_dir, manifest):
    """onnxruntime on the committed inputs, checked against the PyTorch
    fixtures, saved as ort_*.npy."""
    npy = lambda n: np.load(os.path.join(tiny, n + ".npy"))  # noqa: E731
    lat = manifest["vmae"]["latent_dim"]
    x = npy("dit_x")
    t = np.asarray(manifest["dit_t"], dtype=np.float32)
    runs = {
        "ort_enc_posterior": ("vmae_encoder", {"image": npy("image")}),
        "ort_dec_pixels": ("vmae_decoder", {"latent": npy("dec_latent")}),
        "ort_dit_v": ("dit", {
            "x": x, "t": t,
            "y": np.asarray(manifest["dit_y"], dtype=np.int64)}),
        "ort_dit_celeba_v": ("dit_celeba", {
            "x": x, "t": t,
            "y": np.asarray(manifest["dit_celeba_y"], dtype=np.int64)}),
    }
    print("onnxruntime on the fixture inputs vs the PyTorch fixtures:")
    for out_name, (graph, feeds) in runs.items():
        got = ort_run(os.path.join(onnx_dir, graph + ".onnx"), feeds)
        save_npy(os.path.join(onnx_dir, out_name + ".npy"),
                 torch.from_numpy(got))
        if out_name == "ort_enc_posterior":
            compare("posterior[:, :C] vs enc_mean", got[:, :lat],
                    npy("enc_mean"))
            compare("clamp(posterior[:, C:]) vs enc_logvar",
                    np.clip(got[:, lat:], ox.ref.LOGVAR_MIN, ox.ref.LOGVAR_MAX),
                    npy("enc_logvar"))
        else:
            want = {"ort_dec_pixels": "dec_pixels", "ort_dit_v": "dit_v",
                    "ort_dit_celeba_v": "dit_celeba_v"}[out_name]
            compare(f"{out_name} vs {want}", got, npy(want))


# --------------------------------------------------------------------------
# Malformed models
# --------------------------------------------------------------------------

def mlp_model(channels, size, hidden=32, seed=0):
    """A valid small model of another architecture with the DiT interface:
    velocity = fc2(relu(fc1(x per pixel))) + t."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((hidden, channels)) / 2).astype(np.float32)
    w2 = (rng.standard_normal((channels, hidden)) / 6).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for n, a in (
        ("fc1.weight", w1), ("fc1.bias", np.zeros(hidden, np.float32)),
        ("fc2.weight", w2), ("fc2.bias", np.zeros(channels, np.float32)),
        ("t_shape", np.array([-1, 1, 1, 1], np.int64)))]
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["fc1.weight"], ["w1t"], perm=[1, 0]),
        helper.make_node("MatMul", ["xt", "w1t"], ["h0"]),
        helper.make_node("Add", ["h0", "fc1.bias"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("Transpose", ["fc2.weight"], ["w2t"], perm=[1, 0]),
        helper.make_node("MatMul", ["h2", "w2t"], ["o0"]),
        helper.make_node("Add", ["o0", "fc2.bias"], ["o1"]),
        helper.make_node("Transpose", ["o1"], ["o2"], perm=[0, 3, 1, 2]),
        helper.make_node("Reshape", ["t", "t_shape"], ["t4"]),
        helper.make_node("Add", ["o2", "t4"], ["velocity"]),
    ]
    b = ox.BATCH_AXIS
    graph = helper.make_graph(
        nodes, "mlp", [
            helper.make_tensor_value_info(
                "x", TensorProto.FLOAT, [b, channels, size, size]),
            helper.make_tensor_value_info("t", TensorProto.FLOAT, [b]),
            helper.make_tensor_value_info("y", TensorProto.INT64, [b])],
        [helper.make_tensor_value_info(
            "velocity", TensorProto.FLOAT, [b, channels, size, size])],
        initializer=inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", ox.OPSET)],
        producer_name="ldmae onnx_fixtures.py")
    model.ir_version = 8
    for k, v in (("ldmae.kind", "dit"), ("ldmae.heads", "2")):
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    return model


def bad_models(onnx_dir, manifest):
    """The one malformed model that cannot be derived from dit.onnx: the Rust
    tests build truncated, missing-initializer, transposed and renamed
    variants of dit.onnx in memory."""
    bad = os.path.join(onnx_dir, "bad")
    os.makedirs(bad, exist_ok=True)
    x = np.load(os.path.join(os.path.dirname(onnx_dir), "dit_x.npy"))
    feeds = {"x": x, "t": np.asarray(manifest["dit_t"], np.float32),
             "y": np.asarray(manifest["dit_y"], np.int64)}
    path = os.path.join(bad, "wrong_ops.onnx")
    cfg = manifest["dit"]
    onnx.save(mlp_model(cfg["in_channels"], cfg["input_size"]), path)
    out = ort_run(path, feeds)
    print(f"malformed model: {path} ({os.path.getsize(path)} B), a 2-layer "
          f"MLP with the DiT interface, runs in onnxruntime -> {out.shape}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tinydir")
    a = ap.parse_args()
    t0 = time.time()
    tiny = a.tinydir
    onnx_dir = os.path.join(tiny, "onnx")
    os.makedirs(onnx_dir, exist_ok=True)
    with open(os.path.join(tiny, "manifest.json")) as f:
        manifest = json.load(f)
    try:
        ox.export_vmae(load(tiny, "vmae.pth"), onnx_dir)
        # dit.onnx records the latent statistics; dit_celeba.onnx does not.
        stats = os.path.join(tiny, "latents_stats.pt")
        for name, st in (("dit", stats), ("dit_celeba", None)):
            ox.export_dit(load(tiny, name + ".pt"),
                          os.path.join(onnx_dir, name + ".onnx"),
                          latent_stats=st)
        fixture_outputs(tiny, onnx_dir, manifest)
        bad_models(onnx_dir, manifest)
    except ox.CheckError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        sys.exit(1)
    total = sum(os.path.getsize(os.path.join(d, f))
                for d, _, fs in os.walk(onnx_dir) for f in fs)
    print(f"{onnx_dir}: {total / 2**20:.2f} MiB in all; "
          f"done in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
