"""`causal_decoder`: reading an input once (`read`) and running positions
after it from that cache (`continue_from`) equals running the whole
sequence, in values and in gradients, for every family."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import LM_VOCABULARY, tiny_gemma3_lm, tiny_gpt2_lm, tiny_opt_lm
from keras import ops

from tf_prompt_tuning.backbones.causal_decoder import causal_decoder

FAMILIES = {"gpt2": tiny_gpt2_lm, "opt": tiny_opt_lm, "gemma3": tiny_gemma3_lm}
TEXTS = [[5, 6, 7, 8, 9, 10], [11, 12, 13, 14], [15]]
APPENDED = [21, 22, 23]  # the tokens run after each text


def _batch(rows, side):
    width = max(map(len, rows))
    ids = np.zeros((len(rows), width), "int32")
    mask = np.zeros((len(rows), width), "int32")
    for i, row in enumerate(rows):
        where = slice(0, len(row)) if side == "right" else slice(width - len(row), width)
        ids[i, where], mask[i, where] = row, 1
    return ids, mask


def _plain_hidden(decoder, rows):
    """Each row and the appended tokens run alone, unpadded, in one pass:
    the hidden states of the appended positions."""
    out = []
    for row in rows:
        ids = np.array([row + APPENDED], "int32")
        positions = np.arange(ids.shape[1])[None].astype("int32")
        hidden, _ = decoder.run(decoder.start(decoder.embed_tokens(ids), positions), positions, positions,
                                np.ones_like(ids))
        out.append(ops.convert_to_numpy(hidden)[0, len(row):])
    return np.stack(out)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_positions_after_a_cached_input_equal_the_plain_model(family, side):
    decoder = causal_decoder(FAMILIES[family]())
    ids, mask = _batch(TEXTS, side)
    cache = decoder.read(ids, mask, new_slots=len(APPENDED))
    appended = decoder.embed_tokens(np.array([APPENDED] * len(TEXTS), "int32"))
    hidden, caches = decoder.continue_from(cache, appended)
    expected = _plain_hidden(decoder, TEXTS)
    np.testing.assert_allclose(ops.convert_to_numpy(hidden), expected, atol=2e-5)
    greedy = ops.convert_to_numpy(decoder.logits(hidden)).argmax(-1)
    np.testing.assert_array_equal(greedy, ops.convert_to_numpy(decoder.logits(expected)).argmax(-1))
    assert len(caches) == len(decoder.layers)
    # The slots may also be filled one by one (as generation does).
    first, caches = decoder.continue_from(cache, appended[:, :1])
    rest, _ = decoder.continue_from(
        type(cache)(caches, cache.key_positions, cache.key_mask, cache.lengths, cache.input_slots), appended[:, 1:], 1
    )
    np.testing.assert_allclose(ops.convert_to_numpy(ops.concatenate([first, rest], 1)), expected, atol=2e-5)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_gradients_from_the_cache_equal_those_of_the_whole_sequence(family):
    # The input is read without a gradient; only the new positions train.
    decoder = causal_decoder(FAMILIES[family]())
    ids, mask = _batch(TEXTS, "right")
    rng = np.random.default_rng(0)
    prompt = tf.Variable(rng.normal(size=(3, decoder.backbone.hidden_dim)).astype("float32"))
    lengths = mask.sum(1)
    text_positions = np.maximum(np.cumsum(mask, 1) - 1, 0).astype("int32")
    prompt_positions = (lengths[:, None] + np.arange(3)[None]).astype("int32")

    def whole():
        x = ops.concatenate([decoder.embed_tokens(ids), ops.broadcast_to(prompt[None], (3, 3, prompt.shape[1]))], 1)
        positions = np.concatenate([text_positions, prompt_positions], 1)
        key_mask = np.concatenate([mask, np.ones((3, 3), "int32")], 1)
        hidden, _ = decoder.run(decoder.start(x, positions), positions, positions, key_mask)
        return hidden[:, ids.shape[1]:]

    def cached():
        cache = decoder.read(ids, mask, new_slots=3)
        return decoder.continue_from(cache, ops.broadcast_to(prompt[None], (3, 3, prompt.shape[1])))[0]

    results = []
    for run in (whole, cached):
        with tf.GradientTape() as tape:
            hidden = run()
            loss = tf.reduce_sum(tf.sin(decoder.logits(hidden)[..., :LM_VOCABULARY]))
        results.append((ops.convert_to_numpy(hidden), tape.gradient(loss, prompt).numpy()))
    (hidden_whole, grad_whole), (hidden_cached, grad_cached) = results
    np.testing.assert_allclose(hidden_cached, hidden_whole, atol=2e-5)
    assert np.abs(grad_whole).max() > 0.1
    np.testing.assert_allclose(grad_cached, grad_whole, atol=1e-5 * np.abs(grad_whole).max())


def _prefix_of(decoder, tokens):
    """The keys and values `tokens` give in every layer, `(layers, 2, n, kv_heads, head_dim)`."""
    ids = np.array([tokens], "int32")
    cache = decoder.read(ids, np.ones_like(ids), new_slots=0)
    return ops.stack([c[0] for c in cache.caches])


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_prefix_of_a_tokens_keys_and_values_is_the_plain_model_after_those_tokens(family, side):
    decoder = causal_decoder(FAMILIES[family]())
    prefix = _prefix_of(decoder, APPENDED)
    assert tuple(prefix.shape[3:]) == decoder.key_value_shape
    ids, mask = _batch(TEXTS, side)
    hidden = ops.convert_to_numpy(decoder.run_after_prefix(ids, mask, prefix))
    for row, (text, real) in enumerate(zip(TEXTS, mask.astype(bool))):
        plain_ids = np.array([APPENDED + text], "int32")
        positions = np.arange(plain_ids.shape[1])[None].astype("int32")
        plain, _ = decoder.run(decoder.start(decoder.embed_tokens(plain_ids), positions), positions, positions,
                               np.ones_like(plain_ids))  # fmt: skip
        np.testing.assert_allclose(hidden[row][real], ops.convert_to_numpy(plain)[0, len(APPENDED):], atol=2e-5)


def test_the_gradient_reaches_a_prefix():
    decoder = causal_decoder(tiny_gemma3_lm())
    prefix = tf.Variable(ops.convert_to_numpy(_prefix_of(decoder, APPENDED)))
    ids, mask = _batch(TEXTS, "right")
    with tf.GradientTape() as tape:
        loss = ops.sum(decoder.run_after_prefix(ids, mask, prefix) ** 2)
    gradient = tape.gradient(loss, prefix).numpy()
    assert np.abs(gradient).max() > 0
    # Against a finite difference along the gradient, in float64 arithmetic of float32 runs.
    direction = gradient / np.linalg.norm(gradient)
    eps = 1e-2
    values = []
    for sign in (1, -1):
        moved = prefix.numpy() + sign * eps * direction
        values.append(float(ops.sum(decoder.run_after_prefix(ids, mask, moved) ** 2)))
    np.testing.assert_allclose((values[0] - values[1]) / (2 * eps), np.linalg.norm(gradient), rtol=2e-2)


def test_slice_update_has_the_gradient_of_a_write():
    operand = tf.constant(np.arange(12, dtype="float32").reshape(3, 4))
    update = tf.Variable(np.ones((2, 2), "float32"))
    weights = tf.constant(np.arange(12, dtype="float32").reshape(3, 4) + 1)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(operand)
        written = ops.slice_update(operand, [1, 1], update)
        loss = tf.reduce_sum(written * weights)
    np.testing.assert_array_equal(tape.gradient(loss, update).numpy(), weights.numpy()[1:3, 1:3])
    expected = weights.numpy().copy()
    expected[1:3, 1:3] = 0
    np.testing.assert_array_equal(tape.gradient(loss, operand).numpy(), expected)
