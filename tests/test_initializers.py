import keras
import numpy as np
import pytest

from tf_prompt_tuning import initializers
from tf_prompt_tuning.initializers import FromArray

EMBEDDINGS = np.arange(40, dtype="float32").reshape(10, 4)


def _value(initializer, shape):
    return keras.ops.convert_to_numpy(initializer(shape))


def test_uniform_by_name_is_half_range():
    value = _value(initializers.get("uniform"), (500, 8))
    assert -0.5 <= value.min() < -0.49 and 0.49 < value.max() <= 0.5


def test_uniform_is_seedable():
    a = _value(initializers.uniform(seed=3), (4, 4))
    b = _value(initializers.uniform(seed=3), (4, 4))
    np.testing.assert_array_equal(a, b)


def test_get_accepts_keras_names_objects_configs_and_arrays():
    assert isinstance(initializers.get("zeros"), keras.initializers.Zeros)
    obj = FromArray(np.ones((2, 2)))
    assert initializers.get(obj) is obj
    restored = initializers.get(keras.initializers.serialize(obj))
    np.testing.assert_array_equal(restored.value, obj.value)
    assert isinstance(initializers.get([[1.0, 2.0]]), FromArray)


def test_from_array_serializes_its_values():
    init = FromArray([[0.1, 0.5], [-0.4, 0.9]])
    restored = keras.initializers.deserialize(keras.initializers.serialize(init))
    np.testing.assert_array_equal(_value(restored, (2, 2)), init.value)


@pytest.mark.parametrize("top_k", [None, 3])
def test_from_vocabulary_samples_distinct_rows_of_the_pool(top_k):
    value = _value(initializers.from_vocabulary(EMBEDDINGS, 3, top_k=top_k, seed=1), (3, 4))
    pool = EMBEDDINGS[: top_k or 10]
    rows = {tuple(r) for r in value}
    assert len(rows) == 3 and rows <= {tuple(r) for r in pool}


def test_from_vocabulary_repeats_when_prompt_is_longer_than_pool():
    value = _value(initializers.from_vocabulary(EMBEDDINGS, 5, top_k=2, seed=0), (5, 4))
    assert {tuple(r) for r in value} <= {tuple(r) for r in EMBEDDINGS[:2]}


def test_from_token_ids_repeats_or_cuts_to_length():
    longer = _value(initializers.from_token_ids(EMBEDDINGS, [7, 2], 5), (5, 4))
    np.testing.assert_array_equal(longer, EMBEDDINGS[[7, 2, 7, 2, 7]])
    shorter = _value(initializers.from_token_ids(EMBEDDINGS, [7, 2, 4], 2), (2, 4))
    np.testing.assert_array_equal(shorter, EMBEDDINGS[[7, 2]])


def test_from_class_labels_averages_pieces_then_fills_from_vocabulary():
    value = _value(
        initializers.from_class_labels(EMBEDDINGS, [[1], [2, 4]], 4, top_k=3, seed=0), (4, 4)
    )
    np.testing.assert_array_equal(value[0], EMBEDDINGS[1])
    np.testing.assert_array_equal(value[1], (EMBEDDINGS[2] + EMBEDDINGS[4]) / 2)
    assert {tuple(r) for r in value[2:]} <= {tuple(r) for r in EMBEDDINGS[:3]}


def test_embeddings_may_be_a_keras_variable():
    variable = keras.Variable(EMBEDDINGS)
    value = _value(initializers.from_token_ids(variable, [3], 1), (1, 4))
    np.testing.assert_array_equal(value[0], EMBEDDINGS[3])


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: FromArray(np.ones(3)), ValueError, r"2-D array .* Received: value with shape \(3,\)"),
        (lambda: initializers.get("nope"), ValueError, "Unknown prompt initializer: 'nope'"),
        (lambda: initializers.get(3.5), ValueError, "Unknown prompt initializer: 3.5"),
        (lambda: initializers.from_vocabulary(np.ones(5), 2), ValueError, r"2-D token-embedding"),
        (lambda: initializers.from_vocabulary(EMBEDDINGS, 2, top_k=0), ValueError, r"`top_k` must be in \[1, 10\]"),
        (lambda: initializers.from_vocabulary(EMBEDDINGS, 0), ValueError, "`num_tokens` must be a positive"),
        (lambda: initializers.from_token_ids(EMBEDDINGS, [], 2), ValueError, "`token_ids` is empty"),
        (lambda: initializers.from_token_ids(EMBEDDINGS, [3, 10], 2), ValueError, r"must be in \[0, 10\)"),
        (lambda: initializers.from_class_labels(EMBEDDINGS, [[1], [2]], 1), ValueError, "less than the 2 class labels"),
        (lambda: initializers.from_class_labels(EMBEDDINGS, [[1], []], 2), ValueError, "Label 1 has no token ids"),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
