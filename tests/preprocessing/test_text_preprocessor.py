"""`TextPreprocessor`: raw strings in `fit`, `predict`, `evaluate` and export,
equal to the token-dict path."""

import io
import types

import keras
import keras_hub
import numpy as np
import pytest
import sentencepiece as spm
import tensorflow as tf
from conftest import assert_config_round_trip, tiny_bert, tiny_gemma3_lm

from tf_prompt_tuning import (
    PromptBank,
    PromptCausalLM,
    PromptTextClassifier,
    TextPreprocessor,
)
from tf_prompt_tuning.preprocessing.text_pipeline import encode_texts

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "great", "plot", "dull"]
TEXTS = ["good movie", "bad plot", "great great movie", "bad", "dull dull plot", "good"]
LABELS = np.array([1, 0, 1, 0, 0, 1], "int32")


def _tokenizer():
    return keras_hub.models.BertTokenizer(vocabulary=VOCABULARY)


def _classifier(preprocessor=True, **kwargs):
    keras.utils.set_random_seed(0)
    return PromptTextClassifier(
        tiny_bert(), 2, num_tokens=3, preprocessor=TextPreprocessor(_tokenizer(), 12) if preprocessor else None,
        **kwargs,
    )  # fmt: skip


def _token_dicts(texts):
    """What the token-dict path is given: ids and mask, as a user tokenizes them."""
    return {k: v.numpy() for k, v in encode_texts(_tokenizer(), texts, 12).items()}


def _sentencepiece_tokenizer():
    """A tiny SentencePiece tokenizer (the kind Gemma uses), trained here."""
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TEXTS * 4), model_writer=proto, vocab_size=10, model_type="word",
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
        unk_piece="<unk>", minloglevel=2,
    )  # fmt: skip
    return keras_hub.tokenizers.SentencePieceTokenizer(proto=proto.getvalue())


def test_batches_are_framed_and_padded_to_a_multiple_of_16_capped_at_the_length():
    preprocessor = TextPreprocessor(_tokenizer(), 20)
    inputs = preprocessor(["good movie", "bad"])
    assert inputs["token_ids"].numpy().tolist() == [[2, 5, 7, 3] + [0] * 12, [2, 6, 3] + [0] * 13]
    assert inputs["padding_mask"].numpy().sum(axis=1).tolist() == [4, 3]
    long = preprocessor([" ".join(["good"] * 30)])
    assert long["token_ids"].shape == (1, 20) and long["token_ids"].numpy()[0, -1] == 3


def test_token_dicts_pass_through_and_a_banks_text_is_tokenized():
    preprocessor = TextPreprocessor(_tokenizer(), 12)
    tokens = _token_dicts(TEXTS)
    assert preprocessor(tokens) is tokens
    bank_inputs = preprocessor({"text": TEXTS[:2], "task_id": np.array([0, 1])})
    assert sorted(bank_inputs) == ["padding_mask", "task_id", "token_ids"]
    assert bank_inputs["token_ids"].numpy()[0, :4].tolist() == [2, 5, 7, 3]


def test_arrays_are_reshuffled_every_epoch_only_when_asked():
    preprocessor = TextPreprocessor(_tokenizer(), 12)
    index = np.arange(len(TEXTS))  # as labels, to see the order

    def epochs(**kwargs):
        dataset = preprocessor.dataset(TEXTS, index, batch_size=2, **kwargs)
        return [tuple(np.concatenate([y.numpy() for _, y in dataset]).tolist()) for _ in range(4)]

    assert epochs() == [tuple(index)] * 4
    shuffled = epochs(shuffle=True)
    assert all(sorted(order) == list(index) for order in shuffled)
    assert len(set(shuffled)) > 1  # a new order each epoch (seeded by the test's global seed)


def test_predict_and_evaluate_on_strings_equal_the_token_dict_path():
    model = _classifier()
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    tokens = _token_dicts(TEXTS)  # no segment ids: the model adds them
    np.testing.assert_allclose(model.predict(TEXTS, verbose=0), model.predict(tokens, verbose=0), atol=1e-6)
    np.testing.assert_allclose(
        model.predict(np.array(TEXTS), batch_size=4, verbose=0), model(tokens).numpy(), atol=1e-6
    )
    from_text = model.evaluate(TEXTS, LABELS, verbose=0, return_dict=True)
    from_tokens = model.evaluate(tokens, LABELS, verbose=0, return_dict=True)
    assert from_text == pytest.approx(from_tokens, abs=1e-6)
    dataset = tf.data.Dataset.from_tensor_slices((TEXTS, LABELS)).batch(4)
    assert model.evaluate(dataset, verbose=0, return_dict=True) == pytest.approx(from_tokens, abs=1e-6)


def test_fit_on_strings_equals_fit_on_token_dicts():
    histories, weights = [], []
    for texts in (TEXTS, _token_dicts(TEXTS)):
        model = _classifier()
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        history = model.fit(
            texts, LABELS, batch_size=len(TEXTS), epochs=3, shuffle=False, verbose=0,
            validation_data=(texts, LABELS),
        )  # fmt: skip
        histories.append(history.history)
        weights.append([v.numpy() for v in model.trainable_variables])
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(histories[0][key], histories[1][key], atol=1e-5)
    assert histories[0]["loss"][-1] < histories[0]["loss"][0]
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_a_bank_predicts_from_text_and_task_ids():
    keras.utils.set_random_seed(0)
    backbone = tiny_bert()
    bank = PromptBank(backbone, num_tokens=3, preprocessor=TextPreprocessor(_tokenizer(), 12))
    bank.add_classifier("a", PromptTextClassifier(backbone, 2, num_tokens=3))
    bank.add_classifier("b", PromptTextClassifier(backbone, 3, num_tokens=3))
    task_id = np.array([0, 1, 1, 0, 1, 0], "int32")
    expected = bank({**_token_dicts(TEXTS), "task_id": task_id}).numpy()
    np.testing.assert_allclose(bank.predict({"text": TEXTS, "task_id": task_id}, verbose=0), expected, atol=1e-6)


def test_config_round_trip_and_keras_save_load_keep_the_preprocessor(tmp_path):
    model = _classifier()
    clone = assert_config_round_trip(model)
    assert clone.preprocessor.sequence_length == 12
    model.save(str(tmp_path / "model.keras"))
    restored = keras.saving.load_model(str(tmp_path / "model.keras"))
    np.testing.assert_allclose(restored.predict(TEXTS, verbose=0), model.predict(TEXTS, verbose=0), atol=1e-6)


def test_sentencepiece_tokenizers_survive_a_later_random_seed():
    # `keras.utils.set_random_seed` clears TensorFlow's kernel cache, which
    # deletes the SentencePiece model the tokenizer's op holds.
    keras.utils.set_random_seed(0)
    tokenizer = _sentencepiece_tokenizer()
    expected = TextPreprocessor(tokenizer, 8)(TEXTS)["token_ids"].numpy()
    keras.utils.set_random_seed(1)
    (batch,) = TextPreprocessor(tokenizer, 8).dataset(TEXTS, batch_size=len(TEXTS))
    np.testing.assert_array_equal(batch["token_ids"].numpy(), expected)


def test_a_keras_hub_without_the_op_method_rebuilds_with_set_proto():
    from tf_prompt_tuning.preprocessing.text_pipeline import ready_for_graphs

    class OlderSentencePieceTokenizer:  # KerasHub's public method only
        proto = b"model"
        protos = []

        def set_proto(self, proto):
            self.protos.append(proto)

    tokenizer = OlderSentencePieceTokenizer()
    assert ready_for_graphs(tokenizer) is tokenizer and tokenizer.protos == [b"model"]


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: TextPreprocessor(_tokenizer(), 0), ValueError, r"`sequence_length` must be a positive integer. Received: sequence_length=0"),
        (lambda: TextPreprocessor(_tokenizer(), 2), ValueError, r"`sequence_length` must leave room for text"),
        (lambda: TextPreprocessor(_tokenizer(), 8)(np.array([[1, 2]])), ValueError, r"takes a batch of strings, shape \(batch,\). Received: dtype int64, shape \(1, 2\)"),
        (
            lambda: TextPreprocessor(_tokenizer(), 8).dataset(tf.data.Dataset.from_tensor_slices(TEXTS), LABELS),
            ValueError, r"With a `tf.data.Dataset` for `x`, pass no `y`",
        ),
        (
            lambda: PromptCausalLM(tiny_gemma3_lm(), num_tokens=2, preprocessor=TextPreprocessor(_tokenizer(), 8)),
            ValueError, r"`PromptCausalLM` takes token ids \(see `causal_lm_batch`\), not a preprocessor",
        ),
    ],
    ids=["zero_length", "no_room", "not_strings", "dataset_with_labels", "causal_lm"],
)
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_empty_and_blank_texts_give_the_same_logits_on_every_path():
    # `predict(["", "great film"])` once changed row 0 (an empty text lost its
    # [CLS]/[SEP] in a batch), and the CLI's `predict ""` crashed.
    from tf_prompt_tuning.app.classification_job import predict_texts
    from tf_prompt_tuning.preprocessing.text_pipeline import make_text_dataset

    model = _classifier()
    texts = ["", "   ", "great movie"]
    alone = np.concatenate([model.predict([t], verbose=0) for t in texts])
    np.testing.assert_allclose(model.predict(texts, verbose=0), alone, atol=1e-6)
    np.testing.assert_allclose(model(_token_dicts(texts)), alone, atol=1e-6)
    data = types.SimpleNamespace(texts=texts, labels=np.zeros(3, "int32"))
    (inputs, _), = make_text_dataset(data, tokenizer=_tokenizer(), sequence_length=12, batch_size=3,
                                     bucket_by_length=False)
    np.testing.assert_allclose(model(inputs), alone, atol=1e-6)
    rows = predict_texts(model, _tokenizer(), texts, sequence_length=12)
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(alone))
    np.testing.assert_allclose([r["probability"] for r in rows], probabilities.max(-1), atol=1e-6)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: m.fit(TEXTS, LABELS, epochs=1, verbose=0), r"`x` holds strings, but this PromptTextClassifier has no `preprocessor`"),
        (lambda m: m.predict(np.array(TEXTS), verbose=0), r"pass token dicts \(`tpt.encode_texts`\)"),
        (lambda m: m.evaluate(tf.constant(TEXTS), LABELS, verbose=0), r"has no `preprocessor`"),
        (lambda m: m.predict(tf.data.Dataset.from_tensor_slices(TEXTS).batch(2), verbose=0), r"has no `preprocessor`"),
        (lambda m: m.fit(_token_dicts(TEXTS), LABELS, validation_data=(TEXTS, LABELS), verbose=0), r"has no `preprocessor`"),
    ],
    ids=["fit_list", "predict_array", "evaluate_tensor", "predict_dataset", "validation_strings"],
)
def test_strings_without_a_preprocessor_say_how_to_add_one(call, match):
    model = _classifier(preprocessor=False)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match=match):
        call(model)


@pytest.mark.parametrize("preprocessor", [True, False], ids=["strings", "token_dicts"])
@pytest.mark.parametrize(
    "labels, match",
    [
        (np.array(["pos", "neg"] * 3), r"`y` must be integer class indices in \[0, 2\). Received: labels of dtype <U3, first 'pos'"),
        (np.array([0, 1, 2, 0, 1, 0]), r"`y` must be class indices in \[0, 2\) \(num_classes=2\). Received: labels from 0 to 2"),
        (np.array([0, -1, 1, 0, 1, 0]), r"Received: labels from -1 to 1"),
        (np.array([0.0, 1.0] * 3), r"Received: labels of dtype float64"),
    ],
    ids=["names", "too_large", "negative", "floats"],
)
def test_labels_that_are_not_class_indices_are_refused_before_training(preprocessor, labels, match):
    model = _classifier(preprocessor=preprocessor)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [v.numpy().copy() for v in model.trainable_variables]
    x = TEXTS if preprocessor else _token_dicts(TEXTS)
    with pytest.raises(ValueError, match=match):
        model.fit(x, labels, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=match):
        model.evaluate(x, labels, verbose=0)
    for variable, value in zip(model.trainable_variables, before):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_the_readme_raw_text_example_runs(tmp_path, monkeypatch):
    """README's raw-strings block, as written, on the real MiniLM."""
    import pathlib
    import re

    import tf_prompt_tuning as tpt

    readme = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "TextPreprocessor" in b]
    monkeypatch.chdir(tmp_path)
    backbone, tokenizer = tpt.load_backbone()
    namespace = {"keras": keras, "tpt": tpt, "backbone": backbone, "tokenizer": tokenizer}
    exec(block, namespace)
    assert namespace["model"].predict(["a dull, tedious mess"], verbose=0).shape == (1, 2)
    assert (tmp_path / "sentiment_model" / "saved_model.pb").exists()
