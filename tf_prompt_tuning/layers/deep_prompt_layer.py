"""`DeepPromptLayer`: a prompt for every transformer layer (P-tuning v2)."""

from __future__ import annotations

import keras
from keras import ops

from tf_prompt_tuning import initializers
from tf_prompt_tuning._checks import check_positive_int
from tf_prompt_tuning.layers.prompt_layer import PromptLayer


@keras.saving.register_keras_serializable(package="tf_prompt_tuning")
class DeepPromptLayer(PromptLayer):
    """A prompt for every transformer layer (deep prompt tuning, P-tuning v2).

    Layer 0's prompt is inserted into the embedded sequence like a
    `PromptLayer`'s (so the vocabulary initializers apply to it). Before each
    later transformer layer `i`, calling the layer with `layer_index=i`
    overwrites the hidden states at the prompt positions with that layer's
    own trainable vectors. Appended after the text (placement "append"),
    they are added to the prompt positions' hidden states instead: what an
    appended position computes at one layer reaches the output only through
    its own hidden state (the text before it never reads it), so
    overwriting it would leave every layer's prompt but the last without a
    gradient.
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

    Example:

    >>> import keras
    >>> import tf_prompt_tuning as tpt
    >>> layer = tpt.DeepPromptLayer(num_tokens=2, num_layers=3)
    >>> hidden = layer(keras.ops.zeros((4, 5, 8)))  # layer 0: inserts the prompt
    >>> hidden.shape, layer.deep_prompts.shape
    (TensorShape([4, 7, 8]), TensorShape([2, 2, 8]))
    >>> layer(hidden, layer_index=2).shape  # before layer 2: rewrites it in place
    TensorShape([4, 7, 8])
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
        """Inserts the prompt (layer 0), or rewrites it before layer `layer_index`
        (placement "append": adds to it, after each row's text, which the
        input's `padding_mask` locates, as at layer 0)."""
        if not layer_index:
            return super().call(inputs, padding_mask=padding_mask, mask=mask)
        block = self.layer_prompt(layer_index, inputs.dtype)
        if self.placement == "append":
            return self._rewrite_appended(inputs, block, padding_mask)
        start = 0 if self.placement == "prepend" else 1
        end = start + self.num_tokens
        block = ops.zeros_like(inputs[:, start:end]) + block[None]
        return ops.concatenate([inputs[:, :start], block, inputs[:, end:]], axis=1)

    def layer_prompt(self, layer_index, dtype):
        """The `(num_tokens, dim)` prompt that enters transformer layer `layer_index >= 1`."""
        return ops.cast(self.deep_prompts[layer_index - 1], dtype)

    def _rewrite_appended(self, inputs, block, padding_mask):
        if padding_mask is None:  # no padding: the prompt is the last n positions
            prompt = inputs[:, -self.num_tokens :] + block[None]
            return ops.concatenate([inputs[:, : -self.num_tokens], prompt], axis=1)
        mask = ops.cast(padding_mask, "int32")
        ends = ops.max(mask * ops.cumsum(ops.ones_like(mask), axis=1), axis=1, keepdims=True)
        # Slot j of a row holds prompt vector j - end where 0 <= j - end < n.
        offsets = ops.cumsum(ops.ones_like(inputs[..., 0], dtype="int32"), axis=1) - 1 - ends
        inside = ops.logical_and(offsets >= 0, offsets < self.num_tokens)
        vectors = ops.take(block, ops.clip(offsets, 0, self.num_tokens - 1), axis=0)
        return ops.where(inside[..., None], inputs + vectors, inputs)

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
