"""The quiet TensorFlow import: only for the command, never for a library user."""

import subprocess
import sys

from tf_prompt_tuning import _startup


def test_a_library_import_is_not_the_command(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["python", "train.py"])
    monkeypatch.setattr(sys, "orig_argv", ["python", "train.py"], raising=False)
    assert not _startup.started_as_command()


def test_the_command_and_python_m_are(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/tf-prompt-tuning", "train"])
    assert _startup.started_as_command()
    monkeypatch.setattr(sys, "argv", ["-m"])
    monkeypatch.setattr(sys, "orig_argv", ["python", "-m", "tf_prompt_tuning", "train"], raising=False)
    assert _startup.started_as_command()


def test_the_command_imports_tensorflow_without_a_line_on_stderr():
    code = "import sys; sys.argv = ['tf-prompt-tuning']; import tf_prompt_tuning"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == ""
