"""Shared fixtures: the tiny random backbones every test builds on, defined
once, and round-trip helpers (after keras-hub's `TestCase.run_layer_test`)."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import keras_hub
import numpy as np
import pytest

# Vocabulary of the tiny causal LMs; token ids below it.
LM_VOCABULARY = 40


@pytest.fixture(autouse=True)
def _clean_keras_state():
    """Each test starts from the default dtype policy and fresh layer names."""
    keras.config.set_dtype_policy("float32")
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")


def assert_config_round_trip(layer):
    """`from_config(get_config())` gives a layer with the same config."""
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    return clone


def assert_keras_save_load_parity(model, inputs, tmp_path, atol=0.0):
    """A `.keras` round trip reproduces the model's outputs."""
    path = str(tmp_path / "model.keras")
    expected = keras.tree.map_structure(keras.ops.convert_to_numpy, model(inputs))
    model.save(path)
    restored = keras.saving.load_model(path)
    actual = keras.tree.map_structure(keras.ops.convert_to_numpy, restored(inputs))
    keras.tree.map_structure(
        lambda a, b: np.testing.assert_allclose(a, b, atol=atol, rtol=0), actual, expected
    )
    return restored


def tiny_bert():
    """A 2-layer, 8-dim random BERT (classification, prompts, prefixes)."""
    return keras_hub.models.BertBackbone(
        vocabulary_size=40, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=24, dropout=0.0,
    )  # fmt: skip


def bert_inputs():
    """Two rows for `tiny_bert`, the first right-padded."""
    return {
        "token_ids": np.array([[2, 5, 6, 3, 0, 0], [2, 7, 8, 9, 10, 3]], "int32"),
        "segment_ids": np.zeros((2, 6), "int32"),
        "padding_mask": np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], "int32"),
    }


def tiny_gpt2():
    """A 2-layer, 8-dim random GPT-2 (classification with a decoder)."""
    return keras_hub.models.GPT2Backbone(
        vocabulary_size=40, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=24, dropout=0.0,
    )  # fmt: skip


def _scaled(backbone):
    """Weights at the scale of a trained model's, not the initial 0.01-0.02.

    At init, a 32-dim model's logits lie within +-0.2 (near ties everywhere)
    and attention adds ~1% to the residual stream, so nothing before a
    position, the prompt included, could change its next token.
    """
    for variable in backbone.weights:
        if len(variable.shape) >= 2:  # token embeddings std 0.2, kernels 0.2
            variable.assign(variable * (20.0 if "token_embedding" in variable.path else 10.0))
    return backbone


def tiny_gpt2_lm(seed=0, max_sequence_length=32):
    """A 2-layer, 32-dim GPT-2 at a trained model's weight scale (generation)."""
    keras.utils.set_random_seed(seed)
    return _scaled(keras_hub.models.GPT2Backbone(
        vocabulary_size=LM_VOCABULARY, num_layers=2, num_heads=2, hidden_dim=32,
        intermediate_dim=64, max_sequence_length=max_sequence_length,
    ))  # fmt: skip


def tiny_opt_lm(seed=0):
    """As `tiny_gpt2_lm`, an OPT (tokens and positions embedded in one layer)."""
    keras.utils.set_random_seed(seed)
    return _scaled(keras_hub.models.OPTBackbone(
        vocabulary_size=LM_VOCABULARY, num_layers=2, num_heads=2, hidden_dim=32,
        intermediate_dim=64, max_sequence_length=32,
    ))  # fmt: skip


def tiny_gemma3_lm(seed=0, sliding_window_size=4):
    """A 6-layer, 32-dim Gemma 3: five sliding-window layers (window of 4
    positions, shorter than the test sequences) and one global layer, as in
    the real model; norm scales random so that every norm matters."""
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.Gemma3Backbone(
        vocabulary_size=LM_VOCABULARY, image_size=None, num_layers=6, num_query_heads=2,
        num_key_value_heads=1, hidden_dim=32, intermediate_dim=64, head_dim=16,
        use_post_ffw_norm=True, use_post_attention_norm=True,
        use_sliding_window_attention=True, sliding_window_size=sliding_window_size,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    for variable in backbone.weights:
        if variable.path.endswith("scale"):
            variable.assign(rng.normal(0.0, 0.3, variable.shape))
        elif "token_embedding" in variable.path:
            variable.assign(variable * 4.0)  # logits far from ties
    return backbone
