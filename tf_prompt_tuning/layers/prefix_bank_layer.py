"""`PrefixBankLayer`: key/value prefixes per task, chosen per example by `task_id`."""

from __future__ import annotations

import keras
from keras import ops

from tf_prompt_tuning import initializers
from tf_prompt_tuning.backbones._keras_internals import unlocked
from tf_prompt_tuning.layers.prefix_layer import PrefixLayer
from tf_prompt_tuning.layers.prompt_bank_layer import _per_example, _task_flags


@keras.saving.register_keras_serializable(package="tf_prompt_tuning")
class PrefixBankLayer(PrefixLayer):
    """Per-task key/value prefixes (or none), chosen per example by `task_id`.

    The other tasks' examples get prefixes that are not visible, so their
    attention is what it is without any.

    Args:
        num_tokens: prefix length of every task.
        num_layers: the backbone's transformer layers.
        **kwargs: standard layer arguments.

    Example:

    >>> import keras, numpy as np
    >>> import tf_prompt_tuning as tpt
    >>> bank = tpt.PrefixBankLayer(num_tokens=3, num_layers=2)
    >>> bank.build((None, None, 8))
    >>> _ = bank.add_prefixes("prefixed", enabled=True)
    >>> _ = bank.add_prefixes("plain", enabled=False)  # a task without prefixes
    >>> keys, values, visible = bank(keras.ops.zeros((2, 5, 8)), task_id=np.array([0, 1]))
    >>> keys.shape, keras.ops.convert_to_numpy(visible).tolist()
    (TensorShape([2, 3, 8]), [[True, True, True], [False, False, False]])
    """

    extra_inputs = {"task_id": ((), "int32")}

    def __init__(self, num_tokens, num_layers, **kwargs):
        kwargs.pop("initializer", None)
        super().__init__(num_tokens, num_layers, initializer="zeros", **kwargs)
        self.task_prefixes = []  # per task: (num_layers, 2, num_tokens, dim) or None

    def build(self, input_shape):
        self.dim = input_shape[-1]

    @property
    def active(self) -> bool:
        """Whether any task has prefixes (if none, layers run as they are)."""
        return any(v is not None for v in self.task_prefixes)

    def add_prefixes(self, name: str, enabled: bool, initializer="uniform"):
        """Adds a task: its prefix variable if `enabled`, else none. Returns it."""
        variable = None
        if enabled:
            with unlocked(self):  # a built layer grows a task at a time
                variable = self.add_weight(
                    name=f"prefixes_{name}",
                    shape=(self.num_layers, 2, self.num_tokens, self.dim),
                    # Random, not zeros: equal vectors would get equal gradients and stay equal.
                    initializer=initializers.get(initializer),
                    dtype="float32",
                )
        self.task_prefixes.append(variable)
        return variable

    def call(self, inputs, task_id=None, layer_index=0):
        if task_id is None:
            raise ValueError("`PrefixBankLayer` needs a `task_id` input.")
        blocks = [None if v is None else v[layer_index] for v in self.task_prefixes]
        chosen = _per_example(blocks, task_id, (2, self.num_tokens, self.dim), inputs.dtype)
        has = _task_flags([v is not None for v in self.task_prefixes], task_id)
        visible = ops.repeat(has[:, None], self.num_tokens, axis=1)
        return chosen[:, 0], chosen[:, 1], visible

    def get_config(self):
        config = super().get_config()
        config.pop("initializer")
        return config
