import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import assert_config_round_trip, assert_keras_save_load_parity

from tf_prompt_tuning import PromptLayer, freeze
from tf_prompt_tuning.initializers import FromArray

PROMPT = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype="float32")


def _sequence(batch=2, seq=4, dim=3):
    return np.arange(batch * seq * dim, dtype="float32").reshape(batch, seq, dim) + 100


@pytest.mark.parametrize(
    "placement, expected_order",
    [("prepend", ["p", "p", 0, 1, 2, 3]), ("after_first", [0, "p", "p", 1, 2, 3])],
)
def test_prompt_is_inserted_at_placement(placement, expected_order):
    x = _sequence()
    layer = PromptLayer(2, initializer=FromArray(PROMPT), placement=placement)
    y = keras.ops.convert_to_numpy(layer(x))
    assert y.shape == (2, 6, 3)
    prompt_rows = iter(PROMPT)
    for position, source in enumerate(expected_order):
        expected = next(prompt_rows) if source == "p" else x[:, source]
        np.testing.assert_array_equal(y[:, position], np.broadcast_to(expected, (2, 3)))


def test_symbolic_shape_keeps_unknown_sequence_length():
    inputs = keras.Input((None, 8))
    outputs = PromptLayer(5)(inputs)
    assert tuple(outputs.shape) == (None, None, 8)
    outputs = PromptLayer(5)(keras.Input((7, 8)))
    assert tuple(outputs.shape) == (None, 12, 8)


@pytest.mark.parametrize("placement", ["prepend", "after_first"])
def test_explicit_padding_mask_is_extended_with_true(placement):
    x = _sequence()
    padding_mask = np.array([[1, 1, 0, 0], [1, 1, 1, 0]], dtype="bool")
    layer = PromptLayer(2, placement=placement)
    outputs, mask = layer(x, padding_mask=padding_mask)
    mask = keras.ops.convert_to_numpy(mask)
    assert outputs.shape == (2, 6, 3)
    if placement == "prepend":
        expected = np.concatenate([np.ones((2, 2), bool), padding_mask], axis=1)
    else:
        expected = np.concatenate(
            [padding_mask[:, :1], np.ones((2, 2), bool), padding_mask[:, 1:]], axis=1
        )
    np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize(
    "padding_mask, expected_order, expected_mask",
    [
        # Right-padded: the prompt right after the last real token, then the padding.
        ([1, 1, 0, 0], [0, 1, "p", "p", 2, 3], [1, 1, 1, 1, 0, 0]),
        # Left-padded: after the last real token, which ends the row.
        ([0, 0, 1, 1], [0, 1, 2, 3, "p", "p"], [0, 0, 1, 1, 1, 1]),
        ([1, 1, 1, 1], [0, 1, 2, 3, "p", "p"], [1, 1, 1, 1, 1, 1]),
        ([0, 0, 0, 0], ["p", "p", 0, 1, 2, 3], [1, 1, 0, 0, 0, 0]),
    ],
    ids=["right_padded", "left_padded", "full", "empty"],
)
def test_an_appended_prompt_follows_each_rows_last_real_token(padding_mask, expected_order, expected_mask):
    x = _sequence()
    layer = PromptLayer(2, initializer=FromArray(PROMPT), placement="append")
    mask = np.array([padding_mask, [1, 1, 1, 1]], "int32")
    outputs, extended = (keras.ops.convert_to_numpy(t) for t in layer(x, padding_mask=mask))
    prompt_rows = iter(PROMPT)
    for position, source in enumerate(expected_order):
        expected = next(prompt_rows) if source == "p" else x[0, source]
        np.testing.assert_array_equal(outputs[0, position], expected)
    np.testing.assert_array_equal(extended[0], expected_mask)
    np.testing.assert_array_equal(outputs[1], np.concatenate([x[1], PROMPT]))
    # Without a padding mask: after the last position.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x))[:, 4:], np.broadcast_to(PROMPT, (2, 2, 3)))
    # Symbolic inputs of unknown length, in a functional model.
    inputs, pm = keras.Input((None, 3)), keras.Input((None,), dtype="int32")
    model = keras.Model([inputs, pm], layer(inputs, padding_mask=pm))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model([x, mask])[0]), outputs)


def test_integer_padding_mask_keeps_its_dtype():
    _, mask = PromptLayer(2)(_sequence(), padding_mask=np.array([[1, 0, 0, 0]] * 2, "int32"))
    assert keras.backend.standardize_dtype(mask.dtype) == "int32"
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(mask)[0], [1, 1, 1, 0, 0, 0])


def test_keras_mask_flows_through_prompt_positions():
    # Token 0 is padding; the mask must cover the prompt as "visible".
    inputs = keras.Input((None,), dtype="int32")
    embedding = keras.layers.Embedding(10, 4, mask_zero=True)
    prompt = PromptLayer(3, placement="after_first")
    x = prompt(embedding(inputs))
    token_ids = np.array([[5, 6, 0, 0]])
    mask = prompt.compute_mask(embedding(token_ids), embedding.compute_mask(token_ids))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(mask), [[True, True, True, True, True, False, False]]
    )
    # Downstream masked pooling ignores padding but averages the prompt: the
    # mean over [e5, P1, P2, P3, e6], not over 7 positions with two e0 rows.
    pooled = keras.Model(inputs, keras.layers.GlobalAveragePooling1D()(x))(token_ids)
    embeddings = keras.ops.convert_to_numpy(embedding.embeddings)
    visible = np.concatenate([embeddings[[5, 6]], keras.ops.convert_to_numpy(prompt.prompt)])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pooled)[0], visible.mean(axis=0), rtol=1e-6, atol=1e-7
    )


def test_mask_reaches_downstream_layers_in_sequential():
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(10, 4, mask_zero=True),
            PromptLayer(2, initializer="zeros"),
            keras.layers.GlobalAveragePooling1D(),
        ]
    )
    # The masked mean over [0, 0, e5, e6] (two zero prompt rows) is half the
    # mean of the real tokens; with padding counted it would be a quarter.
    embeddings = keras.ops.convert_to_numpy(model.layers[0].embeddings)
    pooled = keras.ops.convert_to_numpy(model(np.array([[5, 6, 0, 0]])))
    np.testing.assert_allclose(pooled[0], (embeddings[5] + embeddings[6]) / 4, rtol=1e-6)


def test_config_round_trip():
    layer = PromptLayer(4, initializer="uniform", placement="after_first", name="p")
    clone = assert_config_round_trip(layer)
    assert (clone.num_tokens, clone.placement, clone.name) == (4, "after_first", "p")
    layer = PromptLayer(2, initializer=FromArray(PROMPT))
    clone = assert_config_round_trip(layer)
    clone.build((None, 5, 3))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone.prompt), PROMPT)


def test_default_initializer_is_uniform_half():
    layer = PromptLayer(200)
    layer.build((None, 3, 64))
    prompt = keras.ops.convert_to_numpy(layer.prompt)
    assert prompt.min() >= -0.5 and prompt.max() <= 0.5
    assert prompt.std() > 0.25  # uniform in [-0.5, 0.5] has std 0.289


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16", "bfloat16"])
def test_prompt_stays_float32_under_reduced_precision(policy):
    keras.config.set_dtype_policy(policy)
    layer = PromptLayer(2)
    y = layer(_sequence())
    assert layer.prompt.dtype == "float32"
    assert keras.backend.standardize_dtype(y.dtype) == keras.config.dtype_policy().compute_dtype


def test_mixed_precision_training_updates_float32_prompt():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = keras.Sequential(
        [
            keras.Input((4, 3)),
            PromptLayer(2),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(2, dtype="float32"),
        ]
    )
    freeze(model)
    before = keras.ops.convert_to_numpy(model.layers[0].prompt)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(_sequence(8), np.ones(8, "int32"), epochs=2, verbose=0)
    assert model.layers[0].prompt.dtype == "float32"
    assert not np.array_equal(before, keras.ops.convert_to_numpy(model.layers[0].prompt))


class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.prompt = PromptLayer(2, name="prompt")
        self.pool = keras.layers.GlobalAveragePooling1D()
        self.head = keras.layers.Dense(2)

    def call(self, x):
        return self.head(self.pool(self.prompt(x)))


def _sequential():
    return keras.Sequential(
        [keras.Input((4, 3)), PromptLayer(2), keras.layers.Flatten(), keras.layers.Dense(2)]
    )


def _functional():
    inputs = keras.Input((4, 3))
    x = PromptLayer(2, placement="after_first")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))


@pytest.mark.parametrize("make_model", [_sequential, _functional, Subclassed])
def test_works_in_every_model_style(make_model):
    model = make_model()
    assert model(_sequence()).shape == (2, 2)
    freeze(model)
    (prompt,) = model.trainable_weights
    assert prompt.path.endswith("/prompt")
    before = keras.ops.convert_to_numpy(prompt).copy()
    frozen = [keras.ops.convert_to_numpy(v).copy() for v in model.non_trainable_weights]
    assert frozen  # the Dense head
    # Inputs near 100 give large outputs; a small step keeps SGD stable.
    model.compile(optimizer=keras.optimizers.SGD(1e-4), loss="mse")
    history = model.fit(_sequence(), np.zeros((2, 2)), epochs=3, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    assert not np.array_equal(before, keras.ops.convert_to_numpy(prompt))
    for value, variable in zip(frozen, model.non_trainable_weights):
        np.testing.assert_array_equal(value, keras.ops.convert_to_numpy(variable))


@pytest.mark.parametrize("make_model", [_sequential, _functional])
def test_keras_file_save_load_parity(make_model, tmp_path):
    restored = assert_keras_save_load_parity(make_model(), _sequence(), tmp_path)
    assert any(isinstance(layer, PromptLayer) for layer in restored.layers)


def test_works_inside_tf_function_with_unknown_batch():
    layer = PromptLayer(3)
    fn = tf.function(layer, input_signature=[tf.TensorSpec([None, None, 3], tf.float32)])
    assert fn(_sequence(5, 2)).shape == (5, 5, 3)


@pytest.mark.parametrize(
    "num_tokens, error, match",
    [
        (0, ValueError, r"`num_tokens` must be a positive integer. Received: num_tokens=0"),
        (-3, ValueError, r"Received: num_tokens=-3"),
        (2.5, TypeError, r"Received: num_tokens=2.5 \(of type float\)"),
        (True, TypeError, r"Received: num_tokens=True \(of type bool\)"),
        ("3", TypeError, r"Received: num_tokens='3' \(of type str\)"),
    ],
)
def test_bad_num_tokens(num_tokens, error, match):
    with pytest.raises(error, match=match):
        PromptLayer(num_tokens)


def test_bad_placement():
    with pytest.raises(ValueError, match=r"`placement` must be one of .*Received: placement='end'"):
        PromptLayer(2, placement="end")


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 4, 5)])
def test_wrong_input_rank(shape):
    with pytest.raises(ValueError, match=r"rank 3 \(batch, seq, dim\). Received: input_shape="):
        PromptLayer(2)(np.zeros(shape, "float32"))


def test_unknown_last_dimension():
    with pytest.raises(ValueError, match="last dimension of the input must be known"):
        PromptLayer(2).build((None, None, None))


def test_initializer_shape_mismatch():
    with pytest.raises(ValueError, match=r"has shape \(2, 3\), but the prompt needs shape \(2, 8\)"):
        PromptLayer(2, initializer=FromArray(PROMPT))(np.zeros((1, 4, 8), "float32"))


def test_unknown_initializer_name():
    with pytest.raises(ValueError, match="Unknown prompt initializer: 'vocabulary_magic'"):
        PromptLayer(2, initializer="vocabulary_magic")


def test_non_float_input():
    with pytest.raises(TypeError, match="expects a float sequence of embeddings.*int32"):
        PromptLayer(2)(np.zeros((1, 4, 3), "int32"))


