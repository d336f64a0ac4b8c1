import ast
import importlib
import inspect
import pathlib

import keras
import pytest
import tomllib
from packaging.version import Version

import tf_prompt_tuning

PACKAGE = "tf_prompt_tuning"
INIT = pathlib.Path(tf_prompt_tuning.__file__)
PYPROJECT = INIT.parents[1] / "pyproject.toml"


def _init_statements():
    return ast.parse(INIT.read_text()).body


def _re_exports() -> dict[str, str]:
    """Name -> source module of every public name `__init__.py` binds with
    `from M import name` (a helper imported as `_name` stays private)."""
    exports = {}
    for node in _init_statements():
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name).startswith("_"):
                    continue
                assert alias.asname is None, f"{alias.name} is re-exported as {alias.asname}"
                exports[alias.name] = node.module
    return exports


def _public(name):
    return getattr(tf_prompt_tuning, name)


def _keras_objects():
    """Exported layers and models, and the initializers of `initializers`."""
    names = [
        name for name in tf_prompt_tuning.__all__
        if inspect.isclass(_public(name)) and issubclass(_public(name), keras.layers.Layer)
    ]  # fmt: skip
    initializers = tf_prompt_tuning.initializers
    names += [
        f"initializers.{name}" for name, value in vars(initializers).items()
        if inspect.isclass(value) and issubclass(value, keras.initializers.Initializer)
        and value.__module__ == initializers.__name__
    ]  # fmt: skip
    return names


def test_all_is_sorted_and_is_exactly_the_re_exports():
    exported = tf_prompt_tuning.__all__
    assert exported == sorted(set(exported))
    assert set(exported) == set(_re_exports())


@pytest.mark.parametrize("name", tf_prompt_tuning.__all__)
def test_each_name_is_the_object_its_module_defines(name):
    module = _re_exports()[name]
    value = _public(name)
    if module == PACKAGE:  # `from tf_prompt_tuning import initializers`: a submodule
        assert value is importlib.import_module(f"{PACKAGE}.{name}")
        return
    assert value is getattr(importlib.import_module(module), name)
    # Defined in that module under that name, not an alias of something else.
    assert (value.__module__, value.__qualname__) == (module, name)
    if name[0].isupper():
        assert inspect.isclass(value)
        if name.endswith("Error"):
            assert issubclass(value, Exception)
    else:
        assert inspect.isfunction(value)


def test_keras_objects_are_found():
    # Guards the parametrization below against an empty list.
    assert {"PromptLayer", "PromptTextClassifier", "initializers.FromArray"} <= set(_keras_objects())


@pytest.mark.parametrize("name", _keras_objects())
def test_every_keras_object_is_registered_under_the_package(name):
    cls = tf_prompt_tuning
    for part in name.split("."):
        cls = getattr(cls, part)
    registered = f"{PACKAGE}>{cls.__name__}"
    assert keras.saving.get_registered_name(cls) == registered
    assert keras.saving.get_registered_object(registered) is cls


def test_version_is_the_one_the_build_reads():
    project = tomllib.loads(PYPROJECT.read_text())
    assert "version" in project["project"]["dynamic"] and "version" not in project["project"]
    module, attribute = project["tool"]["setuptools"]["dynamic"]["version"]["attr"].rsplit(".", 1)
    assert getattr(importlib.import_module(module), attribute) == tf_prompt_tuning.__version__
    # setuptools reads the first assignment as a literal, without importing
    # the package (and TensorFlow); it must be the value the package reports.
    assert (module, attribute) == (f"{PACKAGE}._version", "__version__")
    source = (PYPROJECT.parent / PACKAGE / "_version.py").read_text()
    first = next(
        node.value for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == attribute for t in node.targets)
    )  # fmt: skip
    assert isinstance(first, ast.Constant) and first.value == tf_prompt_tuning.__version__
    assert str(Version(tf_prompt_tuning.__version__)) == tf_prompt_tuning.__version__  # PEP 440

def test_core_imports_without_keras_hub():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['keras_hub'] = None\n"
        "import tf_prompt_tuning as tpt\n"
        "assert tpt.PromptLayer(2)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


