"""The import graph runs one way: application -> library -> layers.

Read from the sources (no import needed): `app/` may import anything; the
library (top-level modules and `models/`) never imports `app/`; `layers/`
imports neither `models/` nor `app/`; and no module but `__init__` imports
names from the package's `__init__`.
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
    if name.startswith("tf_prompt_tuning.layers"):
        assert not [m for m in imports if m.startswith("tf_prompt_tuning.models")], "a layer imports a model"
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


def test_one_public_layer_a_module_named_after_it():
    import keras

    import tf_prompt_tuning as tpt

    for name in tpt.__all__:
        obj = getattr(tpt, name)
        if isinstance(obj, type) and issubclass(obj, keras.layers.Layer) and not issubclass(obj, keras.Model):
            snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
            assert obj.__module__ == f"tf_prompt_tuning.layers.{snake}", (name, obj.__module__)


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
