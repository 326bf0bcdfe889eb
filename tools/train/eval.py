#!/usr/bin/python3
"""Python-side evaluation of zaya-tiny-reasoner on held-out problems (seeds >= 10**9).

    eval.py --model models/zaya-tiny-reasoner --problems 300 --n-lo 26 --n-hi 30 [--json OUT]
    eval.py --model ... --auto-n --n-hi 32 --temperature 1.8      # n range chosen by a probe
    eval.py --model ... --long --problems 200 --n-lo 120 --n-hi 120   # thinking past the context

Loads the exported checkpoint folder into the training model (tools/train/zmodel.py, verified
against tools/reference/zaya_reference.py) and samples with its batched KV-cached sampler (on an
NVIDIA GPU when there is one; tools/train/eval_all.sh has the commands behind docs/eval.md) at
--temperature (0.8). The prompts are byte-identical to what the daemon sends (same chat template,
same aggregation template, tails cut on token ids and decoded without special tokens).

Modes: single (1 trace), majority@8 (vote of 8 traces, ties -> first), copy check (C=4 identical
correct tails -> answer), RSA (N 8, C 4, T 2, tau --tau): final answer = majority of the last
population (also reports the population's mean accuracy). --long: single trace cut at the trained
context vs Markovian continuation (N 1, C 1, beta --beta, tau --long-tau, up to --rounds).
Intervals: Wilson 95%.
"""

import argparse
import collections
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ztask as Z  # noqa: E402
import zmodel as M  # noqa: E402
import safetensors_np  # noqa: E402

MAXLEN = 320


def wilson(k, n, z=1.96):
    if n == 0:
        return (0.0, 0.0, 0.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (p, max(0.0, c - h), min(1.0, c + h))


def load(model_dir, device="cpu"):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    c = M.default_config(cfg["vocab_size"])
    for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "head_dim", "num_experts", "moe_intermediate_size", "router_hidden_size"):
        c[k] = cfg[k]
    c["rope_theta"] = cfg["rope_parameters"]["hybrid"]["rope_theta"]
    m = M.Zaya(c)
    raw = safetensors_np.read_checkpoint_tensors(model_dir)
    with torch.no_grad():
        for n in m.names:
            m.w(n).copy_(torch.from_numpy(np.array(raw[n][1], dtype=np.float32)))
    m.route_counts = None
    return m.to(device)


class Runner:
    def __init__(self, model, tok, temperature, seed, chunk=384):
        self.m, self.tok, self.t = model, tok, temperature
        dev = model.w("model.norm.weight").device
        self.gen = torch.Generator(device=dev).manual_seed(seed)
        self.chunk = chunk
        self.tokens = 0
        self.max_ctx = None

    def run(self, prompts, budget, n_each=1):
        """prompts: list of id lists -> list of generated id lists (n_each per prompt, in order:
        prompt 0 sample 0..n_each-1, prompt 1 ...). One prefill per prompt."""
        outs = [None] * (len(prompts) * n_each)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        step = max(1, self.chunk // n_each)
        for s in range(0, len(order), step):
            idx = order[s:s + step]
            res = self.m.sample([prompts[i] for i in idx], n_each, budget, self.t, self.gen,
                                max_ctx=self.max_ctx)
            for q, (j, ids) in enumerate(res):
                outs[idx[j] * n_each + q % n_each] = ids
                self.tokens += len(ids)
        return outs

    def answer(self, ids):
        return Z.extract_boxed(self.tok.decode(ids))


def last_step(tok, ids):
    """Index of the last worked line in a trace (how far the computation got)."""
    steps = [int(m.group(1)) for m in Z.LINE_RE.finditer(tok.decode(ids))]
    return steps[-1] if steps else 0


def majority(answers):
    votes = [a for a in answers if a is not None]
    if not votes:
        return None
    c = collections.Counter(votes)
    best = max(c.values())
    return next(a for a in votes if c[a] == best)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--problems", type=int, default=300)
    ap.add_argument("--n-lo", type=int, default=6)
    ap.add_argument("--n-hi", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--tau", type=int, default=40)
    ap.add_argument("--beta", type=int, default=220)
    ap.add_argument("--long", action="store_true")
    ap.add_argument("--long-tau", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--json")
    ap.add_argument("--auto-n", action="store_true",
                    help="probe single-trace accuracy for n = 4, 8, ..--n-hi first, evaluate on "
                         "the n range (width 5) whose accuracy is nearest --auto-target")
    ap.add_argument("--auto-target", type=float, default=0.45)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                       if args.device == "auto" else args.device)
    if dev.type == "cpu":
        torch.set_num_threads(1)
    tok = Z.Tokenizer()
    model = load(args.model, dev)
    run = Runner(model, tok, args.temperature, args.seed + 17,
                 chunk=2400 if dev.type == "cuda" else 384)
    probe = {}
    if args.auto_n:
        # Per-n single-trace accuracy on problems outside the main eval's seeds.
        ns = list(range(4, args.n_hi + 1, 4))
        pp = [Z.make_problem(Z.HELDOUT_SEED_BASE + 77 * 10 ** 6 + 1000 * n + i, n, n)
              for n in ns for i in range(160)]
        outs = run.run([tok.encode(Z.chat_prompt(p.question)) for p in pp], args.beta)
        for j, n in enumerate(ns):
            k = sum(run.answer(o) == p.answer
                    for o, p in zip(outs[160 * j:160 * (j + 1)], pp[160 * j:160 * (j + 1)]))
            probe[n] = k / 160
        print("probe (single-trace accuracy by n):", probe, flush=True)
        best = min(ns, key=lambda n: abs(probe[n] - args.auto_target))
        args.n_lo, args.n_hi = max(2, best - 2), min(args.n_hi, best + 2)
        if args.n_hi - args.n_lo < 4:
            args.n_lo = max(2, args.n_hi - 4)
        print(f"main eval n range: {args.n_lo}..{args.n_hi}", flush=True)
    probs = [Z.make_problem(Z.HELDOUT_SEED_BASE + args.seed * 100000 + i, args.n_lo, args.n_hi)
             for i in range(args.problems)]
    P = len(probs)
    res = {"problems": P, "n_range": [args.n_lo, args.n_hi], "temperature": args.temperature,
           "seed": args.seed, "beta": args.beta, "tau": args.tau, "device": str(dev),
           "probe_single_by_n": probe}
    solve_prompts = [tok.encode(Z.chat_prompt(p.question)) for p in probs]

    def report(name, k, n, extra=None):
        p, lo, hi = wilson(k, n)
        res[name] = {"accuracy": p, "ci95": [lo, hi], "correct": k, "n": n, **(extra or {})}
        print(f"{name:28s} {100 * p:5.1f}%  [{100 * lo:5.1f}, {100 * hi:5.1f}]  {extra or ''}",
              flush=True)

    if args.long:
        # A single trace cut at the trained context length.
        t0 = time.time()
        run.tokens = 0
        run.max_ctx = MAXLEN
        outs = run.run(solve_prompts, MAXLEN - min(len(x) for x in solve_prompts))
        run.max_ctx = None
        k = sum(run.answer(o) == p.answer for o, p in zip(outs, probs))
        answered = sum(run.answer(o) is not None for o in outs)
        report("single_cut_at_context", k, P, {"answered": answered,
                                               "mean_last_step": sum(last_step(tok, o)
                                                                     for o in outs) / P,
                                               "tokens_per_problem": run.tokens / P,
                                               "wall_s": round(time.time() - t0, 1)})
        # Markovian continuation: N 1, C 1; each round sees the question + the last tau tokens.
        t0 = time.time()
        run.tokens = 0
        cur = run.run(solve_prompts, args.beta)
        done = [run.answer(o) is not None for o in cur]
        final = [run.answer(o) for o in cur]
        rounds_used = [0] * P
        for rd in range(1, args.rounds + 1):
            todo = [i for i in range(P) if not done[i]]
            if not todo:
                break
            prompts = []
            for i in todo:
                text, trunc = Z.tail_text(tok, cur[i], args.long_tau)
                prompts.append(tok.encode(Z.chat_prompt(
                    Z.render_aggregation(probs[i].question, [(text, trunc)]))))
            outs = run.run(prompts, args.beta)
            for i, o in zip(todo, outs):
                cur[i] = o
                rounds_used[i] = rd
                a = run.answer(o)
                if a is not None:
                    done[i], final[i] = True, a
        k = sum(a == p.answer for a, p in zip(final, probs))
        sol_len = sum(len(tok.encode(p.solution())) for p in probs) / P
        report("markovian_continuation", k, P,
               {"tokens_per_problem": run.tokens / P, "wall_s": round(time.time() - t0, 1),
                "mean_rounds": sum(rounds_used) / P, "answered": sum(done),
                "mean_last_step": sum(last_step(tok, o) for o in cur) / P,
                "beta": args.beta, "tau": args.long_tau,
                "gold_solution_tokens": sol_len, "trained_context": MAXLEN})
    else:
        t0 = time.time()
        run.tokens = 0
        pop0 = run.run(solve_prompts, args.beta, n_each=8)
        wall0 = time.time() - t0
        tok0 = run.tokens
        ans0 = [[run.answer(pop0[8 * i + j]) for j in range(8)] for i in range(P)]
        k1 = sum(ans0[i][0] == probs[i].answer for i in range(P))
        report("single", k1, P, {"tokens_per_problem": tok0 / P / 8,
                                 "wall_s_per_problem": wall0 / P / 8})
        mean_all = sum(a == probs[i].answer for i in range(P) for a in ans0[i])
        report("single_mean_of_8", mean_all, 8 * P)
        k8 = sum(majority(ans0[i]) == probs[i].answer for i in range(P))
        report("majority_at_8", k8, P, {"tokens_per_problem": tok0 / P,
                                        "wall_s_per_problem": wall0 / P})
        # Copy check: C=4 identical correct tails.
        t0 = time.time()
        prompts = []
        for p in probs:
            ids = tok.encode(p.solution()) + [Z.EOT]
            cand = Z.tail_text(tok, ids, args.tau)
            prompts.append(tok.encode(Z.chat_prompt(Z.render_aggregation(p.question, [cand] * 4))))
        outs = run.run(prompts, args.beta)
        kc = sum(run.answer(o) == p.answer for o, p in zip(outs, probs))
        report("copy_check", kc, P, {"wall_s": round(time.time() - t0, 1)})
        # RSA N 8, C 4, T 2.
        t0 = time.time()
        run.tokens = 0
        r = random.Random(args.seed + 99)
        pop = pop0
        for rd in (1, 2):
            prompts = []
            for i, p in enumerate(probs):
                tails = [Z.tail_text(tok, pop[8 * i + j], args.tau) for j in range(8)]
                for _ in range(8):
                    pick = r.sample(range(8), 4)
                    prompts.append(tok.encode(Z.chat_prompt(
                        Z.render_aggregation(p.question, [tails[j] for j in pick]))))
            pop = run.run(prompts, args.beta)
        ans = [[run.answer(pop[8 * i + j]) for j in range(8)] for i in range(P)]
        kr = sum(majority(ans[i]) == probs[i].answer for i in range(P))
        wall = time.time() - t0 + wall0
        report("rsa_n8_c4_t2", kr, P, {"tokens_per_problem": (run.tokens + tok0) / P,
                                       "wall_s_per_problem": wall / P, "tau": args.tau})
        km = sum(a == probs[i].answer for i in range(P) for a in ans[i])
        report("rsa_final_population_mean", km, 8 * P)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
