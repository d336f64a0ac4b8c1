"""Checkpoints of a training run: variables, optimizer state, seeds and the
data position, in one `tf.train.Checkpoint`, so a resumed run ends as an
uninterrupted one would."""

import json
import os
import shutil

import keras
import numpy as np
import tensorflow as tf


class Progress(tf.train.experimental.PythonState):
    """The data position and history, saved inside each checkpoint (so the two
    can never disagree)."""

    def __init__(self):
        self.value = {}

    def serialize(self):
        return json.dumps(self.value)

    def deserialize(self, string_value):
        self.value = json.loads(string_value)


class Checkpointer:
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
        self.progress = Progress()
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

    def last_good(self) -> str:
        """A sentence naming the latest checkpoint, for error messages."""
        latest = self.latest
        return f" The last good checkpoint is {latest}." if latest else ""

    def save(self, progress: dict, variables, steps_done: int):
        # A finite loss can still leave non-finite weights after its update;
        # such a state is never saved.
        broken = [v.path for v in variables if not np.isfinite(keras.ops.convert_to_numpy(v)).all()]
        if broken:
            raise FloatingPointError(
                f"The variables {broken} are not finite after step {steps_done} "
                "of the run, so they were not saved. Lower the learning rate and start over, "
                "or check the data for bad values." + self.last_good()
            )
        self.progress.value = progress
        self.manager.save()
        if not self.chief:
            shutil.rmtree(self.write_directory, ignore_errors=True)
