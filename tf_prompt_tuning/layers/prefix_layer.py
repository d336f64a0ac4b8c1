"""`PrefixLayer`: trainable keys and values for every attention layer (P-tuning v2)."""

from __future__ import annotations

import keras
from keras import ops

from tf_prompt_tuning import initializers
from tf_prompt_tuning._checks import check_positive_int
from tf_prompt_tuning.backbones._keras_internals import encoder_sublayers


@keras.saving.register_keras_serializable(package="tf_prompt_tuning")
class PrefixLayer(keras.layers.Layer):
    """Trainable key/value prefixes for every self-attention layer.

    Prefix tuning (Li and Liang, 2021) and P-tuning v2 (Liu et al., 2022)
    give each transformer layer `num_tokens` extra keys and values that
    every position of the text attends to. Here they are given in the
    attention's input space and mapped by the layer's frozen key and value
    projections; a layer's keys and values are independent of each other.
    Unlike a `DeepPromptLayer` they take no positions in the sequence: they
    do not count against the backbone's maximum length, are not part of the
    pooled mean, and cost only the extra keys: a training step on MiniLM
    took 0.56-0.64 of a `DeepPromptLayer` step in two runs
    (`benchmarks/methods.py --methods deep prefix`).

    `prompted_backbone(backbone, None, prefixes=layer)` runs each of the
    backbone's KerasHub `TransformerEncoder` layers with them.

    The variable is float32 whatever the dtype policy and is cast when used.

    Args:
        num_tokens: prefix length (keys and values per layer).
        num_layers: transformer layers of the backbone.
        initializer: a random or constant Keras initializer, or its name.
            Defaults to `"uniform"` in [-0.5, 0.5], as for prompts.
        key_value_shape: `(kv_heads, head_dim)` for a causal decoder, whose
            prefixes are keys and values as its cache holds them
            (`CausalDecoder.run_after_prefix`); None (default) for inputs
            to an encoder layer's key and value projections.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: the `(batch, seq, dim)` hidden states entering the layer
            (only their batch size, dim and dtype are used).
        layer_index: the transformer layer whose prefixes to return.

    Returns:
        `(keys, values, visible)`: two `(batch, num_tokens, dim)` tensors and
        a `(batch, num_tokens)` boolean mask of the prefix positions the
        text may attend to (all of them here; a bank hides other tasks').

    Example:

    >>> import keras
    >>> import tf_prompt_tuning as tpt
    >>> prefixes = tpt.PrefixLayer(num_tokens=3, num_layers=2)
    >>> keys, values, visible = prefixes(keras.ops.zeros((4, 5, 8)), layer_index=1)
    >>> keys.shape, values.shape, visible.shape, bool(keras.ops.all(visible))
    (TensorShape([4, 3, 8]), TensorShape([4, 3, 8]), TensorShape([4, 3]), True)
    """

    # As `PromptLayer.extra_inputs`; and whether any prefixes are in use (a
    # bank's may not be yet: its layers then run as they are).
    extra_inputs: dict = {}
    active = True

    def __init__(self, num_tokens, num_layers, initializer="uniform", key_value_shape=None, **kwargs):
        super().__init__(**kwargs)
        self.num_tokens = check_positive_int("num_tokens", num_tokens)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.key_value_shape = None if key_value_shape is None else tuple(int(d) for d in key_value_shape)
        self.initializer = initializers.get(initializer)
        if isinstance(self.initializer, initializers.FromArray):
            raise ValueError(
                "`initializer` of a PrefixLayer must be random or constant; received an "
                f"array of shape {self.initializer.value.shape}. Vocabulary, text and label "
                "initializers make input-level prompts: use deep prompts as hidden "
                "states (DeepPromptLayer, deep='hidden') for them."
            )

    def build(self, input_shape):
        # A decoder's prefixes are its cache entries (already projected); an
        # encoder's are inputs to each layer's key and value projections.
        entry = self.key_value_shape or (input_shape[-1],)
        self.prefixes = self.add_weight(
            name="prefixes",
            shape=(self.num_layers, 2, self.num_tokens, *entry),
            initializer=self.initializer,
            dtype="float32",
        )

    def call(self, inputs, layer_index=0):
        batch = ops.shape(inputs)[0]
        keys, values = (
            ops.broadcast_to(ops.cast(p, inputs.dtype)[None], (batch, *p.shape))
            for p in (self.prefixes[layer_index, 0], self.prefixes[layer_index, 1])
        )
        return keys, values, ops.ones_like(keys[..., 0], dtype="bool")

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_tokens": self.num_tokens,
                "num_layers": self.num_layers,
                "initializer": keras.initializers.serialize(self.initializer),
                "key_value_shape": self.key_value_shape,
            }
        )
        return config


def _other_layer_types(backbone) -> list[str] | None:
    """Types of the transformer layers that are not KerasHub `TransformerEncoder`s
    (whose steps `prefixed_encoder_call` re-runs); `None` if there are no layers."""
    import keras_hub

    encoder = keras_hub.layers.TransformerEncoder
    layers = getattr(backbone, "transformer_layers", [])
    if not layers:
        return None
    return sorted({type(layer).__name__ for layer in layers if type(layer).call is not encoder.call})


def is_prefixable(backbone) -> bool:
    """Whether key/value prefixes fit every transformer layer of `backbone`."""
    return _other_layer_types(backbone) == []


def check_prefixable(backbone):
    """Raises unless every transformer layer is a KerasHub `TransformerEncoder`."""
    others = _other_layer_types(backbone)
    if others != []:
        raise ValueError(
            "Key/value prefixes run KerasHub `TransformerEncoder` layers with extra keys and "
            f"values; {backbone.name!r} has transformer layers of type "
            f"{others or 'none'}. Use deep prompts as hidden states (deep='hidden', "
            "DeepPromptLayer), which work with any transformer layer."
        )


def prefixed_encoder_call(layer, x, padding_mask, keys, values, visible, training=False):
    """`TransformerEncoder.call` with `keys`/`values` prepended to attention's.

    The steps of KerasHub's `TransformerEncoder.call`, run with the layer's
    own sublayers: KerasHub has no hook for extra keys and values. With no
    visible prefix it equals the layer's own output (a test checks this on
    the installed KerasHub, so a change there cannot go unnoticed).
    """
    text = ops.ones_like(x[..., 0], dtype="bool") if padding_mask is None else padding_mask
    mask = ops.concatenate([visible, ops.cast(text, "bool")], axis=1)[:, None, :]
    steps = encoder_sublayers(layer)
    residual = x
    if layer.normalize_first:
        x = steps.attention_norm(x)
    x = steps.attention(
        query=x,
        key=ops.concatenate([keys, x], axis=1),
        value=ops.concatenate([values, x], axis=1),
        attention_mask=mask,
        training=training,
    )
    x = steps.attention_dropout(x, training=training) + residual
    if not layer.normalize_first:
        x = steps.attention_norm(x)
    residual = x
    if layer.normalize_first:
        x = steps.feedforward_norm(x)
    x = steps.output_dense(steps.intermediate_dense(x))
    x = steps.feedforward_dropout(x, training=training) + residual
    if not layer.normalize_first:
        x = steps.feedforward_norm(x)
    return x


class PrefixedTransformerLayer(keras.layers.Layer):
    """Runs one backbone `TransformerEncoder` with its prefixes (for `prompted_backbone`)."""

    def __init__(self, layer, prefixes, layer_index, **kwargs):
        # The layer's own policy, so its inputs are cast as the layer's are.
        super().__init__(name=f"prefixed_{layer.name}", dtype=layer.dtype_policy, **kwargs)
        self.layer = layer
        self.prefixes = prefixes
        self.layer_index = layer_index

    def build(self, inputs_shape, padding_mask_shape=None, task_id_shape=None):
        if not self.prefixes.built:
            self.prefixes.build(inputs_shape)

    def call(self, inputs, padding_mask=None, task_id=None, training=False):
        # A bank's prefixes are chosen per example by `task_id`.
        if not self.prefixes.active:
            return self.layer(inputs, padding_mask=padding_mask, training=training)
        extra = {} if task_id is None else {"task_id": task_id}
        keys, values, visible = self.prefixes(inputs, layer_index=self.layer_index, **extra)
        return prefixed_encoder_call(
            self.layer, inputs, padding_mask, keys, values, visible, training=training
        )
