"""Files: atomic writes (a reader sees the old file or the whole new one,
never half), a directory lock, and the cache directory."""

from __future__ import annotations

import os
import tempfile


def write_atomically(path: str, data: bytes) -> str:
    """Writes `data` to a temporary file beside `path`, then renames it over `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    umask = os.umask(0)
    os.umask(umask)
    try:
        # mkstemp makes the file private (0600); give it the usual permissions.
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
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
