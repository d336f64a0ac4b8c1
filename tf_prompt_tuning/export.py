"""`export_saved_model`: a prompt-tuned classifier or bank as a SavedModel for TF Serving."""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_prompt_tuning.prompt_bank import PromptBank
from tf_prompt_tuning.text_pipeline import encode_texts


def export_saved_model(model, path: str, *, tokenizer=None, sequence_length: int | None = None) -> str:
    """Writes `model` as a SavedModel with serving signatures.

    Signatures (all return `{"probabilities": (batch, classes) float32}`):

    - `serving_default` (also `serve`): `token_ids` and `padding_mask`,
      int32 `(batch, seq)`, plus `task_id` int32 `(batch,)` for a
      `PromptBank`. Segment ids, where the backbone takes them, are zeros.
    - `serve_text`, when `tokenizer` is given: raw strings `text` (batch,)
      (plus `task_id`), tokenized inside the graph with the backbone's own
      tokenizer and truncated to `sequence_length`. Loading it needs
      `import tensorflow_text` (for the tokenizer ops), nothing from this
      library.

    The file needs nothing from this library to load: `tf.saved_model.load`.

    Args:
        model: a `PromptTextClassifier` or `PromptBank`.
        path: the directory to write.
        tokenizer: the backbone's tokenizer, to add `serve_text`.
        sequence_length: the longest token sequence for `serve_text`.
    """
    bank = isinstance(model, PromptBank)
    takes_segments = "segment_ids" in model.backbone.input
    if tokenizer is not None:
        if sequence_length is None:
            raise ValueError("`sequence_length` is needed to export `serve_text` with a tokenizer.")
        model.check_input_length(sequence_length)

    def probabilities(token_ids, padding_mask, task_id=None):
        inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
        if takes_segments:
            inputs["segment_ids"] = tf.zeros_like(token_ids)
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
    archive.write_out(path, verbose=False)
    return path
