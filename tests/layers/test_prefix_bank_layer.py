"""`PrefixBankLayer`: each task's key/value prefixes, or none, chosen per example."""

import keras
import numpy as np
import pytest
from conftest import assert_config_round_trip

from tf_prompt_tuning.layers.prefix_bank_layer import PrefixBankLayer


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_each_example_gets_its_tasks_prefixes_and_tasks_without_see_none():
    layer = PrefixBankLayer(2, num_layers=3)
    layer.build((None, 4, 8))
    assert not layer.active
    layer.add_prefixes("plain", enabled=False)
    with_prefixes = layer.add_prefixes("prefixed", enabled=True)
    assert layer.active and with_prefixes.shape == (3, 2, 2, 8) and with_prefixes.dtype == "float32"
    keys, values, visible = layer(np.zeros((2, 4, 8), "float32"), task_id=np.array([1, 0]), layer_index=2)
    np.testing.assert_array_equal(_np(keys)[0], _np(with_prefixes[2, 0]))
    np.testing.assert_array_equal(_np(values)[0], _np(with_prefixes[2, 1]))
    np.testing.assert_array_equal(_np(visible), [[True, True], [False, False]])


def test_config_round_trips():
    assert assert_config_round_trip(PrefixBankLayer(2, num_layers=3)).num_layers == 3


def test_a_refused_task_leaves_the_layer_as_it_was():
    prefixes = PrefixBankLayer(3, 2)
    prefixes.build((None, 4, 8))
    with pytest.raises(ValueError, match=r"but the prompt needs shape \(2, 2, 3, 8\)"):
        prefixes.add_prefixes("t", True, np.zeros((3, 8)))
    assert (prefixes.weights, prefixes.task_prefixes) == ([], [])
    assert prefixes._tracker.locked


def test_needs_a_task_id():
    layer = PrefixBankLayer(2, num_layers=1)
    layer.build((None, 4, 8))
    with pytest.raises(ValueError, match="`PrefixBankLayer` needs a `task_id` input"):
        layer(np.zeros((1, 4, 8), "float32"))
