import keras
import numpy as np
import pytest

from tf_prompt_tuning import PromptLayer, freeze, parameter_summary


def _model():
    # prompt 2x8=16, dense 8*4+4=36, head 4*3+3=15
    return keras.Sequential(
        [
            keras.Input((5, 8)),
            PromptLayer(2, name="prompt"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(4, name="body"),
            keras.layers.BatchNormalization(name="norm"),
            keras.layers.Dense(3, name="head"),
        ]
    )


def test_only_prompt_stays_trainable():
    model = _model()
    summary = freeze(model)
    assert [v.path for v in model.trainable_weights] == ["sequential/prompt/prompt"]
    norm = 4 * 4  # gamma, beta, moving mean, moving variance
    assert (summary.trainable, summary.total) == (16, 16 + 36 + norm + 15)
    assert model.get_layer("norm").trainable is False


def test_head_by_name_or_object():
    model = _model()
    assert freeze(model, trainable_layers=["head"]).trainable == 16 + 15
    model = _model()
    assert freeze(model, trainable_layers=[model.get_layer("head")]).trainable == 16 + 15


class Nested(keras.Model):
    """A subclassed model that owns a variable and nests a frozen block."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale")
        self.block = keras.Sequential([keras.layers.Dense(8, name="inner")], name="block")
        self.prompt = PromptLayer(3, name="prompt")
        self.head = keras.layers.Dense(2, name="head")

    def call(self, x):
        x = self.prompt(self.block(x) * self.scale)
        return self.head(keras.ops.mean(x, axis=1))


def test_nested_subclassed_model_freezes_own_variables_too():
    model = Nested()
    model(np.zeros((1, 4, 8), "float32"))
    summary = freeze(model, trainable_layers=["head"])
    assert sorted(v.name for v in model.trainable_weights) == ["bias", "kernel", "prompt"]
    assert summary.trainable == 3 * 8 + 8 * 2 + 2
    assert summary.total == summary.trainable + 1 + 8 * 8 + 8
    assert summary.by_layer == {"prompt": 24, "head": 18}


def test_summary_string_is_peft_style_with_breakdown():
    model = _model()
    text = str(freeze(model))
    assert text.splitlines()[0] == (
        "trainable params: 16 || frozen params: 67 || all params: 83 || trainable%: 19.2771"
    )
    assert "trainable prompt: 16" in text
    assert str(parameter_summary(model)) == text


def test_summary_of_unfrozen_model():
    summary = parameter_summary(_model())
    assert summary.trainable == summary.total - 8  # BN moving stats never train
    assert summary.frozen == 8


def test_unknown_layer_name():
    with pytest.raises(ValueError, match=r"names 'heed', which is not a layer of 'sequential'. Its layers are: \["):
        freeze(_model(), trainable_layers=["heed"])


def test_layer_of_another_model():
    with pytest.raises(ValueError, match="has layer 'stranger', which is not part of"):
        freeze(_model(), trainable_layers=[keras.layers.Dense(2, name="stranger")])


def test_prefix_layers_stay_trainable():
    from conftest import tiny_bert

    from tf_prompt_tuning import PrefixLayer, prompted_backbone

    prefixes = PrefixLayer(2, num_layers=2, name="prefixes")
    encoder = prompted_backbone(tiny_bert(), None, prefixes=prefixes)
    summary = freeze(encoder)
    assert summary.by_layer == {"prefixes": 2 * 2 * 2 * 8}
    assert [v.path for v in encoder.trainable_variables] == [prefixes.prefixes.path]


def test_a_model_without_prompt_is_frozen_whole_with_a_warning():
    """The article's order: freeze the base model, then train a prompt in front of it."""
    base = keras.Sequential([keras.Input((None, 8)), keras.layers.Dense(3, name="dense")])
    with pytest.warns(UserWarning, match=r"has no PromptLayer and `trainable_layers` is empty: all of it is now frozen"):
        summary = freeze(base)
    assert summary.trainable == 0 and summary.total == 27
    assert not base.trainable_weights
    model = keras.Sequential([keras.Input((None, 8)), PromptLayer(2, name="prompt"), base])
    assert parameter_summary(model).trainable == 16  # the prompt alone trains
