"""`PromptTask`: what every task model and bank of this library shares.

In the spirit of KerasHub's `Task`: a frozen backbone plus a few task
variables. The base owns the backbone's config round trip, the input-length
check, and the prompt-file contract: `task_variables()` (what a file holds,
by name), `prompt_file_metadata()` (the settings it records) and
`from_prompt_file(path, backbone)`. `prompt_file` then knows only the file
format.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tf_prompt_tuning._checks import check_positive_int
from tf_prompt_tuning.backbones.prompted_backbone import check_sequence_fits
from tf_prompt_tuning.preprocessing.text_pipeline import model_inputs
from tf_prompt_tuning.settings import FILE_SETTINGS, FILE_TASKS, Setting


def _check_num_tokens(num_tokens):
    if isinstance(num_tokens, int) and not isinstance(num_tokens, bool) and num_tokens == 0:
        return 0  # no prompt: the head-only baseline
    return check_positive_int("num_tokens", num_tokens)


# The prompt length, a setting of every task.
PROMPT_LENGTH = Setting(
    "num_tokens", 20, type=int, minimum=0, in_file=True, check_fn=_check_num_tokens,
    expected_text="an integer >= 0", help="prompt length",
)  # fmt: skip


@keras.saving.register_keras_serializable(package="tf_prompt_tuning")
class PromptTask(keras.Model):
    """Base class of the prompt-tuned task models and banks.

    Subclasses set `backbone`, `num_tokens`, `seed` and the prompt layer
    (`prompt_layer()`), and define the task variables and metadata.

    With a `preprocessor` (a `TextPreprocessor`), `fit`, `predict` and
    `evaluate` also take raw strings (or a `tf.data.Dataset` of them),
    tokenized inside `tf.data`, as KerasHub tasks do; token dicts still
    work. Calling the model itself always takes token dicts.

    Args:
        preprocessor: a `TextPreprocessor`, or None (token dicts only).
        **kwargs: standard model arguments (`name`, `dtype`, ...).

    Example:

    >>> import os, tempfile
    >>> import keras_hub
    >>> import tf_prompt_tuning as tpt
    >>> backbone = keras_hub.models.BertBackbone(vocabulary_size=40, num_layers=2, num_heads=2,
    ...     hidden_dim=8, intermediate_dim=16, max_sequence_length=24)
    >>> model = tpt.PromptTextClassifier(backbone, num_classes=2, num_tokens=4)
    >>> isinstance(model, tpt.PromptTask), sorted(model.task_variables())
    (True, ['head/bias', 'head/kernel', 'prompt'])
    >>> path = os.path.join(tempfile.mkdtemp(), "task.prompt.safetensors")
    >>> _ = tpt.save_prompts(model, path)
    >>> restored = tpt.PromptTextClassifier.from_prompt_file(path, backbone)
    >>> restored.num_tokens, restored.num_classes
    (4, 2)
    """

    # The prompt-file `kind` this task writes and reads; None: not saved to one file.
    prompt_file_kind: str | None = None
    # The task's settings, each declared once (see `Setting`): the
    # constructor checks them (`checked_settings`), `get_config` records
    # them, prompt files record and validate those `in_file`.
    SETTINGS: tuple[Setting, ...] = (PROMPT_LENGTH,)
    # Inputs the task reads besides the backbone's (a bank's `task_id`).
    extra_input_names: tuple = ()
    # The SavedModel signatures `export_saved_model` writes for it (with a
    # tokenizer, also "serve_text"), each taking the extra inputs too.
    serving_signatures: tuple = ("serve",)

    def __init__(self, *, preprocessor=None, **kwargs):
        super().__init__(**kwargs)
        self.preprocessor = preprocessor

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("prompt_file_kind"):  # a file of this kind records these
            FILE_SETTINGS[cls.prompt_file_kind] = tuple(s for s in cls.SETTINGS if s.in_file)
            FILE_TASKS[cls.prompt_file_kind] = cls.__name__

    @classmethod
    def setting(cls, name: str) -> Setting:
        """The declaration of setting `name`."""
        (found,) = [s for s in cls.SETTINGS if s.name == name]
        return found

    def checked_settings(self, **values) -> dict:
        """`values` checked (and normalized) by their settings' declarations, in order."""
        return {name: self.setting(name).check(value) for name, value in values.items()}

    def backbone_inputs(self, inputs: dict) -> dict:
        """`inputs` as the prompted backbone takes them: zero segment ids
        added where the backbone takes them, other entries dropped."""
        return model_inputs(inputs, (*self.backbone.input, *self.extra_input_names))

    # Raw text in, through the preprocessor.

    # The number of classes labels index (None: this task takes no class labels).
    label_classes: int | None = None
    # Whether an `InputCache` of `read_inputs` can stand for the inputs (an
    # appended prompt on a causal decoder), so they are read once for every epoch.
    reads_inputs_once: bool = False

    def _check_labels(self, y):
        """Refuses labels in memory that are not class indices of this task,
        before Keras meets them deep inside a compiled step."""
        if y is None or self.label_classes is None or isinstance(y, tf.data.Dataset):
            return
        labels = np.asarray(y)
        if labels.size and labels.dtype.kind not in "iu":
            raise ValueError(
                f"`y` must be integer class indices in [0, {self.label_classes}). Received: labels of "
                f"dtype {labels.dtype}, first {labels.reshape(-1)[0].item()!r}. Map names to indices first "
                "(`model.label_names.index(name)` when the model has label names)."
            )
        if labels.size and (labels.min() < 0 or labels.max() >= self.label_classes):
            raise ValueError(
                f"`y` must be class indices in [0, {self.label_classes}) (num_classes="
                f"{self.label_classes}). Received: labels from {labels.min()} to {labels.max()}."
            )

    def _preprocessed(self, x, y=None, sample_weight=None, batch_size=None, shuffle=False):
        """`(x, y, sample_weight, batch_size)` for Keras: a dataset of token
        batches when there is a preprocessor and `x` is not token dicts."""
        self._check_labels(y)
        if self.preprocessor is None and _holds_strings(x):
            raise ValueError(
                f"`x` holds strings, but this {type(self).__name__} has no `preprocessor` to "
                "tokenize them. Build it with `preprocessor=tpt.TextPreprocessor(tokenizer, "
                "sequence_length=...)`, or pass token dicts (`tpt.encode_texts`)."
            )
        if self.preprocessor is None or (isinstance(x, dict) and "token_ids" in x):
            return x, y, sample_weight, batch_size
        dataset = self.preprocessor.dataset(x, y, sample_weight, batch_size=batch_size, shuffle=shuffle)
        return dataset, None, None, None

    def _preprocessed_validation(self, data):
        if self.preprocessor is None or data is None:
            if data is not None and not isinstance(data, tf.data.Dataset):
                x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
                self._preprocessed(x, y)  # the same checks as `x` and `y`
            return data
        x, y, sample_weight = (
            (data, None, None) if isinstance(data, tf.data.Dataset) else keras.utils.unpack_x_y_sample_weight(data)
        )
        if isinstance(x, dict) and "token_ids" in x:
            return data
        self._check_labels(y)
        return self.preprocessor.dataset(x, y, sample_weight)

    def fit(
        self, x=None, y=None, batch_size=None, sample_weight=None, validation_data=None, *,
        cache_inputs=None, input_cache_budget=None, **kwargs,
    ):  # fmt: skip
        """Keras's `fit`, with raw strings through the preprocessor and, for a
        model that reads its inputs once (an appended prompt on a causal
        decoder), the inputs read once for every epoch.

        Args:
            cache_inputs: None (default): read the inputs once and reuse
                them every epoch when `x` is in memory (arrays or strings)
                and there is more than one epoch; True: also when `x` is a
                `tf.data.Dataset` whose batches are the same every epoch
                (its first pass is read; the order is reshuffled); False:
                never.
            input_cache_budget: bytes of inputs kept in memory, the rest
                memory-mapped in a temporary file (`InputCacheStore`);
                default 2 GiB.
            Others: as Keras's `fit`.
        """
        # Keras shuffles arrays every epoch unless told not to; so does the
        # text dataset, which Keras then takes as it is.
        shuffle = kwargs.pop("shuffle", True)
        epochs = kwargs.get("epochs", 1)
        reuse = self.reads_inputs_once and cache_inputs is not False and (
            cache_inputs or (epochs > 1 and not isinstance(x, tf.data.Dataset))
        )  # fmt: skip
        if cache_inputs and not self.reads_inputs_once:
            raise ValueError(
                "`cache_inputs=True` reads the inputs of an appended prompt on a causal decoder once. "
                f"Received: a {type(self).__name__} that reads its whole input every step. Leave "
                "cache_inputs unset, or build the model with placement='append' on a decoder."
            )
        given = x
        x, y, sample_weight, batch_size = self._preprocessed(
            x, y, sample_weight, batch_size, shuffle=shuffle and not reuse
        )  # fmt: skip
        kwargs["shuffle"] = shuffle if x is given and not isinstance(x, tf.data.Dataset) else False
        validation_data = self._preprocessed_validation(validation_data)
        if not reuse:
            return super().fit(
                x, y, batch_size=batch_size, sample_weight=sample_weight, validation_data=validation_data, **kwargs
            )  # fmt: skip
        from tf_prompt_tuning.training.input_cache_store import (
            DEFAULT_BUDGET_BYTES,
            InputCacheStore,
        )

        batches = x if isinstance(x, tf.data.Dataset) else tf.data.Dataset.from_tensor_slices(
            keras.utils.pack_x_y_sample_weight(x, y, sample_weight)
        ).batch(batch_size or 32)  # fmt: skip
        budget = DEFAULT_BUDGET_BYTES if input_cache_budget is None else input_cache_budget
        kwargs["shuffle"] = False  # the store reshuffles; Keras would warn on a dataset
        with InputCacheStore.read(self, batches, budget_bytes=budget) as store:
            # Seeded from NumPy's state, so `keras.utils.set_random_seed` fixes the order.
            seed = int(np.random.randint(2**31 - 1))
            dataset = store.dataset(batch_size or store.read_batch_size, shuffle=shuffle, seed=seed)
            return super().fit(dataset, validation_data=validation_data, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, sample_weight=None, **kwargs):
        x, y, sample_weight, batch_size = self._preprocessed(x, y, sample_weight, batch_size)
        return super().evaluate(x, y, batch_size=batch_size, sample_weight=sample_weight, **kwargs)

    def predict(self, x, batch_size=None, **kwargs):
        x, _, _, batch_size = self._preprocessed(x, batch_size=batch_size)
        return super().predict(x, batch_size=batch_size, **kwargs)

    # Positions the prompt takes in the backbone's sequence.
    @property
    def prompt_positions(self) -> int:
        return self.num_tokens

    def check_input_length(self, length: int | None):
        """Raises if `length` tokens plus the prompt exceed the backbone's limit."""
        check_sequence_fits(self.backbone, self.prompt_positions, length)

    def prompt_layer(self):
        """The layer whose initializer the config records (None: no prompt)."""
        return getattr(self, "prompt", None)

    # The prompt-file contract.

    def task_variables(self) -> dict:
        """The task's own variables, by their name in a prompt file."""
        raise NotImplementedError

    def prompt_file_tensors(self) -> dict:
        """The arrays a prompt file holds: the task variables' values, plus
        anything a server needs that they only imply."""
        return {name: keras.ops.convert_to_numpy(v) for name, v in self.task_variables().items()}

    def optional_file_tensors(self, names) -> set:
        """Names of tensors a file may hold that this model does not restore."""
        return set()

    def prompt_file_format(self) -> int:
        """The prompt-file format version this task is written as."""
        raise NotImplementedError

    def prompt_file_metadata(self) -> dict:
        """The settings a prompt file records, to rebuild the task (those `in_file`)."""
        return {s.name: getattr(self, s.name) for s in self.SETTINGS if s.in_file}

    @classmethod
    def from_prompt_metadata(cls, metadata: dict, backbone, **kwargs):
        """An untrained task with the settings a prompt file recorded (a
        setting the file predates takes its default)."""
        recorded = {s.name: metadata.get(s.name, s.default) for s in cls.SETTINGS if s.in_file}
        return cls(backbone, prompt_initializer="zeros", **recorded, **kwargs)

    @classmethod
    def from_prompt_file(cls, path, backbone, **kwargs):
        """The task a prompt file holds, on `backbone` (its fingerprint must
        match the file's); the file is read once.

        Args:
            path: a prompt file's path, or a `PromptFile` already loaded.
            backbone: the backbone it was trained on.
            **kwargs: more model arguments (`name`, ...).
        """
        from tf_prompt_tuning.files.prompt_file import (
            assign_prompt_file,
            read_prompt_file,
        )

        loaded = read_prompt_file(path, cls.prompt_file_kind)
        model = cls.from_prompt_metadata(loaded.metadata, backbone, **kwargs)
        assign_prompt_file(model, loaded)
        return model

    # The config round trip, in one place.

    def get_config(self):
        config = super().get_config()
        prompt = self.prompt_layer()
        config.update(
            {
                "backbone": keras.saving.serialize_keras_object(self.backbone),
                **{s.name: getattr(self, s.name) for s in self.SETTINGS if s.in_config},
                "prompt_initializer": (
                    None if prompt is None else keras.initializers.serialize(prompt.initializer)
                ),
                "seed": self.seed,
                "preprocessor": (
                    None if self.preprocessor is None else keras.saving.serialize_keras_object(self.preprocessor)
                ),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if config.get("preprocessor") is not None:
            config["preprocessor"] = keras.saving.deserialize_keras_object(config["preprocessor"])
        if config.get("prompt_initializer") is None:
            config.pop("prompt_initializer", None)
        return cls(**config)


def _holds_strings(x) -> bool:
    """Whether `x` (what `fit`/`predict` were given) is text: strings, an
    array or tensor of them, a dict with `text`, or a dataset yielding them."""
    if isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        spec = spec[0] if isinstance(spec, tuple) else spec
        specs = tf.nest.flatten(spec["text"] if isinstance(spec, dict) and "text" in spec else spec)
        return any(getattr(s, "dtype", None) == tf.string for s in specs)
    if isinstance(x, dict):
        return "text" in x
    if isinstance(x, str):
        return True
    if isinstance(x, (list, tuple)):
        return bool(x) and isinstance(x[0], (str, bytes))
    if isinstance(x, tf.Tensor):
        return x.dtype == tf.string
    if not isinstance(x, np.ndarray):
        return False
    if x.dtype == object:
        return x.size > 0 and isinstance(x.reshape(-1)[0], (str, bytes))
    return x.dtype.kind in "US"
