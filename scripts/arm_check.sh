#!/usr/bin/env bash
# Cross-builds the CPU test suite for aarch64 Linux (Jetson, ARM servers) and runs it under
# qemu-aarch64, so the NEON variants of the CPU kernels are checked against their references.
# Also runs the C ABI tests and the CLI (official checkpoint against the reference) there.
# Part of scripts/test.sh: about 9 minutes cold here (6 of them building), 2–4 warm, before the
# C ABI and CLI builds were added.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null; then
    $SUDO apt-get install -y -q qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross
fi
# zlib for arm64, which the C tests' PNG helper links statically. Only unpacked, never installed:
# installing arm64 packages brings Debian's arm64 libc next to the cross one, and programs run
# under qemu then hang.
zlib_dir=${XDG_CACHE_HOME:-$HOME/.cache}/ldmae/zlib-arm64
zlib=$zlib_dir/usr/lib/aarch64-linux-gnu/libz.a
if [ ! -f "$zlib" ]; then
    dpkg --print-foreign-architectures | grep -qx arm64 || $SUDO dpkg --add-architecture arm64
    $SUDO apt-get update -q
    (cd "$(mktemp -d)" && apt-get download -q zlib1g-dev:arm64 && dpkg -x zlib1g-dev_*_arm64.deb "$zlib_dir")
fi
rustup target add aarch64-unknown-linux-gnu >/dev/null
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
# The CPU model decides what the f16 GEMM runs: a Cortex-A53 has NEON only (f16 products by
# widening to f32), qemu's `max` has FP16 arithmetic (the gemm crate's NEON-FP16 kernels) and dot
# products. The f32 kernels have one NEON variant, so only the f16 test runs on both.
features=std,flex,checkpoint,embedded-models
echo "-- qemu -cpu cortex-a53"
QEMU_CPU=cortex-a53 cargo test --release --target aarch64-unknown-linux-gnu -p ldmae --no-default-features \
    --features $features --lib --test parity_tiny --test codec --test errors --test f16_cpu
echo "-- qemu -cpu max (FP16 arithmetic)"
QEMU_CPU=max cargo test --release --target aarch64-unknown-linux-gnu -p ldmae --no-default-features \
    --features $features --test f16_cpu

echo "-- the C ABI and the CLI on aarch64 (qemu-user runs no AddressSanitizer: that is the x86 run's)"
target_dir=${CARGO_TARGET_DIR:-target}/aarch64-unknown-linux-gnu/release
cargo build -q --release --target aarch64-unknown-linux-gnu -p ldmae-ffi --lib
cargo build -q --release --target aarch64-unknown-linux-gnu -p ldmae --no-default-features \
    --features $features,cli --bin ldmae
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
aarch64-linux-gnu-gcc -std=c99 -Wall -Wextra -Werror -O1 -Iffi/include ffi/tests/abi_test.c \
    "$target_dir/libldmae.a" "$zlib" -lm -lpthread -ldl -lrt -lgcc_s -o "$tmp/abi_test"
tol=$(python3 -c 'import json; m = json.load(open("tests/fixtures/tiny/manifest.json"));
print(4 * m["f64_max_abs_diff"]["enc_mean"] + 1e-6 * m["max_abs"]["enc_mean"])')
qemu-aarch64 -L /usr/aarch64-linux-gnu "$tmp/abi_test" tests/fixtures/tiny "$tol" "$tmp"
# The CLI reads the official checkpoint and matches the PyTorch reference's posterior mean.
qemu-aarch64 -L /usr/aarch64-linux-gnu "$target_dir/ldmae" --device cpu encode \
    --vmae tests/fixtures/tiny/vmae.pth tests/fixtures/tiny/image.png -o "$tmp/mean.npy" 2>"$tmp/log"
grep '^cpu: ' "$tmp/log" # the kernels it ran
python3 - "$tmp/mean.npy" "$tol" <<'PY'
import sys, numpy as np
ours, ref = np.load(sys.argv[1]), np.load("tests/fixtures/tiny/enc_mean.npy")
diff = float(np.abs(ours - ref).max())
assert diff <= float(sys.argv[2]), f"aarch64 CLI encode: max |diff| {diff:.3e} > {sys.argv[2]}"
print(f"aarch64 CLI encode of the official checkpoint: max |diff| {diff:.3e} (tolerance {float(sys.argv[2]):.3e})")
PY
echo "aarch64: all checks passed"
