"""ONNX export of the reference LDMAE models, checked with onnxruntime.

    python onnx_export.py vmae CKPT OUTDIR   # OUTDIR/vmae_encoder.onnx + vmae_decoder.onnx
    python onnx_export.py dit CKPT OUT.onnx [--latent-stats latents_stats.pt]

Graphs (float32, NCHW, dynamic batch axis named `batch` everywhere):
  vmae_encoder  image [B,3,S,S] in [-1,1] -> posterior [B,2C,h,w] (raw
                encoder output: mean channels first, logvar not clamped)
  vmae_decoder  latent [B,C,h,w] -> pixels [B,3,S,S] (float, not clamped)
  dit           x [B,C,H,W], t [B] (flow time in [0,1]), y [B] int64
                -> velocity [B,C,H,W]; weights from the checkpoint's `ema`.

The Rust importer maps initializers to parameters by name, so the export
uses the TorchScript exporter without constant folding: every parameter and
buffer of a graph is an initializer under its official state-dict name with
the checkpoint's float32 values in PyTorch layout (linear weights (out, in);
transposes stay in the graph as Transpose nodes). After export this script
verifies exactly that (names, bit-identical values, no weight copies hidden
in anonymous tensors), checks the operator set (opset 18: no Einsum, RMSNorm
and RoPE as elementary ops) and compares onnxruntime with the PyTorch
reference on random batch-2 inputs. Any failure exits non-zero.

Why TorchScript (`dynamo=False`) and not the torch.export-based exporter:
the latter (torch 2.15 + onnxscript 0.7.2, optimize=False) also keeps the
names, but lowers chunk/unbind to SplitToSequence/SequenceAt sequence ops
and needs onnxscript; the TorchScript graph uses plain Split/Squeeze and
needs only `onnx` (for this script's checks).
"""

import argparse
import collections
import hashlib
import json
import os
import sys
import time
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ldmae_ref as ref  # noqa: E402
from make_fixtures import load  # noqa: E402

OPSET = 18
BATCH_AXIS = "batch"
# Operators that would hide the model's numerics in fused or non-elementary
# kernels (or that the spec lists as export traps).
FORBIDDEN_OPS = {"Einsum", "RMSNormalization", "SimplifiedLayerNormalization",
                 "SkipSimplifiedLayerNormalization", "RotaryEmbedding",
                 "Attention", "MultiHeadAttention", "Gelu", "FastGelu",
                 "SequenceAt", "SplitToSequence", "Loop", "If", "Scan"}
# Operators each graph must contain (the Rust reader checks the same set).
REQUIRED_OPS = {"vmae_encoder": {"Conv", "Softmax", "Erf"},
                "vmae_decoder": {"Conv", "Softmax", "Erf"},
                "dit": {"Conv", "Softmax", "Sin", "Cos"}}
# Max abs difference onnxruntime vs PyTorch (float32 both). Measured: ~1e-6
# (tiny), ~4e-6 (full size); float32 vs float64 noise of the reference is
# ~3e-6 (full) and the semantic slips a port could make move outputs by
# >= 2e-4 (spec §8), so one limit serves both sizes.
TOL = 1e-4


class CheckError(RuntimeError):
    pass


# --------------------------------------------------------------------------
# Graph modules: views of the reference models whose attribute names are the
# official top-level keys, so that their state_dict names are the official
# names and each graph holds only its own side's tensors.
# --------------------------------------------------------------------------

class VmaeEncoderGraph(nn.Module):
    """image -> raw posterior parameters (ref.VMAE.encode_params)."""

    def __init__(self, vmae):
        super().__init__()
        self.patch = vmae.patch
        self.patch_embed = vmae.patch_embed
        self.register_buffer("pos_embed", vmae.pos_embed)
        self.blocks = vmae.blocks
        self.norm = vmae.norm
        self.to_latent = vmae.to_latent

    def forward(self, image):
        return ref.VMAE.encode_params(self, image)


class VmaeDecoderGraph(nn.Module):
    """latent -> float pixels (ref.VMAE.decode)."""

    def __init__(self, vmae):
        super().__init__()
        self.from_latent = vmae.from_latent
        self.decoder_embed = vmae.decoder_embed
        self.register_buffer("decoder_pos_embed", vmae.decoder_pos_embed)
        self.decoder_blocks = vmae.decoder_blocks
        self.decoder_norm = vmae.decoder_norm
        self.decoder_pred = vmae.decoder_pred

    def forward(self, latent):
        return ref.VMAE.decode(self, latent)


# --------------------------------------------------------------------------
# Export and verification
# --------------------------------------------------------------------------

def export_graph(module, args, path, input_names, output_names, metadata):
    """TorchScript export (opset 18, no constant folding), then metadata."""
    dynamic = {n: {0: BATCH_AXIS} for n in input_names + output_names}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(
            module, args, path, dynamo=False, opset_version=OPSET,
            do_constant_folding=False, export_params=True,
            keep_initializers_as_inputs=False, input_names=input_names,
            output_names=output_names, dynamic_axes=dynamic)
    model = onnx.load(path)
    # The tracer leaves the outputs' non-batch dims symbolic; they are
    # static (fixed by the input's static dims), so record them.
    with torch.no_grad():
        outs = module(*args)
    outs = outs if isinstance(outs, tuple) else (outs,)
    for value, out in zip(model.graph.output, outs):
        dims = value.type.tensor_type.shape.dim
        for d, n in zip(list(dims)[1:], out.shape[1:]):
            d.Clear()
            d.dim_value = n
    del model.metadata_props[:]
    for k, v in metadata.items():
        model.metadata_props.add(key=k, value=str(v))
    onnx.save(model, path)
    return model


def _value_key(arr):
    """Order-independent fingerprint of a float tensor's values (catches a
    weight copied in any layout, e.g. transposed)."""
    flat = np.sort(np.ascontiguousarray(arr, dtype=np.float32).reshape(-1))
    return flat.size, hashlib.sha1(flat.tobytes()).hexdigest()


def check_graph(model, kind, expected, other_names, input_names,
                output_names):
    """Verifies names/values of the initializers, the operator set and the
    interface. `expected`: {official name: checkpoint tensor} that must be
    initializers; `other_names`: official names that must not appear.
    Returns a summary dict."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    problems = []
    for name, tensor in expected.items():
        want = tensor.detach().cpu().numpy()
        if name not in inits:
            problems.append(f"missing initializer `{name}`")
            continue
        got = numpy_helper.to_array(inits[name])
        if got.dtype != np.float32 or want.dtype != np.float32:
            problems.append(f"`{name}`: dtype {got.dtype} (want float32)")
        elif got.shape != want.shape:
            problems.append(f"`{name}`: shape {got.shape}, checkpoint "
                            f"{want.shape}")
        elif not np.array_equal(got, want):
            problems.append(f"`{name}`: values differ from the checkpoint")
    leaked = sorted(set(inits) & set(other_names))
    if leaked:
        problems.append(f"tensors of the other graph present: {leaked[:5]}")

    # Anonymous tensors: initializers without an official name and the
    # values of Constant nodes. None may be a copy of a parameter.
    param_keys = {_value_key(t.detach().cpu().numpy()): n
                  for n, t in expected.items() if t.numel() > 1}
    anon = [(n, numpy_helper.to_array(t)) for n, t in inits.items()
            if n not in expected]
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    anon.append((node.output[0], numpy_helper.to_array(a.t)))
    anon_elems = 0
    for name, arr in anon:
        anon_elems += arr.size
        if arr.dtype.kind == "f" and arr.size > 1:
            hit = param_keys.get(_value_key(arr))
            if hit is not None:
                problems.append(f"anonymous tensor `{name}` holds the values "
                                f"of `{hit}` (folded/copied weight)")
    anon_inits = [n for n in inits if n not in expected]
    if anon_inits:
        problems.append(f"{len(anon_inits)} initializers without an official "
                        f"name, e.g. {anon_inits[:3]}")

    ops = collections.Counter(n.op_type for n in graph.node)
    domains = {n.domain for n in graph.node} - {"", "ai.onnx"}
    if domains:
        problems.append(f"operators from non-standard domains {domains}")
    bad_ops = sorted(set(ops) & FORBIDDEN_OPS)
    if bad_ops:
        problems.append(f"forbidden operators {bad_ops}")
    missing_ops = sorted(REQUIRED_OPS[kind] - set(ops))
    if missing_ops:
        problems.append(f"required operators missing {missing_ops}")
    opset = {o.domain: o.version for o in model.opset_import}
    if opset.get("", opset.get("ai.onnx")) != OPSET:
        problems.append(f"opset {opset} (want {OPSET})")

    for values, names in ((graph.input, input_names),
                          (graph.output, output_names)):
        got = [v.name for v in values]
        if got != names:
            problems.append(f"interface {got} (want {names})")
        for v in values:
            dim0 = v.type.tensor_type.shape.dim[0]
            if dim0.dim_param != BATCH_AXIS:
                problems.append(f"`{v.name}` axis 0 is not `{BATCH_AXIS}`")
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("ldmae.kind") != kind:
        problems.append(f"metadata ldmae.kind = {meta.get('ldmae.kind')}")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        problems.append(f"onnx checker: {e}")
    if problems:
        raise CheckError(f"{kind}: " + "; ".join(problems))
    return {"initializers": len(inits), "matched": len(expected),
            "anonymous_constants": len(anon),
            "anonymous_elements": anon_elems, "ops": dict(ops.most_common()),
            "nodes": sum(ops.values())}


def ort_session(path, threads=0):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(path, sess_options=opts,
                                providers=["CPUExecutionProvider"])


def ort_compare(path, module, feeds):
    """Runs onnxruntime and the PyTorch module on `feeds` (ordered name ->
    numpy); returns (max abs diff, max |reference|, onnxruntime output)."""
    sess = ort_session(path)
    out = sess.run(None, feeds)[0]
    declared = sess.get_outputs()[0].shape
    if list(declared[1:]) != list(out.shape[1:]):
        raise CheckError(f"{path}: output shape {out.shape}, declared "
                         f"{declared}")
    with torch.no_grad():
        want = module(*(torch.from_numpy(v) for v in feeds.values())).numpy()
    if out.shape != want.shape or out.dtype != np.float32:
        raise CheckError(f"{path}: onnxruntime output {out.dtype}"
                         f"{out.shape}, reference {want.shape}")
    diff = float(np.abs(out.astype(np.float64) - want).max())
    return diff, float(np.abs(want).max()), out


def check_tolerance(name, diff, scale, tol=None):
    limit = TOL if tol is None else tol
    ok = diff <= limit
    print(f"  onnxruntime vs PyTorch: max abs diff {diff:.3e} "
          f"(max |ref| {scale:.3g}, limit {limit:.1e}) "
          f"{'ok' if ok else 'FAILED'}")
    if not ok:
        raise CheckError(f"{name}: onnxruntime differs from PyTorch by "
                         f"{diff:.3e} > {limit:.1e}")


def report(path, summary, seconds):
    size = os.path.getsize(path)
    print(f"{path}: {size / 2**20:.2f} MiB, {summary['matched']} "
          f"official initializers bit-identical to the checkpoint "
          f"({summary['initializers']} initializers in all), "
          f"{summary['anonymous_constants']} anonymous constants "
          f"({summary['anonymous_elements']} elements), "
          f"{summary['nodes']} nodes, export+check {seconds:.1f}s")
    print("  ops: " + ", ".join(f"{k} {v}" for k, v in summary["ops"].items()))


def _sd(module):
    return dict(module.state_dict())


# --------------------------------------------------------------------------
# VMAE
# --------------------------------------------------------------------------

def vmae_checkpoint_sd(ckpt):
    """The checkpoint's model tensors as the reference loader reads them."""
    return {k: v for k, v in ckpt["model"].items()
            if not k.startswith("perceptual_loss.")}


def export_vmae(ckpt, outdir, seed=0, check_ort=True, tol=None):
    """Exports vmae_encoder.onnx and vmae_decoder.onnx into outdir.
    Returns {kind: (path, graph module)}."""
    os.makedirs(outdir, exist_ok=True)
    cfg = ref.vmae_config(ckpt)
    vmae = ref.vmae_from_checkpoint(ckpt)
    enc, dec = VmaeEncoderGraph(vmae).eval(), VmaeDecoderGraph(vmae).eval()
    ck_sd = vmae_checkpoint_sd(ckpt)
    enc_names, dec_names = set(_sd(enc)), set(_sd(dec))
    if enc_names & dec_names or enc_names | dec_names != set(ck_sd):
        raise CheckError("encoder/decoder graphs do not partition the "
                         "VMAE state dict")
    meta = {"ldmae.model": ckpt["args"].model,
            "ldmae.heads": cfg["heads"],
            "ldmae.decoder_heads": cfg["dec_heads"],
            "ldmae.source": "VMAE checkpoint `model` entry"}
    size, lat, grid = cfg["img_size"], cfg["latent_dim"], \
        cfg["img_size"] // cfg["patch"]
    g = torch.Generator().manual_seed(seed)
    jobs = [
        ("vmae_encoder", enc, "image", "posterior",
         lambda b: 2 * torch.rand((b, 3, size, size), generator=g) - 1,
         enc_names, dec_names),
        ("vmae_decoder", dec, "latent", "pixels",
         lambda b: torch.randn((b, lat, grid, grid), generator=g),
         dec_names, enc_names),
    ]
    out = {}
    for kind, module, iname, oname, make_input, own, other in jobs:
        t0 = time.time()
        path = os.path.join(outdir, kind + ".onnx")
        # Traced with batch 1; the batch-2 check below proves the batch
        # axis is really dynamic.
        model = export_graph(module, (make_input(1),), path, [iname],
                             [oname], dict(meta, **{"ldmae.kind": kind}))
        summary = check_graph(model, kind, {n: ck_sd[n] for n in own},
                              other, [iname], [oname])
        del model
        report(path, summary, time.time() - t0)
        if check_ort:
            x = make_input(2).numpy()
            diff, scale, _ = ort_compare(path, module, {iname: x})
            check_tolerance(kind, diff, scale, tol)
        out[kind] = (path, module)
    return out


# --------------------------------------------------------------------------
# DiT
# --------------------------------------------------------------------------

class _Feeds:
    """DiT inputs: x [B,C,H,W], t [B] float32, y [B] int64."""

    def __init__(self, dit, hw):
        self.dit, self.hw = dit, hw

    def make(self, b, g):
        x = torch.randn((b, self.dit.in_channels, self.hw, self.hw),
                        generator=g)
        t = torch.tensor([0.0, 0.6, 1.0, 0.3][:b], dtype=torch.float32)
        if self.dit.has_null:
            # A random class and the null (unconditional) class.
            y = torch.randint(0, self.dit.num_classes, (b,), generator=g)
            y[-1] = self.dit.num_classes
        else:
            y = torch.zeros(b, dtype=torch.long)
        return x, t, y


def latent_stats_json(path):
    stats = torch.load(path, map_location="cpu", weights_only=False)
    return json.dumps({k: [float(v) for v in stats[k].reshape(-1).float()]
                       for k in ("mean", "std")})


def export_dit(ckpt, out_path, seed=0, check_ort=True, tol=None,
               latent_stats=None):
    """Exports the DiT (`ema` weights) to out_path. Returns the module."""
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    cfg = ref.dit_config(ckpt)
    dit = ref.dit_from_checkpoint(ckpt, "ema")
    ck_sd = {k.removeprefix("module."): v for k, v in ckpt["ema"].items()}
    if set(_sd(dit)) != set(ck_sd):
        raise CheckError("DiT module and `ema` state dict differ in keys")
    meta = {"ldmae.kind": "dit",
            "ldmae.model": ckpt["config"]["model"]["model_type"],
            "ldmae.heads": cfg["heads"],
            "ldmae.num_classes": cfg["num_classes"],
            "ldmae.source": "DiT checkpoint `ema` entry"}
    if latent_stats:
        meta["ldmae.latent_stats"] = latent_stats_json(latent_stats)
    feeds = _Feeds(dit, cfg["input_size"])
    g = torch.Generator().manual_seed(seed)
    names = ["x", "t", "y"]
    t0 = time.time()
    model = export_graph(dit, feeds.make(1, g), out_path, names,
                         ["velocity"], meta)
    summary = check_graph(model, "dit", ck_sd, (), names, ["velocity"])
    del model
    report(out_path, summary, time.time() - t0)
    if check_ort:
        x, t, y = feeds.make(2, g)
        diff, scale, _ = ort_compare(
            out_path, dit, {"x": x.numpy(), "t": t.numpy(), "y": y.numpy()})
        check_tolerance(os.path.basename(out_path), diff, scale, tol)
    return dit


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]))
    ap.add_argument("what", choices=("vmae", "dit"))
    ap.add_argument("ckpt", help="official-format checkpoint")
    ap.add_argument("out", help="vmae: output folder; dit: output .onnx")
    ap.add_argument("--seed", type=int, default=0,
                    help="seed of the random check inputs")
    ap.add_argument("--tol", type=float, default=None,
                    help="max abs diff onnxruntime vs PyTorch (default "
                         f"{TOL:g})")
    ap.add_argument("--no-ort", action="store_true",
                    help="skip the onnxruntime comparison")
    ap.add_argument("--latent-stats", metavar="PT",
                    help="dit only: latents_stats.pt to record in the "
                         "`ldmae.latent_stats` metadata")
    a = ap.parse_args()
    t0 = time.time()
    ckpt = load(os.path.dirname(os.path.abspath(a.ckpt)),
                os.path.basename(a.ckpt))
    try:
        if a.what == "vmae":
            if a.latent_stats:
                ap.error("--latent-stats applies to `dit` only")
            export_vmae(ckpt, a.out, a.seed, not a.no_ort, a.tol)
        else:
            export_dit(ckpt, a.out, a.seed, not a.no_ort, a.tol,
                       a.latent_stats)
    except CheckError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"done in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
