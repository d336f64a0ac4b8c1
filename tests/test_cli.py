import os
import subprocess
import sys

import pytest

from tf_prompt_tuning.app.cli import main


def test_demo_command(tmp_path, capsys):
    code = main(["demo", "--steps", "300", "--log-every", "100", "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "frozen weights unchanged: True" in out
    assert "step   100" in out
    assert (tmp_path / "loss.png").exists()


def test_module_entry_point_shows_help():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "tf_prompt_tuning", "--help"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0
    assert "demo" in result.stdout


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as raised:
        main(["dmeo"])
    assert raised.value.code == 2
    assert "invalid choice: 'dmeo'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "--prompt", "no/such.safetensors"], "Prompt file 'no/such.safetensors' does not exist"),
        (["train", "--data", "no/such.csv"], "Data file 'no/such.csv' does not exist"),
    ],
)
def test_user_errors_are_messages_not_tracebacks(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
