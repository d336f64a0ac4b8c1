import json
import os
import re

import keras
import keras_hub
import numpy as np
import pytest
from conftest import LM_MASK, tiny_gemma3_lm, tiny_gpt2_lm
from conftest import LM_TOKEN_IDS as LM_IDS
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import save as save_safetensors
from tiny_files import resealed

import tf_prompt_tuning
from tf_prompt_tuning import PromptCausalLM, make_train_step
from tf_prompt_tuning.files.prompt_file import (
    FORMAT_VERSION,
    PromptFileError,
    backbone_fingerprint,
    load_prompts,
    restore_prompts,
    save_prompts,
)
from tf_prompt_tuning.models.prompt_text_classifier import PromptTextClassifier

INPUTS = {
    "token_ids": np.array([[2, 5, 6, 7, 3, 0], [2, 9, 3, 0, 0, 0]], "int32"),
    "segment_ids": np.zeros((2, 6), "int32"),
    "padding_mask": np.array([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]], "int32"),
}
LABELS = np.array([0, 1], "int32")


def _backbone(seed=0, num_layers=1):
    keras.utils.set_random_seed(seed)
    return keras_hub.models.BertBackbone(
        vocabulary_size=30,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=24,
    )


@pytest.fixture
def backbone():
    return _backbone()


@pytest.fixture
def model(backbone):
    return PromptTextClassifier(backbone, 2, num_tokens=3, seed=1)


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _variables(model):
    return {v.path: _numpy(v) for v in model.weights}


def _train(model, steps=3):
    step = make_train_step(
        model,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=keras.optimizers.Adam(0.05),
    )
    for _ in range(steps):
        step(INPUTS, LABELS)
    return step


def _write_prompt_file(path, tensors, metadata):
    header = {"tf_prompt_tuning": json.dumps(metadata)}
    path.write_bytes(save_safetensors(tensors, metadata=header))
    return str(path)


def test_save_load_round_trip(model, tmp_path):
    _train(model, steps=1)
    path = str(tmp_path / "task.prompt.safetensors")
    returned = save_prompts(
        model, path, label_names=("negative", "positive"), extra={"epochs": 3, "lr": 0.1}
    )
    assert returned == path
    loaded = load_prompts(path)
    assert set(loaded.tensors) == {"prompt", "head/kernel", "head/bias"}
    np.testing.assert_array_equal(loaded.tensors["prompt"], _numpy(model.prompt.prompt))
    np.testing.assert_array_equal(loaded.tensors["head/kernel"], _numpy(model.head.kernel))
    np.testing.assert_array_equal(loaded.tensors["head/bias"], _numpy(model.head.bias))
    assert loaded.tensors["prompt"].shape == (3, 8)
    assert all(t.dtype == np.float32 for t in loaded.tensors.values())
    metadata = loaded.metadata
    assert metadata["format_version"] == 1 and FORMAT_VERSION == 3  # classifier files stay readable by 0.1
    assert metadata["library_version"] == tf_prompt_tuning.__version__
    assert metadata["backbone_fingerprint"] == backbone_fingerprint(model.backbone)
    assert metadata["backbone_class"] == "BertBackbone"
    assert metadata["num_tokens"] == 3
    assert metadata["num_classes"] == 2
    assert metadata["placement"] == "after_first"
    assert metadata["pooling"] == "mean"
    assert metadata["label_names"] == ["negative", "positive"]
    assert metadata["initializer"] == "RandomUniform"
    assert (metadata["epochs"], metadata["lr"]) == (3, 0.1)


def test_file_is_a_few_kilobytes(model, tmp_path):
    path = save_prompts(model, str(tmp_path / "p.safetensors"))
    # (3 x 8 prompt + 8 x 2 kernel + 2 bias) float32 = 168 bytes plus the header.
    assert os.path.getsize(path) < 2048
    assert load_prompts(path).metadata["label_names"] is None


def test_head_only_model_round_trip(backbone, tmp_path):
    model = PromptTextClassifier(backbone, 3, num_tokens=0)
    path = save_prompts(model, str(tmp_path / "head.safetensors"), label_names=["a", "b", "c"])
    loaded = load_prompts(path)
    assert set(loaded.tensors) == {"head/kernel", "head/bias"}
    assert loaded.metadata["num_tokens"] == 0
    assert loaded.metadata["initializer"] is None
    fresh = PromptTextClassifier(backbone, 3, num_tokens=0)
    restore_prompts(fresh, path)
    np.testing.assert_array_equal(_numpy(fresh(INPUTS)), _numpy(model(INPUTS)))


def test_restore_into_a_fresh_classifier_gives_identical_outputs(model, backbone, tmp_path):
    _train(model, steps=2)
    expected = _numpy(model(INPUTS))
    path = save_prompts(model, str(tmp_path / "p.safetensors"), label_names=["n", "p"])
    fresh = PromptTextClassifier(backbone, 2, num_tokens=3, seed=7)
    assert not np.allclose(_numpy(fresh(INPUTS)), expected)
    loaded = restore_prompts(fresh, path)
    assert loaded.metadata["label_names"] == ["n", "p"]
    np.testing.assert_array_equal(_numpy(fresh(INPUTS)), expected)
    np.testing.assert_array_equal(_numpy(fresh.prompt.prompt), _numpy(model.prompt.prompt))


def test_restore_into_the_same_backbone_rebuilt_from_its_weights(model, backbone, tmp_path):
    path = save_prompts(model, str(tmp_path / "p.safetensors"))
    rebuilt = keras_hub.models.BertBackbone.from_config(backbone.get_config())
    rebuilt.set_weights(backbone.get_weights())
    assert backbone_fingerprint(rebuilt) == backbone_fingerprint(backbone)
    fresh = PromptTextClassifier(rebuilt, 2, num_tokens=3)
    restore_prompts(fresh, path)
    np.testing.assert_allclose(_numpy(fresh(INPUTS)), _numpy(model(INPUTS)), atol=1e-6)


def test_training_resumes_from_a_restored_prompt(model, backbone, tmp_path):
    path = save_prompts(model, str(tmp_path / "p.safetensors"))
    fresh = PromptTextClassifier(backbone, 2, num_tokens=3, seed=7)
    restore_prompts(fresh, path)
    backbone_before = [_numpy(w) for w in backbone.weights]
    prompt_before = _numpy(fresh.prompt.prompt)
    head_before = _numpy(fresh.head.kernel)
    step = _train(fresh, steps=3)
    assert {v.path for v in step.variables} == {
        fresh.prompt.prompt.path,
        fresh.head.kernel.path,
        fresh.head.bias.path,
    }
    assert not np.array_equal(_numpy(fresh.prompt.prompt), prompt_before)
    assert not np.array_equal(_numpy(fresh.head.kernel), head_before)
    for before, after in zip(backbone_before, backbone.weights):
        np.testing.assert_array_equal(_numpy(after), before)
    # The resumed values save and restore in turn.
    resumed = save_prompts(fresh, str(tmp_path / "resumed.safetensors"))
    restore_prompts(model, resumed)
    np.testing.assert_array_equal(_numpy(model(INPUTS)), _numpy(fresh(INPUTS)))


def test_saving_leaves_no_temporary_files(model, tmp_path):
    directory = tmp_path / "out" / "nested"  # created on demand
    path = str(directory / "p.safetensors")
    save_prompts(model, path)
    _train(model, steps=1)
    save_prompts(model, path)  # overwrites in place
    assert os.listdir(directory) == ["p.safetensors"]
    np.testing.assert_array_equal(
        load_prompts(path).tensors["prompt"], _numpy(model.prompt.prompt)
    )


def test_failed_save_keeps_the_old_file_and_cleans_up(model, tmp_path, monkeypatch):
    path = save_prompts(model, str(tmp_path / "p.safetensors"))
    original = (tmp_path / "p.safetensors").read_bytes()
    _train(model, steps=1)

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        save_prompts(model, path)
    assert os.listdir(tmp_path) == ["p.safetensors"]
    assert (tmp_path / "p.safetensors").read_bytes() == original


def test_label_names_length_mismatch_on_save(model, tmp_path):
    with pytest.raises(
        ValueError,
        match=r"`label_names` has 3 names but the model has 2 classes. "
        r"Received: label_names=\['a', 'b', 'c'\]",
    ):
        save_prompts(model, str(tmp_path / "p.safetensors"), label_names=["a", "b", "c"])
    assert os.listdir(tmp_path) == []


def test_missing_file(model, tmp_path):
    path = str(tmp_path / "nope.safetensors")
    with pytest.raises(PromptFileError, match=r"nope\.safetensors' does not exist. Check the path"):
        load_prompts(path)
    with pytest.raises(PromptFileError, match=r"does not exist"):
        restore_prompts(model, path)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda data: data[: len(data) // 2],
        lambda data: data[:5],
        lambda data: b"",
        lambda data: bytes(range(256)) * 4,
        lambda data: b"\xff" * 8 + data[8:],
        lambda data: b"not a safetensors file at all",
    ],
    ids=["truncated_half", "truncated_header", "empty", "garbage", "huge_header_size", "text"],
)
def test_corrupt_file(model, tmp_path, corrupt):
    path = save_prompts(model, str(tmp_path / "p.safetensors"))
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(corrupt(data))
    before = _variables(model)
    with pytest.raises(
        PromptFileError, match=r"is not a readable prompt file \(truncated, corrupt"
    ):
        restore_prompts(model, path)
    after = _variables(model)
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value)


def test_plain_safetensors_file_without_our_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    path.write_bytes(save_safetensors({"prompt": np.zeros((3, 8), "float32")}))
    with pytest.raises(PromptFileError, match=r"not written by save_prompts"):
        load_prompts(str(path))


@pytest.mark.parametrize(
    "header, message",
    [("{oops", r"not a readable prompt file"),
     ("[1]", r"not a prompt file: its metadata is not a JSON object")],
    ids=["not_json", "not_an_object"],
)  # fmt: skip
def test_malformed_metadata(tmp_path, header, message):
    path = tmp_path / "p.safetensors"
    path.write_bytes(save_safetensors({"x": np.zeros(1, "float32")}, metadata={"tf_prompt_tuning": header}))
    with pytest.raises(PromptFileError, match=message):
        load_prompts(str(path))


@pytest.mark.parametrize(
    "version, message",
    [
        (99, r"has prompt-file format 99; this library reads up to 3. Upgrade tf_prompt_tuning"),
        (FORMAT_VERSION + 1, r"has prompt-file format 4; this library reads up to 3. Upgrade"),
        ("1", r"has an invalid prompt-file format version '1'"),
        (None, r"has an invalid prompt-file format version None"),
        (1.0, r"has an invalid prompt-file format version 1.0"),
        (True, r"has an invalid prompt-file format version True"),
        (0, r"has an invalid prompt-file format version 0"),
    ],
    ids=["far_future", "next", "string", "missing", "float", "bool", "zero"],
)
def test_format_version(model, tmp_path, version, message):
    metadata = {"backbone_fingerprint": backbone_fingerprint(model.backbone), "num_tokens": 3}
    if version is not None:
        metadata["format_version"] = version
    path = _write_prompt_file(tmp_path / "p.safetensors", {"prompt": np.zeros((3, 8), "float32")}, metadata)
    with pytest.raises(PromptFileError, match=message):
        load_prompts(path)


def test_restore_into_another_backbone(model, tmp_path):
    path = save_prompts(model, str(tmp_path / "p.safetensors"))
    other = PromptTextClassifier(_backbone(seed=1), 2, num_tokens=3)
    expected = backbone_fingerprint(model.backbone)
    actual = backbone_fingerprint(other.backbone)
    assert expected != actual
    before = _variables(other)
    with pytest.raises(
        PromptFileError,
        match=rf"was trained on another backbone \(fingerprint {expected}, this model's is "
        rf"{actual}\)",
    ):
        restore_prompts(other, path)
    for name, value in _variables(other).items():
        np.testing.assert_array_equal(value, before[name])


def test_fingerprint_sees_a_config_change(backbone):
    keras.utils.set_random_seed(0)
    longer = keras_hub.models.BertBackbone(
        vocabulary_size=30,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=32,
    )
    # Same seed, same token embeddings; only max_sequence_length differs.
    np.testing.assert_array_equal(
        _numpy(longer.token_embedding.embeddings), _numpy(backbone.token_embedding.embeddings)
    )
    assert backbone_fingerprint(longer) != backbone_fingerprint(backbone)
    assert len(backbone_fingerprint(backbone)) == 16


def test_restore_with_different_num_tokens(model, backbone, tmp_path):
    path = save_prompts(model, str(tmp_path / "p.safetensors"))
    longer = PromptTextClassifier(backbone, 2, num_tokens=4)
    head_before = _numpy(longer.head.kernel)
    with pytest.raises(
        PromptFileError,
        match=r"prompt has shape \(3, 8\), the model's has \(4, 8\). "
        r"Build the model with the file's settings",
    ):
        restore_prompts(longer, path)
    # Nothing is half-restored: the head (same shape) was left alone.
    np.testing.assert_array_equal(_numpy(longer.head.kernel), head_before)


def test_restore_with_different_num_classes(model, backbone, tmp_path):
    path = save_prompts(model, str(tmp_path / "p.safetensors"))
    three = PromptTextClassifier(backbone, 3, num_tokens=3)
    with pytest.raises(
        PromptFileError, match=r"head/kernel has shape \(8, 2\), the model's has \(8, 3\)"
    ):
        restore_prompts(three, path)


@pytest.mark.parametrize(
    "file_tokens, model_tokens, held, has",
    [
        (0, 3, r"\['head/bias', 'head/kernel'\]", r"\['head/bias', 'head/kernel', 'prompt'\]"),
        (3, 0, r"\['head/bias', 'head/kernel', 'prompt'\]", r"\['head/bias', 'head/kernel'\]"),
    ],
    ids=["head_only_file_into_prompt_model", "prompt_file_into_head_only_model"],
)
def test_restore_tensor_set_mismatch(backbone, tmp_path, file_tokens, model_tokens, held, has):
    source = PromptTextClassifier(backbone, 2, num_tokens=file_tokens)
    path = save_prompts(source, str(tmp_path / "p.safetensors"))
    target = PromptTextClassifier(backbone, 2, num_tokens=model_tokens)
    with pytest.raises(
        PromptFileError,
        match=rf"holds {held}, but the model has {has}. Build the model with the file's "
        rf"settings: num_tokens={file_tokens}",
    ):
        restore_prompts(target, path)


def test_prompt_file_error_is_a_value_error():
    assert issubclass(PromptFileError, ValueError)


def test_file_without_fingerprint_is_a_prompt_file_error(model, tmp_path):
    tensors = load_prompts(save_prompts(model, str(tmp_path / "good.safetensors"))).tensors
    path = _write_prompt_file(tmp_path / "p.safetensors", tensors, {"format_version": 1})
    with pytest.raises(PromptFileError, match=r"backbone_fingerprint"):
        restore_prompts(model, path)


def test_extra_cannot_override_reserved_metadata(model, tmp_path):
    with pytest.raises(ValueError, match=r"extra"):
        save_prompts(
            model, str(tmp_path / "p.safetensors"), extra={"backbone_fingerprint": "0" * 16}
        )


def test_deep_prompt_file_round_trip(tmp_path):
    backbone = _backbone(num_layers=2)
    source = PromptTextClassifier(backbone, 2, num_tokens=3, deep=True)
    path = save_prompts(source, str(tmp_path / "deep.safetensors"))
    loaded = load_prompts(path)
    assert loaded.metadata["deep"] == "hidden"
    assert loaded.tensors["deep_prompts"].shape == (1, 3, 8)
    target = PromptTextClassifier(backbone, 2, num_tokens=3, deep=True, prompt_initializer="zeros")
    restore_prompts(target, path)
    np.testing.assert_array_equal(target.prompt.deep_prompts.numpy(), source.prompt.deep_prompts.numpy())
    with pytest.raises(PromptFileError, match=r"deep='hidden'"):
        restore_prompts(PromptTextClassifier(backbone, 2, num_tokens=3), path)


def test_prefix_prompt_file_round_trip(tmp_path):
    backbone = _backbone(num_layers=2)
    source = PromptTextClassifier(backbone, 2, num_tokens=3, deep="prefix")
    path = save_prompts(source, str(tmp_path / "prefix.safetensors"))
    loaded = load_prompts(path)
    assert set(loaded.tensors) == {"prefixes", "head/kernel", "head/bias"}
    assert loaded.tensors["prefixes"].shape == (2, 2, 3, 8)  # layers, keys/values, tokens, dim
    # Older releases would read deep="prefix" as hidden-state prompts: format 3 makes them refuse.
    assert loaded.metadata["deep"] == "prefix" and loaded.metadata["format_version"] == 3
    assert loaded.metadata["initializer"] == "RandomUniform"
    target = PromptTextClassifier(backbone, 2, num_tokens=3, deep="prefix", prompt_initializer="zeros")
    restore_prompts(target, path)
    np.testing.assert_array_equal(target.prefixes.prefixes.numpy(), source.prefixes.prefixes.numpy())
    x = {"token_ids": np.array([[2, 5, 6, 0]]), "segment_ids": np.zeros((1, 4), "int32"), "padding_mask": np.array([[1, 1, 1, 0]])}
    np.testing.assert_array_equal(target(x).numpy(), source(x).numpy())
    with pytest.raises(PromptFileError, match=r"deep='prefix'"):
        restore_prompts(PromptTextClassifier(backbone, 2, num_tokens=3, deep="hidden"), path)


def test_p_tuning_file_serves_without_encoder_and_resumes_with_it(tmp_path):
    backbone = _backbone()
    inputs = {"token_ids": np.array([[2, 5, 6, 3]]), "segment_ids": np.zeros((1, 4), "int32"),
              "padding_mask": np.ones((1, 4), "int32")}  # fmt: skip
    source = PromptTextClassifier(backbone, 2, num_tokens=3, prompt_encoder="mlp")
    path = save_prompts(source, str(tmp_path / "pt.safetensors"))
    loaded = load_prompts(path)
    assert loaded.metadata["prompt_encoder"] == "mlp"
    assert {"prompt", "encoder/seeds", "encoder/0"} <= set(loaded.tensors)
    expected = source(inputs).numpy()
    plain = PromptTextClassifier(backbone, 2, num_tokens=3, prompt_initializer="zeros")
    restore_prompts(plain, path)  # serving: the encoder's output only
    np.testing.assert_allclose(plain(inputs).numpy(), expected, atol=1e-6)
    resumed = PromptTextClassifier(backbone, 2, num_tokens=3, prompt_encoder="mlp", prompt_initializer="zeros")
    restore_prompts(resumed, path)  # training: the seeds and the encoder
    np.testing.assert_allclose(resumed(inputs).numpy(), expected, atol=1e-6)
    for a, b in zip(resumed.prompt.encoder_weights, source.prompt.encoder_weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(PromptFileError, match="prompt_encoder=mlp"):
        restore_prompts(PromptTextClassifier(backbone, 2, num_tokens=3, prompt_encoder="lstm"), path)


@pytest.mark.parametrize("make_backbone, backbone_class", [(tiny_gpt2_lm, "GPT2Backbone"), (tiny_gemma3_lm, "Gemma3Backbone")])
def test_causal_lm_prompt_file_round_trip(make_backbone, backbone_class, tmp_path):
    backbone = make_backbone()
    source = PromptCausalLM(backbone, num_tokens=3, seed=1, prompt_initializer="vocab")
    path = save_prompts(source, str(tmp_path / "lm.safetensors"), extra={"task": "greeting"})
    loaded = load_prompts(path)
    assert set(loaded.tensors) == {"prompt"}
    metadata = loaded.metadata
    assert (metadata["kind"], metadata["num_tokens"], metadata["dim"], metadata["task"]) == ("causal_lm", 3, 32, "greeting")
    assert metadata["backbone_class"] == backbone_class and "num_classes" not in metadata
    target = PromptCausalLM(backbone, num_tokens=3, seed=2)
    restore_prompts(target, path)
    inputs = {"token_ids": LM_IDS, "padding_mask": LM_MASK}
    np.testing.assert_array_equal(_numpy(target(inputs)), _numpy(source(inputs)))
    np.testing.assert_array_equal(target.generate(LM_IDS, LM_MASK, 4)["token_ids"], source.generate(LM_IDS, LM_MASK, 4)["token_ids"])


def test_causal_lm_prompt_file_errors(model, tmp_path):
    backbone = tiny_gpt2_lm()
    lm = PromptCausalLM(backbone, num_tokens=3)
    with pytest.raises(ValueError, match=r"takes no `label_names`. Received: num_tokens=3, label_names=\['a'\]"):
        save_prompts(lm, str(tmp_path / "x.safetensors"), label_names=["a"])
    with pytest.raises(ValueError, match=r"needs a prompt \(num_tokens > 0\)"):
        save_prompts(PromptCausalLM(backbone, num_tokens=0), str(tmp_path / "x.safetensors"))
    lm_path = save_prompts(lm, str(tmp_path / "lm.safetensors"))
    assert load_prompts(lm_path).metadata["format_version"] == 2  # older releases refuse it clearly
    classifier_path = save_prompts(model, str(tmp_path / "classifier.safetensors"))
    with pytest.raises(PromptFileError, match=r"holds a causal_lm prompt, not a classifier one. Load it into a PromptCausalLM"):
        restore_prompts(model, lm_path)
    with pytest.raises(PromptFileError, match=r"holds a classifier prompt, not a causal_lm one"):
        restore_prompts(lm, classifier_path)
    with pytest.raises(PromptFileError, match=r"was trained on another backbone"):
        restore_prompts(PromptCausalLM(tiny_gpt2_lm(seed=1), num_tokens=3), lm_path)
    with pytest.raises(PromptFileError, match=r"prompt has shape \(3, 32\), the model's has \(4, 32\)"):
        restore_prompts(PromptCausalLM(backbone, num_tokens=4), lm_path)


def test_unknown_kind(model, tmp_path):
    metadata = {"format_version": 1, "backbone_fingerprint": "0" * 16, "num_tokens": 3, "kind": "diffusion"}
    path = _write_prompt_file(tmp_path / "p.safetensors", {"prompt": np.zeros((3, 8), "float32")}, metadata)
    with pytest.raises(PromptFileError, match=r"unknown prompt kind 'diffusion'; this library reads \['causal_lm', 'classifier'\]"):
        load_prompts(path)


def _edit(path, edit_metadata=None, edit_tensors=None):
    """Rewrites a saved prompt file with edited metadata or tensors, keeping
    its recorded checksum (as a hand edit would)."""
    from safetensors import safe_open
    from safetensors.numpy import load

    data = open(path, "rb").read()
    with safe_open(path, "np") as f:
        header = dict(f.metadata())
    tensors = load(data)
    metadata = json.loads(header["tf_prompt_tuning"])
    if edit_metadata:
        edit_metadata(metadata)
    if edit_tensors:
        edit_tensors(tensors)
    header["tf_prompt_tuning"] = json.dumps(metadata)
    open(path, "wb").write(save_safetensors(tensors, metadata=header))


@pytest.mark.parametrize(
    "edit_metadata, edit_tensors",
    [
        (lambda m: m.update(label_names=m["label_names"][::-1]), None),
        (lambda m: m.update(pooling="cls"), None),
        (lambda m: m.update(placement="prepend"), None),
        (lambda m: m.update(note="hello"), None),
        (None, lambda t: t["head/bias"].__setitem__(0, t["head/bias"][0] + 1e-3)),
        (None, lambda t: t.update(prompt=t["prompt"][::-1].copy())),
    ],
    ids=["swapped_labels", "pooling", "placement", "added_field", "head_bias", "prompt_rows"],
)
def test_any_edit_after_writing_is_an_error(model, tmp_path, edit_metadata, edit_tensors):
    path = save_prompts(model, str(tmp_path / "p.safetensors"), label_names=["negative", "positive"])
    _edit(path, edit_metadata, edit_tensors)
    with pytest.raises(PromptFileError, match=r"p.safetensors' was changed after it was written"):
        load_prompts(path)
    with pytest.raises(PromptFileError, match=r"changed after it was written"):
        PromptTextClassifier.from_prompt_file(path, model.backbone)


def test_an_unedited_rewrite_still_loads(model, tmp_path):
    path = save_prompts(model, str(tmp_path / "p.safetensors"), label_names=["negative", "positive"])
    _edit(path)  # same metadata and tensors, rewritten
    assert load_prompts(path).metadata["label_names"] == ["negative", "positive"]


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("num_tokens", "3", "an integer >= 0"),
        ("num_tokens", -1, "an integer >= 0"),
        ("num_classes", 1, "an integer >= 2"),
        ("num_classes", 2.0, "an integer >= 2"),
        ("pooling", "max", '"mean", "cls" or "last"'),
        ("placement", 0, '"prepend", "after_first" or "append"'),
        ("deep", 1, 'false, true, "hidden" or "prefix"'),
        ("deep", "layers", 'false, true, "hidden" or "prefix"'),
        ("prompt_encoder", "gru", 'null, "mlp" or "lstm"'),
        ("backbone_fingerprint", "not-hex-digits!!", "16 hexadecimal digits"),
        ("dim", 0, "a positive integer"),
        ("sequence_length", "64", "a positive integer"),
        ("backbone", ["all-MiniLM-L6-v2"], "a string"),
        ("label_names", ["a", "b", "c"], "null or 2 distinct strings"),
        ("label_names", ["a", "a"], "null or 2 distinct strings"),
        ("label_names", "ab", "null or 2 distinct strings"),
        ("label_names", [1, 2], "null or 2 distinct strings"),
    ],
)  # fmt: skip
def test_every_metadata_field_is_checked_before_use(model, tmp_path, field, value, expected):
    # Files of release 0.1 carry no checksum, so their fields are checked one by one.
    path = save_prompts(model, str(tmp_path / "p.safetensors"), label_names=["negative", "positive"])
    from safetensors.numpy import load

    tensors = load(open(path, "rb").read())
    metadata = load_prompts(path).metadata
    metadata[field] = value
    path = _write_prompt_file(tmp_path / "old.safetensors", tensors, metadata)
    with pytest.raises(PromptFileError, match=rf"invalid metadata field '{field}': expected {re.escape(expected)}"):
        load_prompts(path)


def test_files_without_a_checksum_load(model, tmp_path):
    """Release 0.1 wrote no checksum: its files still load (their fields checked)."""
    from safetensors.numpy import load

    path = save_prompts(model, str(tmp_path / "p.safetensors"))
    metadata = load_prompts(path).metadata
    old = _write_prompt_file(tmp_path / "old.safetensors", load(open(path, "rb").read()), metadata)
    restored = PromptTextClassifier.from_prompt_file(old, model.backbone)
    np.testing.assert_array_equal(_numpy(restored(INPUTS)), _numpy(model(INPUTS)))


# Non-finite values (a training that diverged) are refused on every path.


NON_FINITE = [("prompt", np.nan, 1), ("prompt", np.inf, 5), ("head/kernel", -np.inf, 2), ("head/bias", np.nan, 2)]


@pytest.mark.parametrize("name, value, count", NON_FINITE, ids=str)
def test_a_non_finite_model_is_not_saved(model, tmp_path, name, value, count):
    variable = model.task_variables()[name]
    poisoned = _numpy(variable).copy()
    poisoned.reshape(-1)[:count] = value
    variable.assign(poisoned)
    plural = "s" if count > 1 else ""
    with pytest.raises(
        ValueError,
        match=rf"PromptTextClassifier not saved to '.*p.safetensors': '{name}' has {count} non-finite "
        rf"value{plural} \(NaN or infinity\) of {poisoned.size}. The training that produced it diverged: "
        r"train again with a lower learning rate",
    ):
        save_prompts(model, str(tmp_path / "p.safetensors"))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name, value, count", NON_FINITE, ids=str)
def test_a_non_finite_file_is_refused_on_every_load_path(model, backbone, tmp_path, name, value, count):
    from tf_prompt_tuning.files.prompt_file import read_prompt_file

    path = save_prompts(model, str(tmp_path / "p.safetensors"))
    good = load_prompts(path)
    resealed(path, lambda t: t[name].reshape(-1).__setitem__(slice(0, count), value))
    message = rf"'.*p.safetensors': '{name}' has {count} non-finite value.*diverged"
    target = PromptTextClassifier(backbone, 2, num_tokens=3, seed=5)
    before = _variables(target)
    for load in (
        lambda: load_prompts(path),
        lambda: read_prompt_file(path, "classifier"),
        lambda: restore_prompts(target, path),
        lambda: PromptTextClassifier.from_prompt_file(path, backbone),
    ):
        with pytest.raises(PromptFileError, match=message):
            load()
    # A `PromptFile` made in memory has not been through `load_prompts`: assigning it checks too.
    tensors = {k: v.copy() for k, v in good.tensors.items()}
    tensors[name].reshape(-1)[:count] = value
    in_memory = type(good)(tensors=tensors, metadata=good.metadata, path="in memory")
    with pytest.raises(PromptFileError, match=rf"'in memory': '{name}' has {count} non-finite"):
        PromptTextClassifier.from_prompt_file(in_memory, backbone)
    tensors[name] = np.zeros(tensors[name].shape, "int32")  # finite, but not what save_prompts writes
    with pytest.raises(PromptFileError, match=rf"'in memory': {name} holds int32 values; a prompt file holds floating-point"):
        PromptTextClassifier.from_prompt_file(in_memory, backbone)
    after = _variables(target)
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value)


def test_a_non_finite_causal_lm_prompt_is_refused(tmp_path):
    backbone = tiny_gpt2_lm()
    lm = PromptCausalLM(backbone, num_tokens=3)
    path = save_prompts(lm, str(tmp_path / "lm.safetensors"))
    resealed(path, lambda t: t["prompt"].__setitem__((1, 2), np.nan))
    with pytest.raises(PromptFileError, match=r"'prompt' has 1 non-finite value \(NaN or infinity\) of 96"):
        PromptCausalLM.from_prompt_file(path, backbone)
    lm.prompt.prompt.assign(np.full((3, 32), np.inf, "float32"))
    with pytest.raises(ValueError, match=r"PromptCausalLM not saved to .*'prompt' has 96 non-finite values"):
        save_prompts(lm, str(tmp_path / "diverged.safetensors"))
    assert not (tmp_path / "diverged.safetensors").exists()


@settings(max_examples=60, deadline=None, database=None)
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    positions=st.sets(st.integers(0, 63), max_size=8),
    value=st.sampled_from([np.nan, np.inf, -np.inf]),
)
def test_check_finite_counts_every_non_finite_value(shape, positions, value):
    from tf_prompt_tuning.files.prompt_file import check_finite

    array = np.random.default_rng(0).normal(size=shape).astype("float32")
    bad = {p for p in positions if p < array.size}
    array.reshape(-1)[sorted(bad)] = value
    tensors = {"fine": np.ones(3, "float32"), "ids": np.arange(3), "x": array}
    if not bad:
        check_finite(tensors, "here")
        return
    with pytest.raises(ValueError, match=rf"^here: 'x' has {len(bad)} non-finite value"):
        check_finite(tensors, "here")
