"""Prompt files: a task's prompt and head alone, a few kilobytes.

Format: safetensors (tensors and a string header, nothing that executes code
on load), written atomically. The header holds this library's metadata as
JSON: format version, the model's settings (prompt length, placement,
pooling, classes and their names), the initializer, the library version,
and a fingerprint of the backbone (its config and token-embedding matrix),
so a prompt is never loaded silently into another model. Its `kind` says
what the prompt is for: "classifier" (prompt and head; files without a
`kind` are classifiers) or "causal_lm" (a generation prompt, no head).

A SHA-256 over the metadata and every tensor is stored beside the metadata
(its own header key, so releases that predate it read the file as before)
and checked on load: an edited label name, pooling or prompt value is an
error naming the file, never a silently different model. Every metadata
field is checked for its type and range before it is used, and every tensor
for NaN and infinity: a prompt from a diverged training is refused when
saved, loaded or assigned, never served.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np

from tf_prompt_tuning._version import __version__
from tf_prompt_tuning.files._io import write_atomically
from tf_prompt_tuning.settings import FILE_SETTINGS, FILE_TASKS

# The newest format this library reads; each task says which it writes
# (`PromptTask.prompt_file_format`).
FORMAT_VERSION = 3
_METADATA_KEY = "tf_prompt_tuning"
_CHECKSUM_KEY = "tf_prompt_tuning_sha256"
_REQUIRED = ("format_version", "backbone_fingerprint", "num_tokens")
# Metadata keys the library writes itself besides the tasks' settings;
# `extra` may set none of them (`reserved_keys`).
_LIBRARY_KEYS = {"format_version", "library_version", "backbone_fingerprint", "backbone_class", "kind", "dim", "initializer"}


class PromptFileError(ValueError):
    """A prompt file is missing, corrupt, newer than this library, or for another model.

    Example:

    >>> import os, tempfile
    >>> import tf_prompt_tuning as tpt
    >>> tpt.load_prompts(os.path.join(tempfile.mkdtemp(), "missing.prompt.safetensors"))
    Traceback (most recent call last):
    ...
    tf_prompt_tuning.files.prompt_file.PromptFileError: Prompt file '...' does not exist. Check the path.
    >>> issubclass(tpt.PromptFileError, ValueError)
    True
    """


def _task_settings(kind: str | None = None) -> dict:
    """The settings files of `kind` (default: every kind) record, by name.

    The task models declare them (`PromptTask.SETTINGS`) and register them as
    they are defined; the package's `__init__`, imported before any of its
    modules, defines them all.
    """
    kinds = [kind] if kind else list(FILE_SETTINGS)
    return {s.name: s for k in kinds for s in FILE_SETTINGS.get(k, ())}


def reserved_keys() -> set:
    """Metadata keys `extra` may not set: the library's own and every task setting's."""
    return _LIBRARY_KEYS | set(_task_settings())


def check_kind(metadata: dict, kind: str, path: str):
    """Raises unless a prompt file's metadata is of `kind`."""
    found = metadata.get("kind", "classifier")
    if found != kind:
        raise PromptFileError(
            f"{path!r} holds a {found} prompt, not a {kind} one. Load it into a "
            f"{FILE_TASKS.get(found, 'task model of that kind')}."
        )


def backbone_fingerprint(backbone) -> str:
    """SHA-256 of the backbone's config and every weight (first 16 hex digits).

    All weights, not just the embeddings: a prompt trained on one backbone is
    meaningless on a fine-tuned variant that shares its embeddings. Hashing
    MiniLM's 91 MB takes about a tenth of a second.
    """
    config = dict(backbone.get_config())
    for key in ("name", "trainable", "dtype"):
        config.pop(key, None)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for variable in backbone.weights:
        digest.update(variable.path.encode())
        digest.update(np.ascontiguousarray(variable.numpy(), dtype="float32").tobytes())
    return digest.hexdigest()[:16]


def content_checksum(metadata_json: str, tensors: dict[str, np.ndarray]) -> str:
    """SHA-256 of a prompt file's metadata string and tensors (name, dtype,
    shape and bytes of each, in name order)."""
    digest = hashlib.sha256(metadata_json.encode())
    for name in sorted(tensors):
        value = np.ascontiguousarray(tensors[name])
        digest.update(f"\0{name}\0{value.dtype.str}\0{value.shape}\0".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def check_finite(tensors: dict, where: str, error: type[ValueError] = ValueError):
    """Raises `error` naming the first tensor of `tensors` that holds NaN or infinity.

    Such values come from a training that diverged; loaded, they make every
    prediction NaN (served as the first class) without an error.
    """
    for name in sorted(tensors):
        value = np.asarray(tensors[name])
        if value.dtype.kind not in "fc":
            continue  # integers are always finite
        bad = int(value.size - np.count_nonzero(np.isfinite(value)))
        if bad:
            raise error(
                f"{where}: {name!r} has {bad} non-finite value{'s' if bad > 1 else ''} (NaN or "
                f"infinity) of {value.size}. The training that produced it diverged: train "
                "again with a lower learning rate (or from a checkpoint before the divergence)."
            )


@dataclasses.dataclass
class PromptFile:
    """The contents of a prompt file: named arrays and their metadata."""

    tensors: dict[str, np.ndarray]
    metadata: dict
    path: str = ""


def read_prompt_file(path_or_file: str | PromptFile, kind: str) -> PromptFile:
    """`load_prompts(path)` (or an already loaded file), checked to be of `kind`."""
    loaded = path_or_file if isinstance(path_or_file, PromptFile) else load_prompts(path_or_file)
    check_kind(loaded.metadata, kind, loaded.path)
    return loaded


def save_prompts(model, path: str, *, label_names=None, extra: dict | None = None) -> str:
    """Writes a model's task variables to `path`.

    A `PromptTextClassifier` writes its prompt and head, a `PromptCausalLM`
    its prompt alone.

    Args:
        model: the trained `PromptTextClassifier` or `PromptCausalLM`.
        path: the file to write (conventionally `*.prompt.safetensors`).
        label_names: the class names, in order (classifiers; default: the
            model's `label_names`).
        extra: more JSON-serializable metadata (e.g. the training settings).

    Returns:
        `path`.

    Example:

    >>> import os, tempfile
    >>> import keras_hub
    >>> import tf_prompt_tuning as tpt
    >>> backbone = keras_hub.models.BertBackbone(vocabulary_size=40, num_layers=2, num_heads=2,
    ...     hidden_dim=8, intermediate_dim=16, max_sequence_length=24)
    >>> model = tpt.PromptTextClassifier(backbone, num_classes=2, num_tokens=4)
    >>> path = os.path.join(tempfile.mkdtemp(), "sentiment.prompt.safetensors")
    >>> tpt.save_prompts(model, path, label_names=["negative", "positive"], extra={"epochs": 3})
    '.../sentiment.prompt.safetensors'
    >>> os.path.getsize(path) < 2000  # the prompt and head alone
    True
    """
    from safetensors.numpy import save


    kind = getattr(model, "prompt_file_kind", None)
    if kind is None:
        raise ValueError(
            f"`save_prompts` writes one task's prompt; received a {type(model).__name__}, "
            "which is not one task (a bank?). Save each task from the model it was trained in."
        )
    if label_names is None and kind == "classifier":
        label_names = model.label_names
    if kind == "causal_lm" and (label_names is not None or model.prompt is None):
        raise ValueError(
            "A PromptCausalLM file holds its prompt alone: the model needs a prompt "
            f"(num_tokens > 0) and takes no `label_names`. Received: num_tokens="
            f"{model.num_tokens}, label_names={label_names!r}."
        )
    if label_names is not None and len(label_names) != model.num_classes:
        raise ValueError(
            f"`label_names` has {len(label_names)} names but the model has "
            f"{model.num_classes} classes. Received: label_names={list(label_names)}."
        )
    clashes = sorted(reserved_keys() & set(extra or {}))
    if clashes:
        raise ValueError(
            f"`extra` may not set the library's own metadata keys {clashes}. "
            "Rename those entries."
        )
    trainable_prompt = model.prompt_layer()
    metadata = {
        "format_version": model.prompt_file_format(),
        "library_version": __version__,
        "backbone_fingerprint": backbone_fingerprint(model.backbone),
        "backbone_class": type(model.backbone).__name__,
        "kind": kind,
        "num_tokens": model.num_tokens,
        "initializer": (
            None if trainable_prompt is None else type(trainable_prompt.initializer).__name__
        ),
        **model.prompt_file_metadata(),
    }
    if kind == "classifier":
        metadata["label_names"] = list(label_names) if label_names is not None else None
    metadata.update(extra or {})
    tensors = model.prompt_file_tensors()
    check_finite(tensors, f"{type(model).__name__} not saved to {path!r}")
    try:
        metadata_json = json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"`extra` must be JSON-serializable: {error}. Received: extra={extra!r}.") from None
    header = {_METADATA_KEY: metadata_json, _CHECKSUM_KEY: content_checksum(metadata_json, tensors)}
    data = save(tensors, metadata=header)
    write_atomically(path, data)
    return path


def _is_int(value, low, high=None) -> bool:
    return (
        isinstance(value, int) and not isinstance(value, bool) and value >= low
        and (high is None or value <= high)
    )  # fmt: skip


def _is_str(value) -> bool:
    return isinstance(value, str)


def _is_optional_str(value) -> bool:
    return value is None or isinstance(value, str)


# Metadata fields the library writes besides the tasks' settings, with the
# values each may take: a file whose field is anything else is refused
# before the field is used (the settings are checked by their declarations).
_FIELDS = {
    "backbone_fingerprint": (
        lambda v: _is_str(v) and len(v) == 16 and all(c in "0123456789abcdef" for c in v),
        "16 hexadecimal digits",
    ),
    "library_version": (_is_str, "a string"),
    "backbone_class": (_is_str, "a string"),
    "dim": (lambda v: _is_int(v, 1), "a positive integer"),
    "initializer": (_is_optional_str, "null or a string"),
    "backbone": (_is_str, "a string"),
    "sequence_length": (lambda v: _is_int(v, 1), "a positive integer"),
}


def check_metadata(metadata: dict, path: str):
    """Raises `PromptFileError` unless every known field has a valid type and range."""
    fields = dict(_FIELDS)
    kind = metadata.get("kind", "classifier")
    fields.update({s.name: (s.valid, s.expected) for s in _task_settings(kind if kind in FILE_SETTINGS else None).values()})
    for name, (valid, expected) in fields.items():
        if name in metadata and not valid(metadata[name]):
            raise PromptFileError(
                f"{path!r} has an invalid metadata field {name!r}: "
                f"expected {expected() if callable(expected) else expected}. "
                f"Received: {name}={metadata[name]!r}. The file is corrupt or was edited."
            )
    names = metadata.get("label_names")
    if names is not None:
        count = metadata.get("num_classes")
        if (
            not isinstance(names, list) or not all(isinstance(n, str) for n in names)
            or len(set(names)) != len(names) or len(names) != count
        ):  # fmt: skip
            raise PromptFileError(
                f"{path!r} has an invalid metadata field 'label_names': expected null or "
                f"{count} distinct strings (num_classes). Received: label_names={names!r}."
            )


def load_prompts(path: str) -> PromptFile:
    """Reads a prompt file written by `save_prompts`.

    Example:

    >>> import os, tempfile
    >>> import keras_hub
    >>> import tf_prompt_tuning as tpt
    >>> backbone = keras_hub.models.BertBackbone(vocabulary_size=40, num_layers=2, num_heads=2,
    ...     hidden_dim=8, intermediate_dim=16, max_sequence_length=24)
    >>> model = tpt.PromptTextClassifier(backbone, num_classes=2, num_tokens=4)
    >>> path = os.path.join(tempfile.mkdtemp(), "task.prompt.safetensors")
    >>> _ = tpt.save_prompts(model, path)
    >>> loaded = tpt.load_prompts(path)
    >>> {name: value.shape for name, value in sorted(loaded.tensors.items())}
    {'head/bias': (2,), 'head/kernel': (8, 2), 'prompt': (4, 8)}
    >>> loaded.metadata["kind"], loaded.metadata["num_tokens"], loaded.metadata["num_classes"]
    ('classifier', 4, 2)
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    if not os.path.isfile(path):
        raise PromptFileError(f"Prompt file {path!r} does not exist. Check the path.")
    with open(path, "rb") as f:
        data = f.read()
    try:
        tensors = load(data)
        header_size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_size])
        metadata_json = header["__metadata__"][_METADATA_KEY]
        checksum = header["__metadata__"].get(_CHECKSUM_KEY)
        metadata = json.loads(metadata_json)
    except (SafetensorError, ValueError, KeyError, TypeError, OverflowError, AttributeError) as error:
        raise PromptFileError(
            f"{path!r} is not a readable prompt file (truncated, corrupt, or not "
            f"written by save_prompts): {error}."
        ) from None
    if not isinstance(metadata, dict):
        raise PromptFileError(f"{path!r} is not a prompt file: its metadata is not a JSON object.")
    if checksum is not None and checksum != content_checksum(metadata_json, tensors):
        raise PromptFileError(
            f"{path!r} was changed after it was written: its checksum does not match its "
            "metadata and tensors. Use the file as save_prompts wrote it, or train again."
        )
    version = metadata.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise PromptFileError(
            f"{path!r} has an invalid prompt-file format version {version!r}; it was "
            "not written by save_prompts."
        )
    if version > FORMAT_VERSION:
        raise PromptFileError(
            f"{path!r} has prompt-file format {version}; this library reads up to "
            f"{FORMAT_VERSION}. Upgrade tf_prompt_tuning to load it."
        )
    kind = metadata.get("kind", "classifier")
    if kind not in FILE_TASKS:
        raise PromptFileError(
            f"{path!r} has an unknown prompt kind {kind!r}; this library reads "
            f"{sorted(FILE_TASKS)}. Upgrade tf_prompt_tuning to load it."
        )
    required = _REQUIRED + (("num_classes",) if kind == "classifier" else ())
    missing = [key for key in required if key not in metadata]
    if missing:
        raise PromptFileError(
            f"{path!r} is not a prompt file written by save_prompts: its metadata lacks {missing}."
        )
    check_metadata(metadata, path)
    check_finite(tensors, repr(path), PromptFileError)
    return PromptFile(tensors=tensors, metadata=metadata, path=path)


def restore_prompts(model, path: str) -> PromptFile:
    """Loads a prompt file into a `PromptTextClassifier` or `PromptCausalLM` built for it.

    The file must be of the model's kind, the model's backbone must have the
    fingerprint recorded in the file, and its prompt (and head) the recorded
    shapes; anything else is an error. Training can resume from the
    restored values.

    Example:

    >>> import os, tempfile
    >>> import keras_hub, numpy as np
    >>> import tf_prompt_tuning as tpt
    >>> backbone = keras_hub.models.BertBackbone(vocabulary_size=40, num_layers=2, num_heads=2,
    ...     hidden_dim=8, intermediate_dim=16, max_sequence_length=24)
    >>> trained = tpt.PromptTextClassifier(backbone, num_classes=2, num_tokens=4)
    >>> path = os.path.join(tempfile.mkdtemp(), "task.prompt.safetensors")
    >>> _ = tpt.save_prompts(trained, path)
    >>> model = tpt.PromptTextClassifier(backbone, num_classes=2, num_tokens=4)  # same settings
    >>> _ = tpt.restore_prompts(model, path)
    >>> np.array_equal(model.prompt.prompt.numpy(), trained.prompt.prompt.numpy())
    True
    """
    loaded = load_prompts(path)
    assign_prompt_file(model, loaded, path)
    return loaded


def check_backbone(loaded: PromptFile, backbone, *, fingerprint: str | None = None):
    """Raises unless `backbone` (whose `fingerprint` may be known) has the
    fingerprint the file records."""
    expected = loaded.metadata["backbone_fingerprint"]
    actual = fingerprint or backbone_fingerprint(backbone)
    if expected != actual:
        raise PromptFileError(
            f"{loaded.path!r} was trained on another backbone (fingerprint {expected}, this "
            f"model's is {actual}). Load it into the backbone it was trained with."
        )


def assign_prompt_file(model, loaded: PromptFile, path: str | None = None):
    """Assigns an already loaded prompt file's tensors to `model`'s task
    variables (`PromptTask.task_variables`), after the checks of
    `restore_prompts`."""
    loaded = dataclasses.replace(loaded, path=path or loaded.path)
    check_kind(loaded.metadata, model.prompt_file_kind, loaded.path)
    check_backbone(loaded, model.backbone)
    assign_tensors(model.task_variables(), loaded, model.optional_file_tensors(loaded.tensors))


def check_tensors(shapes: dict, loaded: PromptFile, optional=frozenset()):
    """Raises `PromptFileError` unless `loaded` holds a finite tensor of
    `shapes[name]` for each name (and besides them only `optional` names)."""
    path = loaded.path
    if not set(shapes) <= set(loaded.tensors) or set(loaded.tensors) - set(shapes) - set(optional):
        raise PromptFileError(
            f"{path!r} holds {sorted(loaded.tensors)}, but the model has "
            f"{sorted(shapes)}. Build the model with the file's settings: "
            f"num_tokens={loaded.metadata.get('num_tokens')}, deep={loaded.metadata.get('deep', False)!r}, "
            f"prompt_encoder={loaded.metadata.get('prompt_encoder')}."
        )
    for name, shape in shapes.items():
        value = loaded.tensors[name]
        if value.dtype.kind != "f":
            raise PromptFileError(
                f"{path!r}: {name} holds {value.dtype} values; a prompt file holds floating-point "
                "tensors (save_prompts writes float32). The file was not written by save_prompts."
            )
        if tuple(value.shape) != tuple(shape):
            raise PromptFileError(
                f"{path!r}: {name} has shape {value.shape}, the model's has "
                f"{tuple(shape)}. Build the model with the file's settings."
            )
    # A `PromptFile` made in memory has not been through `load_prompts`.
    check_finite({name: loaded.tensors[name] for name in shapes}, repr(path), PromptFileError)


def assign_tensors(targets: dict, loaded: PromptFile, optional=frozenset()):
    """Assigns `loaded.tensors[name]` to each `targets[name]` once every name,
    shape and value has been checked (`check_tensors`)."""
    check_tensors({name: variable.shape for name, variable in targets.items()}, loaded, optional)
    for name, variable in targets.items():
        variable.assign(loaded.tensors[name])
