"""Prompt tuning for Keras 3 and TensorFlow: the library's public API.

The layout: `layers/` (prompt layers, one a module), `models/` (task models
and banks on the `PromptTask` base), the modules here (prompt files, export,
training, freezing, backbones and their conversion, causal decoder families,
the text pipeline), and `app/` (the command
line, the training job, built-in data, plots), which the library never
imports.
"""

import os

# The training step is a TensorFlow `tf.function`; pick Keras's TensorFlow
# backend unless the user chose one before importing us.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tf_prompt_tuning._version import __version__  # noqa: E402, F401

from tf_prompt_tuning._startup import import_tensorflow as _import_tensorflow

_import_tensorflow()  # quietly for the command line (see _startup)

from tf_prompt_tuning import initializers
from tf_prompt_tuning.backbone import load_backbone
from tf_prompt_tuning.causal_decoder import CausalDecoder
from tf_prompt_tuning.distribution import make_strategy
from tf_prompt_tuning.export import export_saved_model
from tf_prompt_tuning.freezing import ParameterSummary
from tf_prompt_tuning.freezing import freeze
from tf_prompt_tuning.freezing import parameter_summary
from tf_prompt_tuning.gemma3_gguf import convert_gemma3_gguf
from tf_prompt_tuning.initializers import make_prompt_initializer
from tf_prompt_tuning.input_cache_store import InputCacheStore
from tf_prompt_tuning.layers.deep_prompt_layer import DeepPromptLayer
from tf_prompt_tuning.layers.prefix_bank_layer import PrefixBankLayer
from tf_prompt_tuning.layers.prefix_layer import PrefixLayer
from tf_prompt_tuning.layers.prompt_bank_layer import PromptBankLayer
from tf_prompt_tuning.layers.prompt_encoder_layer import PromptEncoderLayer
from tf_prompt_tuning.layers.prompt_layer import PromptLayer
from tf_prompt_tuning.models.prompt_bank import PromptBank
from tf_prompt_tuning.models.prompt_bank import ensemble_probabilities
from tf_prompt_tuning.models.prompt_causal_lm import PromptCausalLM
from tf_prompt_tuning.models.prompt_causal_lm import causal_lm_batch
from tf_prompt_tuning.models.prompt_causal_lm_bank import PromptCausalLMBank
from tf_prompt_tuning.models.prompt_text_classifier import PromptTextClassifier
from tf_prompt_tuning.models.task import PromptTask
from tf_prompt_tuning.prompt_file import PromptFileError
from tf_prompt_tuning.prompt_file import load_prompts
from tf_prompt_tuning.prompt_file import restore_prompts
from tf_prompt_tuning.prompt_file import save_prompts
from tf_prompt_tuning.prompted_backbone import prompt_hidden_states, prompted_backbone
from tf_prompt_tuning.text_pipeline import encode_texts
from tf_prompt_tuning.text_pipeline import make_text_dataset
from tf_prompt_tuning.layers.text_preprocessor import TextPreprocessor
from tf_prompt_tuning.training import TrainStep
from tf_prompt_tuning.training import TrainingHistory
from tf_prompt_tuning.training import make_train_step
from tf_prompt_tuning.training import train

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
