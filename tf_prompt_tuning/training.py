"""A compiled prompt-only training step, and a small loop around it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from tf_prompt_tuning._checks import check_positive_int


def _relaxed_spec(tensor) -> tf.TensorSpec:
    """Batch and sequence dims free; a float tensor keeps its feature dim."""
    tensor = tf.convert_to_tensor(tensor)
    shape = [None] * tensor.shape.rank
    if tensor.dtype.is_floating and tensor.shape.rank >= 2:
        shape[-1] = tensor.shape[-1]
    return tf.TensorSpec(shape, tensor.dtype)


class TrainStep:
    """One optimizer step on a model's trainable variables, as a `tf.function`.

    Built by `make_train_step`. Call it as `step(x, y)` or
    `step(x, y, sample_weight)`; it returns the batch's loss. The first call
    builds the model and optimizer if needed and traces once: batch size and
    sequence length are left free in the signature, so later batches reuse
    the same graph (with `jit_compile=True`, XLA still compiles once per
    distinct shape).
    """

    def __init__(self, model, loss, optimizer, jit_compile):
        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(
                "`make_train_step` needs the TensorFlow backend of Keras. Received: "
                f"KERAS_BACKEND={keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow "
                "before importing keras, or train with `model.fit`."
            )
        self.model = model
        self.loss = keras.losses.get(loss)
        self.optimizer = keras.optimizers.get(optimizer)
        self.jit_compile = jit_compile
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

    def _step(self, x, y, *sample_weight):
        variables = self._variables
        # Only the trainable (prompt/head) variables are watched, so no gradient
        # with respect to a frozen weight is ever computed (unused gradient ops
        # are pruned from the graph).
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([v.value for v in variables])
            predictions = self.model(x, training=True)
            loss = self.loss(y, predictions, *sample_weight)
            if self.model.losses:
                loss = loss + tf.add_n(self.model.losses)
            scaled_loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled_loss, variables)
        self.optimizer.apply(gradients, variables)
        return loss

    def _setup(self, x, args):
        if not self.model.built:
            self.model(x)
        self._variables = list(self.model.trainable_variables)
        if not self._variables:
            raise ValueError(
                f"Model {self.model.name!r} has no trainable variables, so there is "
                "nothing to train. Add a PromptLayer, or name head layers in "
                "`freeze(model, trainable_layers=[...])`."
            )
        self.optimizer.build(self._variables)
        signature = tf.nest.map_structure(_relaxed_spec, args)
        self._function = tf.function(
            self._step, input_signature=signature, jit_compile=self.jit_compile
        )
        self._arity = len(args)

    def __call__(self, x, y, sample_weight=None):
        args = (x, y) if sample_weight is None else (x, y, sample_weight)
        if self._function is None:
            self._setup(x, args)
        elif len(args) != self._arity:
            raise ValueError(
                "The step was first called "
                f"{'with' if self._arity == 3 else 'without'} `sample_weight`; "
                "call it the same way every time (make a new step otherwise)."
            )
        return self._function(*args)


def make_train_step(
    model: keras.Model,
    *,
    loss,
    optimizer,
    jit_compile: bool = False,
) -> TrainStep:
    """Makes a compiled step that trains only the model's trainable variables.

    Freeze the model first (`tf_prompt_tuning.freeze`): the step updates
    exactly `model.trainable_variables`, computes no gradient for anything
    else, and leaves frozen weights bit-identical. The same code runs on CPU
    and GPU; `jit_compile=True` compiles it with XLA.

    Args:
        model: a Keras model (Sequential, functional or subclassed).
        loss: a Keras loss object, name or `fn(y_true, y_pred)`.
        optimizer: a Keras optimizer or its name.
        jit_compile: compile the step with XLA.

    Returns:
        A `TrainStep`: `loss = step(x, y[, sample_weight])`.
    """
    return TrainStep(model, loss, optimizer, jit_compile)


@dataclasses.dataclass
class TrainingHistory:
    """Losses recorded by `train`: one per step, and the mean of each epoch."""

    step_losses: list[float] = dataclasses.field(default_factory=list)
    epoch_losses: list[float] = dataclasses.field(default_factory=list)


def train(
    model: keras.Model,
    dataset: tf.data.Dataset,
    *,
    loss=None,
    optimizer=None,
    epochs: int = 1,
    jit_compile: bool = False,
    verbose: int = 1,
    on_epoch_end: Callable[[int, TrainingHistory], None] | None = None,
    step: TrainStep | None = None,
) -> TrainingHistory:
    """Trains a frozen model's prompts over a `tf.data.Dataset`.

    Args:
        model: the model, already frozen with `freeze`.
        dataset: yields `(x, y)` or `(x, y, sample_weight)` batches.
        loss: as in `make_train_step` (unless `step` is given).
        optimizer: as in `make_train_step` (unless `step` is given).
        epochs: passes over `dataset`.
        jit_compile: compile the step with XLA.
        verbose: 1 shows a progress bar per epoch, 0 is silent.
        on_epoch_end: called as `on_epoch_end(epoch, history)` after each epoch.
        step: reuse an existing `TrainStep` (and its optimizer state)
            instead of making one from `loss`/`optimizer`.

    Returns:
        The `TrainingHistory`.
    """
    epochs = check_positive_int("epochs", epochs)
    if step is None:
        if loss is None or optimizer is None:
            raise ValueError(
                "`train` needs `loss` and `optimizer`, or a `step` made by make_train_step. "
                f"Received: loss={loss!r}, optimizer={optimizer!r}."
            )
        step = make_train_step(model, loss=loss, optimizer=optimizer, jit_compile=jit_compile)
    cardinality = int(dataset.cardinality())
    target = cardinality if cardinality > 0 else None
    history = TrainingHistory()
    for epoch in range(epochs):
        progbar = keras.utils.Progbar(target, verbose=verbose, unit_name="step")
        losses = []
        for batch in dataset.prefetch(tf.data.AUTOTUNE):
            value = float(step(*batch))
            if not np.isfinite(value):
                raise FloatingPointError(
                    f"The loss became {value} at epoch {epoch + 1}, step {len(losses) + 1}. "
                    "Lower the learning rate, or check the data for bad values."
                )
            losses.append(value)
            progbar.add(1, values=[("loss", value)])
        if target is None:
            progbar.update(len(losses), finalize=True)  # end the line of an unknown-length pass
        history.step_losses.extend(losses)
        target = target or len(losses)  # an unknown-length dataset is known after one pass
        history.epoch_losses.append(float(np.mean(losses)) if losses else float("nan"))
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)
    return history
