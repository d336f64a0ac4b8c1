"""The `Example:` blocks of public docstrings run as doctests."""

import doctest
import importlib
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).parent.parent / "tf_prompt_tuning"
# Every module with an example in it, by its dotted name under the package.
MODULES = sorted(
    ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    for path in PACKAGE.rglob("*.py")
    if ">>>" in path.read_text()
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"tf_prompt_tuning.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


# Public names whose example cannot run in a docstring, and where it is instead.
WITHOUT_EXAMPLE = {
    "convert_gemma3_gguf": "needs a GGUF file: tests/backbones/test_gemma3_gguf.py writes small ones and converts them",
}


def test_every_public_name_has_a_doctested_example():
    import inspect

    import tf_prompt_tuning as tpt

    missing = [
        name
        for name in tpt.__all__
        if not inspect.ismodule(getattr(tpt, name))
        and name not in WITHOUT_EXAMPLE
        and (
            ">>>" not in (getattr(tpt, name).__doc__ or "")
            or getattr(tpt, name).__module__.removeprefix("tf_prompt_tuning.") not in MODULES
        )
    ]
    assert not missing, f"no doctested example: {missing}"
