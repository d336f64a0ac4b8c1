"""`train`: the loop, its history and callbacks, and its refusals."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import LOSS, frozen_prompt_mlp, random_sequences, sequence_batches

from tf_prompt_tuning import make_train_step, train


def test_train_records_history_and_calls_back():
    model = frozen_prompt_mlp()
    seen = []
    history = train(
        model,
        sequence_batches(),
        loss=LOSS,
        optimizer=keras.optimizers.Adam(0.05),
        epochs=3,
        verbose=0,
        on_epoch_end=lambda epoch, h: seen.append((epoch, len(h.step_losses))),
    )
    assert len(history.step_losses) == 3 * 4  # 20 examples in batches of 6
    assert len(history.epoch_losses) == 3
    assert history.epoch_losses[-1] < history.epoch_losses[0]
    assert seen == [(0, 4), (1, 8), (2, 12)]


def test_train_stops_on_non_finite_loss():
    model = frozen_prompt_mlp()
    x, y = random_sequences()
    weights = np.ones(len(y), "float32")
    weights[3] = np.nan
    dataset = tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(2)
    with pytest.raises(FloatingPointError, match=r"The loss became nan at epoch 1, step 2"):
        train(model, dataset, loss=LOSS, optimizer="sgd", verbose=0)


@pytest.mark.parametrize("epochs", [0, 1.5])
def test_train_bad_epochs(epochs):
    with pytest.raises((ValueError, TypeError), match="`epochs` must be a positive integer"):
        train(frozen_prompt_mlp(), sequence_batches(), loss=LOSS, optimizer="sgd", epochs=epochs)


def test_train_needs_loss_and_optimizer_or_a_step():
    with pytest.raises(ValueError, match="`train` needs `loss` and `optimizer`, or a `step`"):
        train(frozen_prompt_mlp(), sequence_batches(), loss=LOSS)


def test_strategy_other_than_the_steps_is_an_error():
    step = make_train_step(frozen_prompt_mlp(), loss=LOSS, optimizer="sgd")
    with pytest.raises(ValueError, match=r"`strategy` \(OneDeviceStrategy\) is not the strategy of `step`"):
        train(step.model, sequence_batches(), step=step, strategy=tf.distribute.OneDeviceStrategy("/cpu:0"))


def test_bad_checkpoint_every(tmp_path):
    with pytest.raises(ValueError, match="`checkpoint_every` must be a positive integer"):
        train(frozen_prompt_mlp(), sequence_batches(), loss=LOSS, optimizer="sgd", checkpoint_dir=str(tmp_path), checkpoint_every=0)
