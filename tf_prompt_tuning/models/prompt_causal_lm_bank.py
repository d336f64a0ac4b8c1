"""`PromptCausalLMBank`: many generation prompts on one frozen causal LM."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from tf_prompt_tuning._checks import check_positive_int
from tf_prompt_tuning.files.prompt_file import (
    check_backbone,
    check_finite,
    check_tensors,
    read_prompt_file,
)
from tf_prompt_tuning.layers.prompt_bank_layer import PromptBankLayer
from tf_prompt_tuning.models.prompt_causal_lm import PromptCausalLM
from tf_prompt_tuning.models.task_bank import TaskBank


_NOT_DEEP = (
    "{what} cannot serve deep prompts: an LM bank holds one input-level prompt a task. "
    "Received: {received}. Serve it as its own PromptCausalLM (from_prompt_file), or train a "
    "shallow prompt (deep=False) for the bank."
)


@keras.saving.register_keras_serializable(package="tf_prompt_tuning")
class PromptCausalLMBank(TaskBank, PromptCausalLM):
    """Generates for many prompt-tuned tasks from one frozen causal LM.

    A `PromptCausalLM` whose prompt is picked per example by `task_id`
    (`(batch,)` int, in `call` and `generate`), so a batch that mixes tasks
    generates each row as its task's own model would. Tasks are usually
    trained one by one as `PromptCausalLM`s and added with `add_lm` or
    `add_prompt_file`.

    Args:
        backbone: the frozen KerasHub causal LM backbone all tasks share.
        num_tokens: prompt length of every task.
        tasks: names of the tasks to create (used when loading a saved bank).
        placement: "prepend" (default) or "append", as in `PromptCausalLM`;
            every task of the bank has it.
        **kwargs: standard model arguments.

    Example:

    >>> import keras_hub, numpy as np
    >>> import tf_prompt_tuning as tpt
    >>> backbone = keras_hub.models.GPT2Backbone(vocabulary_size=40, num_layers=2, num_heads=2,
    ...     hidden_dim=8, intermediate_dim=16, max_sequence_length=24)
    >>> bank = tpt.PromptCausalLMBank(backbone, num_tokens=4)
    >>> bank.add_lm("titles", tpt.PromptCausalLM(backbone, num_tokens=4))  # a trained task
    0
    >>> bank.add_task("summaries")  # or a fresh one, to train
    1
    >>> token_ids = np.array([[5, 6, 7], [8, 9, 10]])
    >>> out = bank.generate(token_ids, max_new_tokens=4, task_id=[0, bank.task_id("summaries")],
    ...                     jit_compile=False)
    >>> out["token_ids"].shape
    (2, 4)
    """

    adders = "add_lm"

    def __init__(self, backbone, *, num_tokens=20, tasks: Sequence[str] = (), **kwargs):
        if kwargs.get("deep"):
            raise ValueError(_NOT_DEEP.format(what="A PromptCausalLMBank", received="deep=True"))
        super().__init__(backbone, num_tokens=check_positive_int("num_tokens", num_tokens), **kwargs)
        self.supports_jit = False  # as in PromptBank; `generate` checks ids before XLA
        self.tasks = []
        for name in tasks:
            self.add_task(name)

    def make_prompt_layer(self, num_tokens, initializer) -> PromptBankLayer:
        return PromptBankLayer(num_tokens, name="prompts")

    @property
    def task_names(self) -> list[str]:
        return list(self.tasks)

    def variables_of_task(self, name: str) -> dict:
        return {"prompt": self.prompt.prompts[self.task_id(name)]}

    def prompt_arguments(self, task_id) -> dict:
        return {"task_id": self.checked_task_ids(task_id)}

    def add_task(self, name: str, prompt_initializer="uniform") -> int:
        """Adds an untrained task; returns its id. A refused task (a bad name
        or initializer) leaves the bank as it was."""
        self.check_new_task(name)
        self.prompt.add_prompt(name, prompt_initializer)  # one variable: made whole, or not at all
        self.tasks.append(name)
        # A compiled generate function holds the prompts as they were when it
        # was traced; a new task needs new ones.
        self._generate_functions.clear()
        return len(self.tasks) - 1

    def add_lm(self, name: str, lm: PromptCausalLM) -> int:
        """Adds the prompt of a trained `PromptCausalLM` on this bank's backbone."""
        self.check_new_task(name, lm.backbone)
        if isinstance(lm, PromptCausalLMBank) or lm.num_tokens != self.num_tokens:
            raise ValueError(
                f"Task {name!r} must be a PromptCausalLM with the bank's num_tokens="
                f"{self.num_tokens}. Received: {type(lm).__name__} with num_tokens={lm.num_tokens}."
            )
        self._check_placement(lm.placement, f"Task {name!r}")
        if lm.deep:
            raise ValueError(_NOT_DEEP.format(what=f"Task {name!r}", received="a PromptCausalLM with deep=True"))
        value = keras.ops.convert_to_numpy(lm.prompt.prompt_value())
        check_finite({"prompt": value}, f"Task {name!r} not added to the bank")
        task = self.add_task(name, "zeros")  # "zeros": the model's prompt replaces them
        self.variables_of_task(name)["prompt"].assign(value)
        return task

    def add_prompt_file(self, name: str, path) -> int:
        """Adds a task from its generation prompt file (a path or a loaded
        `PromptFile`), checked against the backbone; read once, assigned directly."""
        loaded = read_prompt_file(path, "causal_lm")
        if loaded.metadata["num_tokens"] != self.num_tokens:
            raise ValueError(
                f"{loaded.path!r} holds a {loaded.metadata['num_tokens']}-token prompt; the bank's "
                f"tasks have num_tokens={self.num_tokens}. Tasks in one bank share it."
            )
        self._check_placement(loaded.metadata.get("placement", "prepend"), repr(loaded.path))
        if loaded.metadata.get("deep"):
            raise ValueError(_NOT_DEEP.format(what=repr(loaded.path), received="a deep prompt file"))
        check_backbone(loaded, self.backbone, fingerprint=self.bank_backbone_fingerprint())
        self.check_new_task(name)
        check_tensors({"prompt": (self.num_tokens, self.prompt.dim)}, loaded)
        task = self.add_task(name, "zeros")  # "zeros": the file's prompt replaces them
        self.variables_of_task(name)["prompt"].assign(loaded.tensors["prompt"])
        return task

    def _check_placement(self, placement: str, what: str):
        """A task's prompt must sit where the bank serves every task's."""
        if placement != self.placement:
            raise ValueError(
                f"{what} has placement={placement!r}, but the bank serves placement={self.placement!r}. "
                "Tasks in one bank share it: put it in a bank of its placement."
            )

    def generate(self, token_ids, padding_mask=None, max_new_tokens: int = 16, *, task_id=None, **options) -> dict:
        """`PromptCausalLM.generate`, each row with the prompt of its `task_id`."""
        if task_id is None or not self.tasks:
            self.prompt_arguments(task_id)  # says what is missing
        if not self._valid_task_ids(task_id, len(token_ids)):
            raise ValueError(
                f"`task_id` must hold one id in [0, {len(self.tasks)}) per row of "
                f"`token_ids` ({len(token_ids)} rows). Received: task_id={task_id!r}."
            )
        return super().generate(token_ids, padding_mask, max_new_tokens, task_id=task_id, **options)

    def _valid_task_ids(self, task_id, batch: int) -> bool:
        ids = np.asarray(task_id)
        in_range = ids.dtype.kind in "iu" and bool(np.all((ids >= 0) & (ids < len(self.tasks))))
        return ids.shape == (batch,) and in_range

    def get_config(self):
        config = super().get_config()
        config["tasks"] = list(self.tasks)
        return config
