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


STOPPED_EXPORT = r"""
import os, signal, sys, time
import keras
from tf_prompt_tuning.app.cli import main

archive_class = type(keras.export.ExportArchive())  # the backend's class
write_out = archive_class.write_out

def write_out_then_sigterm(self, path, **kwargs):
    write_out(self, path, **kwargs)  # the SavedModel is whole in its temporary directory
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(60)  # a handler that raises ends this; without one the process dies here

archive_class.write_out = write_out_then_sigterm
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_during_export_removes_the_temporary_saved_model(tmp_path):
    from tiny_files import save_tiny_preset

    from tf_prompt_tuning import PromptTextClassifier, load_backbone, save_prompts

    preset = save_tiny_preset(tmp_path / "preset")
    backbone, _ = load_backbone(preset)
    prompt = save_prompts(PromptTextClassifier(backbone, 2, num_tokens=2), str(tmp_path / "prompt.safetensors"))
    out = tmp_path / "out"
    out.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", STOPPED_EXPORT, "export", "--prompt", prompt, "--backbone", preset,
         "--max-length", "16", "--output", str(out / "sm")],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )  # fmt: skip
    assert result.returncode == 143, result.stderr[-3000:]  # 128 + SIGTERM, as a shell reports it
    assert "tf-prompt-tuning export: terminated" in result.stderr
    assert os.listdir(out) == []  # no .tmp-saved-model-*, and no half model
