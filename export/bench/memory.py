"""Peak resident memory and load time of the CLI on the official-size models, per pack storage.

    python3 export/bench/memory.py --fixtures fixtures-full --work /tmp/ldmae-memory \
        --bin target/release --threads 2

For each storage (f32, f16, int8, int4) it exports the full-size VMAE and DiT-B/1 fixtures
(random weights at the official sizes) with `ldmae-export`, then runs, each in its own
process under `/usr/bin/time -f %M`: a VMAE decode of one 256² image, an encode, and a 2-step
sample of one image (DiT + VMAE decode), on the CPU in f32 and, for the 16-bit and integer
packs, in f16. "held" is what the models' weights take on the device (parameters × 4 or 2
bytes); "peak / (held + base)" relates the peak to that plus the process's resident memory
without models (`ldmae info` on the same pack, which maps no weights). The pack load time
(`timings vmae_load` / `dit_load`: open the pack and build the model, median of --repeat)
is the last column. Prints one Markdown table.
"""

import argparse
import json
import os
import subprocess

STORAGES = ["f32", "f16", "int8", "int4"]


def run(cmd, env):
    """Peak RSS (MiB) and wall seconds of `cmd`."""
    out = subprocess.run(["/usr/bin/time", "-f", "%M %e"] + cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    kib, wall = out.stderr.strip().splitlines()[-1].split()
    return int(kib) / 1024, float(wall)


def params(ldmae, pack, env):
    text = subprocess.run([ldmae, "info", pack], env=env, capture_output=True, text=True, check=True).stdout
    line = [l for l in text.splitlines() if "parameters" in l][0]
    return int(line.split(" tensors, ")[1].split()[0])


def load_ms(timings, fixtures, work, model, dtype, repeat, env):
    out = subprocess.run([timings, fixtures, work, model, str(repeat), "cpu", dtype], env=env,
                         capture_output=True, text=True, check=True).stdout
    j = json.loads(out.strip().splitlines()[-1])
    t = sorted(j["times_ms"])
    return t[len(t) // 2], j["first_ms"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--bin", default="target/release", help="folder with ldmae, ldmae-export, examples/timings")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--storages", default=",".join(STORAGES))
    a = ap.parse_args()
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    ldmae, export = os.path.join(a.bin, "ldmae"), os.path.join(a.bin, "ldmae-export")
    timings = os.path.join(a.bin, "examples", "timings")
    fx = lambda n: os.path.join(a.fixtures, n)  # noqa: E731
    rows = []
    for s in a.storages.split(","):
        d = os.path.join(a.work, s)
        os.makedirs(d, exist_ok=True)
        vmae, dit = os.path.join(d, "vmae.pack"), os.path.join(d, "dit.pack")
        if not os.path.exists(vmae):
            subprocess.run([export, "vmae", fx("vmae.pth"), "-o", vmae, "--dtype", s], check=True, env=env)
        if not os.path.exists(dit):
            subprocess.run([export, "dit", fx("dit.pt"), "--stats", fx("latents_stats.pt"), "-o", dit,
                            "--dtype", s], check=True, env=env)
        nv, nd = params(ldmae, vmae, env), params(ldmae, dit, env)
        base, _ = run([ldmae, "info", dit], env)
        png = os.path.join(d, "out.png")
        for dtype in (["f32"] if s == "f32" else ["f32", "f16"]):
            width = 4 if dtype == "f32" else 2
            common = ["--device", "cpu", "--dtype", dtype]
            jobs = {
                "vmae decode": ([ldmae] + common + ["decode", "--vmae", vmae, fx("dec_latent.npy"), "-o", png], nv),
                "vmae encode": ([ldmae] + common + ["encode", "--vmae", vmae, fx("image.png"), "-o",
                                                    os.path.join(d, "z.npy")], nv),
                "2-step sample": ([ldmae] + common + ["sample", "--dit", dit, "--vmae", vmae, "--class", "207",
                                                      "--steps", "2", "--cfg", "1", "-o", png], nv + nd),
            }
            for job, (cmd, n) in jobs.items():
                peak, wall = run(cmd, env)
                held = n * width / 2**20
                pack_mb = (os.path.getsize(vmae) + (os.path.getsize(dit) if "sample" in job else 0)) / 2**20
                load = ""
                if job != "vmae encode":
                    model = "vmae_load" if job == "vmae decode" else "dit_load"
                    med, first = load_ms(timings, a.fixtures, d, model, dtype, a.repeat, env)
                    load = f"{med:.1f} (first {first:.0f})"
                rows.append((job, s, f"{pack_mb:.1f}", dtype, f"{held:.1f}", f"{peak:.1f}",
                             f"{peak / (held + base):.2f}", f"{wall:.2f}", load))
    print("| run | pack | pack MiB | compute | held MiB | peak RSS MiB | peak / (held + base) | wall s "
          "| load ms |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"\nbase = `ldmae info` on the DiT pack: {base:.1f} MiB; threads {a.threads}")


if __name__ == "__main__":
    main()
