"""Prompt files written by release 0.1.0 still load and give the same outputs.

The files, the tiny backbones they were trained on and their outputs were
written once by `tests/data/make_prompt_fixtures.py` with that release.
"""

import os
import sys

import keras
import keras_hub
import numpy as np
import pytest

import tf_prompt_tuning as tpt

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
sys.path.insert(0, DATA)
from make_prompt_fixtures import CLASSIFIER_INPUTS, CLASSIFIERS, HERE, LM_INPUTS  # noqa: E402

OUTPUTS = np.load(os.path.join(HERE, "outputs.npz"))


@pytest.fixture(scope="module")
def bert():
    return keras_hub.models.Backbone.from_preset(os.path.join(HERE, "bert"))


def _file(name):
    return os.path.join(HERE, f"{name}.safetensors")


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_classifier_files_of_0_1_load_with_the_same_outputs(bert, name):
    model = tpt.PromptTextClassifier.from_prompt_file(_file(name), bert)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(CLASSIFIER_INPUTS)), OUTPUTS[name], atol=1e-6
    )


def test_causal_lm_file_of_0_1_loads_with_the_same_outputs():
    gpt2 = keras_hub.models.Backbone.from_preset(os.path.join(HERE, "gpt2"))
    model = tpt.PromptCausalLM.from_prompt_file(_file("causal_lm"), gpt2)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(LM_INPUTS)), OUTPUTS["causal_lm"], atol=1e-5
    )


def test_a_bank_of_0_1_files_gives_the_same_outputs(bert):
    bank = tpt.PromptBank(bert, num_tokens=3)
    bank.add_prompt_file("prompt", _file("prompt"))
    bank.add_prompt_file("deep_hidden", _file("deep_hidden"))
    inputs = dict(CLASSIFIER_INPUTS, task_id=np.array([1, 0], "int32"))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(bank(inputs)), OUTPUTS["bank"], atol=1e-6
    )
