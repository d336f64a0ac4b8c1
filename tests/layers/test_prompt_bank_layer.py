"""`PromptBankLayer`: one prompt per task, each example gets its task's."""

import keras
import numpy as np
import pytest
from conftest import assert_config_round_trip

from tf_prompt_tuning.layers.prompt_bank_layer import PromptBankLayer


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_each_example_gets_its_tasks_prompt_and_keeps_its_text():
    layer = PromptBankLayer(2)
    layer.build((None, 3, 4))
    layer.add_prompt("a", np.full((2, 4), 1.0, "float32"))
    layer.add_prompt("b", np.full((2, 4), 2.0, "float32"))
    x = np.arange(3 * 3 * 4, dtype="float32").reshape(3, 3, 4)
    out = _np(layer(x, task_id=np.array([1, 0, 1])))
    assert out.shape == (3, 5, 4)
    np.testing.assert_array_equal(out[:, :2, 0], [[2, 2], [1, 1], [2, 2]])
    np.testing.assert_array_equal(out[:, 2:], x)


def test_deep_tasks_rewrite_only_their_own_rows():
    layer = PromptBankLayer(2, num_layers=3)
    layer.build((None, 3, 4))
    layer.add_prompt("shallow", "zeros")
    layer.add_prompt("deep", "ones", deep="hidden")
    hidden = np.full((2, 5, 4), 7.0, "float32")
    out = _np(layer(hidden, task_id=np.array([0, 1]), layer_index=2))
    np.testing.assert_array_equal(out[0], hidden[0])  # the shallow task's row is left as it is
    np.testing.assert_array_equal(out[1, :2], _np(layer.deep_prompts[1][1]))  # layer 2's prompt
    np.testing.assert_array_equal(out[1, 2:], hidden[1, 2:])


def test_prompts_stay_float32_and_config_round_trips():
    layer = PromptBankLayer(2, num_layers=3, dtype="mixed_bfloat16")
    layer.build((None, 3, 4))
    layer.add_prompt("a", deep="hidden")
    assert layer.prompts[0].dtype == "float32" and layer.deep_prompts[0].dtype == "float32"
    assert assert_config_round_trip(layer).num_layers == 3


def test_deep_tasks_need_room_for_them():
    layer = PromptBankLayer(3)  # as a PromptCausalLMBank's: input-level prompts only
    layer.build((None, 4, 8))
    with pytest.raises(ValueError, match=r"Task 'deep' has deep prompts, but this bank holds input-level prompts only: make its `PromptBankLayer` with `num_layers`"):
        layer.add_prompt("deep", deep=True)
    assert layer.prompts == []


def test_a_refused_task_leaves_the_layer_as_it_was():
    prompts = PromptBankLayer(3, num_layers=2)
    prompts.build((None, 4, 8))
    with pytest.raises(ValueError, match=r"but the prompt needs shape \(3, 8\)"):
        prompts.add_prompt("t", np.zeros((2, 8)), deep="hidden")
    assert (prompts.weights, prompts.prompts, prompts.deep_prompts, prompts.prefix_tasks) == ([], [], [], [])
    assert prompts._tracker.locked


def test_bad_inputs_name_what_was_received():
    with pytest.raises(ValueError, match=r"expects \(batch, seq, dim\) inputs with a known dim. Received: input_shape=\(None, 4\)"):
        PromptBankLayer(2).build((None, 4))
