#!/bin/bash
# Trains zaya-tiny-reasoner on an NVIDIA GPU within a wall-clock budget, exports it and evaluates
# it (Python eval on the GPU). Used through the device machine:
#   OUT=/some/dir tools/train/train_gpu.sh     # writes OUT/model, OUT/eval_main.json, ...
# BUDGET (seconds of training, default 400) and SEED (default 1234) can be set in the environment.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${OUT:?set OUT}"
BUDGET="${BUDGET:-400}"
SEED="${SEED:-1234}"
PY="${PY:-python3}"
WORK="${WORK:-/tmp/zaya-train}"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
$PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
$PY "$HERE/train.py" --work "$WORK" --time-budget "$BUDGET" --seed "$SEED" \
    --export "$OUT/model" ${TRAIN_ARGS:-}
timeout "${EVAL_MAIN_S:-150}" $PY "$HERE/eval.py" --model "$OUT/model" --problems 300 \
    --auto-n --n-hi 35 --seed 0 --tau 48 --beta 200 --json "$OUT/eval_main.json" ${EVAL_ARGS:-} \
    || echo "main eval failed or timed out"
timeout "${EVAL_LONG_S:-100}" $PY "$HERE/eval.py" --model "$OUT/model" --long --problems 200 \
    --n-lo 120 --n-hi 120 --seed 1 --beta 200 --long-tau 48 --rounds 10 \
    --json "$OUT/eval_long.json" ${EVAL_ARGS:-} || echo "long eval failed or timed out"
