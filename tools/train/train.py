#!/usr/bin/env python3
"""Trains zaya-tiny-reasoner (see tools/train/train.sh and models/zaya-tiny-reasoner/README.md).

    train.py --work DIR --time-budget 420 --export OUT     # train within a wall-clock budget
    train.py --work DIR --steps N --export OUT             # train exactly N steps
    train.py --work DIR --export OUT --export-only         # export DIR/ckpt.pt

One process drives the model (an NVIDIA GPU when there is one, else the CPU); worker processes
build the batches (tokenizing is the bottleneck otherwise). The schedule runs on "progress", the
fraction of the budget spent (wall time with --time-budget, steps with --steps):
  * progress < 0.3: solve examples and synthetic aggregation / continuation examples;
  * progress >= 0.3: every --refresh-every steps the candidate pool is refreshed with the current
    model's own samples, and most of the batch is aggregation / continuation built from it.
LR: warm-up over 100 steps, then cosine to 10% of --lr at progress 1. Each batch is built from its
own seed (seed, step), so the data are the same for the same seed and step count; GPU kernels are
not bitwise deterministic.
"""

import argparse
import copy
import math
import multiprocessing as mp
import os
import pickle
import random
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ztask as Z  # noqa: E402
import zmodel as M  # noqa: E402

MAXLEN = 320  # the trained context length (tokens)
N_MAIN = 40  # largest n of the complete-trace problems (the main eval's range lies below it)
N_LONG = 160  # largest n of the long problems (continuation only)


def model_config():
    c = M.default_config(Z.VOCAB_SIZE)
    c.update(hidden_size=192, head_dim=48, moe_intermediate_size=320, router_hidden_size=32,
             num_experts=4)
    return c


# ------------------------------------------------------------------------------------------
# Example builders. Each returns (prompt ids, target ids, ends) or None; ends: append EOT.

TOK = None  # the tokenizer, built in the parent before the workers fork
POOL = (-1, [])  # (version, [((x0, a, b, n), [ids, ...]), ...]) in each worker


def problem(r, lo, hi):
    return Z.make_problem(r.randrange(10 ** 8), lo, hi)


def n_main(r):
    return r.randint(1, N_MAIN)


def wrong_value(r, y):
    k = r.random()
    if k < 0.4:  # one digit off
        d = list(f"{y:02d}")
        pos = r.randrange(2)
        d[pos] = str((int(d[pos]) + r.randint(1, 9)) % 10)
        v = int("".join(d))
    elif k < 0.7:
        v = (y + r.choice([-10, 10, -1, 1, -20, 20, 2, -2])) % Z.MOD
    else:
        v = r.randrange(Z.MOD)
    return v if v != y else (y + 1) % Z.MOD


def trace_text(p, r, wrong, start=1):
    """Worked lines start..n (correct, or with one wrong step whose error propagates) + finish."""
    j = r.randint(start, p.n) if wrong else -1
    x = p.xs[start - 1]
    lines = []
    for i in range(start, p.n + 1):
        x = (x * p.a + p.b) % Z.MOD
        if i == j:
            x = wrong_value(r, x)
        lines.append(p.line(i, x))
    return Z.finish("".join(lines), x)


def synth_candidate(p, r, wrong):
    """A whole trace, or (the shape of an aggregation output) a trace restarted near the end."""
    start = 1 if r.random() < 0.7 else r.randint(max(1, p.n - 3), p.n)
    return trace_text(p, r, wrong, start)


def fit(prompt, target, ends):
    room = MAXLEN - len(prompt) - (1 if ends else 0)
    if room < 6:
        return None
    if len(target) > room:
        return prompt, target[:MAXLEN - len(prompt)], False
    return prompt, target, ends


def build_agg(p, cands):
    prompt = TOK.encode(Z.chat_prompt(Z.render_aggregation(p.question, cands)))
    return fit(prompt, TOK.encode(Z.aggregation_target(p, cands)), True)


def ex_solve(r):
    u = r.random()
    n = n_main(r) if u < 0.75 else (r.randint(N_MAIN + 1, 60) if u < 0.87
                                    else r.randint(61, N_LONG))
    p = Z.make_problem(r.randrange(10 ** 8), n, n)
    return fit(TOK.encode(Z.chat_prompt(p.question)), TOK.encode(p.solution()), True)


def tails(ids_list, tau):
    return [Z.tail_text(TOK, ids, tau) for ids in ids_list]


def ex_agg_synth(r):
    p = problem(r, 1, N_MAIN)
    C = r.choice([2, 3, 4, 4, 4])
    tau = r.randint(32, 64)
    q = r.choice([0.0, 0.2, 0.35, 0.5, 0.65])
    texts = [synth_candidate(p, r, r.random() < q) for _ in range(C)]
    if r.random() < 0.1:
        texts = [texts[0]] * C
    return build_agg(p, tails([TOK.encode(t) + [Z.EOT] for t in texts], tau))


def ex_cont_synth(r):
    p = problem(r, 4, N_LONG)
    start = 1 if r.random() < 0.6 else r.randint(1, p.n)
    ids = TOK.encode(trace_text(p, r, r.random() < 0.15, start)) + [Z.EOT]
    cut = r.randint(min(16, len(ids)), len(ids))
    return build_agg(p, tails([ids[:cut]], r.randint(40, 80)))


def ex_agg_pool(r, items):
    short = [it for it in items if it[0][3] <= N_MAIN] or items
    (x0, a, b, n), samples = r.choice(short)
    p = Z.Problem(x0, a, b, n)
    C = min(r.choice([2, 3, 4, 4, 4]), len(samples))
    chosen = r.sample(samples, C)
    if r.random() < 0.1:
        chosen = [chosen[0]] * C
    return build_agg(p, tails(chosen, r.randint(32, 64)))


def ex_cont_pool(r, items):
    (x0, a, b, n), samples = r.choice(items)
    p = Z.Problem(x0, a, b, n)
    ids = r.choice(samples)
    if ids and ids[-1] in (Z.EOT, Z.EOS) and r.random() < 0.7:
        ids = ids[:r.randint(min(16, len(ids)), len(ids))]  # a finished trace: cut it somewhere
    return build_agg(p, tails([ids], r.randint(40, 80)))


def make_batch(task):
    """Worker: (seed, step, phase, pool version, pool path, batch size) -> arrays."""
    global POOL
    seed, step, phase, version, path, B = task
    if version != POOL[0] and path:
        with open(path, "rb") as f:
            POOL = (version, pickle.load(f))
    items = POOL[1] if version == POOL[0] else []
    r = random.Random(seed * 1000003 + step)
    exs = []
    while len(exs) < B:
        u = r.random()
        if phase == 1 or not items:
            e = ex_solve(r) if u < 0.55 else (ex_agg_synth(r) if u < 0.83 else ex_cont_synth(r))
        elif u < 0.25:
            e = ex_solve(r)
        elif u < 0.6:
            e = ex_agg_pool(r, items)
        elif u < 0.7:
            e = ex_cont_pool(r, items)
        elif u < 0.88:
            e = ex_agg_synth(r)
        else:
            e = ex_cont_synth(r)
        if e is not None:
            exs.append(e)
    T = max(len(p) + len(t) + (1 if e else 0) for p, t, e in exs)
    ids = torch.full((B, T), Z.PAD, dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    valid = torch.zeros(B, T, dtype=torch.bool)
    for b, (p, t, e) in enumerate(exs):
        seq = p + t + ([Z.EOT] if e else [])
        ids[b, :len(seq)] = torch.tensor(seq)
        valid[b, :len(seq)] = True
        lab = [-100] * len(p) + t + ([Z.EOT] if e else [])
        labels[b, :len(seq) - 1] = torch.tensor(lab[1:])  # position i predicts token i+1
    return ids, labels, valid


# ------------------------------------------------------------------------------------------


def refresh_pool(model, r, n_problems, gen):
    """The current model's own samples: 8 per problem, temperature 0.8 or 1.0."""
    probs = []
    for _ in range(n_problems):
        u = r.random()
        n = n_main(r) if u < 0.8 else r.randint(N_MAIN + 1, N_LONG)
        probs.append(Z.make_problem(r.randrange(10 ** 8), n, n))
    prompts = [TOK.encode(Z.chat_prompt(p.question)) for p in probs]
    temp = 0.8 if r.random() < 0.6 else 1.0
    counts, model.route_counts = model.route_counts, None
    outs = model.sample(prompts, 8, MAXLEN - min(len(x) for x in prompts), temp, gen,
                        max_ctx=MAXLEN)
    model.route_counts = counts
    by = [[] for _ in probs]
    for pi, ids in outs:
        by[pi].append(ids)
    items = [((p.x0, p.a, p.b, p.n), l) for p, l in zip(probs, by)]
    short = [(p, l) for p, l in zip(probs, by) if p.n <= N_MAIN]
    acc = sum(Z.extract_boxed(TOK.decode(ids)) == p.answer for p, l in short for ids in l)
    return items, acc / max(1, 8 * len(short)), temp


def lr_at(step, progress, base, warm=100):
    if step < warm:
        return base * (step + 1) / warm
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def main():
    global TOK
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--steps", type=int, default=0, help="train exactly this many steps")
    ap.add_argument("--time-budget", type=float, default=0, help="seconds of training")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--refresh-every", type=int, default=250)
    ap.add_argument("--pool-problems", type=int, default=384)
    ap.add_argument("--workers", type=int, default=max(1, min(12, (os.cpu_count() or 2) - 2)))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--export")
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--init", help="start from the weights of an exported checkpoint folder")
    args = ap.parse_args()
    if not args.steps and not args.time_budget and not args.export_only:
        ap.error("give --steps or --time-budget")
    os.makedirs(args.work, exist_ok=True)
    TOK = Z.Tokenizer()
    # Fork the batch workers before CUDA starts (a forked CUDA context is unusable).
    ctx = mp.get_context("fork")
    workers = ctx.Pool(args.workers) if not args.export_only else None
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                       if args.device == "auto" else args.device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    model = M.Zaya(model_config(), seed=args.seed).to(dev)
    model.sdpa = cuda and hasattr(torch.nn.functional, "scaled_dot_product_attention")
    nparam = sum(p.numel() for p in model.parameters())
    print(f"device {dev}, {nparam / 1e6:.2f}M parameters, {args.workers} batch workers",
          flush=True)
    ck = os.path.join(args.work, "ckpt.pt")
    if args.export_only:
        st = torch.load(ck, map_location="cpu")
        model.load_state_dict(st["model"])
        return export(model, args.export)

    if args.init:
        from eval import load
        model.load_state_dict(load(args.init).to(dev).state_dict())
        say_init = f"initialised from {args.init}"
        print(say_init, flush=True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr,
                            betas=(0.9, 0.98), weight_decay=0.01)
    r = random.Random(args.seed)
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    L, E = model.c["num_hidden_layers"], model.c["num_experts"]
    model.route_counts = torch.zeros(L, E + 1, dtype=torch.float64, device=dev)
    log = open(os.path.join(args.work, "train.log"), "a")

    def say(msg):
        print(msg, flush=True)
        log.write(msg + "\n")
        log.flush()

    t0 = time.time()
    refresh_s = 0.0  # time spent sampling the pool
    version, pool_path, phase2_at = 0, "", None
    pending = []
    step = 0
    ema = None

    def progress():
        if args.steps:
            return step / args.steps
        return (time.time() - t0) / args.time_budget

    def submit(s, ph):
        pending.append(workers.apply_async(
            make_batch, ((args.seed, s, ph, version, pool_path, args.batch),)))

    sub = 0
    while True:
        prog = progress()
        if prog >= 1.0:
            break
        phase = 1 if prog < 0.3 else 2
        if phase == 2 and phase2_at is None:
            phase2_at = step
        if phase == 2 and (step - phase2_at) % args.refresh_every == 0:
            ts = time.time()
            items, acc, temp = refresh_pool(model, r, args.pool_problems, gen)
            version += 1
            pool_path = os.path.join(args.work, f"pool{version % 2}.pkl")
            with open(pool_path, "wb") as f:
                pickle.dump(items, f)
            refresh_s += time.time() - ts
            say(f"step {step} pool {version} refreshed in {time.time() - ts:.1f}s "
                f"(T {temp}), own accuracy n<={N_MAIN}: {acc:.3f}")
        while len(pending) < 2 * args.workers:
            submit(sub, phase)
            sub += 1
        ids, labels, valid = (x.to(dev, non_blocking=True) for x in pending.pop(0).get())
        for g in opt.param_groups:
            g["lr"] = lr_at(step, prog, args.lr)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=cuda):
            logits = model(ids, valid)
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                                 labels.reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        model.update_balancing_biases()
        step += 1
        if step % 25 == 0:
            lv = loss.item()
            ema = lv if ema is None else 0.8 * ema + 0.2 * lv
            say(f"step {step} phase {phase} loss {lv:.4f} ema {ema:.4f} lr "
                f"{opt.param_groups[0]['lr']:.2e} T {ids.shape[1]} prog {prog:.3f} "
                f"{time.time() - t0:.0f}s")
    for f in pending:
        f.wait()
    workers.terminate()
    say(f"trained {step} steps in {time.time() - t0:.0f}s ({refresh_s:.0f}s sampling the pool)")
    torch.save({"model": model.state_dict(), "step": step}, ck)
    if args.export:
        export(model, args.export)


def export(model, out):
    cpu = copy.deepcopy(model).to("cpu").float()
    cpu.sdpa = False
    cpu.route_counts = None
    M.export(cpu, out, Z.BOS, [Z.EOT, Z.EOS], Z.PAD)
    TOK.write(out)
    p = Z.make_problem(7, 3, 3)
    ids = TOK.encode(Z.chat_prompt(p.question)) + TOK.encode(p.solution())[:20]
    diff = M.verify_export(cpu, out, ids)
    print(f"exported to {out}; reference logits match to {diff:.2e}", flush=True)


if __name__ == "__main__":
    main()
