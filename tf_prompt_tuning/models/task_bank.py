"""`TaskBank`: what the classifier and causal-LM banks share."""

from __future__ import annotations

from collections.abc import Sequence

from tf_prompt_tuning.files.prompt_file import backbone_fingerprint
from tf_prompt_tuning.layers.prompt_bank_layer import check_task_ids


def same_backbone(a, b) -> bool:
    """Whether two backbones are the same weights (the same object, or equal fingerprints)."""
    # Hashing every weight (91 MB for MiniLM) is needed only for two different objects.
    return a is b or backbone_fingerprint(a) == backbone_fingerprint(b)


def check_task_name(name, names: Sequence[str]) -> str:
    """`name` if it can name a new task of a bank whose tasks are `names`.

    It names the task's variables and layers too, and Keras refuses a `/` in
    those: refused here, before the bank changes.
    """
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"A task name must be a non-empty string without '/'. Received: name={name!r}.")
    if name in names:
        raise ValueError(f"The bank already has a task {name!r}. Pick another name.")
    return name


class TaskBank:
    """The base of the banks (`PromptBank`, `PromptCausalLMBank`), before
    their task model's class: many tasks on one frozen backbone, each row of
    a batch its own task by the `task_id` input.

    It holds what every bank does the same way: the `task_id` input and its
    checks, task names and ids, the checks of a task to add (its name, its
    backbone), and the backbone's fingerprint, computed once. A bank defines
    `task_names` and `add_task`.
    """

    extra_input_names = ("task_id",)
    prompt_file_kind = None  # many tasks: each is saved from its own model

    @property
    def task_names(self) -> list[str]:
        raise NotImplementedError

    def add_task(self, name: str, *args, **kwargs) -> int:
        """Adds an untrained task; returns its id."""
        raise NotImplementedError

    def variables_of_task(self, name: str) -> dict:
        """Task `name`'s variables, by their name in its prompt file."""
        raise NotImplementedError

    def task_variables(self) -> dict:
        raise ValueError(
            f"A {type(self).__name__} holds many tasks, so it has no one task's variables. "
            "Use variables_of_task(name) for one of them."
        )

    def task_id(self, name: str) -> int:
        """The integer id of a task, for the `task_id` input."""
        names = self.task_names
        if name not in names:
            raise KeyError(f"No task {name!r} in the bank. Its tasks are {names}.")
        return names.index(name)

    def check_new_task(self, name, backbone=None, what: str = "models") -> str:
        """`name` if a new task may take it, and (if given) `backbone` is the bank's."""
        check_task_name(name, self.task_names)
        if backbone is not None and not same_backbone(backbone, self.backbone):
            raise ValueError(
                f"Task {name!r} was trained on another backbone. Add only {what} of the bank's backbone."
            )
        return name

    # The method that adds a trained model, for the error of an empty bank.
    adders = "add_task"

    def check_has_tasks(self):
        if not self.task_names:
            raise ValueError(f"The bank has no tasks. Add one with {self.adders} or add_prompt_file.")

    def checked_task_ids(self, task_id):
        """`task_id` as int32 once it holds one id per row in [0, number of tasks)."""
        if task_id is None:
            raise ValueError(f"A `{type(self).__name__}` needs `task_id`, each row's task.")
        self.check_has_tasks()
        return check_task_ids(task_id, len(self.task_names))

    def bank_backbone_fingerprint(self) -> str:
        """The frozen backbone's fingerprint, hashed once per bank rather than once per file."""
        if getattr(self, "_fingerprint_cache", None) is None:
            self._fingerprint_cache = backbone_fingerprint(self.backbone)
        return self._fingerprint_cache
