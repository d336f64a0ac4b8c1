import keras
import keras_hub
import numpy as np
import pytest
from conftest import assert_config_round_trip, bert_inputs, tiny_bert, tiny_gpt2

from tf_prompt_tuning import PrefixLayer, prompted_backbone
from tf_prompt_tuning.initializers import FromArray
from tf_prompt_tuning.layers.prefix_layer import check_prefixable, prefixed_encoder_call


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _encoder(normalize_first):
    layer = keras_hub.layers.TransformerEncoder(16, 2, normalize_first=normalize_first)
    layer.build((None, None, 8))
    return layer


def _hidden(batch=2, seq=5):
    return np.random.default_rng(0).normal(size=(batch, seq, 8)).astype("float32")


PADDING = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)


def test_returns_each_layers_keys_and_values_for_the_batch():
    layer = PrefixLayer(3, num_layers=2)
    keys, values, visible = layer(_hidden(), layer_index=1)
    assert layer.prefixes.shape == (2, 2, 3, 8)
    assert keys.shape == values.shape == (2, 3, 8)
    np.testing.assert_array_equal(_np(keys)[1], _np(layer.prefixes[1, 0]))
    np.testing.assert_array_equal(_np(values)[0], _np(layer.prefixes[1, 1]))
    assert _np(visible).all() and visible.shape == (2, 3)


def test_uniform_by_default_and_float32_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_float16")
    layer = PrefixLayer(4, num_layers=3)
    keys, _, _ = layer(keras.ops.cast(_hidden(), "float16"))
    assert layer.prefixes.dtype == "float32" and keys.dtype == "float16"
    assert 0.3 < np.abs(_np(layer.prefixes)).max() <= 0.5  # uniform in [-0.5, 0.5]


def test_config_round_trip():
    layer = PrefixLayer(3, num_layers=2, initializer="zeros", name="prefixes")
    clone = assert_config_round_trip(layer)
    assert (clone.num_tokens, clone.num_layers) == (3, 2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_tokens=0, num_layers=2), r"`num_tokens` must be a positive integer. Received: num_tokens=0"),
        (dict(num_tokens=2, num_layers=-1), r"`num_layers` must be a positive integer. Received: num_layers=-1"),
        (
            dict(num_tokens=2, num_layers=2, initializer=FromArray(np.ones((2, 8)))),
            r"`initializer` of a PrefixLayer must be random or constant; received an array of shape \(2, 8\).*deep='hidden'",
        ),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PrefixLayer(**kwargs)


@pytest.mark.parametrize("normalize_first", [False, True])
def test_without_visible_prefixes_equals_kerashubs_own_layer(normalize_first):
    # Guards the re-run of `TransformerEncoder.call` against KerasHub changes.
    layer, x = _encoder(normalize_first), _hidden()
    keys = np.ones((2, 3, 8), "float32") * 7
    hidden = np.zeros((2, 3), bool)
    ours = _np(prefixed_encoder_call(layer, x, PADDING, keys, keys, hidden))
    np.testing.assert_allclose(ours, _np(layer(x, padding_mask=PADDING)), atol=1e-6)


@pytest.mark.parametrize("normalize_first", [False, True])
def test_a_prefix_acts_as_a_token_the_text_attends_to(normalize_first):
    # Keys and values equal to a token's (normalized) hidden state give the
    # text exactly what that token, prepended, would.
    layer, x = _encoder(normalize_first), _hidden()
    token = np.random.default_rng(1).normal(size=(1, 1, 8)).astype("float32")
    with_token = np.concatenate([np.repeat(token, 2, axis=0), x], axis=1)
    mask = np.concatenate([np.ones((2, 1), bool), PADDING], axis=1)
    expected = _np(layer(with_token, padding_mask=mask))[:, 1:]
    seen = _np(layer._self_attention_layer_norm(token)) if normalize_first else token
    prefix = np.repeat(seen, 2, axis=0)
    ours = _np(prefixed_encoder_call(layer, x, PADDING, prefix, prefix, np.ones((2, 1), bool)))
    np.testing.assert_allclose(ours[PADDING], expected[PADDING], atol=1e-5)


def test_in_a_backbone_padding_is_never_attended_and_positions_are_unchanged():
    backbone = tiny_bert()
    prefixes = PrefixLayer(3, num_layers=2)
    model = prompted_backbone(backbone, None, prefixes=prefixes)
    inputs = bert_inputs()
    outputs = model(inputs)
    assert outputs["sequence_output"].shape == (2, 6, 8)  # no positions added
    np.testing.assert_array_equal(_np(outputs["padding_mask"]), inputs["padding_mask"])
    changed = dict(inputs, token_ids=np.where(inputs["padding_mask"], inputs["token_ids"], 11))
    real = inputs["padding_mask"].astype(bool)
    np.testing.assert_allclose(
        _np(model(changed)["sequence_output"])[real], _np(outputs["sequence_output"])[real], atol=1e-6
    )
    # The prefixes change what the text sees.
    plain = _np(backbone(inputs)["sequence_output"])
    assert not np.allclose(plain[real], _np(outputs["sequence_output"])[real], atol=1e-3)


def test_prefixes_need_kerashub_encoder_layers():
    with pytest.raises(ValueError, match=r"'gpt2_backbone' has transformer layers of type \['TransformerDecoder'\]. Use deep prompts as hidden states \(deep='hidden'"):
        check_prefixable(tiny_gpt2())


def test_prefixes_must_match_the_number_of_layers():
    with pytest.raises(ValueError, match="The prefixes have 3 layers, the backbone 2 transformer layers"):
        prompted_backbone(tiny_bert(), None, prefixes=PrefixLayer(2, num_layers=3))
