"""The arithmetic reasoning task, the tokenizer and the prompt formats of zaya-tiny-reasoner.

Task ("iterate"): x starts at a 2-digit number; n times, x <- (x*a + b) mod 100. The worked
solution writes one line per step, `i: x=y` (the value of x after step i, computed in one go, no
intermediate product), then `</think>` and a boxed answer. The question is short whatever n is,
and every line names its step index and the state, so the state of the computation is visible in
any tail of a trace: this is what makes Markovian continuation (RSA with C=1) possible past the
trained context.

Prompt formats mirror what the engine sends:
  * solve: the chat template (tests/data/chat/zaya_tiny_template.jinja) with one user message,
    generation prompt `<start_of_turn>model\n<think>\n`;
  * aggregate / continue: engine/rsa/aggregation_prompt.cc kDefaultAggregationTemplate (read
    from that file, so the model is trained on exactly what the daemon sends), rendered with C
    tails (C=1 is continuation), each a decoded token tail with `[...truncated...] ` when cut.
Aggregation/continuation target (aggregation_target; documented in the model README): parse the
complete `i: x=y` lines of every candidate; k = the step shown by the most candidates (ties: the
latest step); y = the majority of the candidates' values at step k (ties: the one met first);
then write `k: x=y` and compute correctly from there to step n and box the result. With complete
candidates that is a majority vote on the final state; with C=1 it continues an unfinished trace
from its last complete line.
"""

import collections
import json
import os
import random
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import make_tiny_zaya  # noqa: E402  (the tokenizer.json layout, shared)

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "<think>",
            "</think>"]
PAD, EOS, BOS, UNK, SOT, EOT, THINK, ENDTHINK = range(8)
BYTE_BASE = 8
SPACE = "\u2581"
VOCAB_SIZE = 768
MOD = 100
TRUNC = "[...truncated...] "


# ------------------------------------------------------------------------------------------
# Aggregation template, read from the engine source


def _read_template():
    path = os.path.join(ROOT, "engine", "rsa", "aggregation_prompt.cc")
    src = open(path).read()
    m = re.search(r"kDefaultAggregationTemplate\s*=\s*((?:\s*\"(?:[^\"\\]|\\.)*\")+)\s*;", src)
    parts = re.findall(r"\"((?:[^\"\\]|\\.)*)\"", m.group(1))
    text = "".join(parts)
    return text.replace("\\n", "\n").replace("\\\\", "\\").replace('\\"', '"')


AGG_TEMPLATE = _read_template()


def render_aggregation(question, cands):
    """cands: list of (text, truncated). Same rendering as AggregationTemplate::Render."""
    head, rest = AGG_TEMPLATE.split("{candidates}")
    block, tail = rest.split("{/candidates}")
    out = head.replace("{question}", question)
    for i, (text, truncated) in enumerate(cands):
        out += (block.replace("{index}", str(i + 1))
                .replace("{truncated_marker}", TRUNC if truncated else "")
                .replace("{text}", text))
    return out + tail.replace("{question}", question)


# ------------------------------------------------------------------------------------------
# Problems


class Problem:
    def __init__(self, x0, a, b, n):
        self.x0, self.a, self.b, self.n = x0, a, b, n
        self.question = (f"Let x = {x0}. Repeat {n} times: x = x*{a}+{b}, keeping only the last "
                         f"two digits of x. What is x at the end?")
        xs = [x0]
        for _ in range(n):
            xs.append((xs[-1] * a + b) % MOD)
        self.xs = xs
        self.answer = str(xs[-1])

    def line(self, i, x):
        """The line of step i (1-based): x is the value after step i."""
        return f"{i}: x={x}\n"

    def lines_from(self, k, x):
        """Line k with value x (as given), then correct lines k+1..n; returns (text, final x)."""
        out = [self.line(k, x)]
        for i in range(k + 1, self.n + 1):
            x = (x * self.a + self.b) % MOD
            out.append(self.line(i, x))
        return "".join(out), x

    def solution(self):
        return finish("".join(self.line(i, self.xs[i]) for i in range(1, self.n + 1)),
                      self.xs[-1])


def finish(lines, x):
    return lines + "</think>\nThe answer is \\boxed{" + str(x) + "}."


def make_problem(seed, n_lo, n_hi):
    r = random.Random(seed)
    return Problem(r.randint(10, 99), r.randint(2, 9), r.randint(1, 9), r.randint(n_lo, n_hi))


# Seed ranges: training problems use seeds < 10**8; held-out evaluation uses seeds >= 10**9.
HELDOUT_SEED_BASE = 10 ** 9


LINE_RE = re.compile(r"(?m)^(\d+): x=(\d+)\n")


def parse_lines(text, truncated):
    """{step: value} of the complete lines of a candidate tail (first occurrence wins)."""
    if truncated:
        cut = text.find("\n")
        text = text[cut + 1:] if cut >= 0 else ""
    lines = {}
    for m in LINE_RE.finditer(text):
        lines.setdefault(int(m.group(1)), int(m.group(2)))
    return lines


def vote(p, cands):
    """(k, value) the aggregation target restarts from, or None (see module doc)."""
    parsed = [{i: x for i, x in parse_lines(t, tr).items() if 1 <= i <= p.n and 0 <= x < MOD}
              for t, tr in cands]
    cover = collections.Counter(i for d in parsed for i in d)
    if not cover:
        return None
    k = max(cover, key=lambda i: (cover[i], i))
    votes = [d[k] for d in parsed if k in d]
    counts = collections.Counter(votes)
    best = max(counts.values())
    return k, next(v for v in votes if counts[v] == best)


def aggregation_target(p, cands):
    """The trained answer to an aggregation/continuation prompt (see module doc)."""
    kv = vote(p, cands)
    if kv is None:
        return p.solution()  # nothing usable: solve from scratch
    text, xf = p.lines_from(*kv)
    return finish(text, xf)


def extract_boxed(text):
    i = text.rfind("\\boxed{")
    if i < 0:
        return None
    j = text.find("}", i)
    if j < 0:
        return None
    return text[i + 7:j].strip()


# ------------------------------------------------------------------------------------------
# Tokenizer: Gemma-style BPE with byte fallback; merges never touch digits, so arithmetic is
# done digit by digit and BPE segments between digits are independent (fast exact encoding).


def _corpus():
    texts = [AGG_TEMPLATE.replace("{candidates}", "").replace("{/candidates}", "")] * 20
    for s in range(60):
        p = make_problem(s, 2, 120)
        texts.append(p.question)
        texts.append(p.solution())
        texts.append("user\nmodel\n" + TRUNC + "Candidate 1:\n")
    return "\n".join(texts)


def _train_bpe():
    vocab = {t: i for i, t in enumerate(SPECIALS)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = BYTE_BASE + b
    for ch in [SPACE, "\n"] + [chr(c) for c in range(33, 127)]:
        vocab[ch] = len(vocab)
    text = _corpus().replace(" ", SPACE)
    seq = list(text)
    merges = []
    banned = set()
    while len(vocab) < VOCAB_SIZE:
        counts = collections.Counter()
        for x, y in zip(seq, seq[1:]):
            if x.isdigit() or y.isdigit() or "\n" in x + y or (x, y) in banned:
                continue
            counts[(x, y)] += 1
        if not counts:
            break
        pair, c = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        if c < 4:
            break
        merged = pair[0] + pair[1]
        if merged in vocab:
            banned.add(pair)
            continue
        vocab[merged] = len(vocab)
        merges.append(pair)
        seq = make_tiny_zaya.apply_merge(seq, pair, merged)
    make_tiny_zaya.pad_unused(vocab, VOCAB_SIZE)
    return vocab, merges


class Tokenizer:
    def __init__(self):
        self.vocab, self.merges = _train_bpe()
        self.inv = {i: t for t, i in self.vocab.items()}
        self.rank = {m: r for r, m in enumerate(self.merges)}
        self.cache = {}
        self.special_re = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + ")")
        self.seg_re = re.compile(r"(\d)")

    def _bpe(self, seg):
        if seg in self.cache:
            return self.cache[seg]
        parts = list(seg)
        while len(parts) > 1:
            best, bi = None, -1
            for i in range(len(parts) - 1):
                r = self.rank.get((parts[i], parts[i + 1]))
                if r is not None and (best is None or r < best):
                    best, bi = r, i
            if best is None:
                break
            parts[bi:bi + 2] = [parts[bi] + parts[bi + 1]]
        ids = []
        for t in parts:
            if t in self.vocab:
                ids.append(self.vocab[t])
            else:
                ids.extend(BYTE_BASE + b for b in t.encode("utf-8"))
        self.cache[seg] = ids
        return ids

    def encode(self, text):
        ids = []
        for chunk in self.special_re.split(text):
            if not chunk:
                continue
            if chunk in self.vocab and chunk in SPECIALS:
                ids.append(self.vocab[chunk])
                continue
            for seg in self.seg_re.split(chunk.replace(" ", SPACE)):
                if seg:
                    ids.extend(self._bpe(seg))
        return ids

    def decode(self, ids, skip_special=True):
        out = bytearray()
        for i in ids:
            t = self.inv[int(i)]
            if int(i) < BYTE_BASE:
                if not skip_special:
                    out += t.encode()
                continue
            if t.startswith("<0x") and len(t) == 6:
                out.append(int(t[3:5], 16))
            else:
                out += t.replace(SPACE, " ").encode("utf-8")
        return out.decode("utf-8", errors="replace")

    def write(self, out_dir):
        tok = make_tiny_zaya.tokenizer_json(SPECIALS, BOS, self.vocab,
                                            [list(m) for m in self.merges])
        with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tok, f, ensure_ascii=False, indent=1)
            f.write("\n")
        template = open(os.path.join(ROOT, "tests", "data", "chat",
                                     "zaya_tiny_template.jinja")).read()
        cfg = make_tiny_zaya.tokenizer_config_json(tok, template)
        with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, ensure_ascii=False, indent=1)
            f.write("\n")


def chat_prompt(user_text):
    """What the chat template renders for one user message with add_generation_prompt."""
    return ("<bos><start_of_turn>user\n" + user_text.strip() + "<end_of_turn>\n"
            "<start_of_turn>model\n<think>\n")


def tail_text(tok, ids, tau):
    """Engine semantics: last tau token ids of the trace, decoded without special tokens."""
    truncated = len(ids) > tau
    return tok.decode(ids[-tau:] if tau > 0 else [], True), truncated
