"""ldmae on a GPU (wgpu: Vulkan, Metal, DX12) vs PyTorch CUDA on the same weights and inputs.

    python3 export/bench/gpu.py --fixtures fixtures-full --repeat 10 [--device vulkan]

Runs the official-size VMAE encode / decode and the LightningDiT-B/1 forward (batch 1 and 2)
in f16 and f32: ldmae through `examples/timings` built with the `wgpu` feature (one process per
model and precision, so its first run shows the shader compilation), PyTorch with the model
in .half() / .float() on CUDA, timed with torch.cuda.synchronize(). Without CUDA, PyTorch runs
on the CPU (f32 only: CPU half is not a speed path) and the table says so: that fallback is how
the script is tested on a machine without a GPU (ldmae then runs on lavapipe or whatever wgpu
finds). Prints a markdown table of medians and ratios. Build first:

    cargo build --release --example timings --features wgpu     # or vulkan / metal
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import load_models, write_inputs  # noqa: E402


def torch_ms(fn, repeat, sync):
    """Median ms of `repeat` runs of fn after one warm-up, synchronising the device."""
    def once():
        t0 = time.perf_counter()
        fn()
        sync()
        return (time.perf_counter() - t0) * 1e3
    once()
    return float(np.median([once() for _ in range(repeat)]))


def ldmae_run(args, tmp, model, dtype):
    cmd = [args.timings, args.fixtures, tmp, model, str(args.repeat), args.device, dtype]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if out.returncode != 0:
        return None, None, out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return float(np.median(r["times_ms"])), r["first_ms"], f"{r['device']} {r['dtype']}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--fixtures", default=os.environ.get("LDMAE_FULL_FIXTURES", "fixtures-full"))
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--device", default="wgpu", help="ldmae device: wgpu, vulkan, metal, auto or cpu")
    ap.add_argument("--timings", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"),
                                                      "release", "examples", "timings"))
    ap.add_argument("--models", default="vmae_encode,vmae_decode,dit_b1,dit_b2")
    ap.add_argument("--dtypes", default="f16,f32")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per ldmae run")
    args = ap.parse_args()

    inputs, tmp = write_inputs(args.timings, args.fixtures)
    vmae, dit = load_models(args.fixtures)
    cuda = torch.cuda.is_available()
    tdev = torch.device("cuda" if cuda else "cpu")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch_name = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"

    rows = []
    for dtype in args.dtypes.split(","):
        tdtype = {"f16": torch.float16, "f32": torch.float32}[dtype]
        run_torch = cuda or dtype == "f32"
        if run_torch:
            v, d = vmae.to(tdev, tdtype), dit.to(tdev, tdtype)
        for model in args.models.split(","):
            ours, first, where = ldmae_run(args, tmp, model, dtype)
            theirs = None
            if run_torch:
                t = lambda name: torch.from_numpy(inputs[name]).to(tdev, tdtype)  # noqa: E731
                if model == "vmae_encode":
                    x = t("image.npy")
                    fn = lambda: v.encode_params(x)  # noqa: E731
                elif model == "vmae_decode":
                    z = t("latent.npy")
                    fn = lambda: v.decode(z)  # noqa: E731
                else:
                    b = int(model[-1])
                    x, tt = t("dit_x.npy")[:b], torch.full((b,), 0.5, device=tdev)
                    y = torch.full((b,), 207, device=tdev)
                    fn = lambda: d(x, tt, y)  # noqa: E731
                with torch.inference_mode():
                    theirs = torch_ms(fn, args.repeat, sync)
            rows.append((model, dtype, where, first, ours, theirs))
            print(rows[-1], file=sys.stderr, flush=True)

    fmt = lambda v, f="{:.1f}": "—" if v is None else f.format(v)  # noqa: E731
    print(f"\nPyTorch on {torch_name} (torch {torch.__version__}); median of {args.repeat} runs after one warm-up\n")
    print("| model | dtype | ldmae device | ldmae first run ms | ldmae ms | PyTorch ms | ldmae/PyTorch |")
    print("|---|---|---|---|---|---|---|")
    for model, dtype, where, first, ours, theirs in rows:
        ratio = ours / theirs if ours and theirs else None
        print(f"| {model} | {dtype} | {where} | {fmt(first)} | {fmt(ours)} | {fmt(theirs)} | {fmt(ratio, '{:.2f}')} |")


if __name__ == "__main__":
    main()
