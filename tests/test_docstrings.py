"""The `Example:` blocks of public docstrings run as doctests."""

import doctest
import importlib

import pytest

MODULES = [
    "backbone",
    "causal_decoder",
    "distribution",
    "export",
    "freezing",
    "initializers",
    "layers.deep_prompt_layer",
    "layers.prefix_bank_layer",
    "layers.prefix_layer",
    "layers.prompt_bank_layer",
    "layers.prompt_encoder_layer",
    "layers.prompt_layer",
    "layers.text_preprocessor",
    "models.prompt_bank",
    "models.prompt_causal_lm",
    "models.prompt_causal_lm_bank",
    "models.prompt_text_classifier",
    "models.task",
    "prompt_file",
    "prompted_backbone",
    "text_pipeline",
    "training",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"tf_prompt_tuning.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
