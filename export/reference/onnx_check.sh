#!/usr/bin/env bash
# Usage: onnx_check.sh FULLDIR
# Exports the full-size checkpoints in FULLDIR (vmae.pth, dit.pt,
# dit_celeba.pt, as written by `make_all.sh full`) to FULLDIR/onnx/
# (vmae_encoder.onnx, vmae_decoder.onnx, dit.onnx, dit_celeba.onnx; ~1 GB)
# and checks each graph: official initializer names with the checkpoint's
# exact values, operator set, and onnxruntime vs PyTorch on random batch-2
# inputs (see onnx_export.py). Exits non-zero on any failure.
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: $0 FULLDIR" >&2
    exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
full="$1"
out="$full/onnx"
mkdir -p "$out"
start=$(date +%s)
python3 "$here/onnx_export.py" vmae "$full/vmae.pth" "$out"
python3 "$here/onnx_export.py" dit "$full/dit.pt" "$out/dit.onnx"
python3 "$here/onnx_export.py" dit "$full/dit_celeba.pt" "$out/dit_celeba.onnx"
echo "onnx_check: all graphs passed in $(( $(date +%s) - start ))s"
