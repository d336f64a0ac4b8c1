"""Files: atomic writes (a reader sees the old file or the whole new one,
never half), a directory lock, the cache directory, and SIGTERM turned into
an exception so that temporary files are removed when a run is stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading


def current_umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_atomically(path: str, data: bytes) -> str:
    """Writes `data` to a temporary file beside `path`, then renames it over `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            # mkstemp makes the file private (0600); give it the usual permissions.
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


class DirectoryLock:
    """An exclusive lock on a directory, held while a run writes there.

    `fcntl.flock` on the directory itself: nothing is written, and the
    kernel releases the lock when the process ends, however it ends, so a
    killed run leaves no stale lock.
    """

    def __init__(self, directory: str, what: str):
        self.directory = directory
        self.what = what
        self._fd = None

    def __enter__(self):
        import fcntl

        self._fd = os.open(self.directory, os.O_RDONLY)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise ValueError(
                f"{self.directory!r} is in use by another {self.what}. Wait for it to "
                "finish, or choose another directory."
            ) from None
        return self

    def __exit__(self, *exc):
        os.close(self._fd)  # releases the lock


def cache_dir() -> str:
    """`$TF_PROMPT_TUNING_CACHE`, else `$XDG_CACHE_HOME/tf_prompt_tuning` (~/.cache)."""
    if os.environ.get("TF_PROMPT_TUNING_CACHE"):
        return os.environ["TF_PROMPT_TUNING_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tf_prompt_tuning")


class Terminated(BaseException):
    """SIGTERM, raised where the main thread is (see `sigterm_raises`).

    A `BaseException`, as `KeyboardInterrupt` is: an `except Exception`
    meant for errors does not swallow it.
    """


def _raise_terminated(signum, frame):
    raise Terminated(f"stopped by signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def sigterm_raises():
    """Within it, SIGTERM raises `Terminated` in the main thread instead of
    ending the process at once, so `finally` blocks and context managers run
    (temporary files and directories are removed) as on Ctrl-C.

    Only the main thread can set a signal handler; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
