"""Trains a tiny prompt-tuned classifier on 2 logical CPUs with MirroredStrategy
and on one device, and prints how far apart they end (run by test_distribution.py
in its own process: logical devices must be set before TensorFlow starts)."""

import json
import sys
import tensorflow as tf

if __name__ == "__main__":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras
import keras_hub
import numpy as np

from tf_prompt_tuning import PromptTextClassifier, train

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def build():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=30, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=32,
    )
    return PromptTextClassifier(backbone, 2, num_tokens=4, head_dropout=0.0)


rng = np.random.default_rng(0)
ids = rng.integers(5, 30, (31, 12)).astype("int32")
mask = (np.arange(12) < rng.integers(3, 13, (31, 1))).astype("int32")
labels = rng.integers(0, 2, 31).astype("int32")
# 31 examples in batches of 8: the last batch of 7 splits 4 + 3 over the replicas.
dataset = tf.data.Dataset.from_tensor_slices(
    ({"token_ids": ids, "padding_mask": mask, "segment_ids": np.zeros_like(ids)}, labels)
).batch(8)


def run(strategy, jit_compile=False, checkpoint_dir=None, epochs=2, start_from=None):
    with strategy.scope():
        model = build()
        optimizer = keras.optimizers.Adam(0.02)
    if start_from is not None:  # overwritten by the checkpoint, if it is restored
        for variable in model.trainable_variables:
            variable.assign(np.full(variable.shape, start_from, "float32"))
    history = train(model, dataset, loss=LOSS, optimizer=optimizer, epochs=epochs, verbose=0,
                    jit_compile=jit_compile, checkpoint_dir=checkpoint_dir, checkpoint_every=3)
    return model, history


def prompt(model):
    return [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]


def max_diff(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(prompt(a), prompt(b)))


if __name__ == "__main__":
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    single, single_history = run(tf.distribute.get_strategy())
    two, two_history = run(mirrored)
    two_xla, _ = run(mirrored, jit_compile=True)
    first, _ = run(mirrored, checkpoint_dir=sys.argv[1], epochs=1)
    resumed, resumed_history = run(mirrored, checkpoint_dir=sys.argv[1], epochs=2, start_from=7.0)

    def error_of(model, optimizer):
        try:
            train(model, dataset, loss=LOSS, optimizer=optimizer, strategy=mirrored, verbose=0)
        except ValueError as error:
            return str(error)

    outside_error = error_of(build(), "adam")
    with mirrored.scope():
        inside = build()
    optimizer_error = error_of(inside, keras.optimizers.Adam())

    print(json.dumps({
        "replicas": mirrored.num_replicas_in_sync,
        "model_strategy": type(two.distribute_strategy).__name__,
        "prompt_moved": float(np.abs(prompt(single)[0] - prompt(build())[0]).max()),
        "mirrored_vs_single": max_diff(two, single),
        "mirrored_xla_vs_single": max_diff(two_xla, single),
        "resumed_vs_single": max_diff(resumed, single),
        "resumed_steps": len(resumed_history.step_losses),
        "loss_diff": float(np.abs(np.subtract(two_history.step_losses, single_history.step_losses)).max()),
        "outside_error": outside_error,
        "optimizer_error": optimizer_error,
    }))
