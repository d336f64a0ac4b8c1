"""Soft-prompted generation with tiny random KerasHub GPT-2, OPT and Gemma 3 backbones."""

import keras
import keras_hub
import numpy as np
import pytest
from conftest import (
    LM_MASK,
    LM_TOKEN_IDS,
    assert_config_round_trip,
    assert_keras_save_load_parity,
    tiny_gemma3_lm,
    tiny_gpt2_lm,
    tiny_opt_lm,
)
from conftest import LM_VOCABULARY as VOCABULARY

from tf_prompt_tuning import (
    PromptCausalLM,
    causal_lm_batch,
    make_train_step,
    parameter_summary,
)

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
# Right-padded; `_left` moves each row's padding to the front.
TOKEN_IDS, MASK = LM_TOKEN_IDS, LM_MASK


def _left(token_ids, mask):
    order = np.argsort(mask, axis=1, kind="stable")  # pads first, tokens keep their order
    return np.take_along_axis(token_ids, order, 1), np.take_along_axis(mask, order, 1)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def uncached_greedy(model, token_ids, mask, steps):
    """The reference: the full forward pass over everything so far, every step."""
    generated = np.zeros((len(token_ids), 0), "int32")
    for _ in range(steps):
        ids = np.concatenate([token_ids, generated], axis=1)
        full_mask = np.concatenate([mask, np.ones_like(generated)], axis=1)
        logits = _np(model({"token_ids": ids, "padding_mask": full_mask}))
        last = full_mask.shape[1] - 1 - np.argmax(full_mask[:, ::-1], axis=1)  # last real token
        next_ids = logits[np.arange(len(ids)), last].argmax(-1)
        generated = np.concatenate([generated, next_ids[:, None].astype("int32")], 1)
    return generated


# One of each family `causal_decoder` runs: learned positions added to the
# embeddings (GPT-2), in the embedding layer (OPT), rotary with local and
# global layers (Gemma 3).
FAMILIES = {"gpt2": tiny_gpt2_lm, "opt": tiny_opt_lm, "gemma3": tiny_gemma3_lm}


@pytest.fixture
def model():
    return PromptCausalLM(tiny_gpt2_lm(), num_tokens=3, seed=1)


@pytest.fixture(params=list(FAMILIES))
def family_model(request):
    return PromptCausalLM(FAMILIES[request.param](), num_tokens=3, seed=1, prompt_initializer="vocab")


def test_shapes_and_what_trains(model):
    logits = model({"token_ids": TOKEN_IDS, "padding_mask": MASK})
    assert logits.shape == (3, 5, VOCABULARY) and logits.dtype == "float32"
    summary = parameter_summary(model)
    assert summary.trainable == 3 * 32
    assert summary.frozen == model.backbone.count_params()
    assert [v.path for v in model.trainable_weights] == [model.prompt.prompt.path]
    out = model.generate(TOKEN_IDS, MASK, 4)
    assert out["token_ids"].shape == out["padding_mask"].shape == (3, 4)
    assert out["token_ids"].dtype == np.int32 and out["padding_mask"].all()


def test_config_and_keras_round_trip(model, tmp_path):
    assert_config_round_trip(model)
    restored = assert_keras_save_load_parity(model, {"token_ids": TOKEN_IDS, "padding_mask": MASK}, tmp_path)
    assert restored.num_tokens == 3 and not restored.backbone.trainable


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("jit_compile", [True, False], ids=["xla", "graph"])
def test_cached_generation_equals_the_uncached_reference(family, jit_compile):
    model = PromptCausalLM(FAMILIES[family](), num_tokens=3, prompt_initializer="vocab")
    cached = model.generate(TOKEN_IDS, MASK, 6, jit_compile=jit_compile)["token_ids"]
    np.testing.assert_array_equal(cached, uncached_greedy(model, TOKEN_IDS, MASK, 6))


def test_left_and_right_padding_give_the_same_logits_and_tokens(family_model):
    model = family_model
    left_ids, left_mask = _left(TOKEN_IDS, MASK)
    assert left_ids[1].tolist() == [0, 0, 0, 21, 22]
    right = _np(model({"token_ids": TOKEN_IDS, "padding_mask": MASK}))
    left = _np(model({"token_ids": left_ids, "padding_mask": left_mask}))
    np.testing.assert_allclose(left[left_mask == 1], right[MASK == 1], atol=1e-5)
    np.testing.assert_array_equal(
        model.generate(left_ids, left_mask, 6)["token_ids"], model.generate(TOKEN_IDS, MASK, 6)["token_ids"]
    )
    # Alone, unpadded, each row generates the same tokens again.
    alone = model.generate(TOKEN_IDS[1:2, :2], MASK[1:2, :2], 6)["token_ids"]
    np.testing.assert_array_equal(alone[0], model.generate(TOKEN_IDS, MASK, 6)["token_ids"][1])


def test_rows_stop_at_their_end_token(family_model):
    model = family_model
    free = model.generate(TOKEN_IDS, MASK, 6, jit_compile=False)["token_ids"]
    end = int(free[0, 1])  # row 0 ends at its second token
    stopped = model.generate(TOKEN_IDS, MASK, 6, end_token_ids=[end], jit_compile=False)
    for row in range(3):
        hits = np.flatnonzero(free[row] == end)
        length = hits[0] + 1 if len(hits) else 6
        assert stopped["padding_mask"][row].tolist() == [True] * length + [False] * (6 - length)
        np.testing.assert_array_equal(stopped["token_ids"][row, :length], free[row, :length])
        assert not stopped["token_ids"][row, length:].any()
    assert stopped["padding_mask"][0].sum() <= 2
    # Every row ends at once: one token each.
    first = model.generate(TOKEN_IDS, MASK, 6, end_token_ids=free[:, 0].tolist(), jit_compile=False)
    assert first["padding_mask"].sum(axis=1).tolist() == [1, 1, 1]


def test_sampling_is_reproducible_and_differs_from_greedy(model):
    greedy = model.generate(TOKEN_IDS, MASK, 8, jit_compile=False)["token_ids"]
    hot = dict(strategy="sample", temperature=100.0)
    first = model.generate(TOKEN_IDS, MASK, 8, seed=3, **hot)["token_ids"]
    np.testing.assert_array_equal(model.generate(TOKEN_IDS, MASK, 8, seed=3, **hot)["token_ids"], first)
    assert not np.array_equal(model.generate(TOKEN_IDS, MASK, 8, seed=4, **hot)["token_ids"], first)
    assert (first != greedy).mean() > 0.5
    # Sampling from the top token alone is greedy decoding.
    top_1 = model.generate(TOKEN_IDS, MASK, 8, strategy="sample", top_k=1, seed=5, jit_compile=False)["token_ids"]
    np.testing.assert_array_equal(top_1, greedy)


def test_mixed_precision_keeps_the_prompt_float32():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = PromptCausalLM(tiny_gpt2_lm(), num_tokens=3)
    assert model.prompt.prompt.dtype == "float32"
    assert model({"token_ids": TOKEN_IDS, "padding_mask": MASK}).dtype == "float32"
    cached = model.generate(TOKEN_IDS, MASK, 4, jit_compile=False)["token_ids"]
    np.testing.assert_array_equal(cached, uncached_greedy(model, TOKEN_IDS, MASK, 4))


def test_causal_lm_batch_shifts_labels_and_masks_the_input():
    ids = np.array([[5, 6, 7, 8], [0, 5, 6, 7]])
    mask = np.array([[1, 1, 1, 1], [0, 1, 1, 1]])
    x, labels, weights = causal_lm_batch(ids, mask)
    np.testing.assert_array_equal(_np(x["token_ids"]), ids)
    np.testing.assert_array_equal(_np(labels), [[6, 7, 8, 0], [5, 6, 7, 0]])
    np.testing.assert_array_equal(_np(weights), [[1, 1, 1, 0], [0, 1, 1, 0]])
    target = np.array([[0, 0, 1, 1], [0, 0, 0, 1]])
    _, _, weights = causal_lm_batch(ids, mask, target_mask=target)
    np.testing.assert_array_equal(_np(weights), [[0, 1, 1, 0], [0, 0, 1, 0]])
    with pytest.raises(ValueError, match=r"must have the same shape. Received: \(2, 4\), \(2, 3\)"):
        causal_lm_batch(ids, mask[:, :3])


WORD = [7, 8]  # the synthetic task: whatever the input, continue with this word


def _task_data(rng, size, length=6):
    """Random inputs of 2..4 tokens then WORD, padded left or right, and WORD's mask."""
    ids = np.zeros((size, length), "int32")
    target = np.zeros_like(ids)
    for row in range(size):
        n = rng.integers(2, length - 1)
        tokens = [*rng.integers(10, VOCABULARY, n), *WORD]
        start = length - len(tokens) if row % 2 else 0
        ids[row, start : start + len(tokens)] = tokens
        target[row, start + n : start + len(tokens)] = 1
    return ids, target


def _task_batch(rng, size):
    ids, target = _task_data(rng, size)
    return causal_lm_batch(ids, ids > 0, target_mask=target)  # the loss on WORD only


def _hit_rate(model, rng):
    ids, target = _task_data(rng, 32)
    inputs = ids * (1 - target)  # WORD becomes padding
    generated = model.generate(inputs, inputs > 0, len(WORD), jit_compile=False)["token_ids"]
    return float(np.mean(np.all(generated == WORD, axis=1)))


def test_training_the_prompt_teaches_the_frozen_model_a_task():
    backbone = tiny_gpt2_lm()
    model = PromptCausalLM(backbone, num_tokens=4, seed=0)
    base = PromptCausalLM(backbone, num_tokens=0)
    frozen = [_np(v).copy() for v in backbone.weights]
    prompt = _np(model.prompt.prompt).copy()
    rng = np.random.default_rng(0)
    step = make_train_step(model, loss=LOSS, optimizer=keras.optimizers.Adam(0.1))
    losses = [float(step(*_task_batch(rng, 32))) for _ in range(60)]
    assert losses[-1] < losses[0] / 2
    assert {v.path for v in step.variables} == {model.prompt.prompt.path}
    for before, variable in zip(frozen, backbone.weights):
        np.testing.assert_array_equal(_np(variable), before)
    assert not np.array_equal(_np(model.prompt.prompt), prompt)
    assert _hit_rate(model, np.random.default_rng(1)) >= 0.9
    assert _hit_rate(base, np.random.default_rng(1)) <= 0.1


def test_fit_trains_only_the_prompt(model):
    frozen = [_np(v).copy() for v in model.backbone.weights]
    prompt = _np(model.prompt.prompt).copy()
    model.compile(loss=LOSS, optimizer=keras.optimizers.Adam(0.1))
    x, y, weights = causal_lm_batch(TOKEN_IDS, MASK)
    model.fit(x, y, sample_weight=weights, epochs=2, verbose=0)
    for before, variable in zip(frozen, model.backbone.weights):
        np.testing.assert_array_equal(_np(variable), before)
    assert not np.array_equal(_np(model.prompt.prompt), prompt)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"num_tokens": -1}, ValueError, r"`num_tokens` must be a positive integer. Received: num_tokens=-1"),
        ({"num_tokens": 2.5}, TypeError, r"Received: num_tokens=2.5 \(of type float\)"),
    ],
    ids=["negative", "float"],
)
def test_bad_num_tokens(kwargs, error, message):
    with pytest.raises(error, match=message):
        PromptCausalLM(tiny_gpt2_lm(), **kwargs)


def test_an_encoder_backbone_is_refused():
    from conftest import tiny_bert

    with pytest.raises(ValueError, match=r"must be a KerasHub causal LM backbone .* Received: BertBackbone"):
        PromptCausalLM(tiny_bert())


def test_too_long_sequences(model):
    short = PromptCausalLM(tiny_gpt2_lm(max_sequence_length=12), num_tokens=3)
    ids = np.ones((1, 10), "int32")
    with pytest.raises(ValueError, match=r"10 tokens plus the 3-token prompt exceeds the backbone's maximum of 12"):
        short({"token_ids": ids, "padding_mask": ids})
    with pytest.raises(
        ValueError,
        match=r"The 3-token prompt, 5 input tokens and max_new_tokens=5 need 13 positions; "
        r"the backbone has 12. Generate at most 4 tokens, or shorten the input or the prompt",
    ):
        short.generate(ids[:, :5], ids[:, :5], 5)
    with pytest.raises(ValueError, match=r"The prompt and the input leave no room: keep them under 12 positions together"):
        short.generate(ids[:, :9], ids[:, :9], 1)
    assert short.generate(ids[:, :5], ids[:, :5], 4)["token_ids"].shape == (1, 4)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"max_new_tokens": 0}, ValueError, r"`max_new_tokens` must be a positive integer. Received: max_new_tokens=0"),
        ({"strategy": "beam"}, ValueError, r"`strategy` must be one of \('greedy', 'sample'\). Received: strategy='beam'"),
        ({"temperature": 0.0}, ValueError, r"`temperature` must be a positive number. Received: temperature=0.0"),
        ({"top_k": 0}, ValueError, r"`top_k` must be a positive integer. Received: top_k=0"),
        ({"end_token_ids": [3, VOCABULARY]}, ValueError, r"`end_token_ids` must be token ids in \[0, 40\). Received: end_token_ids=\[3, 40\]"),
        ({"padding_mask": MASK[:, :3]}, ValueError, r"must be \(batch, seq\) arrays of one shape. Received: \(3, 5\) and \(3, 3\)"),
        ({"task_id": [0, 0, 0]}, ValueError, r"takes no `task_id`. Serve several prompts with a `PromptCausalLMBank`"),
    ],
    ids=["max_new_tokens", "strategy", "temperature", "top_k", "end_token_ids", "mask_shape", "task_id"],
)
def test_generate_errors(model, kwargs, error, message):
    arguments = {"padding_mask": MASK, "max_new_tokens": 4, **kwargs}
    with pytest.raises(error, match=message):
        model.generate(TOKEN_IDS, **arguments)


def test_base_model_logits_equal_keras_hubs_own_causal_lm():
    # An independent reference for positions and masks: KerasHub's GPT2CausalLM
    # on right-padded rows (whose positions are simply 0..len-1).
    backbone = tiny_gpt2_lm()
    reference = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    ours = PromptCausalLM(backbone, num_tokens=0)
    expected = _np(reference({"token_ids": TOKEN_IDS, "padding_mask": MASK}))
    actual = _np(ours({"token_ids": TOKEN_IDS, "padding_mask": MASK}))
    real = MASK.astype(bool)
    np.testing.assert_allclose(actual[real], expected[real], atol=1e-4, rtol=1e-4)
    left_ids, left_mask = _left(TOKEN_IDS, MASK)
    left = _np(ours({"token_ids": left_ids, "padding_mask": left_mask}))
    np.testing.assert_allclose(left[left_mask.astype(bool)], expected[real], atol=1e-4, rtol=1e-4)


def test_gemma3_base_model_logits_equal_keras_hubs_own_forward_pass():
    # Gemma 3 runs through our decoder (per-example rotary positions, the
    # sliding window counted in positions); KerasHub's functional backbone is
    # the reference on right-padded rows, whose positions are 0..len-1. The
    # 4-position window is shorter than the rows, so local layers are tested.
    backbone = tiny_gemma3_lm()
    reference = keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=None)
    ours = PromptCausalLM(backbone, num_tokens=0)
    ids = np.array([[11, 12, 13, 14, 15, 16, 17, 18], [21, 22, 23, 24, 25, 0, 0, 0]], "int32")
    mask = (ids > 0).astype("int32")
    expected = _np(reference({"token_ids": ids, "padding_mask": mask}))
    real = mask.astype(bool)
    np.testing.assert_allclose(_np(ours({"token_ids": ids, "padding_mask": mask}))[real], expected[real], atol=1e-5)
    left_ids, left_mask = _left(ids, mask)
    left = _np(ours({"token_ids": left_ids, "padding_mask": left_mask}))
    np.testing.assert_allclose(left[left_mask.astype(bool)], expected[real], atol=1e-4)
    # A window as long as the rows changes the local layers, so the window was in use.
    wide = PromptCausalLM(tiny_gemma3_lm(sliding_window_size=16), num_tokens=0)
    assert np.abs(_np(wide({"token_ids": ids, "padding_mask": mask}))[real] - expected[real]).max() > 1e-2
