"""Small real files the tests write and share: a Gemma 3 GGUF file (in the
tensor types of the real one), a KerasHub BERT preset, and a prompt file
rewritten with edited tensors."""

import gguf
import keras
import keras_hub
import numpy as np
from gguf import GGMLQuantizationType as Q
from safetensors.numpy import save as save_safetensors

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN, LAYERS, WINDOW = 32, 2, 1, 128, 256, 6, 3

# A SentencePiece BPE vocabulary in GGUF form, laid out as Gemma's: control
# tokens, added tokens (newline, runs of spaces written with plain spaces, as
# llama.cpp does), 256 byte-fallback pieces, then scored merge pieces.
SPECIAL = [("<pad>", 3), ("<eos>", 3), ("<bos>", 3), ("<unk>", 3), ("<mask>", 3),
           ("<start_of_turn>", 3), ("<end_of_turn>", 3), ("\n", 4), ("  ", 4), ("   ", 4)]  # fmt: skip
BYTES = [(f"<0x{b:02X}>", 6) for b in range(256)]
# Best score first: BPE merges the best-scoring adjacent pair, so each
# word's pieces must be reachable pair by pair ("▁t" -> "▁th" -> "▁the").
MERGED = ["▁t", "▁c", "▁s", "▁th", "▁ca", "▁sa", "▁the", "▁cat", "▁sat", "th", "he", "us", "er", "user", "▁"]
LETTERS = list("abcdefghijklmnopqrstuvwxyz0123456789\t<>/")
TOKENS = [t for t, _ in SPECIAL + BYTES] + MERGED + LETTERS
TYPES = [k for _, k in SPECIAL + BYTES] + [1] * (len(MERGED) + len(LETTERS))
SCORES = [-1000.0] * (len(SPECIAL) + len(BYTES)) + [-float(i) for i in range(len(MERGED) + len(LETTERS))]
ID = {token: i for i, token in enumerate(TOKENS)}


def _k_quant_blocks(rng, rows, columns, kind):
    """Random, valid K-quant super-blocks (gguf can read but not write them):
    random codes and sub-block scales, small finite float16 super-scales."""
    _, block_bytes = gguf.GGML_QUANT_SIZES[kind]
    data = rng.integers(0, 256, (rows, columns // 256, block_bytes), dtype=np.uint8)
    scale = np.frombuffer(np.float16(2e-4 if kind == Q.Q6_K else 1e-3).tobytes(), np.uint8)
    if kind == Q.Q4_K:  # d and dmin lead the block
        data[..., 0:2] = scale
        data[..., 2:4] = scale
    else:  # Q6_K: d ends it
        data[..., -2:] = scale
    return data.reshape(rows, -1)


def write_tiny_gemma3_gguf(path, seed=0, architecture="gemma3", drop=None):
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_context_length(64)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_key_length(HEAD_DIM)
    writer.add_value_length(HEAD_DIM)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(1_000_000.0)
    writer.add_sliding_window(WINDOW)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(TOKENS)
    writer.add_token_scores(SCORES)
    writer.add_token_types(TYPES)
    writer.add_bos_token_id(2)
    writer.add_eos_token_id(1)
    writer.add_unk_token_id(3)
    writer.add_pad_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_space_prefix(False)

    def add(name, rows, columns, kind, std=0.3):
        if name == drop:
            return
        values = rng.normal(0.0, std, (rows, columns)).astype(np.float32)
        if kind == Q.F32:
            writer.add_tensor(name, values)
        elif kind in (Q.Q4_K, Q.Q6_K):
            writer.add_tensor(name, _k_quant_blocks(rng, rows, columns, kind), raw_dtype=kind)
        else:
            writer.add_tensor(name, gguf.quants.quantize(values, kind), raw_dtype=kind)

    def norm(name, size):  # stored as 1 + w, as llama.cpp does
        if name != drop:
            writer.add_tensor(name, (1.0 + rng.normal(0.0, 0.3, size)).astype(np.float32))

    add("token_embd.weight", len(TOKENS), HIDDEN, Q.Q8_0, std=1.0)
    norm("output_norm.weight", HIDDEN)
    for i in range(LAYERS):
        b = f"blk.{i}"
        for name in ("attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm"):
            norm(f"{b}.{name}.weight", HIDDEN)
        norm(f"{b}.attn_q_norm.weight", HEAD_DIM)
        norm(f"{b}.attn_k_norm.weight", HEAD_DIM)
        add(f"{b}.attn_q.weight", HEADS * HEAD_DIM, HIDDEN, Q.Q5_0)
        add(f"{b}.attn_k.weight", KV_HEADS * HEAD_DIM, HIDDEN, Q.Q5_0)
        add(f"{b}.attn_v.weight", KV_HEADS * HEAD_DIM, HIDDEN, Q.Q8_0 if i % 2 else Q.Q5_0)
        add(f"{b}.attn_output.weight", HIDDEN, HEADS * HEAD_DIM, Q.Q4_K)
        add(f"{b}.ffn_gate.weight", FFN, HIDDEN, Q.Q5_0)
        add(f"{b}.ffn_up.weight", FFN, HIDDEN, Q.Q5_0)
        add(f"{b}.ffn_down.weight", HIDDEN, FFN, Q.Q6_K if i % 2 else Q.Q4_K)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return str(path)


WORDS = ["good", "great", "fine", "bad", "awful", "poor", "the", "movie", "was", "plot", "acting", "a"]
VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "positive", "negative"]


def save_tiny_preset(path, seed=0):
    keras.utils.set_random_seed(seed)
    keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCABULARY), num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=32,
    ).save_to_preset(str(path))  # fmt: skip
    keras_hub.models.BertTokenizer(vocabulary=VOCABULARY).save_to_preset(str(path))
    return str(path)


def resealed(path, edit_tensors=None, **metadata):
    """Rewrites a saved prompt file with edited tensors (and `metadata` fields)
    and a recomputed checksum, as a writer that does not check its values would."""
    import json

    from safetensors import safe_open
    from safetensors.numpy import load

    from tf_prompt_tuning.files.prompt_file import content_checksum

    with safe_open(path, "np") as f:
        header = dict(f.metadata())
    tensors = load(open(path, "rb").read())
    if edit_tensors is not None:
        edit_tensors(tensors)
    header["tf_prompt_tuning"] = json.dumps({**json.loads(header["tf_prompt_tuning"]), **metadata})
    header["tf_prompt_tuning_sha256"] = content_checksum(header["tf_prompt_tuning"], tensors)
    open(path, "wb").write(save_safetensors(tensors, metadata=header))
    return path
