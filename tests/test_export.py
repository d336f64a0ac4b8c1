"""SavedModel export: served in a fresh process that imports neither this library nor KerasHub."""

import json
import subprocess
import sys

import keras
import keras_hub
import numpy as np
import pytest
from conftest import tiny_bert, tiny_gemma3_lm, tiny_gpt2_lm

from tf_prompt_tuning import PromptTextClassifier, TextPreprocessor
from tf_prompt_tuning.export import export_saved_model
from tf_prompt_tuning.models.prompt_bank import PromptBank
from tf_prompt_tuning.text_pipeline import encode_texts

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
    from test_prompt_causal_lm import MASK, TOKEN_IDS

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
    from test_prompt_causal_lm import MASK, TOKEN_IDS

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


def test_causal_lm_export_options_are_checked(tmp_path):
    
    from tf_prompt_tuning import PromptCausalLM

    with pytest.raises(ValueError, match=r"needs `generate_options` with at least `max_new_tokens`. Received: generate_options=None"):
        export_saved_model(PromptCausalLM(tiny_gpt2_lm(), num_tokens=3), str(tmp_path))
    with pytest.raises(ValueError, match=r"`generate_options` takes .*\['seed'\] are chosen per call"):
        export_saved_model(PromptCausalLM(tiny_gpt2_lm(), num_tokens=3), str(tmp_path / "x"),
                           generate_options={"max_new_tokens": 4, "seed": 1})  # fmt: skip
