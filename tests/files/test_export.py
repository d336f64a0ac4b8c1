"""SavedModel export: served in a fresh process that imports neither this library nor KerasHub."""

import json
import os
import re
import stat
import subprocess
import sys

import keras
import keras_hub
import numpy as np
import pytest
from conftest import tiny_bert, tiny_gemma3_lm, tiny_gpt2_lm

from tf_prompt_tuning import PromptCausalLM, PromptTextClassifier, TextPreprocessor
from tf_prompt_tuning.files.export import export_saved_model
from tf_prompt_tuning.models.prompt_bank import PromptBank
from tf_prompt_tuning.preprocessing.text_pipeline import encode_texts

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "great", "plot"]
TEXTS = ["good movie", "bad plot", "great great movie", "bad"]

SERVE = r"""
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # registers the tokenizer's ops
path, requests = sys.argv[1], json.loads(sys.argv[2])
model = tf.saved_model.load(path)
results = []
for request in requests:
    name = request.pop("signature")
    fn = model.signatures[name] if name == "serving_default" else getattr(model, name)
    args = {k: tf.constant(v) for k, v in request.items()}
    out = fn(**args) if name == "serving_default" else fn(*args.values())
    results.append(out["probabilities"].numpy().tolist())
assert "tf_prompt_tuning" not in sys.modules and "keras_hub" not in sys.modules
print(json.dumps(results))
"""


def _run(script, path, requests):
    result = subprocess.run(
        [sys.executable, "-c", script, str(path), json.dumps(requests)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _serve(path, requests):
    return [np.asarray(r) for r in _run(SERVE, path, requests)]


@pytest.fixture
def tokenizer():
    return keras_hub.models.BertTokenizer(vocabulary=VOCABULARY)


def _inputs(tokenizer, texts):
    encoded = {k: keras.ops.convert_to_numpy(v) for k, v in encode_texts(tokenizer, texts, 12).items()}
    return encoded


def test_classifier_export_matches_keras_for_two_batch_sizes(tokenizer, tmp_path):
    keras.utils.set_random_seed(0)
    model = PromptTextClassifier(tiny_bert(), 2, num_tokens=3)
    export_saved_model(model, str(tmp_path / "sm"), tokenizer=tokenizer, sequence_length=12)
    requests, expected = [], []
    for texts in (TEXTS[:1], TEXTS):
        inputs = _inputs(tokenizer, texts)
        requests.append({"signature": "serving_default", **{k: v.tolist() for k, v in inputs.items()}})
        requests.append({"signature": "serve_text", "text": texts})
        keras_inputs = {**inputs, "segment_ids": np.zeros_like(inputs["token_ids"])}
        expected += [keras.ops.convert_to_numpy(keras.ops.softmax(model(keras_inputs)))] * 2
    for actual, wanted in zip(_serve(tmp_path / "sm", requests), expected):
        np.testing.assert_allclose(actual, wanted, atol=1e-5)


@pytest.mark.parametrize("deep", [False, True, "prefix"])
def test_bank_export_serves_mixed_task_batches(tokenizer, tmp_path, deep):
    keras.utils.set_random_seed(0)
    backbone = tiny_bert()
    bank = PromptBank(backbone, num_tokens=3)
    bank.add_classifier("a", PromptTextClassifier(backbone, 2, num_tokens=3, deep=deep))
    bank.add_classifier("b", PromptTextClassifier(backbone, 3, num_tokens=3))
    export_saved_model(bank, str(tmp_path / "sm"), tokenizer=tokenizer, sequence_length=12)
    task_ids = [0, 1, 1, 0]
    inputs = _inputs(tokenizer, TEXTS)
    requests = [
        {"signature": "serving_default", **{k: v.tolist() for k, v in inputs.items()}, "task_id": task_ids},
        {"signature": "serve_text", "text": TEXTS[:2], "task_id": task_ids[:2]},
    ]
    keras_inputs = {**inputs, "segment_ids": np.zeros_like(inputs["token_ids"]), "task_id": np.array(task_ids)}
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(bank(keras_inputs)))
    full, text = _serve(tmp_path / "sm", requests)
    np.testing.assert_allclose(full, expected, atol=1e-5)
    np.testing.assert_allclose(text, expected[:2, :], atol=1e-5)


def test_a_classifier_with_a_preprocessor_serves_text_without_more_arguments(tokenizer, tmp_path):
    keras.utils.set_random_seed(0)
    model = PromptTextClassifier(tiny_bert(), 2, num_tokens=3, preprocessor=TextPreprocessor(tokenizer, 12))
    export_saved_model(model, str(tmp_path / "sm"))
    (served,) = _serve(tmp_path / "sm", [{"signature": "serve_text", "text": TEXTS}])
    np.testing.assert_allclose(served, keras.ops.softmax(model.predict(TEXTS, verbose=0)).numpy(), atol=1e-5)


def test_text_export_needs_a_sequence_length(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="`sequence_length` is needed"):
        export_saved_model(PromptTextClassifier(tiny_bert(), 2, num_tokens=3), str(tmp_path), tokenizer=tokenizer)


def test_text_export_rejects_a_too_long_sequence_length(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="exceeds the backbone's maximum of 24 positions"):
        export_saved_model(PromptTextClassifier(tiny_bert(), 2, num_tokens=3), str(tmp_path), tokenizer=tokenizer, sequence_length=22)


@pytest.mark.parametrize("deep", [False, "prefix"])
def test_each_weight_is_stored_once(tokenizer, tmp_path, deep):
    import tensorflow as tf

    model = PromptTextClassifier(tiny_bert(), 2, num_tokens=3, deep=deep)
    export_saved_model(model, str(tmp_path / "sm"))
    keys = tf.train.load_checkpoint(str(tmp_path / "sm" / "variables" / "variables")).get_variable_to_shape_map()
    stored = [k for k in keys if k.endswith("VARIABLE_VALUE")]
    assert len(stored) <= len(model.weights)


@pytest.mark.parametrize("deep", ["hidden", "prefix"])
def test_deep_prompt_classifier_exports(tokenizer, tmp_path, deep):
    keras.utils.set_random_seed(0)
    model = PromptTextClassifier(tiny_bert(), 2, num_tokens=3, deep=deep)
    export_saved_model(model, str(tmp_path / "sm"), tokenizer=tokenizer, sequence_length=12)
    inputs = _inputs(tokenizer, TEXTS)
    (served,) = _serve(tmp_path / "sm", [{"signature": "serve_text", "text": TEXTS}])
    keras_inputs = {**inputs, "segment_ids": np.zeros_like(inputs["token_ids"])}
    np.testing.assert_allclose(served, keras.ops.convert_to_numpy(keras.ops.softmax(model(keras_inputs))), atol=1e-5)


GENERATE = r"""
import json, sys
import numpy as np
import tensorflow as tf
path, requests = sys.argv[1], json.loads(sys.argv[2])
model = tf.saved_model.load(path)
assert sorted(model.signatures) == ["generate", "serving_default"], list(model.signatures)
results = []
for request in requests:
    args = {k: tf.constant(v, tf.int32) for k, v in request.items()}
    try:
        out = model.signatures["serving_default"](**args)
        results.append({k: v.numpy().astype(int).tolist() for k, v in out.items()})
    except tf.errors.InvalidArgumentError as error:
        results.append(error.message)
assert "tf_prompt_tuning" not in sys.modules and "keras_hub" not in sys.modules
print(json.dumps(results))
"""


def test_causal_lm_and_bank_exports_generate_like_keras(tmp_path):
    from conftest import LM_MASK as MASK
    from conftest import LM_TOKEN_IDS as TOKEN_IDS

    from tf_prompt_tuning import PromptCausalLM, PromptCausalLMBank

    backbone = tiny_gpt2_lm(max_sequence_length=16)
    lm = PromptCausalLM(backbone, num_tokens=3)
    greedy = {"max_new_tokens": 6, "end_token_ids": [int(lm.generate(TOKEN_IDS, MASK, 6)["token_ids"][0, 2])]}
    export_saved_model(lm, str(tmp_path / "lm"), generate_options=greedy)
    bank = PromptCausalLMBank(backbone, num_tokens=3)
    bank.add_lm("a", lm)
    bank.add_task("b")
    sample = {"max_new_tokens": 4, "strategy": "sample", "temperature": 2.0, "top_k": 5}
    export_saved_model(bank, str(tmp_path / "bank"), generate_options=sample)
    requests = [{"token_ids": TOKEN_IDS.tolist(), "padding_mask": MASK.tolist()},
                {"token_ids": TOKEN_IDS[1:2, :2].tolist(), "padding_mask": MASK[1:2, :2].tolist()},
                {"token_ids": [[1] * 8], "padding_mask": [[1] * 8]}]  # fmt: skip
    served = _run(GENERATE, tmp_path / "lm", requests)
    for request, out in zip(requests[:2], served):
        expected = lm.generate(request["token_ids"], request["padding_mask"], **greedy)
        np.testing.assert_array_equal(out["token_ids"], expected["token_ids"])
        np.testing.assert_array_equal(out["padding_mask"], expected["padding_mask"])
    assert served[0]["padding_mask"][0] == [1, 1, 1, 0, 0, 0]
    assert "max_new_tokens exceed the backbone position table" in served[2]  # 3 + 8 + 6 > 16
    request = {"token_ids": TOKEN_IDS.tolist(), "padding_mask": MASK.tolist(), "task_id": [1, 0, 1], "seed": 7}
    (out,) = _run(GENERATE, tmp_path / "bank", [request])
    expected = bank.generate(TOKEN_IDS, MASK, task_id=[1, 0, 1], seed=7, jit_compile=False, **sample)
    np.testing.assert_array_equal(out["token_ids"], expected["token_ids"])


def test_gemma3_export_generates_like_keras(tmp_path):
    from conftest import LM_MASK as MASK
    from conftest import LM_TOKEN_IDS as TOKEN_IDS

    from tf_prompt_tuning import PromptCausalLM

    lm = PromptCausalLM(tiny_gemma3_lm(), num_tokens=3, prompt_initializer="vocab")
    free = lm.generate(TOKEN_IDS, MASK, 6)["token_ids"][0].tolist()
    greedy = {"max_new_tokens": 6, "end_token_ids": [free[2]]}
    stop = free.index(free[2]) + 1  # row 0 ends at the first occurrence
    export_saved_model(lm, str(tmp_path / "lm"), generate_options=greedy)
    request = {"token_ids": TOKEN_IDS.tolist(), "padding_mask": MASK.tolist()}
    (out,) = _run(GENERATE, tmp_path / "lm", [request])
    expected = lm.generate(TOKEN_IDS, MASK, **greedy)
    np.testing.assert_array_equal(out["token_ids"], expected["token_ids"])
    np.testing.assert_array_equal(out["padding_mask"], expected["padding_mask"])
    assert out["padding_mask"][0] == [1] * stop + [0] * (6 - stop)


def test_a_deep_appended_lm_exports_generate_like_keras(tmp_path):
    from conftest import LM_MASK as MASK
    from conftest import LM_TOKEN_IDS as TOKEN_IDS

    from tf_prompt_tuning import PromptCausalLM

    lm = PromptCausalLM(tiny_gpt2_lm(), num_tokens=3, placement="append", deep=True, prompt_initializer="vocab")
    lm.prompt.deep_prompts.assign(np.random.default_rng(0).normal(size=lm.prompt.deep_prompts.shape))
    export_saved_model(lm, str(tmp_path / "lm"), generate_options={"max_new_tokens": 5})
    request = {"token_ids": TOKEN_IDS.tolist(), "padding_mask": MASK.tolist()}
    (out,) = _run(GENERATE, tmp_path / "lm", [request])
    expected = lm.generate(TOKEN_IDS, MASK, 5)
    np.testing.assert_array_equal(out["token_ids"], expected["token_ids"])
    shallow = PromptCausalLM(lm.backbone, num_tokens=3, placement="append", prompt_initializer="zeros")
    shallow.prompt.prompt.assign(lm.prompt.prompt)
    assert len(np.unique(expected["token_ids"])) > 1  # not one token everywhere: the comparison can fail
    inputs = {"token_ids": TOKEN_IDS, "padding_mask": MASK}
    assert not np.allclose(shallow.next_token_logits(inputs), lm.next_token_logits(inputs), atol=1e-3)


def test_causal_lm_export_options_are_checked(tmp_path):
    
    from tf_prompt_tuning import PromptCausalLM

    with pytest.raises(ValueError, match=r"needs `generate_options` with at least `max_new_tokens`. Received: generate_options=None"):
        export_saved_model(PromptCausalLM(tiny_gpt2_lm(), num_tokens=3), str(tmp_path))
    with pytest.raises(ValueError, match=r"`generate_options` takes .*\['seed'\] are chosen per call"):
        export_saved_model(PromptCausalLM(tiny_gpt2_lm(), num_tokens=3), str(tmp_path / "x"),
                           generate_options={"max_new_tokens": 4, "seed": 1})  # fmt: skip


# Nothing non-finite is exported; nothing a request sends is taken on trust.


def _nan_in(variable):
    value = keras.ops.convert_to_numpy(variable).copy()
    value.reshape(-1)[:2] = np.nan
    variable.assign(value)
    return variable.path


def _classifier():
    return PromptTextClassifier(tiny_bert(), 2, num_tokens=3)


def _bank():
    bank = PromptBank(tiny_bert(), num_tokens=3)
    bank.add_task("a", 2)
    bank.add_task("b", 3, deep="prefix")
    return bank


def _lm():
    return PromptCausalLM(tiny_gpt2_lm(), num_tokens=3)


def _lm_bank():
    from tf_prompt_tuning import PromptCausalLMBank

    bank = PromptCausalLMBank(tiny_gpt2_lm(), num_tokens=3)
    bank.add_task("a")
    bank.add_task("b")
    return bank


@pytest.mark.parametrize(
    "make_model, poison",
    [
        (_classifier, lambda m: m.prompt.prompt),
        (_classifier, lambda m: m.head.kernel),
        (_bank, lambda m: m.prefixes.task_prefixes[1]),
        (_bank, lambda m: m.heads[0].bias),
        (_lm, lambda m: m.prompt.prompt),
        (_lm_bank, lambda m: m.prompt.prompts[1]),
        (_classifier, lambda m: m.backbone.token_embedding.embeddings),
    ],
    ids=["classifier_prompt", "classifier_head", "bank_prefixes", "bank_head", "lm_prompt", "lm_bank_prompt",
         "backbone"],
)  # fmt: skip
def test_non_finite_weights_are_not_exported(tmp_path, make_model, poison):
    model = make_model()
    name = _nan_in(poison(model))
    with pytest.raises(
        ValueError,
        match=rf"{type(model).__name__} not exported to '.*sm': '{re.escape(name)}' has 2 non-finite values "
        r"\(NaN or infinity\) of \d+. The training that produced it diverged: train again with a lower learning rate",
    ):
        export_saved_model(model, str(tmp_path / "sm"), generate_options={"max_new_tokens": 2}
                           if isinstance(model, PromptCausalLM) else None)  # fmt: skip
    assert os.listdir(tmp_path) == []


def _load(path):
    import tensorflow as tf

    return tf.saved_model.load(path)


@pytest.mark.parametrize("make_model", [_classifier, _bank, _lm, _lm_bank], ids=["classifier", "bank", "lm", "lm_bank"])
def test_every_token_id_signature_checks_the_ids_it_is_served(tmp_path, make_model):
    import tensorflow as tf

    model = make_model()
    generates = isinstance(model, PromptCausalLM)
    export_saved_model(model, str(tmp_path / "sm"), generate_options={"max_new_tokens": 2} if generates else None)
    served = _load(str(tmp_path / "sm"))
    names = ["generate", "serving_default"] if generates else ["serve", "serving_default"]
    assert sorted(served.signatures) == names
    vocabulary = model.backbone.vocabulary_size
    good = {"token_ids": np.array([[5, 6, 7], [8, 9, 10]], "int32")}
    good["padding_mask"] = np.ones_like(good["token_ids"])
    if hasattr(model, "tasks"):
        good["task_id"] = np.array([1, 0], "int32")
    for name in names:
        signature = served.signatures[name]
        signature(**{k: tf.constant(v) for k, v in good.items()})  # in range: served
        for bad_id in (-1, -vocabulary, vocabulary, 999):
            ids = good["token_ids"].copy()
            ids[1, 1] = bad_id
            with pytest.raises(tf.errors.InvalidArgumentError, match=rf"token_ids must be in \[0, {vocabulary}\), the vocabulary of the backbone"):
                signature(**{k: tf.constant(v) for k, v in {**good, "token_ids": ids}.items()})
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"padding_mask must have the shape of token_ids"):
            signature(**{k: tf.constant(v) for k, v in {**good, "padding_mask": good["padding_mask"][:, :1]}.items()})
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"padding_mask must hold 0 \(padding\) and 1 \(token\) only"):
            signature(**{k: tf.constant(v) for k, v in {**good, "padding_mask": 2 * good["padding_mask"]}.items()})
        if "task_id" in good:
            with pytest.raises(tf.errors.InvalidArgumentError, match=r"task_id must hold one id per row of token_ids"):
                signature(**{k: tf.constant(v) for k, v in {**good, "task_id": good["task_id"][:1]}.items()})


def test_a_tokenizer_with_more_tokens_than_the_backbone_is_refused(tmp_path):
    # Its words past the backbone's 40 tokens would be served ids out of range.
    vocabulary = VOCABULARY + [f"w{i}" for i in range(41 - len(VOCABULARY))]
    model = PromptTextClassifier(tiny_bert(), 2, num_tokens=3)
    with pytest.raises(ValueError, match=r"The tokenizer has 41 tokens, more than the backbone's vocabulary of 40: it is not the backbone's tokenizer"):
        export_saved_model(model, str(tmp_path / "sm"), tokenizer=keras_hub.models.BertTokenizer(vocabulary=vocabulary),
                           sequence_length=8)  # fmt: skip
    assert os.listdir(tmp_path) == []
    export_saved_model(model, str(tmp_path / "sm"), tokenizer=keras_hub.models.BertTokenizer(vocabulary=vocabulary[:40]),
                       sequence_length=8)  # fmt: skip


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002, 0o027], ids=oct)
def test_the_saved_model_directory_gets_the_usual_permissions(tmp_path, umask):
    previous = os.umask(umask)
    try:
        path = export_saved_model(_classifier(), str(tmp_path / "sm"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o777 & ~umask  # what `mkdir` would give


def test_an_interrupted_export_leaves_the_old_model_and_no_temporary_directory(tmp_path, monkeypatch):
    model = _classifier()
    path = export_saved_model(model, str(tmp_path / "sm"))
    before = sorted(os.listdir(path))
    real_replace = os.replace

    def swap_fails(src, dst):  # the new model cannot be put in place (or SIGTERM arrives then)
        if os.path.basename(src).startswith(".tmp-saved-model-"):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", swap_fails)
    with pytest.raises(KeyboardInterrupt):
        export_saved_model(model, path, overwrite=True)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["sm"] and sorted(os.listdir(path)) == before
    _load(path)  # still whole

    def write_fails(self, directory, **kwargs):
        os.makedirs(os.path.join(directory, "variables"))
        raise KeyboardInterrupt

    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", write_fails)  # the backend's class
    with pytest.raises(KeyboardInterrupt):
        export_saved_model(model, str(tmp_path / "new"))
    assert os.listdir(tmp_path) == ["sm"]


def test_appended_prompts_export_and_serve_as_in_keras(tmp_path):
    # Placement "append" on a decoder: the classifier, a bank of appended
    # tasks (shallow and deep) and the LM, served without this library.
    from conftest import LM_MASK as MASK
    from conftest import LM_TOKEN_IDS as TOKEN_IDS

    backbone = tiny_gpt2_lm(max_sequence_length=32)
    keras.utils.set_random_seed(0)
    classifier = PromptTextClassifier(backbone, 2, num_tokens=3, placement="append", pooling="last")
    deep = PromptTextClassifier(backbone, 3, num_tokens=3, placement="append", pooling="last", deep="hidden")
    bank = PromptBank(backbone, num_tokens=3, placement="append", pooling="last")
    bank.add_classifier("shallow", classifier)
    bank.add_classifier("deep", deep)
    inputs = {"token_ids": np.array([[5, 6, 7, 0], [8, 9, 10, 11]], "int32"),
              "padding_mask": np.array([[1, 1, 1, 0], [1, 1, 1, 1]], "int32")}  # fmt: skip
    export_saved_model(classifier, str(tmp_path / "classifier"))
    export_saved_model(bank, str(tmp_path / "bank"))
    (served,) = _serve(tmp_path / "classifier", [{"signature": "serving_default", **{k: v.tolist() for k, v in inputs.items()}}])
    np.testing.assert_allclose(served, keras.ops.convert_to_numpy(keras.ops.softmax(classifier(inputs))), atol=1e-5)
    request = {"signature": "serving_default", **{k: v.tolist() for k, v in inputs.items()}, "task_id": [1, 0]}
    (served,) = _serve(tmp_path / "bank", [request])
    expected = keras.ops.softmax(bank(dict(inputs, task_id=np.array([1, 0]))))
    np.testing.assert_allclose(served, keras.ops.convert_to_numpy(expected), atol=1e-5)
    lm = PromptCausalLM(backbone, num_tokens=3, placement="append")
    export_saved_model(lm, str(tmp_path / "lm"), generate_options={"max_new_tokens": 4})
    (generated,) = _run(GENERATE, tmp_path / "lm", [{"token_ids": TOKEN_IDS.tolist(), "padding_mask": MASK.tolist()}])
    np.testing.assert_array_equal(generated["token_ids"], lm.generate(TOKEN_IDS, MASK, 4)["token_ids"])
