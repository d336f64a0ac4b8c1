"""`PromptTask`: what every task model and bank of this library shares.

In the spirit of KerasHub's `Task`: a frozen backbone plus a few task
variables. The base owns the backbone's config round trip, the input-length
check, and the prompt-file contract: `task_variables()` (what a file holds,
by name), `prompt_file_metadata()` (the settings it records) and
`from_prompt_file(path, backbone)`. `prompt_file` then knows only the file
format.
"""

from __future__ import annotations

import keras

from tf_prompt_tuning.prompted_backbone import check_sequence_fits


@keras.saving.register_keras_serializable(package="tf_prompt_tuning")
class PromptTask(keras.Model):
    """Base class of the prompt-tuned task models and banks.

    Subclasses set `backbone`, `num_tokens`, `seed` and the prompt layer
    (`prompt_layer()`), and define the task variables and metadata.

    Args:
        **kwargs: standard model arguments (`name`, `dtype`, ...).
    """

    # The prompt-file `kind` this task writes and reads; None: not saved to one file.
    prompt_file_kind: str | None = None

    # Positions the prompt takes in the backbone's sequence.
    @property
    def prompt_positions(self) -> int:
        return self.num_tokens

    def check_input_length(self, length: int | None):
        """Raises if `length` tokens plus the prompt exceed the backbone's limit."""
        check_sequence_fits(self.backbone, self.prompt_positions, length)

    def prompt_layer(self):
        """The layer whose initializer the config records (None: no prompt)."""
        return getattr(self, "prompt", None)

    # The prompt-file contract.

    def task_variables(self) -> dict:
        """The task's own variables, by their name in a prompt file."""
        raise NotImplementedError

    def prompt_file_tensors(self) -> dict:
        """The arrays a prompt file holds: the task variables' values, plus
        anything a server needs that they only imply."""
        return {name: keras.ops.convert_to_numpy(v) for name, v in self.task_variables().items()}

    def optional_file_tensors(self, names) -> set:
        """Names of tensors a file may hold that this model does not restore."""
        return set()

    def prompt_file_format(self) -> int:
        """The prompt-file format version this task is written as."""
        raise NotImplementedError

    def prompt_file_metadata(self) -> dict:
        """The settings a prompt file records, to rebuild the task."""
        raise NotImplementedError

    @classmethod
    def from_prompt_metadata(cls, metadata: dict, backbone, **kwargs):
        """An untrained task with the settings a prompt file recorded."""
        raise NotImplementedError

    @classmethod
    def from_prompt_file(cls, path, backbone, **kwargs):
        """The task a prompt file holds, on `backbone` (its fingerprint must
        match the file's); the file is read once.

        Args:
            path: a prompt file's path, or a `PromptFile` already loaded.
            backbone: the backbone it was trained on.
            **kwargs: more model arguments (`name`, ...).
        """
        from tf_prompt_tuning.prompt_file import assign_prompt_file, read_prompt_file

        loaded = read_prompt_file(path, cls.prompt_file_kind)
        model = cls.from_prompt_metadata(loaded.metadata, backbone, **kwargs)
        assign_prompt_file(model, loaded)
        return model

    # The config round trip, in one place.

    def get_config(self):
        config = super().get_config()
        prompt = self.prompt_layer()
        config.update(
            {
                "backbone": keras.saving.serialize_keras_object(self.backbone),
                "num_tokens": self.num_tokens,
                "prompt_initializer": (
                    None if prompt is None else keras.initializers.serialize(prompt.initializer)
                ),
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if config.get("prompt_initializer") is None:
            config.pop("prompt_initializer", None)
        return cls(**config)
