"""Checkpoints: a resumed run ends as an uninterrupted one; nothing non-finite is saved."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import LOSS, frozen_prompt_mlp, random_sequences, weights_of

from tf_prompt_tuning import TrainStep, train


def _shuffled(epoch):
    """A dataset whose order is a function of the epoch, as resuming needs."""
    return tf.data.Dataset.from_tensor_slices(random_sequences(40)).shuffle(40, seed=epoch).batch(4)


class _Interrupt(Exception):
    pass


class _DyingStep(TrainStep):
    """A step that dies (like a killed process) once it has run `after` times."""

    def __init__(self, model, after):
        super().__init__(model, LOSS, keras.optimizers.Adam(0.05), jit_compile=False, strategy=None)
        self.after = after
        self.calls = 0

    def __call__(self, *args):
        if self.calls == self.after:
            raise _Interrupt
        self.calls += 1
        return super().__call__(*args)


def _train_with_checkpoints(model, directory, step=None, **kwargs):
    seen = []

    def on_epoch_end(epoch, history):
        history.state["epochs_seen"] = history.state.get("epochs_seen", 0) + 1
        seen.append(epoch)

    history = train(
        model, _shuffled, loss=None if step else LOSS, optimizer=None if step else keras.optimizers.Adam(0.05),
        step=step, epochs=3, verbose=0, checkpoint_dir=str(directory), checkpoint_every=4,
        on_epoch_end=on_epoch_end, **kwargs,
    )  # fmt: skip
    return history, seen


# 10 batches an epoch, a checkpoint every 4 steps and after each epoch.
@pytest.mark.parametrize("interrupt_after, epochs_ended_after_resume", [(6, [0, 1, 2]), (10, [1, 2]), (23, [2])])
def test_resumed_run_ends_with_the_same_prompt(tmp_path, interrupt_after, epochs_ended_after_resume):
    reference = frozen_prompt_mlp()
    expected, _ = _train_with_checkpoints(reference, tmp_path / "reference")

    model = frozen_prompt_mlp()
    step = _DyingStep(model, interrupt_after)
    with pytest.raises(_Interrupt):
        _train_with_checkpoints(model, tmp_path / "run", step=step)
    resumed = frozen_prompt_mlp()  # as a fresh process would build it; the checkpoint overwrites
    for variable in resumed.trainable_weights:  # whatever the prompt and head start from
        variable.assign(np.full(variable.shape, 7.0))
    history, seen = _train_with_checkpoints(resumed, tmp_path / "run")

    for a, b in zip(weights_of(resumed.trainable_weights), weights_of(reference.trainable_weights)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    np.testing.assert_allclose(history.step_losses, expected.step_losses, rtol=1e-5)
    assert len(history.epoch_losses) == 3
    assert seen == epochs_ended_after_resume
    assert history.state["epochs_seen"] == 3


def test_finished_run_restarted_does_no_more_steps(tmp_path):
    model = frozen_prompt_mlp()
    _train_with_checkpoints(model, tmp_path)
    trained = weights_of(model.trainable_weights)
    again = frozen_prompt_mlp()
    history, seen = _train_with_checkpoints(again, tmp_path)
    assert seen == [] and len(history.step_losses) == 30
    for a, b in zip(weights_of(again.trainable_weights), trained):
        np.testing.assert_array_equal(a, b)


def test_non_finite_loss_keeps_the_last_good_checkpoint(tmp_path):
    model = frozen_prompt_mlp()
    x, y = random_sequences(40)
    weights = np.ones(len(y), "float32")
    weights[25] = np.inf  # batch 7 of 4 examples
    dataset = tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(4)
    with pytest.raises(FloatingPointError, match=r"at epoch 1, step 7 .*last good checkpoint is .*ckpt-1"):
        train(model, dataset, loss=LOSS, optimizer="adam", verbose=0, checkpoint_dir=str(tmp_path),
              checkpoint_every=4)  # fmt: skip
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-1")  # saved after step 4
    saved = dict(tf.train.list_variables(str(tmp_path)))
    assert all(np.isfinite(tf.train.load_variable(str(tmp_path), name)).all()
               for name in saved if "variables/" in name)  # fmt: skip


class _SabotagedStep(TrainStep):
    """Leaves an infinite prompt after its fourth update, whose loss was finite."""

    def __init__(self, model):
        super().__init__(model, LOSS, "adam", jit_compile=False, strategy=None)
        self.calls = 0

    def __call__(self, *args):
        loss = super().__call__(*args)
        self.calls += 1
        if self.calls == 4:
            self.variables[0].assign(np.full(self.variables[0].shape, np.inf, "float32"))
        return loss


def test_non_finite_weights_are_never_saved(tmp_path):
    model = frozen_prompt_mlp()
    with pytest.raises(FloatingPointError, match=r"The variables \['sequential/prompt/prompt'\] are not finite after step 4 .*ckpt-1"):
        train(model, _shuffled(0), step=_SabotagedStep(model), verbose=0, checkpoint_dir=str(tmp_path),
              checkpoint_every=2)  # fmt: skip
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-1")
