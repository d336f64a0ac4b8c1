"""`export_saved_model`: a prompt-tuned classifier, causal LM or bank as a SavedModel for TF Serving."""

from __future__ import annotations

import os
import shutil
import tempfile

import keras
import tensorflow as tf

from tf_prompt_tuning.files._io import current_umask
from tf_prompt_tuning.files.prompt_file import check_finite
from tf_prompt_tuning.preprocessing.text_pipeline import encode_texts, ready_for_graphs


def export_saved_model(
    model, path: str, *, tokenizer=None, sequence_length: int | None = None,
    generate_options: dict | None = None, overwrite: bool = False,
) -> str:  # fmt: skip
    """Writes `model` as a SavedModel with serving signatures.

    A `PromptCausalLM` (or `PromptCausalLMBank`) gets one signature,
    `generate` (also `serving_default`): `token_ids` and `padding_mask`
    int32 `(batch, seq)`, padded on either side, plus `task_id` (a bank) and
    a scalar int32 `seed` (strategy "sample"). It returns `PromptCausalLM.
    generate`'s `{"token_ids", "padding_mask"}` for `generate_options`, fixed
    at export: `max_new_tokens` (required), `strategy`, `temperature`,
    `top_k` and `end_token_ids`, as in `generate`.

    Classifier signatures (all return `{"probabilities": (batch, classes) float32}`):

    - `serving_default` (also `serve`): `token_ids` and `padding_mask`,
      int32 `(batch, seq)`, plus `task_id` int32 `(batch,)` for a
      `PromptBank`. Segment ids, where the backbone takes them, are zeros.
    - `serve_text`, when the model has a preprocessor (`TextPreprocessor`)
      or `tokenizer` is given: raw strings `text` (batch,) (plus
      `task_id`), tokenized inside the graph with the backbone's own
      tokenizer and truncated to `sequence_length`. Loading it needs
      `import tensorflow_text` (for the tokenizer ops), nothing from this
      library.

    The file needs nothing from this library to load: `tf.saved_model.load`.
    Every signature checks what it is served: token ids in
    `[0, vocabulary_size)` (a negative id would otherwise read another
    token's embedding), `padding_mask` of the shape of `token_ids` holding
    0 and 1 only, and one `task_id` per row, each a task of the bank; a
    request that fails a check gets an `InvalidArgumentError` naming it. A
    tokenizer with more tokens than the backbone is refused at export.

    A model with NaN or infinite weights (a training that diverged) is
    refused before anything is written.

    Args:
        model: a `PromptTextClassifier`, `PromptBank`, `PromptCausalLM` or
            `PromptCausalLMBank`.
        path: the directory to write.
        tokenizer: the backbone's tokenizer, to add `serve_text` to a
            classifier without a preprocessor.
        sequence_length: the longest token sequence for `serve_text` (by
            default the preprocessor's).
        generate_options: the generation settings (causal LMs).
        overwrite: replace an existing, non-empty `path` (otherwise an
            error). The SavedModel is written beside it first and then put
            in its place, so `path` never holds a mix of old and new files.

    Example:

    >>> import os, tempfile
    >>> import keras_hub, tensorflow as tf
    >>> import tf_prompt_tuning as tpt
    >>> backbone = keras_hub.models.BertBackbone(vocabulary_size=40, num_layers=2, num_heads=2,
    ...     hidden_dim=8, intermediate_dim=16, max_sequence_length=24)
    >>> model = tpt.PromptTextClassifier(backbone, num_classes=2, num_tokens=4)
    >>> path = tpt.export_saved_model(model, os.path.join(tempfile.mkdtemp(), "classifier"))
    >>> served = tf.saved_model.load(path)  # no tf_prompt_tuning needed to serve
    >>> sorted(served.signatures)
    ['serve', 'serving_default']
    >>> ids = tf.constant([[2, 5, 6, 3]])
    >>> served.serve(token_ids=ids, padding_mask=tf.ones_like(ids))["probabilities"].shape
    TensorShape([1, 2])
    """
    _check_destination(path, overwrite)
    _check_finite_weights(model, path)
    # What to write is what the model declares: its signatures and extra inputs.
    if "generate" in model.serving_signatures:
        return _export_generation(model, path, generate_options)
    bank = "task_id" in model.extra_input_names
    preprocessor = model.preprocessor
    if tokenizer is not None or preprocessor is not None:
        if sequence_length is None and preprocessor is None:
            raise ValueError("`sequence_length` is needed to export `serve_text` with a tokenizer.")
        tokenizer = ready_for_graphs(tokenizer or preprocessor.tokenizer)
        sequence_length = sequence_length or preprocessor.sequence_length
        model.check_input_length(sequence_length)
    vocabulary_size = model.backbone.vocabulary_size
    if tokenizer is not None and tokenizer.vocabulary_size() > vocabulary_size:
        raise ValueError(
            f"The tokenizer has {tokenizer.vocabulary_size()} tokens, more than the backbone's "
            f"vocabulary of {vocabulary_size}: it is not the backbone's tokenizer. Pass the "
            "tokenizer the backbone was trained with."
        )

    def probabilities(token_ids, padding_mask, task_id=None):
        token_ids = _checked_token_ids(vocabulary_size, token_ids, padding_mask, task_id)
        inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
        if bank:
            inputs["task_id"] = task_id
        return {"probabilities": tf.nn.softmax(model(inputs, training=False))}

    ids = tf.TensorSpec([None, None], tf.int32, name="token_ids")
    mask = tf.TensorSpec([None, None], tf.int32, name="padding_mask")
    task = tf.TensorSpec([None], tf.int32, name="task_id")
    text = tf.TensorSpec([None], tf.string, name="text")

    # The endpoints track the variables they use. Tracking the model as well
    # would store every weight twice (once per Keras and TF variable object).
    archive = keras.export.ExportArchive()
    if bank:
        archive.add_endpoint("serve", probabilities, input_signature=[ids, mask, task])
    else:
        archive.add_endpoint(
            "serve", lambda token_ids, padding_mask: probabilities(token_ids, padding_mask),
            input_signature=[ids, mask],
        )  # fmt: skip
    if tokenizer is not None:
        if not tokenizer.built:
            tokenizer.build(None)  # tracking needs a built layer; tokenizers have no weights
        archive.track(tokenizer)

        def from_text(texts, task_id=None):
            encoded = encode_texts(tokenizer, texts, sequence_length)
            return probabilities(encoded["token_ids"], encoded["padding_mask"], task_id)

        if bank:
            archive.add_endpoint("serve_text", from_text, input_signature=[text, task])
        else:
            archive.add_endpoint("serve_text", lambda texts: from_text(texts), input_signature=[text])
    return _write(archive, path)


def _check_destination(path: str, overwrite: bool):
    exists = os.path.isfile(path) or (os.path.isdir(path) and os.listdir(path))
    if exists and not overwrite:
        what = "a file" if os.path.isfile(path) else "a non-empty directory"
        raise ValueError(
            f"The SavedModel path {path!r} is {what}. Choose a new path, or pass "
            "overwrite=True (--overwrite) to replace it."
        )


def _check_finite_weights(model, path: str):
    # One variable at a time: a copy of every weight at once would double a large model.
    for variable in model.weights:
        check_finite(
            {variable.path: keras.ops.convert_to_numpy(variable)},
            f"{type(model).__name__} not exported to {path!r}",
        )


def _checked_token_ids(vocabulary_size: int, token_ids, padding_mask, task_id=None):
    """`token_ids`, once the served inputs pass their checks.

    A served graph has no Python check in front of it: a negative id would
    be gathered as another token (Keras's `take` wraps it), a large one fail
    on a CPU but read zeros on a GPU, and a mask or task ids of another
    batch broadcast. (Task ids' range is checked where they are used.)
    """
    in_vocabulary = f"token_ids must be in [0, {vocabulary_size}), the vocabulary of the backbone"
    checks = [
        tf.debugging.assert_non_negative(token_ids, message=in_vocabulary),
        tf.debugging.assert_less(token_ids, tf.cast(vocabulary_size, token_ids.dtype), message=in_vocabulary),
        tf.debugging.assert_equal(
            tf.shape(padding_mask), tf.shape(token_ids), message="padding_mask must have the shape of token_ids"
        ),
        # A 2 would count its token twice (mean pooling, generation's positions).
        tf.debugging.assert_equal(
            tf.reduce_all((padding_mask == 0) | (padding_mask == 1)), True,
            message="padding_mask must hold 0 (padding) and 1 (token) only",
        ),
    ]
    if task_id is not None:
        checks.append(tf.debugging.assert_equal(
            tf.shape(task_id)[0], tf.shape(token_ids)[0], message="task_id must hold one id per row of token_ids"
        ))  # fmt: skip
    with tf.control_dependencies(checks):
        return tf.identity(token_ids)


def write_archive(archive, path: str, model, *, overwrite: bool = False) -> str:
    """Writes a `keras.export.ExportArchive` of `model` as a SavedModel at
    `path`, with `export_saved_model`'s checks (the destination, finite
    weights) before anything is written, and its atomic swap."""
    _check_destination(path, overwrite)
    _check_finite_weights(model, path)
    return _write(archive, path)


def _write(archive, path: str) -> str:
    """Writes the SavedModel to a new directory beside `path`, then swaps it in.

    Whatever stops it (an error, Ctrl-C, SIGTERM under the command line)
    leaves `path` as it was and no temporary directory behind.
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=".tmp-saved-model-")
    old = None
    try:
        archive.write_out(staging, verbose=False)
        # mkdtemp makes the directory private (0700); give it what mkdir would.
        os.chmod(staging, 0o777 & ~current_umask())
        if os.path.lexists(path):
            old = tempfile.mkdtemp(dir=parent, prefix=".old-saved-model-")
            os.replace(path, os.path.join(old, "replaced"))
        os.replace(staging, path)
    except BaseException:
        # Moved aside but not replaced: put the old model back.
        if old is not None and os.path.lexists(os.path.join(old, "replaced")) and not os.path.lexists(path):
            os.replace(os.path.join(old, "replaced"), path)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # already gone once swapped in
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return path


_GENERATE_OPTIONS = ("max_new_tokens", "strategy", "temperature", "top_k", "end_token_ids")


def _export_generation(model, path: str, options: dict | None) -> str:
    if not options or "max_new_tokens" not in options:
        raise ValueError(
            "Exporting a causal LM needs `generate_options` with at least `max_new_tokens`. "
            f"Received: generate_options={options!r}."
        )
    unknown = sorted(set(options) - set(_GENERATE_OPTIONS))
    if unknown:
        raise ValueError(
            f"`generate_options` takes {_GENERATE_OPTIONS}; {unknown} are chosen per call "
            f"or not exportable. Received: generate_options={options!r}."
        )
    generate = model.generation_function(**options)
    inputs = [
        tf.TensorSpec([None, None], tf.int32, name="token_ids"),
        tf.TensorSpec([None, None], tf.int32, name="padding_mask"),
    ]
    if "task_id" in model.extra_input_names:
        inputs.append(tf.TensorSpec([None], tf.int32, name="task_id"))
    if options.get("strategy") == "sample":
        inputs.append(tf.TensorSpec([], tf.int32, name="seed"))

    vocabulary_size = model.backbone.vocabulary_size

    def endpoint(*args):
        served = {spec.name: arg for spec, arg in zip(inputs, args)}
        served["token_ids"] = _checked_token_ids(
            vocabulary_size, served["token_ids"], served["padding_mask"], served.get("task_id")
        )
        return generate(**served)

    archive = keras.export.ExportArchive()
    archive.add_endpoint("generate", endpoint, input_signature=inputs)
    return _write(archive, path)
