"""Trainable ZAYA1 model (PyTorch, batched, teacher-forced), cached sampler, native-layout export.

Follows /work/shared/ZAYA1.md step by step (same equations as tools/reference/zaya_reference.py,
written for batches [B, T] with right padding; causality keeps padding out of real positions).
Parameters carry their native checkpoint names ('.' replaced by '__' inside the module).

Training-specific choices:
  * top-1 routing: the choice argmax(p + balancing_biases) is not differentiable; the output is
    scaled by p[e], so the router learns through p (as ZAYA1 does). Load balancing adjusts the
    balancing biases between steps (update_balancing_biases): a sign step towards a target load
    of (1 - SKIP_TARGET)/E per routed expert and SKIP_TARGET for the skip expert. No aux loss.
  * the skip expert (index E) outputs 0 (transformers upstream semantics).
"""

import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "reference"))
import safetensors_np  # noqa: E402

SKIP_TARGET = 0.05
BIAS_STEP = 5e-3


def default_config(vocab_size):
    return dict(vocab_size=vocab_size, hidden_size=160, num_hidden_layers=4,
                num_attention_heads=4, num_key_value_heads=2, head_dim=40, num_experts=4,
                moe_intermediate_size=320, router_hidden_size=32, rope_theta=10000.0,
                partial_rotary_factor=0.5, rms_norm_eps=1e-5, max_position_embeddings=4096)


def specs(c):
    d, r, e, im = c["hidden_size"], c["router_hidden_size"], c["num_experts"], \
        c["moe_intermediate_size"]
    hd, kvh, qh = c["head_dim"], c["num_key_value_heads"], c["num_attention_heads"]
    ch = (qh + kvh) * hd
    s = [("model.embed_tokens.weight", (c["vocab_size"], d)),
         ("model.input_hidden_states_scale", (d,)), ("model.input_hidden_states_bias", (d,)),
         ("model.norm.weight", (d,))]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        a = p + "self_attn.qkv_proj."
        g = p + "mlp.gate."
        s += [(p + "input_layernorm.weight", (d,)), (p + "post_attention_layernorm.weight", (d,)),
              (a + "q_proj.weight", (qh * hd, d)), (a + "k_proj.weight", (kvh * hd, d)),
              (a + "v_proj_current.weight", (kvh * hd // 2, d)),
              (a + "v_proj_delayed.weight", (kvh * hd // 2, d)),
              (a + "conv_qk_depthwise.weight", (ch, 1, 2)), (a + "conv_qk_depthwise.bias", (ch,)),
              (a + "conv_qk_grouped.weight", (ch, hd, 2)), (a + "conv_qk_grouped.bias", (ch,)),
              (p + "self_attn.qk_norm.temp", (kvh,)), (p + "self_attn.o_proj.weight", (d, qh * hd))]
        for blk in ("post_attention_residual_scale.", "post_mlp_residual_scale."):
            for f in ("hidden_states_scale", "hidden_states_bias", "residual_scale",
                      "residual_bias"):
                s.append((p + blk + f, (d,)))
        s += [(g + "down_proj.weight", (r, d)), (g + "down_proj.bias", (r,))]
        if i > 0:
            s.append((g + "router_states_scale", (r,)))
        s += [(g + "router_mlp.norm.weight", (r,)),
              (g + "router_mlp.fc1.weight", (r, r)), (g + "router_mlp.fc1.bias", (r,)),
              (g + "router_mlp.fc2.weight", (r, r)), (g + "router_mlp.fc2.bias", (r,)),
              (g + "router_mlp.out_proj.weight", (e + 1, r)),
              (g + "balancing_biases", (e + 1,)),
              (p + "mlp.experts.gate_up_proj", (e, 2 * im, d)),
              (p + "mlp.experts.down_proj", (e, d, im))]
    return s


def init_value(name, shape, c, g):
    d, hd, L = c["hidden_size"], c["head_dim"], c["num_hidden_layers"]
    last = name.rsplit(".", 1)[-1]

    def normal(std):
        return torch.randn(shape, generator=g) * std

    if name == "model.embed_tokens.weight":
        return normal(1.0 / math.sqrt(d))
    if last in ("hidden_states_scale", "residual_scale") or name.endswith("norm.weight") \
            or name == "model.input_hidden_states_scale":
        return torch.ones(shape)
    if last == "router_states_scale":
        return torch.full(shape, 0.5)
    if last in ("hidden_states_bias", "residual_bias", "bias", "balancing_biases") \
            or name == "model.input_hidden_states_bias":
        return torch.zeros(shape)
    if last == "temp":
        return torch.ones(shape)
    if "conv_qk_depthwise.weight" in name:
        w = normal(0.1)
        w[:, 0, 1] += 1.0  # starts close to "pass the current step through"
        return w
    if "conv_qk_grouped.weight" in name:
        return normal(0.5 / math.sqrt(2 * hd))
    if "router_mlp.out_proj" in name:
        return normal(0.1 / math.sqrt(shape[1]))  # near-uniform p: biases balance from step 0
    if name.endswith("experts.gate_up_proj"):
        return normal(1.0 / math.sqrt(shape[2]))
    if name.endswith("experts.down_proj") or name.endswith("o_proj.weight"):
        return normal(1.0 / math.sqrt(shape[-1]) / math.sqrt(2 * L))
    if len(shape) == 2:
        return normal(1.0 / math.sqrt(shape[1]))
    raise AssertionError(name)


def key(name):
    return name.replace(".", "__")


class Zaya(nn.Module):
    def __init__(self, c, seed=0):
        super().__init__()
        self.c = c
        g = torch.Generator().manual_seed(seed)
        self.names = [n for n, _ in specs(c)]
        self.p = nn.ParameterDict()
        for n, shp in specs(c):
            self.p[key(n)] = nn.Parameter(init_value(n, shp, c, g),
                                          requires_grad=not n.endswith("balancing_biases"))
        rd = int(c["head_dim"] * c["partial_rotary_factor"])
        self.rd = rd
        exps = torch.arange(0, rd, 2, dtype=torch.float64) / rd
        self.inv_freq = 1.0 / (c["rope_theta"] ** exps)
        self.route_counts = None
        # Fused attention for training on a GPU; the plain path (exact softmax) elsewhere.
        self.sdpa = False

    def w(self, n):
        return self.p[key(n)]

    def lw(self, i, n):
        return self.p[key(f"model.layers.{i}.{n}")]

    # -------------------------------------------------------------------------------------
    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.c["rms_norm_eps"]) * w

    def merge(self, x, res, i, blk):
        lw = lambda n: self.lw(i, blk + "." + n)  # noqa: E731
        return ((x + lw("hidden_states_bias")) * lw("hidden_states_scale")
                + (res + lw("residual_bias")) * lw("residual_scale"))

    def rope(self, x, pos):
        """x [..., T, H, D]; pos [..., T] (long)."""
        ang = pos.to(torch.float64)[..., None] * self.inv_freq.to(pos.device)
        cos = torch.cos(ang).to(torch.float32)[..., None, :]
        sin = torch.sin(ang).to(torch.float32)[..., None, :]
        h = self.rd // 2
        x1, x2, rest = x[..., :h], x[..., h:self.rd], x[..., self.rd:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], dim=-1)

    def grouped(self, dw_prev, dw_cur, i):
        c = self.c
        H, K, D = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        G = H + K
        W = self.lw(i, "self_attn.qkv_proj.conv_qk_grouped.weight").view(G, D, D, 2)
        b = self.lw(i, "self_attn.qkv_proj.conv_qk_grouped.bias")
        lead = dw_prev.shape[:-1]
        a0 = dw_prev.reshape(*lead, G, D)
        a1 = dw_cur.reshape(*lead, G, D)
        out = torch.einsum("goi,...gi->...go", W[..., 0], a0) + \
            torch.einsum("goi,...gi->...go", W[..., 1], a1)
        return out.reshape(*lead, G * D) + b

    def qk_norm(self, conv, q0, k0, i):
        c = self.c
        H, K, D = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        grp = H // K
        lead = q0.shape[:-1]
        q0h = q0.view(*lead, H, D)
        k0h = k0.view(*lead, K, D)
        q = conv[..., :H * D].view(*lead, H, D) + 0.5 * (q0h + k0h.repeat_interleave(grp, dim=-2))
        qm = q0h.view(*lead, K, grp, D).mean(dim=-2)
        k = conv[..., H * D:].view(*lead, K, D) + 0.5 * (qm + k0h)
        eps = torch.finfo(torch.float32).eps
        s = math.sqrt(D)
        q = q * (s / q.norm(dim=-1, keepdim=True).clamp_min(eps))
        k = k * (s / k.norm(dim=-1, keepdim=True).clamp_min(eps))
        k = k * self.lw(i, "self_attn.qk_norm.temp")[:, None]
        return q, k

    def moe(self, m, r_prev, i):
        """m [N, d] -> (out [N, d], r [N, R])."""
        c = self.c
        E, I = c["num_experts"], c["moe_intermediate_size"]
        g = "mlp.gate."
        r = m @ self.lw(i, g + "down_proj.weight").T + self.lw(i, g + "down_proj.bias")
        if i > 0:
            r = r + r_prev * self.lw(i, g + "router_states_scale")
        x = self.rms(r, self.lw(i, g + "router_mlp.norm.weight"))
        for fc in ("fc1", "fc2"):
            x = F.gelu(x @ self.lw(i, g + f"router_mlp.{fc}.weight").T
                       + self.lw(i, g + f"router_mlp.{fc}.bias"))
        logits = x @ self.lw(i, g + "router_mlp.out_proj.weight").T
        p = torch.softmax(logits, dim=-1)
        choice = torch.argmax(p.detach() + self.lw(i, g + "balancing_biases"), dim=-1)
        if self.route_counts is not None:
            self.route_counts[i] += torch.bincount(choice, minlength=E + 1).to(
                self.route_counts)
        out = torch.zeros_like(m)
        gu_w = self.lw(i, "mlp.experts.gate_up_proj")
        dn_w = self.lw(i, "mlp.experts.down_proj")
        pe = p.gather(1, choice[:, None])
        for e in range(E):
            idx = (choice == e).nonzero(as_tuple=True)[0]
            if idx.numel() == 0:
                continue
            xe = m.index_select(0, idx)
            gu = xe @ gu_w[e].T
            y = (F.silu(gu[:, :I]) * gu[:, I:]) @ dn_w[e].T
            out = out.index_add(0, idx, y * pe.index_select(0, idx))
        return out, r

    def embed(self, ids):
        e = self.w("model.embed_tokens.weight")[ids]
        scale = self.w("model.input_hidden_states_scale")
        return (e + self.w("model.input_hidden_states_bias")) * scale

    def cca_qkv(self, a, i, pos):
        """CCA of layer i on normed input a [B, T, d] from position 0 (zero-padded convs and
        delayed value): q [B, T, H, D], k and v [B, T, K, D], plus the padded raw conv input
        sp [B, T + 2, C] and the undelayed v_delayed projection vdr, which cached decoding keeps."""
        c = self.c
        K, D = c["num_key_value_heads"], c["head_dim"]
        B, T = a.shape[0], a.shape[1]
        q0 = a @ self.lw(i, "self_attn.qkv_proj.q_proj.weight").T
        k0 = a @ self.lw(i, "self_attn.qkv_proj.k_proj.weight").T
        s = torch.cat([q0, k0], dim=-1)
        sp = torch.cat([s.new_zeros(B, 2, s.shape[-1]), s], dim=1)  # sp[:, t + 2] = s[:, t]
        dww = self.lw(i, "self_attn.qkv_proj.conv_qk_depthwise.weight")[:, 0, :]
        dwb = self.lw(i, "self_attn.qkv_proj.conv_qk_depthwise.bias")
        dw = sp[:, :-1] * dww[:, 0] + sp[:, 1:] * dww[:, 1] + dwb
        conv = self.grouped(dw[:, :-1], dw[:, 1:], i)
        q, k = self.qk_norm(conv, q0, k0, i)
        q = self.rope(q, pos)
        k = self.rope(k, pos)
        vc = a @ self.lw(i, "self_attn.qkv_proj.v_proj_current.weight").T
        vdr = a @ self.lw(i, "self_attn.qkv_proj.v_proj_delayed.weight").T
        vd = torch.cat([vdr.new_zeros(B, 1, vdr.shape[-1]), vdr[:, :-1]], dim=1)
        v = torch.cat([vc, vd], dim=-1).view(B, T, K, D)
        return q, k, v, sp, vdr

    def forward(self, ids, mask=None):
        """ids [B, T] (right padded) -> logits [B, T, V]."""
        c = self.c
        B, T = ids.shape
        H, K, D = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        pos = torch.arange(T, device=ids.device)
        h = self.embed(ids)
        causal = None if self.sdpa else torch.ones(T, T, dtype=torch.bool,
                                                   device=ids.device).tril()
        r_prev = None
        for i in range(c["num_hidden_layers"]):
            a = self.rms(h, self.lw(i, "input_layernorm.weight"))
            q, k, v, _, _ = self.cca_qkv(a, i, pos)
            qh = q.transpose(1, 2)  # [B, H, T, D]
            kh = k.repeat_interleave(H // K, dim=2).transpose(1, 2)
            vh = v.repeat_interleave(H // K, dim=2).transpose(1, 2)
            if self.sdpa:  # fused causal attention (torch >= 2.0, the GPU machine)
                dt = torch.bfloat16 if qh.is_cuda else qh.dtype
                att = F.scaled_dot_product_attention(qh.to(dt), kh.to(dt), vh.to(dt),
                                                     is_causal=True)
            else:
                sc = (qh @ kh.transpose(-1, -2)) / math.sqrt(D)
                sc = sc.masked_fill(~causal, float("-inf"))
                att = torch.softmax(sc, dim=-1) @ vh
            att = att.transpose(1, 2).reshape(B, T, H * D)
            att = att @ self.lw(i, "self_attn.o_proj.weight").T
            h = self.merge(att, h, i, "post_attention_residual_scale")
            m = self.rms(h, self.lw(i, "post_attention_layernorm.weight"))
            if mask is not None:
                sel = mask.reshape(-1).nonzero(as_tuple=True)[0]
                mo, rr = self.moe(m.reshape(-1, m.shape[-1]).index_select(0, sel),
                                  None if r_prev is None else r_prev.index_select(0, sel), i)
                out = m.new_zeros(B * T, m.shape[-1]).index_copy(0, sel, mo)
                rfull = m.new_zeros(B * T, rr.shape[-1]).index_copy(0, sel, rr)
                moe_out, r_prev = out.view(B, T, -1), rfull
            else:
                mo, r_prev = self.moe(m.reshape(-1, m.shape[-1]),
                                      None if r_prev is None else r_prev, i)
                moe_out = mo.view(B, T, -1)
            h = self.merge(moe_out, h, i, "post_mlp_residual_scale")
        hn = self.rms(h, self.w("model.norm.weight"))
        return hn @ self.w("model.embed_tokens.weight").T

    # -------------------------------------------------------------------------------------
    def update_balancing_biases(self):
        if self.route_counts is None:
            return
        E = self.c["num_experts"]
        target = torch.full((E + 1,), (1 - SKIP_TARGET) / E, dtype=torch.float64,
                            device=self.route_counts.device)
        target[E] = SKIP_TARGET
        with torch.no_grad():
            for i in range(self.c["num_hidden_layers"]):
                cnt = self.route_counts[i]
                if cnt.sum() == 0:
                    continue
                frac = cnt / cnt.sum()
                bb = self.lw(i, "mlp.gate.balancing_biases")
                bb += (BIAS_STEP * torch.sign(target - frac)).float()
                bb -= bb[:E].mean()
        self.route_counts.zero_()

    # -------------------------------------------------------------------------------------
    # Cached decoding for sampling (no grad): per-layer KV cache, conv history and V state.
    @torch.no_grad()
    def prefill(self, ids):
        """One prompt (list of ids) -> (state dict for one sequence, last logits [V])."""
        c = self.c
        H, K, D = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        dev = self.w("model.norm.weight").device
        x = torch.tensor([ids], device=dev)
        T = len(ids)
        st = {"k": [], "v": [], "s": [], "vprev": []}
        h = self.embed(x)
        r_prev = None
        pos = torch.arange(T, device=dev)
        for i in range(c["num_hidden_layers"]):
            a = self.rms(h, self.lw(i, "input_layernorm.weight"))
            q, k, v, sp, vdr = self.cca_qkv(a, i, pos)
            st["k"].append(k[0])
            st["v"].append(v[0])
            st["s"].append(sp[0, -2:].clone())
            st["vprev"].append(vdr[0, -1].clone())
            qh = q.transpose(1, 2)
            kh = k.repeat_interleave(H // K, dim=2).transpose(1, 2)
            vh = v.repeat_interleave(H // K, dim=2).transpose(1, 2)
            sc = (qh @ kh.transpose(-1, -2)) / math.sqrt(D)
            sc = sc.masked_fill(~torch.ones(T, T, dtype=torch.bool, device=dev).tril(),
                           float("-inf"))
            att = (torch.softmax(sc, -1) @ vh).transpose(1, 2).reshape(1, T, H * D)
            h = self.merge(att @ self.lw(i, "self_attn.o_proj.weight").T, h, i,
                           "post_attention_residual_scale")
            m = self.rms(h, self.lw(i, "post_attention_layernorm.weight"))
            mo, r_prev = self.moe(m[0], r_prev, i)
            h = self.merge(mo[None], h, i, "post_mlp_residual_scale")
        hn = self.rms(h[0, -1], self.w("model.norm.weight"))
        return st, hn @ self.w("model.embed_tokens.weight").T

    @torch.no_grad()
    def prefill_batch(self, prompts):
        """Batched prefill of prompts (lists of ids, right padded) -> (states, last logits).

        states per layer: k, v [B, T, K, D] (positions >= len are padding, never attended
        before the decode overwrites them), s [B, 2, C] (the conv inputs of the last two
        positions), vprev [B, K*D/2] (the delayed-V projection of the last position)."""
        c = self.c
        H, K, D = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        dev = self.w("model.norm.weight").device
        B, T = len(prompts), max(len(p) for p in prompts)
        x = torch.zeros(B, T, dtype=torch.long, device=dev)
        for b, p in enumerate(prompts):
            x[b, :len(p)] = torch.tensor(p, device=dev)
        lens = torch.tensor([len(p) for p in prompts], device=dev)
        ar = torch.arange(B, device=dev)
        pos = torch.arange(T, device=dev)
        causal = torch.ones(T, T, dtype=torch.bool, device=dev).tril()
        st = {"k": [], "v": [], "s": [], "vprev": []}
        h = self.embed(x)
        r_prev = None
        for i in range(c["num_hidden_layers"]):
            a = self.rms(h, self.lw(i, "input_layernorm.weight"))
            q, k, v, sp, vdr = self.cca_qkv(a, i, pos)
            st["k"].append(k)
            st["v"].append(v)
            st["s"].append(torch.stack([sp[ar, lens], sp[ar, lens + 1]], dim=1))
            st["vprev"].append(vdr[ar, lens - 1])
            G = H // K
            qh = q.view(B, T, K, G, D)
            sc = torch.einsum("btkgd,bskd->bkgts", qh, k) / math.sqrt(D)
            sc = sc.masked_fill(~causal, float("-inf"))
            att = torch.einsum("bkgts,bskd->btkgd", torch.softmax(sc, -1), v).reshape(B, T, H * D)
            h = self.merge(att @ self.lw(i, "self_attn.o_proj.weight").T, h, i,
                           "post_attention_residual_scale")
            m = self.rms(h, self.lw(i, "post_attention_layernorm.weight"))
            mo, r_prev = self.moe(m.reshape(B * T, -1), r_prev, i)
            h = self.merge(mo.view(B, T, -1), h, i, "post_mlp_residual_scale")
        hn = self.rms(h[ar, lens - 1], self.w("model.norm.weight"))
        return st, hn @ self.w("model.embed_tokens.weight").T

    @torch.no_grad()
    def sample(self, prompts, n_each, max_new, temperature, gen, stop=(1, 5), max_ctx=None):
        """prompts: list of id lists; returns [(prompt index, generated ids)] for each prompt and
        sample (prompt-major; the stop token is included when hit). A sequence also stops once
        prompt + generated reaches max_ctx. Batched prefill and decode; finished sequences are
        dropped from the batch when enough of them have finished."""
        c = self.c
        L = c["num_hidden_layers"]
        dev = self.w("model.norm.weight").device
        st, lg = self.prefill_batch(prompts)
        rep = torch.arange(len(prompts), device=dev).repeat_interleave(n_each)
        lens = torch.tensor([len(p) for p in prompts], device=dev)[rep]
        S = int(lens.max()) + max_new + 1
        T0 = st["k"][0].shape[1]
        kc, vc = [], []
        for i in range(L):
            kk = st["k"][i].new_zeros(len(rep), S, *st["k"][i].shape[2:])
            kk[:, :T0] = st["k"][i][rep]
            vv = st["v"][i].new_zeros(len(rep), S, *st["v"][i].shape[2:])
            vv[:, :T0] = st["v"][i][rep]
            kc.append(kk)
            vc.append(vv)
        sh = [x[rep] for x in st["s"]]
        vp = [x[rep] for x in st["vprev"]]
        logits = lg[rep]
        del st
        Bn = len(rep)
        out = torch.full((Bn, max_new), -1, dtype=torch.long, device=dev)
        rows = torch.arange(Bn, device=dev)  # output row of each batch row
        alive = torch.ones(Bn, dtype=torch.bool, device=dev)
        stop_t = torch.tensor(list(stop), device=dev)
        for step in range(max_new):
            if temperature > 0:
                probs = torch.softmax(logits.float() / temperature, -1)
                tok = torch.multinomial(probs, 1, generator=gen)[:, 0]
            else:
                tok = logits.argmax(-1)
            out[rows[alive], step] = tok[alive]
            fin = (tok[:, None] == stop_t).any(-1)
            if max_ctx:
                fin |= lens + 1 >= max_ctx
            alive &= ~fin
            if step == max_new - 1:
                break
            n_alive = int(alive.sum())
            if n_alive == 0:
                break
            if n_alive < 0.7 * alive.numel():  # compact the batch
                keep = alive.nonzero(as_tuple=True)[0]
                rows, tok, lens, alive = rows[keep], tok[keep], lens[keep], alive[keep]
                kc = [x[keep] for x in kc]
                vc = [x[keep] for x in vc]
                sh = [x[keep] for x in sh]
                vp = [x[keep] for x in vp]
            logits = self._decode(tok, lens, kc, vc, sh, vp)
            lens = lens + 1
        res = []
        for b, row in enumerate(out.tolist()):
            ids = [t for t in row if t >= 0]
            res.append((b // n_each, ids))
        return res

    def _decode(self, tok, lens, kc, vc, sh, vp):
        """One token per sequence; updates the caches in place (lists of per-layer tensors)."""
        c = self.c
        H, K, D = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        G = H // K
        Bn = tok.shape[0]
        h = self.embed(tok)  # [B, d]
        r_prev = None
        S = kc[0].shape[1]
        ar = torch.arange(Bn, device=tok.device)
        kmask = torch.arange(S, device=tok.device)[None, :] <= lens[:, None]  # [B, S]
        for i in range(c["num_hidden_layers"]):
            a = self.rms(h, self.lw(i, "input_layernorm.weight"))
            q0 = a @ self.lw(i, "self_attn.qkv_proj.q_proj.weight").T
            k0 = a @ self.lw(i, "self_attn.qkv_proj.k_proj.weight").T
            s = torch.cat([q0, k0], dim=-1)
            s2, s1 = sh[i][:, 0], sh[i][:, 1]
            dww = self.lw(i, "self_attn.qkv_proj.conv_qk_depthwise.weight")[:, 0, :]
            dwb = self.lw(i, "self_attn.qkv_proj.conv_qk_depthwise.bias")
            dprev = dww[:, 0] * s2 + dww[:, 1] * s1 + dwb
            dcur = dww[:, 0] * s1 + dww[:, 1] * s + dwb
            conv = self.grouped(dprev, dcur, i)
            sh[i] = torch.stack([s1, s], dim=1)
            q, k = self.qk_norm(conv, q0, k0, i)  # [B, H, D], [B, K, D]
            q = self.rope(q[:, None], lens[:, None])[:, 0]
            k = self.rope(k[:, None], lens[:, None])[:, 0]
            vcur = a @ self.lw(i, "self_attn.qkv_proj.v_proj_current.weight").T
            v = torch.cat([vcur, vp[i]], dim=-1).view(Bn, K, D)
            vp[i] = a @ self.lw(i, "self_attn.qkv_proj.v_proj_delayed.weight").T
            kc[i][ar, lens] = k
            vc[i][ar, lens] = v
            sc = torch.einsum("bkgd,bskd->bkgs", q.view(Bn, K, G, D), kc[i]) / math.sqrt(D)
            sc = sc.masked_fill(~kmask[:, None, None, :], float("-inf"))
            att = torch.einsum("bkgs,bskd->bkgd", torch.softmax(sc, -1), vc[i]).reshape(Bn, H * D)
            h = self.merge(att @ self.lw(i, "self_attn.o_proj.weight").T, h, i,
                           "post_attention_residual_scale")
            m = self.rms(h, self.lw(i, "post_attention_layernorm.weight"))
            mo, r_prev = self.moe(m, r_prev, i)
            h = self.merge(mo, h, i, "post_mlp_residual_scale")
        hn = self.rms(h, self.w("model.norm.weight"))
        return hn @ self.w("model.embed_tokens.weight").T


def native_config(c, bos, eos_ids, pad):
    return {
        "architectures": ["ZayaForCausalLM"], "model_type": "zaya",
        "vocab_size": c["vocab_size"], "hidden_size": c["hidden_size"],
        "num_hidden_layers": c["num_hidden_layers"],
        "num_attention_heads": c["num_attention_heads"],
        "num_key_value_heads": c["num_key_value_heads"], "head_dim": c["head_dim"],
        "hidden_act": "silu", "num_experts": c["num_experts"], "num_experts_per_tok": 1,
        "moe_intermediate_size": c["moe_intermediate_size"],
        "router_hidden_size": c["router_hidden_size"], "rms_norm_eps": c["rms_norm_eps"],
        "cca_time0": 2, "cca_time1": 2, "attention_bias": False, "lm_head_bias": False,
        "tie_word_embeddings": True, "max_position_embeddings": c["max_position_embeddings"],
        "layer_types": ["hybrid"] * c["num_hidden_layers"],
        "rope_parameters": {"hybrid": {"rope_type": "default", "rope_theta": c["rope_theta"],
                                       "partial_rotary_factor": c["partial_rotary_factor"]}},
        "sliding_window": None, "bos_token_id": bos, "eos_token_id": eos_ids,
        "pad_token_id": pad, "torch_dtype": "float32",
    }


def export(model, out_dir, bos, eos_ids, pad):
    os.makedirs(out_dir, exist_ok=True)
    sp = [(n, "F32", shp) for n, shp in specs(model.c)]
    safetensors_np.write(os.path.join(out_dir, "model.safetensors"), sp,
                         lambda n: model.w(n).detach().float().cpu().numpy().astype(np.float32),
                         {"format": "pt"})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(native_config(model.c, bos, eos_ids, pad), f, indent=1)
        f.write("\n")
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": bos, "eos_token_id": eos_ids, "pad_token_id": pad,
                   "do_sample": True, "temperature": 0.8}, f, indent=1)
        f.write("\n")


def verify_export(model, out_dir, ids, atol=1e-4):
    """Reference forward (tools/reference/zaya_reference.py) on the exported folder must match."""
    grad = torch.is_grad_enabled()
    import zaya_reference as ref  # note: importing it turns autograd off globally
    torch.set_grad_enabled(grad)
    w = ref.Weights(out_dir)
    with torch.no_grad():
        mine = model(torch.tensor([ids]))[0]
    with torch.no_grad():
        theirs = ref.forward_full(w, ids)
    diff = float((mine - theirs).abs().max())
    if diff > atol:
        raise AssertionError(f"export check failed: max |logit diff| {diff} > {atol}")
    # the cached sampler must agree with the full forward pass too
    st, last = model.prefill(ids)
    d2 = float((last - mine[-1]).abs().max())
    _, lastb = model.prefill_batch([ids[:-3], ids])
    d2 = max(d2, float((lastb[1] - mine[-1]).abs().max()),
             float((lastb[0] - mine[-4]).abs().max()))
    if d2 > atol:
        raise AssertionError(f"prefill differs from forward by {d2}")
    return diff
