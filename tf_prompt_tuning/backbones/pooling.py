"""`pool`: a sequence of hidden states to one vector per example, and the pooling modes.

Adding a mode is a name in `POOLINGS` and its branch in `pool` (plus, if
some backbones cannot use it, a check in `check_pooling`): the classifier,
the banks, prompt files, the job and the command line take the list from
here.
"""

from __future__ import annotations

from keras import ops

from tf_prompt_tuning._checks import check_choice

POOLINGS = ("mean", "cls", "last")


def is_causal(backbone) -> bool:
    """Whether the backbone's transformer layers are decoders (causal attention)."""
    return any("Decoder" in type(layer).__name__ for layer in getattr(backbone, "transformer_layers", ()))


def check_pooling(pooling, backbone) -> str:
    """`pooling` if it is one of POOLINGS and reads the text on `backbone`."""
    check_choice("pooling", pooling, POOLINGS)
    if pooling == "cls" and is_causal(backbone):
        raise ValueError(
            "`pooling='cls'` reads the first position, which a causal backbone "
            f"({type(backbone).__name__}) computes before seeing the text. Received: "
            "pooling='cls'. Use pooling='last' (or 'mean') with decoders."
        )
    return pooling


def pool(sequence, padding_mask, pooling: str):
    """Pools `(batch, seq, dim)` hidden states to `(batch, dim)`.

    "mean": masked mean over every non-padding position (prompt included);
    "cls": the first position; "last": the last non-padding position (for
    decoders, whose last token has seen the whole sequence).

    Example:

    >>> import keras, numpy as np
    >>> sequence = keras.ops.reshape(keras.ops.arange(12, dtype="float32"), (1, 4, 3))
    >>> mask = np.array([[1, 1, 1, 0]])
    >>> [keras.ops.convert_to_numpy(pool(sequence, mask, mode)).tolist() for mode in POOLINGS]
    [[[3.0, 4.0, 5.0]], [[0.0, 1.0, 2.0]], [[6.0, 7.0, 8.0]]]
    """
    if pooling == "cls":
        return sequence[:, 0]
    mask = ops.cast(padding_mask, sequence.dtype)
    if pooling == "mean":
        total = ops.sum(sequence * mask[..., None], axis=1)
        return total / ops.maximum(ops.sum(mask, axis=1, keepdims=True), 1)
    # The last real position, on either padding side.
    slots = ops.arange(1, ops.shape(mask)[1] + 1, dtype="int32")[None, :]
    last = ops.max(ops.cast(padding_mask, "int32") * slots, axis=1) - 1
    return ops.take_along_axis(sequence, ops.maximum(last, 0)[:, None, None], axis=1)[:, 0]
