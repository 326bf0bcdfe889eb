#!/bin/bash
# Python-side evaluation of the bundled model: the commands behind the numbers in docs/eval.md
# (run on an NVIDIA H100; on a CPU they take hours). Usage: tools/train/eval_all.sh [OUT_DIR]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${1:-$ROOT/build/train-work}"
MODEL="${MODEL:-$ROOT/models/zaya-tiny-reasoner}"
PY="${PY:-python3}"
mkdir -p "$OUT"
E="$PY $HERE/eval.py --model $MODEL --problems 300 --seed 0 --tau 48 --beta 200"
# 1. The daemon's default sampling (temperature 0.8, beta 200, tau 48), n that fits beta.
$E --n-lo 26 --n-hi 30 --temperature 0.8 --json "$OUT/eval_t0.8.json"
# 2. The same, n 33..35: a correct trace needs about as many tokens as beta allows.
$E --n-lo 33 --n-hi 35 --temperature 0.8 --json "$OUT/eval_budget.json"
# 3. Temperature 1.8 (n 14..18, the range --auto-n chose), and the other temperatures tried.
for T in 1.2 1.4 1.6 1.8; do
  $E --auto-n --n-hi 32 --temperature "$T" --json "$OUT/eval_t$T.json"
done
# 4. Thinking past the context: n = 120 (gold solution ~726 tokens, 2.3x the trained 320).
$PY "$HERE/eval.py" --model "$MODEL" --long --problems 200 --n-lo 120 --n-hi 120 --seed 1 \
    --beta 200 --long-tau 48 --rounds 10 --json "$OUT/eval_long.json"
