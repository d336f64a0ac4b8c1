"""Placement "append": the prompt after each row's text. On causal decoders
the text is read once, without a gradient, and only the prompt's positions
run (`read_inputs`, `call_from_cache`); that equals the plain model on the
text followed by real tokens, and the uncached appended graph in values and
gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_bert, tiny_gemma3_lm, tiny_gpt2_lm, tiny_opt_lm

import tf_prompt_tuning as tpt
from tf_prompt_tuning.backbones.pooling import pool

DECODERS = {"gpt2": tiny_gpt2_lm, "opt": tiny_opt_lm, "gemma3": tiny_gemma3_lm}
TEXTS = [[5, 6, 7, 8, 9, 10], [11, 12, 13, 14], [15]]
APPENDED = [21, 22, 23]


def _batch(rows, side, width=None):
    width = width or max(map(len, rows))
    ids = np.zeros((len(rows), width), "int32")
    mask = np.zeros((len(rows), width), "int32")
    for i, row in enumerate(rows):
        where = slice(0, len(row)) if side == "right" else slice(width - len(row), width)
        ids[i, where], mask[i, where] = row, 1
    return {"token_ids": ids, "padding_mask": mask}


def _token_rows(backbone, tokens):
    return keras.ops.convert_to_numpy(backbone.token_embedding(np.array(tokens)))


def _appended_and_plain(backbone, **kwargs):
    """A classifier whose appended prompt is the embeddings of APPENDED, and
    the head-only classifier with the same head, for the text + APPENDED."""
    appended = tpt.PromptTextClassifier(
        backbone, 3, num_tokens=3, placement="append", pooling="last",
        prompt_initializer=_token_rows(backbone, APPENDED), **kwargs,
    )  # fmt: skip
    plain = tpt.PromptTextClassifier(backbone, 3, num_tokens=0, pooling="last")
    rng = np.random.default_rng(0)
    for variable in appended.head.weights:
        variable.assign(rng.normal(size=variable.shape))
    for mine, theirs in zip(plain.head.weights, appended.head.weights):
        mine.assign(theirs)
    return appended, plain


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("family", sorted(DECODERS))
def test_an_appended_prompt_of_token_embeddings_is_the_plain_model_on_text_then_tokens(family, side):
    appended, plain = _appended_and_plain(DECODERS[family]())
    assert appended.decoder is not None
    # Real tokens take positions 0, 1, ... on either padding side; KerasHub's
    # graph numbers slots, so its reference is right-padded.
    expected = plain(_batch([row + APPENDED for row in TEXTS], "right"))
    actual = appended(_batch(TEXTS, side))
    np.testing.assert_allclose(actual, expected, atol=1e-5)
    # The same from a cache read once and reused.
    cache = appended.read_inputs(_batch(TEXTS, side))
    np.testing.assert_allclose(appended.call_from_cache(cache), expected, atol=1e-5)


# Not OPT: its graph embeds tokens and positions in one layer, so there the
# graph's prompt gets no positions while the decoder's does (the decoder-level
# test in test_causal_decoder.py covers OPT's gradients).
@pytest.mark.parametrize("deep", [False, "hidden"])
@pytest.mark.parametrize("family", ["gpt2", "gemma3"])
def test_the_cached_path_has_the_gradients_of_the_uncached_graph(family, deep):
    # `encoder` is the whole appended sequence through the backbone's own
    # graph, with a gradient through every position (deep prompts: added
    # after each row's text before every layer).
    model = tpt.PromptTextClassifier(
        DECODERS[family](), 3, num_tokens=3, placement="append", pooling="last", seed=0, deep=deep
    )
    inputs = _batch(TEXTS, "right")
    labels = np.array([0, 2, 1])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def uncached():
        encoded = model.encoder(inputs)
        return model.head(pool(encoded["sequence_output"], encoded["padding_mask"], "last"))

    results = []
    for forward in (uncached, lambda: model(inputs)):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, forward())
        results.append([g.numpy() for g in tape.gradient(loss, model.trainable_variables)])
    prompts = [model.prompt.prompt] + ([model.prompt.deep_prompts] if deep else [])
    assert [v.path for v in model.trainable_variables] == [v.path for v in prompts + model.head.weights]
    for cached, whole in zip(results[1], results[0]):
        # Every layer's prompt reaches the loss (overwritten, not added to, all
        # but the last layer's would get no gradient: the text never reads them).
        assert np.all(np.abs(whole).reshape(len(whole), -1).max(axis=1) > 0)
        np.testing.assert_allclose(cached, whole, atol=1e-5 * max(1.0, np.abs(whole).max()))


@pytest.mark.parametrize("family", sorted(DECODERS))
def test_appended_deep_prompts_from_hidden_states_start_as_the_shallow_prompt(family):
    backbone = DECODERS[family]()
    shallow = tpt.PromptTextClassifier(backbone, 3, num_tokens=3, placement="append", pooling="last", seed=4)
    deep = tpt.PromptTextClassifier(
        backbone, 3, num_tokens=3, placement="append", pooling="last", seed=4, deep="hidden",
        deep_initializer="hidden_states",
    )  # fmt: skip
    np.testing.assert_array_equal(deep.prompt.deep_prompts.numpy(), 0.0)
    for mine, theirs in zip(deep.head.weights + [deep.prompt.prompt], shallow.head.weights + [shallow.prompt.prompt]):
        mine.assign(theirs)
    inputs = _batch(TEXTS, "left")
    np.testing.assert_allclose(deep(inputs), shallow(inputs), atol=1e-6)
    # (Not a constant: pre-norm layers would cancel it.)
    deep.prompt.deep_prompts.assign(np.random.default_rng(0).normal(size=deep.prompt.deep_prompts.shape))
    assert not np.allclose(deep(inputs), shallow(inputs), atol=1e-3)


@pytest.mark.parametrize("deep", [False, "hidden"])
def test_appended_training_moves_only_the_prompt_and_head(deep):
    backbone = tiny_gemma3_lm()
    model = tpt.PromptTextClassifier(backbone, 2, num_tokens=3, placement="append", pooling="last", seed=0, deep=deep)
    frozen = [w.numpy().copy() for w in backbone.weights]
    prompt = (model.prompt.deep_prompts if deep else model.prompt.prompt).numpy().copy()
    step = tpt.make_train_step(model, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                               optimizer=keras.optimizers.Adam(0.05))
    inputs = _batch(TEXTS, "right")
    losses = [float(step(inputs, np.array([0, 1, 1]))) for _ in range(15)]
    assert losses[-1] < losses[0]
    assert not np.allclose((model.prompt.deep_prompts if deep else model.prompt.prompt).numpy(), prompt)
    for before, after in zip(frozen, backbone.weights):
        np.testing.assert_array_equal(before, after.numpy())


def test_an_encoder_puts_the_prompt_after_the_text():
    # No cache on an encoder (every position sees the prompt): the prompt
    # simply sits after each row's last real token, padding after it.
    backbone = tiny_bert()
    rows = [[2, 5, 6, 3], [2, 7, 3]]
    appended = tpt.PromptTextClassifier(backbone, 2, num_tokens=2, placement="append",
                                        prompt_initializer=_token_rows(backbone, [8, 9]))
    plain = tpt.PromptTextClassifier(backbone, 2, num_tokens=0)
    for mine, theirs in zip(plain.head.weights, appended.head.weights):
        mine.assign(theirs)
    assert appended.decoder is None
    inputs = _batch(rows, "right")
    expected = plain(_batch([row + [8, 9] for row in rows], "right"))
    np.testing.assert_allclose(appended(inputs), expected, atol=1e-5)


def test_an_appended_prompt_file_round_trip(tmp_path):
    backbone = tiny_gpt2_lm()
    model = tpt.PromptTextClassifier(backbone, 2, num_tokens=3, placement="append", pooling="last", seed=3)
    path = tpt.save_prompts(model, str(tmp_path / "task.safetensors"))
    restored = tpt.PromptTextClassifier.from_prompt_file(path, backbone)
    assert restored.placement == "append" and restored.decoder is not None
    np.testing.assert_allclose(restored(_batch(TEXTS, "left")), model(_batch(TEXTS, "left")), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(pooling="mean"), r"must read the last prompt position. Received: pooling='mean' with placement='append'. Use pooling='last'"),
    ],
    ids=["mean_pooling"],
)
def test_appended_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tpt.PromptTextClassifier(tiny_gpt2_lm(), 2, num_tokens=3, placement="append", **kwargs)


def test_read_inputs_needs_an_appended_prompt_on_a_decoder():
    model = tpt.PromptTextClassifier(tiny_gpt2_lm(), 2, num_tokens=3, placement="prepend", pooling="last")
    with pytest.raises(ValueError, match=r"Received: a classifier with placement='prepend' on GPT2Backbone"):
        model.read_inputs(_batch(TEXTS, "right"))


def test_a_training_step_takes_the_cache_read_once():
    # Read once (e.g. before every epoch), then every step runs the prompt only.
    model = tpt.PromptTextClassifier(tiny_gemma3_lm(), 2, num_tokens=3, placement="append", pooling="last", seed=0)
    twin = tpt.PromptTextClassifier(tiny_gemma3_lm(), 2, num_tokens=3, placement="append", pooling="last", seed=0)
    for mine, theirs in zip(twin.trainable_variables, model.trainable_variables):
        mine.assign(theirs)
    inputs, labels = _batch(TEXTS, "right"), np.array([0, 1, 1])
    cache = model.read_inputs(inputs)
    steps = [
        tpt.make_train_step(m, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                            optimizer=keras.optimizers.Adam(0.05))
        for m in (model, twin)
    ]
    for _ in range(3):
        from_cache, from_tokens = float(steps[0](cache, labels)), float(steps[1](inputs, labels))
        np.testing.assert_allclose(from_cache, from_tokens, rtol=1e-5)
    np.testing.assert_allclose(model.prompt.prompt.numpy(), twin.prompt.prompt.numpy(), atol=1e-5)


# PromptCausalLM: [input, P, continuation].

def _lm(family, **kwargs):
    backbone = DECODERS[family]()
    return tpt.PromptCausalLM(backbone, num_tokens=3, placement="append",
                              prompt_initializer=_token_rows(backbone, APPENDED), **kwargs)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("family", sorted(DECODERS))
def test_appended_lm_logits_and_greedy_tokens_are_the_plain_models(family, side):
    lm = _lm(family)
    plain = tpt.PromptCausalLM(lm.backbone, num_tokens=0)
    inputs = _batch(TEXTS, side)
    logits = keras.ops.convert_to_numpy(lm(inputs))
    whole = _batch([row + APPENDED for row in TEXTS], "right")
    expected = keras.ops.convert_to_numpy(plain(whole))
    for i, row in enumerate(TEXTS):
        real = np.flatnonzero(inputs["padding_mask"][i])
        # Before the prompt: the frozen model's predictions; at the last input
        # token: the prediction after the prompt (the plain model's after the tokens).
        np.testing.assert_allclose(logits[i, real[:-1]], expected[i, : len(row) - 1], atol=1e-4)
        np.testing.assert_allclose(logits[i, real[-1]], expected[i, len(row) + 2], atol=1e-4)
    # Generation continues after the prompt, as the plain model after the tokens.
    generated = lm.generate(inputs["token_ids"], inputs["padding_mask"], 4, jit_compile=False)["token_ids"]
    reference = plain.generate(whole["token_ids"], whole["padding_mask"], 4, jit_compile=False)["token_ids"]
    np.testing.assert_array_equal(generated, reference)


@pytest.mark.parametrize("family", sorted(DECODERS))
def test_appended_lm_trains_on_targets_after_the_prompt(family):
    # `causal_lm_batch` with a target mask: the prompt goes between input and targets.
    lm = _lm(family)
    plain = tpt.PromptCausalLM(lm.backbone, num_tokens=0)
    rows, targets = [[5, 6, 7], [8, 9]], [[30, 31], [32, 33, 34]]
    joined = _batch([r + t for r, t in zip(rows, targets)], "right")
    target_mask = np.zeros_like(joined["padding_mask"])
    for i, row in enumerate(rows):
        target_mask[i, len(row): len(row) + len(targets[i])] = 1
    x, y, weights = tpt.causal_lm_batch(joined["token_ids"], joined["padding_mask"], target_mask)
    logits = keras.ops.convert_to_numpy(lm({**x, "target_mask": target_mask}))
    expected = keras.ops.convert_to_numpy(plain(_batch([r + APPENDED + t for r, t in zip(rows, targets)], "right")))
    for i, row in enumerate(rows):
        # The predictions of each target token: after the prompt, and after each target.
        for j in range(len(targets[i])):
            np.testing.assert_allclose(logits[i, len(row) - 1 + j], expected[i, len(row) + 2 + j], atol=1e-4)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    step = tpt.make_train_step(lm, loss=loss_fn, optimizer=keras.optimizers.Adam(0.05))
    frozen = [w.numpy().copy() for w in lm.backbone.weights]
    batch = {**x, "target_mask": target_mask}
    losses = [float(step(batch, y, weights)) for _ in range(10)]
    assert losses[-1] < losses[0]
    for before, after in zip(frozen, lm.backbone.weights):
        np.testing.assert_array_equal(before, after.numpy())


def test_appended_lm_prompt_file_and_config_round_trip(tmp_path):
    lm = _lm("gemma3")
    path = tpt.save_prompts(lm, str(tmp_path / "lm.safetensors"))
    restored = tpt.PromptCausalLM.from_prompt_file(path, lm.backbone)
    assert restored.placement == "append"
    inputs = _batch(TEXTS, "left")
    np.testing.assert_allclose(restored(inputs), lm(inputs), atol=1e-6)
    clone = tpt.PromptCausalLM.from_config(lm.get_config())
    assert clone.placement == "append"


@pytest.mark.parametrize("family", ["gpt2", "gemma3"])
def test_next_token_logits_from_a_cache_are_the_appended_lms(family):
    lm = _lm(family)
    inputs = _batch(TEXTS, "left")
    logits = keras.ops.convert_to_numpy(lm(inputs))
    ends = inputs["padding_mask"].shape[1] - 1  # left padding: every row ends in the last slot
    expected = logits[:, ends]
    np.testing.assert_allclose(lm.next_token_logits(inputs), expected, atol=1e-5)
    np.testing.assert_allclose(lm.next_token_logits(lm.read_inputs(inputs)), expected, atol=1e-5)
    right = _batch(TEXTS, "right")
    last = right["padding_mask"].sum(1) - 1
    np.testing.assert_allclose(
        lm.next_token_logits(right), keras.ops.convert_to_numpy(lm(right))[np.arange(3), last], atol=1e-5
    )


def test_read_inputs_of_an_lm_needs_an_appended_prompt():
    lm = tpt.PromptCausalLM(tiny_gpt2_lm(), num_tokens=2)
    with pytest.raises(ValueError, match=r"Received: a PromptCausalLM with placement='prepend' and num_tokens=2"):
        lm.read_inputs(_batch(TEXTS, "right"))


def test_appended_lm_errors():
    with pytest.raises(ValueError, match=r"`placement` must be one of \('prepend', 'append'\). Received: placement='after_first'"):
        tpt.PromptCausalLM(tiny_gpt2_lm(), num_tokens=2, placement="after_first")


# Deep prompts of a PromptCausalLM: each layer's prompt added to the appended prompt's states.

def _deep_lm_and_classifier(family):
    """A deep appended LM and a deep appended classifier with the same,
    nonzero, prompts: the classifier's `encoder` runs them through the
    backbone's own graph (`DeepPromptLayer`), an independent reference."""
    backbone = DECODERS[family]()
    classifier = tpt.PromptTextClassifier(
        backbone, 3, num_tokens=3, placement="append", pooling="last", deep="hidden", seed=0
    )
    classifier.prompt.deep_prompts.assign(np.random.default_rng(0).normal(size=classifier.prompt.deep_prompts.shape))
    lm = tpt.PromptCausalLM(backbone, num_tokens=3, placement="append", deep=True)
    lm.prompt.prompt.assign(classifier.prompt.prompt)
    lm.prompt.deep_prompts.assign(classifier.prompt.deep_prompts)
    return lm, classifier


# Not OPT: its graph embeds tokens and positions in one layer (see above).
@pytest.mark.parametrize("family", ["gpt2", "gemma3"])
def test_appended_deep_lm_is_the_backbones_graph_with_deep_prompts(family):
    lm, classifier = _deep_lm_and_classifier(family)
    inputs = _batch(TEXTS, "right")
    encoded = classifier.encoder(inputs)
    expected = keras.ops.convert_to_numpy(
        lm.decoder.logits(pool(encoded["sequence_output"], encoded["padding_mask"], "last"))
    )
    np.testing.assert_allclose(lm.next_token_logits(inputs), expected, atol=1e-4)
    np.testing.assert_allclose(lm.next_token_logits(lm.read_inputs(inputs)), expected, atol=1e-4)
    shallow = tpt.PromptCausalLM(lm.backbone, num_tokens=3, placement="append", prompt_initializer="zeros")
    shallow.prompt.prompt.assign(lm.prompt.prompt)
    assert not np.allclose(shallow.next_token_logits(inputs), expected, atol=1e-3)  # the deep prompts act
    # Generation: the prefill adds the deep prompts, the new tokens (after the prompt) do not.
    generated = lm.generate(inputs["token_ids"], inputs["padding_mask"], 4, jit_compile=False)["token_ids"]
    np.testing.assert_array_equal(generated[:, 0], expected.argmax(-1))
    # Reference: greedy decoding by calls on [input, P, tokens so far] (`target_mask`).
    rows = [list(row) for row in generated[:, :1]]
    for _ in range(3):
        joined = _batch([text + row for text, row in zip(TEXTS, rows)], "right")
        targets = np.zeros_like(joined["padding_mask"])
        for i, text in enumerate(TEXTS):
            targets[i, len(text) : len(text) + len(rows[i])] = 1
        logits = keras.ops.convert_to_numpy(lm({**joined, "target_mask": targets}))
        for i, text in enumerate(TEXTS):
            rows[i].append(int(logits[i, len(text) + len(rows[i]) - 1].argmax()))
    np.testing.assert_array_equal(generated, np.array(rows))


@pytest.mark.parametrize("family", ["gpt2", "gemma3"])
def test_every_deep_lm_prompt_trains_from_the_cache(family):
    lm, _ = _deep_lm_and_classifier(family)
    inputs = _batch(TEXTS, "left")
    cache = lm.read_inputs(inputs)
    labels = np.array([3, 4, 5])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    gradients = []
    for forward in (lambda: lm.next_token_logits(inputs), lambda: lm.next_token_logits(cache)):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, forward())
        gradients.append([g.numpy() for g in tape.gradient(loss, lm.trainable_variables)])
    assert [v.path for v in lm.trainable_variables] == [lm.prompt.prompt.path, lm.prompt.deep_prompts.path]
    for cached, whole in zip(gradients[1], gradients[0]):
        # Every layer's prompt reaches the loss.
        assert np.all(np.abs(cached).reshape(len(cached), -1).max(axis=1) > 0)
        np.testing.assert_allclose(cached, whole, atol=1e-5 * max(1.0, np.abs(whole).max()))


def test_deep_lm_prompts_start_at_zero_as_the_shallow_prompt():
    backbone = tiny_gemma3_lm()
    deep = tpt.PromptCausalLM(backbone, num_tokens=3, placement="append", deep=True, seed=2)
    shallow = tpt.PromptCausalLM(backbone, num_tokens=3, placement="append", seed=2)
    np.testing.assert_array_equal(deep.prompt.deep_prompts.numpy(), 0.0)
    np.testing.assert_array_equal(deep.prompt.prompt.numpy(), shallow.prompt.prompt.numpy())
    inputs = _batch(TEXTS, "left")
    np.testing.assert_allclose(deep.next_token_logits(inputs), shallow.next_token_logits(inputs), atol=1e-6)


def test_deep_lm_prompt_file_config_and_keras_round_trip(tmp_path):
    from conftest import assert_keras_save_load_parity

    lm, _ = _deep_lm_and_classifier("gemma3")
    path = tpt.save_prompts(lm, str(tmp_path / "deep.safetensors"))
    loaded = tpt.load_prompts(path)
    assert loaded.metadata["deep"] is True and loaded.metadata["format_version"] == 3
    assert sorted(loaded.tensors) == ["deep_prompts", "prompt"]
    restored = tpt.PromptCausalLM.from_prompt_file(path, lm.backbone)
    inputs = _batch(TEXTS, "left")
    np.testing.assert_allclose(restored.next_token_logits(inputs), lm.next_token_logits(inputs), atol=1e-6)
    assert tpt.PromptCausalLM.from_config(lm.get_config()).deep is True
    assert_keras_save_load_parity(lm, inputs, tmp_path, atol=1e-6)
    # A shallow file restores no deep LM, and a deep one no shallow LM: each says which settings to use.
    with pytest.raises(tpt.PromptFileError, match=r"holds \['deep_prompts', 'prompt'\], but the model has \['prompt'\]"):
        tpt.restore_prompts(tpt.PromptCausalLM(lm.backbone, num_tokens=3, placement="append"), path)
    shallow = tpt.save_prompts(tpt.PromptCausalLM(lm.backbone, num_tokens=3, placement="append"), str(tmp_path / "s.safetensors"))
    with pytest.raises(tpt.PromptFileError, match=r"holds \['prompt'\], but the model has \['deep_prompts', 'prompt'\]"):
        tpt.restore_prompts(lm, shallow)


def test_deep_lm_errors(tmp_path):
    backbone = tiny_gpt2_lm()
    fix = r"Use placement='append' and num_tokens >= 1, or deep=False"
    with pytest.raises(ValueError, match=r"Received: deep=True with placement='prepend' and num_tokens=3. " + fix):
        tpt.PromptCausalLM(backbone, num_tokens=3, deep=True)
    with pytest.raises(ValueError, match=r"with placement='append' and num_tokens=0. " + fix):
        tpt.PromptCausalLM(backbone, num_tokens=0, placement="append", deep=True)
    with pytest.raises(TypeError, match=r"`deep` must be True or False. Received: deep='yes'"):
        tpt.PromptCausalLM(backbone, num_tokens=3, placement="append", deep="yes")
    # An LM bank holds one input-level prompt a task.
    lm = tpt.PromptCausalLM(backbone, num_tokens=3, placement="append", deep=True)
    bank = tpt.PromptCausalLMBank(backbone, num_tokens=3, placement="append")
    serve_alone = r"Serve it as its own PromptCausalLM \(from_prompt_file\), or train a shallow prompt"
    with pytest.raises(ValueError, match=r"Task 'a' cannot serve deep prompts.*Received: a PromptCausalLM with deep=True. " + serve_alone):
        bank.add_lm("a", lm)
    path = tpt.save_prompts(lm, str(tmp_path / "deep.safetensors"))
    with pytest.raises(ValueError, match=r"cannot serve deep prompts.*Received: a deep prompt file. " + serve_alone):
        bank.add_prompt_file("a", path)
    assert bank.tasks == []
    with pytest.raises(ValueError, match=r"A PromptCausalLMBank cannot serve deep prompts.*Received: deep=True"):
        tpt.PromptCausalLMBank(backbone, num_tokens=3, placement="append", deep=True)


def _appended_classifiers(backbone):
    shallow = tpt.PromptTextClassifier(backbone, 2, num_tokens=3, placement="append", pooling="last", seed=1)
    deep = tpt.PromptTextClassifier(backbone, 3, num_tokens=3, placement="append", pooling="last", seed=2, deep="hidden")
    for model in (shallow, deep):
        for variable in model.head.weights:
            variable.assign(np.random.default_rng(len(variable.path)).normal(size=variable.shape))
    return shallow, deep


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("family", ["gpt2", "gemma3"])
def test_an_appended_bank_gives_each_example_what_its_task_alone_gives(family, side, tmp_path):
    backbone = DECODERS[family]()
    shallow, deep = _appended_classifiers(backbone)
    bank = tpt.PromptBank(backbone, num_tokens=3, placement="append", pooling="last")
    assert bank.add_classifier("shallow", shallow) == 0
    assert bank.add_prompt_file("deep", tpt.save_prompts(deep, str(tmp_path / "deep.safetensors"))) == 1
    inputs = _batch(TEXTS, side)
    alone = [keras.ops.convert_to_numpy(model(inputs)) for model in (shallow, deep)]
    mixed = bank(dict(inputs, task_id=np.array([1, 0, 1])))
    expected = [alone[1][0], np.r_[alone[0][1], -1e9], alone[1][2]]
    np.testing.assert_allclose(mixed, expected, atol=1e-5)
    # Every task for every input, from one read of the inputs.
    every = keras.ops.convert_to_numpy(bank.call_tasks(inputs, ["deep", "shallow"]))
    assert every.shape == (3, 2, 3)
    np.testing.assert_allclose(every[:, 0], alone[1], atol=1e-5)
    np.testing.assert_allclose(every[:, 1, :2], alone[0], atol=1e-5)
    clone = tpt.PromptBank.from_config(bank.get_config())
    assert clone.placement == "append" and clone.task_names == ["shallow", "deep"]


def test_call_tasks_on_a_prepended_bank_repeats_the_batch_per_task():
    backbone = tiny_bert()
    bank = tpt.PromptBank(backbone, num_tokens=2)
    for name in ("a", "b"):
        bank.add_task(name, num_classes=2, prompt_initializer="uniform")
    inputs = _batch([[2, 5, 6, 3], [2, 7, 3]], "right")
    every = bank.call_tasks(inputs, ["b", "a"])
    for column, task in enumerate((1, 0)):
        np.testing.assert_allclose(every[:, column], bank(dict(inputs, task_id=np.array([task, task]))), atol=1e-6)


def test_appended_bank_errors():
    with pytest.raises(ValueError, match=r"needs a causal decoder .* Received: placement='append' on BertBackbone"):
        tpt.PromptBank(tiny_bert(), num_tokens=2, placement="append")
    with pytest.raises(ValueError, match=r"Received: pooling='mean' with placement='append'. Use pooling='last'"):
        tpt.PromptBank(tiny_gpt2_lm(), num_tokens=2, placement="append")
    bank = tpt.PromptBank(tiny_gpt2_lm(), num_tokens=2, placement="append", pooling="last")
    with pytest.raises(ValueError, match=r"The bank has no tasks"):
        bank.call_tasks(_batch(TEXTS, "right"), ["a"])
    bank.add_task("a", num_classes=2)
    with pytest.raises(ValueError, match=r"`task_names` must be a non-empty list of task names. Received: task_names='a'"):
        bank.call_tasks(_batch(TEXTS, "right"), "a")
    with pytest.raises(KeyError, match=r"No task 'b' in the bank"):
        bank.call_tasks(_batch(TEXTS, "right"), ["b"])
    with pytest.raises(ValueError, match=r"Received: a call of a PromptBankLayer with placement='append'"):
        bank.prompts(np.zeros((1, 2, bank.hidden_dim), "float32"), task_id=np.array([0]))


@pytest.mark.parametrize("family", ["gpt2", "gemma3"])
def test_an_appended_lm_bank_serves_each_row_as_its_task_alone(family, tmp_path):
    first = _lm(family)
    second = tpt.PromptCausalLM(first.backbone, num_tokens=3, placement="append", seed=5)
    bank = tpt.PromptCausalLMBank(first.backbone, num_tokens=3, placement="append")
    bank.add_lm("first", first)
    bank.add_prompt_file("second", tpt.save_prompts(second, str(tmp_path / "second.safetensors")))
    inputs = _batch(TEXTS, "left")
    task_id = np.array([1, 0, 1])
    mixed = keras.ops.convert_to_numpy(bank(dict(inputs, task_id=task_id)))
    alone = [keras.ops.convert_to_numpy(lm(inputs)) for lm in (first, second)]
    for row, task in enumerate(task_id):
        np.testing.assert_allclose(mixed[row], alone[task][row], atol=1e-5)
    generated = bank.generate(inputs["token_ids"], inputs["padding_mask"], 4, task_id=task_id, jit_compile=False)
    for row, task in enumerate(task_id):
        own = (first, second)[task].generate(inputs["token_ids"], inputs["padding_mask"], 4, jit_compile=False)
        np.testing.assert_array_equal(generated["token_ids"][row], own["token_ids"][row])
    assert tpt.PromptCausalLMBank.from_config(bank.get_config()).placement == "append"


def test_an_lm_bank_takes_tasks_of_its_own_placement_only(tmp_path):
    lm = _lm("gpt2")
    bank = tpt.PromptCausalLMBank(lm.backbone, num_tokens=3)
    with pytest.raises(ValueError, match=r"Task 'a' has placement='append', but the bank serves placement='prepend'"):
        bank.add_lm("a", lm)
    path = tpt.save_prompts(lm, str(tmp_path / "lm.safetensors"))
    with pytest.raises(ValueError, match=r"has placement='append', but the bank serves placement='prepend'. Tasks in one bank"):
        bank.add_prompt_file("a", path)
    assert bank.tasks == []
    appended = tpt.PromptCausalLMBank(lm.backbone, num_tokens=3, placement="append")
    with pytest.raises(ValueError, match=r"Task 'b' has placement='prepend', but the bank serves placement='append'"):
        appended.add_lm("b", tpt.PromptCausalLM(lm.backbone, num_tokens=3))
