import keras
import numpy as np
import pytest
from conftest import (
    assert_keras_save_load_parity,
    bert_inputs,
    tiny_bert,
    tiny_gemma3_lm,
    tiny_gpt2,
)

from tf_prompt_tuning import make_train_step, parameter_summary, save_prompts
from tf_prompt_tuning.backbones.pooling import pool
from tf_prompt_tuning.initializers import FromArray, make_prompt_initializer
from tf_prompt_tuning.models.prompt_text_classifier import PromptTextClassifier

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def gpt2_inputs():
    return {
        "token_ids": np.array([[5, 6, 7, 0, 0, 0], [5, 7, 8, 9, 10, 11]], "int32"),
        "padding_mask": np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], "int32"),
    }


# The encoder keeps [CLS] first; the decoders take the prompt in front and
# pool their last real token (the only one that has seen the whole text).
# Gemma 3 adds rotary positions, sliding-window layers and embedding scaling.
BACKBONES = {
    "bert": (tiny_bert, bert_inputs, {}),
    "gpt2": (tiny_gpt2, gpt2_inputs, {"placement": "prepend", "pooling": "last"}),
    "gemma3": (tiny_gemma3_lm, gpt2_inputs, {"placement": "prepend", "pooling": "last"}),
}


def classifier(kind, num_classes=2, **kwargs):
    make_backbone, make_inputs, defaults = BACKBONES[kind]
    return PromptTextClassifier(make_backbone(), num_classes, **{**defaults, **kwargs}), make_inputs()


def test_output_and_exact_trainable_counts():
    model = PromptTextClassifier(tiny_bert(), 3, num_tokens=4)
    assert model(bert_inputs()).shape == (2, 3)
    summary = parameter_summary(model)
    assert summary.trainable == 4 * 8 + 8 * 3 + 3
    assert summary.by_layer == {"prompt": 32, "head": 27}
    assert summary.total == summary.trainable + model.backbone.count_params()


@pytest.mark.parametrize("kind", BACKBONES)
def test_training_moves_prompt_and_head_and_leaves_backbone_bit_identical(kind):
    model, inputs = classifier(kind, num_tokens=4, head_dropout=0.1)
    frozen = [_np(v).copy() for v in model.backbone.weights]
    prompt, head = _np(model.prompt.prompt).copy(), _np(model.head.kernel).copy()
    step = make_train_step(model, loss=LOSS, optimizer=keras.optimizers.Adam(0.05))
    losses = [float(step(inputs, np.array([0, 1]))) for _ in range(15)]
    assert losses[-1] < losses[0]
    assert not np.allclose(prompt, _np(model.prompt.prompt))
    assert not np.allclose(head, _np(model.head.kernel))
    for before, variable in zip(frozen, model.backbone.weights):
        np.testing.assert_array_equal(before, _np(variable))


def test_backbone_runs_in_inference_mode():
    backbone = tiny_bert().__class__.from_config({**tiny_bert().get_config(), "dropout": 0.5})
    model = PromptTextClassifier(backbone, 2, num_tokens=2)
    a, b = model(bert_inputs(), training=True), model(bert_inputs(), training=True)
    np.testing.assert_allclose(_np(a), _np(b), atol=1e-6)


def test_fit_works_and_keeps_backbone_frozen():
    model = PromptTextClassifier(tiny_bert(), 2, num_tokens=2)
    frozen = [_np(v).copy() for v in model.backbone.weights]
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=LOSS)
    model.fit(bert_inputs(), np.array([0, 1]), epochs=3, verbose=0)
    for before, variable in zip(frozen, model.backbone.weights):
        np.testing.assert_array_equal(before, _np(variable))


def test_head_only_baseline_has_no_prompt():
    model = PromptTextClassifier(tiny_bert(), 2, num_tokens=0)
    assert model.prompt is None
    assert parameter_summary(model).trainable == 8 * 2 + 2
    assert model(bert_inputs()).shape == (2, 2)


def test_pooling_variants():
    sequence = np.arange(24, dtype="float32").reshape(1, 4, 6) + 1
    mask = np.array([[1, 1, 1, 0]])
    np.testing.assert_allclose(_np(pool(sequence, mask, "cls")), sequence[:, 0])
    np.testing.assert_allclose(_np(pool(sequence, mask, "mean")), sequence[:, :3].mean(1))
    np.testing.assert_allclose(_np(pool(sequence, mask, "last")), sequence[:, 2])
    # "last" is the last real position on either padding side (a count of
    # real positions would read a pad of a left-padded row).
    np.testing.assert_allclose(_np(pool(sequence, np.array([[0, 1, 1, 0]]), "last")), sequence[:, 2])
    np.testing.assert_allclose(_np(pool(sequence, np.array([[0, 0, 1, 1]]), "last")), sequence[:, 3])


@pytest.mark.parametrize(
    "kind, pooling, deep",
    [("bert", "mean", False), ("bert", "cls", False), ("bert", "mean", "hidden"),
     ("gpt2", "last", False), ("gpt2", "mean", False), ("gpt2", "last", "hidden"),
     ("gemma3", "last", False), ("gemma3", "mean", False), ("gemma3", "last", "hidden")],
)  # fmt: skip
def test_right_padding_does_not_change_the_logits(kind, pooling, deep):
    model, inputs = classifier(kind, num_tokens=3, pooling=pooling, deep=deep)
    # The second example, alone and unpadded, then right-padded with tokens
    # that would change the logits if anything read them.
    alone = {name: value[1:, :4] for name, value in inputs.items()}
    padded = {name: np.pad(value, ((0, 0), (0, 3))) for name, value in alone.items()}
    padded["token_ids"][:, 4:] = [12, 13, 14]
    np.testing.assert_allclose(_np(model(padded)), _np(model(alone)), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "kind, pooling",
    [("bert", "mean"), ("bert", "cls"), ("gpt2", "last"), ("gpt2", "mean"), ("gemma3", "last")],
)
def test_keras_save_load_parity(kind, pooling, tmp_path):
    model, inputs = classifier(kind, num_tokens=3, pooling=pooling, prompt_initializer="vocab")
    make_train_step(model, loss=LOSS, optimizer="adam")(inputs, np.array([0, 1]))
    restored = assert_keras_save_load_parity(model, inputs, tmp_path, atol=1e-6)
    assert parameter_summary(restored).trainable == parameter_summary(model).trainable
    assert (restored.placement, restored.pooling) == (model.placement, model.pooling)


def test_config_round_trip():
    model = PromptTextClassifier(tiny_bert(), 2, num_tokens=3, pooling="cls", head_dropout=0.2)
    config = model.get_config()
    clone = PromptTextClassifier.from_config(config)
    assert (clone.num_tokens, clone.pooling, clone.head_dropout) == (3, "cls", 0.2)
    assert clone.get_config() == config


def test_mixed_bfloat16_forward_and_float32_prompt():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = PromptTextClassifier(tiny_bert(), 2, num_tokens=2)
    logits = model(bert_inputs())
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert model.prompt.prompt.dtype == "float32"


def test_too_long_sequence_is_a_clear_error():
    model = PromptTextClassifier(tiny_bert(), 2, num_tokens=5)  # backbone max 24
    too_long = {k: np.zeros((1, 20), "int32") for k in bert_inputs()}
    with pytest.raises(ValueError, match=r"20 tokens plus the 5-token prompt exceeds the backbone's maximum of 24 positions. Use a sequence length of at most 19"):
        model(too_long)


def test_initializer_schemes_read_the_vocabulary():
    import keras_hub

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "great"]
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary)
    backbone = tiny_bert()
    embeddings = _np(backbone.token_embedding.embeddings)
    labels = make_prompt_initializer(
        "labels", backbone=backbone, num_tokens=4, tokenizer=tokenizer, label_names=["bad", "good"]
    )
    np.testing.assert_allclose(labels.value[:2], embeddings[[6, 5]])
    text = make_prompt_initializer("text", backbone=backbone, num_tokens=3, tokenizer=tokenizer, text="great movie")
    np.testing.assert_allclose(text.value, embeddings[[8, 7, 8]])
    vocab = make_prompt_initializer("vocab", backbone=backbone, num_tokens=4, seed=0)
    assert {tuple(r) for r in vocab.value} <= {tuple(r) for r in embeddings}
    model = PromptTextClassifier(backbone, 2, num_tokens=4, prompt_initializer=labels)
    np.testing.assert_allclose(_np(model.prompt.prompt), labels.value)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_classes": 1}, ValueError, "`num_classes` must be at least 2"),
        ({"num_classes": 2.0}, TypeError, "`num_classes` must be a positive integer"),
        ({"num_classes": 2, "num_tokens": -1}, ValueError, "`num_tokens` must be a positive integer"),
        ({"num_classes": 2, "pooling": "max"}, ValueError, r"`pooling` must be one of \('mean', 'cls', 'last'\). Received: pooling='max'"),
        ({"num_classes": 2, "head_dropout": 1.0}, ValueError, r"`head_dropout` must be in \[0, 1\)"),
        ({"num_classes": 2, "placement": "middle"}, ValueError, "`placement` must be one of"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        PromptTextClassifier(tiny_bert(), **kwargs)


def test_named_initializer_needs_its_inputs():
    with pytest.raises(ValueError, match='The "labels" initializer needs `tokenizer` and `label_names`'):
        make_prompt_initializer("labels", backbone=tiny_bert(), num_tokens=2)
    with pytest.raises(ValueError, match=r"`kind` must be one of"):
        make_prompt_initializer("zeros!", backbone=tiny_bert(), num_tokens=2)


def test_prompt_from_array():
    value = np.ones((2, 8), "float32")
    model = PromptTextClassifier(tiny_bert(), 2, num_tokens=2, prompt_initializer=FromArray(value))
    np.testing.assert_array_equal(_np(model.prompt.prompt), value)


@pytest.mark.parametrize("kind", BACKBONES)
def test_deep_prompts_train_and_keep_backbone_frozen(kind, tmp_path):
    model, inputs = classifier(kind, num_tokens=4, deep="hidden")
    summary = parameter_summary(model)
    layers, dim = len(model.backbone.transformer_layers), model.backbone.hidden_dim
    assert summary.by_layer == {"prompt": layers * 4 * dim, "head": dim * 2 + 2}  # one prompt per layer
    frozen = [_np(v).copy() for v in model.backbone.weights]
    prompt, deep = _np(model.prompt.prompt).copy(), _np(model.prompt.deep_prompts).copy()
    step = make_train_step(model, loss=LOSS, optimizer=keras.optimizers.Adam(0.05))
    losses = [float(step(inputs, np.array([0, 1]))) for _ in range(5)]
    assert losses[-1] < losses[0]
    assert not np.allclose(prompt, _np(model.prompt.prompt))
    assert not np.allclose(deep, _np(model.prompt.deep_prompts))
    for before, variable in zip(frozen, model.backbone.weights):
        np.testing.assert_array_equal(before, _np(variable))
    restored = assert_keras_save_load_parity(model, inputs, tmp_path, atol=1e-6)
    assert restored.deep == "hidden"


@pytest.mark.parametrize("kind", ["gpt2", "gemma3"])
def test_deep_prompts_from_hidden_states_start_as_the_shallow_prompt(kind):
    shallow, inputs = classifier(kind, num_tokens=3, seed=0)
    expected = _np(shallow(inputs))

    def deep(deep_initializer):  # on the same backbone, from the same input prompt and head
        model = PromptTextClassifier(
            shallow.backbone, 2, num_tokens=3, deep="hidden", deep_initializer=deep_initializer,
            prompt_initializer=FromArray(_np(shallow.prompt.prompt)), **BACKBONES[kind][2],
        )  # fmt: skip
        model.head.set_weights(shallow.head.get_weights())
        return _np(model(inputs))

    assert not np.allclose(deep("uniform"), expected, atol=1e-4)
    np.testing.assert_allclose(deep("hidden_states"), expected, atol=1e-4)


def test_deep_prompts_from_hidden_states_after_first_read_the_start_token():
    import keras_hub

    from tf_prompt_tuning import TextPreprocessor
    from tf_prompt_tuning.backbones.prompted_backbone import prompt_hidden_states

    tokenizer = keras_hub.models.BertTokenizer(vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good"])
    model = PromptTextClassifier(
        tiny_bert(), 2, num_tokens=3, deep="hidden", deep_initializer="hidden_states",
        preprocessor=TextPreprocessor(tokenizer, sequence_length=8),
    )  # fmt: skip
    np.testing.assert_allclose(
        _np(model.prompt.deep_prompts), prompt_hidden_states(model.backbone, model.prompt, first_token_id=2)
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(deep="hidden", deep_initializer="zeros"),
         r"`deep_initializer` must be one of \('uniform', 'hidden_states'\). Received: deep_initializer='zeros'"),
        (dict(deep="prefix", deep_initializer="hidden_states"),
         r"`deep_initializer` applies to deep prompts only .* Received: deep_initializer='hidden_states' with deep='prefix'"),
        (dict(deep_initializer="hidden_states"),
         r"applies to deep prompts only .* with deep=False"),
        (dict(deep="hidden", deep_initializer="hidden_states"),
         r"placement 'after_first' needs the token .* Received: preprocessor=None. Pass preprocessor="),
    ],
)  # fmt: skip
def test_deep_initializer_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PromptTextClassifier(tiny_bert(), 2, num_tokens=2, **kwargs)


def test_deep_and_encoder_together_is_an_error():
    with pytest.raises(ValueError, match="Choose deep prompts or a prompt encoder, not both"):
        PromptTextClassifier(tiny_bert(), 2, num_tokens=2, deep=True, prompt_encoder="mlp")


def test_p_tuning_classifier_trains_encoder_and_keeps_backbone_frozen(tmp_path):
    model = PromptTextClassifier(tiny_bert(), 2, num_tokens=3, prompt_encoder="lstm")
    frozen = [_np(v).copy() for v in model.backbone.weights]
    step = make_train_step(model, loss=LOSS, optimizer=keras.optimizers.Adam(0.05))
    seeds = _np(model.prompt.prompt).copy()
    for _ in range(3):
        step(bert_inputs(), np.array([0, 1]))
    assert not np.allclose(seeds, _np(model.prompt.prompt))
    for before, variable in zip(frozen, model.backbone.weights):
        np.testing.assert_array_equal(before, _np(variable))
    assert_keras_save_load_parity(model, bert_inputs(), tmp_path, atol=1e-6)


def test_prefixes_train_and_keep_backbone_frozen(tmp_path):
    model = PromptTextClassifier(tiny_bert(), 2, num_tokens=4, deep="prefix")
    assert model.prompt is None and model.deep == "prefix"
    assert parameter_summary(model).by_layer == {"prefixes": 2 * 2 * 4 * 8, "head": 18}  # keys and values per layer
    frozen = [_np(v).copy() for v in model.backbone.weights]
    prefixes = _np(model.prefixes.prefixes).copy()
    step = make_train_step(model, loss=LOSS, optimizer=keras.optimizers.Adam(0.05))
    losses = [float(step(bert_inputs(), np.array([0, 1]))) for _ in range(5)]
    assert losses[-1] < losses[0]
    assert not np.allclose(prefixes[:, 0], _np(model.prefixes.prefixes)[:, 0])  # keys
    assert not np.allclose(prefixes[:, 1], _np(model.prefixes.prefixes)[:, 1])  # values
    for before, variable in zip(frozen, model.backbone.weights):
        np.testing.assert_array_equal(before, _np(variable))
    restored = assert_keras_save_load_parity(model, bert_inputs(), tmp_path, atol=1e-6)
    assert restored.deep == "prefix"


def test_prefixes_stay_float32_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = PromptTextClassifier(tiny_bert(), 2, num_tokens=3, deep="prefix")
    assert model.prefixes.prefixes.dtype == "float32"
    before = _np(model.prefixes.prefixes).copy()
    step = make_train_step(model, loss=LOSS, optimizer=keras.optimizers.Adam(0.01))
    step(bert_inputs(), np.array([0, 1]))
    assert model(bert_inputs()).dtype == "float32"
    assert not np.allclose(before, _np(model.prefixes.prefixes))


def test_prefixes_take_no_positions():
    inputs = {"token_ids": np.ones((1, 24), "int32"), "segment_ids": np.zeros((1, 24), "int32"),
              "padding_mask": np.ones((1, 24), "int32")}  # fmt: skip
    assert PromptTextClassifier(tiny_bert(), 2, num_tokens=4, deep="prefix")(inputs).shape == (1, 2)
    with pytest.raises(ValueError, match="A sequence of 24 tokens plus the 4-token prompt exceeds"):
        PromptTextClassifier(tiny_bert(), 2, num_tokens=4, deep="hidden")(inputs)


def test_deep_must_be_a_known_kind():
    with pytest.raises(ValueError, match=r'`deep` must be False, "hidden" \(or True\) or "prefix". Received: deep=\'kv\''):
        PromptTextClassifier(tiny_bert(), 2, num_tokens=2, deep="kv")


@pytest.mark.parametrize("backbone", [tiny_gpt2, tiny_gemma3_lm], ids=["gpt2", "gemma3"])
def test_prefixes_on_a_decoder_train_alone_and_take_positions(backbone, tmp_path):
    backbone = backbone()
    model = PromptTextClassifier(backbone, 2, num_tokens=4, deep="prefix", pooling="last", seed=0)
    assert model.prefix_decoder is not None and model.encoder is None
    assert model.prefixes.prefixes.shape[:3] == (len(backbone.transformer_layers), 2, 4)
    inputs = {"token_ids": np.array([[5, 6, 7, 0], [8, 9, 10, 11]]), "padding_mask": np.array([[1, 1, 1, 0], [1, 1, 1, 1]])}
    frozen = [w.numpy().copy() for w in backbone.weights]
    prefixes = model.prefixes.prefixes.numpy().copy()
    step = make_train_step(model, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                           optimizer=keras.optimizers.Adam(0.05))  # fmt: skip
    losses = [float(step(inputs, np.array([0, 1]))) for _ in range(10)]
    assert losses[-1] < losses[0] and not np.allclose(model.prefixes.prefixes.numpy(), prefixes)
    for before, after in zip(frozen, backbone.weights):
        np.testing.assert_array_equal(before, after.numpy())
    path = save_prompts(model, str(tmp_path / "prefix.safetensors"))
    restored = PromptTextClassifier.from_prompt_file(path, backbone)
    np.testing.assert_allclose(restored(inputs), model(inputs), atol=1e-6)
    assert model.prompt_positions == 4  # the text follows the prefix's positions


def test_prefixes_after_the_text_of_a_decoder_are_refused():
    with pytest.raises(ValueError, match=r"Key/value prefixes after the text would be read by no later position"):
        PromptTextClassifier(tiny_gpt2(), 2, num_tokens=2, placement="append", pooling="last", deep="prefix")


def test_prefixes_follow_a_backbone_built_in_another_dtype():
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=40, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=24, dtype="bfloat16",
    )  # fmt: skip
    model = PromptTextClassifier(backbone, 2, num_tokens=3, deep="prefix")  # global policy float32
    assert model(bert_inputs()).dtype == "float32" and model.prefixes.prefixes.dtype == "float32"


def test_prefix_config_round_trip_keeps_the_initializer():
    model = PromptTextClassifier(tiny_bert(), 2, num_tokens=3, deep="prefix", prompt_initializer="zeros")
    clone = PromptTextClassifier.from_config(model.get_config())
    assert clone.deep == "prefix" and not np.any(_np(clone.prefixes.prefixes))


def test_prefixes_refuse_word_initializers():
    with pytest.raises(ValueError, match=r"`prompt_initializer` of key/value prefixes must be random or constant.*Use deep=\"hidden\""):
        PromptTextClassifier(tiny_bert(), 2, num_tokens=2, deep="prefix", prompt_initializer=FromArray(np.ones((2, 8))))


@pytest.mark.parametrize("deep, expected", [(True, "hidden"), (1, "hidden"), (np.True_, "hidden"), (None, False), ("prefix", "prefix")])
def test_deep_accepts_booleans_and_kinds(deep, expected):
    from tf_prompt_tuning.mechanisms import check_deep

    assert check_deep(deep) == expected


def test_cls_pooling_on_a_decoder_is_an_error():
    """On a causal backbone the first position never sees the text: silently constant logits."""
    from tf_prompt_tuning import PromptBank

    for make in (lambda b: PromptTextClassifier(b, 2, num_tokens=2, placement="prepend", pooling="cls"),
                 lambda b: PromptBank(b, num_tokens=2, placement="prepend", pooling="cls")):  # fmt: skip
        with pytest.raises(ValueError, match=r"`pooling='cls'` reads the first position, which a causal backbone \(GPT2Backbone\) computes before seeing the text.*Use pooling='last'"):
            make(tiny_gpt2())
