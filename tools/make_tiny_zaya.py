#!/usr/bin/python3
"""Writes a random-weight ZAYA1 checkpoint folder that loads like a real one.

    tools/make_tiny_zaya.py --shape tiny|small|zaya1-8b --layout native|legacy --seed S \
        --dtype bf16|f32 --out DIR [--shard-bytes N]

The folder gets config.json (native or legacy/Megatron keys), model.safetensors (or shards plus
model.safetensors.index.json with --shard-bytes), a small Gemma-style BPE tokenizer.json with byte
fallback, tokenizer_config.json with a Gemma-style chat template, and generation_config.json.

Weights are drawn from one numpy generator seeded with --seed, tensor by tensor in the fixed native
order, so the native and legacy layouts of one seed hold identical values (legacy names and
per-expert tensors are derived from the native ones). Scales keep activations and logits
non-degenerate: projections ~ N(0, 1/fan_in), norms and residual scales ~ 1, small biases, k
temperatures in [0.8, 1.5], and balancing biases ~ N(0, 0.05) for all classes so that the skip
expert wins for some tokens. `balancing_biases` is always stored as F32, as in ZAYA1-8B.
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
import safetensors_np  # noqa: E402

SHAPES = {
    # Committed fixtures: small enough that a checkpoint stays well under 1 MB.
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 head_dim=16, num_experts=4, moe_intermediate_size=32, router_hidden_size=16,
                 vocab_size=512, rope_theta=10000.0, max_position_embeddings=4096),
    # ~0.5 GB in bf16: for benchmarks and memory-budget tests, never committed.
    "small": dict(hidden_size=1024, num_hidden_layers=8, num_attention_heads=8,
                  num_key_value_heads=2, head_dim=128, num_experts=8, moe_intermediate_size=1024,
                  router_hidden_size=128, vocab_size=32768, rope_theta=5_000_000.0,
                  max_position_embeddings=32768),
    # The exact ZAYA1-8B geometry (17.7 GB in bf16), never committed.
    "zaya1-8b": dict(hidden_size=2048, num_hidden_layers=40, num_attention_heads=8,
                     num_key_value_heads=2, head_dim=128, num_experts=16,
                     moe_intermediate_size=2048, router_hidden_size=256, vocab_size=262272,
                     rope_theta=5_000_000.0, max_position_embeddings=131072),
}

# Tokenizer layout shared by every shape (ids below 264 are fixed; see docs/model-files.md).
SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>",
                  "<think>", "</think>"]
PAD_ID, EOS_ID, BOS_ID, UNK_ID, SOT_ID, EOT_ID, THINK_ID, END_THINK_ID = range(8)
BYTE_BASE = len(SPECIAL_TOKENS)  # <0x00> .. <0xFF> follow the special tokens
SPACE = "\u2581"

TRAINING_TEXT = """\
The quick brown fox jumps over the lazy dog. What is the sum of two and three? The answer is five.
Hello! How can I assist you today? Let me think about this problem step by step.
First, we add the numbers. Then we check the result. Therefore the final answer is 42.
A model reads the question, writes its reasoning, and then gives an answer in a box.
She said that the weather is nice today, so they went out to the park to play.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000. Questions and answers, thinking and solving.
"""


def layer_prefix(i):
    return f"model.layers.{i}."


def native_specs(c):
    """(name, shape) of every native tensor, in the fixed generation order."""
    d, r, e, i_size = c["hidden_size"], c["router_hidden_size"], c["num_experts"], \
        c["moe_intermediate_size"]
    hd, kvh, qh = c["head_dim"], c["num_key_value_heads"], c["num_attention_heads"]
    ch = (qh + kvh) * hd
    specs = [("model.embed_tokens.weight", (c["vocab_size"], d)),
             ("model.input_hidden_states_scale", (d,)),
             ("model.input_hidden_states_bias", (d,)),
             ("model.norm.weight", (d,))]
    for i in range(c["num_hidden_layers"]):
        p = layer_prefix(i)
        a = p + "self_attn.qkv_proj."
        g = p + "mlp.gate."
        specs += [(p + "input_layernorm.weight", (d,)),
                  (p + "post_attention_layernorm.weight", (d,)),
                  (a + "q_proj.weight", (qh * hd, d)),
                  (a + "k_proj.weight", (kvh * hd, d)),
                  (a + "v_proj_current.weight", (kvh * hd // 2, d)),
                  (a + "v_proj_delayed.weight", (kvh * hd // 2, d)),
                  (a + "conv_qk_depthwise.weight", (ch, 1, 2)),
                  (a + "conv_qk_depthwise.bias", (ch,)),
                  (a + "conv_qk_grouped.weight", (ch, hd, 2)),
                  (a + "conv_qk_grouped.bias", (ch,)),
                  (p + "self_attn.qk_norm.temp", (kvh,)),
                  (p + "self_attn.o_proj.weight", (d, qh * hd))]
        for block in ("post_attention_residual_scale.", "post_mlp_residual_scale."):
            for field in ("hidden_states_scale", "hidden_states_bias", "residual_scale",
                          "residual_bias"):
                specs.append((p + block + field, (d,)))
        specs += [(g + "down_proj.weight", (r, d)), (g + "down_proj.bias", (r,))]
        if i > 0:
            specs.append((g + "router_states_scale", (r,)))
        specs += [(g + "router_mlp.norm.weight", (r,)),
                  (g + "router_mlp.fc1.weight", (r, r)), (g + "router_mlp.fc1.bias", (r,)),
                  (g + "router_mlp.fc2.weight", (r, r)), (g + "router_mlp.fc2.bias", (r,)),
                  (g + "router_mlp.out_proj.weight", (e + 1, r)),
                  (g + "balancing_biases", (e + 1,)),
                  (p + "mlp.experts.gate_up_proj", (e, 2 * i_size, d)),
                  (p + "mlp.experts.down_proj", (e, d, i_size))]
    return specs


def draw(rng, name, shape, c):
    """Random values for one native tensor (float32)."""
    d, hd = c["hidden_size"], c["head_dim"]

    def normal(std, mean=0.0):
        return (mean + std * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)

    last = name.rsplit(".", 1)[-1]
    if name == "model.embed_tokens.weight":
        return normal(1.2 / np.sqrt(d))
    if name.endswith("layernorm.weight") or name.endswith("norm.weight") or \
            last in ("hidden_states_scale", "residual_scale", "router_states_scale") or \
            name == "model.input_hidden_states_scale":
        return normal(0.1, 1.0)
    if last in ("hidden_states_bias", "residual_bias") or name == "model.input_hidden_states_bias":
        return normal(0.02)
    if last == "temp":
        return rng.uniform(0.8, 1.5, size=shape).astype(np.float32)
    if last == "balancing_biases":
        return normal(0.05)
    if "conv_qk_depthwise.weight" in name:
        return normal(0.3, 0.5)
    if "conv_qk_grouped.weight" in name:
        return normal(1.0 / np.sqrt(2 * hd))
    if last == "bias":
        return normal(0.1)
    if name.endswith("experts.gate_up_proj"):
        return normal(1.0 / np.sqrt(shape[2]))
    if name.endswith("experts.down_proj"):
        return normal(2.5 / np.sqrt(shape[2]))
    if "router_mlp.out_proj" in name:
        return normal(2.0 / np.sqrt(shape[1]))
    if "router_mlp.fc" in name:
        return normal(1.5 / np.sqrt(shape[1]))
    if name.endswith("o_proj.weight"):
        return normal(2.5 / np.sqrt(shape[1]))
    if len(shape) == 2:
        return normal(1.0 / np.sqrt(shape[1]))
    raise AssertionError(f"no init rule for {name}")


# Native -> legacy names (inverse of the mapping in engine/weights/checkpoint.cc and
# transformers' convert_zaya_weights_to_hf.py).
LEGACY_ATTENTION = {
    "input_layernorm.weight": "input_norm.weight",
    "self_attn.qkv_proj.q_proj.weight": "self_attn.qkv.linear_q.weight",
    "self_attn.qkv_proj.k_proj.weight": "self_attn.qkv.linear_k.weight",
    "self_attn.qkv_proj.v_proj_current.weight": "self_attn.qkv.val_proj1.weight",
    "self_attn.qkv_proj.v_proj_delayed.weight": "self_attn.qkv.val_proj2.weight",
    "self_attn.qkv_proj.conv_qk_depthwise.weight": "self_attn.qkv.conv_qk.0.weight",
    "self_attn.qkv_proj.conv_qk_depthwise.bias": "self_attn.qkv.conv_qk.0.bias",
    "self_attn.qkv_proj.conv_qk_grouped.weight": "self_attn.qkv.conv_qk.1.weight",
    "self_attn.qkv_proj.conv_qk_grouped.bias": "self_attn.qkv.conv_qk.1.bias",
    "self_attn.qk_norm.temp": "self_attn.qkv.temp",
    "self_attn.o_proj.weight": "self_attn.o_proj.weight",
}
LEGACY_MOE = {
    "post_attention_layernorm.weight": "input_norm.weight",
    "mlp.gate.down_proj.weight": "zaya_block.router.down_proj.weight",
    "mlp.gate.down_proj.bias": "zaya_block.router.down_proj.bias",
    "mlp.gate.router_states_scale": "zaya_block.router.router_states_scale",
    "mlp.gate.router_mlp.norm.weight": "zaya_block.router.rmsnorm_eda.weight",
    "mlp.gate.router_mlp.fc1.weight": "zaya_block.router.router_mlp.0.weight",
    "mlp.gate.router_mlp.fc1.bias": "zaya_block.router.router_mlp.0.bias",
    "mlp.gate.router_mlp.fc2.weight": "zaya_block.router.router_mlp.2.weight",
    "mlp.gate.router_mlp.fc2.bias": "zaya_block.router.router_mlp.2.bias",
    "mlp.gate.router_mlp.out_proj.weight": "zaya_block.router.router_mlp.4.weight",
    "mlp.gate.balancing_biases": "zaya_block.router.balancing_biases",
}


def legacy_parts(name, shape, num_layers):
    """Legacy tensors for one native tensor: list of (legacy name, shape, slicer)."""
    whole = lambda a: a  # noqa: E731
    if name == "model.embed_tokens.weight":
        return [(name, shape, whole)]
    if name == "model.norm.weight":
        return [("model.final_norm.weight", shape, whole)]
    if name.startswith("model.input_hidden_states_"):
        return [("model.layers.0.res_scale." + name[len("model.input_"):], shape, whole)]
    rest = name[len("model.layers."):]
    i, rest = rest.split(".", 1)
    i = int(i)
    attn, moe = f"model.layers.{2 * i}.", f"model.layers.{2 * i + 1}."
    if rest.startswith("post_attention_residual_scale."):
        return [(moe + "res_scale." + rest.split(".", 1)[1], shape, whole)]
    if rest.startswith("post_mlp_residual_scale."):
        field = rest.split(".", 1)[1]
        target = "model.res_scale." if i == num_layers - 1 else f"model.layers.{2 * i + 2}.res_scale."
        return [(target + field, shape, whole)]
    if rest in LEGACY_ATTENTION:
        return [(attn + LEGACY_ATTENTION[rest], shape, whole)]
    if rest in LEGACY_MOE:
        return [(moe + LEGACY_MOE[rest], shape, whole)]
    if rest in ("mlp.experts.gate_up_proj", "mlp.experts.down_proj"):
        fc = "linear_fc1" if rest.endswith("gate_up_proj") else "linear_fc2"
        return [(f"{moe}zaya_block.experts.local_experts.{e}.{fc}.weight", shape[1:],
                 (lambda a, e=e: a[e])) for e in range(shape[0])]
    raise AssertionError(f"no legacy name for {name}")


def native_config(c):
    return {
        "architectures": ["ZayaForCausalLM"],
        "model_type": "zaya",
        "vocab_size": c["vocab_size"],
        "hidden_size": c["hidden_size"],
        "num_hidden_layers": c["num_hidden_layers"],
        "num_attention_heads": c["num_attention_heads"],
        "num_key_value_heads": c["num_key_value_heads"],
        "head_dim": c["head_dim"],
        "hidden_act": "silu",
        "num_experts": c["num_experts"],
        "num_experts_per_tok": 1,
        "moe_intermediate_size": c["moe_intermediate_size"],
        "router_hidden_size": c["router_hidden_size"],
        "rms_norm_eps": 1e-5,
        "cca_time0": 2,
        "cca_time1": 2,
        "attention_bias": False,
        "lm_head_bias": False,
        "tie_word_embeddings": True,
        "max_position_embeddings": c["max_position_embeddings"],
        "layer_types": ["hybrid"] * c["num_hidden_layers"],
        "rope_parameters": {
            "hybrid": {"rope_type": "default", "rope_theta": c["rope_theta"],
                       "partial_rotary_factor": 0.5},
        },
        "sliding_window": None,
        "bos_token_id": BOS_ID,
        "eos_token_id": [EOT_ID, EOS_ID],
        "pad_token_id": PAD_ID,
        "torch_dtype": None,
    }


def legacy_config(c):
    return {
        "architectures": ["ZayaForCausalLM"],
        "model_type": "zaya",
        "vocab_size": c["vocab_size"],
        "hidden_size": c["hidden_size"],
        "num_hidden_layers": 2 * c["num_hidden_layers"],
        "num_attention_heads": c["num_attention_heads"],
        "num_query_groups": c["num_key_value_heads"],
        "num_key_value_heads": c["num_key_value_heads"],
        "kv_channels": c["head_dim"],
        "head_dim": c["head_dim"],
        "num_experts": c["num_experts"],
        "moe_router_topk": 1,
        "ffn_hidden_size": 2 * c["moe_intermediate_size"],
        "zaya_mlp_expansion": c["router_hidden_size"],
        "zaya_use_mod": True,
        "zaya_use_eda": True,
        "scale_residual_merge": True,
        "residual_in_fp32": True,
        "activation_func": "swiglu",
        "gated_linear_unit": True,
        "normalization": "RMSNorm",
        "add_bias_linear": False,
        "norm_epsilon": 1e-5,
        "cca": True,
        "cca_time0": 2,
        "cca_time1": 2,
        "rope_theta": c["rope_theta"],
        "partial_rotary_factor": 0.5,
        "max_position_embeddings": c["max_position_embeddings"],
        "tie_word_embeddings": True,
        "bos_token_id": BOS_ID,
        "eos_token_id": [EOT_ID, EOS_ID],
        "pad_token_id": PAD_ID,
    }


def apply_merge(seq, pair, merged):
    """seq with every adjacent occurrence of `pair` replaced by `merged`, left to right."""
    out, i = [], 0
    while i < len(seq):
        if i + 1 < len(seq) and seq[i] == pair[0] and seq[i + 1] == pair[1]:
            out.append(merged)
            i += 2
        else:
            out.append(seq[i])
            i += 1
    return out


def pad_unused(vocab, vocab_size):
    """Pads with unused placeholder pieces (Gemma has <unusedN> too) so ids cover the vocab."""
    n = 0
    while len(vocab) < vocab_size:
        vocab[f"<unused{n}>"] = len(vocab)
        n += 1


def train_bpe(vocab_size):
    """Vocabulary and merges of a small Gemma-style BPE (SentencePiece-converted shape)."""
    vocab = {}
    for i, t in enumerate(SPECIAL_TOKENS):
        vocab[t] = i
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = BYTE_BASE + b
    base = [SPACE, "\n"] + [chr(c) for c in range(33, 127)]
    for ch in base:
        vocab[ch] = len(vocab)
    text = TRAINING_TEXT.replace(" ", SPACE)
    seq = [ch for ch in text if ch in vocab]
    merges = []
    while len(vocab) < vocab_size:
        counts = {}
        for a, b in zip(seq, seq[1:]):
            counts[(a, b)] = counts.get((a, b), 0) + 1
        if not counts:
            break
        # Most frequent pair; ties broken by the pair itself so the result is deterministic.
        pair = max(counts.items(), key=lambda kv: (kv[1], [-ord(x) for x in kv[0][0] + "\0" + kv[0][1]]))[0]
        if counts[pair] < 2:
            break
        merged = pair[0] + pair[1]
        if merged in vocab:
            break
        vocab[merged] = len(vocab)
        merges.append([pair[0], pair[1]])
        seq = apply_merge(seq, pair, merged)
    pad_unused(vocab, vocab_size)
    return vocab, merges


CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}{%- set role = 'model' -%}"
    "{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\\n' + (message['content'] | trim) + '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}"
    "{%- if enable_thinking is defined and not enable_thinking -%}{{ '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif -%}{%- endif -%}"
)


def tokenizer_json(specials, bos_id, vocab, merges):
    """A Gemma-style tokenizer.json (SentencePiece-converted BPE with byte fallback) as a dict.
    Shared with tools/train/ztask.py, whose trained model uses the same layout."""
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, t in enumerate(specials)]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": SPACE},
        "pre_tokenizer": {"type": "Split", "pattern": {"String": " "},
                          "behavior": "MergedWithPrevious", "invert": False},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<bos>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<bos>": {"id": "<bos>", "ids": [bos_id], "tokens": ["<bos>"]}},
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
                  "byte_fallback": True, "ignore_merges": False, "vocab": vocab, "merges": merges},
    }


def tokenizer_config_json(tokenizer, chat_template):
    """tokenizer_config.json (Gemma tokenizer class, <end_of_turn> as eos) for tokenizer_json()."""
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {str(t["id"]): {k: v for k, v in t.items() if k != "id"}
                                 for t in tokenizer["added_tokens"]},
        "bos_token": "<bos>",
        "eos_token": "<end_of_turn>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "chat_template": chat_template,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 4096,
        "tokenizer_class": "GemmaTokenizer",
        "spaces_between_special_tokens": False,
    }


def write_tokenizer(out, vocab_size):
    vocab, merges = train_bpe(vocab_size)
    tokenizer = tokenizer_json(SPECIAL_TOKENS, BOS_ID, vocab, merges)
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer, f, ensure_ascii=False, indent=1)
        f.write("\n")
    config = tokenizer_config_json(tokenizer, CHAT_TEMPLATE)
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)
        f.write("\n")


def write_weights(out, specs, produce, shard_bytes):
    """specs: (name, dtype, shape) in file order. One file, or shards + index."""
    meta = {"format": "pt"}
    if not shard_bytes:
        safetensors_np.write(os.path.join(out, "model.safetensors"), specs, produce, meta)
        return
    shards, current, size = [], [], 0
    for s in specs:
        n = safetensors_np.DTYPE_SIZE[s[1]] * int(np.prod(s[2], dtype=np.int64))
        if current and size + n > shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(s)
        size += n
    shards.append(current)
    weight_map = {}
    for k, shard in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        safetensors_np.write(os.path.join(out, fname), shard, produce, meta)
        for name, _, _ in shard:
            weight_map[name] = fname
    total = sum(safetensors_np.DTYPE_SIZE[d] * int(np.prod(s, dtype=np.int64)) for _, d, s in specs)
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1,
                  sort_keys=True)
        f.write("\n")


def write_parallel(path, specs, c, seed, jobs):
    """One safetensors file written by `jobs` processes, each tensor at its final offset.

    The 8B shape is 8.8e9 values: one numpy stream draws ~100M/s, so a sequential write takes
    minutes; independent per-tensor streams let every core draw (and keep a GPU machine's lease
    short)."""
    import multiprocessing
    import struct
    header, offset, where = {}, 0, []
    for name, dtype, shape in specs:
        n = safetensors_np.DTYPE_SIZE[dtype] * int(np.prod(shape, dtype=np.int64))
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        where.append(offset)
        offset += n
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * ((8 - len(blob) % 8) % 8)
    base = 8 + len(blob)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        f.truncate(base + offset)

    def work(k):
        name, dtype, shape = specs[k]
        a = draw(np.random.default_rng([seed, k]), name, shape, c)
        fd = os.open(path, os.O_WRONLY)
        try:
            data = safetensors_np.encode(a, dtype)
            done = 0
            while done < len(data):
                done += os.pwrite(fd, data[done:], base + where[k] + done)
        finally:
            os.close(fd)
        return k

    global _WORK
    _WORK = work
    order = sorted(range(len(specs)), key=lambda k: -int(np.prod(specs[k][2], dtype=np.int64)))
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        for i, _ in enumerate(pool.imap_unordered(_run_work, order), 1):
            if i % 100 == 0 or i == len(order):
                print(f"make_tiny_zaya: {i}/{len(order)} tensors", file=sys.stderr)


_WORK = None


def _run_work(k):
    return _WORK(k)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    ap.add_argument("--layout", choices=["native", "legacy"], default="native")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="f32")
    ap.add_argument("--shard-bytes", type=int, default=0,
                    help="split the weights into shards of about this many bytes (0: one file)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="draw and write tensors in this many processes (native layout, one file). "
                         "Changes the values: tensor k is drawn from default_rng([seed, k]) instead "
                         "of one stream, so use it for the benchmark shapes, not for fixtures")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.jobs > 1 and (args.layout != "native" or args.shard_bytes):
        ap.error("--jobs needs --layout native and no --shard-bytes")

    c = SHAPES[args.shape]
    os.makedirs(args.out, exist_ok=True)
    dtype = "BF16" if args.dtype == "bf16" else "F32"
    nspecs = native_specs(c)
    native_dtype = {n: ("F32" if n.endswith("balancing_biases") else dtype) for n, _ in nspecs}

    # Draw lazily in the fixed native order; the writers below request tensors in file order,
    # so cache whatever is drawn ahead of its use (only the native order is ever drawn from).
    rng = np.random.default_rng(args.seed)
    order = [n for n, _ in nspecs]
    shapes = dict(nspecs)
    cache, drawn = {}, [0]

    def native_value(name):
        while name not in cache:
            n = order[drawn[0]]
            cache[n] = draw(rng, n, shapes[n], c)
            drawn[0] += 1
        return cache.pop(name)

    if args.jobs > 1:
        specs = [(n, native_dtype[n], s) for n, s in nspecs]
        write_parallel(os.path.join(args.out, "model.safetensors"), specs, c, args.seed, args.jobs)
    elif args.layout == "native":
        specs = [(n, native_dtype[n], s) for n, s in nspecs]
        produce = native_value
    else:
        parts, source = [], {}
        for n, s in nspecs:
            for legacy, lshape, slicer in legacy_parts(n, s, c["num_hidden_layers"]):
                parts.append((legacy, native_dtype[n], lshape))
                source[legacy] = (n, slicer)
        # Per-expert tensors of one native tensor are requested one after another, so keep the
        # parent until its last slice is written.
        parent_cache = {}

        def produce(legacy):
            n, slicer = source[legacy]
            if n not in parent_cache:
                parent_cache.clear()
                parent_cache[n] = native_value(n)
            return slicer(parent_cache[n])

        specs = parts
    if args.jobs <= 1:
        write_weights(args.out, specs, produce, args.shard_bytes)

    config = native_config(c) if args.layout == "native" else legacy_config(c)
    config["torch_dtype"] = "bfloat16" if dtype == "BF16" else "float32"
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
        f.write("\n")
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": BOS_ID, "eos_token_id": [EOT_ID, EOS_ID],
                   "pad_token_id": PAD_ID}, f, indent=1)
        f.write("\n")
    write_tokenizer(args.out, c["vocab_size"])


if __name__ == "__main__":
    main()
