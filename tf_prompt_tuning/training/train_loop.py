"""`train`: the loop around a `TrainStep` that survives faults and resumes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from tf_prompt_tuning._checks import check_positive_int
from tf_prompt_tuning.training.checkpoints import Checkpointer
from tf_prompt_tuning.training.train_step import TrainStep, make_train_step


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
    step = _the_step(model, step, loss, optimizer, jit_compile, strategy)
    strategy = step.strategy
    dataset_for = dataset if callable(dataset) and not isinstance(dataset, tf.data.Dataset) else lambda _: dataset
    history = TrainingHistory()
    start_epoch = start_batch = 0
    checkpointer = None
    if checkpoint_dir is not None:
        step.build(*next(iter(dataset_for(0).take(1))))
        checkpointer = Checkpointer(checkpoint_dir, step, model, checkpoint_objects, keep_checkpoints)
        progress = checkpointer.restore()
        if progress is not None:
            start_epoch, start_batch = progress["epoch"], progress["batch"]
            history = TrainingHistory(progress["step_losses"], progress["epoch_losses"], progress["state"])
            if verbose:
                print(f"Resuming from {progress['path']}: epoch {start_epoch + 1}, batch {start_batch}.")

    def save(epoch, batch):
        if checkpointer is not None:
            progress = {"epoch": epoch, "batch": batch, **dataclasses.asdict(history)}
            checkpointer.save(progress, step.variables, len(history.step_losses))

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
                    "rate and start over, or check the data for bad values."
                    + (checkpointer.last_good() if checkpointer else "")
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


def _the_step(model, step, loss, optimizer, jit_compile, strategy) -> TrainStep:
    """`step`, or one made from `loss` and `optimizer`."""
    if step is None:
        if loss is None or optimizer is None:
            raise ValueError(
                "`train` needs `loss` and `optimizer`, or a `step` made by make_train_step. "
                f"Received: loss={loss!r}, optimizer={optimizer!r}."
            )
        return make_train_step(model, loss=loss, optimizer=optimizer, jit_compile=jit_compile, strategy=strategy)
    if strategy is not None and strategy is not step.strategy:
        raise ValueError(
            f"`strategy` ({type(strategy).__name__}) is not the strategy of `step` "
            f"({type(step.strategy).__name__}). Pass one of them only."
        )
    return step
