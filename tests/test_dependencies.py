"""The installed TensorFlow, Keras and KerasHub are the ones pyproject.toml
declares (and README lists as supported): the suite tests what users get."""

import importlib.metadata
import os

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = os.path.dirname(os.path.dirname(__file__))


def _requirements() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    listed = project["dependencies"] + project["optional-dependencies"]["hub"]
    return {r.name: r for r in map(Requirement, listed)}


@pytest.mark.parametrize("name", ["tensorflow", "keras", "keras-hub", "tensorflow-text"])
def test_each_core_dependency_has_an_upper_bound_and_is_installed_within_it(name):
    requirement = _requirements()[name]
    assert any(spec.operator in ("<", "<=", "==") for spec in requirement.specifier), requirement
    assert requirement.specifier.contains(importlib.metadata.version(name)), (
        f"{name} {importlib.metadata.version(name)} is outside {requirement}"
    )


def test_readme_states_the_supported_versions():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    section = readme.split("## Supported versions", 1)[1].split("\n## ", 1)[0]
    for name in ("tensorflow", "keras", "keras-hub"):
        line = next((line for line in section.splitlines() if f"`{name}" in line), "")
        for spec in _requirements()[name].specifier:
            assert f"{spec.operator}{spec.version}" in line, f"README's supported versions lack {name}{spec}"
