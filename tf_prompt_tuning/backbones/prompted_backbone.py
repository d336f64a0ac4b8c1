"""`prompted_backbone`: a KerasHub backbone with a prompt in its embedded sequence.

KerasHub backbones take token ids, not embeddings, so the prompt has to go
in between their embedding layer and their transformer layers. Rather than
re-implement each family's forward pass, this re-runs the backbone's own
functional graph with its own layers (as `keras.models.clone_model` does
with a `call_function`) and intercepts two things:

- the output of the layer that embeds `token_ids` gets the prompt inserted
  (for BERT and GPT-2 that is the token embedding, before position and
  segment embeddings are added, so the prompt lives in the vocabulary's
  embedding space and gets positions like any token; in families that embed
  tokens and positions in one layer it lands after that layer);
- every other per-position input is extended to the new length: the
  padding mask with ones (attention sees the prompt, never the padding),
  anything else (segment ids) with zeros.

With key/value prefixes (`PrefixLayer`), each transformer layer is run with
its prefixes instead (`prefix_layer.PrefixedTransformerLayer`).

Any functional KerasHub backbone with a `token_ids` input fits: BERT,
RoBERTa, DistilBERT, ELECTRA, GPT-2, OPT, Llama, Gemma, ...
"""

from __future__ import annotations

import keras

from tf_prompt_tuning.backbones._keras_internals import run_through_graph
from tf_prompt_tuning.layers.prefix_layer import (
    PrefixedTransformerLayer,
    PrefixLayer,
    check_prefixable,
)
from tf_prompt_tuning.layers.prompt_layer import PromptLayer


def check_sequence_fits(backbone, num_tokens: int, length: int | None):
    """Raises if `length` tokens plus the prompt exceed the backbone's positions."""
    limit = getattr(backbone, "max_sequence_length", None)
    if length is not None and limit is not None and length + num_tokens > limit:
        raise ValueError(sequence_too_long(limit, num_tokens, length))


def sequence_too_long(limit: int, num_tokens: int, length: int, what: str = "A sequence of") -> str:
    """The error for `length` tokens that do not fit `limit` positions with a
    `num_tokens`-token prompt, naming what does fit."""
    fixes = []
    if limit - num_tokens >= 1:
        fixes.append(f"use a sequence length of at most {limit - num_tokens}")
    if num_tokens and limit - length >= 1:
        fixes.append(f"{'' if fixes else 'use '}a prompt of at most {limit - length} tokens")
    if not fixes:  # the prompt alone fills the table, and so does the text
        fixes.append(f"use a prompt of fewer than {limit} tokens and a shorter sequence")
    fix = " or ".join(fixes)
    return (
        f"{what} {length} tokens plus the {num_tokens}-token prompt exceeds the backbone's "
        f"maximum of {limit} positions. {fix[0].upper()}{fix[1:]}."
    )


def sequence_output(outputs):
    """The `(batch, seq, dim)` hidden states among a backbone's outputs."""
    if isinstance(outputs, dict):
        return outputs["sequence_output"]
    return outputs


def _fill_value(name: str) -> int:
    """What a per-position input holds at the prompt positions: the padding
    mask ones (attention sees the prompt), anything else (segment ids) zeros."""
    return 1 if name == "padding_mask" else 0


def _embeds_token_ids(token_ids, args, kwargs, outputs) -> bool:
    """Whether a layer called on `args, kwargs` embedded `token_ids`."""
    return len(outputs.shape) == 3 and any(arg is token_ids for arg in keras.tree.flatten((args, kwargs)))


class _MaskExtension(keras.layers.Layer):
    """`prompt.extend_mask(mask, fill, task_id=...)`, run as a layer so that a
    bank's current tasks decide the layout each time the model runs."""

    def __init__(self, prompt, fill_value, **kwargs):
        super().__init__(**kwargs)
        self.prompt = prompt
        self.fill_value = fill_value

    def build(self, *shapes, **named_shapes):
        pass  # no state of its own; the prompt builds itself

    def call(self, mask, task_id):
        return self.prompt.extend_mask(mask, self.fill_value, task_id=task_id)


def _deep_layers(backbone, prompt) -> dict:
    """`{id(layer): its index}` of the transformer layers before which a deep
    prompt (a DeepPromptLayer, or a bank that holds deep tasks) rewrites the
    prompt positions; empty for a prompt of the input only."""
    if prompt is None or not prompt.num_layers:
        return {}
    deep_layers = {id(layer): i for i, layer in enumerate(backbone.transformer_layers)}
    if len(deep_layers) != prompt.num_layers:
        raise ValueError(
            f"The deep prompt has {prompt.num_layers} layers, the backbone "
            f"{len(deep_layers)} transformer layers. Make them equal."
        )
    return deep_layers


def _prefixed_layers(backbone, prefixes) -> dict:
    """`{id(layer): the layer with key/value prefixes}` for each transformer layer."""
    if prefixes is None:
        return {}
    check_prefixable(backbone)
    layers = backbone.transformer_layers
    if len(layers) != prefixes.num_layers:
        raise ValueError(
            f"The prefixes have {prefixes.num_layers} layers, the backbone "
            f"{len(layers)} transformer layers. Make them equal."
        )
    return {id(layer): PrefixedTransformerLayer(layer, prefixes, i) for i, layer in enumerate(layers)}


def prompted_backbone(
    backbone: keras.Model, prompt: PromptLayer | None, *, prefixes: PrefixLayer | None = None
) -> keras.Model:
    """Builds a functional model running `backbone` with `prompt` inserted.

    The new model shares every layer (and so every weight) with `backbone`;
    it adds only the prompt's (and prefixes') variables. Its inputs are the
    backbone's; its outputs are `{"sequence_output": (batch, n + seq, dim),
    "padding_mask": (batch, n + seq)}` with the padding mask extended over
    the prompt.

    Args:
        backbone: a functional KerasHub backbone with a `token_ids` input.
        prompt: the `PromptLayer` (or `PromptBankLayer`, which adds a
            `task_id` input), or `None` for the backbone alone (a head-only
            baseline through the same code path).
        prefixes: a `PrefixLayer` (key/value prefixes inside every
            attention layer, P-tuning v2), for backbones of KerasHub
            `TransformerEncoder` layers; it adds no positions.

    Example:

    >>> import keras_hub, numpy as np
    >>> import tf_prompt_tuning as tpt
    >>> backbone = keras_hub.models.BertBackbone(vocabulary_size=40, num_layers=2, num_heads=2,
    ...     hidden_dim=8, intermediate_dim=16, max_sequence_length=24)
    >>> prompt = tpt.PromptLayer(3, placement="after_first")
    >>> model = tpt.prompted_backbone(backbone, prompt)
    >>> x = {"token_ids": np.array([[2, 5, 6, 3]] * 2), "padding_mask": np.ones((2, 4), "int32"),
    ...      "segment_ids": np.zeros((2, 4), "int32")}
    >>> outputs = model(x)
    >>> outputs["sequence_output"].shape, outputs["padding_mask"].shape
    (TensorShape([2, 7, 8]), TensorShape([2, 7]))
    >>> model.get_layer("token_embedding") is backbone.get_layer("token_embedding")  # shared
    True
    >>> prompt.prompt.shape  # the one new weight
    TensorShape([3, 8])
    """
    backbone_inputs = getattr(backbone, "input", None)
    input_names = list(backbone_inputs) if isinstance(backbone_inputs, dict) else []
    if "token_ids" not in input_names or "padding_mask" not in input_names:
        raise ValueError(
            f"`backbone` must be a functional KerasHub backbone whose inputs include "
            f"'token_ids' and 'padding_mask'. Received: {type(backbone).__name__} with "
            f"inputs {input_names or backbone_inputs}."
        )
    inputs = {
        name: keras.Input(shape=(None,), dtype=backbone.input[name].dtype, name=name)
        for name in input_names
    }
    # A prompt that picks its vectors per example (a PromptBankLayer) declares
    # the extra inputs it reads, e.g. `task_id`.
    extra = {
        name: keras.Input(shape=shape, dtype=dtype, name=name)
        for part in (prompt, prefixes) if part is not None
        for name, (shape, dtype) in part.extra_inputs.items()
    }
    extended = dict(inputs)
    # An appended prompt goes after each row's last real token: the padding mask says where.
    ends = {"padding_mask": inputs["padding_mask"]} if prompt is not None and prompt.placement == "append" else {}
    if prompt is not None:
        for name in input_names:
            if name != "token_ids":
                if extra:  # a bank's layout is per example, from tasks added later
                    extended[name] = _MaskExtension(prompt, _fill_value(name))(inputs[name], **extra)
                else:
                    extended[name] = prompt.extend_mask(inputs[name], _fill_value(name), **ends)
    substitutes = {id(inputs[name]): extended[name] for name in input_names}
    embedding_layers = []
    deep_layers = _deep_layers(backbone, prompt)
    prefixed = _prefixed_layers(backbone, prefixes)

    def call_function(layer, *args, **kwargs):
        original = (args, kwargs)
        args, kwargs = keras.tree.map_structure(
            lambda x: substitutes.get(id(x), x), (args, kwargs)
        )
        if deep_layers.get(id(layer), 0) > 0:
            args = (prompt(args[0], layer_index=deep_layers[id(layer)], **ends, **extra), *args[1:])
        if id(layer) in prefixed:
            return prefixed[id(layer)](*args, **kwargs, **extra)
        outputs = layer(*args, **kwargs)
        if _embeds_token_ids(inputs["token_ids"], *original, outputs):
            embedding_layers.append(layer.name)
            if prompt is not None:
                outputs = prompt(outputs, **ends, **extra)
                outputs = outputs[0] if ends else outputs
        return outputs

    # What `keras.models.clone_model(..., call_function=...)` runs, minus the
    # intermediate model it builds, which could not take the extra inputs.
    outputs = run_through_graph(backbone, inputs, call_function)
    if len(embedding_layers) != 1:
        raise ValueError(
            "Could not find the one layer of the backbone that embeds 'token_ids' "
            f"(found {embedding_layers}), so there is nowhere to insert the prompt."
        )
    return keras.Model(
        {**inputs, **extra},
        {
            "sequence_output": sequence_output(outputs),
            "padding_mask": extended["padding_mask"],
        },
        name=f"prompted_{backbone.name}",
    )


def prompt_hidden_states(backbone: keras.Model, prompt: PromptLayer, first_token_id: int | None = None):
    """The hidden states `prompt`'s positions reach before each transformer layer.

    Runs `backbone` once with `prompt` inserted into its embedded sequence
    and nothing rewritten after that (a shallow prompt), and returns, for
    every transformer layer after the first, the `(num_tokens, dim)` hidden
    states entering it at the prompt positions: `(num_layers - 1, num_tokens,
    dim)`. A `DeepPromptLayer` started from them computes what the shallow
    prompt computes, so deep training starts from the shallow prompt's
    function rather than from random vectors in the residual stream.

    The text is one token: `first_token_id` (the start token, which placement
    "after_first" keeps in front of the prompt) or, for placement "prepend",
    a masked-out pad. In a causal decoder the prompt positions see no later
    token, so the states are exactly those of any input starting that way;
    in a bidirectional encoder they also see the text, and these are the
    states without it.

    Args:
        backbone: a functional KerasHub backbone (as for `prompted_backbone`).
        prompt: the layer that inserts the prompt (a `PromptLayer` or
            `DeepPromptLayer`, whose layer-0 prompt is used).
        first_token_id: the token inputs start with; needed for placement
            "after_first".

    Example:

    >>> import keras_hub
    >>> import tf_prompt_tuning as tpt
    >>> backbone = keras_hub.models.GPT2Backbone(vocabulary_size=40, num_layers=3, num_heads=2,
    ...     hidden_dim=8, intermediate_dim=16, max_sequence_length=24)
    >>> prompt = tpt.DeepPromptLayer(num_tokens=2, num_layers=3)
    >>> tpt.prompt_hidden_states(backbone, prompt).shape
    (2, 2, 8)
    """
    if prompt.placement == "after_first" and first_token_id is None:
        raise ValueError(
            "With placement 'after_first' the prompt's hidden states depend on the token in "
            "front of it. Pass `first_token_id` (the tokenizer's start token). Received: "
            "first_token_id=None."
        )
    names = list(backbone.input)
    token = 0 if first_token_id is None else int(first_token_id)
    inputs = {name: keras.ops.zeros((1, 1), backbone.input[name].dtype) for name in names}
    inputs["token_ids"] = keras.ops.full((1, 1), token, backbone.input["token_ids"].dtype)
    # The pad of "prepend" is masked out, so an encoder's prompt sees only itself.
    inputs["padding_mask"] = keras.ops.full((1, 1), int(first_token_id is not None), backbone.input["padding_mask"].dtype)
    extended = {
        id(value): prompt.extend_mask(value, _fill_value(name)) for name, value in inputs.items() if name != "token_ids"
    }
    layer_index = {id(layer): i for i, layer in enumerate(backbone.transformer_layers)}
    start = 0 if prompt.placement == "prepend" else 1
    states = {}

    def call_function(layer, *args, **kwargs):
        original = (args, kwargs)
        args, kwargs = keras.tree.map_structure(lambda x: extended.get(id(x), x), (args, kwargs))
        if layer_index.get(id(layer), 0) > 0:
            states[layer_index[id(layer)]] = args[0][0, start : start + prompt.num_tokens]
        outputs = layer(*args, **kwargs)
        if _embeds_token_ids(inputs["token_ids"], *original, outputs):
            outputs = prompt(outputs)  # layer 0 only: a shallow prompt
        return outputs

    run_through_graph(backbone, inputs, call_function)
    return keras.ops.convert_to_numpy(
        keras.ops.cast(keras.ops.stack([states[i] for i in range(1, len(layer_index))]), "float32")
    )
