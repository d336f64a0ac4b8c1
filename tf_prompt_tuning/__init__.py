"""Prompt tuning for Keras 3 and TensorFlow: the library's public API.

The layout: `backbones/` (loading, conversion, causal decoder families, the
prompted graph, the one module reaching Keras/KerasHub internals),
`preprocessing/` (text to model inputs), `layers/` (prompt layers, one a
module), `mechanisms/` (where a prompt enters the backbone), `models/` (task
models and banks on the `PromptTask` base), `training/` (step, loop,
checkpoints, freezing, distribution), `files/` (prompt files, export), and
`app/` (the command line, the jobs, built-in data, plots), which the library
never imports.
"""

import os

# The training step is a TensorFlow `tf.function`; pick Keras's TensorFlow
# backend unless the user chose one before importing us.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tf_prompt_tuning._startup import import_tensorflow as _import_tensorflow
from tf_prompt_tuning._version import __version__  # noqa: E402, F401

_import_tensorflow()  # quietly for the command line (see _startup)

from tf_prompt_tuning import initializers
from tf_prompt_tuning.backbones.backbone import load_backbone
from tf_prompt_tuning.backbones.causal_decoder import CausalDecoder
from tf_prompt_tuning.backbones.gemma3_gguf import convert_gemma3_gguf
from tf_prompt_tuning.backbones.prompted_backbone import (
    prompt_hidden_states,
    prompted_backbone,
)
from tf_prompt_tuning.files.export import export_saved_model
from tf_prompt_tuning.files.prompt_file import (
    PromptFileError,
    load_prompts,
    restore_prompts,
    save_prompts,
)
from tf_prompt_tuning.initializers import make_prompt_initializer
from tf_prompt_tuning.layers.deep_prompt_layer import DeepPromptLayer
from tf_prompt_tuning.layers.prefix_bank_layer import PrefixBankLayer
from tf_prompt_tuning.layers.prefix_layer import PrefixLayer
from tf_prompt_tuning.layers.prompt_bank_layer import PromptBankLayer
from tf_prompt_tuning.layers.prompt_encoder_layer import PromptEncoderLayer
from tf_prompt_tuning.layers.prompt_layer import PromptLayer
from tf_prompt_tuning.models.prompt_bank import PromptBank, ensemble_probabilities
from tf_prompt_tuning.models.prompt_causal_lm import PromptCausalLM, causal_lm_batch
from tf_prompt_tuning.models.prompt_causal_lm_bank import PromptCausalLMBank
from tf_prompt_tuning.models.prompt_text_classifier import PromptTextClassifier
from tf_prompt_tuning.models.prompt_task import PromptTask
from tf_prompt_tuning.preprocessing.text_pipeline import encode_texts, make_text_dataset
from tf_prompt_tuning.preprocessing.text_preprocessor import TextPreprocessor
from tf_prompt_tuning.training.distribution import make_strategy
from tf_prompt_tuning.training.freezing import (
    ParameterSummary,
    freeze,
    parameter_summary,
)
from tf_prompt_tuning.training.input_cache_store import InputCacheStore
from tf_prompt_tuning.training.train_loop import TrainingHistory, train
from tf_prompt_tuning.training.train_step import TrainStep, make_train_step

__all__ = [
    "CausalDecoder",
    "DeepPromptLayer",
    "InputCacheStore",
    "ParameterSummary",
    "PrefixBankLayer",
    "PrefixLayer",
    "PromptBank",
    "PromptBankLayer",
    "PromptCausalLM",
    "PromptCausalLMBank",
    "PromptEncoderLayer",
    "PromptFileError",
    "PromptLayer",
    "PromptTask",
    "PromptTextClassifier",
    "TextPreprocessor",
    "TrainStep",
    "TrainingHistory",
    "causal_lm_batch",
    "convert_gemma3_gguf",
    "encode_texts",
    "ensemble_probabilities",
    "export_saved_model",
    "freeze",
    "initializers",
    "load_backbone",
    "load_prompts",
    "make_prompt_initializer",
    "make_strategy",
    "make_text_dataset",
    "make_train_step",
    "parameter_summary",
    "prompt_hidden_states",
    "prompted_backbone",
    "restore_prompts",
    "save_prompts",
    "train",
]
