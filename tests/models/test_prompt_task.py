"""`PromptTask`: one base for every task model; the prompt-file contract
(`task_variables`, metadata, `from_prompt_file`) and the config round trip."""

import os
import sys

import keras
import numpy as np
import pytest
from conftest import LM_MASK, bert_inputs, tiny_bert, tiny_gpt2_lm
from conftest import LM_TOKEN_IDS as LM_IDS

import tf_prompt_tuning as tpt
from tf_prompt_tuning.models.prompt_task import PromptTask

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "data"))
from make_prompt_fixtures import _randomize  # noqa: E402

CLASSIFIERS = {
    "prompt": dict(num_tokens=3),
    "head_only": dict(num_tokens=0),
    "deep_hidden": dict(num_tokens=3, deep="hidden"),
    "prefix": dict(num_tokens=3, deep="prefix"),
    "p_tuning": dict(num_tokens=3, prompt_encoder="lstm"),
}


def test_every_task_model_and_bank_derives_from_the_base():
    for cls in (tpt.PromptTextClassifier, tpt.PromptCausalLM, tpt.PromptBank, tpt.PromptCausalLMBank):
        assert issubclass(cls, PromptTask)


@pytest.mark.parametrize("kind", sorted(CLASSIFIERS))
def test_classifier_from_prompt_file_round_trip(kind, tmp_path):
    backbone = tiny_bert()
    model = tpt.PromptTextClassifier(backbone, 3, label_names=["a", "b", "c"], **CLASSIFIERS[kind])
    _randomize(model, 0)
    path = tpt.save_prompts(model, str(tmp_path / "task.safetensors"))
    assert set(tpt.load_prompts(path).tensors) >= set(model.task_variables())
    restored = tpt.PromptTextClassifier.from_prompt_file(path, backbone)
    assert restored.label_names == ["a", "b", "c"]
    assert restored.prompt_file_metadata() == {
        **model.prompt_file_metadata(), "prompt_encoder": None,  # served from the encoder's output
    } if kind == "p_tuning" else model.prompt_file_metadata()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(restored(bert_inputs())),
                               keras.ops.convert_to_numpy(model(bert_inputs())), atol=1e-6)  # fmt: skip


def test_causal_lm_from_prompt_file_round_trip(tmp_path):
    backbone = tiny_gpt2_lm()
    model = tpt.PromptCausalLM(backbone, num_tokens=3)
    _randomize(model, 0)
    path = tpt.save_prompts(model, str(tmp_path / "lm.safetensors"))
    restored = tpt.PromptCausalLM.from_prompt_file(path, backbone)
    inputs = {"token_ids": LM_IDS, "padding_mask": LM_MASK}
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored(inputs)), keras.ops.convert_to_numpy(model(inputs)))


def test_a_file_of_the_wrong_kind_names_the_class_to_use(tmp_path):
    backbone = tiny_gpt2_lm()
    path = tpt.save_prompts(tpt.PromptCausalLM(backbone, num_tokens=3), str(tmp_path / "lm.safetensors"))
    with pytest.raises(tpt.PromptFileError, match=r"holds a causal_lm prompt, not a classifier one. Load it into a PromptCausalLM"):
        tpt.PromptTextClassifier.from_prompt_file(path, backbone)


def test_banks_are_not_one_task_files(tmp_path):
    bank = tpt.PromptBank(tiny_bert(), num_tokens=3)
    with pytest.raises(ValueError, match=r"`save_prompts` writes one task's prompt; received a PromptBank"):
        tpt.save_prompts(bank, str(tmp_path / "bank.safetensors"))
    assert not (tmp_path / "bank.safetensors").exists()


@pytest.mark.parametrize("make", [
    lambda: tpt.PromptTextClassifier(tiny_bert(), 2, num_tokens=2, label_names=["n", "p"], seed=3),
    lambda: tpt.PromptCausalLM(tiny_gpt2_lm(), num_tokens=2, seed=3),
    lambda: tpt.PromptBank(tiny_bert(), num_tokens=2, tasks=[{"name": "t", "num_classes": 2}]),
], ids=["classifier", "causal_lm", "bank"])  # fmt: skip
def test_config_round_trip_through_the_base(make):
    model = make()
    clone = type(model).from_config(model.get_config())
    assert clone.get_config()["backbone"] == model.get_config()["backbone"]
    assert {k: v for k, v in clone.get_config().items() if k not in ("backbone", "name")} == {
        k: v for k, v in model.get_config().items() if k not in ("backbone", "name")
    }
