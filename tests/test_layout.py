"""The import graph runs one way: application -> models -> the rest.

Read from the sources (no import needed): `app/` may import anything; the
library never imports `app/`; only `models/` and `files/` (whose export
serves task models) import `models/`; `layers/` never imports `mechanisms/`;
and no module but `__init__` imports names from the package's `__init__`.
The tests mirror the package folder for folder.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).parent.parent / "tf_prompt_tuning"
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def _imports(path) -> set[str]:
    """Modules of this package that `path` imports (at any depth in the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tf_prompt_tuning"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tf_prompt_tuning"))
    return found


def _name(path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_imports_run_one_way(path):
    name, imports = _name(path), _imports(path)
    if name.startswith("tf_prompt_tuning.app") or name == "tf_prompt_tuning.__main__":
        return  # the application and its `python -m` entry point
    assert not [m for m in imports if m.startswith("tf_prompt_tuning.app")], "the library imports the application"
    if not name.startswith(("tf_prompt_tuning.models", "tf_prompt_tuning.files", "tf_prompt_tuning.__init__")):
        assert not [m for m in imports if m.startswith("tf_prompt_tuning.models")], "imports a task model"
    if name.startswith("tf_prompt_tuning.layers"):
        assert not [m for m in imports if m.startswith("tf_prompt_tuning.mechanisms")], "a layer imports a mechanism"
    if name not in ("tf_prompt_tuning", "tf_prompt_tuning.__init__", "tf_prompt_tuning.__main__"):
        from_init = [
            alias.name for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.module == "tf_prompt_tuning"
            for alias in node.names if not (PACKAGE / f"{alias.name}.py").exists()
        ]  # fmt: skip
        assert not from_init, f"imports {from_init} from the package's __init__"


def test_the_library_runs_without_its_application():
    """The application could be deleted: importing the library never loads it."""
    import subprocess
    import sys

    code = "import sys, tf_prompt_tuning; assert not [m for m in sys.modules if m.startswith('tf_prompt_tuning.app')]"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def _snake(name: str) -> str:
    import re

    return re.sub(r"(?<!^)(?=[A-Z][a-z])|(?<=[a-z])(?=[A-Z])", "_", name).lower()  # PromptCausalLM -> prompt_causal_lm


def test_one_public_layer_or_model_a_module_named_after_it():
    """Prompt layers in `layers/`, preprocessing layers in `preprocessing/`,
    task models in `models/`, each in a module of its name."""
    import keras

    import tf_prompt_tuning as tpt

    for name in tpt.__all__:
        obj = getattr(tpt, name)
        if isinstance(obj, type) and issubclass(obj, keras.layers.Layer):
            folder = "models" if issubclass(obj, keras.Model) else "preprocessing" if "Preprocessor" in name else "layers"
            assert obj.__module__ == f"tf_prompt_tuning.{folder}.{_snake(name)}", (name, obj.__module__)


def test_the_tests_mirror_the_package():
    """Each module `tf_prompt_tuning/FOLDER/NAME.py` has `tests/FOLDER/test_NAME.py`
    (a private `_NAME.py` too, without its underscore)."""
    tests = PACKAGE.parent / "tests"
    missing = [
        str(path.relative_to(PACKAGE.parent)) for path in MODULES
        if path.stem not in ("__init__", "__main__", "_version")
        and not (tests / path.parent.relative_to(PACKAGE) / f"test_{path.stem.lstrip('_')}.py").exists()
    ]  # fmt: skip
    assert not missing, f"modules without a test file of their name: {missing}"


@pytest.mark.parametrize("path", [p for p in MODULES if p.name != "_keras_internals.py"], ids=_name)
def test_private_keras_apis_are_reached_only_through_keras_internals(path):
    """A private attribute of another object (`layer._tracker`) is read only in
    `_keras_internals.py`, where a test checks each against the installed
    Keras and KerasHub; a module may use its own classes' private methods."""
    tree = ast.parse(path.read_text())
    own = {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    foreign = [
        f"line {node.lineno}: {ast.unparse(node)}" for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")) and node.attr not in own
    ]  # fmt: skip
    assert not foreign, f"private attributes read outside _keras_internals.py: {foreign}"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_no_function_over_80_lines_of_code(path):
    """Docstrings aside, no function runs over 80 lines: a longer one is split
    into named steps (the CLI's parser, a list of flags, sits at the limit)."""
    long = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            if ast.get_docstring(node, clean=False) is not None:
                lines -= node.body[0].end_lineno - node.body[0].lineno + 1
            if lines > 80:
                long.append(f"{node.name} (line {node.lineno}): {lines} lines")
    assert not long, long
