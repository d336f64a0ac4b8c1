"""Shared fixtures and a small layer-test helper (after keras-hub's
`TestCase.run_layer_test`)."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest


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
