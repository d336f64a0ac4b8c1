"""Prompt tuning for Keras 3 and TensorFlow."""

import os

# The training step is a TensorFlow `tf.function`; pick Keras's TensorFlow
# backend unless the user chose one before importing us.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"

from tf_prompt_tuning import initializers
from tf_prompt_tuning.freezing import ParameterSummary
from tf_prompt_tuning.freezing import freeze
from tf_prompt_tuning.freezing import parameter_summary
from tf_prompt_tuning.prompt_layer import PromptLayer
from tf_prompt_tuning.training import TrainingHistory
from tf_prompt_tuning.training import TrainStep
from tf_prompt_tuning.training import make_train_step
from tf_prompt_tuning.training import train

__all__ = [
    "ParameterSummary",
    "PromptLayer",
    "TrainStep",
    "TrainingHistory",
    "freeze",
    "initializers",
    "make_train_step",
    "parameter_summary",
    "train",
]
