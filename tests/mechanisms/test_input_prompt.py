"""`InputPrompt`: a soft prompt in the embedded input only."""

import numpy as np
from conftest import classifier_and_bank_variables, tiny_bert

from tf_prompt_tuning.layers.prompt_layer import PromptLayer
from tf_prompt_tuning.mechanisms import InputPrompt


def test_makes_one_prompt_layer_and_no_prefixes():
    prompt, prefixes = InputPrompt().make_layers(tiny_bert(), 3, "zeros", "after_first")
    assert type(prompt) is PromptLayer and prefixes is None
    assert (prompt.num_tokens, prompt.placement) == (3, "after_first")


def test_a_bank_serves_the_classifiers_prompt_under_the_same_name():
    model, own, served = classifier_and_bank_variables(InputPrompt())
    assert list(own) == list(served) == ["prompt"] and own["prompt"].shape == (3, 8)
    np.testing.assert_array_equal(own["prompt"], served["prompt"])
    assert InputPrompt().file_tensors(model.prompt, model.prefixes) == {}
