"""Every private Keras and KerasHub API the library uses, in one place.

Each is here because no public API does the job; the comment above each
says why. `tests/backbones/test_keras_internals.py` checks every one against the
installed Keras and KerasHub, so a release that renames or removes one
fails there, by name, instead of somewhere inside a training run. Nothing
outside this module reaches into a Keras or KerasHub object's private
attributes (`tests/test_layout.py` checks that too).
"""

from __future__ import annotations

import contextlib
import types


def run_through_graph(model, inputs, call_fn):
    """Re-runs a functional `model` on `inputs`, calling `call_fn(layer,
    *args, **kwargs)` for every layer call: what `keras.models.clone_model(
    ..., call_function=...)` does, without the intermediate model it builds,
    which could not take inputs the original lacks (a bank's `task_id`)."""
    return model._run_through_graph(inputs, call_fn=call_fn)


@contextlib.contextmanager
def unlocked(layer):
    """Lets a built layer (or model) gain variables and sublayers: Keras locks
    a built layer's state, and Keras's own `enable_lora` unlocks it the same
    way. A bank grows a task at a time, after it was built."""
    layer._tracker.unlock()
    try:
        yield layer
    finally:
        layer._tracker.lock()


def inner_layers(layer, *, recursive=True):
    """Every layer inside `layer` (not itself), each once, in creation order:
    `Layer.layers` is the functional graph's direct layers only, and misses
    layers held in attributes and lists of a subclassed model."""
    return list(layer._flatten_layers(include_self=False, recursive=recursive))


def own_trainable_variables(layer):
    """The trainable variables `layer` created itself, without its sublayers':
    `trainable_variables` includes theirs, and freezing one sublayer must
    leave the others alone."""
    return list(layer._trainable_variables)


def make_sentencepiece_op(tokenizer):
    """Makes a KerasHub SentencePiece tokenizer's TensorFlow op again, from
    its proto. The public `set_proto` also rebuilds the vocabulary lists
    (seconds for Gemma's 262k pieces, on every call); KerasHub's
    `_set_proto_tf` makes the op alone. Returns False where KerasHub has no
    such method (then `set_proto` must do)."""
    if not hasattr(tokenizer, "_set_proto_tf"):
        return False
    tokenizer._set_proto_tf(tokenizer.proto)
    return True


# The sublayers of KerasHub's `TransformerEncoder`, by the name used here.
ENCODER_SUBLAYERS = {
    "attention_norm": "_self_attention_layer_norm",
    "attention": "_self_attention_layer",
    "attention_dropout": "_self_attention_dropout",
    "feedforward_norm": "_feedforward_layer_norm",
    "intermediate_dense": "_feedforward_intermediate_dense",
    "output_dense": "_feedforward_output_dense",
    "feedforward_dropout": "_feedforward_dropout",
}


def encoder_sublayers(layer) -> types.SimpleNamespace:
    """A KerasHub `TransformerEncoder`'s own sublayers, to run its steps with
    extra keys and values (`prefixed_encoder_call`: KerasHub has no hook for
    them) or to change one (MiniLM's exact GELU: the preset's config cannot
    say which GELU)."""
    return types.SimpleNamespace(**{name: getattr(layer, private) for name, private in ENCODER_SUBLAYERS.items()})
