"""`PromptCausalLMBank`: many tasks' prompts on one causal LM, each row its own task."""

import keras
import numpy as np
import pytest
from conftest import (
    LM_MASK,
    assert_bank_unchanged,
    assert_keras_save_load_parity,
    bank_state,
    file_with_tensors,
    tiny_bert,
    tiny_gpt2_lm,
)
from conftest import LM_TOKEN_IDS as LM_IDS

from tf_prompt_tuning import (
    PromptCausalLM,
    PromptCausalLMBank,
    PromptFileError,
    PromptTextClassifier,
    parameter_summary,
    save_prompts,
)
from tf_prompt_tuning.models.prompt_bank import PromptBank


@pytest.fixture
def lm_setup():
    backbone = tiny_gpt2_lm()
    lms = {name: PromptCausalLM(backbone, num_tokens=3, seed=seed) for seed, name in enumerate(["a", "b", "c"])}
    bank = PromptCausalLMBank(backbone, num_tokens=3)
    for name, lm in lms.items():
        bank.add_lm(name, lm)
    return backbone, lms, bank


def test_lm_bank_mixed_batch_generates_as_each_task_alone(lm_setup):
    _, lms, bank = lm_setup
    inputs = {"token_ids": LM_IDS, "padding_mask": LM_MASK}
    alone = {name: lm.generate(LM_IDS, LM_MASK, 5, jit_compile=False)["token_ids"] for name, lm in lms.items()}
    assert not np.array_equal(alone["a"], alone["b"])  # the prompts matter
    for task_ids in ([0, 1, 2], [2, 2, 0]):
        mixed = bank.generate(LM_IDS, LM_MASK, 5, task_id=task_ids)["token_ids"]
        logits = keras.ops.convert_to_numpy(bank({**inputs, "task_id": np.array(task_ids)}))
        for row, task_id in enumerate(task_ids):
            name = bank.tasks[task_id]
            np.testing.assert_array_equal(mixed[row], alone[name][row])
            np.testing.assert_allclose(logits[row], keras.ops.convert_to_numpy(lms[name](inputs))[row], atol=1e-5)


def test_lm_bank_from_prompt_files_and_keras_round_trip(lm_setup, tmp_path):
    backbone, lms, bank = lm_setup
    from_file = PromptCausalLMBank(backbone, num_tokens=3)
    assert from_file.add_prompt_file("b", save_prompts(lms["b"], str(tmp_path / "b.safetensors"))) == 0
    np.testing.assert_array_equal(
        from_file.generate(LM_IDS, LM_MASK, 5, task_id=[0, 0, 0])["token_ids"],
        lms["b"].generate(LM_IDS, LM_MASK, 5)["token_ids"],
    )
    inputs = {"token_ids": LM_IDS, "padding_mask": LM_MASK, "task_id": np.array([2, 0, 1])}
    restored = assert_keras_save_load_parity(bank, inputs, tmp_path)
    assert restored.tasks == ["a", "b", "c"]
    assert parameter_summary(bank).trainable == 3 * 3 * 32


def test_lm_bank_errors(lm_setup, tmp_path):
    backbone, lms, bank = lm_setup
    with pytest.raises(ValueError, match="needs `task_id`, each row's task"):
        bank.generate(LM_IDS, LM_MASK, 4)
    with pytest.raises(ValueError, match=r"`task_id` must hold one id in \[0, 3\) per row of `token_ids` \(3 rows\). Received: task_id=\[0, 3, 1\]"):
        bank.generate(LM_IDS, LM_MASK, 4, task_id=[0, 3, 1])
    with pytest.raises(ValueError, match=r"Received: task_id=\[0\]"):
        bank.generate(LM_IDS, LM_MASK, 4, task_id=[0])
    with pytest.raises(ValueError, match=r"Received: task_id=\['0', '1', '1'\]"):
        bank.generate(LM_IDS, LM_MASK, 4, task_id=["0", "1", "1"])
    with pytest.raises(ValueError, match="The bank has no tasks. Add one with add_lm"):
        PromptCausalLMBank(backbone, num_tokens=3).generate(LM_IDS, LM_MASK, 4, task_id=[0, 0, 0])
    with pytest.raises(ValueError, match="already has a task 'a'"):
        bank.add_task("a")
    with pytest.raises(KeyError, match=r"No task 'z' in the bank. Its tasks are \['a', 'b', 'c'\]"):
        bank.task_id("z")
    with pytest.raises(ValueError, match=r"with the bank's num_tokens=3. Received: PromptCausalLM with num_tokens=4"):
        bank.add_lm("long", PromptCausalLM(backbone, num_tokens=4))
    with pytest.raises(ValueError, match="Task 'alien' was trained on another backbone"):
        bank.add_lm("alien", PromptCausalLM(tiny_gpt2_lm(seed=1), num_tokens=3))
    with pytest.raises(ValueError, match="`num_tokens` must be a positive integer. Received: num_tokens=0"):
        PromptCausalLMBank(backbone, num_tokens=0)
    # A file of the other kind, either way round.
    bert = tiny_bert()
    classifier_file = save_prompts(PromptTextClassifier(bert, 2, num_tokens=3), str(tmp_path / "topic.safetensors"))
    with pytest.raises(PromptFileError, match="holds a classifier prompt, not a causal_lm one. Load it into a PromptTextClassifier"):
        bank.add_prompt_file("topic", classifier_file)
    lm_file = save_prompts(lms["a"], str(tmp_path / "a.safetensors"))
    with pytest.raises(PromptFileError, match="holds a causal_lm prompt, not a classifier one. Load it into a PromptCausalLM"):
        PromptBank(bert, num_tokens=3).add_prompt_file("a", lm_file)


def test_lm_bank_task_added_after_generating_is_its_own(lm_setup):
    backbone, lms, bank = lm_setup
    bank.generate(LM_IDS, LM_MASK, 5, task_id=[0, 1, 2])  # compiles with three tasks
    late = PromptCausalLM(backbone, num_tokens=3, seed=7)
    task = bank.add_lm("late", late)
    np.testing.assert_array_equal(
        bank.generate(LM_IDS, LM_MASK, 5, task_id=[task] * 3)["token_ids"],
        late.generate(LM_IDS, LM_MASK, 5)["token_ids"],
    )


def test_a_bank_is_not_one_prompt_file(lm_setup, tmp_path):
    _, _, bank = lm_setup
    with pytest.raises(ValueError, match=r"writes one task's prompt; received a PromptCausalLMBank, which is not one task"):
        save_prompts(bank, str(tmp_path / "bank.safetensors"))
    assert not (tmp_path / "bank.safetensors").exists()


@pytest.mark.parametrize("task_ids", [[0, -1, 1], [0, 3, 1]], ids=str)
def test_out_of_range_task_ids_are_errors_in_an_lm_bank(lm_setup, task_ids, tmp_path):
    import tensorflow as tf

    from tf_prompt_tuning import export_saved_model

    _, _, bank = lm_setup
    with pytest.raises(ValueError, match=r"`task_id` must be in \[0, 3\)"):
        bank({"token_ids": LM_IDS, "padding_mask": LM_MASK, "task_id": np.array(task_ids)})
    with pytest.raises(ValueError, match=r"`task_id` must hold one id in \[0, 3\) per row"):
        bank.generate(LM_IDS, LM_MASK, 3, task_id=task_ids)
    path = export_saved_model(bank, str(tmp_path / "lm"), generate_options={"max_new_tokens": 3})
    generate = tf.saved_model.load(path).signatures["generate"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"task_id must be in \[0, 3\)"):
        generate(token_ids=tf.constant(LM_IDS, tf.int32), padding_mask=tf.constant(LM_MASK, tf.int32),
                 task_id=tf.constant(task_ids, tf.int32))  # fmt: skip


def test_a_refused_lm_task_leaves_the_lm_bank_as_it_was_and_can_be_retried(lm_setup, tmp_path):
    from tiny_files import resealed

    from tf_prompt_tuning.files.prompt_file import load_prompts

    backbone, lms, bank = lm_setup
    good = save_prompts(PromptCausalLM(backbone, num_tokens=3, seed=9), str(tmp_path / "good.safetensors"))
    loaded = load_prompts(good)
    nan_file = resealed(save_prompts(lms["a"], str(tmp_path / "nan.safetensors")),
                        lambda t: t["prompt"].__setitem__((0, 0), np.nan))  # fmt: skip
    diverged = PromptCausalLM(backbone, num_tokens=3)
    diverged.prompt.prompt.assign(np.full((3, 32), np.inf, "float32"))
    inputs = {"token_ids": LM_IDS, "padding_mask": LM_MASK, "task_id": np.array([2, 0, 1])}
    refusals = [
        (lambda: bank.add_task("a/b"), ValueError, r"non-empty string without '/'"),
        (lambda: bank.add_task("a"), ValueError, r"already has a task 'a'"),
        (lambda: bank.add_task("new", "nope"), ValueError, r"Unknown prompt initializer: 'nope'"),
        (lambda: bank.add_task("new", np.zeros((4, 32))), ValueError, r"has shape \(4, 32\), but the prompt needs shape \(3, 32\)"),
        (lambda: bank.add_prompt_file("new", nan_file), PromptFileError, r"'prompt' has 1 non-finite value"),
        (lambda: bank.add_prompt_file("new", file_with_tensors(loaded, prompt=np.zeros((3, 31), "float32"))),
         PromptFileError, r"prompt has shape \(3, 31\), the model's has \(3, 32\)"),
        (lambda: bank.add_prompt_file("new", file_with_tensors(loaded, x=np.zeros(1, "float32"))),
         PromptFileError, r"holds \['prompt', 'x'\], but the model has \['prompt'\]"),
        (lambda: bank.add_prompt_file("b", good), ValueError, r"already has a task 'b'"),
        (lambda: bank.add_lm("new", diverged), ValueError, r"Task 'new' not added to the bank: 'prompt' has 96 non-finite values"),
        (lambda: bank.add_lm("new", PromptCausalLM(tiny_gpt2_lm(seed=1), num_tokens=3)), ValueError, r"trained on another backbone"),
    ]  # fmt: skip
    for i, (refused, error, message) in enumerate(refusals):
        before = bank_state(bank)
        with pytest.raises(error, match=message):
            refused()
        assert_bank_unchanged(bank, before, inputs, tmp_path / str(i))
    assert bank.add_prompt_file("new", good) == 3
    np.testing.assert_array_equal(
        bank.generate(LM_IDS, LM_MASK, 4, task_id=[3, 3, 3])["token_ids"],
        PromptCausalLM.from_prompt_file(good, backbone).generate(LM_IDS, LM_MASK, 4)["token_ids"],
    )
    assert_keras_save_load_parity(bank, {**inputs, "task_id": np.array([3, 0, 1])}, tmp_path)
