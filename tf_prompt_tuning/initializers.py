"""Initializers for soft prompts.

Lester et al. (2021) rank three schemes: class-label embeddings, then
embeddings sampled from the most frequent tokens, then uniform noise in
[-0.5, 0.5]. Uniform noise needs nothing but a shape, so it is the default
and usable by name. The others read the frozen model's token-embedding
matrix; they are functions that resolve to a `FromArray` holding the chosen
vectors, so the result serializes as a few kilobytes of numbers rather than
the whole vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from tf_prompt_tuning._checks import check_choice, check_positive_int

UNIFORM_RANGE = 0.5
# The named schemes of `make_prompt_initializer` (and the command line's --init).
SCHEMES = ("uniform", "vocab", "text", "labels")


@keras.saving.register_keras_serializable(package="tf_prompt_tuning")
class FromArray(keras.initializers.Initializer):
    """Initializes a prompt to a given `(num_tokens, dim)` array.

    Args:
        value: array-like of shape `(num_tokens, dim)`.

    Example:

    >>> init = FromArray([[0.1, 0.5], [-0.4, 0.9]])
    >>> init((2, 2)).numpy().tolist()
    [[0.10000000149011612, 0.5], [-0.4000000059604645, 0.8999999761581421]]
    """

    def __init__(self, value):
        value = np.asarray(value, dtype="float32")
        if value.ndim != 2:
            raise ValueError(
                "`value` must be a 2-D array of shape (num_tokens, dim). "
                f"Received: value with shape {value.shape}."
            )
        self.value = value

    def __call__(self, shape, dtype=None):
        if tuple(shape) != self.value.shape:
            raise ValueError(
                f"The initializer's array has shape {self.value.shape}, but the "
                f"prompt needs shape {tuple(shape)} (num_tokens, dim). Pass an "
                "array of that shape, or change `num_tokens` to match."
            )
        return keras.ops.convert_to_tensor(self.value, dtype=dtype or "float32")

    def get_config(self):
        return {"value": self.value.tolist()}


def uniform(seed: int | None = None) -> keras.initializers.Initializer:
    """Uniform in [-0.5, 0.5], the random scheme of Lester et al. (2021)."""
    return keras.initializers.RandomUniform(-UNIFORM_RANGE, UNIFORM_RANGE, seed=seed)


def _embedding_matrix(embeddings) -> np.ndarray:
    matrix = np.asarray(keras.ops.convert_to_numpy(embeddings), dtype="float32")
    if matrix.ndim != 2:
        raise ValueError(
            "`embeddings` must be the 2-D token-embedding matrix "
            f"(vocabulary_size, dim). Received: shape {matrix.shape}."
        )
    return matrix


def _sample_ids(pool_size: int, count: int, seed: int | None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(pool_size, size=count, replace=count > pool_size)


def from_vocabulary(
    embeddings, num_tokens: int, *, top_k: int | None = None, seed: int | None = None
) -> FromArray:
    """Rows sampled from a token-embedding matrix.

    Args:
        embeddings: the frozen model's `(vocabulary_size, dim)` embeddings.
        num_tokens: prompt length.
        top_k: sample only from the first `top_k` rows. Tokenizers whose
            vocabularies are sorted by frequency (WordPiece, BPE merges) put
            the most frequent tokens first, as Lester et al. (2021) sample.
        seed: seed of the sampler.
    """
    matrix = _embedding_matrix(embeddings)
    num_tokens = check_positive_int("num_tokens", num_tokens)
    pool = matrix.shape[0] if top_k is None else int(top_k)
    if not 0 < pool <= matrix.shape[0]:
        raise ValueError(
            f"`top_k` must be in [1, {matrix.shape[0]}] (the vocabulary size). "
            f"Received: top_k={top_k}."
        )
    return FromArray(matrix[_sample_ids(pool, num_tokens, seed)])


def from_token_ids(embeddings, token_ids: Sequence[int], num_tokens: int) -> FromArray:
    """The embeddings of a text's token ids, repeated or cut to `num_tokens`.

    Tokenize the text with the model's own tokenizer (without special
    tokens) and pass the ids.
    """
    matrix = _embedding_matrix(embeddings)
    num_tokens = check_positive_int("num_tokens", num_tokens)
    ids = np.asarray(token_ids, dtype="int64").reshape(-1)
    if ids.size == 0:
        raise ValueError("`token_ids` is empty. Pass the ids of a non-empty text.")
    if ids.min() < 0 or ids.max() >= matrix.shape[0]:
        raise ValueError(
            f"`token_ids` must be in [0, {matrix.shape[0]}). "
            f"Received ids from {ids.min()} to {ids.max()}."
        )
    return FromArray(matrix[np.resize(ids, num_tokens)])


def from_class_labels(
    embeddings,
    label_token_ids: Sequence[Sequence[int]],
    num_tokens: int,
    *,
    top_k: int | None = 5000,
    seed: int | None = None,
) -> FromArray:
    """Class-label embeddings first, then vocabulary samples (Lester et al. 2021).

    Each label's pieces are averaged into one vector; the remaining
    positions are sampled from the first `top_k` rows.

    Args:
        embeddings: the frozen model's `(vocabulary_size, dim)` embeddings.
        label_token_ids: one list of token ids per class label.
        num_tokens: prompt length; at least the number of labels.
        top_k: pool for the remaining positions (`None`: whole vocabulary).
        seed: seed of the sampler.
    """
    matrix = _embedding_matrix(embeddings)
    num_tokens = check_positive_int("num_tokens", num_tokens)
    if num_tokens < len(label_token_ids):
        raise ValueError(
            f"`num_tokens`={num_tokens} is less than the {len(label_token_ids)} class "
            "labels. Use at least one prompt token per label."
        )
    rows = []
    for i, ids in enumerate(label_token_ids):
        ids = np.asarray(ids, dtype="int64").reshape(-1)
        if ids.size == 0:
            raise ValueError(
                f"Label {i} has no token ids. Received: label_token_ids={label_token_ids!r}."
            )
        rows.append(matrix[ids].mean(axis=0))
    rest = num_tokens - len(rows)
    if rest:
        pool = matrix.shape[0] if top_k is None else min(int(top_k), matrix.shape[0])
        rows.extend(matrix[_sample_ids(pool, rest, seed)])
    return FromArray(np.stack(rows))


# Names that need nothing but a shape. Schemes that read an embedding
# matrix are resolved by the model that owns one (see `PromptTextClassifier`).
_BY_NAME = {"uniform": uniform, "random_uniform": uniform}


def get(identifier) -> keras.initializers.Initializer:
    """Resolves an initializer from a name, a config dict, an array or an object.

    Names: "uniform" (the default, [-0.5, 0.5]) and any Keras initializer
    name ("zeros", "glorot_uniform", ...). An array becomes `FromArray`.
    """
    if isinstance(identifier, keras.initializers.Initializer):
        return identifier
    if isinstance(identifier, dict):
        return keras.initializers.deserialize(identifier)
    if isinstance(identifier, (np.ndarray, list, tuple)):
        return FromArray(identifier)
    if isinstance(identifier, str):
        if identifier in _BY_NAME:
            return _BY_NAME[identifier]()
        try:
            return keras.initializers.get(identifier)
        except ValueError:
            pass
    raise ValueError(
        f"Unknown prompt initializer: {identifier!r}. Use one of {sorted(_BY_NAME)}, "
        "a Keras initializer name or object, an array of shape (num_tokens, dim), or "
        "tf_prompt_tuning.initializers.from_vocabulary / from_token_ids / "
        "from_class_labels for schemes that read the model's embeddings."
    )


# Lester et al. (2021) sample prompt vectors from the 5,000 most frequent tokens.
VOCAB_TOP_K = 5000


def make_prompt_initializer(
    kind: str,
    *,
    backbone,
    num_tokens: int,
    tokenizer=None,
    label_names: Sequence[str] | None = None,
    text: str | None = None,
    seed: int | None = None,
):
    """Resolves a named initialization scheme against a backbone's vocabulary.

    Args:
        kind: "uniform" ([-0.5, 0.5]), "vocab" (rows sampled from the 5,000
            most frequent tokens), "text" (the embeddings of `text`'s
            tokens, repeated to length) or "labels" (the embeddings of the
            class names, then vocabulary samples), after Lester et al. 2021.
        backbone: the KerasHub backbone whose token embeddings are read.
        num_tokens: prompt length.
        tokenizer: the backbone's tokenizer ("text" and "labels").
        label_names: class names ("labels").
        text: the text ("text").
        seed: seed of the random schemes.

    Example:

    >>> import keras_hub
    >>> import tf_prompt_tuning as tpt
    >>> backbone = keras_hub.models.BertBackbone(vocabulary_size=40, num_layers=2, num_heads=2,
    ...     hidden_dim=8, intermediate_dim=16, max_sequence_length=24)
    >>> tokenizer = keras_hub.models.BertTokenizer(
    ...     vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "bad", "good"])
    >>> init = tpt.make_prompt_initializer("labels", backbone=backbone, num_tokens=4,
    ...     tokenizer=tokenizer, label_names=["bad", "good"], seed=0)
    >>> type(init).__name__, init((4, 8)).shape
    ('FromArray', TensorShape([4, 8]))
    >>> embeddings = backbone.token_embedding.embeddings.numpy()
    >>> bool((init.value[:2] == embeddings[[5, 6]]).all())  # the label words' own vectors
    True
    """
    check_choice("kind", kind, SCHEMES)
    if kind == "uniform":
        return uniform(seed=seed)
    embeddings = backbone.token_embedding.embeddings
    if kind == "vocab":
        top_k = min(VOCAB_TOP_K, embeddings.shape[0])
        return from_vocabulary(embeddings, num_tokens, top_k=top_k, seed=seed)
    needed = {"text": text, "labels": label_names}[kind]
    if tokenizer is None or not needed:
        what = "`text`" if kind == "text" else "`label_names`"
        raise ValueError(f'The "{kind}" initializer needs `tokenizer` and {what}.')

    def ids(string):
        return [int(i) for i in np.asarray(keras.ops.convert_to_numpy(tokenizer(string))).reshape(-1)]

    if kind == "text":
        return from_token_ids(embeddings, ids(text), num_tokens)
    return from_class_labels(
        embeddings,
        [ids(name) for name in label_names],
        num_tokens,
        top_k=min(VOCAB_TOP_K, embeddings.shape[0]),
        seed=seed,
    )
