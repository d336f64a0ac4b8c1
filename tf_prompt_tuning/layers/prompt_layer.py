"""`PromptLayer`: trainable soft-prompt vectors inserted into a sequence."""

from __future__ import annotations

import keras
from keras import ops

from tf_prompt_tuning import initializers
from tf_prompt_tuning._checks import check_choice, check_positive_int

PLACEMENTS = ("prepend", "after_first", "append")


def check_placement(placement) -> str:
    return check_choice(
        "placement", placement, PLACEMENTS,
        'Use "after_first" to keep a [CLS]/BOS token in front of the prompt, "append" to put it after the text.',
    )  # fmt: skip


def insert_block(sequence, block, placement: str, padding_mask=None):
    """Inserts `block` into `sequence` along axis 1 at `placement`.

    "append" puts the block right after each row's last real token, which
    `padding_mask` locates (without it, after the last position); any
    padding then follows the block.
    """
    if placement == "prepend":
        return ops.concatenate([block, sequence], axis=1)
    if placement == "after_first":
        return ops.concatenate([sequence[:, :1], block, sequence[:, 1:]], axis=1)
    if padding_mask is None:
        return ops.concatenate([sequence, block], axis=1)
    # Output slot j takes the input's slot j before the row's end, the
    # block's slot j - end next, then the input's slot j - n (padding).
    # Counted with cumulative sums, not shapes: symbolic shapes are unknown.
    mask = ops.cast(padding_mask, "int32")
    in_block = ops.ones_like(ops.cast(block[..., 0] if len(block.shape) == 3 else block, "int32"))
    length = ops.sum(ops.ones_like(mask), axis=1, keepdims=True)
    n = ops.sum(in_block, axis=1, keepdims=True)
    # Each row's end: one past its last real token, on either padding side.
    ends = ops.max(mask * ops.cumsum(ops.ones_like(mask), axis=1), axis=1, keepdims=True)
    slots = ops.cumsum(ops.concatenate([ops.ones_like(mask), in_block], axis=1), axis=1) - 1
    source = ops.where(slots < ends, slots, ops.where(slots < ends + n, length + slots - ends, slots - n))
    joined = ops.concatenate([sequence, block], axis=1)
    if len(joined.shape) == 3:
        source = source[:, :, None]
    return ops.take_along_axis(joined, source, axis=1)


@keras.saving.register_keras_serializable(package="tf_prompt_tuning")
class PromptLayer(keras.layers.Layer):
    """Inserts `num_tokens` trainable vectors into an embedded sequence.

    Maps `[x1..xm]` to `[P1..Pn, x1..xm]` (placement `"prepend"`), to
    `[x1, P1..Pn, x2..xm]` (placement `"after_first"`, which keeps a
    `[CLS]`/BOS token first so pooling and position conventions still hold)
    or to `[x1..xm, P1..Pn]` (placement `"append"`: after each row's last
    real token, which `padding_mask` locates, the padding after the prompt).
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
        placement: `"prepend"` (default), `"after_first"` or `"append"`.
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

    # What `prompted_backbone` asks every prompt layer: the inputs it reads
    # besides the hidden states (a bank's `task_id`), by name: (shape, dtype);
    # and the transformer layers it rewrites the prompt before (None: the
    # input only; see `DeepPromptLayer`).
    extra_inputs: dict = {}
    num_layers: int | None = None

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
        outputs = insert_block(inputs, prompt, self.placement, padding_mask)
        if padding_mask is None:
            return outputs
        return outputs, self.extend_mask(padding_mask, padding_mask=padding_mask)

    def prompt_value(self):
        """The `(num_tokens, dim)` float32 prompt inserted into the sequence."""
        return self.prompt

    def extend_mask(self, mask, fill_value=True, padding_mask=None):
        """Inserts `num_tokens` entries of `fill_value` into a `(batch, seq)` tensor.

        Used for padding masks (fill `True`) and for other per-position
        inputs such as segment ids (fill 0). Placement "append" needs the
        `padding_mask` of the sequence to find each row's end.
        """
        # `full_like` on a column, not `full` on a shape: it also works on
        # symbolic tensors whose batch size is unknown.
        column = ops.full_like(mask[:, :1], fill_value)
        block = ops.repeat(column, self.num_tokens, axis=1)
        return insert_block(mask, block, self.placement, padding_mask)

    def compute_mask(self, inputs, mask=None, padding_mask=None):
        lengths_from = padding_mask if padding_mask is not None else mask
        extended = None if mask is None else self.extend_mask(ops.cast(mask, "bool"), padding_mask=lengths_from)
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
