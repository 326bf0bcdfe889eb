#!/usr/bin/python3
"""Trains zaya-tiny-reasoner in resumable stages (see tools/train/train.sh and the model README).

    train.py --work DIR --stage solve --steps N      # stage 1: task + synthetic agg/continue
    train.py --work DIR --stage mix --steps N        # stage 2: agg/continue from own samples
    train.py --work DIR --export OUT                 # write + verify the native checkpoint

Each stage resumes from DIR/ckpt.pt (model, optimizer, step, RNG states) and saves it every
--save-every steps, so a killed run continues where it stopped. Deterministic for a fixed --seed
(one torch thread).
"""

import argparse
import math
import os
import random
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ztask as Z  # noqa: E402
import zmodel as M  # noqa: E402

MAXLEN = 320  # the trained context length (tokens)


def model_config():
    c = M.default_config(Z.VOCAB_SIZE)
    c.update(hidden_size=128, head_dim=32, moe_intermediate_size=256, router_hidden_size=32,
             num_experts=4)
    return c


# ------------------------------------------------------------------------------------------
# Example builders. Each returns (prompt ids, target ids, ends) - ends: append <end_of_turn>.


def encode_output(tok, text):
    """Assistant output text (may contain </think>) -> ids."""
    return tok.encode(text)


def corrupt_trace(p, r):
    """A plausible wrong worked solution: one step's result is off, the rest follows from it."""
    j = r.randint(1, p.n)
    lines, x = [], p.x0
    for i in range(1, p.n + 1):
        y = x * p.a + p.b
        if i == j:
            kind = r.random()
            if kind < 0.5:
                y = max(0, y + r.choice([-10, 10, -1, 1, -20, 20, 100, -100]))
            else:
                d = list(str(y))
                pos = r.randrange(len(d))
                d[pos] = str((int(d[pos]) + r.randint(1, 9)) % 10)
                y = int("".join(d))
        lines.append(f"{i}: {x}*{p.a}+{p.b}={y} x={y % Z.MOD}\n")
        x = y % Z.MOD
    return Z.finish("".join(lines), x)


def tail_of(tok, out_ids, tau):
    return Z.tail_text(tok, out_ids, tau)


def ex_solve(tok, r):
    if r.random() < 0.8:
        p = Z.make_problem(r.randrange(10 ** 8), 2, 10)
    else:
        p = Z.make_problem(r.randrange(10 ** 8), 11, 40)
    return tok.encode(Z.chat_prompt(p.question)), tok.encode(p.solution()), True


def cands_synthetic(tok, p, r, C, tau):
    n_wrong = r.choice([0, 0, 1, 1, 2, 2, 3, C]) if C > 1 else r.randint(0, 1)
    n_wrong = min(n_wrong, C)
    cands = []
    for c in range(C):
        text = corrupt_trace(p, r) if c < n_wrong else p.solution()
        ids = tok.encode(text) + [Z.EOT]
        cands.append(tail_of(tok, ids, tau))
    r.shuffle(cands)
    return cands


def build_agg(tok, p, cands, rng_copy=None):
    user = Z.render_aggregation(p.question, cands)
    prompt = tok.encode(Z.chat_prompt(user))
    target = tok.encode(Z.aggregation_target(p, cands))
    return prompt, target


def fit(prompt, target, ends):
    room = MAXLEN - len(prompt) - (1 if ends else 0)
    if room < 8:
        return None
    if len(target) > room:
        return prompt, target[:MAXLEN - len(prompt)], False
    return prompt, target, ends


def ex_agg_synth(tok, r):
    p = Z.make_problem(r.randrange(10 ** 8), 2, 10)
    C = r.choice([2, 3, 4, 4, 4])
    tau = r.randint(24, 48)
    prompt, target = build_agg(tok, p, cands_synthetic(tok, p, r, C, tau))
    return fit(prompt, target, True)


def ex_continue_synth(tok, r):
    p = Z.make_problem(r.randrange(10 ** 8), 4, 40)
    text = corrupt_trace(p, r) if r.random() < 0.2 else p.solution()
    ids = tok.encode(text)
    cut = r.randint(min(40, len(ids) - 1), len(ids))
    tau = r.randint(32, 64)
    cands = [tail_of(tok, ids[:cut], tau)]
    prompt, target = build_agg(tok, p, cands)
    return fit(prompt, target, True)


class Pool:
    """Candidate tails from the model's own samples: problem seed -> list of generated id lists."""

    def __init__(self):
        self.items = []  # (problem, [ids, ...])

    def refresh(self, model, tok, r, n_problems, n_each, temperature, gen):
        probs = []
        for _ in range(n_problems):
            hi = 10 if r.random() < 0.75 else 30
            probs.append(Z.make_problem(r.randrange(10 ** 8), 2, hi))
        prompts = [tok.encode(Z.chat_prompt(p.question)) for p in probs]
        model.route_counts = None
        outs = model.sample(prompts, n_each, MAXLEN - max(len(x) for x in prompts), temperature,
                            gen, max_ctx=MAXLEN)
        by = [[] for _ in probs]
        for pi, ids in outs:
            by[pi].append(ids)
        self.items = list(zip(probs, by))
        correct = sum(Z.extract_boxed(tok.decode(ids)) == p.answer for p, l in self.items
                      for ids in l)
        return correct / max(1, sum(len(l) for _, l in self.items))

    def ex_agg(self, tok, r):
        p, samples = r.choice(self.items)
        C = r.choice([2, 3, 4, 4, 4, 4]) if p.n <= 10 else 1
        tau = r.randint(24, 48) if C > 1 else r.randint(32, 64)
        chosen = r.sample(samples, min(C, len(samples)))
        if r.random() < 0.15 and C > 1:
            chosen = [chosen[0]] * C  # identical candidates (the copy check's situation)
        cands = [tail_of(tok, ids, tau) for ids in chosen]
        prompt, target = build_agg(tok, p, cands)
        return fit(prompt, target, True)


# ------------------------------------------------------------------------------------------


def batchify(examples):
    T = max(len(p) + len(t) + (1 if e else 0) for p, t, e in examples)
    B = len(examples)
    ids = torch.full((B, T), Z.PAD, dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    valid = torch.zeros(B, T, dtype=torch.bool)
    for b, (p, t, e) in enumerate(examples):
        seq = p + t + ([Z.EOT] if e else [])
        ids[b, :len(seq)] = torch.tensor(seq)
        valid[b, :len(seq)] = True
        lab = [-100] * len(p) + t + ([Z.EOT] if e else [])
        # label at position i predicts token i+1
        labels[b, :len(seq) - 1] = torch.tensor(lab[1:])
    return ids, labels, valid


def lr_at(step, total, base):
    if step < 30:
        return base * (step + 1) / 30
    f = (step - 30) / max(1, total - 30)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, f))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--stage", choices=["solve", "mix"])
    ap.add_argument("--steps", type=int, default=0, help="global step to stop at")
    ap.add_argument("--total", type=int, default=1000, help="steps of the LR schedule")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--save-every", type=int, default=25)
    ap.add_argument("--refresh-every", type=int, default=40)
    ap.add_argument("--export")
    args = ap.parse_args()
    torch.set_num_threads(1)  # 2 threads under contention spin in OpenMP: 4x slower here
    os.makedirs(args.work, exist_ok=True)
    tok = Z.Tokenizer()
    model = M.Zaya(model_config(), seed=args.seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr,
                            betas=(0.9, 0.98), weight_decay=0.01)
    ck = os.path.join(args.work, "ckpt.pt")
    step = 0
    r = random.Random(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    pool = Pool()
    if os.path.exists(ck):
        st = torch.load(ck)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step = st["step"]
        r.setstate(st["py_rng"])
        gen.set_state(st["gen"])
        pool.items = st.get("pool", [])
        print(f"resumed at step {step}", flush=True)

    if args.export:
        M.export(model, args.export, Z.BOS, [Z.EOT, Z.EOS], Z.PAD)
        tok.write(args.export)
        ids = tok.encode(Z.chat_prompt(Z.make_problem(7, 3, 3).question)) + \
            tok.encode(Z.make_problem(7, 3, 3).solution())[:20]
        diff = M.verify_export(model, args.export, ids)
        print(f"exported to {args.export}; reference logits match to {diff:.2e}")
        return

    def save():
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                    "py_rng": r.getstate(), "gen": gen.get_state(), "pool": pool.items},
                   ck + ".tmp")
        os.replace(ck + ".tmp", ck)

    L = model.c["num_hidden_layers"]
    E = model.c["num_experts"]
    t0 = time.time()
    log = open(os.path.join(args.work, "train.log"), "a")
    ema = None
    while step < args.steps:
        if args.stage == "mix" and (not pool.items or step % args.refresh_every == 0):
            ts = time.time()
            acc = pool.refresh(model, tok, r, 8, 8, 0.8 if r.random() < 0.5 else 1.0, gen)
            msg = f"step {step} pool refreshed ({time.time() - ts:.0f}s), sample acc {acc:.2f}"
            print(msg, flush=True)
            log.write(msg + "\n")
        exs = []
        while len(exs) < args.batch:
            u = r.random()
            if args.stage == "solve":
                e = ex_solve(tok, r) if u < 0.6 else (ex_agg_synth(tok, r) if u < 0.88
                                                       else ex_continue_synth(tok, r))
            else:
                if u < 0.25:
                    e = ex_solve(tok, r)
                elif u < 0.75:
                    e = pool.ex_agg(tok, r)
                elif u < 0.88:
                    e = ex_agg_synth(tok, r)
                else:
                    e = ex_continue_synth(tok, r)
            if e is not None:
                exs.append(fit(*e) if len(e[0]) + len(e[1]) + 1 > MAXLEN else e)
            exs = [x for x in exs if x is not None]
        ids, labels, valid = batchify(exs)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.total, args.lr)
        model.route_counts = torch.zeros(L, E + 1, dtype=torch.float64)
        logits = model(ids, valid)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 labels.reshape(-1), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        load = (model.route_counts / model.route_counts.sum(-1, keepdim=True)).max().item()
        model.update_balancing_biases()
        step += 1
        ema = loss.item() if ema is None else 0.9 * ema + 0.1 * loss.item()
        if step % 5 == 0:
            msg = (f"step {step} loss {loss.item():.4f} ema {ema:.4f} max-load {load:.2f} "
                   f"T {ids.shape[1]} {time.time() - t0:.0f}s")
            print(msg, flush=True)
            log.write(msg + "\n")
            log.flush()
        if step % args.save_every == 0:
            save()
    save()
    print(f"stage {args.stage} done at step {step} in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
