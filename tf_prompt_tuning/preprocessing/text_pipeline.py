"""`make_text_dataset`: texts and labels to batched, tokenized, prefetched tensors."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile

import numpy as np
import tensorflow as tf

from tf_prompt_tuning._checks import check_positive_int
from tf_prompt_tuning.backbones._keras_internals import make_sentencepiece_op

# Sequence lengths are padded up to a multiple of this, so a compiled step
# sees a handful of shapes, not one per batch.
PAD_TO_MULTIPLE = 16


def model_inputs(features: dict, input_names) -> dict:
    """`features` as a model taking `input_names` wants them: zero
    `segment_ids` (one text, one segment) added where taken, features it
    does not take dropped. The one place segment ids are made."""
    if "segment_ids" in input_names and "segment_ids" not in features:
        features = dict(features, segment_ids=tf.zeros_like(features["token_ids"]))
    return {name: value for name, value in features.items() if name in input_names}


# What SentencePiece prints on every load of a model with an identity
# normalizer (Gemma's, as llama.cpp's file gives it): information, not news.
_SENTENCEPIECE_NOISE = "precompiled_charsmap is empty"


@contextlib.contextmanager
def quiet_sentencepiece():
    """Drops SentencePiece's "precompiled_charsmap is empty" line while a
    tokenizer's op is made; every other line still reaches stderr.

    TensorFlow Text's SentencePiece copy logs from C++ straight to file
    descriptor 2, with no setting to quiet it, so that descriptor is read
    for the duration and written back without the line.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().splitlines(keepends=True)
            kept = b"".join(line for line in lines if _SENTENCEPIECE_NOISE.encode() not in line)
            if kept:
                os.write(2, kept)


def ready_for_graphs(tokenizer):
    """`tokenizer`, with its TensorFlow ops made again if they may be stale.

    `tf.random.set_seed` (and so `keras.utils.set_random_seed`) clears
    TensorFlow's kernel cache, which deletes the model a SentencePiece
    tokenizer's op holds (Gemma, T5, ...): a `tf.data` pipeline or a graph
    built afterwards fails with "Resource ... SentencepieceOp does not
    exist". This makes the op again, outside any graph as KerasHub requires.
    Only the op is made (KerasHub's `_set_proto_tf`, which its public
    `set_proto` calls first): `set_proto` also rebuilds the vocabulary
    lists, which for Gemma's 262k pieces takes seconds, on every call. It is
    the fallback for a KerasHub without `_set_proto_tf`.
    """
    if getattr(tokenizer, "proto", None) is None:
        return tokenizer
    with quiet_sentencepiece():
        if not make_sentencepiece_op(tokenizer) and hasattr(tokenizer, "set_proto"):
            tokenizer.set_proto(tokenizer.proto)
    return tokenizer


def special_tokens(tokenizer, sequence_length):
    """`(start, end, pad, count)`: the ids framing each text (None if absent);
    raises if `sequence_length` leaves no room for text."""
    sequence_length = check_positive_int("sequence_length", sequence_length)
    start = getattr(tokenizer, "start_token_id", None)
    end = getattr(tokenizer, "end_token_id", None)
    pad = getattr(tokenizer, "pad_token_id", None) or 0
    specials = (start is not None) + (end is not None)
    if sequence_length <= specials:
        raise ValueError(
            f"`sequence_length` must leave room for text after the {specials} special "
            f"tokens: use at least {specials + 1}. Received: sequence_length={sequence_length}."
        )
    return start, end, pad, specials


def _tokenize(tokenizer, texts) -> tf.RaggedTensor:
    """Token ids of a batch of strings as an int32 RaggedTensor (batch, None)."""
    # NUL characters out first: in a graph, KerasHub's tokenizers read a text
    # only up to its first NUL, eagerly the whole text; every path would not
    # frame "\x00F" alike (and no tokenizer gives NUL a meaning).
    ids = tokenizer(tf.strings.regex_replace(tf.convert_to_tensor(texts), "\\x00", ""))
    # In a graph KerasHub tokenizers return a RaggedTensor; eagerly, a dense
    # array when all texts have the same length and Python lists otherwise.
    if isinstance(ids, (list, tuple)):
        ids = tf.ragged.constant(ids, dtype=tf.int32, ragged_rank=1)
    elif not isinstance(ids, tf.RaggedTensor):
        ids = tf.RaggedTensor.from_tensor(tf.convert_to_tensor(ids))
    return tf.cast(ids, tf.int32)


def frame_texts(tokenizer, texts, sequence_length: int) -> tf.RaggedTensor:
    """`[start] tokens [end]` for each string of `texts`, truncated to
    `sequence_length`: the one framing every text path uses (a text that
    tokenizes to nothing, such as "" or spaces, still gets its start and
    end tokens)."""
    start, end, _, specials = special_tokens(tokenizer, sequence_length)
    ids = _tokenize(tokenizer, texts)[:, : sequence_length - specials]
    # One column per row, built from the row count: a column sliced from
    # `ids` would be empty for a text with no tokens.
    column = tf.ones([ids.nrows(), 1], tf.int32)
    parts = ([column * start] if start is not None else []) + [ids]
    parts += [column * end] if end is not None else []
    return tf.concat(parts, axis=1)


def encode_texts(tokenizer, texts, sequence_length: int, *, pad_to_multiple_of: int = 1) -> dict:
    """Tokenizes a batch of strings into `token_ids` and `padding_mask`.

    The same framing as `make_text_dataset` (`[start] tokens [end]`,
    truncated to `sequence_length`), padded to the batch's longest text
    (rounded up to `pad_to_multiple_of`, at most `sequence_length`). Pure
    TensorFlow ops, so it also runs inside `tf.data` and an exported
    serving graph.

    Example:

    >>> import keras_hub
    >>> import tf_prompt_tuning as tpt
    >>> tokenizer = keras_hub.models.BertTokenizer(
    ...     vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dull", "mess"])
    >>> inputs = tpt.encode_texts(tokenizer, ["a dull mess", "dull"], sequence_length=8)
    >>> inputs["token_ids"].numpy().tolist()
    [[2, 5, 6, 7, 3], [2, 6, 3, 0, 0]]
    >>> inputs["padding_mask"].numpy().tolist()
    [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    """
    pad = special_tokens(tokenizer, sequence_length)[2]
    ids = frame_texts(tokenizer, texts, sequence_length)
    width = tf.cast(tf.reduce_max(tf.concat([ids.row_lengths(), [0]], 0)), tf.int32)  # 0 for no texts
    width = tf.minimum(-(-width // pad_to_multiple_of) * pad_to_multiple_of, sequence_length)
    token_ids = ids.to_tensor(default_value=pad)
    token_ids = tf.pad(token_ids, [[0, 0], [0, width - tf.shape(token_ids)[1]]], constant_values=pad)
    padding_mask = tf.sequence_mask(ids.row_lengths(), width, dtype=tf.int32)
    return {"token_ids": token_ids, "padding_mask": padding_mask}


def text_data(data) -> tuple[tuple[str, ...], np.ndarray]:
    """`(texts, labels)` of `data` (any object with `texts` and `labels`),
    the labels as int32; raises, naming what is wrong, for anything that
    is not one integer class index per string."""
    if not (hasattr(data, "texts") and hasattr(data, "labels")):
        raise TypeError(
            "`data` must have `texts` (strings) and `labels` (integer class indices), such as "
            f"`types.SimpleNamespace(texts=[...], labels=[...])`. Received: {type(data).__name__}."
        )
    texts = tuple(data.texts.tolist() if isinstance(data.texts, np.ndarray) else data.texts)
    kinds = sorted({type(text).__name__ for text in texts if not isinstance(text, str)})
    if kinds:
        raise TypeError(f"`data.texts` must all be strings. Received: items of type {kinds}.")
    labels = np.asarray(data.labels)
    if labels.ndim != 1 or len(labels) != len(texts):
        raise ValueError(
            f"`data.labels` must hold one label per text ({len(texts)}). "
            f"Received: labels of shape {labels.shape}."
        )
    if labels.size and (labels.dtype.kind not in "iu"):
        raise TypeError(
            "`data.labels` must be integer class indices (0, 1, ...), not names or other values. "
            f"Received: labels of dtype {labels.dtype}, first {labels[0].item()!r}. Map names to indices "
            "first, e.g. `[label_names.index(name) for name in names]`."
        )
    if labels.size and (labels.min() < 0 or labels.max() > np.iinfo("int32").max):
        raise ValueError(
            "`data.labels` must be class indices from 0 (and fit in int32). "
            f"Received: labels from {labels.min()} to {labels.max()}."
        )
    return texts, labels.astype("int32")


def make_text_dataset(
    data,
    *,
    tokenizer,
    sequence_length: int,
    batch_size: int,
    input_names=("token_ids", "padding_mask", "segment_ids"),
    shuffle: bool = False,
    seed: int = 0,
    bucket_by_length: bool = True,
) -> tf.data.Dataset:
    """Tokenizes `data` with the backbone's own tokenizer inside `tf.data`.

    Each text becomes `[start] tokens [end]` (`[CLS] ... [SEP]` for BERT),
    truncated to `sequence_length`. Batches are padded only as far as they
    need: with `bucket_by_length`, examples of similar length are batched
    together (lengths rounded up to a multiple of 16), which on short
    sentences halves the work of padding everything to `sequence_length`;
    without it (to keep the input order), each batch is padded to its own
    longest example, rounded the same way.

    Args:
        data: the texts and labels: any object with `texts` (strings) and
            `labels` (integers), such as the application's `TextDataset`.
        tokenizer: a KerasHub tokenizer.
        sequence_length: the longest token sequence, special tokens included.
        batch_size: examples per batch.
        input_names: the model's inputs to produce (`segment_ids` are zeros).
        shuffle: reshuffle the examples every epoch (seeded).
        seed: the shuffle seed.
        bucket_by_length: group examples of similar length (changes order).

    Returns:
        A dataset of `(inputs, labels)` with `inputs` a dict of int32 tensors.

    Example:

    >>> from types import SimpleNamespace
    >>> import keras_hub
    >>> import tf_prompt_tuning as tpt
    >>> tokenizer = keras_hub.models.BertTokenizer(
    ...     vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dull", "mess"])
    >>> data = SimpleNamespace(texts=["a dull mess", "dull", "a mess"], labels=[0, 0, 1])
    >>> dataset = tpt.make_text_dataset(data, tokenizer=tokenizer, sequence_length=8,
    ...                                 batch_size=2, bucket_by_length=False)
    >>> for inputs, labels in dataset:
    ...     print(sorted(inputs), inputs["token_ids"].shape, labels.numpy().tolist())
    ['padding_mask', 'segment_ids', 'token_ids'] (2, 8) [0, 0]
    ['padding_mask', 'segment_ids', 'token_ids'] (1, 8) [1]
    """
    batch_size = check_positive_int("batch_size", batch_size)
    _, _, pad, specials = special_tokens(tokenizer, sequence_length)
    texts, labels = text_data(data)
    ready_for_graphs(tokenizer)

    def encode(text, label):
        ids = frame_texts(tokenizer, text[None], sequence_length)[0]
        return {"token_ids": ids, "padding_mask": tf.ones_like(ids)}, label

    def finish(features, labels):
        length = tf.shape(features["token_ids"])[1]
        padded = tf.minimum(-(-length // PAD_TO_MULTIPLE) * PAD_TO_MULTIPLE, sequence_length)
        features = {
            name: tf.pad(value, [[0, 0], [0, padded - length]], constant_values=pad if name == "token_ids" else 0)
            for name, value in features.items()
        }
        return model_inputs(features, input_names), labels

    dataset = tf.data.Dataset.from_tensor_slices((tf.constant(texts, tf.string), labels))
    if shuffle:
        dataset = dataset.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(encode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    padding = ({"token_ids": pad, "padding_mask": 0}, 0)
    if bucket_by_length:
        boundaries = list(range(PAD_TO_MULTIPLE + 1, sequence_length + 1, PAD_TO_MULTIPLE))
        dataset = dataset.bucket_by_sequence_length(
            element_length_func=lambda features, _: tf.shape(features["token_ids"])[0],
            bucket_boundaries=boundaries,
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            padding_values=padding,
        )
    else:
        dataset = dataset.padded_batch(batch_size, padding_values=padding)
    dataset = dataset.map(finish, num_parallel_calls=tf.data.AUTOTUNE)
    if bucket_by_length:
        # Bucketing hides the number of batches from tf.data; it is known
        # from the lengths, and progress bars and schedules need it.
        boundaries = np.array(boundaries)
        lengths = np.minimum(_token_counts(tokenizer, texts) + specials, sequence_length)
        per_bucket = np.bincount(np.searchsorted(boundaries, lengths, side="right"))
        batches = int(np.sum(-(-per_bucket // batch_size)))
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches))
    return dataset.prefetch(tf.data.AUTOTUNE)


@functools.lru_cache(maxsize=8)
def _token_counts(tokenizer, texts: tuple, chunk: int = 4096) -> np.ndarray:
    """The number of tokens of each text, before framing and truncation
    (kept for the last few data sets: every epoch makes its dataset anew)."""
    counts = []
    for i in range(0, len(texts), chunk):
        counts.append(_tokenize(tokenizer, tf.constant(list(texts[i : i + chunk]), tf.string)).row_lengths().numpy())
    return np.concatenate(counts) if counts else np.zeros(0, "int64")
