"""The `Example:` blocks of public docstrings run as doctests."""

import doctest
import importlib

import pytest

MODULES = ["freezing", "initializers", "layers.prompt_layer"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"tf_prompt_tuning.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
