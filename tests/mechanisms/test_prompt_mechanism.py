"""`PromptMechanism`: the base's defaults, and that a new mechanism is one class plus one registration (here a test-only one), with no other library edit."""

import keras
import numpy as np
import pytest
from conftest import bert_inputs, tiny_bert

from tf_prompt_tuning import PromptBank, PromptTextClassifier, freeze, save_prompts
from tf_prompt_tuning.app.classification_job import TrainConfig
from tf_prompt_tuning.layers.prompt_layer import PromptLayer
from tf_prompt_tuning.mechanisms import (
    MECHANISMS,
    InputPrompt,
    PromptMechanism,
)


@keras.saving.register_keras_serializable(package="test_prompt_mechanism")
class _ScaledPromptLayer(PromptLayer):
    """A prompt read as `scale * raw`: a stand-in for any new way to make it."""

    def build(self, input_shape):
        super().build(input_shape)
        self.scale = self.add_weight(name="scale", shape=(), initializer="ones", dtype="float32")

    def prompt_value(self):
        return self.scale * self.prompt


class _ServedScaled(InputPrompt):
    """A bank serves the product as a plain prompt and skips the factors."""

    def optional_file_tensors(self, names):
        return {name for name in names if name.startswith("scaled/")}


class _ScaledPrompt(PromptMechanism):
    name = "scaled"
    description = "scaled prompt + head"
    deep = "scaled"

    def make_layers(self, backbone, num_tokens, initializer, placement):
        return _ScaledPromptLayer(num_tokens, initializer=initializer, placement=placement, name="prompt"), None

    def variables(self, prompt, prefixes):
        return {"scaled/raw": prompt.prompt, "scaled/scale": prompt.scale}

    def file_tensors(self, prompt, prefixes):
        return {"prompt": keras.ops.convert_to_numpy(prompt.prompt_value())}

    def optional_file_tensors(self, names):
        return {"prompt"}

    def bank_mechanism(self):
        return _ServedScaled()


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(MECHANISMS, _ScaledPrompt.name, _ScaledPrompt)


def test_a_registered_mechanism_trains_saves_loads_and_serves_in_a_bank(registered, tmp_path):
    keras.utils.set_random_seed(0)
    backbone = tiny_bert()
    model = PromptTextClassifier(backbone, 2, num_tokens=3, deep="scaled")
    assert isinstance(model.prompt, _ScaledPromptLayer) and model.deep == "scaled"
    # Frozen but for the mechanism's variables and the head: prompt, scale, kernel, bias.
    assert model.prompt.scale.trainable
    assert freeze(model, trainable_layers=[model.head]).trainable == 3 * 8 + 1 + 8 * 2 + 2
    model.prompt.scale.assign(2.0)
    expected = model(bert_inputs()).numpy()

    path = save_prompts(model, str(tmp_path / "scaled.safetensors"))
    loaded = PromptTextClassifier.from_prompt_file(path, backbone)
    np.testing.assert_allclose(loaded(bert_inputs()).numpy(), expected, atol=1e-6)
    assert TrainConfig(method="scaled").mechanism().description == "scaled prompt + head"

    bank = PromptBank(backbone, num_tokens=3)
    bank.add_classifier("from_model", model)
    bank.add_prompt_file("from_file", path)
    for task in (0, 1):
        served = bank({**bert_inputs(), "task_id": np.full(2, task, "int32")}).numpy()
        np.testing.assert_allclose(served, expected, atol=1e-6)


def test_the_bases_defaults():
    class Minimal(PromptMechanism):
        deep = "minimal"

    mechanism = Minimal(prompt_encoder="ignored")
    assert mechanism.prompt_encoder is None and mechanism.bank_mechanism() is mechanism
    assert mechanism.classifier_arguments() == {"deep": "minimal", "prompt_encoder": None}
    assert Minimal.matches("minimal", None) and not Minimal.matches("minimal", "mlp")
    assert mechanism.optional_file_tensors({"prompt", "encoder/0"}) == {"encoder/0"}
    assert mechanism.file_tensors(None, None) == {} and mechanism.takes_positions
    with pytest.raises(NotImplementedError):
        mechanism.make_layers(None, 3, "zeros", "prepend")
