import re

import keras
import numpy as np
import pytest
from conftest import bert_inputs, tiny_bert, tiny_gemma3_lm, tiny_gpt2

from tf_prompt_tuning import PromptLayer
from tf_prompt_tuning.backbones.prompted_backbone import (
    prompt_hidden_states,
    prompted_backbone,
)
from tf_prompt_tuning.initializers import FromArray

NUM_TOKENS = 3


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_without_prompt_matches_backbone():
    backbone = tiny_bert()
    inputs = bert_inputs()
    rerun = prompted_backbone(backbone, None)(inputs)
    np.testing.assert_allclose(
        _np(rerun["sequence_output"]), _np(backbone(inputs)["sequence_output"]), atol=1e-6
    )
    np.testing.assert_array_equal(_np(rerun["padding_mask"]), inputs["padding_mask"])


def test_shares_the_backbone_weights():
    backbone = tiny_bert()
    model = prompted_backbone(backbone, PromptLayer(NUM_TOKENS))
    backbone_ids = {id(v) for v in backbone.weights}
    extra = [v for v in model.weights if id(v) not in backbone_ids]
    assert [v.name for v in extra] == ["prompt"]


def test_prompt_goes_into_token_embeddings_before_positions_and_segments():
    backbone = tiny_bert()
    prompt_value = np.random.default_rng(0).normal(size=(NUM_TOKENS, 8)).astype("float32")
    prompt = PromptLayer(NUM_TOKENS, initializer=FromArray(prompt_value), placement="after_first")
    inputs = bert_inputs()
    actual = prompted_backbone(backbone, prompt)(inputs)

    # The same computation written out by hand for BERT.
    tokens = _np(backbone.token_embedding(inputs["token_ids"]))
    batch = tokens.shape[0]
    tokens = np.concatenate(
        [tokens[:, :1], np.broadcast_to(prompt_value, (batch, NUM_TOKENS, 8)), tokens[:, 1:]], axis=1
    )
    mask = np.concatenate(
        [inputs["padding_mask"][:, :1], np.ones((batch, NUM_TOKENS), "int32"), inputs["padding_mask"][:, 1:]], axis=1
    )
    x = tokens + _np(backbone.position_embedding(tokens)) + _np(
        backbone.segment_embedding(np.zeros(mask.shape, "int32"))
    )
    x = backbone.embeddings_layer_norm(x)
    for layer in backbone.transformer_layers:
        x = layer(x, padding_mask=mask)
    np.testing.assert_allclose(_np(actual["sequence_output"]), _np(x), atol=1e-5)
    np.testing.assert_array_equal(_np(actual["padding_mask"]), mask)


@pytest.mark.parametrize("make_backbone", [tiny_bert, tiny_gpt2])
def test_padding_is_never_attended(make_backbone):
    backbone = make_backbone()
    model = prompted_backbone(backbone, PromptLayer(NUM_TOKENS))
    inputs = {k: v for k, v in bert_inputs().items() if k in backbone.input}
    other = dict(inputs, token_ids=inputs["token_ids"].copy())
    other["token_ids"][0, 4:] = [11, 12]  # change only padded positions
    a, b = _np(model(inputs)["sequence_output"]), _np(model(other)["sequence_output"])
    real = NUM_TOKENS + 4
    np.testing.assert_allclose(a[0, :real], b[0, :real], atol=1e-6)
    np.testing.assert_allclose(a[1], b[1], atol=1e-6)


def test_gpt2_decoder_takes_a_prepended_prompt():
    backbone = tiny_gpt2()
    model = prompted_backbone(backbone, PromptLayer(NUM_TOKENS, placement="prepend"))
    inputs = {"token_ids": np.array([[5, 6, 7, 0]]), "padding_mask": np.array([[1, 1, 1, 0]])}
    outputs = model(inputs)
    assert outputs["sequence_output"].shape == (1, NUM_TOKENS + 4, 8)
    np.testing.assert_array_equal(_np(outputs["padding_mask"]), [[1, 1, 1, 1, 1, 1, 0]])
    # Causal: the prompt positions do not depend on the text that follows them.
    changed = _np(model(dict(inputs, token_ids=np.array([[9, 9, 9, 0]])))["sequence_output"])
    np.testing.assert_allclose(_np(outputs["sequence_output"])[0, :NUM_TOKENS], changed[0, :NUM_TOKENS], atol=1e-6)


def test_rejects_a_model_without_token_ids():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="must be a functional KerasHub backbone whose inputs include 'token_ids'"):
        prompted_backbone(model, PromptLayer(2))


def test_deep_prompt_rewrites_prompt_positions_before_every_layer():
    from tf_prompt_tuning.layers.deep_prompt_layer import DeepPromptLayer

    backbone = tiny_bert()
    prompt = DeepPromptLayer(NUM_TOKENS, num_layers=2, placement="after_first")
    inputs = bert_inputs()
    actual = _np(prompted_backbone(backbone, prompt)(inputs)["sequence_output"])

    tokens = prompt(backbone.token_embedding(inputs["token_ids"]))
    mask = _np(prompt.extend_mask(inputs["padding_mask"], 1))
    x = tokens + backbone.position_embedding(tokens) + backbone.segment_embedding(np.zeros(mask.shape, "int32"))
    x = backbone.embeddings_layer_norm(x)
    x = backbone.transformer_layers[0](x, padding_mask=mask)
    x = backbone.transformer_layers[1](prompt(x, layer_index=1), padding_mask=mask)
    np.testing.assert_allclose(actual, _np(x), atol=1e-5)


@pytest.mark.parametrize("make_backbone", [tiny_gpt2, tiny_gemma3_lm])
@pytest.mark.parametrize("placement", ["prepend", "after_first"])
def test_deep_prompts_from_hidden_states_compute_what_the_shallow_prompt_does(make_backbone, placement):
    from tf_prompt_tuning.layers.deep_prompt_layer import DeepPromptLayer

    backbone = make_backbone()
    num_layers = len(backbone.transformer_layers)
    inputs = {  # both rows start with token 2, the second is right-padded
        "token_ids": np.array([[2, 6, 7, 8, 9], [2, 9, 5, 0, 0]], "int32"),
        "padding_mask": np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], "int32"),
    }
    shallow = PromptLayer(NUM_TOKENS, placement=placement)
    expected = _np(prompted_backbone(backbone, shallow)(inputs)["sequence_output"])
    deep = DeepPromptLayer(NUM_TOKENS, num_layers, placement=placement)
    deep_model = prompted_backbone(backbone, deep)
    deep.prompt.assign(shallow.prompt)
    assert not np.allclose(_np(deep_model(inputs)["sequence_output"]), expected, atol=1e-3)  # random deep prompts

    states = prompt_hidden_states(backbone, deep, first_token_id=2 if placement == "after_first" else None)
    assert states.shape == (num_layers - 1, NUM_TOKENS, expected.shape[-1])
    deep.deep_prompts.assign(states)
    actual = _np(deep_model(inputs)["sequence_output"])
    real = _np(inputs["padding_mask"]).astype(bool)
    real = np.concatenate([np.ones((2, NUM_TOKENS), bool), real], 1) if placement == "prepend" else (
        np.concatenate([real[:, :1], np.ones((2, NUM_TOKENS), bool), real[:, 1:]], 1))
    np.testing.assert_allclose(actual[real], expected[real], atol=1e-4)
    if placement == "after_first":  # the states depend on the token in front of the prompt
        other = prompt_hidden_states(backbone, deep, first_token_id=5)
        assert not np.allclose(other, states, atol=1e-3)


def test_hidden_states_after_the_first_token_need_that_token():
    from tf_prompt_tuning.layers.deep_prompt_layer import DeepPromptLayer

    with pytest.raises(ValueError, match=r"Pass `first_token_id` .* Received: first_token_id=None"):
        prompt_hidden_states(tiny_gpt2(), DeepPromptLayer(2, 2, placement="after_first"))


def test_deep_prompt_must_match_the_number_of_layers():
    from tf_prompt_tuning.layers.deep_prompt_layer import DeepPromptLayer

    with pytest.raises(ValueError, match="The deep prompt has 3 layers, the backbone 2 transformer layers"):
        prompted_backbone(tiny_bert(), DeepPromptLayer(NUM_TOKENS, num_layers=3))


@pytest.mark.parametrize(
    "limit, num_tokens, length, message",
    [
        (24, 5, 20, "Use a sequence length of at most 19 or a prompt of at most 4 tokens."),
        (512, 600, 64, "Use a prompt of at most 448 tokens."),  # was "at most -88"
        (512, 20, 600, "Use a sequence length of at most 492."),
        (512, 0, 600, "Use a sequence length of at most 512."),
        (512, 600, 700, "Use a prompt of fewer than 512 tokens and a shorter sequence."),
    ],
    ids=["both_fit", "prompt_too_long", "text_too_long", "no_prompt", "neither"],
)  # fmt: skip
def test_too_long_sequence_errors_say_what_fits(limit, num_tokens, length, message):
    from types import SimpleNamespace

    from tf_prompt_tuning.backbones.prompted_backbone import check_sequence_fits

    with pytest.raises(ValueError, match=re.escape(message)) as error:
        check_sequence_fits(SimpleNamespace(max_sequence_length=limit), num_tokens, length)
    assert "-" not in str(error.value).split("positions.")[1]  # no negative length is suggested
