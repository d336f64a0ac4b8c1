"""`evaluate` and `predict_function`: accuracy and loss, one trace for every batch shape."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import frozen_prompt_mlp, random_sequences

from tf_prompt_tuning.training.evaluation import evaluate, predict_function


def test_accuracy_and_loss_are_those_of_the_logits():
    model = frozen_prompt_mlp()
    x, y = random_sequences(20)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(6)  # a last batch of 2
    logits = keras.ops.convert_to_numpy(model(x))
    result = evaluate(model, data)
    assert result["examples"] == 20
    assert result["accuracy"] == pytest.approx(np.mean(np.argmax(logits, -1) == y))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits)
    assert result["loss"] == pytest.approx(float(loss), rel=1e-5)


def test_one_trace_serves_every_batch_and_sequence_length():
    model = frozen_prompt_mlp()
    predict = predict_function(model)
    for batch, length in [(2, 5), (3, 7), (1, 2)]:
        assert predict(np.zeros((batch, length, 6), "float32")).shape == (batch, 2)
    assert predict.__closure__ is not None
    (compiled,) = [c.cell_contents for c in predict.__closure__ if isinstance(c.cell_contents, tf.types.experimental.GenericFunction)]
    assert compiled.experimental_get_tracing_count() == 1
