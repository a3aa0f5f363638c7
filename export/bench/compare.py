"""ldmae vs onnxruntime vs OpenVINO vs PyTorch on the same weights and inputs, one run, one table.

    python3 export/bench/compare.py --fixtures fixtures-full --threads 2 --repeat 5 [--rounds 3] [--ldmae-cpu avx2]

Needs the full-size fixtures and ONNX exports of scripts/test.sh (random weights at the
official sizes), `pip install openvino` (optional: its column is left out without it) and
`cargo build --release --example timings`. Every engine uses the same thread count
(torch.set_num_threads, ORT intra-op threads, OpenVINO's INFERENCE_NUM_THREADS with the latency
hint and f32 precision, RAYON_NUM_THREADS for ldmae) and is timed as the median of all its runs:
--repeat after one warm-up in each of --rounds turns, the engines' order rotating from turn to
turn (a burst of load on a shared host then falls on each engine alike). ldmae runs in its own
process per model and turn, whose peak resident memory is reported (`/usr/bin/time -f %M`).
`--ldmae-cpu` sets LDMAE_CPU for ldmae (an AVX-512 host then measures the AVX2 path); the table
names the host's ISA and the kernels ldmae ran. The fraction
of the hardware limit divides the model's FLOPs (spec §1.6, §2.3) by the median time and by the
f32 GEMM throughput measured here (the better of torch.matmul and ldmae's own, 2048²). Start-up:
the wall time of a fresh process from exec to exit that loads the embedded models and makes its
first result (a 256² photo decode; one 2-step Fashion-MNIST sample), and that result's time
from `main`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
import torch

try:
    import openvino as ov
except ImportError:
    ov = None

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import ldmae_ref as ref  # noqa: E402

GFLOPS = {"vmae_encode": 20.6, "vmae_decode": 20.7, "dit_b1": 212.7, "dit_b2": 2 * 212.7}


def times_ms(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def median_ms(fn, repeat):
    return float(np.median(times_ms(fn, repeat)))


def gemm_gflops(threads, n=2048, repeat=5):
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    ms = median_ms(lambda: a @ b, repeat)
    return 2 * n**3 / (ms * 1e-3) / 1e9


def host_isa():
    """The host's vector ISA level, from /proc/cpuinfo's flags (x86) or features (aarch64)."""
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith(("flags", "Features")):
                flags = set(line.split(":", 1)[1].split())
                break
    if "avx512f" in flags:
        return "x86-64-v4 (AVX-512F)"
    if {"avx2", "fma"} <= flags:
        return "x86-64-v3 (AVX2+FMA, no AVX-512)"
    if "asimd" in flags:
        extras = [n for f, n in (("asimdhp", "FP16"), ("asimddp", "dotprod")) if f in flags]
        return "aarch64 NEON" + (" + " + " + ".join(extras) if extras else "")
    return "x86-64 baseline (SSE2)"


def openvino_sessions(fx, threads):
    """The three ONNX graphs compiled by OpenVINO's CPU plugin (None without openvino)."""
    if ov is None:
        return None
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    return {k: core.compile_model(core.read_model(os.path.join(fx, "onnx", f)), "CPU", config)
            for k, f in [("enc", "vmae_encoder.onnx"), ("dec", "vmae_decoder.onnx"), ("dit", "dit.onnx")]}


def startup(timings, fx, tmp, env, repeat):
    """Median process wall time (exec → exit) and time from main to the first result, per case."""
    rows = []
    for case in ("startup_decode", "startup_sample"):
        walls, firsts = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            out = subprocess.run([timings, fx, tmp, case, "0"], capture_output=True, text=True, env=env, check=True)
            walls.append((time.perf_counter() - t0) * 1e3)
            firsts.append(json.loads(out.stdout.strip().splitlines()[-1])["since_start_ms"])
        rows.append((case, float(np.median(walls)), float(np.median(firsts))))
    return rows


def write_inputs(timings=None, fixtures=None):
    """The benchmark inputs, as arrays and as .npy files in a new temporary folder, with the
    fixtures' weights as f32 packs there when `timings` is given (ldmae then loads packs)."""
    rng = np.random.default_rng(0)
    inputs = {
        "image.npy": rng.uniform(-1, 1, (1, 3, 256, 256)).astype(np.float32),
        "latent.npy": rng.standard_normal((1, 16, 32, 32)).astype(np.float32),
        "dit_x.npy": rng.standard_normal((2, 16, 32, 32)).astype(np.float32),
    }
    tmp = tempfile.mkdtemp(prefix="ldmae-bench-")
    for name, a in inputs.items():
        np.save(os.path.join(tmp, name), a)
    if timings:
        subprocess.run([timings, fixtures, tmp, "packs", "0"], check=True)
    return inputs, tmp


def load_models(fx):
    """The reference VMAE and DiT on the fixtures' checkpoints, in eval mode."""
    load = lambda name: torch.load(os.path.join(fx, name), map_location="cpu", weights_only=False)  # noqa: E731
    return (ref.vmae_from_checkpoint(load("vmae.pth")).eval(), ref.dit_from_checkpoint(load("dit.pt")).eval())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--fixtures", default=os.environ.get("LDMAE_FULL_FIXTURES", "fixtures-full"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure every engine this many times per model, in turn (the order rotating), and take "
                         "the median of all runs: a burst of load on a shared host then falls on every engine")
    ap.add_argument("--timings", default="target/release/examples/timings")
    ap.add_argument("--models", default="vmae_encode,vmae_decode,dit_b1,dit_b2")
    ap.add_argument("--ldmae-cpu", help="LDMAE_CPU for ldmae: baseline, avx2 or avx512 (default: the widest)")
    args = ap.parse_args()
    fx, t = args.fixtures, args.threads
    torch.set_num_threads(t)

    inputs, tmp = write_inputs(args.timings, fx)
    vmae, dit = load_models(fx)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = t, 1
    sess = {k: ort.InferenceSession(os.path.join(fx, "onnx", f), opts, providers=["CPUExecutionProvider"])
            for k, f in [("enc", "vmae_encoder.onnx"), ("dec", "vmae_decoder.onnx"), ("dit", "dit.onnx")]}

    def ort_run(s, *xs):
        return lambda: s.run(None, {i.name: x for i, x in zip(s.get_inputs(), xs)})

    ov_sess = openvino_sessions(fx, t)

    def ov_run(key, *xs):
        if ov_sess is None:
            return None
        request = ov_sess[key].create_infer_request()
        return lambda: request.infer(list(xs))

    x2 = inputs["dit_x.npy"]
    cases = {
        "vmae_encode": (lambda: vmae.encode_params(torch.from_numpy(inputs["image.npy"])),
                        ort_run(sess["enc"], inputs["image.npy"]), ov_run("enc", inputs["image.npy"])),
        "vmae_decode": (lambda: vmae.decode(torch.from_numpy(inputs["latent.npy"])),
                        ort_run(sess["dec"], inputs["latent.npy"]), ov_run("dec", inputs["latent.npy"])),
    }
    for b in (1, 2):
        xt, tt, yt = torch.from_numpy(x2[:b]), torch.full((b,), 0.5), torch.full((b,), 207)
        dit_inputs = (x2[:b], np.full((b,), 0.5, np.float32), np.full((b,), 207, np.int64))
        cases[f"dit_b{b}"] = (lambda xt=xt, tt=tt, yt=yt: dit(xt, tt, yt),
                              ort_run(sess["dit"], *dit_inputs), ov_run("dit", *dit_inputs))

    env = dict(os.environ, RAYON_NUM_THREADS=str(t))
    if args.ldmae_cpu:
        env["LDMAE_CPU"] = args.ldmae_cpu
    torch_gemm = gemm_gflops(t)
    out = subprocess.run([args.timings, fx, tmp, "gemm", str(args.repeat)], capture_output=True, text=True,
                         env=env, check=True)
    gemm_run = json.loads(out.stdout.strip().splitlines()[-1])
    ldmae_gemm = 2 * 2048**3 / (np.median(gemm_run["times_ms"]) * 1e-3) / 1e9
    gemm = max(torch_gemm, ldmae_gemm)
    rows = []
    for model in args.models.split(","):
        torch_fn, ort_fn, ov_fn = cases[model]
        rss = []

        def ours():
            out = subprocess.run(["/usr/bin/time", "-f", "%M", args.timings, fx, tmp, model, str(args.repeat)],
                                 capture_output=True, text=True, env=env, check=True)
            rss.append(int(out.stderr.strip().splitlines()[-1]) / 1024)
            return json.loads(out.stdout.strip().splitlines()[-1])["times_ms"]

        def torch_times():
            with torch.inference_mode():
                return times_ms(torch_fn, args.repeat)

        engines = [("torch", torch_times), ("ort", lambda: times_ms(ort_fn, args.repeat)), ("ldmae", ours)]
        if ov_fn:
            engines.append(("ov", lambda: times_ms(ov_fn, args.repeat)))
        times = {name: [] for name, _ in engines}
        for r in range(args.rounds):
            for name, run in engines[r % len(engines):] + engines[:r % len(engines)]:
                times[name] += run()
        med = {name: float(np.median(ts)) for name, ts in times.items()}
        torch_ms, ort_ms, ours_ms, ov_ms = med["torch"], med["ort"], med["ldmae"], med.get("ov", float("nan"))
        rss_mb = max(rss)
        frac = GFLOPS[model] / (ours_ms * 1e-3) / gemm
        best = np.nanmin([ort_ms, ov_ms])
        rows.append((model, ours_ms, ort_ms, ov_ms, torch_ms, ours_ms / ort_ms, ours_ms / ov_ms, ours_ms / best, frac, rss_mb))

    print(f"\nhost ISA: {host_isa()}; ldmae: {gemm_run['kernels']}")
    print(f"{t} threads, f32 GEMM 2048²: torch.matmul {torch_gemm:.1f}, ldmae {ldmae_gemm:.1f} "
          f"GFLOP/s, the larger is the reference; median of {args.repeat} runs × {args.rounds} rounds\n")
    print("| model | ldmae ms | onnxruntime ms | OpenVINO ms | PyTorch ms | ldmae/ORT | ldmae/OpenVINO | ldmae/best peer "
          "| ldmae FLOP/s ÷ GEMM | ldmae peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m, a, o, v, p, ro, rv, rb, f, rss in rows:
        print(f"| {m} | {a:.1f} | {o:.1f} | {v:.1f} | {p:.1f} | {ro:.2f} | {rv:.2f} | {rb:.2f} | {f:.0%} | {rss:.0f} |")
    print("\n| start-up (embedded models) | process exec → exit ms | main → first result ms |")
    print("|---|---|---|")
    for case, wall, first in startup(args.timings, fx, tmp, env, args.repeat):
        print(f"| {case} | {wall:.1f} | {first:.1f} |")


if __name__ == "__main__":
    main()
