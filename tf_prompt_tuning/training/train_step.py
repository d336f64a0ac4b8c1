"""`TrainStep`: one compiled optimizer step on the trainable (prompt) variables."""

from __future__ import annotations

import copy
import warnings

import keras
import tensorflow as tf

from tf_prompt_tuning.backbones._keras_internals import inner_layers


def relaxed_spec(tensor) -> tf.TensorSpec:
    """Batch and sequence dims free; a float tensor keeps its feature dim."""
    tensor = tf.convert_to_tensor(tensor)
    shape = [None] * tensor.shape.rank
    if tensor.dtype.is_floating and tensor.shape.rank >= 2:
        shape[-1] = tensor.shape[-1]
    return tf.TensorSpec(shape, tensor.dtype)


class _Unreduced(keras.losses.Loss):
    """A loss function as a `Loss` (which applies sample weights and masks)."""

    def __init__(self, fn):
        super().__init__(name=getattr(fn, "__name__", "loss").strip("<>_") or "loss", reduction="none")
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)


def _per_element_loss(loss) -> keras.losses.Loss:
    """`loss` returning weighted, unreduced values, so the step can average
    them over the global batch itself (the same mean on one or many replicas)."""
    loss = keras.losses.get(loss)
    if isinstance(loss, keras.losses.Loss):
        loss = copy.copy(loss)
        loss.reduction = "none"
        return loss
    return _Unreduced(loss)


def supports_jit(model) -> bool:
    """Whether every layer allows XLA (`Layer.supports_jit`, as Keras's own
    `jit_compile="auto"` asks): a bank does not, since XLA drops its task-id
    check. Warns when it does not."""
    if all(layer.supports_jit for layer in [model, *inner_layers(model)]):
        return True
    warnings.warn(
        f"Model {model.name!r} does not support XLA (a layer sets `supports_jit = False`); "
        "compiling without `jit_compile`."
    )
    return False


def _uses_float16(model) -> bool:
    return any(getattr(layer, "compute_dtype", None) == "float16" for layer in [model, *inner_layers(model)])


class TrainStep:
    """One optimizer step on a model's trainable variables, as a `tf.function`.

    Built by `make_train_step`. Call it as `step(x, y)` or
    `step(x, y, sample_weight)`; it returns the batch's loss. The first call
    builds the model and optimizer if needed and traces once: batch size and
    sequence length are left free in the signature, so later batches reuse
    the same graph (with `jit_compile=True`, XLA still compiles once per
    distinct shape).

    Under a `tf.distribute` strategy with several replicas, call it with
    batches of `strategy.experimental_distribute_dataset(...)` (`train` does):
    each replica computes the gradients of its share, scaled by the global
    batch size; only the trainable variables' gradients are all-reduced.

    Example:

    >>> import keras, numpy as np
    >>> import tf_prompt_tuning as tpt
    >>> model = keras.Sequential([keras.Input((None, 8)), tpt.PromptLayer(2, name="prompt"),
    ...     keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2, name="head")])
    >>> loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    >>> step = tpt.make_train_step(model, loss=loss, optimizer="adam")
    >>> for batch, length in [(2, 6), (3, 9)]:  # other shapes reuse the graph
    ...     _ = step(np.ones((batch, length, 8), "float32"), np.zeros(batch, "int32"))
    >>> step.tracing_count, [v.name for v in step.variables]
    (1, ['prompt', 'kernel', 'bias'])
    """

    def __init__(self, model, loss, optimizer, jit_compile, strategy):
        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(
                "`make_train_step` needs the TensorFlow backend of Keras. Received: "
                f"KERAS_BACKEND={keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow "
                "before importing keras, or train with `model.fit`."
            )
        self.model = model
        self.strategy = strategy or getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
        self.loss = _per_element_loss(loss)
        with self.strategy.scope():
            optimizer = keras.optimizers.get(optimizer)
            if _uses_float16(model) and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                # float16 gradients underflow without loss scaling (bfloat16 needs none).
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        self.optimizer = optimizer
        self.jit_compile = jit_compile and supports_jit(model)
        self._function = None
        self._variables = None

    @property
    def tracing_count(self) -> int:
        """How many times the step has been traced (0 before the first call)."""
        return 0 if self._function is None else self._function.experimental_get_tracing_count()

    @property
    def variables(self) -> list:
        """The variables this step updates, fixed at the first call."""
        return list(self._variables or ())

    def _gradients(self, x, y, sample_weight):
        """This replica's loss sum, its element count, and their gradients.

        The sum is divided by the global count only after an all-reduce,
        which cannot run inside this (possibly XLA-compiled) function.
        """
        variables = self._variables
        # Only the trainable (prompt/head) variables are watched, so no gradient
        # with respect to a frozen weight is ever computed.
        with tf.GradientTape(watch_accessed_variables=False, persistent=bool(self.model.losses)) as tape:
            tape.watch([v.value for v in variables])
            predictions = self.model(x, training=True)
            values = self.loss(y, predictions, *sample_weight)
            if values.shape.rank == 0:
                raise ValueError(
                    "`loss` must return one value per example (or per token), not a "
                    "scalar, so the step can average over the global batch. Received a "
                    "function returning a scalar; return the unreduced values instead."
                )
            values = tf.cast(values, "float32")
            # As Keras's "sum_over_batch_size": over every element, or over the
            # unmasked ones when the predictions carry a Keras mask.
            mask = getattr(predictions, "_keras_mask", None)
            count = tf.cast(tf.size(values), "float32")
            if mask is not None:
                count = tf.reduce_sum(tf.cast(tf.broadcast_to(mask, tf.shape(values)), "float32"))
            loss_sum = tf.reduce_sum(values)
            # Scaled inside the tape: under float16 the gradients are of the scaled loss.
            scaled_sum = self.optimizer.scale_loss(loss_sum)
            if self.model.losses:
                regularization = tf.add_n(self.model.losses)
                scaled_regularization = self.optimizer.scale_loss(regularization)
            else:
                regularization = tf.zeros(())
        gradients = tape.gradient(scaled_sum, variables)
        regularization_gradients = [None] * len(variables)
        if self.model.losses:
            regularization_gradients = tape.gradient(scaled_regularization, variables)
        return loss_sum, count, gradients, regularization, regularization_gradients

    def _replica_step(self, x, y, *sample_weight):
        loss_sum, count, gradients, regularization, regularization_gradients = self._compiled_gradients(
            x, y, sample_weight
        )
        # The mean over the global batch, whatever this replica's share of it;
        # regularization is summed over replicas, so each adds its share.
        context = tf.distribute.get_replica_context()
        total = context.all_reduce("sum", count)
        replicas = context.num_replicas_in_sync
        gradients = [
            None if g is None else tf.math.divide_no_nan(g, total) + (0.0 if r is None else r / replicas)
            for g, r in zip(gradients, regularization_gradients)
        ]
        # Outside XLA: the optimizer all-reduces (sums) the gradients across
        # replicas, which XLA cannot place on several (logical) devices.
        self.optimizer.apply(gradients, self._variables)
        return tf.math.divide_no_nan(loss_sum, total) + regularization / replicas

    def _step(self, *args):
        losses = self.strategy.run(self._replica_step, args=args)
        return self.strategy.reduce("sum", losses, axis=None)

    def build(self, x, y, sample_weight=None):
        """Builds the model, optimizer and compiled step for batches like `(x, y[, sample_weight])`."""
        args = (x, y) if sample_weight is None else (x, y, sample_weight)
        if self._function is not None:
            if len(args) != self._arity:
                raise ValueError(
                    "The step was first called "
                    f"{'with' if self._arity == 3 else 'without'} `sample_weight`; "
                    "call it the same way every time (make a new step otherwise)."
                )
            return
        if not self.model.built:
            with self.strategy.scope():
                self.model(x)
        self._variables = list(self.model.trainable_variables)
        if not self._variables:
            raise ValueError(
                f"Model {self.model.name!r} has no trainable variables, so there is "
                "nothing to train. Add a PromptLayer, or name head layers in "
                "`freeze(model, trainable_layers=[...])`."
            )
        if self.strategy.num_replicas_in_sync > 1:
            outside = [v.path for v in self._variables if not self.strategy.extended.variable_created_in_scope(v.value)]
            outside = [f"the variables {outside}"] if outside else []
            if getattr(self.optimizer, "_distribution_strategy", self.strategy) is not self.strategy:
                outside.append(f"the optimizer {self.optimizer.name!r}")
            if outside:
                raise ValueError(
                    f"Under a {type(self.strategy).__name__}, {' and '.join(outside)} must be "
                    "created in its scope, and were not. Build the model and optimizer inside "
                    "`with strategy.scope():`."
                )
        with self.strategy.scope():
            self.optimizer.build(self._variables)
        self._compiled_gradients = tf.function(self._gradients, jit_compile=self.jit_compile)
        if self.strategy.num_replicas_in_sync > 1:
            # Distributed batches carry their own structure; shapes still vary freely.
            self._function = tf.function(self._step, reduce_retracing=True)
        else:
            signature = tf.nest.map_structure(relaxed_spec, args)
            self._function = tf.function(self._step, input_signature=signature)
        self._arity = len(args)

    def __call__(self, x, y, sample_weight=None):
        self.build(x, y, sample_weight)
        args = (x, y) if sample_weight is None else (x, y, sample_weight)
        return self._function(*args)


def make_train_step(
    model: keras.Model,
    *,
    loss,
    optimizer,
    jit_compile: bool = False,
    strategy: tf.distribute.Strategy | None = None,
) -> TrainStep:
    """Makes a compiled step that trains only the model's trainable variables.

    Freeze the model first (`tf_prompt_tuning.freeze`): the step updates
    exactly `model.trainable_variables`, computes no gradient for anything
    else, and leaves frozen weights bit-identical. The same code runs on CPU,
    GPU and TPU; `jit_compile=True` compiles the forward and backward pass
    with XLA. Under `mixed_float16` the optimizer is wrapped in a
    `LossScaleOptimizer` unless it already is one.

    Args:
        model: a Keras model (Sequential, functional or subclassed).
        loss: a Keras loss object, name or `fn(y_true, y_pred)` returning one
            value per example (or per token).
        optimizer: a Keras optimizer or its name (under a strategy, made in
            its scope).
        jit_compile: compile the forward and backward pass with XLA.
        strategy: the `tf.distribute` strategy; by default the one the model
            was built under.

    Returns:
        A `TrainStep`: `loss = step(x, y[, sample_weight])`.

    Example:

    >>> import keras, numpy as np
    >>> import tf_prompt_tuning as tpt
    >>> model = keras.Sequential([keras.Input((None, 8)), tpt.PromptLayer(2),
    ...     keras.layers.Dense(8, name="frozen"), keras.layers.GlobalAveragePooling1D(),
    ...     keras.layers.Dense(2, name="head")])
    >>> _ = tpt.freeze(model, trainable_layers=["head"])  # the prompt and the head train
    >>> loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    >>> step = tpt.make_train_step(model, loss=loss, optimizer=keras.optimizers.Adam(1e-2))
    >>> frozen = model.get_layer("frozen").kernel.numpy()
    >>> loss = step(np.ones((2, 5, 8), "float32"), np.array([0, 1]))
    >>> loss.shape, loss.dtype, np.array_equal(frozen, model.get_layer("frozen").kernel.numpy())
    (TensorShape([]), tf.float32, True)
    """
    return TrainStep(model, loss, optimizer, jit_compile, strategy)
