"""Trains a tiny prompt-tuned classifier on 2 logical CPUs with MirroredStrategy
and on one device, and prints how far apart they end (run by test_distribution.py
in its own process: logical devices must be set before TensorFlow starts).

`python mirrored_two_cpus.py CHECKPOINT_DIR`: the tiny backbone, two epochs.
`python mirrored_two_cpus.py --compare tiny|minilm`: three steps with SGD and
Adam, global batches of 8 (split 4 + 4) and of 7 (split 4 + 3).
"""

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


def tiny_backbone():
    return keras_hub.models.BertBackbone(
        vocabulary_size=30, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=32,
    )


def build(make_backbone=tiny_backbone):
    keras.utils.set_random_seed(0)
    return PromptTextClassifier(make_backbone(), 2, num_tokens=4, head_dropout=0.0)


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


def deep_prompts(strategy, deep_initializer="hidden_states"):
    """Deep prompts started from the hidden states, built in `strategy`'s scope."""
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = PromptTextClassifier(
            tiny_backbone(), 2, num_tokens=4, placement="prepend", deep="hidden", deep_initializer=deep_initializer
        )  # fmt: skip
    return keras.ops.convert_to_numpy(model.prompt.deep_prompts)


def prompt(model):
    return [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]


def max_diff(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(prompt(a), prompt(b)))


def minilm_backbone():
    from tf_prompt_tuning.backbones.backbone import load_backbone

    return load_backbone()[0]


OPTIMIZERS = {"sgd": lambda: keras.optimizers.SGD(0.02), "adam": lambda: keras.optimizers.Adam(0.02)}


def compare(make_backbone, strategy, steps=3):
    """Max abs differences, after `steps` steps on the same global batches,
    between `strategy` and one device, for every optimizer and split."""
    vocabulary_size = make_backbone().vocabulary_size
    rows = []
    for name, make_optimizer in OPTIMIZERS.items():
        for batch, split in ((8, "4+4"), (7, "4+3")):
            rng = np.random.default_rng(0)
            ids = rng.integers(min(1000, vocabulary_size // 6), vocabulary_size, (steps * batch, 12))
            mask = np.arange(12) < rng.integers(3, 13, (steps * batch, 1))
            data = tf.data.Dataset.from_tensor_slices((
                {"token_ids": ids.astype("int32"), "padding_mask": mask.astype("int32"),
                 "segment_ids": np.zeros_like(ids, "int32")},
                rng.integers(0, 2, steps * batch).astype("int32"),
            )).batch(batch)  # fmt: skip
            results = []
            for each in (tf.distribute.get_strategy(), strategy):
                with each.scope():
                    model = build(make_backbone)
                    optimizer = make_optimizer()
                start = keras.ops.convert_to_numpy(model.prompt.prompt)
                history = train(model, data, loss=LOSS, optimizer=optimizer, verbose=0)
                results.append((start, keras.ops.convert_to_numpy(model.prompt.prompt), history.step_losses))
            (start, single, single_losses), (_, other, other_losses) = results
            rows.append({
                "optimizer": name, "split": split, "steps": len(other_losses),
                "prompt_moved": float(np.abs(single - start).max()),
                "prompt_diff": float(np.abs(other - single).max()),
                "loss_diff": float(np.abs(np.subtract(other_losses, single_losses)).max()),
            })  # fmt: skip
    return rows


if __name__ == "__main__" and sys.argv[1] == "--compare":
    backbones = {"tiny": tiny_backbone, "minilm": minilm_backbone}
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    print(json.dumps(compare(backbones[sys.argv[2]], mirrored)))
elif __name__ == "__main__":
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
    deep_single = deep_prompts(tf.distribute.get_strategy())

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
        "deep_from_states_vs_single": float(np.abs(deep_prompts(mirrored) - deep_single).max()),
        "deep_from_states_vs_uniform": float(np.abs(deep_prompts(mirrored, "uniform") - deep_single).max()),
    }))
