#!/usr/bin/env bash
# One go on a machine with a GPU (e.g. a lent NVIDIA box): build the timings example with wgpu,
# make the full-size fixtures if they are missing, print the ldmae-vs-PyTorch ratio table.
#   bash export/bench/gpu_run.sh [FIXTURES_DIR] [extra gpu.py options, e.g. --device vulkan]
# Without cargo on the machine, carry a prebuilt `$CARGO_TARGET_DIR/release/examples/timings`.
set -euo pipefail
cd "$(dirname "$0")/../.."
FIX=${1:-${LDMAE_FULL_FIXTURES:-fixtures-full}}
shift || true
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
if command -v cargo >/dev/null; then
    cargo build --release --example timings --features wgpu
fi
[ -f "$FIX/vmae.pth" ] || bash export/reference/make_all.sh full "$FIX"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true
python3 export/bench/gpu.py --fixtures "$FIX" "$@"
