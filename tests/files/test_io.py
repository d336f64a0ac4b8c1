import os
import signal
import stat
import threading
import time

import pytest

from tf_prompt_tuning.files._io import Terminated, sigterm_raises, write_atomically


def test_writes_whole_file_with_usual_permissions(tmp_path):
    path = tmp_path / "sub" / "out.bin"
    write_atomically(str(path), b"abc")
    assert path.read_bytes() == b"abc"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(str(path), b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


@pytest.fixture
def sigterm_recorded():
    """SIGTERM recorded, not fatal, while a test runs: a broken handler fails
    the test instead of ending pytest."""
    received = []
    handler = lambda signum, frame: received.append(signum)  # noqa: E731
    previous = signal.signal(signal.SIGTERM, handler)
    yield handler, received
    signal.signal(signal.SIGTERM, previous)


def _sigterm_to_self(received):
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(1000):  # a handler that raises ends this at once, the recording one within ms
        if received:
            return
        time.sleep(0.01)


def test_sigterm_raises_within_and_is_restored_after(sigterm_recorded):
    handler, received = sigterm_recorded
    with pytest.raises(Terminated, match="stopped by signal SIGTERM"):
        with sigterm_raises():
            _sigterm_to_self(received)
    assert received == [] and signal.getsignal(signal.SIGTERM) is handler
    _sigterm_to_self(received)
    assert received == [signal.SIGTERM]


def test_sigterm_raises_is_a_no_op_outside_the_main_thread(sigterm_recorded):
    handler, _ = sigterm_recorded
    errors = []

    def run():
        try:
            with sigterm_raises():  # signal.signal would raise ValueError in this thread
                pass
        except BaseException as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert errors == [] and signal.getsignal(signal.SIGTERM) is handler


def test_sigterm_during_an_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, sigterm_recorded):
    _, received = sigterm_recorded
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    real_fsync = os.fsync

    def fsync_then_sigterm(fd):  # half-way: the temporary file is written, not yet renamed
        real_fsync(fd)
        _sigterm_to_self(received)

    monkeypatch.setattr(os, "fsync", fsync_then_sigterm)
    with pytest.raises(Terminated), sigterm_raises():
        write_atomically(str(path), b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
