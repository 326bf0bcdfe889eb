#!/usr/bin/env bash
# Regenerates the committed tiny ZAYA1 fixtures in tests/data/tiny-zaya/ (checkpoints + golden
# logits). Deterministic: running it again reproduces the same bytes.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
D=tests/data/tiny-zaya
rm -rf "$D/native-f32" "$D/native-bf16" "$D/legacy-bf16" "$D/golden"
$PY tools/make_tiny_zaya.py --shape tiny --layout native --seed 1 --dtype f32 --out "$D/native-f32"
$PY tools/make_tiny_zaya.py --shape tiny --layout native --seed 1 --dtype bf16 --out "$D/native-bf16"
$PY tools/make_tiny_zaya.py --shape tiny --layout legacy --seed 1 --dtype bf16 --out "$D/legacy-bf16"
for name in native-f32 native-bf16; do
  $PY tools/reference/zaya_reference.py golden --model "$D/$name" --out-dir "$D/golden" \
    --name "$name" --seed 1 --length 24 --prompt-length 8 --steps 64
done
# The legacy checkpoint holds the native-bf16 weights under legacy names: same logits.
$PY tools/reference/zaya_reference.py logits --model "$D/legacy-bf16" \
  --ids "$($PY -c "import json;print(','.join(map(str,json.load(open('$D/golden/native-bf16.json'))['input_ids'])))")" \
  --out /tmp/zaya-legacy-logits.bin >/dev/null
cmp /tmp/zaya-legacy-logits.bin "$D/golden/native-bf16.logits.bin"
rm -f /tmp/zaya-legacy-logits.bin
echo "fixtures regenerated in $D"
