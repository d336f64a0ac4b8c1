"""`HiddenStatePrompts`: a prompt for every transformer layer, as hidden states."""

import numpy as np
from conftest import classifier_and_bank_variables, tiny_bert

from tf_prompt_tuning.layers.deep_prompt_layer import DeepPromptLayer
from tf_prompt_tuning.mechanisms import HiddenStatePrompts


def test_makes_a_deep_prompt_layer_with_one_prompt_per_later_layer():
    backbone = tiny_bert()
    prompt, prefixes = HiddenStatePrompts().make_layers(backbone, 3, "zeros", "prepend")
    assert isinstance(prompt, DeepPromptLayer) and prefixes is None
    assert prompt.num_layers == len(backbone.transformer_layers)


def test_a_bank_serves_the_input_and_deep_prompts_under_the_same_names():
    _, own, served = classifier_and_bank_variables(HiddenStatePrompts())
    assert list(own) == list(served) == ["prompt", "deep_prompts"]
    assert own["deep_prompts"].shape == (1, 3, 8)  # the tiny BERT's 2 layers, less the first
    for name in own:
        np.testing.assert_array_equal(own[name], served[name])
