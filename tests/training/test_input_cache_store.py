"""`InputCacheStore`: inputs read once by an appended-prompt model, kept in
memory or memory-mapped, batched again every epoch; batches from it give the
logits and gradients of the model on the tokens."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_gemma3_lm, tiny_gpt2_lm

import tf_prompt_tuning as tpt

ROWS = [[5, 6, 7, 8, 9, 10], [11, 12, 13, 14], [15], [16, 17], [18, 19, 20], [21, 22, 23, 24, 25]]
LABELS = np.array([0, 1, 1, 0, 1, 0], "int32")


def _batches(rows, labels, batch_size=4):
    out = []
    for first in range(0, len(rows), batch_size):
        part = rows[first : first + batch_size]
        width = max(map(len, part))
        ids = np.zeros((len(part), width), "int32")
        mask = np.zeros_like(ids)
        for i, row in enumerate(part):
            ids[i, : len(row)], mask[i, : len(row)] = row, 1
        out.append(({"token_ids": ids, "padding_mask": mask}, labels[first : first + batch_size]))
    return out


def _model(make=tiny_gemma3_lm):
    return tpt.PromptTextClassifier(make(), 2, num_tokens=3, placement="append", pooling="last", seed=0)


def _direct_logits(model, indices):
    (x, _), = _batches([ROWS[i] for i in indices], LABELS[indices], batch_size=len(indices))
    return keras.ops.convert_to_numpy(model(x))


@pytest.mark.parametrize("make", [tiny_gemma3_lm, tiny_gpt2_lm], ids=["gemma3", "gpt2"])
def test_batches_from_the_store_give_the_models_logits(make):
    model = _model(make)
    with tpt.InputCacheStore.read(model, _batches(ROWS, LABELS)) as store:
        assert (store.num_examples, store.num_tokens) == (6, sum(map(len, ROWS)))
        assert not store.spilled
        seen = []
        for cache, labels in store.dataset(batch_size=4, shuffle=True, seed=1):
            logits = keras.ops.convert_to_numpy(model(cache))
            # Which rows: the labels and lengths identify them in this data.
            lengths = cache.lengths.numpy()
            indices = [next(i for i, r in enumerate(ROWS) if len(r) == n) for n in lengths]
            np.testing.assert_array_equal(labels.numpy(), LABELS[indices])
            np.testing.assert_allclose(logits, _direct_logits(model, indices), atol=1e-5)
            seen += indices
        assert sorted(seen) == list(range(6))


def test_every_iteration_is_a_new_seeded_order():
    model = _model()
    with tpt.InputCacheStore.read(model, _batches(ROWS, LABELS)) as store:
        dataset = store.dataset(batch_size=2, shuffle=True, seed=0)
        orders = [tuple(int(n) for c, _ in dataset for n in c.lengths.numpy()) for _ in range(3)]
        assert len(set(orders)) > 1 and all(sorted(o) == sorted(map(len, ROWS)) for o in orders)
        again = store.dataset(batch_size=2, shuffle=True, seed=0)
        assert tuple(int(n) for c, _ in again for n in c.lengths.numpy()) == orders[0]


def test_past_the_budget_the_store_spills_to_a_memory_mapped_file_removed_at_close(tmp_path):
    model = _model()
    with tpt.InputCacheStore.read(model, _batches(ROWS, LABELS)) as in_memory:
        bytes_per_token = in_memory.bytes_per_token
        expected = [keras.ops.convert_to_numpy(model(c)) for c, _ in in_memory.dataset(batch_size=6)]
    store = tpt.InputCacheStore.read(model, _batches(ROWS, LABELS), budget_bytes=8 * bytes_per_token,
                                     directory=str(tmp_path))
    assert store.spilled and len(os.listdir(tmp_path)) == 1
    actual = [keras.ops.convert_to_numpy(model(c)) for c, _ in store.dataset(batch_size=6)]
    np.testing.assert_allclose(actual, expected, atol=1e-6)
    store.close()
    assert os.listdir(tmp_path) == []


def test_bfloat16_storage_keeps_gradients_within_3e3():
    # The 1e-3 bar is not met (1.9e-3 of the largest gradient measured on
    # this test model), so float32 stays the default and the docs say so.
    model = _model()
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    gradients = {}
    for dtype in ("float32", "bfloat16"):
        with tpt.InputCacheStore.read(model, _batches(ROWS, LABELS), storage_dtype=dtype) as store:
            assert store.bytes_per_token == (4 if dtype == "float32" else 2) * 6 * 2 * 1 * 16
            (cache, labels), = store.dataset(batch_size=6)
            with tf.GradientTape() as tape:
                loss = loss_fn(labels, model(cache))
            gradients[dtype] = [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]
    for full, half in zip(gradients["float32"], gradients["bfloat16"]):
        np.testing.assert_allclose(half, full, atol=3e-3 * np.abs(full).max())


def test_training_from_the_store_moves_the_prompt_and_matches_token_steps():
    model, twin = _model(), _model()
    for mine, theirs in zip(twin.trainable_variables, model.trainable_variables):
        mine.assign(theirs)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tpt.InputCacheStore.read(model, _batches(ROWS, LABELS)) as store:
        history = tpt.train(model, store.dataset(batch_size=6), loss=loss, optimizer=keras.optimizers.Adam(0.01),
                            epochs=5, verbose=0)
    tpt.train(twin, tf.data.Dataset.from_tensors(_batches(ROWS, LABELS, batch_size=6)[0]), loss=loss,
              optimizer=keras.optimizers.Adam(0.01), epochs=5, verbose=0)
    assert history.epoch_losses[-1] < history.epoch_losses[0]
    np.testing.assert_allclose(model.prompt.prompt.numpy(), twin.prompt.prompt.numpy(), atol=1e-4)


@pytest.mark.parametrize(
    "make, kwargs, error, match",
    [
        (lambda: tpt.PromptTextClassifier(tiny_gpt2_lm(), 2, num_tokens=3, placement="prepend", pooling="last"), {},
         ValueError, r"`read_inputs` reads the input of an appended prompt"),
        (lambda: tpt.PromptCausalLM(tiny_gpt2_lm(), num_tokens=3), {}, ValueError,
         r"`read_inputs` reads the inputs of an appended prompt.*Received: a PromptCausalLM with placement='prepend'"),
        (_model, {"budget_bytes": 100}, ValueError,
         r"`budget_bytes` \(100\) is smaller than one input of 6 tokens .* pass 0 to keep everything in a memory-mapped file"),
        (_model, {"budget_bytes": -1}, ValueError, r"`budget_bytes` must be a non-negative integer. Received: budget_bytes=-1"),
        (_model, {"storage_dtype": "float16"}, ValueError, r"`storage_dtype` must be one of \('float32', 'bfloat16'\)"),
        (lambda: tpt.PromptCausalLMBank(tiny_gpt2_lm(), num_tokens=3), {}, ValueError,
         r"Received: a PromptCausalLMBank with placement='prepend'"),
        (lambda: keras.layers.Dense(2), {}, ValueError,
         r"keeps the inputs of a `PromptTextClassifier` or `PromptCausalLM` with placement='append'.*Received: Dense"),
    ],
    ids=["prepended", "prepended_causal_lm", "budget_below_one_input", "negative_budget", "dtype", "lm_bank", "not_a_task"],
)
def test_bad_arguments_are_refused_before_any_reading(make, kwargs, error, match):
    with pytest.raises(error, match=match):
        tpt.InputCacheStore.read(make(), _batches(ROWS, LABELS), **kwargs)


def _pair():
    model, twin = _model(), _model()
    for mine, theirs in zip(twin.trainable_variables, model.trainable_variables):
        mine.assign(theirs)
    for m in (model, twin):
        m.compile(optimizer=keras.optimizers.Adam(0.01), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, twin


def test_fit_reads_in_memory_inputs_once_for_every_epoch(monkeypatch):
    (x, _), = _batches(ROWS, LABELS, batch_size=6)
    model, twin = _pair()
    reads = []
    read = model.read_inputs
    monkeypatch.setattr(model, "read_inputs", lambda inputs: reads.append(1) or read(inputs))
    model.fit(x, LABELS, batch_size=3, epochs=3, shuffle=False, verbose=0)
    assert len(reads) == 1  # traced once inside the store's read, never in a step
    twin.fit(x, LABELS, batch_size=3, epochs=3, shuffle=False, verbose=0, cache_inputs=False)
    np.testing.assert_allclose(model.prompt.prompt.numpy(), twin.prompt.prompt.numpy(), atol=1e-5)
    assert not np.allclose(model.prompt.prompt.numpy(), _model().prompt.prompt.numpy())


def test_fit_reads_a_dataset_marked_repeatable_once():
    model, twin = _pair()
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(_batches(ROWS, LABELS, batch_size=3)),
        output_signature=({"token_ids": tf.TensorSpec((None, None), tf.int32),
                           "padding_mask": tf.TensorSpec((None, None), tf.int32)}, tf.TensorSpec((None,), tf.int32)),
    ).apply(tf.data.experimental.assert_cardinality(2))  # fmt: skip
    model.fit(dataset, epochs=2, shuffle=False, verbose=0, cache_inputs=True)
    twin.fit(dataset, epochs=2, verbose=0)
    np.testing.assert_allclose(model.prompt.prompt.numpy(), twin.prompt.prompt.numpy(), atol=1e-5)


def test_fit_cache_inputs_needs_an_appended_decoder():
    model = tpt.PromptTextClassifier(tiny_gpt2_lm(), 2, num_tokens=3, placement="prepend", pooling="last")
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    (x, _), = _batches(ROWS, LABELS, batch_size=6)
    with pytest.raises(ValueError, match=r"`cache_inputs=True` reads the inputs of an appended prompt"):
        model.fit(x, LABELS, epochs=2, verbose=0, cache_inputs=True)


def test_models_that_read_their_whole_input_fit_as_keras_does():
    # A PromptCausalLM has a decoder too, but no input cache stands for its inputs.
    lm = tpt.PromptCausalLM(tiny_gpt2_lm(), num_tokens=2)
    assert not lm.reads_inputs_once
    assert not tpt.PromptTextClassifier(tiny_gpt2_lm(), 2, num_tokens=3, placement="prepend", pooling="last").reads_inputs_once
    assert _model().reads_inputs_once
    lm.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y, w = tpt.causal_lm_batch(np.array([[5, 6, 7, 8]] * 2), np.ones((2, 4), "int32"))
    lm.fit(x, y, sample_weight=w, epochs=2, verbose=0)
