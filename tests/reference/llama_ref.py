#!/usr/bin/env python3
"""Independent NumPy forward pass for Hugging Face Llama / Qwen2 checkpoints.

Reads config.json and model.safetensors (or the shards listed in
model.safetensors.index.json) itself and writes the logits of every position
of the given token ids, as raw little-endian float32 [n_ids, vocab]:

  /usr/bin/python3 tests/reference/llama_ref.py --model DIR --ids 1,2,3 --out FILE

Computation is in float64 for a tight reference. Only NumPy is needed.
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np

_DTYPES = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "F64": np.dtype("<f8"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
}


def read_safetensors(path):
    """Returns {name: float32 array} for one safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len].decode("utf-8"))
    data = memoryview(raw)[8 + header_len:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info["dtype"]
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if dtype not in _DTYPES:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dtype}")
        arr = np.frombuffer(data[begin:end], dtype=_DTYPES[dtype])
        if dtype == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        # Stored as float32 (a 1B model stays within memory); the forward
        # pass promotes to float64 in every product.
        tensors[name] = arr.astype(np.float32).reshape(shape)
    return tensors


def load_weights(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        weights = {}
        for shard in shards:
            weights.update(read_safetensors(os.path.join(model_dir, shard)))
        return weights
    return read_safetensors(os.path.join(model_dir, "model.safetensors"))


def inverse_frequencies(cfg, head_dim):
    theta = float(cfg.get("rope_theta", 10000.0))
    inv = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    scaling = cfg.get("rope_scaling") or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "llama3":
        factor = float(scaling["factor"])
        low = float(scaling.get("low_freq_factor", 1.0))
        high = float(scaling.get("high_freq_factor", 4.0))
        old_ctx = float(scaling.get("original_max_position_embeddings", 8192))
        low_wavelen = old_ctx / low
        high_wavelen = old_ctx / high
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old_ctx / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        inv = np.where(medium, smoothed, scaled)
    elif kind not in ("default", "linear"):
        raise ValueError(f"rope_scaling type {kind} is not supported")
    return inv, kind, scaling


def rope_cos_sin(cfg, head_dim, n):
    inv, kind, scaling = inverse_frequencies(cfg, head_dim)
    pos = np.arange(n, dtype=np.float64)
    if kind == "linear":
        pos = pos / float(scaling["factor"])
    angles = np.outer(pos, inv)                       # [n, head_dim/2]
    angles = np.concatenate([angles, angles], axis=-1)  # half-split layout
    return np.cos(angles), np.sin(angles)


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def forward(cfg, w, ids):
    hidden = cfg["hidden_size"]
    n_heads = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_heads)
    head_dim = cfg.get("head_dim") or hidden // n_heads
    eps = float(cfg.get("rms_norm_eps", 1e-6))
    n = len(ids)
    group = n_heads // n_kv

    x = w["model.embed_tokens.weight"][np.asarray(ids)].astype(np.float64)
    cos, sin = rope_cos_sin(cfg, head_dim, n)
    mask = np.triu(np.full((n, n), -np.inf), k=1)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        proj = {}
        for name in ("q", "k", "v"):
            y = h @ w[p + f"self_attn.{name}_proj.weight"].T
            bias = w.get(p + f"self_attn.{name}_proj.bias")
            if bias is not None:
                y = y + bias
            proj[name] = y
        q = proj["q"].reshape(n, n_heads, head_dim).transpose(1, 0, 2)
        k = proj["k"].reshape(n, n_kv, head_dim).transpose(1, 0, 2)
        v = proj["v"].reshape(n, n_kv, head_dim).transpose(1, 0, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = np.repeat(k, group, axis=0)
        v = np.repeat(v, group, axis=0)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(head_dim) + mask
        scores = scores - scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs = probs / probs.sum(axis=-1, keepdims=True)
        attn = (probs @ v).transpose(1, 0, 2).reshape(n, n_heads * head_dim)
        x = x + attn @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate = h @ w[p + "mlp.gate_proj.weight"].T
        up = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight")
    if head is None or cfg.get("tie_word_embeddings", False):
        head = w["model.embed_tokens.weight"]
    return x @ head.T


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="Hugging Face model directory")
    ap.add_argument("--ids", required=True, help="comma-separated token ids")
    ap.add_argument("--out", required=True, help="output file: float32 LE [n_ids, vocab]")
    args = ap.parse_args(argv)
    with open(os.path.join(args.model, "config.json")) as f:
        cfg = json.load(f)
    arch = (cfg.get("architectures") or [""])[0]
    if arch not in ("LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"):
        raise SystemExit(f"unsupported architecture {arch!r}")
    ids = [int(t) for t in args.ids.split(",") if t.strip()]
    if not ids:
        raise SystemExit("--ids is empty")
    logits = forward(cfg, load_weights(args.model), ids)
    logits.astype("<f4").tofile(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
