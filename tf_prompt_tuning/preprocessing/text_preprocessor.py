"""`TextPreprocessor`: raw strings to a backbone's token inputs, for task models."""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_prompt_tuning._checks import check_positive_int
from tf_prompt_tuning.preprocessing.text_pipeline import (
    PAD_TO_MULTIPLE,
    encode_texts,
    ready_for_graphs,
    special_tokens,
)


@keras.saving.register_keras_serializable(package="tf_prompt_tuning")
class TextPreprocessor(keras.layers.Layer):
    """Tokenizes strings for a task model, as KerasHub's task preprocessors do.

    Each text becomes `[start] tokens [end]` with the backbone's own
    tokenizer, truncated to `sequence_length`; a batch is padded to its
    longest text, rounded up to a multiple of 16 (so a compiled step sees a
    few shapes). Given to a task model (`preprocessor=`), it lets `fit`,
    `predict`, `evaluate` and `export_saved_model` take strings; the model
    adds segment ids where its backbone takes them.

    Already tokenized inputs (a dict with `token_ids`) pass through
    unchanged. A dict with `text` (a bank's `{"text", "task_id"}`) has its
    text tokenized and its other entries kept.

    Args:
        tokenizer: the backbone's KerasHub tokenizer (`load_backbone`).
        sequence_length: the longest token sequence, special tokens included.
        **kwargs: standard layer arguments (`name`, ...).

    Example:

    >>> import keras_hub
    >>> tokenizer = keras_hub.models.BertTokenizer(
    ...     vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dull", "mess"])
    >>> preprocessor = TextPreprocessor(tokenizer, sequence_length=8)
    >>> inputs = preprocessor(["a dull mess", "dull"])
    >>> inputs["token_ids"].numpy().tolist()
    [[2, 5, 6, 7, 3, 0, 0, 0], [2, 6, 3, 0, 0, 0, 0, 0]]
    >>> inputs["padding_mask"].numpy().tolist()
    [[1, 1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]]
    """

    def __init__(self, tokenizer, sequence_length, **kwargs):
        super().__init__(**kwargs)
        # Strings in, dicts out: no casting of the inputs, as KerasHub's preprocessing layers.
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self.sequence_length = check_positive_int("sequence_length", sequence_length)
        special_tokens(tokenizer, sequence_length)  # room for text after the special tokens
        self.tokenizer = tokenizer
        self.built = True  # no weights

    def call(self, x, y=None, sample_weight=None):
        if isinstance(x, dict) and "text" in x:
            x = dict(x)
            x.update(self._encode(x.pop("text")))
        elif not isinstance(x, dict):
            x = self._encode(x)
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)

    def _encode(self, texts):
        texts = tf.convert_to_tensor(texts)
        if texts.dtype != tf.string or texts.shape.rank != 1:
            raise ValueError(
                "`TextPreprocessor` takes a batch of strings, shape (batch,). Received: "
                f"dtype {texts.dtype.name}, shape {texts.shape}. Pass a list or 1-D array of "
                "strings, or a dict of token ids to skip tokenization."
            )
        return encode_texts(self.tokenizer, texts, self.sequence_length, pad_to_multiple_of=PAD_TO_MULTIPLE)

    def dataset(self, x, y=None, sample_weight=None, *, batch_size=None, shuffle=False) -> tf.data.Dataset:
        """`x` (strings, a dict of them, or a `tf.data.Dataset` of batches) as
        a dataset of tokenized batches, tokenized inside `tf.data`; arrays are
        batched by `batch_size` (default 32), reshuffled every epoch with
        `shuffle` (a dataset is taken as it is)."""
        ready_for_graphs(self.tokenizer)
        if isinstance(x, tf.data.Dataset):
            if y is not None or sample_weight is not None or batch_size is not None:
                raise ValueError(
                    "With a `tf.data.Dataset` for `x`, pass no `y`, `sample_weight` or "
                    "`batch_size`: the dataset yields batches of them."
                )
            dataset = x
        else:
            if not isinstance(x, dict):
                x = tf.convert_to_tensor(list(x) if isinstance(x, (list, tuple)) else x)
            data = keras.utils.pack_x_y_sample_weight(x, y, sample_weight)
            dataset = tf.data.Dataset.from_tensor_slices(data)
            if shuffle:
                dataset = dataset.shuffle(dataset.cardinality(), reshuffle_each_iteration=True)
            dataset = dataset.batch(batch_size or 32)
        return dataset.map(self, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "tokenizer": keras.saving.serialize_keras_object(self.tokenizer),
                "sequence_length": self.sequence_length,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)
