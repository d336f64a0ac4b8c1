"""`TrainStep`: one compiled step, frozen weights untouched, any batch shape, XLA, mixed precision."""

import keras
import numpy as np
import pytest
from conftest import LOSS, frozen_prompt_mlp, random_sequences, weights_of

from tf_prompt_tuning import PromptLayer, freeze, make_train_step


def test_traces_once_across_batch_sizes_and_sequence_lengths():
    model = frozen_prompt_mlp()
    step = make_train_step(model, loss=LOSS, optimizer="adam")
    assert step.tracing_count == 0
    for batch, seq in [(4, 5), (4, 5), (3, 5), (7, 9), (1, 2)]:
        x, y = random_sequences(batch, seq)
        step(x, y)
    assert step.tracing_count == 1


def test_frozen_weights_bit_identical_and_prompt_moves():
    model = frozen_prompt_mlp()
    frozen = weights_of(model.non_trainable_weights)
    prompt = weights_of(model.trainable_weights)
    step = make_train_step(model, loss=LOSS, optimizer=keras.optimizers.Adam(0.05))
    x, y = random_sequences()
    losses = [float(step(x, y)) for _ in range(30)]
    assert losses[-1] < losses[0]
    for before, after in zip(frozen, weights_of(model.non_trainable_weights)):
        np.testing.assert_array_equal(before, after)
    assert not np.allclose(prompt[0], weights_of(model.trainable_weights)[0])
    assert [v.path for v in step.variables] == ["sequential/prompt/prompt"]


def test_step_and_fit_give_the_same_prompt():
    x, y = random_sequences(16)
    stepped, fitted = frozen_prompt_mlp(), frozen_prompt_mlp()
    frozen = weights_of(fitted.non_trainable_weights)
    step = make_train_step(stepped, loss=LOSS, optimizer=keras.optimizers.SGD(0.5))
    for epoch in range(3):
        for i in range(0, 16, 4):
            step(x[i : i + 4], y[i : i + 4])
    fitted.compile(optimizer=keras.optimizers.SGD(0.5), loss=LOSS)
    fitted.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0)
    np.testing.assert_allclose(
        weights_of(stepped.trainable_weights)[0], weights_of(fitted.trainable_weights)[0], atol=1e-6
    )
    for before, after in zip(frozen, weights_of(fitted.non_trainable_weights)):
        np.testing.assert_array_equal(before, after)


def test_xla_step_matches_plain_step():
    x, y = random_sequences()
    results = []
    for jit_compile in (False, True):
        model = frozen_prompt_mlp()
        step = make_train_step(model, loss=LOSS, optimizer="adam", jit_compile=jit_compile)
        for _ in range(5):
            step(x, y)
        results.append(weights_of(model.trainable_weights)[0])
    np.testing.assert_allclose(results[0], results[1], atol=1e-5)


def test_head_is_trained_when_kept():
    model = frozen_prompt_mlp()
    freeze(model, trainable_layers=["head"])
    head = weights_of(model.get_layer("head").weights)
    step = make_train_step(model, loss=LOSS, optimizer="adam")
    step(*random_sequences())
    assert len(step.variables) == 3
    assert not np.array_equal(head[0], weights_of(model.get_layer("head").weights)[0])


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
    step(*random_sequences())
    assert [v.name for v in step.variables] == ["prompt"]


def test_sample_weight_and_consistent_arity():
    model = frozen_prompt_mlp()
    step = make_train_step(model, loss=LOSS, optimizer="sgd")
    x, y = random_sequences()
    zero = float(step(x, y, np.zeros(len(y), "float32")))
    assert zero == 0.0
    with pytest.raises(ValueError, match="first called with `sample_weight`"):
        step(x, y)


def test_mixed_float16_uses_loss_scaling_and_keeps_float32_prompt():
    keras.config.set_dtype_policy("mixed_float16")
    model = frozen_prompt_mlp()
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.05))
    before = weights_of(model.trainable_weights)[0]
    step = make_train_step(model, loss=LOSS, optimizer=optimizer)
    for _ in range(3):
        loss = step(*random_sequences())
    assert np.isfinite(float(loss))
    assert model.trainable_weights[0].dtype == "float32"
    assert not np.array_equal(before, weights_of(model.trainable_weights)[0])


def test_no_trainable_variables():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.trainable = False
    step = make_train_step(model, loss=LOSS, optimizer="sgd")
    with pytest.raises(ValueError, match="has no trainable variables, so there is nothing to train"):
        step(np.zeros((2, 3), "float32"), np.zeros(2, "int32"))


def test_scalar_loss_function_is_an_error():
    step = make_train_step(frozen_prompt_mlp(), loss=lambda y, p: keras.ops.mean(p), optimizer="sgd")
    with pytest.raises(ValueError, match="`loss` must return one value per example"):
        step(*random_sequences())


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
