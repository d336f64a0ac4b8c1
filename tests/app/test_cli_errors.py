"""Bad input through the command line: every user error is one line on stderr
and a non-zero exit, never a traceback, and a refused `train` leaves its
output directory as it was.

Each case runs `main()` in this process (fast); a few also run the real
command in a subprocess, where TensorFlow's startup lines would show, and
under `-m slow` every refused `train` does.
"""

import io
import json
import os
import subprocess
import sys

import pytest
from tiny_files import save_tiny_preset

from tf_prompt_tuning.app.cli import main
from tf_prompt_tuning.files._io import DirectoryLock

ROWS = ["text,label"] + [f"the movie was {w},{l}" for w, l in [("good", "pos"), ("bad", "neg")] * 20]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    preset = save_tiny_preset(root / "preset")
    data = root / "data.csv"
    data.write_text("\n".join(ROWS) + "\n")
    out = root / "run"
    code = main(["train", "--backbone", preset, "--data", str(data), "--epochs", "1", "--num-tokens", "2",
                 "--max-length", "16", "--no-baseline", "--output-dir", str(out)])  # fmt: skip
    assert code == 0
    return {"root": root, "preset": preset, "data": str(data), "prompt": str(out / "prompt.safetensors")}


@pytest.fixture
def cli(capsys, monkeypatch):
    """Runs the command line's `main` in this process, as a CompletedProcess."""

    def run(*argv, stdin=""):
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as exit:  # argparse, or a message given to SystemExit
            code = exit.code
            if isinstance(code, str):
                print(code, file=sys.stderr)
                code = 1
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(argv, code, out, err)

    return run


def _cli(*argv, stdin=""):
    """The real command, in a subprocess."""
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


def test_the_real_command_prints_one_line_tensorflow_startup_included(files, tmp_path):
    _assert_one_line_error(_cli("predict", "--prompt", files["prompt"], stdin=""), "No texts to classify")
    out = tmp_path / "out"
    _assert_one_line_error(
        _cli("train", "--backbone", files["preset"], "--data", files["data"], "--max-length", "2",
             "--num-tokens", "2", "--no-baseline", "--output-dir", str(out)),
        "`sequence_length` must leave room for text after the 2 special tokens",
    )  # fmt: skip
    assert not out.exists()


def test_predict_with_an_edited_prompt_file(files, cli):
    edited = _edited_copy(files["prompt"], files["root"] / "edited.safetensors",
                          lambda m, h: m.update(label_names=m["label_names"][::-1]))  # fmt: skip
    _assert_one_line_error(cli("predict", "--prompt", edited, "great"), "was changed after it was written")


def test_predict_with_a_metadata_field_of_the_wrong_type(files, cli):
    def edit(metadata, header):
        metadata["num_classes"] = "2"
        del header["tf_prompt_tuning_sha256"]  # as a file of release 0.1 would be

    edited = _edited_copy(files["prompt"], files["root"] / "wrong_type.safetensors", edit)
    _assert_one_line_error(cli("predict", "--prompt", edited, "great"), "invalid metadata field 'num_classes'")


def test_export_onto_an_existing_file_or_directory(files, cli):
    root = files["root"]
    (root / "a_file").write_text("keep me")
    _assert_one_line_error(cli("export", "--prompt", files["prompt"], "--output", str(root / "a_file")),
                           "is a file. Choose a new path, or pass overwrite=True (--overwrite)")  # fmt: skip
    assert (root / "a_file").read_text() == "keep me"
    old = root / "old_model"
    old.mkdir()
    (old / "stale.txt").write_text("old")
    _assert_one_line_error(cli("export", "--prompt", files["prompt"], "--output", str(old)),
                           "is a non-empty directory")  # fmt: skip
    assert _tree(old) == ["stale.txt"]
    result = cli("export", "--prompt", files["prompt"], "--output", str(old), "--overwrite")
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
        (["--deep-init", "hidden_states"], "`deep_initializer` (--deep-initializer) applies to --method deep. Received: deep_initializer='hidden_states' with method='prompt'"),
        (["--learning-rate", "inf"], "`learning_rate` must be a finite number above 0. Received: learning_rate=inf."),
        (["--learning-rate", "nan"], "`learning_rate` must be a finite number above 0. Received: learning_rate=nan."),
        (["--seed", "-1"], "`seed` must be an integer in [0, 2**32), as Keras seeds are. Received: seed=-1"),
    ],
    ids=["max_length_too_small", "too_long", "prompt_too_long", "no_prompt", "epochs", "eval_every", "data", "prefix_init",
         "deep_init", "learning_rate_inf", "learning_rate_nan", "seed"],
)  # fmt: skip
@pytest.mark.parametrize("in_subprocess", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["main", "command"])
def test_refused_train_leaves_the_output_directory_as_it_was(files, tmp_path, args, message, cli, in_subprocess):
    _assert_refused_train(_cli if in_subprocess else cli, files, tmp_path, args, message)


_GOOD_ROWS = "".join(f"the movie was {w}\t{l}\n" for w, l in [("good", "pos"), ("bad", "neg")] * 5)
BAD_DATA = [
    ("tiny.csv", "text,label\na,pos\nb,neg\nc,pos\nd,neg\n",
     "tiny.csv: 4 examples are too few for a 80%/10%/10% train/dev/test split: the dev and test splits would be empty. Use at least 6 examples."),
    ("tab.tsv", "text\tlabel\n\"a quoted start\tneg\n" + _GOOD_ROWS + "dull\tslow\tneg\n" + _GOOD_ROWS,
     "tab.tsv, line 13: expected 2 fields (text, label), found 3. TSV has no quoting"),
    ("empty_label.csv", "text,label\n" + _GOOD_ROWS.replace("\t", ",") + "dull, \n",
     "empty_label.csv, line 12: the label ('label') is empty. Give every row a label."),
    ("null_text.jsonl", '{"text": "good", "label": "pos"}\n{"text": null, "label": "neg"}\n',
     "null_text.jsonl, line 2: 'text' (the text) must be a JSON string. Received: null."),
    ("float_label.jsonl", '{"text": "good", "label": 1}\n{"text": "bad", "label": 1.0}\n',
     "float_label.jsonl, line 2: 'label' (the label) must be a JSON string or integer. Received: 1.0."),
    ("unclosed.csv", 'text,label\ngood,pos\n"bad,neg\n' + _GOOD_ROWS.replace("\t", ","),
     "unclosed.csv, line 3: unexpected end of data (in the row that starts here)."),
]  # fmt: skip


@pytest.mark.parametrize("filename, content, message", BAD_DATA, ids=[case[0].replace(".", "_") for case in BAD_DATA])
@pytest.mark.parametrize("in_subprocess", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["main", "command"])
def test_refused_data_leaves_the_output_directory_as_it_was(files, tmp_path, filename, content, message, cli,
                                                             in_subprocess):  # fmt: skip
    data = tmp_path / filename
    data.write_text(content, encoding="utf-8")
    _assert_refused_train(_cli if in_subprocess else cli, files, tmp_path, ["--data", str(data)], message)


def _assert_refused_train(run, files, tmp_path, args, message):
    """`train` with `args` prints `message` in one line and leaves a new and an existing output directory as they were."""
    fresh = tmp_path / "fresh"
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    for out in (fresh, existing):
        before = _tree(out) if out.exists() else None
        argv = ["train", "--backbone", files["preset"], "--data", files["data"], "--max-length", "16",
                "--num-tokens", "2", "--no-baseline", "--output-dir", str(out), *args]  # fmt: skip
        _assert_one_line_error(run(*argv), message)
        assert (_tree(out) if out.exists() else None) == before


def test_a_second_train_into_a_busy_directory_is_refused(files, tmp_path, cli):
    out = tmp_path / "busy"
    out.mkdir()
    with DirectoryLock(str(out), "training run"):  # as a running `train` holds it
        result = cli("train", "--backbone", files["preset"], "--data", files["data"], "--max-length", "16",
                      "--num-tokens", "2", "--no-baseline", "--output-dir", str(out))  # fmt: skip
    _assert_one_line_error(result, "is in use by another training run")
    assert _tree(out) == []


def test_a_killed_run_leaves_no_stale_lock(tmp_path):
    import tf_prompt_tuning.files._io

    # The module alone (no TensorFlow to import): a quick child process.
    code = (
        "import importlib.util, sys, time\n"
        "spec = importlib.util.spec_from_file_location('io_', sys.argv[2]); io_ = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(io_)\n"
        "with io_.DirectoryLock(sys.argv[1], 'training run'):\n"
        "    print('locked', flush=True); time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), tf_prompt_tuning.files._io.__file__],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(ValueError, match="is in use by another training run"):
        with DirectoryLock(str(tmp_path), "training run"):
            pass
    holder.kill()  # SIGKILL: no cleanup runs
    holder.wait()
    with DirectoryLock(str(tmp_path), "training run"):
        pass


def test_usage_errors_are_one_line(files, cli):
    _assert_one_line_error(cli("train", "--epochs", "two"), "argument --epochs: invalid int value: 'two'")
    _assert_one_line_error(cli("dmeo"), "invalid choice: 'dmeo'")


def test_verbose_shows_the_traceback(files, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(ValueError, match="No texts to classify"):  # raised, so Python prints the traceback
        main(["predict", "--prompt", files["prompt"], "--verbose"])
