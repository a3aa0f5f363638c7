#!/usr/bin/env bash
# Cross-builds the CPU test suite for aarch64 Linux (Jetson, ARM servers) and runs it under
# qemu-aarch64, so the NEON variants of the CPU kernels are checked against their references.
# Part of scripts/test.sh: about 9 minutes cold here (6 of them building), 2–4 warm.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get install -y -q qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross
fi
rustup target add aarch64-unknown-linux-gnu >/dev/null
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
cargo test --release --target aarch64-unknown-linux-gnu -p ldmae --no-default-features \
    --features std,flex,checkpoint,embedded-models --lib --test parity_tiny --test codec --test errors
