"""`TaskBank`: the classifier and LM banks share their task ids, checks and backbone identity."""

import numpy as np
import pytest
from conftest import tiny_bert, tiny_gpt2_lm

from tf_prompt_tuning import PromptBank, PromptCausalLMBank
from tf_prompt_tuning.models.task_bank import TaskBank, check_task_name, same_backbone


@pytest.fixture(params=["classifier", "lm"])
def bank(request):
    if request.param == "classifier":
        bank = PromptBank(tiny_bert(), num_tokens=3)
        bank.add_task("a", 2)
    else:
        bank = PromptCausalLMBank(tiny_gpt2_lm(), num_tokens=3)
        bank.add_task("a")
    return bank


def test_both_banks_are_task_banks_with_a_task_id_input(bank):
    assert isinstance(bank, TaskBank) and bank.extra_input_names == ("task_id",)
    assert bank.prompt_file_kind is None  # many tasks: each saved from its own model
    assert bank.task_names == ["a"] and bank.task_id("a") == 0
    with pytest.raises(KeyError, match=r"No task 'b' in the bank. Its tasks are \['a'\]"):
        bank.task_id("b")


def test_task_ids_are_checked_the_same_way(bank):
    np.testing.assert_array_equal(bank.checked_task_ids(np.array([0, 0])), [0, 0])
    with pytest.raises(ValueError, match=rf"A `{type(bank).__name__}` needs `task_id`"):
        bank.checked_task_ids(None)
    with pytest.raises(ValueError, match=r"`task_id` must be in \[0, 1\)"):
        bank.checked_task_ids(np.array([1]))


def test_new_tasks_are_checked_the_same_way(bank):
    with pytest.raises(ValueError, match="already has a task 'a'"):
        bank.check_new_task("a")
    with pytest.raises(ValueError, match="non-empty string without '/'"):
        bank.check_new_task("x/y")
    other = tiny_bert() if isinstance(bank, PromptBank) else tiny_gpt2_lm(seed=1)
    with pytest.raises(ValueError, match="trained on another backbone"):
        bank.check_new_task("b", other)
    assert bank.check_new_task("b", bank.backbone) == "b"


def test_the_backbone_is_hashed_once_per_bank(bank, monkeypatch):
    import tf_prompt_tuning.models.task_bank as module

    hashes = []
    real = module.backbone_fingerprint
    monkeypatch.setattr(module, "backbone_fingerprint", lambda b: hashes.append(1) or real(b))
    assert bank.bank_backbone_fingerprint() == bank.bank_backbone_fingerprint() == real(bank.backbone)
    assert len(hashes) == 1


def test_names_and_backbone_identity():
    assert check_task_name("t", ["a"]) == "t"
    backbone = tiny_bert()
    assert same_backbone(backbone, backbone) and not same_backbone(backbone, tiny_gpt2_lm())


def test_an_empty_bank_says_how_to_add_a_task():
    with pytest.raises(ValueError, match="The bank has no tasks. Add one with add_lm or add_prompt_file"):
        PromptCausalLMBank(tiny_gpt2_lm(), num_tokens=3).checked_task_ids(np.array([0]))


def test_a_tasks_variables_by_name_and_no_one_task_for_the_bank(bank):
    variables = bank.variables_of_task("a")
    assert "prompt" in variables and variables["prompt"].shape == (3, bank.backbone.hidden_dim)
    with pytest.raises(ValueError, match=r"holds many tasks, so it has no one task's variables. Use variables_of_task\(name\)"):
        bank.task_variables()
