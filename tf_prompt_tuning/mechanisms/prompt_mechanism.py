"""`PromptMechanism`: how a task's trainable vectors enter a frozen backbone."""

from __future__ import annotations


class PromptMechanism:
    """One way to put a task's trainable vectors into a frozen backbone.

    The task models, the banks, prompt files, the training job and the
    command line ask the mechanism what it needs (its layers, its variables
    by prompt-file name, its file format, whether it takes positions in the
    sequence) rather than branching on which one it is. A new mechanism is
    a subclass in its own module under `mechanisms/` and one line in
    `mechanisms/__init__.py`'s `MECHANISMS`.

    Class attributes:
        name: the registry key, also the job's and the CLI's `--method`.
        description: how the job's result table names a model using it.
        deep: how `PromptTextClassifier(deep=...)` and prompt-file metadata
            spell it (False, "hidden" or "prefix").
        takes_positions: whether its vectors take positions in the
            sequence (and so count against the backbone's maximum length).
        file_format: the prompt-file format a classifier using it writes.
        word_initializers: whether it can start from words (vocabulary,
            text and label initializers make input-level vectors).

    Args:
        prompt_encoder: the encoder of a mechanism that has one; ignored by
            the others.
    """

    name: str = ""
    description: str = ""
    deep = False
    takes_positions = True
    file_format = 1
    word_initializers = True

    def __init__(self, prompt_encoder=None):
        self.prompt_encoder = None

    @classmethod
    def matches(cls, deep, prompt_encoder) -> bool:
        """Whether `PromptTextClassifier(deep=deep, prompt_encoder=...)` means this mechanism."""
        return deep == cls.deep and not prompt_encoder

    def check(self, backbone, initializer):
        """Raises if the mechanism cannot run on `backbone` from `initializer`."""

    def make_layers(self, backbone, num_tokens: int, initializer, placement: str):
        """`(prompt, prefixes)`: the layer that goes into the embedded sequence
        and the key/value prefix layer, either `None`."""
        raise NotImplementedError

    def variables(self, prompt, prefixes) -> dict:
        """Its variables in a task model, by prompt-file name."""
        raise NotImplementedError

    def file_tensors(self, prompt, prefixes) -> dict:
        """Arrays a prompt file holds besides the variables (none by default)."""
        return {}

    def optional_file_tensors(self, names) -> set:
        """Names of tensors a file may hold that this mechanism does not restore:
        a P-tuning file's encoder, which a plain prompt reads as its output."""
        return {name for name in names if name.startswith("encoder/")}

    def bank_mechanism(self) -> PromptMechanism:
        """The mechanism a bank serves this one's tasks with (itself by default)."""
        return self

    def add_to_bank(self, bank, name: str, initializer):
        """Adds task `name` to a `PromptBank`'s prompt layers."""
        raise NotImplementedError

    def bank_variables(self, bank, task: int) -> dict:
        """Task number `task`'s variables in a `PromptBank`, by prompt-file name."""
        raise NotImplementedError

    def classifier_arguments(self) -> dict:
        """`PromptTextClassifier`'s arguments that choose this mechanism."""
        return {"deep": self.deep, "prompt_encoder": self.prompt_encoder}
