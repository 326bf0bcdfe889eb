import sys, json, subprocess, random
sys.path.insert(0, '/work/main/tools/train')
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
    out = subprocess.run(["/work/main/build/h-train/tools/zaya/zaya", "tokenize", "--model", sys.argv[1], "--no-special"],
                         input=x.encode(), capture_output=True).stdout.decode()
    eng = json.loads(out.strip().splitlines()[-1])
    if eng != t.encode(x):
        bad += 1
        print("MISMATCH", repr(x[:80]), eng[:20], t.encode(x)[:20])
print("checked", len(texts), "mismatches", bad)
