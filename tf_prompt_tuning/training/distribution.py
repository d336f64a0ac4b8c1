"""`make_strategy`: a `tf.distribute` strategy by name, for the command line."""

from __future__ import annotations

import os

import tensorflow as tf

from tf_prompt_tuning._checks import check_choice

STRATEGIES = ("default", "mirrored", "multi-worker", "tpu")


def make_strategy(name: str = "default") -> tf.distribute.Strategy:
    """Returns TensorFlow's own strategy for `name`.

    - `"default"`: one device (the first GPU if any, else the CPU).
    - `"mirrored"`: `MirroredStrategy` over all local GPUs (the CPU if none).
    - `"multi-worker"`: `MultiWorkerMirroredStrategy`; every host runs the same
      command with its own `TF_CONFIG` (cluster and task index).
    - `"tpu"`: `TPUStrategy` on the TPU named by `TPU_NAME` (a local TPU VM
      if unset).

    Build the model and optimizer inside `with strategy.scope():`.

    Example:

    >>> import keras
    >>> import tf_prompt_tuning as tpt
    >>> strategy = tpt.make_strategy("default")  # or "mirrored", "multi-worker", "tpu"
    >>> with strategy.scope():
    ...     model = keras.Sequential([keras.Input((4, 8)), tpt.PromptLayer(2)])
    ...     optimizer = keras.optimizers.Adam()
    >>> strategy.num_replicas_in_sync
    1
    """
    check_choice("strategy", name, STRATEGIES)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "`strategy='multi-worker'` needs the TF_CONFIG environment variable (the "
                "cluster's workers and this one's index) on every worker. See the README's "
                "'Scaling out' section."
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get("TPU_NAME", "local"))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as error:
        raise ValueError(
            f"`strategy='tpu'` found no TPU ({error}). Run on a TPU VM or set TPU_NAME."
        ) from error
    return tf.distribute.TPUStrategy(resolver)
