#!/bin/bash
# Reproduces models/zaya-tiny-reasoner from a fixed seed (CPU, one torch thread).
# Stages resume from $WORK/ckpt.pt, so the script can be re-run after an interruption.
# Time on the shared 2-core build machine: ~3.5 s/step -> about 45 minutes in all.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WORK="${WORK:-$ROOT/build/train-work}"
OUT="${OUT:-$ROOT/models/zaya-tiny-reasoner}"
PY=/usr/bin/python3
TOTAL=650
MORE=900
$PY "$HERE/train.py" --work "$WORK" --stage solve --steps 350 --total $TOTAL --seed 1234
$PY "$HERE/train.py" --work "$WORK" --stage mix --steps $TOTAL --total $TOTAL --seed 1234 \
    --refresh-every 60
# Stage 3: more of the stage-2 mix (the arithmetic was still weak at step 650).
$PY "$HERE/train.py" --work "$WORK" --stage mix --steps $MORE --total $MORE --seed 1234 \
    --refresh-every 60
$PY "$HERE/train.py" --work "$WORK" --export "$OUT"
