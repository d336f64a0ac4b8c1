"""Bad input through the real command line, in a subprocess: every user error
is one line on stderr and a non-zero exit, never a traceback, and a refused
`train` leaves its output directory as it was."""

import json
import os
import subprocess
import sys

import pytest
from test_classification_job import _save_tiny_preset

from tf_prompt_tuning._io import DirectoryLock

ROWS = ["text,label"] + [f"the movie was {w},{l}" for w, l in [("good", "pos"), ("bad", "neg")] * 20]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    preset = _save_tiny_preset(root / "preset")
    data = root / "data.csv"
    data.write_text("\n".join(ROWS) + "\n")
    out = root / "run"
    result = _cli("train", "--backbone", preset, "--data", str(data), "--epochs", "1", "--num-tokens", "2",
                  "--max-length", "16", "--no-baseline", "--output-dir", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    return {"root": root, "preset": preset, "data": str(data), "prompt": str(out / "prompt.safetensors")}


def _cli(*argv, stdin=""):
    return subprocess.run(
        [sys.executable, "-m", "tf_prompt_tuning", *argv], input=stdin, capture_output=True, text=True,
        env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},  # the command quiets TF itself
        timeout=600,
    )  # fmt: skip


def _assert_one_line_error(result, message):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert len(lines) == 1, result.stderr  # TensorFlow's startup lines included
    assert message in lines[0], lines[0]


def _tree(path):
    return sorted(os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs)


def _edited_copy(path, destination, edit):
    from safetensors import safe_open
    from safetensors.numpy import load, save

    with safe_open(path, "np") as f:
        header = dict(f.metadata())
    metadata = json.loads(header["tf_prompt_tuning"])
    edit(metadata, header)
    header["tf_prompt_tuning"] = json.dumps(metadata)
    destination.write_bytes(save(load(open(path, "rb").read()), metadata=header))
    return str(destination)


def test_predict_with_empty_standard_input(files):
    _assert_one_line_error(_cli("predict", "--prompt", files["prompt"], stdin=""), "No texts to classify")


def test_predict_with_an_edited_prompt_file(files):
    edited = _edited_copy(files["prompt"], files["root"] / "edited.safetensors",
                          lambda m, h: m.update(label_names=m["label_names"][::-1]))  # fmt: skip
    _assert_one_line_error(_cli("predict", "--prompt", edited, "great"), "was changed after it was written")


def test_predict_with_a_metadata_field_of_the_wrong_type(files):
    def edit(metadata, header):
        metadata["num_classes"] = "2"
        del header["tf_prompt_tuning_sha256"]  # as a file of release 0.1 would be

    edited = _edited_copy(files["prompt"], files["root"] / "wrong_type.safetensors", edit)
    _assert_one_line_error(_cli("predict", "--prompt", edited, "great"), "invalid metadata field 'num_classes'")


def test_export_onto_an_existing_file_or_directory(files):
    root = files["root"]
    (root / "a_file").write_text("keep me")
    _assert_one_line_error(_cli("export", "--prompt", files["prompt"], "--output", str(root / "a_file")),
                           "is a file. Choose a new path, or pass overwrite=True (--overwrite)")  # fmt: skip
    assert (root / "a_file").read_text() == "keep me"
    old = root / "old_model"
    old.mkdir()
    (old / "stale.txt").write_text("old")
    _assert_one_line_error(_cli("export", "--prompt", files["prompt"], "--output", str(old)),
                           "is a non-empty directory")  # fmt: skip
    assert _tree(old) == ["stale.txt"]
    result = _cli("export", "--prompt", files["prompt"], "--output", str(old), "--overwrite")
    assert result.returncode == 0, result.stderr
    assert "stale.txt" not in _tree(old) and "saved_model.pb" in _tree(old)  # replaced, not mixed
    assert not [p for p in os.listdir(root) if p.startswith((".tmp-", ".old-"))]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-length", "2"], "`sequence_length` must leave room for text after the 2 special tokens: use at least 3"),
        (["--max-length", "31", "--num-tokens", "4"], "Use a sequence length of at most 28 or a prompt of at most 1 tokens"),
        (["--num-tokens", "40"], "Use a prompt of at most 16 tokens"),
        (["--num-tokens", "0"], "`num_tokens` must be a positive integer. Received: num_tokens=0"),
        (["--epochs", "-1"], "`epochs` must be a positive integer"),
        (["--eval-every", "0"], "`eval_every` must be a positive integer"),
        (["--data", "no/such.csv"], "Data file 'no/such.csv' does not exist"),
        (["--method", "prefix", "--init", "vocab"], "`method='prefix'` starts its keys and values uniformly"),
    ],
    ids=["max_length_too_small", "too_long", "prompt_too_long", "no_prompt", "epochs", "eval_every", "data", "prefix_init"],
)  # fmt: skip
def test_refused_train_leaves_the_output_directory_as_it_was(files, tmp_path, args, message):
    fresh = tmp_path / "fresh"
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    for out in (fresh, existing):
        before = _tree(out) if out.exists() else None
        argv = ["train", "--backbone", files["preset"], "--data", files["data"], "--max-length", "16",
                "--num-tokens", "2", "--no-baseline", "--output-dir", str(out), *args]  # fmt: skip
        _assert_one_line_error(_cli(*argv), message)
        assert (_tree(out) if out.exists() else None) == before


def test_a_second_train_into_a_busy_directory_is_refused(files, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    with DirectoryLock(str(out), "training run"):  # as a running `train` holds it
        result = _cli("train", "--backbone", files["preset"], "--data", files["data"], "--max-length", "16",
                      "--num-tokens", "2", "--no-baseline", "--output-dir", str(out))  # fmt: skip
    _assert_one_line_error(result, "is in use by another training run")
    assert _tree(out) == []


def test_a_killed_run_leaves_no_stale_lock(tmp_path):
    code = (
        "import sys, time; from tf_prompt_tuning._io import DirectoryLock\n"
        "with DirectoryLock(sys.argv[1], 'training run'):\n"
        "    print('locked', flush=True); time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(ValueError, match="is in use by another training run"):
        with DirectoryLock(str(tmp_path), "training run"):
            pass
    holder.kill()  # SIGKILL: no cleanup runs
    holder.wait()
    with DirectoryLock(str(tmp_path), "training run"):
        pass


def test_usage_errors_are_one_line(files):
    _assert_one_line_error(_cli("train", "--epochs", "two"), "argument --epochs: invalid int value: 'two'")
    _assert_one_line_error(_cli("dmeo"), "invalid choice: 'dmeo'")


def test_verbose_shows_the_traceback(files):
    result = _cli("predict", "--prompt", files["prompt"], "--verbose", stdin="")
    assert result.returncode != 0 and "Traceback" in result.stderr and "No texts to classify" in result.stderr
