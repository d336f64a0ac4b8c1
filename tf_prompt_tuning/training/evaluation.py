"""Scoring a trained classifier: its inference call compiled once, and
accuracy and loss over a dataset."""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_prompt_tuning.training.train_step import relaxed_spec, supports_jit


def predict_function(model, *, jit_compile: bool = False):
    """`model`'s inference call as a `tf.function` traced once, at the first call:
    batch and sequence dims are left free, so bucketed batches reuse its graph."""
    compiled = None
    jit_compile = jit_compile and supports_jit(model)

    def predict(x):
        nonlocal compiled
        if compiled is None:
            compiled = tf.function(
                lambda x: model(x, training=False), jit_compile=jit_compile,
                input_signature=[tf.nest.map_structure(relaxed_spec, x)],
            )  # fmt: skip
        return compiled(x)

    return predict


def evaluate(model, dataset: tf.data.Dataset, *, predict=None, jit_compile: bool = False) -> dict:
    """Accuracy and mean loss of `model` over a dataset of `(inputs, labels)`.

    Pass `predict` (from `predict_function(model)`) to reuse its traced graph
    across calls.
    """
    predict = predict or predict_function(model, jit_compile=jit_compile)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    correct = total = 0
    loss_sum = 0.0
    for inputs, labels in dataset:
        logits = predict(inputs)
        correct += int(tf.reduce_sum(tf.cast(tf.argmax(logits, -1, output_type=tf.int32) == labels, tf.int32)))
        loss_sum += float(loss_fn(labels, logits)) * int(tf.shape(labels)[0])
        total += int(tf.shape(labels)[0])
    return {"accuracy": correct / total, "loss": loss_sum / total, "examples": total}
