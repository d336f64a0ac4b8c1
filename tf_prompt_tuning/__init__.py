"""Prompt tuning for Keras 3 and TensorFlow."""

import os

# The training step is a TensorFlow `tf.function`; pick Keras's TensorFlow
# backend unless the user chose one before importing us.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"

from tf_prompt_tuning._startup import import_tensorflow

import_tensorflow()  # quietly for the command line (see _startup)

from tf_prompt_tuning import initializers
from tf_prompt_tuning.backbone import load_backbone
from tf_prompt_tuning.datasets import DataError
from tf_prompt_tuning.datasets import TextDataset
from tf_prompt_tuning.datasets import load_sentiment
from tf_prompt_tuning.datasets import load_text_file
from tf_prompt_tuning.distribution import make_strategy
from tf_prompt_tuning.export import export_saved_model
from tf_prompt_tuning.freezing import ParameterSummary
from tf_prompt_tuning.freezing import freeze
from tf_prompt_tuning.freezing import parameter_summary
from tf_prompt_tuning.prefix_layer import PrefixLayer
from tf_prompt_tuning.prompt_bank import PrefixBankLayer
from tf_prompt_tuning.prompt_bank import PromptBank
from tf_prompt_tuning.prompt_bank import PromptBankLayer
from tf_prompt_tuning.prompt_bank import PromptCausalLMBank
from tf_prompt_tuning.prompt_bank import ensemble_probabilities
from tf_prompt_tuning.prompt_causal_lm import PromptCausalLM
from tf_prompt_tuning.prompt_causal_lm import causal_lm_batch
from tf_prompt_tuning.prompt_file import PromptFileError
from tf_prompt_tuning.prompt_file import load_prompts
from tf_prompt_tuning.prompt_file import restore_prompts
from tf_prompt_tuning.prompt_file import save_prompts
from tf_prompt_tuning.prompt_layer import DeepPromptLayer
from tf_prompt_tuning.prompt_layer import PromptEncoderLayer
from tf_prompt_tuning.prompt_layer import PromptLayer
from tf_prompt_tuning.prompted_backbone import prompted_backbone
from tf_prompt_tuning.text_classifier import PromptTextClassifier
from tf_prompt_tuning.text_classifier import make_prompt_initializer
from tf_prompt_tuning.text_pipeline import encode_texts
from tf_prompt_tuning.text_pipeline import make_text_dataset
from tf_prompt_tuning.training import TrainingHistory
from tf_prompt_tuning.training import TrainStep
from tf_prompt_tuning.training import make_train_step
from tf_prompt_tuning.training import train

__all__ = [
    "DataError",
    "DeepPromptLayer",
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
    "PromptTextClassifier",
    "TextDataset",
    "TrainStep",
    "TrainingHistory",
    "causal_lm_batch",
    "encode_texts",
    "ensemble_probabilities",
    "export_saved_model",
    "freeze",
    "initializers",
    "load_backbone",
    "load_prompts",
    "load_sentiment",
    "load_text_file",
    "make_prompt_initializer",
    "make_strategy",
    "make_text_dataset",
    "make_train_step",
    "parameter_summary",
    "prompted_backbone",
    "restore_prompts",
    "save_prompts",
    "train",
]
