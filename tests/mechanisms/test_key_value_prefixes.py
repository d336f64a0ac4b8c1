"""`KeyValuePrefixes`: trainable keys and values in every attention layer."""

import numpy as np
import pytest
from conftest import classifier_and_bank_variables, tiny_bert, tiny_gpt2_lm

from tf_prompt_tuning.layers.prefix_layer import PrefixLayer
from tf_prompt_tuning.mechanisms import KeyValuePrefixes


def test_makes_prefixes_and_no_input_prompt():
    prompt, prefixes = KeyValuePrefixes().make_layers(tiny_bert(), 3, "uniform", "prepend")
    assert prompt is None and isinstance(prefixes, PrefixLayer)
    assert not KeyValuePrefixes.takes_positions


def test_on_a_causal_decoder_the_prefixes_take_its_key_value_shape():
    backbone = tiny_gpt2_lm()
    _, prefixes = KeyValuePrefixes().make_layers(backbone, 3, "uniform", "prepend")
    assert prefixes.key_value_shape is not None


def test_a_bank_serves_the_classifiers_prefixes_under_the_same_name():
    _, own, served = classifier_and_bank_variables(KeyValuePrefixes())
    assert list(own) == list(served) == ["prefixes"] and own["prefixes"].shape == (2, 2, 3, 8)
    np.testing.assert_array_equal(own["prefixes"], served["prefixes"])


def test_words_cannot_start_prefixes():
    with pytest.raises(ValueError, match=r"of key/value prefixes must be random or constant .* Received: prompt_initializer=array"):
        KeyValuePrefixes().check(tiny_bert(), np.zeros((3, 8), "float32"))
