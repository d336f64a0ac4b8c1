
import keras
import numpy as np
import pytest
from conftest import (
    assert_bank_unchanged,
    assert_keras_save_load_parity,
    bank_state,
    bert_inputs,
    file_with_tensors,
    file_without_tensor,
    tiny_bert,
    tiny_gpt2_lm,
)

from tf_prompt_tuning import (
    PromptCausalLM,
    PromptFileError,
    PromptTextClassifier,
    make_train_step,
    parameter_summary,
    save_prompts,
)
from tf_prompt_tuning.models.prompt_bank import PromptBank, ensemble_probabilities

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _trained(backbone, num_classes, seed, deep=False):
    keras.utils.set_random_seed(seed)
    model = PromptTextClassifier(backbone, num_classes, num_tokens=3, deep=deep)
    step = make_train_step(model, loss=LOSS, optimizer=keras.optimizers.Adam(0.05))
    for _ in range(3):
        step(bert_inputs(), np.array([0, num_classes - 1]))
    return model


def _bank_of(backbone, tasks):
    bank = PromptBank(backbone, num_tokens=3)
    for name, model in tasks.items():
        bank.add_classifier(name, model)
    return backbone, tasks, bank


@pytest.fixture
def setup():
    backbone = tiny_bert()
    tasks = {"sentiment": _trained(backbone, 2, 1), "topic": _trained(backbone, 3, 2), "other": _trained(backbone, 2, 3)}
    return _bank_of(backbone, tasks)


@pytest.fixture
def deep_setup():
    """Input-level and deep-prompt tasks in one bank."""
    backbone = tiny_bert()
    tasks = {"shallow": _trained(backbone, 2, 1), "deep": _trained(backbone, 3, 2, deep=True),
             "deeper": _trained(backbone, 2, 3, deep=True)}  # fmt: skip
    return _bank_of(backbone, tasks)


@pytest.fixture
def prefix_setup():
    """Key/value-prefix tasks next to deep and input-level ones."""
    backbone = tiny_bert()
    tasks = {"prefix": _trained(backbone, 2, 1, deep="prefix"), "deep": _trained(backbone, 3, 2, deep=True),
             "shallow": _trained(backbone, 2, 3), "prefix2": _trained(backbone, 3, 4, deep="prefix")}  # fmt: skip
    return _bank_of(backbone, tasks)


@pytest.mark.parametrize("bank_setup", ["setup", "deep_setup", "prefix_setup"])
def test_mixed_batch_equals_each_task_alone(bank_setup, request):
    _, tasks, bank = request.getfixturevalue(bank_setup)
    inputs = bert_inputs()
    for task_ids in ([0, 1], [1, 2], [2, 0], [1, 1], [len(tasks) - 1, 0]):
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
    with pytest.raises(ValueError, match=r"An ensemble needs at least one member. Received: task_names=\[\]"):
        ensemble_probabilities(bank, inputs, [])


def test_from_prompt_files_and_keras_round_trip(setup, tmp_path):
    backbone, tasks, bank = setup
    path = save_prompts(tasks["topic"], str(tmp_path / "topic.safetensors"), label_names=["a", "b", "c"])
    from_file = PromptBank(backbone, num_tokens=3)
    from_file.add_prompt_file("topic", path)
    assert from_file.tasks == [{"name": "topic", "num_classes": 3, "label_names": ["a", "b", "c"], "deep": False}]
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


def test_deep_bank_from_prompt_files_keras_round_trip_and_training(deep_setup, tmp_path):
    backbone, tasks, bank = deep_setup
    path = save_prompts(tasks["deep"], str(tmp_path / "deep.safetensors"))
    from_file = PromptBank(backbone, num_tokens=3)
    from_file.add_prompt_file("deep", path)
    assert from_file.tasks[0]["deep"] == "hidden"
    np.testing.assert_allclose(
        _np(from_file({**bert_inputs(), "task_id": np.array([0, 0])})), _np(tasks["deep"](bert_inputs())), atol=1e-6
    )
    assert_keras_save_load_parity(bank, {**bert_inputs(), "task_id": np.array([2, 1])}, tmp_path, atol=1e-6)
    frozen = [_np(v).copy() for v in backbone.weights]
    deep_before = _np(bank.prompts.deep_prompts[1]).copy()
    step = make_train_step(bank, loss=LOSS, optimizer="adam")
    step({**bert_inputs(), "task_id": np.array([1, 0])}, np.array([2, 1]))
    assert not np.allclose(deep_before, _np(bank.prompts.deep_prompts[1]))
    for value, variable in zip(frozen, backbone.weights):
        np.testing.assert_array_equal(value, _np(variable))


def test_prefix_bank_from_prompt_files_keras_round_trip_and_training(prefix_setup, tmp_path):
    backbone, tasks, bank = prefix_setup
    assert parameter_summary(bank).by_layer["prefixes"] == 2 * (2 * 2 * 3 * 8)  # two prefix tasks
    path = save_prompts(tasks["prefix"], str(tmp_path / "prefix.safetensors"))
    from_file = PromptBank(backbone, num_tokens=3)
    from_file.add_prompt_file("prefix", path)
    assert from_file.tasks[0]["deep"] == "prefix"
    np.testing.assert_allclose(
        _np(from_file({**bert_inputs(), "task_id": np.array([0, 0])})), _np(tasks["prefix"](bert_inputs())), atol=1e-6
    )
    assert_keras_save_load_parity(bank, {**bert_inputs(), "task_id": np.array([0, 3])}, tmp_path, atol=1e-6)
    frozen = [_np(v).copy() for v in backbone.weights]
    before = [_np(v).copy() for v in bank.prefixes.task_prefixes if v is not None]
    step = make_train_step(bank, loss=LOSS, optimizer="adam")
    step({**bert_inputs(), "task_id": np.array([0, 2])}, np.array([1, 0]))  # tasks "prefix" and "shallow"
    after = [_np(v) for v in bank.prefixes.task_prefixes if v is not None]
    assert not np.allclose(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])  # "prefix2" had no examples
    for value, variable in zip(frozen, backbone.weights):
        np.testing.assert_array_equal(value, _np(variable))


def test_a_new_prefix_task_starts_random_and_predict_sees_it(prefix_setup):
    backbone, tasks, _ = prefix_setup
    bank = PromptBank(backbone, num_tokens=3)
    bank.add_classifier("shallow", tasks["shallow"])
    x = {**bert_inputs(), "task_id": np.array([0, 0])}
    bank.predict(x, verbose=0)  # compiles a predict function for one task
    bank.add_classifier("prefix", tasks["prefix"])
    np.testing.assert_allclose(
        bank.predict({**x, "task_id": np.array([1, 1])}, verbose=0), _np(tasks["prefix"](bert_inputs())), atol=1e-6
    )
    bank.add_task("fresh", 2, deep="prefix")
    fresh = _np(bank.prefixes.task_prefixes[2])
    assert np.abs(fresh).max() > 0.3 and not np.allclose(fresh[:, :, 0], fresh[:, :, 1])  # tokens differ


def test_prefix_tasks_need_encoder_layers():
    from conftest import tiny_gpt2 as tiny_gpt2_backbone

    bank = PromptBank(tiny_gpt2_backbone(), num_tokens=3, placement="prepend", pooling="last")
    with pytest.raises(ValueError, match=r"Task 'p' has key/value prefixes, but the bank's backbone 'gpt2_backbone' has no KerasHub TransformerEncoder layers to take them. Train the task with deep='hidden' instead"):
        bank.add_task("p", 2, deep="prefix")
    assert bank.tasks == []


# Generation: a bank of prompts for one frozen causal LM.


# Every task id outside [0, number of tasks) is an error, on every path.

BAD_TASK_IDS = [[0, -1], [3, 0], [0, 100], [-3, 1]]


@pytest.mark.parametrize("task_ids", BAD_TASK_IDS, ids=str)
def test_out_of_range_task_ids_are_errors_eagerly_and_in_keras(setup, task_ids):
    _, _, bank = setup
    x = {**bert_inputs(), "task_id": np.array(task_ids)}
    with pytest.raises(ValueError, match=r"`task_id` must be in \[0, 3\), the bank's task ids. Received: task_id="):
        bank(x)
    bank.predict({**x, "task_id": np.array([0, 1])}, verbose=0)  # Keras compiles predict (no XLA: a bank has none)
    assert bank.jit_compile is False
    with pytest.raises(Exception, match=r"`task_id` must be in \[0, 3\)"):
        bank.predict(x, verbose=0)
    bank.compile(optimizer="adam", loss=LOSS)
    with pytest.raises(Exception, match=r"`task_id` must be in \[0, 3\)"):
        bank.fit(x, np.array([0, 1]), verbose=0)
    with pytest.raises(Exception, match=r"`task_id` must be in \[0, 3\)"):
        bank.evaluate(x, np.array([0, 1]), verbose=0)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_out_of_range_task_ids_are_errors_in_tf_functions_and_steps(setup, jit_compile):
    import tensorflow as tf

    _, _, bank = setup
    good = {**bert_inputs(), "task_id": np.array([0, 2], "int32")}
    bad = {**bert_inputs(), "task_id": np.array([0, -1], "int32")}
    function = tf.function(lambda x: bank(x))
    function(good)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`task_id` must be in \[0, 3\)"):
        function(bad)
    if jit_compile:  # XLA would drop the check: the step compiles without it, and says so
        with pytest.warns(UserWarning, match=r"does not support XLA"):
            step = make_train_step(bank, loss=LOSS, optimizer=keras.optimizers.Adam(0.05), jit_compile=True)
    else:
        step = make_train_step(bank, loss=LOSS, optimizer=keras.optimizers.Adam(0.05))
    step(good, np.array([0, 1]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`task_id` must be in \[0, 3\)"):
        step(bad, np.array([0, 1]))


def test_out_of_range_task_ids_are_errors_in_the_saved_model(setup, tmp_path):
    import tensorflow as tf

    from tf_prompt_tuning import export_saved_model

    _, _, bank = setup
    path = export_saved_model(bank, str(tmp_path / "bank"))
    serve = tf.saved_model.load(path).signatures["serving_default"]
    inputs = {k: tf.constant(v) for k, v in bert_inputs().items() if k != "segment_ids"}
    serve(**inputs, task_id=tf.constant([2, 0]))
    for task_ids in BAD_TASK_IDS:
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"`task_id` must be in \[0, 3\)"):
            serve(**inputs, task_id=tf.constant(task_ids, tf.int32))


def test_a_bank_reads_each_task_file_once(setup, tmp_path, monkeypatch):
    """Files go straight into the bank's variables: no throwaway classifier, one read each."""
    import tf_prompt_tuning.files.prompt_file as prompt_file

    backbone, tasks, _ = setup
    paths = {name: save_prompts(model, str(tmp_path / f"{name}.safetensors")) for name, model in tasks.items()}
    reads = []
    real = prompt_file.load_prompts
    monkeypatch.setattr(prompt_file, "load_prompts", lambda path: reads.append(path) or real(path))
    hashes = []
    real_hash = prompt_file.backbone_fingerprint
    monkeypatch.setattr(prompt_file, "backbone_fingerprint", lambda b: hashes.append(1) or real_hash(b))
    import tf_prompt_tuning.models.task_bank as bank_module

    monkeypatch.setattr(bank_module, "backbone_fingerprint", prompt_file.backbone_fingerprint)
    bank = PromptBank(backbone, num_tokens=3)
    for name, path in paths.items():
        bank.add_prompt_file(name, path)
    assert sorted(reads) == sorted(paths.values())  # each file once
    assert len(hashes) <= 1  # the bank's backbone hashed once, not once per file
    x = {**bert_inputs(), "task_id": np.array([0, 1])}
    for task_id, (name, model) in enumerate(tasks.items()):
        expected = _np(model(bert_inputs()))
        got = _np(bank({**x, "task_id": np.array([task_id, task_id])}))[:, : model.num_classes]
        np.testing.assert_allclose(got, expected, atol=1e-6)


# Adding a task is all or nothing: a refused one leaves the bank exactly as it was.


@pytest.fixture
def mixed_bank():
    """A bank with an input-level, a deep and a prefix task (untrained: refusals only need its state)."""
    backbone = tiny_bert()
    bank = PromptBank(backbone, num_tokens=3)
    bank.add_task("shallow", 2, label_names=["no", "yes"])
    bank.add_task("deep", 3, deep="hidden")
    bank.add_task("prefix", 2, deep="prefix")
    return backbone, bank


BANK_INPUTS = {**bert_inputs(), "task_id": np.array([2, 1])}

REFUSED_TASKS = [
    pytest.param(dict(name="a/b", num_classes=2), ValueError, r"A task name must be a non-empty string without '/'. Received: name='a/b'", id="slash_in_name"),
    pytest.param(dict(name="", num_classes=2), ValueError, r"non-empty string without '/'. Received: name=''", id="empty_name"),
    pytest.param(dict(name=3, num_classes=2), ValueError, r"non-empty string without '/'. Received: name=3", id="name_not_a_string"),
    pytest.param(dict(name="deep", num_classes=2), ValueError, r"The bank already has a task 'deep'. Pick another name", id="taken_name"),
    pytest.param(dict(name="new", num_classes=0), ValueError, r"`num_classes` must be a positive integer. Received: num_classes=0", id="zero_classes"),
    pytest.param(dict(name="new", num_classes=1), ValueError, r"`num_classes` must be at least 2 .* Received: num_classes=1", id="one_class"),
    pytest.param(dict(name="new", num_classes=2.0), TypeError, r"`num_classes` must be a positive integer. Received: num_classes=2.0", id="float_classes"),
    pytest.param(dict(name="new", num_classes=2, label_names=["a"]), ValueError, r"`label_names` must be 2 distinct strings \(num_classes\). Received: label_names=\['a'\]", id="too_few_label_names"),
    pytest.param(dict(name="new", num_classes=2, label_names=["a", "a"]), ValueError, r"2 distinct strings .* Received: label_names=\['a', 'a'\]", id="repeated_label_names"),
    pytest.param(dict(name="new", num_classes=2, label_names="ab"), ValueError, r"2 distinct strings .* Received: label_names='ab'", id="label_names_a_string"),
    pytest.param(dict(name="new", num_classes=2, deep="layers"), ValueError, r"`deep` must be", id="unknown_deep"),
    pytest.param(dict(name="new", num_classes=2, prompt_initializer="nope"), ValueError, r"Unknown prompt initializer: 'nope'", id="unknown_initializer"),
    pytest.param(dict(name="new", num_classes=2, prompt_initializer=np.zeros((4, 8))), ValueError, r"The initializer's array has shape \(4, 8\), but the prompt needs shape \(3, 8\)", id="initializer_shape"),
    pytest.param(dict(name="new", num_classes=2, deep="hidden", prompt_initializer=np.zeros((4, 8))), ValueError, r"has shape \(4, 8\), but the prompt needs shape \(3, 8\)", id="deep_initializer_shape"),
    pytest.param(dict(name="new", num_classes=2, deep="prefix", prompt_initializer=np.zeros((3, 8))), ValueError, r"has shape \(3, 8\), but the prompt needs shape \(2, 2, 3, 8\)", id="prefix_initializer_shape"),
]  # fmt: skip


@pytest.mark.parametrize("kwargs, error, message", REFUSED_TASKS)
def test_a_refused_task_leaves_the_bank_as_it_was(mixed_bank, tmp_path, kwargs, error, message):
    _, bank = mixed_bank
    before = bank_state(bank)
    with pytest.raises(error, match=message):
        bank.add_task(**kwargs)
    assert_bank_unchanged(bank, before, BANK_INPUTS, tmp_path)
    deep = kwargs.get("deep") if kwargs.get("deep") in ("hidden", "prefix") else False
    assert bank.add_task("new", 2, deep=deep) == 3  # the retry, with good settings
    assert bank.task_names == ["shallow", "deep", "prefix", "new"]
    assert_keras_save_load_parity(bank, {**bert_inputs(), "task_id": np.array([3, 0])}, tmp_path, atol=1e-6)


def test_a_prefix_task_refused_by_a_backbone_without_encoder_layers_changes_nothing(tmp_path):
    from conftest import tiny_gpt2 as tiny_gpt2_backbone

    bank = PromptBank(tiny_gpt2_backbone(), num_tokens=3, placement="prepend", pooling="last")
    bank.add_task("plain", 2)
    before = bank_state(bank)
    with pytest.raises(ValueError, match=r"Task 'p' has key/value prefixes, but the bank's backbone"):
        bank.add_task("p", 2, deep="prefix")
    inputs = {"token_ids": np.array([[5, 6, 7]]), "padding_mask": np.ones((1, 3), "int32"), "task_id": np.array([0])}
    assert_bank_unchanged(bank, before, inputs, tmp_path)
    assert bank.add_task("p", 2, deep="hidden") == 1


def _refused_files(tmp_path, backbone, good):
    """(description, file or PromptFile, error, message): every way a prompt file is refused."""
    from tiny_files import resealed

    from tf_prompt_tuning.files.prompt_file import load_prompts

    loaded = load_prompts(good)
    nan_prompt = loaded.tensors["prompt"].copy()
    nan_prompt[0, 0] = np.nan
    nan_file = resealed(save_prompts(_trained(backbone, 2, 5), str(tmp_path / "nan.safetensors")),
                        lambda t: t["head/bias"].__setitem__(0, np.inf))  # fmt: skip
    lm_file = save_prompts(PromptCausalLM(tiny_gpt2_lm(), num_tokens=3), str(tmp_path / "lm.safetensors"))
    other = save_prompts(PromptTextClassifier(tiny_bert(), 2, num_tokens=3), str(tmp_path / "other.safetensors"))
    longer = save_prompts(PromptTextClassifier(backbone, 2, num_tokens=4), str(tmp_path / "long.safetensors"))
    extra = np.zeros((2, 8), "float32")
    return [
        ("non_finite_file", nan_file, PromptFileError, r"'head/bias' has 1 non-finite value \(NaN or infinity\) of 2"),
        ("non_finite_in_memory", file_with_tensors(loaded, prompt=nan_prompt), PromptFileError, r"'prompt' has 1 non-finite value"),
        ("wrong_shape", file_with_tensors(loaded, prompt=np.zeros((3, 7), "float32")), PromptFileError, r"prompt has shape \(3, 7\), the model's has \(3, 8\)"),
        ("unknown_tensor", file_with_tensors(loaded, deep_prompts=extra), PromptFileError, r"holds \['deep_prompts', 'head/bias', 'head/kernel', 'prompt'\], but the model has \['head/bias', 'head/kernel', 'prompt'\]"),
        ("missing_tensor", file_without_tensor(loaded, "head/bias"), PromptFileError, r"holds \['head/kernel', 'prompt'\], but the model has"),
        ("integer_tensor", file_with_tensors(loaded, prompt=np.zeros((3, 8), "int32")), PromptFileError, r"prompt holds int32 values; a prompt file holds floating-point tensors"),
        ("other_kind", lm_file, PromptFileError, r"holds a causal_lm prompt, not a classifier one"),
        ("other_backbone", other, PromptFileError, r"was trained on another backbone"),
        ("other_num_tokens", longer, ValueError, r"has num_tokens, placement, pooling = \(4, 'after_first', 'mean'\), but the bank's are \(3"),
    ]  # fmt: skip


def test_a_refused_prompt_file_leaves_the_bank_as_it_was_and_can_be_retried(tmp_path):
    backbone = tiny_bert()
    tasks = {"shallow": _trained(backbone, 2, 1), "prefix": _trained(backbone, 2, 2, deep="prefix")}
    _, _, bank = _bank_of(backbone, tasks)
    good = save_prompts(_trained(backbone, 2, 3), str(tmp_path / "good.safetensors"), label_names=["n", "p"])
    for case, source, error, message in _refused_files(tmp_path, backbone, good):
        before = bank_state(bank)
        with pytest.raises(error, match=message):
            bank.add_prompt_file("new", source)
        assert_bank_unchanged(bank, before, {**bert_inputs(), "task_id": np.array([1, 0])}, tmp_path / case)
    for name in ("shallow", "a/b"):  # a bad name is refused before the file is used
        before = bank_state(bank)
        with pytest.raises(ValueError, match="already has a task 'shallow'|without '/'"):
            bank.add_prompt_file(name, good)
        assert_bank_unchanged(bank, before, {**bert_inputs(), "task_id": np.array([1, 0])}, tmp_path / "names")
    assert bank.add_prompt_file("new", good) == 2  # the retry: the refused attempts left no task behind
    assert bank.tasks[2] == {"name": "new", "num_classes": 2, "label_names": ["n", "p"], "deep": False}
    expected = _np(PromptTextClassifier.from_prompt_file(good, backbone)(bert_inputs()))
    np.testing.assert_allclose(_np(bank({**bert_inputs(), "task_id": np.array([2, 2])})), expected, atol=1e-6)
    assert_keras_save_load_parity(bank, {**bert_inputs(), "task_id": np.array([2, 1])}, tmp_path, atol=1e-6)


def test_a_refused_classifier_leaves_the_bank_as_it_was(setup, tmp_path):
    backbone, tasks, bank = setup
    diverged = _trained(backbone, 2, 7)
    diverged.head.bias.assign(np.array([np.nan, 0.0], "float32"))
    cases = [
        ("new", diverged, r"Classifier 'new' not added to the bank: 'head/bias' has 1 non-finite value \(NaN or infinity\) of 2"),
        ("new", PromptTextClassifier(tiny_bert(), 2, num_tokens=3), r"trained on another backbone"),
        ("new", PromptTextClassifier(backbone, 2, num_tokens=5), r"has num_tokens, placement, pooling = \(5"),
        ("topic", tasks["topic"], r"already has a task 'topic'"),
    ]
    for i, (name, classifier, message) in enumerate(cases):
        before = bank_state(bank)
        with pytest.raises(ValueError, match=message):
            bank.add_classifier(name, classifier)
        assert_bank_unchanged(bank, before, {**bert_inputs(), "task_id": np.array([2, 0])}, tmp_path / str(i))
    healthy = _trained(backbone, 2, 8)
    assert bank.add_classifier("new", healthy) == 3
    np.testing.assert_allclose(_np(bank({**bert_inputs(), "task_id": np.array([3, 3])}))[:, :2], _np(healthy(bert_inputs())), atol=1e-6)


def test_a_classifier_brings_its_label_names():
    backbone = tiny_bert()
    bank = PromptBank(backbone, num_tokens=3)
    named = PromptTextClassifier(backbone, 2, num_tokens=3, label_names=["bad", "good"])
    bank.add_classifier("named", named)
    bank.add_classifier("renamed", named, label_names=["neg", "pos"])
    assert [t["label_names"] for t in bank.tasks[-2:]] == [["bad", "good"], ["neg", "pos"]]
