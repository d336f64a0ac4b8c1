import keras
import numpy as np
import pytest
from conftest import assert_keras_save_load_parity
from test_prompted_backbone import bert_inputs, tiny_bert

from tf_prompt_tuning import PromptTextClassifier, make_train_step, parameter_summary, save_prompts
from tf_prompt_tuning.prompt_bank import PromptBank, ensemble_probabilities

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _trained(backbone, num_classes, seed):
    keras.utils.set_random_seed(seed)
    model = PromptTextClassifier(backbone, num_classes, num_tokens=3)
    step = make_train_step(model, loss=LOSS, optimizer=keras.optimizers.Adam(0.05))
    for _ in range(3):
        step(bert_inputs(), np.array([0, num_classes - 1]))
    return model


@pytest.fixture
def setup():
    backbone = tiny_bert()
    tasks = {"sentiment": _trained(backbone, 2, 1), "topic": _trained(backbone, 3, 2), "other": _trained(backbone, 2, 3)}
    bank = PromptBank(backbone, num_tokens=3)
    for name, model in tasks.items():
        bank.add_classifier(name, model)
    return backbone, tasks, bank


def test_mixed_batch_equals_each_task_alone(setup):
    _, tasks, bank = setup
    inputs = bert_inputs()
    for task_ids in ([0, 1], [1, 2], [2, 0]):
        mixed = _np(keras.ops.softmax(bank({**inputs, "task_id": np.array(task_ids)})))
        for row, task_id in enumerate(task_ids):
            name = bank.task_names[task_id]
            alone = _np(keras.ops.softmax(tasks[name](inputs)))[row]
            np.testing.assert_allclose(mixed[row, : len(alone)], alone, atol=1e-6)
            assert np.all(mixed[row, len(alone) :] == 0)  # classes the task lacks


def test_adding_a_task_touches_no_other(setup):
    backbone, _, bank = setup
    before = {id(v): _np(v).copy() for v in bank.weights}
    bank.add_task("new", 4)
    after = bank.weights
    for variable in after:
        if id(variable) in before:
            np.testing.assert_array_equal(before[id(variable)], _np(variable))
    assert len(after) == len(before) + 3  # its prompt, kernel, bias
    summary = parameter_summary(bank)
    assert summary.frozen == backbone.count_params()
    assert summary.by_layer["prompts"] == 4 * 3 * 8


def test_ensemble_averages_members_in_one_pass(setup):
    _, tasks, bank = setup
    inputs = bert_inputs()
    ensemble = _np(ensemble_probabilities(bank, inputs, ["sentiment", "other"]))
    expected = (_np(keras.ops.softmax(tasks["sentiment"](inputs))) + _np(keras.ops.softmax(tasks["other"](inputs)))) / 2
    np.testing.assert_allclose(ensemble, expected, atol=1e-6)
    with pytest.raises(ValueError, match="Ensemble members must have the same classes"):
        ensemble_probabilities(bank, inputs, ["sentiment", "topic"])


def test_from_prompt_files_and_keras_round_trip(setup, tmp_path):
    backbone, tasks, bank = setup
    path = save_prompts(tasks["topic"], str(tmp_path / "topic.safetensors"), label_names=["a", "b", "c"])
    from_file = PromptBank(backbone, num_tokens=3)
    from_file.add_prompt_file("topic", path)
    assert from_file.tasks == [{"name": "topic", "num_classes": 3, "label_names": ["a", "b", "c"]}]
    inputs = {**bert_inputs(), "task_id": np.array([0, 0])}
    np.testing.assert_allclose(_np(from_file(inputs)), _np(tasks["topic"](bert_inputs())), atol=1e-6)
    assert_keras_save_load_parity(bank, {**bert_inputs(), "task_id": np.array([2, 1])}, tmp_path, atol=1e-6)


def test_training_in_the_bank_updates_only_prompts_and_heads(setup):
    backbone, _, bank = setup
    frozen = [_np(v).copy() for v in backbone.weights]
    step = make_train_step(bank, loss=LOSS, optimizer="adam")
    step({**bert_inputs(), "task_id": np.array([0, 1])}, np.array([1, 2]))
    for value, variable in zip(frozen, backbone.weights):
        np.testing.assert_array_equal(value, _np(variable))


def test_errors(setup, tmp_path):
    backbone, tasks, bank = setup
    with pytest.raises(ValueError, match="already has a task 'topic'"):
        bank.add_task("topic", 2)
    with pytest.raises(KeyError, match=r"No task 'nope' in the bank. Its tasks are \['sentiment', 'topic', 'other'\]"):
        bank.task_id("nope")
    with pytest.raises(ValueError, match=r"has num_tokens, placement, pooling = \(5, 'after_first', 'mean'\), but the bank's are \(3"):
        bank.add_classifier("long", PromptTextClassifier(backbone, 2, num_tokens=5))
    with pytest.raises(ValueError, match="trained on another backbone"):
        bank.add_classifier("alien", PromptTextClassifier(tiny_bert(), 2, num_tokens=3))
    with pytest.raises(ValueError, match="The bank has no tasks"):
        PromptBank(backbone, num_tokens=3)({**bert_inputs(), "task_id": np.array([0, 0])})
    with pytest.raises(ValueError, match="`pooling` must be one of"):
        PromptBank(backbone, pooling="max")


def test_deep_prompts_are_not_bankable(setup):
    backbone, _, bank = setup
    with pytest.raises(ValueError, match="has deep prompts; a bank holds input-level prompts only"):
        bank.add_classifier("deep", PromptTextClassifier(backbone, 2, num_tokens=3, deep=True))
