"""`causal_decoder`: how to run one family of KerasHub causal LM step by step.

`PromptCausalLM` inserts the prompt between a backbone's token embedding and
its transformer layers, gives every real token its own position whatever
the padding, and decodes from a key/value cache it owns. Those three things
differ by family: where positions enter (a learned table added to the
embeddings, or rotary inside attention), how the embeddings are scaled, and
how a layer reads and writes the cache. A `CausalDecoder` holds exactly
that, using the backbone's own layers and weights. Supporting a new family
means one subclass here and one entry in `DECODERS`.

Every decoder takes the same arguments:
- `positions` `(batch, seq)`: the position of each query token;
- `key_positions` `(batch, keys)`: the position of each key (with a cache,
  of every cache slot);
- `key_mask` `(batch, keys)`: 1 at the keys that may be attended to;
- `caches`, `cache_index`: a list of per-layer caches, `(batch, 2, keys,
  kv_heads, head_dim)`, and the slot of the first query token;
- `rewrite`: optional `rewrite(i, x)`, applied to the hidden states before
  every transformer layer `i >= 1` (deep prompts, P-tuning v2).
Causality is by slot (a query sees keys up to its own slot).

`read` runs a batch of inputs once and keeps their keys and values (an
`InputCache`); `continue_from` then runs more positions after them (an
appended prompt, a label) reading that cache. In a causal decoder nothing
after an input changes its keys and values, so the cache is exact, and the
gradient reaches only the new positions.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
from keras import ops
from tensorflow.compiler.tf2xla.python import xla


def _dynamic_update_slice_gradient(op, upstream):
    """The gradient TensorFlow lacks for `XlaDynamicUpdateSlice`, the op
    `keras.ops.slice_update` makes: the written block's gradient is the
    upstream slice there, the operand's is the upstream with that block zero."""
    _, update, indices = op.inputs
    return (
        xla.dynamic_update_slice(upstream, tf.zeros_like(update), indices),
        xla.dynamic_slice(upstream, indices, tf.shape(update)),
        None,
    )


# Every cached attention (KerasHub's own layers and ours) writes new keys and
# values with `slice_update`; this makes positions run after a cache trainable.
try:
    tf.RegisterGradient("XlaDynamicUpdateSlice")(_dynamic_update_slice_gradient)
except KeyError:  # a TensorFlow that defines it already
    pass


class InputCache(NamedTuple):
    """A batch of inputs as the frozen decoder read them: per-layer keys and
    values with room for more positions after the input. A named tuple, so
    it passes through `tf.function`, `tf.data` and training steps as is.

    Attributes:
        caches: a tuple, per layer, of `(batch, 2, input_slots + new_slots,
            kv_heads, head_dim)`.
        key_positions: `(batch, input_slots + new_slots)`: the input's
            positions, then those of the slots after it.
        key_mask: `(batch, input_slots + new_slots)`: 1 at the real input
            tokens and at every slot after the input.
        lengths: `(batch,)`: the real tokens of each input.
        input_slots: the padded input length (the first free slot), an int32 scalar.
    """

    caches: list
    key_positions: object
    key_mask: object
    lengths: object
    input_slots: object


def tile_cache(cache: InputCache, times: int) -> InputCache:
    """`cache` with its batch repeated `times` times (batch-major blocks:
    all rows, then all rows again), so several prompts can run after one read."""

    def tile(x):
        return ops.tile(x, [times] + [1] * (len(x.shape) - 1))

    return InputCache(
        tuple(tile(c) for c in cache.caches), tile(cache.key_positions), tile(cache.key_mask),
        tile(cache.lengths), cache.input_slots,
    )  # fmt: skip


class CausalDecoder:
    """Runs a KerasHub causal LM backbone with explicit positions and a cache.

    Example:

    >>> import keras_hub, numpy as np
    >>> import tf_prompt_tuning as tpt
    >>> from tf_prompt_tuning.backbones.causal_decoder import causal_decoder
    >>> backbone = keras_hub.models.GPT2Backbone(vocabulary_size=40, num_layers=2, num_heads=2,
    ...     hidden_dim=8, intermediate_dim=16, max_sequence_length=24)
    >>> decoder = causal_decoder(backbone)  # the family's subclass
    >>> isinstance(decoder, tpt.CausalDecoder), type(decoder).__name__, decoder.max_positions
    (True, 'LearnedPositionDecoder', 24)
    >>> positions, mask = np.array([[0, 1, 2]]), np.ones((1, 3), "int32")
    >>> x = decoder.start(decoder.embed_tokens(np.array([[5, 6, 7]])), positions)
    >>> hidden, caches = decoder.run(x, positions, positions, mask)  # no cache: caches == []
    >>> decoder.logits(hidden).shape
    TensorShape([1, 3, 40])
    """

    def __init__(self, backbone):
        self.backbone = backbone
        self.layers = backbone.transformer_layers

    @classmethod
    def fits(cls, backbone) -> bool:
        raise NotImplementedError

    @property
    def max_positions(self) -> int | None:
        """The most positions the backbone can take (None: no fixed limit)."""
        return None

    def embed_tokens(self, token_ids):
        """Token embeddings, in the space the prompt lives in."""
        return self.backbone.token_embedding(token_ids)

    def start(self, x, positions):
        """The transformer layers' input from the (prompted) embeddings."""
        raise NotImplementedError

    def run(self, x, positions, key_positions, key_mask, caches=None, cache_index=None, rewrite=None):
        """Runs every transformer layer and the final norm; returns
        `(hidden, updated caches)` (an empty list without caches)."""
        raise NotImplementedError

    def empty_caches(self, batch, slots) -> list:
        raise NotImplementedError

    def logits(self, hidden):
        """Logits over the vocabulary, float32."""
        return ops.cast(self.backbone.token_embedding(hidden, reverse=True), "float32")

    def read(
        self, token_ids, padding_mask, new_slots: int, after_positions=None, after_mask=None, *, return_hidden=False
    ):
        """Runs the inputs once, without a gradient, keeping their keys and
        values and `new_slots` free slots after them.

        Real tokens take positions 0, 1, ... whatever the padding side. The
        free slots continue from each row's last real token, all attended
        to, unless `after_positions` and `after_mask` `(batch, new_slots)`
        say otherwise (a continuation that skips some slots). Returns an
        `InputCache`, and with `return_hidden` also the input's final hidden
        states `(batch, seq, dim)`.
        """
        mask = ops.cast(padding_mask, "int32")
        batch, length = ops.shape(mask)[0], ops.shape(mask)[1]
        positions = ops.maximum(ops.cumsum(mask, axis=1) - 1, 0)
        lengths = ops.sum(mask, axis=1)
        if after_positions is None:
            after_positions = lengths[:, None] + ops.arange(new_slots, dtype="int32")[None, :]
        if after_mask is None:
            after_mask = ops.ones_like(after_positions)
        key_positions = ops.concatenate([positions, ops.cast(after_positions, "int32")], axis=1)
        key_mask = ops.concatenate([mask, ops.cast(after_mask, "int32")], axis=1)
        x = self.start(self.embed_tokens(token_ids), positions)
        hidden, caches = self.run(x, positions, key_positions, key_mask, self.empty_caches(batch, length + new_slots), 0)
        cache = InputCache(
            tuple(ops.stop_gradient(cache) for cache in caches), key_positions, key_mask, lengths,
            ops.convert_to_tensor(length, "int32"),
        )
        return (cache, ops.stop_gradient(hidden)) if return_hidden else cache

    @property
    def key_value_shape(self) -> tuple:
        """`(kv_heads, head_dim)`: one cache entry of one layer and token."""
        return tuple(self.empty_caches(1, 1)[0].shape[3:])

    def run_after_prefix(self, token_ids, padding_mask, prefix):
        """The inputs' final hidden states `(batch, seq, dim)`, every layer
        reading keys and values `prefix` `(num_layers, 2, n, kv_heads,
        head_dim)` in front of them (prefix tuning, P-tuning v2).

        The prefix takes positions 0 .. n - 1 and the real tokens follow from
        n, as if n tokens came first: a prefix holding the keys and values
        that tokens `t` give (`read`) makes this the plain model on `t`
        followed by the inputs. The gradient reaches `prefix`."""
        n = prefix.shape[2]
        mask = ops.cast(padding_mask, "int32")
        batch, length = ops.shape(mask)[0], ops.shape(mask)[1]
        positions = n + ops.maximum(ops.cumsum(mask, axis=1) - 1, 0)
        ahead = ops.zeros_like(mask[:, :1]) + ops.arange(n, dtype="int32")[None, :]
        key_positions = ops.concatenate([ahead, positions], axis=1)
        key_mask = ops.concatenate([ops.ones_like(ahead), mask], axis=1)
        empty = self.empty_caches(batch, length)
        caches = [
            ops.concatenate([ops.broadcast_to(ops.cast(prefix[i], e.dtype)[None], (batch, *prefix.shape[1:])), e], axis=2)
            for i, e in enumerate(empty)
        ]
        x = self.start(self.embed_tokens(token_ids), positions)
        hidden, _ = self.run(x, positions, key_positions, key_mask, caches, n)
        return hidden

    def continue_from(self, cache: InputCache, x, offset=0, rewrite=None):
        """Runs embedded positions `x` `(batch, k, dim)` after the cached
        input, in its free slots `offset .. offset + k - 1`, at the positions
        `read` gave those slots (`rewrite` as in `run`). Returns `(hidden,
        caches)`, the caches now holding `x`'s keys and values too."""
        first = cache.input_slots + offset
        positions = ops.slice(
            cache.key_positions, ops.stack([0, first]), ops.stack([ops.shape(x)[0], ops.shape(x)[1]])
        )
        return self.run(
            self.start(x, positions), positions, cache.key_positions, cache.key_mask, cache.caches, first, rewrite
        )  # fmt: skip


def _slot_causal(key_mask, num_queries, cache_index):
    """`(batch, queries, keys)` bool: key slot <= query slot, and the key is real."""
    keys = ops.shape(key_mask)[1]
    start = 0 if cache_index is None else cache_index
    query_slots = ops.arange(num_queries, dtype="int32")[:, None] + start
    allowed = ops.arange(keys, dtype="int32")[None, :] <= query_slots
    return ops.logical_and(allowed[None], ops.cast(key_mask, "bool")[:, None, :])


class LearnedPositionDecoder(CausalDecoder):
    """GPT-2 and OPT: a learned position table added to the token embeddings,
    KerasHub `TransformerDecoder` layers, a final layer norm."""

    @staticmethod
    def _position_table(backbone):
        layer = getattr(backbone, "position_embedding", None)
        if layer is None:  # OPT embeds tokens and positions in one layer
            layer = getattr(getattr(backbone, "embeddings", None), "position_embedding", None)
        return layer

    @classmethod
    def fits(cls, backbone) -> bool:
        from keras_hub.layers import PositionEmbedding, TransformerDecoder

        layers = getattr(backbone, "transformer_layers", None) or []
        return bool(
            isinstance(getattr(backbone, "token_embedding", None), keras.layers.ReversibleEmbedding)
            and isinstance(cls._position_table(backbone), PositionEmbedding)
            and layers
            and all(isinstance(layer, TransformerDecoder) for layer in layers)
            and getattr(backbone, "layer_norm", None) is not None
        )

    @property
    def max_positions(self):
        return self.backbone.max_sequence_length

    def start(self, x, positions):
        return x + self._position_table(self.backbone)(x, positions=positions)

    def run(self, x, positions, key_positions, key_mask, caches=None, cache_index=None, rewrite=None):
        # The layers add causality themselves, offset by `cache_index`.
        attention_mask = key_mask[:, None, :]
        updated = []
        for i, layer in enumerate(self.layers):
            if i and rewrite is not None:
                x = rewrite(i, x)
            if caches is None:
                x = layer(x, decoder_attention_mask=attention_mask, training=False)
            else:
                x, cache = layer(
                    x, decoder_attention_mask=attention_mask, self_attention_cache=caches[i],
                    self_attention_cache_update_index=cache_index, training=False,
                )  # fmt: skip
                updated.append(cache)
        return self.backbone.layer_norm(x), updated

    def empty_caches(self, batch, slots):
        head_dim = self.backbone.hidden_dim // self.backbone.num_heads
        shape = [batch, 2, slots, self.backbone.num_heads, head_dim]
        return [ops.zeros(shape, self.layers[0].compute_dtype) for _ in self.layers]


class Gemma3Decoder(CausalDecoder):
    """Gemma 3: embeddings scaled by sqrt(hidden_dim), rotary positions in
    every attention layer, local (sliding-window) and global layers.

    KerasHub's `Gemma3DecoderBlock` takes a start index, not per-example
    positions, so this runs each block's own sublayers with the rotary
    angles of each token's position: left- and right-padded rows get the
    same positions, and the sliding window counts positions, not slots.
    """

    @classmethod
    def fits(cls, backbone) -> bool:
        from keras_hub.models import Gemma3Backbone

        return isinstance(backbone, Gemma3Backbone) and backbone.vision_encoder is None

    def start(self, x, positions):
        return x * ops.cast(ops.sqrt(self.backbone.hidden_dim), x.dtype)

    def run(self, x, positions, key_positions, key_mask, caches=None, cache_index=None, rewrite=None):
        causal = _slot_causal(key_mask, ops.shape(x)[1], cache_index)
        distance = ops.cast(positions, "int32")[:, :, None] - ops.cast(key_positions, "int32")[:, None, :]
        masks = {}  # per window size (None: global), made once for all layers
        updated = []
        for i, block in enumerate(self.layers):
            if i and rewrite is not None:
                x = rewrite(i, x)
            attention = block.attention
            window = attention.sliding_window_size if attention.use_sliding_window_attention else None
            if window not in masks:
                masks[window] = causal if window is None else ops.logical_and(causal, distance < window)
            mask = masks[window]
            cache = None if caches is None else caches[i]
            h = block.pre_attention_norm(x)
            h, cache = self._attend(attention, h, positions, mask, cache, cache_index)
            x = x + block.post_attention_norm(h)
            h = block.pre_ffw_norm(x)
            h = keras.activations.gelu(block.gating_ffw(h), approximate=True) * block.gating_ffw_2(h)
            x = x + block.post_ffw_norm(block.ffw_linear(h))
            if cache is not None:
                updated.append(cache)
        return self.backbone.layer_norm(x), updated

    @staticmethod
    def _attend(attention, x, positions, mask, cache, cache_index):
        query = attention.rope_layer(attention.query_norm(attention.query_dense(x)), positions=positions)
        key = attention.rope_layer(attention.key_norm(attention.key_dense(x)), positions=positions)
        value = attention.value_dense(x)
        if cache is not None:
            start = [0, cache_index, 0, 0]
            key = ops.slice_update(cache[:, 0], start, key)
            value = ops.slice_update(cache[:, 1], start, value)
            cache = ops.stack([key, value], axis=1)
        if attention.query_head_dim_normalize:
            scale = 1 / np.sqrt(attention.head_dim)
        else:
            scale = 1 / np.sqrt(attention.hidden_dim // attention.num_query_heads)
        batch, length = ops.shape(query)[0], ops.shape(query)[1]
        # Grouped-query attention: each key/value head serves `groups` query heads.
        groups = attention.num_query_heads // attention.num_key_value_heads
        query = ops.reshape(query * ops.cast(scale, query.dtype), (batch, length, attention.num_key_value_heads, groups, attention.head_dim))
        scores = ops.einsum("btkgh,bskh->bkgts", query, key)
        if attention.logit_soft_cap is not None:
            cap = attention.logit_soft_cap
            scores = ops.tanh(scores / cap) * cap
        scores = ops.where(mask[:, None, None], ops.cast(scores, "float32"), -1e9)
        weights = ops.cast(ops.softmax(scores, axis=-1), value.dtype)
        output = ops.einsum("bkgts,bskh->btkgh", weights, value)
        output = ops.reshape(output, (batch, length, attention.num_query_heads, attention.head_dim))
        return attention.output_dense(output), cache

    def empty_caches(self, batch, slots):
        attention = self.layers[0].attention
        shape = [batch, 2, slots, attention.num_key_value_heads, attention.head_dim]
        return [ops.zeros(shape, self.layers[0].compute_dtype) for _ in self.layers]


# Tried in order; the first that fits a backbone runs it.
DECODERS = (LearnedPositionDecoder, Gemma3Decoder)


def causal_decoder(backbone) -> CausalDecoder:
    """The `CausalDecoder` for `backbone`; raises if no family fits."""
    for decoder in DECODERS:
        if decoder.fits(backbone):
            return decoder(backbone)
    raise ValueError(
        "`backbone` must be a KerasHub causal LM backbone of a supported family: GPT-2 or OPT "
        "(a reversible token embedding, learned positions, TransformerDecoder layers), or "
        f"a text-only Gemma 3. Received: {type(backbone).__name__}."
    )
