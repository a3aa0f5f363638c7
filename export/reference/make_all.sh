#!/usr/bin/env bash
# Usage: make_all.sh tiny|full OUTDIR
# Writes random official-format checkpoints and the parity fixtures computed
# from them into OUTDIR (one directory holds both).
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: $0 tiny|full OUTDIR" >&2
    exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python3 "$here/make_checkpoints.py" "$2" --preset "$1"
python3 "$here/make_fixtures.py" "$2" "$2"
