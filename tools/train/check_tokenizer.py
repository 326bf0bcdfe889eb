#!/usr/bin/python3
"""The engine's tokenizer (`zaya tokenize --no-special`) must equal tools/train/ztask.Tokenizer on
solve and aggregation prompts and worked solutions.

    check_tokenizer.py ZAYA_BINARY MODEL_DIR
"""
import json
import random
import subprocess
import sys
sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)))
import ztask as z
t = z.Tokenizer()
texts = []
r = random.Random(5)
for s in range(30):
    p = z.make_problem(s, 2, 30)
    texts.append(z.chat_prompt(p.question) + p.solution() + "<end_of_turn>")
    ids = t.encode(p.solution())
    cands = [z.tail_text(t, ids, r.randint(20, 60)) for _ in range(3)]
    texts.append(z.chat_prompt(z.render_aggregation(p.question, cands)))
bad = 0
for x in texts:
    out = subprocess.run([sys.argv[1], "tokenize", "--model", sys.argv[2], "--no-special"],
                         input=x.encode(), capture_output=True).stdout.decode()
    eng = json.loads(out.strip().splitlines()[-1])
    if eng != t.encode(x):
        bad += 1
        print("MISMATCH", repr(x[:80]), eng[:20], t.encode(x)[:20])
print("checked", len(texts), "mismatches", bad)
sys.exit(1 if bad else 0)
