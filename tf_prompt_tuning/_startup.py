"""A quiet TensorFlow import for the command line.

While it is imported, TensorFlow's native libraries write CUDA probing and
CPU-feature lines straight to the process's stderr, before any logging
setting applies to them; on a CPU machine a user takes them for failures.
Started as the `tf-prompt-tuning` command (or `python -m tf_prompt_tuning`)
without `--verbose`, the import runs with file descriptor 2 pointed at
/dev/null, and TensorFlow's later logs are limited to errors. A library
user's import is left as it is.
"""

from __future__ import annotations

import contextlib
import os
import sys

COMMAND = "tf-prompt-tuning"


def started_as_command() -> bool:
    """Whether this process is `tf-prompt-tuning ...` or `python -m tf_prompt_tuning ...`."""
    if sys.argv and os.path.basename(sys.argv[0]) == COMMAND:
        return True
    argv = getattr(sys, "orig_argv", [])
    return any(a == "-m" and b == __package__ for a, b in zip(argv, argv[1:]))


@contextlib.contextmanager
def _stderr_to_devnull():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow():
    """Imports TensorFlow, quietly when started as the command without --verbose."""
    if "tensorflow" in sys.modules or not started_as_command() or "--verbose" in sys.argv:
        import tensorflow  # noqa: F401
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    with _stderr_to_devnull():
        import tensorflow  # noqa: F401
