#!/bin/bash
# Python-side evaluation of the bundled model (numbers in docs/eval.md).
# Usage: tools/train/eval_all.sh [OUT_DIR]   (defaults: build/train-work)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${1:-$ROOT/build/train-work}"
MODEL="$ROOT/models/zaya-tiny-reasoner"
N_LO="${N_LO:-2}"
N_HI="${N_HI:-3}"
/usr/bin/python3 "$HERE/eval.py" --model "$MODEL" --problems 300 --n-lo "$N_LO" --n-hi "$N_HI" \
    --seed 0 --tau 40 --beta 160 --json "$OUT/eval_main.json"
/usr/bin/python3 "$HERE/eval.py" --model "$MODEL" --long --problems 100 --n-lo 40 --n-hi 40 \
    --seed 1 --beta 220 --long-tau 64 --rounds 8 --json "$OUT/eval_long.json"
