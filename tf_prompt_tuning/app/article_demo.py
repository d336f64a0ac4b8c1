"""The seed tutorial's example, reproduced with the library.

A tiny frozen Dense model (hidden 4, ReLU, 2 logits) reads the mean of a
prompted sequence; only the 2x2 prompt trains (Adam, lr 0.01, 5000 steps).
The tutorial says the model is frozen but never freezes it; here it is, and
the demo checks that its weights come out bit-identical.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from tf_prompt_tuning.app.plotting import plot_losses
from tf_prompt_tuning.initializers import FromArray
from tf_prompt_tuning.layers.prompt_layer import PromptLayer
from tf_prompt_tuning.training.freezing import ParameterSummary, freeze
from tf_prompt_tuning.training.train_step import make_train_step

# The tutorial's data: the embedded sentence "The food is delicious", its
# label (positive) and the prompt's starting value.
SENTENCE = [[0.2, 0.8], [0.5, 0.4], [0.9, 0.1], [0.6, 0.7]]
TARGET = 1
INITIAL_PROMPT = [[0.1, 0.5], [-0.4, 0.9]]


@keras.saving.register_keras_serializable(package="tf_prompt_tuning")
class SimpleModel(keras.Model):
    """The tutorial's stand-in for a pre-trained model, with seeded weights."""

    def __init__(self, hidden_size=4, num_classes=2, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.num_classes = num_classes
        self.seed = seed
        self.fc1 = keras.layers.Dense(
            hidden_size,
            activation="relu",
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
            name="fc1",
        )
        self.fc2 = keras.layers.Dense(
            num_classes,
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1),
            name="fc2",
        )

    def call(self, x):
        return self.fc2(self.fc1(x))

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, num_classes=self.num_classes, seed=self.seed)
        return config


def build_article_model(seed: int = 0) -> keras.Sequential:
    """Prompt -> mean over the prompted sequence -> the frozen `SimpleModel`."""
    model = keras.Sequential(
        [
            keras.Input(shape=(len(SENTENCE), 2)),
            PromptLayer(2, initializer=FromArray(INITIAL_PROMPT), name="prompt"),
            keras.layers.GlobalAveragePooling1D(name="mean_pool"),
            SimpleModel(seed=seed, name="frozen_model"),
        ],
        name="article_model",
    )
    return model


@dataclasses.dataclass
class DemoResult:
    losses: list[float]
    prompt_before: np.ndarray
    prompt_after: np.ndarray
    frozen_unchanged: bool
    parameters: ParameterSummary
    probability: float
    plot_path: str | None

    @property
    def initial_loss(self) -> float:
        return self.losses[0]

    @property
    def final_loss(self) -> float:
        return self.losses[-1]


def run_article_demo(
    *,
    steps: int = 5000,
    learning_rate: float = 0.01,
    seed: int = 0,
    log_every: int = 500,
    plot_path: str | None = "outputs/demo/loss.png",
    jit_compile: bool = False,
    print_fn=print,
) -> DemoResult:
    """Runs the tutorial's training with a really frozen model.

    Args:
        steps: optimizer steps (the tutorial's "epochs").
        learning_rate: Adam's learning rate.
        seed: seed of the frozen model's weights.
        log_every: print the loss every this many steps (0: never).
        plot_path: where to save the loss curve PNG (`None`: no plot).
        jit_compile: compile the step with XLA.
        print_fn: where progress lines go.
    """
    model = build_article_model(seed)
    parameters = freeze(model)
    print_fn(str(parameters))
    frozen_before = [v.numpy().copy() for v in model.non_trainable_weights]
    prompt_before = model.get_layer("prompt").prompt.numpy().copy()

    x = np.asarray([SENTENCE], dtype="float32")
    y = np.asarray([TARGET], dtype="int32")
    step = make_train_step(
        model,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=keras.optimizers.Adam(learning_rate),
        jit_compile=jit_compile,
    )
    losses = []
    for i in range(steps):
        losses.append(float(step(x, y)))
        if log_every and (i % log_every == 0 or i == steps - 1):
            print_fn(f"step {i:5d}  loss {losses[-1]:.6f}")

    prompt_after = model.get_layer("prompt").prompt.numpy().copy()
    frozen_unchanged = all(
        np.array_equal(before, v.numpy())
        for before, v in zip(frozen_before, model.non_trainable_weights)
    )
    probability = float(keras.ops.softmax(model(x))[0, TARGET])
    print_fn(f"optimized prompt:\n{prompt_after}")
    print_fn(f"P(positive) = {probability:.4f}; frozen weights unchanged: {frozen_unchanged}")
    if plot_path:
        plot_losses(losses, plot_path, title="Article demo: loss over steps")
        print_fn(f"loss curve saved to {plot_path}")
    return DemoResult(
        losses=losses,
        prompt_before=prompt_before,
        prompt_after=prompt_after,
        frozen_unchanged=frozen_unchanged,
        parameters=parameters,
        probability=probability,
        plot_path=plot_path,
    )
