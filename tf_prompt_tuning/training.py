"""A compiled prompt-only training step, and a loop around it that survives faults."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import warnings
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from tf_prompt_tuning._checks import check_positive_int
from tf_prompt_tuning._keras_internals import inner_layers


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


@dataclasses.dataclass
class TrainingHistory:
    """What `train` recorded: losses per step and per epoch, and `state`, a
    JSON-serializable dict an `on_epoch_end` callback may fill (it is saved
    in and restored from checkpoints).

    Example:

    >>> import keras, numpy as np, tensorflow as tf
    >>> import tf_prompt_tuning as tpt
    >>> model = keras.Sequential([keras.Input((3, 8)), tpt.PromptLayer(2),
    ...     keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2, name="head")])
    >>> x = np.ones((4, 3, 8), "float32")
    >>> data = tf.data.Dataset.from_tensor_slices((x, [0, 1, 0, 1])).batch(2)
    >>> def remember_best(epoch, history):
    ...     history.state["best_epoch"] = int(np.argmin(history.epoch_losses))
    >>> loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    >>> history = tpt.train(model, data, loss=loss, optimizer="adam", epochs=3, verbose=0,
    ...                     on_epoch_end=remember_best)
    >>> len(history.step_losses), len(history.epoch_losses), sorted(history.state)
    (6, 3, ['best_epoch'])
    """

    step_losses: list[float] = dataclasses.field(default_factory=list)
    epoch_losses: list[float] = dataclasses.field(default_factory=list)
    state: dict = dataclasses.field(default_factory=dict)


class _Progress(tf.train.experimental.PythonState):
    """The data position and history, saved inside each checkpoint (so the two
    can never disagree)."""

    def __init__(self):
        self.value = {}

    def serialize(self):
        return json.dumps(self.value)

    def deserialize(self, string_value):
        self.value = json.loads(string_value)


class _Checkpointer:
    """Periodic `tf.train.CheckpointManager` checkpoints of everything a
    resumed run needs: trainable variables, optimizer state (its step count
    included), dropout seed states, extra objects, and the progress.

    In a multi-worker run every worker saves (saving is collective), but only
    the chief's checkpoints are kept, in `directory`; the others write to a
    scratch directory and delete it. Every worker resumes from the chief's
    (so `directory` must be shared), hence all at the same step.
    """

    def __init__(self, directory, step, model, extra, keep):
        seed_states = [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]
        self.progress = _Progress()
        self.checkpoint = tf.train.Checkpoint(
            variables=step.variables, optimizer=step.optimizer, seed_states=seed_states,
            progress=self.progress, **(extra or {}),
        )  # fmt: skip
        self.directory = directory
        strategy = step.strategy
        self.chief = strategy.extended.should_checkpoint
        self.write_directory = (
            directory if self.chief else os.path.join(directory, f".worker-{strategy.cluster_resolver.task_id}")
        )
        # Numbered by save, so a save never rewrites an existing checkpoint.
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.write_directory, max_to_keep=keep)

    @property
    def latest(self) -> str | None:
        return tf.train.latest_checkpoint(self.directory)

    def restore(self) -> dict | None:
        latest = self.latest
        if latest is None:
            return None
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        return dict(self.progress.value, path=latest)

    def save(self, progress: dict):
        self.progress.value = progress
        self.manager.save()
        if not self.chief:
            shutil.rmtree(self.write_directory, ignore_errors=True)


def train(
    model: keras.Model,
    dataset: tf.data.Dataset | Callable[[int], tf.data.Dataset],
    *,
    loss=None,
    optimizer=None,
    epochs: int = 1,
    jit_compile: bool = False,
    verbose: int = 1,
    on_epoch_end: Callable[[int, TrainingHistory], None] | None = None,
    on_step_end: Callable[[int, TrainingHistory], None] | None = None,
    step: TrainStep | None = None,
    checkpoint_dir: str | None = None,
    checkpoint_every: int = 100,
    checkpoint_objects: dict | None = None,
    keep_checkpoints: int = 2,
    strategy: tf.distribute.Strategy | None = None,
) -> TrainingHistory:
    """Trains a frozen model's prompts over a `tf.data.Dataset`.

    With `checkpoint_dir`, the run saves a checkpoint every `checkpoint_every`
    steps and after every epoch, and a run started again with the same
    arguments resumes from the latest one: same variables, optimizer state,
    dropout seeds, history and data position, so it ends with the same
    prompt as a run that was never interrupted. For the data position to be
    exact, pass `dataset` as a function `epoch -> Dataset` whose batches are
    a deterministic function of the epoch (as `make_text_dataset` with
    `seed=seed + epoch` is); a fixed dataset resumes at the same batch index.

    A non-finite loss stops the run with `FloatingPointError` before anything
    is saved, so the latest checkpoint is the last good state.

    Args:
        model: the model, already frozen with `freeze`.
        dataset: yields `(x, y)` or `(x, y, sample_weight)` batches; or a
            function of the epoch number returning such a dataset.
        loss: as in `make_train_step` (unless `step` is given).
        optimizer: as in `make_train_step` (unless `step` is given).
        epochs: passes over `dataset`.
        jit_compile: compile the step with XLA.
        verbose: 1 shows a progress bar per epoch, 0 is silent.
        on_epoch_end: called as `on_epoch_end(epoch, history)` after each
            epoch, before the epoch's checkpoint.
        on_step_end: called as `on_step_end(steps_done, history)` after each
            step (`steps_done` counts the run's steps), before a checkpoint.
        step: reuse an existing `TrainStep` (and its optimizer state)
            instead of making one from `loss`/`optimizer`.
        checkpoint_dir: where to keep checkpoints (none if `None`).
        checkpoint_every: steps between checkpoints.
        checkpoint_objects: more trackable objects to checkpoint, by name
            (e.g. variables holding the best weights so far).
        keep_checkpoints: how many recent checkpoints to keep.
        strategy: the `tf.distribute` strategy (default: the step's); the
            dataset is distributed across its replicas.

    Returns:
        The `TrainingHistory`.

    Example:

    >>> import os, tempfile
    >>> import keras, keras_hub, numpy as np, tensorflow as tf
    >>> import tf_prompt_tuning as tpt
    >>> backbone = keras_hub.models.BertBackbone(vocabulary_size=40, num_layers=2, num_heads=2,
    ...     hidden_dim=8, intermediate_dim=16, max_sequence_length=24)
    >>> model = tpt.PromptTextClassifier(backbone, num_classes=2, num_tokens=4)
    >>> x = {"token_ids": np.array([[2, 5, 6, 3]] * 4), "padding_mask": np.ones((4, 4), "int32")}
    >>> data = tf.data.Dataset.from_tensor_slices((x, [0, 1, 0, 1])).batch(2)
    >>> checkpoints = os.path.join(tempfile.mkdtemp(), "checkpoints")
    >>> loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    >>> history = tpt.train(model, data, loss=loss, optimizer="adam", epochs=2, verbose=0,
    ...                     checkpoint_dir=checkpoints)  # run it again: it resumes
    >>> len(history.step_losses), len(history.epoch_losses)
    (4, 2)
    >>> tf.train.latest_checkpoint(checkpoints)
    '.../checkpoints/ckpt-2'
    """
    epochs = check_positive_int("epochs", epochs)
    checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
    if step is None:
        if loss is None or optimizer is None:
            raise ValueError(
                "`train` needs `loss` and `optimizer`, or a `step` made by make_train_step. "
                f"Received: loss={loss!r}, optimizer={optimizer!r}."
            )
        step = make_train_step(
            model, loss=loss, optimizer=optimizer, jit_compile=jit_compile, strategy=strategy
        )
    elif strategy is not None and strategy is not step.strategy:
        raise ValueError(
            f"`strategy` ({type(strategy).__name__}) is not the strategy of `step` "
            f"({type(step.strategy).__name__}). Pass one of them only."
        )
    strategy = step.strategy
    dataset_for = dataset if callable(dataset) and not isinstance(dataset, tf.data.Dataset) else lambda _: dataset
    history = TrainingHistory()
    start_epoch = start_batch = 0
    checkpointer = None
    if checkpoint_dir is not None:
        step.build(*next(iter(dataset_for(0).take(1))))
        checkpointer = _Checkpointer(checkpoint_dir, step, model, checkpoint_objects, keep_checkpoints)
        progress = checkpointer.restore()
        if progress is not None:
            start_epoch, start_batch = progress["epoch"], progress["batch"]
            history = TrainingHistory(progress["step_losses"], progress["epoch_losses"], progress["state"])
            if verbose:
                print(f"Resuming from {progress['path']}: epoch {start_epoch + 1}, batch {start_batch}.")

    def last_good():
        last = checkpointer.latest if checkpointer else None
        return f" The last good checkpoint is {last}." if last else ""

    def save(epoch, batch):
        if checkpointer is None:
            return
        # A finite loss can still leave non-finite weights after its update;
        # such a state is never saved.
        broken = [v.path for v in step.variables if not np.isfinite(keras.ops.convert_to_numpy(v)).all()]
        if broken:
            raise FloatingPointError(
                f"The variables {broken} are not finite after step {len(history.step_losses)} "
                "of the run, so they were not saved. Lower the learning rate and start over, "
                "or check the data for bad values." + last_good()
            )
        checkpointer.save(
            {"epoch": epoch, "batch": batch, "step_losses": history.step_losses,
             "epoch_losses": history.epoch_losses, "state": history.state},
        )  # fmt: skip

    target = None
    for epoch in range(start_epoch, epochs):
        epoch_data = dataset_for(epoch)
        cardinality = int(epoch_data.cardinality())
        target = cardinality if cardinality > 0 else target
        batch = start_batch if epoch == start_epoch else 0
        epoch_data = epoch_data.skip(batch).prefetch(tf.data.AUTOTUNE)
        if strategy.num_replicas_in_sync > 1:
            epoch_data = strategy.experimental_distribute_dataset(epoch_data)
        progbar = keras.utils.Progbar(target, verbose=verbose, unit_name="step")
        if batch:
            progbar.update(batch)
        # Losses of this epoch so far, including those before a resume.
        first = len(history.step_losses) - batch
        for data in epoch_data:
            value = float(step(*data))
            batch += 1
            if not np.isfinite(value):
                raise FloatingPointError(
                    f"The loss became {value} at epoch {epoch + 1}, step {batch} "
                    f"(step {len(history.step_losses) + 1} of the run). Lower the learning "
                    "rate and start over, or check the data for bad values." + last_good()
                )
            history.step_losses.append(value)
            progbar.update(batch, values=[("loss", value)])
            if on_step_end is not None:
                on_step_end(len(history.step_losses), history)
            if len(history.step_losses) % checkpoint_every == 0:
                save(epoch, batch)
        if target is None:
            progbar.update(batch, finalize=True)  # end the line of an unknown-length pass
        target = target or batch  # an unknown-length dataset is known after one pass
        losses = history.step_losses[first:]
        history.epoch_losses.append(float(np.mean(losses)) if losses else float("nan"))
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)
        save(epoch + 1, 0)
    return history
