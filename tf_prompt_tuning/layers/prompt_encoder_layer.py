"""`PromptEncoderLayer`: a prompt made by a small encoder over trainable seeds (P-tuning)."""

from __future__ import annotations

import keras

from tf_prompt_tuning._checks import check_choice, check_positive_int
from tf_prompt_tuning.layers.prompt_layer import PromptLayer


ENCODERS = ("mlp", "lstm")


@keras.saving.register_keras_serializable(package="tf_prompt_tuning")
class PromptEncoderLayer(PromptLayer):
    """A prompt produced by a small network over trainable seeds (P-tuning).

    Liu et al. (2021) reparameterize the prompt through an MLP or a
    bidirectional LSTM over trainable seed vectors, which stabilizes
    training. The encoder runs once per step (its input does not depend on
    the batch). For serving, `materialize()` returns its output as a plain
    `(num_tokens, dim)` array; the encoder's weights are kept, so training
    can resume (PEFT discards them on save).

    Args:
        num_tokens: prompt length.
        encoder: "mlp" (default) or "lstm" (bidirectional).
        hidden_dim: width of the encoder (default: the input's dim).
        residual: add the seeds to the encoder's output ("mlp" only).
        initializer: initializer of the seeds (default "uniform").
        placement: as in `PromptLayer`.
        **kwargs: standard layer arguments.

    Example:

    >>> import keras
    >>> import tf_prompt_tuning as tpt
    >>> layer = tpt.PromptEncoderLayer(num_tokens=2, hidden_dim=16)  # an MLP over 2 seeds
    >>> layer(keras.ops.zeros((3, 5, 8))).shape
    TensorShape([3, 7, 8])
    >>> layer.prompt_value().shape, [tuple(w.shape) for w in layer.encoder_weights]
    (TensorShape([2, 8]), [(8, 16), (16,), (16, 8), (8,)])
    """

    def __init__(
        self, num_tokens, encoder="mlp", hidden_dim=None, residual=True, initializer="uniform",
        placement="prepend", **kwargs,
    ):  # fmt: skip
        super().__init__(num_tokens, initializer=initializer, placement=placement, **kwargs)
        check_choice("encoder", encoder, ENCODERS)
        if hidden_dim is not None:
            hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.encoder = encoder
        self.hidden_dim = hidden_dim
        self.residual = bool(residual)

    def build(self, input_shape):
        super().build(input_shape)  # `self.prompt` holds the seeds
        dim = input_shape[-1]
        hidden = self.hidden_dim or dim
        if self.encoder == "mlp":
            self.encoder_layers = [
                keras.layers.Dense(hidden, activation="relu", dtype="float32", name="encoder_hidden"),
                keras.layers.Dense(dim, dtype="float32", name="encoder_out"),
            ]
        else:
            self.encoder_layers = [
                keras.layers.Bidirectional(
                    keras.layers.LSTM(hidden // 2 or 1, return_sequences=True, dtype="float32"),
                    dtype="float32", name="encoder_lstm",
                ),
                keras.layers.Dense(dim, dtype="float32", name="encoder_out"),
            ]  # fmt: skip
        shape = (1, self.num_tokens, dim)
        for layer in self.encoder_layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def prompt_value(self):
        """The `(num_tokens, dim)` float32 prompt the encoder makes from the seeds."""
        x = self.prompt[None]
        for layer in self.encoder_layers:
            x = layer(x)
        if self.residual and self.encoder == "mlp":
            x = x + self.prompt[None]
        return x[0]

    @property
    def encoder_weights(self) -> list:
        """The encoder's variables, in a fixed order (saved for resuming)."""
        return [w for layer in self.encoder_layers for w in layer.weights]

    def get_config(self):
        config = super().get_config()
        config.update(encoder=self.encoder, hidden_dim=self.hidden_dim, residual=self.residual)
        return config
