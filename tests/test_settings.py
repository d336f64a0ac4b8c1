"""`Setting`: one declaration drives the checks, configs, prompt-file
validation and the command line's flags."""

import argparse
import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tf_prompt_tuning import PromptCausalLM, PromptTextClassifier
from tf_prompt_tuning.settings import FILE_SETTINGS, FILE_TASKS, Setting, add_config_arguments, check_config, config_from_arguments

MODE = Setting("mode", "a", choices=("a", "b"), help="the mode", in_file=True)
COUNT = Setting("count", 3, type=int, minimum=1, flags=("--count", "--n"))
RATE = Setting("rate", 0.5, type=float)
FLAG = Setting("flag", False, type=bool, flags=("--flag",))


@dataclasses.dataclass
class _Config:
    mode: str = MODE.field()
    count: int = COUNT.field()
    rate: float = RATE.field()
    flag: bool = FLAG.field()

    def __post_init__(self):
        check_config(self)


def test_a_config_checks_each_setting_by_its_declaration():
    assert _Config() == _Config("a", 3, 0.5, False)
    with pytest.raises(ValueError, match=r"`mode` must be one of \('a', 'b'\). Received: mode='c'."):
        _Config(mode="c")
    with pytest.raises(ValueError, match=r"`count` must be a positive integer. Received: count=0."):
        _Config(count=0)
    with pytest.raises(ValueError, match=r"`rate` must be a finite number above 0. Received: rate=nan."):
        _Config(rate=float("nan"))
    # Not truthiness: a file's "yes" or 1 is not a switch.
    with pytest.raises(TypeError, match=r"`flag` must be True or False. Received: flag='yes'."):
        _Config(flag="yes")


def test_flags_come_from_the_declarations_old_spellings_included():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, _Config)
    assert config_from_arguments(_Config, parser.parse_args([])) == _Config()
    args = parser.parse_args(["--mode", "b", "--n", "7", "--rate", "0.1", "--flag"])
    assert config_from_arguments(_Config, args) == _Config("b", 7, 0.1, True)
    assert config_from_arguments(_Config, args, count=2).count == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "c"])  # argparse refuses values outside the choices


def test_file_validation_and_its_wording():
    assert MODE.valid("b") and not MODE.valid("c") and MODE.expected() == '"a" or "b"'
    assert not COUNT.valid(2.0) and not COUNT.valid(True) and COUNT.valid(2)
    assert FLAG.valid(True) and not FLAG.valid(1) and not FLAG.valid("true") and FLAG.expected() == "true or false"
    optional = Setting("encoder", None, choices=("mlp", "lstm"), optional=True)
    assert optional.valid(None) and optional.expected() == 'null, "mlp" or "lstm"'


@given(st.one_of(st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=3), st.none(), st.booleans()))
def test_valid_is_exactly_what_check_accepts(value):
    for setting in (MODE, COUNT, *PromptTextClassifier.SETTINGS, *PromptCausalLM.SETTINGS):
        try:
            setting.check(value)
            accepted = True
        except (TypeError, ValueError):
            accepted = False
        if setting.valid(value):
            assert accepted, (setting.name, value)


def test_the_tasks_declare_what_their_files_record():
    assert [s.name for s in FILE_SETTINGS["classifier"]] == [
        "num_classes", "num_tokens", "placement", "pooling", "deep", "prompt_encoder", "label_names"
    ]  # fmt: skip
    assert [s.name for s in FILE_SETTINGS["causal_lm"]] == ["num_tokens", "placement", "deep"]
    assert PromptTextClassifier.setting("pooling").default == "mean"
    with pytest.raises(ValueError):
        PromptTextClassifier.setting("no_such_setting")


@pytest.fixture
def registry():
    """Leaves the registry of prompt-file kinds as it was."""
    before = dict(FILE_SETTINGS), dict(FILE_TASKS)
    yield
    for registry, saved in zip((FILE_SETTINGS, FILE_TASKS), before):
        registry.clear()
        registry.update(saved)


def test_a_declared_setting_reaches_config_files_and_their_validation(registry, tmp_path):
    """Adding a setting is its declaration plus its use: here a subclass with
    one more, which `get_config`, the prompt file, its check on load and
    `from_prompt_file` then carry with no other edit."""
    import keras
    from conftest import tiny_bert

    from tf_prompt_tuning import PromptFileError, save_prompts
    from tf_prompt_tuning.files.prompt_file import load_prompts
    from tiny_files import resealed

    @keras.saving.register_keras_serializable(package="test_settings")
    class Tempered(PromptTextClassifier):
        prompt_file_kind = "tempered"
        SETTINGS = (*PromptTextClassifier.SETTINGS,
                    Setting("temperature", 1.0, type=float, in_file=True, help="divides the logits"))

        def __init__(self, *args, temperature=1.0, **kwargs):
            super().__init__(*args, **kwargs)
            (self.temperature,) = self.checked_settings(temperature=temperature).values()

        def call(self, inputs, training=None):
            return super().call(inputs, training=training) / self.temperature

    backbone = tiny_bert()
    model = Tempered(backbone, 2, num_tokens=3, temperature=2.0)
    assert model.get_config()["temperature"] == 2.0
    assert Tempered.from_config(model.get_config()).temperature == 2.0
    path = save_prompts(model, str(tmp_path / "t.safetensors"))
    assert load_prompts(path).metadata["temperature"] == 2.0
    assert Tempered.from_prompt_file(path, backbone).temperature == 2.0
    with pytest.raises(ValueError, match=r"`temperature` must be a finite number above 0. Received: temperature=0.0"):
        Tempered(backbone, 2, num_tokens=3, temperature=0.0)
    edited = resealed(path, temperature=-1.0)
    with pytest.raises(PromptFileError, match=r"invalid metadata field 'temperature': expected a finite number above 0. Received: temperature=-1.0"):
        Tempered.from_prompt_file(edited, backbone)
