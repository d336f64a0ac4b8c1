import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_prompt_tuning import PromptLayer, TrainStep, freeze, make_train_step, train

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((None, 6)),
            PromptLayer(3, name="prompt"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(8, activation="relu", name="body"),
            keras.layers.Dense(2, name="head"),
        ]
    )
    freeze(model)
    return model


def _data(n=20, seq=5, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, seq, 6)).astype("float32"), rng.integers(0, 2, n).astype("int32")


def _weights(variables):
    return [keras.ops.convert_to_numpy(v).copy() for v in variables]


def test_traces_once_across_batch_sizes_and_sequence_lengths():
    model = _model()
    step = make_train_step(model, loss=LOSS, optimizer="adam")
    assert step.tracing_count == 0
    for batch, seq in [(4, 5), (4, 5), (3, 5), (7, 9), (1, 2)]:
        x, y = _data(batch, seq)
        step(x, y)
    assert step.tracing_count == 1


def test_frozen_weights_bit_identical_and_prompt_moves():
    model = _model()
    frozen = _weights(model.non_trainable_weights)
    prompt = _weights(model.trainable_weights)
    step = make_train_step(model, loss=LOSS, optimizer=keras.optimizers.Adam(0.05))
    x, y = _data()
    losses = [float(step(x, y)) for _ in range(30)]
    assert losses[-1] < losses[0]
    for before, after in zip(frozen, _weights(model.non_trainable_weights)):
        np.testing.assert_array_equal(before, after)
    assert not np.allclose(prompt[0], _weights(model.trainable_weights)[0])
    assert [v.path for v in step.variables] == ["sequential/prompt/prompt"]


def test_step_and_fit_give_the_same_prompt():
    x, y = _data(16)
    stepped, fitted = _model(), _model()
    frozen = _weights(fitted.non_trainable_weights)
    step = make_train_step(stepped, loss=LOSS, optimizer=keras.optimizers.SGD(0.5))
    for epoch in range(3):
        for i in range(0, 16, 4):
            step(x[i : i + 4], y[i : i + 4])
    fitted.compile(optimizer=keras.optimizers.SGD(0.5), loss=LOSS)
    fitted.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0)
    np.testing.assert_allclose(
        _weights(stepped.trainable_weights)[0], _weights(fitted.trainable_weights)[0], atol=1e-6
    )
    for before, after in zip(frozen, _weights(fitted.non_trainable_weights)):
        np.testing.assert_array_equal(before, after)


def test_xla_step_matches_plain_step():
    x, y = _data()
    results = []
    for jit_compile in (False, True):
        model = _model()
        step = make_train_step(model, loss=LOSS, optimizer="adam", jit_compile=jit_compile)
        for _ in range(5):
            step(x, y)
        results.append(_weights(model.trainable_weights)[0])
    np.testing.assert_allclose(results[0], results[1], atol=1e-5)


def test_head_is_trained_when_kept():
    model = _model()
    freeze(model, trainable_layers=["head"])
    head = _weights(model.get_layer("head").weights)
    step = make_train_step(model, loss=LOSS, optimizer="adam")
    step(*_data())
    assert len(step.variables) == 3
    assert not np.array_equal(head[0], _weights(model.get_layer("head").weights)[0])


def test_unbuilt_subclassed_model_is_built_on_first_call():
    class Tiny(keras.Model):
        def __init__(self):
            super().__init__()
            self.prompt = PromptLayer(2)
            self.head = keras.layers.Dense(2)

        def call(self, x):
            return self.head(keras.ops.mean(self.prompt(x), axis=1))

    model = Tiny()
    freeze(model)
    step = make_train_step(model, loss=LOSS, optimizer="sgd")
    step(*_data())
    assert [v.name for v in step.variables] == ["prompt"]


def test_sample_weight_and_consistent_arity():
    model = _model()
    step = make_train_step(model, loss=LOSS, optimizer="sgd")
    x, y = _data()
    zero = float(step(x, y, np.zeros(len(y), "float32")))
    assert zero == 0.0
    with pytest.raises(ValueError, match="first called with `sample_weight`"):
        step(x, y)


def test_mixed_float16_uses_loss_scaling_and_keeps_float32_prompt():
    keras.config.set_dtype_policy("mixed_float16")
    model = _model()
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.05))
    before = _weights(model.trainable_weights)[0]
    step = make_train_step(model, loss=LOSS, optimizer=optimizer)
    for _ in range(3):
        loss = step(*_data())
    assert np.isfinite(float(loss))
    assert model.trainable_weights[0].dtype == "float32"
    assert not np.array_equal(before, _weights(model.trainable_weights)[0])


def test_no_trainable_variables():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.trainable = False
    step = make_train_step(model, loss=LOSS, optimizer="sgd")
    with pytest.raises(ValueError, match="has no trainable variables, so there is nothing to train"):
        step(np.zeros((2, 3), "float32"), np.zeros(2, "int32"))


def _dataset(n=20, batch=6):
    return tf.data.Dataset.from_tensor_slices(_data(n)).batch(batch)


def test_train_records_history_and_calls_back():
    model = _model()
    seen = []
    history = train(
        model,
        _dataset(),
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
    model = _model()
    x, y = _data()
    weights = np.ones(len(y), "float32")
    weights[3] = np.nan
    dataset = tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(2)
    with pytest.raises(FloatingPointError, match=r"The loss became nan at epoch 1, step 2"):
        train(model, dataset, loss=LOSS, optimizer="sgd", verbose=0)


@pytest.mark.parametrize("epochs", [0, 1.5])
def test_train_bad_epochs(epochs):
    with pytest.raises((ValueError, TypeError), match="`epochs` must be a positive integer"):
        train(_model(), _dataset(), loss=LOSS, optimizer="sgd", epochs=epochs)


def test_train_needs_loss_and_optimizer_or_a_step():
    with pytest.raises(ValueError, match="`train` needs `loss` and `optimizer`, or a `step`"):
        train(_model(), _dataset(), loss=LOSS)


def _shuffled(epoch):
    """A dataset whose order is a function of the epoch, as resuming needs."""
    return tf.data.Dataset.from_tensor_slices(_data(40)).shuffle(40, seed=epoch).batch(4)


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
    reference = _model()
    expected, _ = _train_with_checkpoints(reference, tmp_path / "reference")

    model = _model()
    step = _DyingStep(model, interrupt_after)
    with pytest.raises(_Interrupt):
        _train_with_checkpoints(model, tmp_path / "run", step=step)
    resumed = _model()  # as a fresh process would build it; the checkpoint overwrites
    for variable in resumed.trainable_weights:  # whatever the prompt and head start from
        variable.assign(np.full(variable.shape, 7.0))
    history, seen = _train_with_checkpoints(resumed, tmp_path / "run")

    for a, b in zip(_weights(resumed.trainable_weights), _weights(reference.trainable_weights)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    np.testing.assert_allclose(history.step_losses, expected.step_losses, rtol=1e-5)
    assert len(history.epoch_losses) == 3
    assert seen == epochs_ended_after_resume
    assert history.state["epochs_seen"] == 3


def test_finished_run_restarted_does_no_more_steps(tmp_path):
    model = _model()
    _train_with_checkpoints(model, tmp_path)
    trained = _weights(model.trainable_weights)
    again = _model()
    history, seen = _train_with_checkpoints(again, tmp_path)
    assert seen == [] and len(history.step_losses) == 30
    for a, b in zip(_weights(again.trainable_weights), trained):
        np.testing.assert_array_equal(a, b)


def test_non_finite_loss_keeps_the_last_good_checkpoint(tmp_path):
    model = _model()
    x, y = _data(40)
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
    model = _model()
    with pytest.raises(FloatingPointError, match=r"The variables \['sequential/prompt/prompt'\] are not finite after step 4 .*ckpt-1"):
        train(model, _shuffled(0), step=_SabotagedStep(model), verbose=0, checkpoint_dir=str(tmp_path),
              checkpoint_every=2)  # fmt: skip
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-1")


def test_strategy_other_than_the_steps_is_an_error():
    step = make_train_step(_model(), loss=LOSS, optimizer="sgd")
    with pytest.raises(ValueError, match=r"`strategy` \(OneDeviceStrategy\) is not the strategy of `step`"):
        train(step.model, _dataset(), step=step, strategy=tf.distribute.OneDeviceStrategy("/cpu:0"))


def test_scalar_loss_function_is_an_error():
    step = make_train_step(_model(), loss=lambda y, p: keras.ops.mean(p), optimizer="sgd")
    with pytest.raises(ValueError, match="`loss` must return one value per example"):
        step(*_data())


def test_bad_checkpoint_every(tmp_path):
    with pytest.raises(ValueError, match="`checkpoint_every` must be a positive integer"):
        train(_model(), _dataset(), loss=LOSS, optimizer="sgd", checkpoint_dir=str(tmp_path), checkpoint_every=0)


def test_masked_per_token_loss_averages_over_unmasked_tokens_as_keras_does():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((None,), dtype="int32"),
        keras.layers.Embedding(10, 4, mask_zero=True),
        PromptLayer(2, name="prompt"),
        keras.layers.Dense(3, name="head"),
    ])  # fmt: skip
    freeze(model, trainable_layers=["head"])
    ids = np.array([[3, 4, 0, 0], [5, 6, 7, 0]], "int32")
    labels = np.array([[1, 2, 0, 0, 0, 0], [0, 1, 2, 1, 2, 0]], "int32")
    expected = float(LOSS(labels, model(ids)))  # Keras: the mean over the 9 unmasked tokens
    step = make_train_step(model, loss=LOSS, optimizer="sgd")
    assert float(step(ids, labels)) == pytest.approx(expected, rel=1e-6)
