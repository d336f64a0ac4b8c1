"""`Setting`: a task's or a job's setting, declared once.

A declaration (name, default, allowed values, help, whether prompt files
record it) drives everything that used to repeat it: the constructor's check
(`Setting.check`), `get_config`, the prompt file's metadata and its
validation on load, the job configs' fields and the command line's flags.
Adding a setting to a task is then its line in the task's `SETTINGS` plus
its use.

Example:

>>> placement = Setting("placement", "prepend", choices=("prepend", "append"), in_file=True)
>>> placement.check("append")
'append'
>>> placement.check("middle")
Traceback (most recent call last):
...
ValueError: `placement` must be one of ('prepend', 'append'). Received: placement='middle'.
>>> placement.valid("append"), placement.expected()
(True, '"prepend" or "append"')
"""

from __future__ import annotations

import argparse
import dataclasses
import numbers
from collections.abc import Callable
from typing import Any

from tf_prompt_tuning._checks import check_choice, check_positive_float, check_positive_int

# The settings a prompt file of each kind records (`in_file`), filled by the
# task classes as they are defined (`PromptTask.__init_subclass__`); a file's
# fields are checked against them before any is used.
FILE_SETTINGS: dict[str, tuple[Setting, ...]] = {}
# The task class that reads each kind of prompt file, for the error that names it.
FILE_TASKS: dict[str, str] = {}


def alternatives(names) -> str:
    """`"a", "b" or "c"`, as errors spell a setting's values."""
    quoted = ["null" if name is None else f'"{name}"' if isinstance(name, str) else str(name).lower() for name in names]
    return " or ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 2 else quoted)


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting of a task model or a job.

    Args:
        name: the argument's name (the CLI's flag is `--name-with-dashes`).
        default: its default.
        help: one line for `--help`.
        choices: the allowed values, or a function returning them (a
            registry read when checked).
        type: `int`, `float`, `str` or `bool`, for the checks and the CLI.
        minimum: the least allowed value of a number.
        optional: `None` is allowed too.
        in_file: prompt files record it, and rebuild the task from it.
        in_config: `get_config` records it.
        check_fn: a function `value -> value` that raises naming the
            argument, instead of the checks the fields above imply.
        expected: how a prompt file's error describes the allowed values,
            where `choices`/`type` do not say it.
        flags: the CLI's spellings, the first the canonical one (default:
            `--name-with-dashes`); later ones are older spellings that keep working.
        hint: said after the error of a value not among `choices`.
    """

    name: str
    default: Any = None
    help: str = ""
    choices: tuple | Callable[[], tuple] | None = None
    type: type | None = None
    minimum: float | None = None
    optional: bool = False
    in_file: bool = False
    in_config: bool = True
    check_fn: Callable[[Any], Any] | None = None
    expected_text: str | Callable[[], str] | None = None
    flags: tuple[str, ...] = ()
    hint: str = ""

    def allowed(self) -> tuple | None:
        return self.choices() if callable(self.choices) else self.choices

    def check(self, value):
        """`value` if allowed (normalized by `check_fn`), else an error naming the setting."""
        if value is None and self.optional:
            return value
        if self.check_fn is not None:
            return self.check_fn(value)
        if self.allowed() is not None:
            return check_choice(self.name, value, self.allowed(), self.hint)
        if self.type is float:
            return check_positive_float(self.name, value)
        if self.type is int and self.minimum == 1:
            return check_positive_int(self.name, value)
        if self.type is int:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(
                    f"`{self.name}` must be an integer. Received: {self.name}={value!r} (of type {type(value).__name__})."
                )
            if self.minimum is not None and value < self.minimum:
                raise ValueError(
                    f"`{self.name}` must be an integer >= {self.minimum}. Received: {self.name}={value}."
                )
            return int(value)
        if self.type is bool and not isinstance(value, bool):
            raise TypeError(f"`{self.name}` must be True or False. Received: {self.name}={value!r}.")
        if self.type is str and not isinstance(value, str):
            raise TypeError(f"`{self.name}` must be a string. Received: {self.name}={value!r}.")
        return value

    def valid(self, value) -> bool:
        """Whether `value` passes `check` (for values read from files; a
        setting with nothing declared to check is checked where it is used)."""
        if self.type is int and (isinstance(value, bool) or not isinstance(value, int)):
            return value is None and self.optional  # JSON: 2.0 is not an integer
        try:
            self.check(value)
        except (TypeError, ValueError):
            return False
        return True

    def expected(self) -> str:
        """The allowed values, as a prompt file's error says them."""
        if self.expected_text is not None:
            return self.expected_text() if callable(self.expected_text) else self.expected_text
        if self.allowed() is not None:
            return alternatives((None, *self.allowed()) if self.optional else self.allowed())
        if self.type is int:
            return "a positive integer" if self.minimum == 1 else f"an integer >= {self.minimum}"
        if self.type is float:
            return "a finite number above 0"
        if self.type is bool:
            return "true or false"
        return f"a {getattr(self.type, '__name__', 'value')}"

    def field(self):
        """A dataclass field for a job config, with the setting as its metadata."""
        return dataclasses.field(default=self.default, metadata={"setting": self})

    def add_argument(self, parser: argparse.ArgumentParser, default=dataclasses.MISSING):
        """Adds the setting's flag (and its older spellings) to `parser`."""
        flags = self.flags or ("--" + self.name.replace("_", "-"),)
        default = self.default if default is dataclasses.MISSING else default
        kwargs = {"dest": self.name, "default": default, "help": self.help or None}
        if self.type is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **kwargs)
            return
        allowed = self.allowed()
        if allowed is not None and all(isinstance(c, str) for c in allowed):
            kwargs["choices"] = allowed
        if self.type in (int, float):
            kwargs["type"] = self.type
        parser.add_argument(*flags, **kwargs)


def config_settings(config_class) -> list[Setting]:
    """The settings a job config's fields declare (`Setting.field`), in order."""
    return [f.metadata["setting"] for f in dataclasses.fields(config_class) if "setting" in f.metadata]


def add_config_arguments(parser: argparse.ArgumentParser, config_class, skip=()):
    """Adds a flag for each setting of `config_class` (a dataclass of `Setting.field`s)."""
    for setting in config_settings(config_class):
        if setting.name not in skip:
            setting.add_argument(parser)


def config_from_arguments(config_class, args, **overrides):
    """`config_class` built from parsed `args` (its settings' values), then `overrides`."""
    values = {s.name: getattr(args, s.name) for s in config_settings(config_class) if hasattr(args, s.name)}
    return config_class(**{**values, **overrides})


def check_config(config):
    """Checks every setting of a job config (`__post_init__`), before it writes anything."""
    for setting in config_settings(type(config)):
        object.__setattr__(config, setting.name, setting.check(getattr(config, setting.name)))
