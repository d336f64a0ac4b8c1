"""`DeepPromptLayer`: the prompt positions rewritten before every later layer (prepended), or added to (appended)."""

import keras
import numpy as np
import pytest
from conftest import assert_config_round_trip

from tf_prompt_tuning.layers.deep_prompt_layer import DeepPromptLayer


def _sequence(batch=2, seq=4, dim=3):
    return np.arange(batch * seq * dim, dtype="float32").reshape(batch, seq, dim) + 100


def test_deep_prompt_layer_replaces_prompt_positions_per_layer():
    layer = DeepPromptLayer(2, num_layers=3, placement="after_first")
    x = _sequence()
    inserted = keras.ops.convert_to_numpy(layer(x))
    assert layer.deep_prompts.shape == (2, 2, 3) and layer.deep_prompts.dtype == "float32"
    replaced = keras.ops.convert_to_numpy(layer(inserted + 1.0, layer_index=2))
    np.testing.assert_array_equal(replaced[:, 1:3], np.broadcast_to(keras.ops.convert_to_numpy(layer.deep_prompts[1]), (2, 2, 3)))
    np.testing.assert_array_equal(replaced[:, :1], inserted[:, :1] + 1.0)
    np.testing.assert_array_equal(replaced[:, 3:], inserted[:, 3:] + 1.0)
    clone = assert_config_round_trip(layer)
    assert clone.num_layers == 3


def test_appended_deep_prompts_are_added_after_each_rows_text():
    layer = DeepPromptLayer(2, num_layers=3, placement="append")
    layer.build((None, None, 3))
    padding_mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    hidden = np.arange(2 * 7 * 3, dtype="float32").reshape(2, 7, 3)  # after layer 0: text + prompt
    replaced = keras.ops.convert_to_numpy(layer(hidden, padding_mask=padding_mask, layer_index=1))
    prompt = keras.ops.convert_to_numpy(layer.deep_prompts[0])
    np.testing.assert_array_equal(replaced[0, 3:5], hidden[0, 3:5] + prompt)  # right after the 3 real tokens
    np.testing.assert_array_equal(replaced[1, 5:7], hidden[1, 5:7] + prompt)
    unpadded = keras.ops.convert_to_numpy(layer(hidden, layer_index=1))  # no mask: the last 2 positions
    np.testing.assert_array_equal(unpadded[:, 5:7], hidden[:, 5:7] + prompt)
    np.testing.assert_array_equal(unpadded[:, :5], hidden[:, :5])
    keep = np.ones((2, 7), bool)
    keep[0, 3:5] = keep[1, 5:7] = False
    np.testing.assert_array_equal(replaced[keep], hidden[keep])  # text and padding untouched


def test_deep_prompt_layer_bad_num_layers():
    with pytest.raises(ValueError, match="`num_layers` must be a positive integer. Received: num_layers=0"):
        DeepPromptLayer(2, num_layers=0)
    with pytest.raises(ValueError, match="at least 2 transformer layers. Received: num_layers=1"):
        DeepPromptLayer(2, num_layers=1)
