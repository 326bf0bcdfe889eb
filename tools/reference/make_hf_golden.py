#!/usr/bin/env python3
"""Golden fixtures from Hugging Face transformers' own ZayaForCausalLM.

Runs where transformers >= 5.13 with `models/zaya` is installed (the GPU machine of this
workplace; not the development machine). Nothing of transformers is copied here: the script
builds a tiny random ZayaForCausalLM through the public API, saves it with save_pretrained (so the
checkpoint files are written by transformers, not by us), and records its logits and greedy
tokens. tests/engine/model/hf_golden_test.cc then checks that zayad's CPU engine reproduces them.

    python3 tools/reference/make_hf_golden.py --out DIR [--seed 0]

DIR/checkpoint/   config.json + model.safetensors from save_pretrained (float32)
DIR/golden.json   input ids, per-position logits (full forward), greedy tokens (cached decode),
                  and versions

transformers' default init (normal 0.02, ones/zeros) makes nearly flat logits, which would make
argmax checks meaningless, so every tensor is redrawn from a fixed-seed generator with the scales
tools/make_tiny_zaya.py uses.
"""
import argparse
import json
import math
import os
import sys

import torch


def redraw(name, t, gen, hidden):
    """Replaces tensor `t` (a parameter or float buffer) in place."""
    shape = tuple(t.shape)

    def normal(std, mean=0.0):
        return torch.randn(shape, generator=gen, dtype=torch.float32) * std + mean

    last = name.rsplit(".", 1)[-1]
    if name.endswith("embed_tokens.weight"):
        v = normal(1.2 / math.sqrt(hidden))
    elif last == "temp":
        v = torch.rand(shape, generator=gen) * 0.7 + 0.8
    elif "balancing_biases" in name:
        v = normal(0.05)
    elif "conv_qk_depthwise.weight" in name:
        v = normal(0.3, 0.5)
    elif "conv_qk_grouped.weight" in name:
        v = normal(1.0 / math.sqrt(2 * shape[1]))
    elif name.endswith("norm.weight") or last in ("hidden_states_scale", "residual_scale",
                                                   "router_states_scale"):
        v = normal(0.1, 1.0)
    elif last in ("hidden_states_bias", "residual_bias"):
        v = normal(0.02)
    elif last == "bias":
        v = normal(0.1)
    elif name.endswith("experts.gate_up_proj"):
        v = normal(1.0 / math.sqrt(shape[2]))
    elif name.endswith("experts.down_proj"):
        v = normal(2.5 / math.sqrt(shape[2]))
    elif "out_proj" in name:
        v = normal(2.0 / math.sqrt(shape[-1]))
    elif name.endswith("o_proj.weight"):
        v = normal(2.5 / math.sqrt(shape[-1]))
    elif t.dim() >= 2:
        v = normal(1.0 / math.sqrt(shape[-1]))
    elif t.dim() == 1:
        v = normal(0.1, 1.0)
    else:
        return False
    t.copy_(v.to(t.dtype))
    return True


def capture(model):
    """Forward hooks that record, per layer, CCA's q/k/v, the attention output, the router's
    choices and the MoE output (first call only), for locating a disagreement."""
    rec, handles = {}, []

    def hook(key):
        def fn(_module, _inputs, output):
            if key in rec:
                return
            outs = output if isinstance(output, tuple) else (output,)
            rec[key] = [o.detach().float().reshape(-1, o.shape[-1]).tolist()
                        if torch.is_tensor(o) and o.dim() > 0 else None for o in outs]
        return fn

    for i, layer in enumerate(model.model.layers):
        for name, mod in (("qkv", layer.self_attn.qkv_proj), ("attn", layer.self_attn),
                          ("gate", layer.mlp.gate), ("mlp", layer.mlp)):
            handles.append(mod.register_forward_hook(hook(f"{i}.{name}")))
    return rec, handles


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--new-tokens", type=int, default=24)
    ap.add_argument("--also", action="append", default=[],
                    help="a checkpoint of ours (native layout) to load with from_pretrained and "
                         "record the logits of, for the same input ids")
    args = ap.parse_args()

    import transformers
    from transformers import ZayaConfig, ZayaForCausalLM

    torch.manual_seed(args.seed)
    hidden = 64
    cfg = ZayaConfig(vocab_size=512, hidden_size=hidden, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_experts=4,
                     moe_intermediate_size=32, router_hidden_size=16,
                     max_position_embeddings=4096, tie_word_embeddings=True,
                     rope_parameters={"hybrid": {"rope_type": "default", "rope_theta": 10000.0,
                                                 "partial_rotary_factor": 0.5}},
                     bos_token_id=2, eos_token_id=5, pad_token_id=0)
    model = ZayaForCausalLM(cfg).to(torch.float32).eval()
    gen = torch.Generator().manual_seed(args.seed)
    redrawn, kept = [], []
    with torch.no_grad():
        # Only what the checkpoint stores: non-persistent buffers (RoPE's inv_freq) are derived
        # from the config and must keep transformers' values.
        seen = set()
        for name, t in model.state_dict(keep_vars=True).items():
            if id(t) in seen or not t.is_floating_point():
                continue
            seen.add(id(t))
            (redrawn if redraw(name, t.data, gen, hidden) else kept).append(name)
    print(f"redrew {len(redrawn)} tensors, kept {kept}", file=sys.stderr)

    ckpt = os.path.join(args.out, "checkpoint")
    model.save_pretrained(ckpt, safe_serialization=True)

    ids = [2] + [int(x) for x in torch.randint(8, 512, (30,), generator=gen)]
    inp = torch.tensor([ids])
    with torch.no_grad():
        rec, handles = capture(model)
        full = model(input_ids=inp, use_cache=False).logits[0].float()
        for h in handles:
            h.remove()
        out = {"transformers": transformers.__version__, "torch": torch.__version__,
               "seed": args.seed, "input_ids": ids,
               "logits": [[round(float(v), 7) for v in row] for row in full],
               "argmax": [int(i) for i in full.argmax(-1)], "intermediates": rec,
               "inv_freq": {n: b.tolist() for n, b in model.named_buffers() if "inv_freq" in n}}
        # Greedy decode with the model's own cache, one token per call.
        o = model(input_ids=inp, use_cache=True)
        cache = o.past_key_values
        tok = int(o.logits[0, -1].argmax())
        greedy = [tok]
        for _ in range(args.new_tokens - 1):
            o = model(input_ids=torch.tensor([[tok]]), past_key_values=cache, use_cache=True)
            cache = o.past_key_values
            tok = int(o.logits[0, -1].argmax())
            greedy.append(tok)
        out["greedy"] = greedy
        # transformers' own consistency: a full forward over prompt + greedy gives the same argmax.
        whole = torch.tensor([ids + greedy])
        f2 = model(input_ids=whole, use_cache=False).logits[0]
        out["greedy_full_forward_agrees"] = [int(i) for i in f2[len(ids) - 1:-1].argmax(-1)] == greedy
        out["also"] = {}
        for d in args.also:
            try:
                m, info = ZayaForCausalLM.from_pretrained(d, dtype=torch.float32,
                                                          output_loading_info=True)
                m = m.eval()
                rec, handles = capture(m)
                lg = m(input_ids=inp, use_cache=False).logits[0].float()
                for h in handles:
                    h.remove()
                out["also"][os.path.basename(os.path.normpath(d))] = {
                    "logits": [[round(float(v), 7) for v in row] for row in lg],
                    "loading_info": {k: sorted(map(str, v)) for k, v in info.items()},
                    "intermediates": rec,
                    "inv_freq": {n: b.tolist() for n, b in m.named_buffers() if "inv_freq" in n}}
            except Exception as e:  # recorded, not fatal: the main golden is still useful
                out["also"][os.path.basename(os.path.normpath(d))] = {"error": repr(e)}
                print(f"loading {d}: {e!r}", file=sys.stderr)
    with open(os.path.join(args.out, "golden.json"), "w") as f:
        json.dump(out, f)
        f.write("\n")
    print(f"golden: {len(ids)} ids, greedy {greedy}, full==cached: "
          f"{out['greedy_full_forward_agrees']}", file=sys.stderr)


if __name__ == "__main__":
    main()
