"""An independent Gemma 3 forward pass in numpy, straight from GGUF tensors.

Written from the Gemma 3 architecture (as in Hugging Face's
`Gemma3ForCausalLM` and llama.cpp), sharing no code with KerasHub or with
`tf_prompt_tuning.backbones.gemma3_gguf`: it is the reference the conversion is
checked against, on the tests' small GGUF file and (slow tests,
`tests/data/make_gemma3_reference.py`) on the real model. float64
throughout; one unpadded sequence at positions 0..n-1.
"""

import numpy as np

# Not in the file; fixed by the architecture (llama.cpp hard-codes them too).
LOCAL_ROPE_BASE = 10_000.0
SLIDING_WINDOW_PATTERN = 6  # layers 0-4 of every 6 are local, the 6th global


def read_gguf(path):
    """`(config, tensors)`: metadata and every tensor dequantized, float64,
    in numpy layout (GGUF `[ne0, ne1]` is `(ne1, ne0)`)."""
    import gguf

    reader = gguf.GGUFReader(path)

    def value(key):
        return reader.fields[key].contents()

    config = {
        "layers": int(value("gemma3.block_count")),
        "heads": int(value("gemma3.attention.head_count")),
        "kv_heads": int(value("gemma3.attention.head_count_kv")),
        "head_dim": int(value("gemma3.attention.key_length")),
        "eps": float(value("gemma3.attention.layer_norm_rms_epsilon")),
        "rope_base": float(value("gemma3.rope.freq_base")),
        "window": int(value("gemma3.attention.sliding_window")),
    }
    tensors = {
        t.name: gguf.quants.dequantize(t.data, t.tensor_type).astype("float64").reshape(
            tuple(int(n) for n in reversed(t.shape))
        )
        for t in reader.tensors
    }
    return config, tensors


def _rms_norm(x, weight, eps):
    # GGUF norm weights already hold Gemma's 1 + w.
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def _rope(x, positions, base):
    """Rotary embedding, halves rotated together (`rotate_half`), on `(seq, heads, dim)`."""
    dim = x.shape[-1]
    inverse = base ** (-np.arange(0, dim, 2, dtype="float64") / dim)
    angles = positions[:, None] * inverse[None, :]
    cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]
    first, second = x[..., : dim // 2], x[..., dim // 2 :]
    return np.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def forward(config, tensors, token_ids):
    """Next-token logits `(len(token_ids), vocabulary)` for one sequence."""
    c, t = config, tensors
    embeddings = t["token_embd.weight"]
    n = len(token_ids)
    x = embeddings[np.asarray(token_ids)] * np.sqrt(embeddings.shape[1])
    positions = np.arange(n, dtype="float64")
    causal = np.tril(np.ones((n, n), bool))
    distance = positions[:, None] - positions[None, :]
    for i in range(c["layers"]):
        w = {name[len(f"blk.{i}.") :]: value for name, value in t.items() if name.startswith(f"blk.{i}.")}
        local = i % SLIDING_WINDOW_PATTERN < SLIDING_WINDOW_PATTERN - 1
        base = LOCAL_ROPE_BASE if local else c["rope_base"]
        h = _rms_norm(x, w["attn_norm.weight"], c["eps"])
        q = (h @ w["attn_q.weight"].T).reshape(n, c["heads"], c["head_dim"])
        k = (h @ w["attn_k.weight"].T).reshape(n, c["kv_heads"], c["head_dim"])
        v = (h @ w["attn_v.weight"].T).reshape(n, c["kv_heads"], c["head_dim"])
        q = _rope(_rms_norm(q, w["attn_q_norm.weight"], c["eps"]), positions, base)
        k = _rope(_rms_norm(k, w["attn_k_norm.weight"], c["eps"]), positions, base)
        k = np.repeat(k, c["heads"] // c["kv_heads"], axis=1)
        v = np.repeat(v, c["heads"] // c["kv_heads"], axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(c["head_dim"])
        allowed = causal & (distance < c["window"]) if local else causal
        scores = np.where(allowed[None], scores, -np.inf)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        weights = scores / scores.sum(-1, keepdims=True)
        attended = np.einsum("hqk,khd->qhd", weights, v).reshape(n, -1)
        x = x + _rms_norm(attended @ w["attn_output.weight"].T, w["post_attention_norm.weight"], c["eps"])
        h = _rms_norm(x, w["ffn_norm.weight"], c["eps"])
        ffn = _gelu_tanh(h @ w["ffn_gate.weight"].T) * (h @ w["ffn_up.weight"].T)
        x = x + _rms_norm(ffn @ w["ffn_down.weight"].T, w["post_ffw_norm.weight"], c["eps"])
    return _rms_norm(x, t["output_norm.weight"], c["eps"]) @ embeddings.T
