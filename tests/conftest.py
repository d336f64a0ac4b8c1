"""Shared fixtures: the tiny random backbones every test builds on, defined
once, and round-trip helpers (after keras-hub's `TestCase.run_layer_test`)."""

import dataclasses
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from tf_prompt_tuning import PromptBank, PromptLayer, freeze

# Vocabulary of the tiny causal LMs; token ids below it.
LM_VOCABULARY = 40
# A left-aligned batch for them: rows of 5, 2 and 3 tokens.
LM_TOKEN_IDS = np.array([[11, 12, 13, 14, 15], [21, 22, 0, 0, 0], [31, 32, 33, 0, 0]], "int32")
LM_MASK = (LM_TOKEN_IDS > 0).astype("int32")


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


# A frozen Sequential model with a prompt, and data for it: the subject of
# the training tests.
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def frozen_prompt_mlp(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((None, 6)),
            PromptLayer(3, name="prompt"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(8, activation="relu", name="body"),
            keras.layers.Dense(2, name="head"),
        ]
    )
    freeze(model)
    return model


def random_sequences(n=20, seq=5, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, seq, 6)).astype("float32"), rng.integers(0, 2, n).astype("int32")


def sequence_batches(n=20, batch=6):
    return tf.data.Dataset.from_tensor_slices(random_sequences(n)).batch(batch)


def weights_of(variables):
    return [keras.ops.convert_to_numpy(v).copy() for v in variables]


# A bank refusing a task must be left exactly as it was.


def bank_state(bank):
    """What a refused task must not change: the tasks, every variable and the layers' task lists."""
    prompts = bank.prompts if isinstance(bank, PromptBank) else bank.prompt  # a PromptCausalLMBank's
    layers = [prompts.prompts, prompts.deep_prompts, prompts.prefix_tasks]
    if getattr(bank, "prefixes", None) is not None:
        layers.append(bank.prefixes.task_prefixes)
    return {
        # A layer left unlocked would take any attribute set on it as new state.
        "locked": [layer._tracker.locked for layer in (bank, prompts, getattr(bank, "prefixes", None)) if layer is not None],
        "tasks": [dict(t) if isinstance(t, dict) else t for t in bank.tasks],
        "weights": [(v.path, v.trainable, keras.ops.convert_to_numpy(v).copy()) for v in bank.weights],
        "layers": [len(entries) for entries in layers],
    }


def assert_bank_unchanged(bank, before, inputs, tmp_path):
    after = bank_state(bank)
    assert after["tasks"] == before["tasks"] and after["layers"] == before["layers"]
    assert after["locked"] == before["locked"]
    assert [w[:2] for w in after["weights"]] == [w[:2] for w in before["weights"]]
    for (_, _, a), (_, _, b) in zip(after["weights"], before["weights"]):
        np.testing.assert_array_equal(a, b)
    tmp_path.mkdir(parents=True, exist_ok=True)
    assert_keras_save_load_parity(bank, inputs, tmp_path, atol=1e-6)


def file_with_tensors(loaded, **tensors):
    return dataclasses.replace(loaded, tensors={**loaded.tensors, **tensors})


def file_without_tensor(loaded, name):
    return dataclasses.replace(loaded, tensors={k: v for k, v in loaded.tensors.items() if k != name})


def classifier_and_bank_variables(mechanism, backbone=None):
    """A classifier made with `mechanism`'s arguments, the same task added to a
    bank, and each one's variables by prompt-file name, as arrays."""
    from tf_prompt_tuning import PromptTextClassifier

    backbone = backbone or tiny_bert()
    model = PromptTextClassifier(backbone, 2, num_tokens=3, **mechanism.classifier_arguments())
    model(bert_inputs())
    bank = PromptBank(backbone, num_tokens=3)
    bank.add_classifier("task", model)
    served = mechanism.bank_mechanism()
    as_arrays = lambda variables: {k: keras.ops.convert_to_numpy(v) for k, v in variables.items()}  # noqa: E731
    return model, as_arrays(mechanism.variables(model.prompt, model.prefixes)), as_arrays(served.bank_variables(bank, 0))
