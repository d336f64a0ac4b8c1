"""`PromptLayer`: trainable soft-prompt vectors inserted into a sequence."""

from __future__ import annotations

import keras
from keras import ops

from tf_prompt_tuning import initializers
from tf_prompt_tuning._checks import check_positive_int

PLACEMENTS = ("prepend", "after_first")


def check_placement(placement) -> str:
    if placement not in PLACEMENTS:
        raise ValueError(
            f"`placement` must be one of {PLACEMENTS}. Received: placement={placement!r}. "
            'Use "after_first" to keep a [CLS]/BOS token in front of the prompt.'
        )
    return placement


def insert_block(sequence, block, placement: str):
    """Inserts `block` into `sequence` along axis 1 at `placement`."""
    if placement == "prepend":
        return ops.concatenate([block, sequence], axis=1)
    return ops.concatenate([sequence[:, :1], block, sequence[:, 1:]], axis=1)


@keras.saving.register_keras_serializable(package="tf_prompt_tuning")
class PromptLayer(keras.layers.Layer):
    """Inserts `num_tokens` trainable vectors into an embedded sequence.

    Maps `[x1..xm]` to `[P1..Pn, x1..xm]` (placement `"prepend"`) or to
    `[x1, P1..Pn, x2..xm]` (placement `"after_first"`, which keeps a
    `[CLS]`/BOS token first so pooling and position conventions still hold).
    The prompt is one `(num_tokens, dim)` variable shared by every example.

    The variable is float32 whatever the dtype policy, and is cast to the
    input's dtype when used: under `mixed_float16` a float16 prompt would
    lose small updates, as Keras keeps LoRA weights in float32 for the same
    reason.

    Masks flow through: a Keras mask on the input, and an explicit
    `padding_mask` argument, are extended with `True` at the prompt
    positions so attention sees the prompt and still skips the padding.

    Args:
        num_tokens: number of prompt vectors, a positive integer.
        initializer: a `tf_prompt_tuning.initializers` or Keras initializer,
            its name, or a `(num_tokens, dim)` array. Defaults to `"uniform"`
            in [-0.5, 0.5], as in Lester et al. (2021).
        placement: `"prepend"` (default) or `"after_first"`.
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: float tensor `(batch, seq, dim)`.
        padding_mask: optional `(batch, seq)` boolean or 0/1 mask. When
            given, the layer returns `(outputs, extended_padding_mask)`.

    Input shape:
        `(batch, seq, dim)`.

    Output shape:
        `(batch, num_tokens + seq, dim)`.

    Example:

    >>> layer = PromptLayer(num_tokens=2)
    >>> layer(keras.ops.zeros((3, 4, 8))).shape
    TensorShape([3, 6, 8])
    """

    def __init__(self, num_tokens, initializer="uniform", placement="prepend", **kwargs):
        super().__init__(**kwargs)
        self.num_tokens = check_positive_int("num_tokens", num_tokens)
        self.initializer = initializers.get(initializer)
        self.placement = check_placement(placement)
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                "`PromptLayer` expects an embedded sequence of rank 3 "
                f"(batch, seq, dim). Received: input_shape={tuple(input_shape)}. "
                "Embed token ids first (e.g. with keras.layers.Embedding)."
            )
        dim = input_shape[-1]
        if dim is None:
            raise ValueError(
                "The last dimension of the input must be known to build the prompt. "
                f"Received: input_shape={tuple(input_shape)}."
            )
        self.prompt = self.add_weight(
            name="prompt",
            shape=(self.num_tokens, dim),
            initializer=self.initializer,
            dtype="float32",
            trainable=True,
        )

    def call(self, inputs, padding_mask=None, mask=None):
        dtype = keras.backend.standardize_dtype(inputs.dtype)
        if not dtype.startswith(("float", "bfloat")):
            raise TypeError(
                "`PromptLayer` expects a float sequence of embeddings. Received: "
                f"inputs with dtype {dtype}. Embed token ids before the prompt layer."
            )
        batch = ops.shape(inputs)[0]
        prompt = ops.cast(self.prompt_value(), inputs.dtype)
        prompt = ops.broadcast_to(prompt[None], (batch, self.num_tokens, prompt.shape[-1]))
        outputs = insert_block(inputs, prompt, self.placement)
        if padding_mask is None:
            return outputs
        return outputs, self.extend_mask(padding_mask)

    def prompt_value(self):
        """The `(num_tokens, dim)` float32 prompt inserted into the sequence."""
        return self.prompt

    def extend_mask(self, mask, fill_value=True):
        """Inserts `num_tokens` entries of `fill_value` into a `(batch, seq)` tensor.

        Used for padding masks (fill `True`) and for other per-position
        inputs such as segment ids (fill 0).
        """
        # `full_like` on a column, not `full` on a shape: it also works on
        # symbolic tensors whose batch size is unknown.
        column = ops.full_like(mask[:, :1], fill_value)
        block = ops.repeat(column, self.num_tokens, axis=1)
        return insert_block(mask, block, self.placement)

    def compute_mask(self, inputs, mask=None, padding_mask=None):
        extended = None if mask is None else self.extend_mask(ops.cast(mask, "bool"))
        if padding_mask is None:
            return extended
        return extended, None

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_tokens": self.num_tokens,
                "initializer": keras.initializers.serialize(self.initializer),
                "placement": self.placement,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="tf_prompt_tuning")
class DeepPromptLayer(PromptLayer):
    """A prompt for every transformer layer (deep prompt tuning, P-tuning v2).

    Layer 0's prompt is inserted into the embedded sequence like a
    `PromptLayer`'s (so the vocabulary initializers apply to it). Before each
    later transformer layer `i`, calling the layer with `layer_index=i`
    overwrites the hidden states at the prompt positions with that layer's
    own trainable vectors.
    Each layer's attention then reads keys and values computed from its own
    prompt, as with P-tuning v2's per-layer prefixes, but through the layer's
    frozen projections, so it works with any transformer layer unchanged
    (decoders included). For KerasHub `TransformerEncoder` layers,
    `PrefixLayer` gives each attention layer independent keys and values
    instead: no prompt positions, so faster steps.

    Args:
        num_tokens: prompt positions.
        num_layers: transformer layers of the backbone.
        initializer: initializer of layer 0's prompt (default "uniform").
        deep_initializer: initializer of the later layers' prompts
            (default "uniform").
        placement: as in `PromptLayer`.
        **kwargs: standard layer arguments.
    """

    def __init__(
        self, num_tokens, num_layers, initializer="uniform", deep_initializer="uniform",
        placement="prepend", **kwargs,
    ):  # fmt: skip
        super().__init__(num_tokens, initializer=initializer, placement=placement, **kwargs)
        self.num_layers = check_positive_int("num_layers", num_layers)
        if self.num_layers < 2:
            raise ValueError(
                "Deep prompts need a backbone of at least 2 transformer layers. "
                f"Received: num_layers={num_layers}. Use a PromptLayer for one layer."
            )
        self.deep_initializer = initializers.get(deep_initializer)

    def build(self, input_shape):
        super().build(input_shape)
        self.deep_prompts = self.add_weight(
            name="deep_prompts",
            shape=(self.num_layers - 1, self.num_tokens, input_shape[-1]),
            initializer=self.deep_initializer,
            dtype="float32",
        )

    def call(self, inputs, padding_mask=None, mask=None, layer_index=0):
        """Inserts the prompt (layer 0), or rewrites it before layer `layer_index`."""
        if not layer_index:
            return super().call(inputs, padding_mask=padding_mask, mask=mask)
        start = 0 if self.placement == "prepend" else 1
        end = start + self.num_tokens
        block = ops.cast(self.deep_prompts[layer_index - 1], inputs.dtype)
        block = ops.zeros_like(inputs[:, start:end]) + block[None]
        return ops.concatenate([inputs[:, :start], block, inputs[:, end:]], axis=1)

    def compute_mask(self, inputs, mask=None, padding_mask=None, layer_index=0):
        if layer_index:
            return mask  # same positions, rewritten in place
        return super().compute_mask(inputs, mask=mask, padding_mask=padding_mask)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_layers": self.num_layers,
                "deep_initializer": keras.initializers.serialize(self.deep_initializer),
            }
        )
        return config


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
    """

    def __init__(
        self, num_tokens, encoder="mlp", hidden_dim=None, residual=True, initializer="uniform",
        placement="prepend", **kwargs,
    ):  # fmt: skip
        super().__init__(num_tokens, initializer=initializer, placement=placement, **kwargs)
        if encoder not in ENCODERS:
            raise ValueError(f"`encoder` must be one of {ENCODERS}. Received: encoder={encoder!r}.")
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
