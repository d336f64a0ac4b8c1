"""Prompt mechanisms: each one class in its own module, registered here.

A mechanism says how a task's trainable vectors enter the frozen backbone
(see `PromptMechanism`). Registering one is a line in `MECHANISMS`; its key
is the job's and the command line's `--method`.
"""

from __future__ import annotations

from tf_prompt_tuning import _checks
from tf_prompt_tuning._checks import check_choice
from tf_prompt_tuning.mechanisms.encoded_prompt import EncodedPrompt
from tf_prompt_tuning.mechanisms.hidden_state_prompts import HiddenStatePrompts
from tf_prompt_tuning.mechanisms.input_prompt import InputPrompt
from tf_prompt_tuning.mechanisms.key_value_prefixes import KeyValuePrefixes
from tf_prompt_tuning.mechanisms.prompt_mechanism import PromptMechanism

__all__ = [
    "EncodedPrompt", "HiddenStatePrompts", "InputPrompt", "KeyValuePrefixes", "MECHANISMS", "PromptMechanism",
    "check_deep", "get_mechanism", "mechanism_for",
]

MECHANISMS: dict[str, type[PromptMechanism]] = {
    cls.name: cls for cls in (InputPrompt, HiddenStatePrompts, KeyValuePrefixes, EncodedPrompt)
}


def check_deep(deep):
    """`deep` as False or a registered mechanism's spelling (`True`: "hidden")."""
    return _checks.check_deep(deep, tuple(dict.fromkeys(cls.deep for cls in MECHANISMS.values() if cls.deep)))


def get_mechanism(name: str, prompt_encoder="mlp") -> PromptMechanism:
    """The mechanism registered as `name` (`prompt_encoder` for those that have one)."""
    return MECHANISMS[check_choice("method", name, tuple(MECHANISMS))](prompt_encoder=prompt_encoder)


def mechanism_for(deep=False, prompt_encoder=None) -> PromptMechanism:
    """The mechanism `PromptTextClassifier(deep=..., prompt_encoder=...)` asks for."""
    deep = check_deep(deep)
    if deep and prompt_encoder:
        raise ValueError(
            f"Choose deep prompts or a prompt encoder, not both. Received: deep={deep!r}, "
            f"prompt_encoder={prompt_encoder!r}."
        )
    (cls,) = [cls for cls in MECHANISMS.values() if cls.matches(deep, prompt_encoder)]
    return cls(prompt_encoder=prompt_encoder)
