#!/usr/bin/python3
"""Greedy generation by the C++ engine (`zaya generate --greedy --weights-dtype f32`) must equal
greedy generation by the training model's cached sampler on the exported folder.

    check_engine.py ZAYA_BINARY MODEL_DIR
"""
import json
import os
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ztask as Z  # noqa: E402
from eval import load  # noqa: E402


def main():
    zaya, model_dir = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    tok = Z.Tokenizer()
    m = load(model_dir)
    bad = 0
    for s in range(4):
        p = Z.make_problem(Z.HELDOUT_SEED_BASE + 500 + s, 2, 6)
        ids = tok.encode(Z.chat_prompt(p.question))
        mine = m.sample([ids], 1, 64, 0.0, torch.Generator())[0][1]
        if mine and mine[-1] in (Z.EOT, Z.EOS):
            mine = mine[:-1]
        out = subprocess.run([zaya, "generate", "--model", model_dir, "--prompt-ids",
                              ",".join(map(str, ids)), "--greedy", "--weights-dtype", "f32",
                              "--max-tokens", "64", "--json"], capture_output=True, check=True)
        theirs = json.loads(out.stdout.decode().strip().splitlines()[-1])["ids"]
        same = theirs == mine
        bad += not same
        print(f"problem {s}: {'same' if same else 'DIFFERENT'} ({len(mine)} tokens)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
