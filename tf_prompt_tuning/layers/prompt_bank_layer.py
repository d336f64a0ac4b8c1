"""`PromptBankLayer`: one prompt per task, chosen per example by `task_id`."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tf_prompt_tuning import initializers
from tf_prompt_tuning._checks import check_deep
from tf_prompt_tuning.backbones._keras_internals import unlocked
from tf_prompt_tuning.layers.prompt_layer import PromptLayer, insert_block


def check_task_ids(task_id, num_tasks: int):
    """`task_id` as int32, each checked to be in `[0, num_tasks)`.

    A gather would read another task's row for a negative id and clamp (XLA)
    or fail only on some devices for a large one: a wrong answer, silently.
    Eagerly the check raises `ValueError`; in a graph (a `tf.function`, a
    SavedModel) an `InvalidArgumentError` when it runs. XLA drops graph
    assertions, so the banks declare `supports_jit = False` and the library's
    compiled steps honour it.
    """
    message = f"`task_id` must be in [0, {num_tasks}), the bank's task ids"
    if tf.executing_eagerly():
        ids = np.asarray(keras.ops.convert_to_numpy(task_id))
        if ids.dtype.kind not in "iu" or ids.size and (ids.min() < 0 or ids.max() >= num_tasks):
            raise ValueError(f"{message}. Received: task_id={ids.tolist()!r}.")
        return ops.convert_to_tensor(ids.astype("int32"))
    task_id = tf.convert_to_tensor(task_id)
    if not task_id.dtype.is_integer:
        raise TypeError(f"{message}; received a {task_id.dtype.name} tensor. Pass integer ids.")
    checks = [
        tf.debugging.assert_greater_equal(task_id, tf.cast(0, task_id.dtype), message=message),
        tf.debugging.assert_less(task_id, tf.cast(num_tasks, task_id.dtype), message=message),
    ]
    with tf.control_dependencies(checks):
        return tf.cast(tf.identity(task_id), "int32")


def _per_example(blocks, task_id, shape, dtype):
    """Each example's task's block; `blocks` has one per task (`None`: zeros of `shape`)."""
    stacked = ops.stack([ops.zeros(shape, dtype) if b is None else ops.cast(b, dtype) for b in blocks])
    return ops.take(stacked, ops.cast(task_id, "int32"), axis=0)


def _task_flags(flags, task_id):
    """Each example's task's entry of the per-task booleans `flags`, `(batch,)`."""
    return ops.take(ops.convert_to_tensor(flags), ops.cast(task_id, "int32"))


@keras.saving.register_keras_serializable(package="tf_prompt_tuning")
class PromptBankLayer(PromptLayer):
    """One `(num_tokens, dim)` prompt per task, chosen per example by `task_id`.

    Tasks share the prompt length: text tokens then sit at the same positions
    whatever the task, so a mixed batch gives each example exactly what its
    task alone would.

    With `num_layers`, tasks may also be deep (a `DeepPromptLayer`'s
    per-layer prompts): before each later transformer layer, the prompt
    positions of a deep task's examples are rewritten with its prompt for
    that layer, and those of the other tasks' examples are left as they are.

    A task with key/value prefixes (`deep="prefix"`, held by a
    `PrefixBankLayer`) has no input prompt: its examples keep their text at
    the positions it has without a prompt (so position embeddings match the
    task's own model) and get `num_tokens` padding positions at the end.

    Args:
        num_tokens: prompt length of every task.
        placement: as in `PromptLayer`; with "append" the layer only holds
            the prompts, which an appended `PromptBank` runs after its
            cached input (`per_example_prompts`).
        num_layers: the backbone's transformer layers, to hold deep tasks;
            `None` (default) for input-level prompts only.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: float tensor `(batch, seq, dim)`.
        task_id: int tensor `(batch,)`.
        layer_index: 0 to insert the prompts, `i > 0` to rewrite them
            before transformer layer `i` (deep banks).

    Example:

    >>> import keras, numpy as np
    >>> import tf_prompt_tuning as tpt
    >>> prompts = tpt.PromptBankLayer(num_tokens=2)
    >>> prompts.build((None, None, 8))
    >>> _ = prompts.add_prompt("first", initializer="zeros")
    >>> _ = prompts.add_prompt("second", initializer="ones")
    >>> out = prompts(keras.ops.zeros((3, 4, 8)), task_id=np.array([1, 0, 1]))
    >>> out.shape, keras.ops.convert_to_numpy(out[:, 0, 0]).tolist()
    (TensorShape([3, 6, 8]), [1.0, 0.0, 1.0])
    """

    extra_inputs = {"task_id": ((), "int32")}

    def __init__(self, num_tokens, placement="prepend", num_layers=None, **kwargs):
        super().__init__(num_tokens, initializer="zeros", placement=placement, **kwargs)
        self.num_layers = num_layers
        self.prompts = []
        self.deep_prompts = []  # per task: (num_layers - 1, num_tokens, dim) or None
        self.prefix_tasks = []  # per task: True for key/value prefixes (no input prompt)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                "`PromptBankLayer` expects (batch, seq, dim) inputs with a known dim. "
                f"Received: input_shape={tuple(input_shape)}."
            )
        self.dim = input_shape[-1]

    def add_prompt(self, name: str, initializer="uniform", deep=False):
        """Adds a task's prompt variable (and its deeper layers' prompts) and returns it.

        A task with key/value prefixes (`deep="prefix"`) gets no variable here
        (`None`); its prefixes live in the bank's `PrefixBankLayer`.
        """
        deep = check_deep(deep, ("hidden", "prefix"))  # the kinds of state this layer holds
        if deep == "prefix":
            self.prompts.append(None)
            self.deep_prompts.append(None)
            self.prefix_tasks.append(True)
            return None
        if deep and not self.num_layers:
            raise ValueError(
                f"Task {name!r} has deep prompts, but this bank holds input-level prompts "
                "only: make its `PromptBankLayer` with `num_layers`."
            )
        with unlocked(self):  # a built layer grows a task at a time
            variable = self.add_weight(
                name=f"prompt_{name}",
                shape=(self.num_tokens, self.dim),
                initializer=initializers.get(initializer),
                dtype="float32",
            )
            deep_variable = None
            if deep:
                deep_variable = self.add_weight(
                    name=f"deep_prompts_{name}",
                    shape=(self.num_layers - 1, self.num_tokens, self.dim),
                    # Random, not zeros: equal vectors would get equal gradients and stay equal.
                    initializer=initializers.uniform(),
                    dtype="float32",
                )
        self.prompts.append(variable)
        self.deep_prompts.append(deep_variable)
        self.prefix_tasks.append(False)
        return variable

    def _layout(self, sequence, inserted, task_id):
        """Per example: `inserted`, or for prefix tasks the sequence then padding."""
        if not any(self.prefix_tasks):
            return inserted
        padding = ops.repeat(ops.zeros_like(sequence[:, :1]), self.num_tokens, axis=1)
        is_prefix = ops.reshape(_task_flags(self.prefix_tasks, task_id), (-1,) + (1,) * (len(sequence.shape) - 1))
        return ops.where(is_prefix, ops.concatenate([sequence, padding], axis=1), inserted)

    def extend_mask(self, mask, fill_value=True, task_id=None):
        """As `PromptLayer.extend_mask`; with `task_id`, prefix tasks' examples
        get `num_tokens` zeros (padding) at the end instead."""
        # Not `super()`: autograph, converting a compiled `generate`, cannot resolve it.
        inserted = PromptLayer.extend_mask(self, mask, fill_value)
        return inserted if task_id is None else self._layout(mask, inserted, task_id)

    def call(self, inputs, task_id=None, padding_mask=None, mask=None, layer_index=0):
        if task_id is None:
            raise ValueError("`PromptBankLayer` needs a `task_id` input.")
        if self.placement == "append":
            # Each task's block would sit at a different slot in each row.
            raise ValueError(
                "An appended bank runs its prompts after a cached input, not inside the backbone's "
                "graph. Received: a call of a PromptBankLayer with placement='append'. Use "
                "PromptBank(backbone, placement='append') on a causal decoder."
            )
        if layer_index:
            return self._rewrite(inputs, task_id, layer_index)
        if not self.prompts:  # symbolic build, before any task exists
            block = ops.zeros((ops.shape(inputs)[0], self.num_tokens, self.dim), dtype=inputs.dtype)
        else:
            block = _per_example(self.prompts, task_id, (self.num_tokens, self.dim), inputs.dtype)
        return self._layout(inputs, insert_block(inputs, block, self.placement), task_id)

    def per_example_prompts(self, task_id, dtype, layer_index=0):
        """`(batch, num_tokens, dim)`: each example's task's prompt for
        transformer layer `layer_index` (0: the input prompt); tasks without
        deep prompts give zeros past layer 0."""
        if not layer_index:
            return _per_example(self.prompts, task_id, (self.num_tokens, self.dim), dtype)
        blocks = [None if v is None else v[layer_index - 1] for v in self.deep_prompts]
        return _per_example(blocks, task_id, (self.num_tokens, self.dim), dtype)

    def deep_tasks(self, task_id):
        """`(batch,)` bool: whether each example's task has deep prompts."""
        return _task_flags([v is not None for v in self.deep_prompts], task_id)

    def _rewrite(self, inputs, task_id, layer_index):
        if all(v is None for v in self.deep_prompts):
            return inputs  # no deep task (yet): nothing to rewrite
        start = 0 if self.placement == "prepend" else 1
        end = start + self.num_tokens
        # Shallow tasks' examples keep the hidden states they have.
        block = ops.where(
            self.deep_tasks(task_id)[:, None, None],
            self.per_example_prompts(task_id, inputs.dtype, layer_index),
            inputs[:, start:end],
        )
        return ops.concatenate([inputs[:, :start], block, inputs[:, end:]], axis=1)

    def compute_mask(self, inputs, mask=None, padding_mask=None, layer_index=0, task_id=None):
        if layer_index:
            return mask  # same positions, rewritten in place
        return super().compute_mask(inputs, mask=mask, padding_mask=padding_mask)

    def get_config(self):
        config = super().get_config()
        config.pop("initializer")
        config["num_layers"] = self.num_layers
        return config
