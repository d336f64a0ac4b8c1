"""`InputCacheStore`: each example's keys and values, read once, for every epoch.

An appended prompt on a causal decoder cannot change its input's keys and
values (`causal_decoder.InputCache`), so after the first epoch reading the
input again is wasted work. The store keeps, per example, the frozen
model's keys and values at its real tokens (no padding), in memory up to a
byte budget and memory-mapped in a temporary file past it, and makes
batches of `InputCache`s from them, reshuffled each epoch. A training step
on such a batch runs only the prompt's positions.

Cost: `num_layers x 2 x kv_heads x head_dim` values a token. Gemma 3 270M
(18 layers, one key/value head of 256): 9,216 values, 36.9 KB a token in
float32 and half that in bfloat16; 1,000 texts of 48 tokens take 1.8 GB
(0.9 GB).
"""

from __future__ import annotations

import os
import tempfile

import ml_dtypes
import numpy as np
import tensorflow as tf

from tf_prompt_tuning._checks import check_positive_int
from tf_prompt_tuning.backbones.causal_decoder import InputCache
from tf_prompt_tuning.preprocessing.text_pipeline import PAD_TO_MULTIPLE

STORAGE_DTYPES = ("float32", "bfloat16")
DEFAULT_BUDGET_BYTES = 2 * 1024**3


class InputCacheStore:
    """The keys and values of a data set's inputs as an appended-prompt model read them.

    Build it with `InputCacheStore.read(model, batches)`; `dataset(...)` then
    yields `(InputCache, labels[, sample_weight])` batches for `fit`,
    `tpt.train` or a `TrainStep`. Use it as a context manager (or call
    `close`) to remove a spilled file at once; it is removed at exit anyway.

    Args:
        model: a `PromptTextClassifier` with placement "append" on a causal
            decoder, or a `PromptCausalLM` with placement "append" (both
            have `read_inputs`).
        budget_bytes: the most bytes kept in memory; past it the rest goes
            to a memory-mapped file in `directory`.
        directory: where a spilled file goes (default: the system's temp
            directory); the file is removed when the store closes.
        storage_dtype: "float32" (default) or "bfloat16": half the bytes,
            cast back to the model's dtype in each batch; the gradients
            then differ from float32's by up to ~2e-3 of the largest
            (`tests/training/test_input_cache_store.py`).

    Example:

    >>> import keras_hub, numpy as np
    >>> import tf_prompt_tuning as tpt
    >>> backbone = keras_hub.models.GPT2Backbone(vocabulary_size=40, num_layers=2, num_heads=2,
    ...     hidden_dim=8, intermediate_dim=16, max_sequence_length=32)
    >>> model = tpt.PromptTextClassifier(backbone, 2, num_tokens=3, placement="append", pooling="last")
    >>> x = {"token_ids": np.array([[5, 6, 7], [8, 9, 0]]), "padding_mask": np.array([[1, 1, 1], [1, 1, 0]])}
    >>> with tpt.InputCacheStore.read(model, [(x, np.array([0, 1]))]) as store:
    ...     store.num_examples, store.num_tokens, store.bytes_per_token
    ...     (cache, labels), = store.dataset(batch_size=2)
    ...     model(cache).shape
    (2, 5, 128)
    TensorShape([2, 2])
    """

    def __init__(self, *, budget_bytes=DEFAULT_BUDGET_BYTES, directory=None, storage_dtype="float32"):
        self._file = self._path = self._spilled = None
        if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, (int, np.integer)) or budget_bytes < 0:
            raise ValueError(
                f"`budget_bytes` must be a non-negative integer. Received: budget_bytes={budget_bytes!r}."
            )
        if storage_dtype not in STORAGE_DTYPES:
            raise ValueError(f"`storage_dtype` must be one of {STORAGE_DTYPES}. Received: storage_dtype={storage_dtype!r}.")
        self.budget_bytes = int(budget_bytes)
        self.directory = directory
        self.storage_dtype = storage_dtype
        self._dtype = np.dtype(ml_dtypes.bfloat16 if storage_dtype == "bfloat16" else np.float32)
        self._chunks, self._offsets, self._lengths, self._targets = [], [], [], []
        self._written = 0
        self.read_batch_size = 0  # the largest batch read
        self.num_prompt_tokens = self.token_shape = None
        self.compute_dtype = "float32"

    @classmethod
    def read(cls, model, batches, **kwargs) -> InputCacheStore:
        """Reads every batch's inputs once through `model.read_inputs`.

        Args:
            model: a classifier or LM with an appended prompt on a causal decoder.
            batches: an iterable of `(x, y)` or `(x, y, sample_weight)`
                with `x` a dict of `token_ids` and `padding_mask` (a
                `tf.data.Dataset` of them, as `make_text_dataset` makes).
            **kwargs: `budget_bytes`, `directory`, `storage_dtype`.
        """
        if not hasattr(model, "read_inputs"):
            raise ValueError(
                "`InputCacheStore` keeps the inputs of a `PromptTextClassifier` or `PromptCausalLM` "
                f"with placement='append' on a causal decoder. Received: {type(model).__name__}."
            )
        appended = model.placement == "append" and model.decoder is not None and model.num_tokens
        if not appended or "task_id" in model.extra_input_names:  # a bank's read holds no task
            model.read_inputs(None)  # raises, saying what the store needs
        store = cls(**kwargs)
        store.num_prompt_tokens = model.num_tokens
        store.compute_dtype = model.backbone.token_embedding.compute_dtype
        read = tf.function(lambda x: model.read_inputs(x), reduce_retracing=True)
        try:
            for batch in batches:
                x, *targets = batch
                mask = np.asarray(x["padding_mask"]).astype(bool)
                cache = read({"token_ids": x["token_ids"], "padding_mask": x["padding_mask"]})
                store._add(cache, mask, [np.asarray(t) for t in targets])
            store._finish()
        except BaseException:
            store.close()
            raise
        return store

    @property
    def bytes_per_token(self) -> int:
        return int(np.prod(self.token_shape)) * self._dtype.itemsize

    @property
    def num_examples(self) -> int:
        return len(self._lengths)

    @property
    def num_tokens(self) -> int:
        return int(sum(self._lengths))

    @property
    def spilled(self) -> bool:
        """Whether part of the store lives in a memory-mapped file."""
        return self._path is not None

    def _add(self, cache: InputCache, mask, targets):
        # Per layer (batch, 2, slots, kv, hd) -> per token (layers, 2, kv, hd).
        layers = np.stack([np.asarray(c)[:, :, : mask.shape[1]] for c in cache.caches], axis=1)
        layers = np.moveaxis(layers, 3, 1).astype(self._dtype)  # (batch, slots, layers, 2, kv, hd)
        if self.token_shape is None:
            self.token_shape = layers.shape[2:]
            self._check_budget(mask.shape[1])
        self.read_batch_size = max(self.read_batch_size, len(mask))
        for i, row in enumerate(mask):
            tokens = layers[i][row]
            self._offsets.append(self._written)
            self._lengths.append(len(tokens))
            self._write(tokens)
        self._targets.append(targets)

    def _check_budget(self, length):
        one_row = length * self.bytes_per_token
        if self.budget_bytes and self.budget_bytes < one_row:
            raise ValueError(
                f"`budget_bytes` ({self.budget_bytes:,}) is smaller than one input of {length} tokens "
                f"({one_row:,} bytes at {self.bytes_per_token:,} bytes a token). Raise it, or pass 0 to "
                "keep everything in a memory-mapped file."
            )

    def _write(self, tokens):
        in_memory = sum(chunk.nbytes for chunk in self._chunks)
        if self._file is None and in_memory + tokens.nbytes > self.budget_bytes:
            handle, self._path = tempfile.mkstemp(prefix="tpt-input-cache-", suffix=".bin", dir=self.directory)
            self._file = os.fdopen(handle, "wb")
        if self._file is None:
            self._chunks.append(tokens)
        else:
            self._file.write(np.ascontiguousarray(tokens).tobytes())
        self._written += len(tokens)

    def _finish(self):
        memory = np.concatenate(self._chunks) if self._chunks else np.zeros((0, *self.token_shape), self._dtype)
        self._chunks = [memory]
        spilled = None
        if self._file is not None:
            self._file.close()
            self._file = None
            count = self._written - len(memory)
            spilled = np.memmap(self._path, dtype=self._dtype, mode="r", shape=(count, *self.token_shape))
        self._memory, self._spilled = memory, spilled
        self._all_targets = [np.concatenate(parts) for parts in zip(*self._targets)] if self._targets else []

    def _example(self, index):
        start, length = self._offsets[index], self._lengths[index]
        in_memory = len(self._memory)
        if start + length <= in_memory:
            return self._memory[start : start + length]
        return self._spilled[start - in_memory : start - in_memory + length]

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0):
        """`(InputCache, *targets)` batches of numpy arrays; widths rounded up
        to a multiple of 16, so a compiled step sees a few shapes."""
        batch_size = check_positive_int("batch_size", batch_size)
        order = np.random.default_rng(seed).permutation(self.num_examples) if shuffle else np.arange(self.num_examples)
        n = self.num_prompt_tokens
        dtype = np.dtype(ml_dtypes.bfloat16 if self.compute_dtype == "bfloat16" else self.compute_dtype)
        for first in range(0, len(order), batch_size):
            rows = order[first : first + batch_size]
            lengths = np.array([self._lengths[i] for i in rows], "int32")
            width = max(PAD_TO_MULTIPLE, -(-int(lengths.max()) // PAD_TO_MULTIPLE) * PAD_TO_MULTIPLE)
            tokens = np.zeros((len(rows), width + n, *self.token_shape), dtype)
            for j, i in enumerate(rows):
                tokens[j, : lengths[j]] = self._example(i)
            # (batch, slots, layers, 2, kv, hd) -> per layer (batch, 2, slots, kv, hd)
            caches = tuple(np.moveaxis(tokens[:, :, layer], 1, 2) for layer in range(self.token_shape[0]))
            slots = np.arange(width)[None, :]
            real = (slots < lengths[:, None]).astype("int32")
            after = lengths[:, None] + np.arange(n, dtype="int32")[None, :]
            cache = InputCache(
                caches,
                np.concatenate([np.minimum(slots, np.maximum(lengths[:, None] - 1, 0)), after], 1).astype("int32"),
                np.concatenate([real, np.ones_like(after)], 1),
                lengths,
                np.int32(width),
            )
            yield (cache, *(targets[rows] for targets in self._all_targets))

    def dataset(self, batch_size: int = 32, *, shuffle: bool = False, seed: int = 0) -> tf.data.Dataset:
        """`batches` as a `tf.data.Dataset`; with `shuffle`, a new order
        each time it is iterated (each epoch), seeded."""
        batch_size = check_positive_int("batch_size", batch_size)
        epochs = iter(range(2**31))
        kv = tuple(self.token_shape[1:])
        dtype = tf.as_dtype(self.compute_dtype)
        signature = (
            InputCache(
                tuple(tf.TensorSpec((None, *kv[:1], None, *kv[1:]), dtype) for _ in range(self.token_shape[0])),
                tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((None, None), tf.int32),
                tf.TensorSpec((None,), tf.int32), tf.TensorSpec((), tf.int32),
            ),
            *(tf.TensorSpec((None, *t.shape[1:]), tf.as_dtype(t.dtype)) for t in self._all_targets),
        )  # fmt: skip

        def generate():
            yield from self.batches(batch_size, shuffle=shuffle, seed=seed + next(epochs))

        batches = -(-self.num_examples // batch_size)
        dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
        return dataset.apply(tf.data.experimental.assert_cardinality(batches)).prefetch(2)

    def close(self):
        """Removes the spilled file, if any (the store is then empty)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._spilled = None
        if self._path is not None and os.path.exists(self._path):
            os.remove(self._path)
        self._path = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __del__(self):
        self.close()
