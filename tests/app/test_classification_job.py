"""The main job end to end, on a tiny random KerasHub backbone saved as a preset."""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_gpt2_lm
from tiny_files import WORDS, save_tiny_preset

from tf_prompt_tuning.app.classification_job import (
    TrainConfig,
    load_splits,
    load_task,
    predict_texts,
    run_training,
)
from tf_prompt_tuning.app.cli import main
from tf_prompt_tuning.app.datasets import DataError
from tf_prompt_tuning.backbones.prompted_backbone import prompt_hidden_states
from tf_prompt_tuning.models.prompt_text_classifier import PromptTextClassifier
from tf_prompt_tuning.preprocessing.text_pipeline import make_text_dataset


@pytest.fixture(scope="module")
def preset_dir(tmp_path_factory):
    return save_tiny_preset(tmp_path_factory.mktemp("tiny_preset"))


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    rows = ["text,label"]
    for i in range(160):
        label = "positive" if i % 2 else "negative"
        word = rng.choice(WORDS[:3] if i % 2 else WORDS[3:6])
        noun = rng.choice(["movie", "plot", "acting"])
        rows.append(f"the {noun} was {word},{label}")
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def _config(preset_dir, data_file, output_dir, **kwargs):
    settings = dict(
        backbone=preset_dir, data=data_file, num_tokens=4, initializer="labels", epochs=3,
        batch_size=16, max_length=16, learning_rate=0.05, eval_every=5, output_dir=str(output_dir),
    )  # fmt: skip
    return TrainConfig(**{**settings, **kwargs})


@pytest.fixture(scope="module")
def trained(preset_dir, data_file, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("run")
    metrics = run_training(_config(preset_dir, data_file, output_dir), print_fn=lambda *a: None)
    return metrics, output_dir


def test_writes_prompt_metrics_and_plot(trained):
    metrics, output_dir = trained
    assert {p.name for p in output_dir.iterdir()} == {"prompt.safetensors", "metrics.json", "curves.png"}
    assert json.loads((output_dir / "metrics.json").read_text()) == metrics
    assert metrics["label_names"] == ["negative", "positive"]
    assert metrics["split_sizes"] == [128, 16, 16]
    assert set(metrics["results"]) == {"head only", "prompt + head"}
    prompt = metrics["results"]["prompt + head"]
    assert prompt["trainable_params"] == 4 * 16 + 16 * 2 + 2
    assert len(prompt["dev_accuracy"]) == 3
    # 8 steps an epoch: dev every 5 steps and after each epoch, so the plot shows a curve.
    assert [step for step, _ in prompt["dev_curve"]] == [5, 8, 10, 15, 16, 20, 24]
    assert [acc for step, acc in prompt["dev_curve"] if step % 8 == 0] == prompt["dev_accuracy"]
    assert prompt["epoch_losses"][-1] < prompt["epoch_losses"][0]
    assert 0 < metrics["prompt_file_bytes"] < 4096


def test_backbone_is_bit_identical_after_training(preset_dir, data_file, tmp_path):
    from tf_prompt_tuning.backbones.backbone import load_backbone

    backbone, tokenizer = load_backbone(preset_dir)
    before = [keras.ops.convert_to_numpy(v).copy() for v in backbone.weights]
    run_training(
        _config(preset_dir, data_file, tmp_path, epochs=1, baseline=False),
        print_fn=lambda *a: None, backbone_and_tokenizer=(backbone, tokenizer),
    )  # fmt: skip
    for value, variable in zip(before, backbone.weights):
        np.testing.assert_array_equal(value, keras.ops.convert_to_numpy(variable))


def _test_split(data_file):
    from tf_prompt_tuning.app.datasets import load_text_file

    return load_text_file(data_file).split(seed=0)[2]


def test_load_task_rebuilds_the_trained_classifier(trained, data_file):
    from tf_prompt_tuning.training.evaluation import evaluate

    metrics, output_dir = trained
    model, tokenizer, metadata = load_task(str(output_dir / "prompt.safetensors"))
    assert metadata["label_names"] == model.label_names == ["negative", "positive"]
    # The rebuilt model scores the test split exactly as the trained one did;
    # an untrained (or wrongly restored) one would not.
    dataset = make_text_dataset(_test_split(data_file), tokenizer=tokenizer, sequence_length=16, batch_size=16)
    result = evaluate(model, dataset)
    expected = metrics["results"]["prompt + head"]
    assert result["accuracy"] == expected["test_accuracy"] > 0.5
    assert result["loss"] == pytest.approx(expected["test_loss"], abs=1e-6)
    untrained = PromptTextClassifier(model.backbone, 2, num_tokens=4)
    assert evaluate(untrained, dataset)["loss"] != pytest.approx(expected["test_loss"], abs=1e-3)
    rows = predict_texts(model, tokenizer, ["the movie was great", "the plot was awful"],
                         sequence_length=16, label_names=metadata["label_names"])  # fmt: skip
    assert [r["text"] for r in rows] == ["the movie was great", "the plot was awful"]
    for row in rows:
        assert row["probability"] == max(row["probabilities"].values()) > 0.5


def test_cli_evaluate_and_predict(trained, data_file, capsys):
    metrics, output_dir = trained
    prompt = str(output_dir / "prompt.safetensors")
    assert main(["evaluate", "--prompt", prompt]) == 0  # the held-out split of the training data
    out = capsys.readouterr().out
    expected = metrics["results"]["prompt + head"]
    assert f"accuracy {expected['test_accuracy']:.4f}  loss {expected['test_loss']:.4f}  (16 examples)" in out
    assert main(["evaluate", "--prompt", prompt, "--data", data_file]) == 0
    assert "(160 examples)" in capsys.readouterr().out
    assert main(["predict", "--prompt", prompt, "the acting was good", "the plot was poor"]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.strip().split("\n")]
    model, tokenizer, metadata = load_task(prompt)
    rows = predict_texts(model, tokenizer, ["the acting was good", "the plot was poor"], sequence_length=16,
                         label_names=metadata["label_names"])  # fmt: skip
    assert lines == [[r["label"], f"{r['probability']:.4f}", r["text"]] for r in rows]


def test_cli_train(preset_dir, data_file, tmp_path, capsys):
    code = main(["train", "--backbone", preset_dir, "--data", data_file, "--epochs", "1",
                 "--num-tokens", "2", "--max-length", "16", "--no-baseline",
                 "--output-dir", str(tmp_path)])  # fmt: skip
    assert code == 0
    assert "| prompt + head |" in capsys.readouterr().out
    assert (tmp_path / "prompt.safetensors").exists()


def test_the_same_train_command_gives_the_same_numbers(preset_dir, data_file, tmp_path, capsys, monkeypatch):
    # Seeded data order and TensorFlow's op determinism, which `train` turns on.
    calls = []
    enable = tf.config.experimental.enable_op_determinism
    monkeypatch.setattr(tf.config.experimental, "enable_op_determinism", lambda: calls.append(1) or enable())
    results = []
    for run in ("first", "second"):
        assert main(["train", "--backbone", preset_dir, "--data", data_file, "--epochs", "2", "--num-tokens", "2",
                     "--max-length", "16", "--eval-every", "3", "--output-dir", str(tmp_path / run)]) == 0
        with open(tmp_path / run / "metrics.json") as f:
            metrics = json.load(f)
        for result in metrics["results"].values():
            result.pop("train_seconds")
        results.append(metrics["results"])
    assert results[0] == results[1]
    assert len(calls) == 2


def test_too_long_max_length_is_a_clear_error(preset_dir, data_file, tmp_path):
    with pytest.raises(ValueError, match="exceeds the backbone's maximum of 32 positions"):
        run_training(_config(preset_dir, data_file, tmp_path, max_length=30, baseline=False),
                     print_fn=lambda *a: None)  # fmt: skip


def test_unknown_schedule():
    with pytest.raises(ValueError, match=r"`schedule` must be one of \('cosine', 'constant'\). Received: schedule='linear'"):
        TrainConfig(schedule="linear")


def test_cli_bank_directory_predict_evaluate_and_export(trained, data_file, tmp_path, capsys):
    import shutil

    _, output_dir = trained
    prompt = str(output_dir / "prompt.safetensors")
    bank = tmp_path / "bank"
    bank.mkdir()
    for task in ("reviews", "copy"):
        shutil.copy(prompt, bank / f"{task}.safetensors")
    texts = ["the plot was bad", "the acting was great"]
    # Each bank task answers as its own prompt file does.
    assert main(["predict", "--prompt", prompt, *texts]) == 0
    alone = capsys.readouterr().out
    assert main(["predict", "--prompt", str(bank), "--task", "copy", *texts]) == 0
    assert capsys.readouterr().out == alone
    assert main(["evaluate", "--prompt", prompt, "--data", data_file]) == 0
    alone = capsys.readouterr().out
    assert main(["evaluate", "--prompt", str(bank), "--task", "reviews", "--data", data_file]) == 0
    assert capsys.readouterr().out == alone
    with pytest.raises(SystemExit, match=r"a bank of tasks \['copy', 'reviews'\]; choose one with --task"):
        main(["predict", "--prompt", str(bank), "text"])
    assert main(["export", "--prompt", str(bank), "--output", str(tmp_path / "sm")]) == 0
    assert main(["export", "--prompt", prompt, "--output", str(tmp_path / "one")]) == 0
    model, tokenizer, metadata = load_task(prompt)
    expected = [[r["probabilities"][n] for n in metadata["label_names"]]
                for r in predict_texts(model, tokenizer, texts, sequence_length=16)]  # fmt: skip
    one = tf.saved_model.load(str(tmp_path / "one")).signatures["serve_text"]
    np.testing.assert_allclose(one(text=tf.constant(texts))["probabilities"].numpy(), expected, atol=1e-5)
    served = tf.saved_model.load(str(tmp_path / "sm")).signatures["serve_text"]
    for task_ids in ([0, 1], [1, 1]):
        probabilities = served(text=tf.constant(texts), task_id=tf.constant(task_ids))["probabilities"]
        np.testing.assert_allclose(probabilities.numpy(), expected, atol=1e-5)


def test_unknown_method():
    with pytest.raises(ValueError, match=r"`method` must be one of \('prompt', 'deep', 'prefix', 'p-tuning'\). Received: method='lora'"):
        TrainConfig(method="lora")


def test_prefixes_start_uniformly():
    with pytest.raises(ValueError, match=r"`method='prefix'` starts its keys and values uniformly.*Received: initializer='vocab'. Use --init uniform, or --method deep"):
        TrainConfig(method="prefix", initializer="vocab")


@pytest.mark.parametrize(
    "method, deep, name, prompt_params",
    [("deep", "hidden", "deep prompt + head", 2 * 4 * 16), ("prefix", "prefix", "prefixes + head", 2 * 2 * 4 * 16)],
)
def test_deep_method_end_to_end(preset_dir, data_file, trained, tmp_path, method, deep, name, prompt_params):
    import shutil

    config = _config(preset_dir, data_file, tmp_path, epochs=1, baseline=False, method=method, initializer="uniform")
    metrics = run_training(config, print_fn=lambda *a: None)
    assert metrics["results"][name]["trainable_params"] == prompt_params + 16 * 2 + 2
    model, tokenizer, metadata = load_task(str(tmp_path / "prompt.safetensors"))
    assert metadata["deep"] == model.deep == deep
    # A deep task and a shallow one served from one bank directory.
    bank = tmp_path / "bank"
    bank.mkdir()
    shutil.copy(tmp_path / "prompt.safetensors", bank / "deep.safetensors")
    shutil.copy(trained[1] / "prompt.safetensors", bank / "shallow.safetensors")
    assert main(["export", "--prompt", str(bank), "--output", str(tmp_path / "sm")]) == 0
    served = tf.saved_model.load(str(tmp_path / "sm")).signatures["serve_text"]
    texts = ["the plot was bad", "a fine movie"]
    probabilities = served(text=tf.constant(texts), task_id=tf.constant([0, 0]))["probabilities"].numpy()
    expected = predict_texts(model, tokenizer, texts, sequence_length=metadata["sequence_length"])
    np.testing.assert_allclose(probabilities, [[p["probabilities"][k] for k in ("negative", "positive")] for p in expected], atol=1e-5)


def test_deep_prompts_from_hidden_states_end_to_end(preset_dir, data_file, tmp_path, monkeypatch):
    from tf_prompt_tuning.models import prompt_text_classifier

    calls = []

    def recorded(backbone, prompt, first_token_id=None):  # the real function, its calls recorded
        calls.append(first_token_id)
        return prompt_hidden_states(backbone, prompt, first_token_id)

    monkeypatch.setattr(prompt_text_classifier, "prompt_hidden_states", recorded)
    config = _config(preset_dir, data_file, tmp_path, epochs=1, baseline=False, method="deep", deep_initializer="hidden_states")
    metrics = run_training(config, print_fn=lambda *a: None)
    assert calls == [2]  # [CLS], in front of the prompt (placement "after_first")
    assert metrics["config"]["deep_initializer"] == "hidden_states"
    assert load_task(str(tmp_path / "prompt.safetensors"))[0].deep == "hidden"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(deep_initializer="zeros"), r"`deep_initializer` must be one of \('uniform', 'hidden_states'\). Received: deep_initializer='zeros'"),
        (dict(method="prefix", deep_initializer="hidden_states"), r"`deep_initializer` \(--deep-initializer\) applies to --method deep. Received: deep_initializer='hidden_states' with method='prefix'. Leave it at 'uniform' or use --method deep"),
    ],
)  # fmt: skip
def test_deep_init_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_p_tuning_method_end_to_end(preset_dir, data_file, tmp_path):
    metrics = run_training(_config(preset_dir, data_file, tmp_path, epochs=1, baseline=False,
                                   method="p-tuning", prompt_encoder="mlp"), print_fn=lambda *a: None)  # fmt: skip
    assert "p-tuning (mlp) + head" in metrics["results"]
    model, _, metadata = load_task(str(tmp_path / "prompt.safetensors"))
    assert metadata["prompt_encoder"] == "mlp" and model.prompt_encoder is None  # served as plain prompts


def test_unknown_encoder():
    with pytest.raises(ValueError, match=r"`prompt_encoder` must be one of \('mlp', 'lstm'\). Received: prompt_encoder='gru'"):
        TrainConfig(prompt_encoder="gru")


@pytest.mark.parametrize(
    "setting, value, match",
    [
        ("precision", "float8", r"`precision` must be one of \('float32', 'mixed_bfloat16', 'mixed_float16'\). Received: precision='float8'"),
        ("strategy", "horovod", r"`strategy` must be one of \('default', 'mirrored', 'multi-worker', 'tpu'\). Received: strategy='horovod'"),
    ],
)  # fmt: skip
def test_unknown_precision_or_strategy(setting, value, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{setting: value})


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"num_tokens": 0}, r"`num_tokens` must be a positive integer. Received: num_tokens=0"),
        ({"batch_size": -1}, r"`batch_size` must be a positive integer"),
        ({"checkpoint_every": 0}, r"`checkpoint_every` must be a positive integer"),
        ({"train_size": 0}, r"`train_size` must be a positive integer"),
        ({"learning_rate": 0.0}, r"`learning_rate` must be a finite number above 0. Received: learning_rate=0.0."),
        ({"learning_rate": float("inf")}, r"`learning_rate` must be a finite number above 0. Received: learning_rate=inf"),
        ({"learning_rate": float("nan")}, r"`learning_rate` must be a finite number above 0. Received: learning_rate=nan"),
        ({"learning_rate": -1e-3}, r"`learning_rate` must be a finite number above 0. Received: learning_rate=-0.001"),
        ({"learning_rate": "0.1"}, r"`learning_rate` must be a positive number. Received: learning_rate='0.1' \(of type str\)"),
        ({"learning_rate": True}, r"`learning_rate` must be a positive number. Received: learning_rate=True \(of type bool\)"),
        ({"seed": -1}, r"`seed` must be an integer in \[0, 2\*\*32\), as Keras seeds are. Received: seed=-1"),
        ({"seed": 2**32}, r"`seed` must be an integer in \[0, 2\*\*32\)"),
        ({"seed": 1.5}, r"`seed` must be an integer in \[0, 2\*\*32\)"),
        ({"initializer": "zeros"}, r"`initializer` must be one of \('uniform', 'vocab', 'text', 'labels'\)"),
        ({"initializer": "text"}, r"`initializer='text'` needs `init_text` \(--init-text\)"),
    ],
    ids=["num_tokens", "batch_size", "checkpoint_every", "train_size", "learning_rate", "learning_rate_inf",
         "learning_rate_nan", "learning_rate_negative", "learning_rate_str", "learning_rate_bool", "seed_negative",
         "seed_too_large", "seed_float", "initializer", "init_text"],
)
def test_settings_are_checked_before_anything_runs(settings, match):
    with pytest.raises((ValueError, TypeError), match=match):
        TrainConfig(**settings)


def test_float_settings_accept_integers_and_numpy_numbers():
    assert TrainConfig(learning_rate=1).learning_rate == 1
    assert TrainConfig(learning_rate=np.float32(0.01), seed=np.int64(3)).seed == 3


def _rows_file(path, labels):
    path.write_text("text,label\n" + "".join(f"the movie was fine {i},{label}\n" for i, label in enumerate(labels)))
    return str(path)


@pytest.mark.parametrize(
    "labels, settings, match",
    [
        (["pos", "neg"] * 2, {}, r"tiny\.csv: 4 examples are too few for a 80%/10%/10% train/dev/test split: the dev "
         r"and test splits would be empty. Use at least 6 examples"),
        (["pos", "neg"] * 20, {"train_size": 1}, r"tiny\.csv: no example of the classes \['(neg|pos)'\] is in the first "
         r"1 training examples \(train_size\), so the model could not learn them. Raise train_size \(--train-size\) "
         r"or add examples of those classes"),
        # Seed 0 puts the fifth of ten rows in the test split.
        (["pos"] * 4 + ["neg"] + ["pos"] * 5, {}, r"tiny\.csv: no example of the classes \['neg'\] is in the training split "
         r"\(8 examples\), so the model could not learn them. Add examples of those classes"),
    ],
    ids=["too_few_for_three_splits", "train_size_leaves_one_class", "class_only_in_dev_or_test"],
)  # fmt: skip
def test_load_splits_refuses_data_that_cannot_train_and_evaluate(tmp_path, labels, settings, match):
    """A 4-row file once failed in a 2 KB message after checkpoints/config.json was written."""
    config = TrainConfig(data=_rows_file(tmp_path / "tiny.csv", labels), output_dir=str(tmp_path / "out"), **settings)
    with pytest.raises(DataError, match=match):
        load_splits(config)


def test_load_splits_of_the_smallest_data_set(tmp_path):
    config = TrainConfig(data=_rows_file(tmp_path / "six.csv", ["pos", "neg"] * 3))
    train, dev, test = load_splits(config)
    assert (len(train), len(dev), len(test)) == (4, 1, 1)
    assert set(train.labels.tolist()) == {0, 1}


def test_a_too_small_data_set_is_refused_before_anything_is_written(preset_dir, tmp_path):
    out = tmp_path / "out"
    config = _config(preset_dir, _rows_file(tmp_path / "tiny.csv", ["pos", "neg"] * 2), out)
    with pytest.raises(DataError, match=r"Use at least 6 examples"):
        run_training(config, print_fn=lambda *a: None)
    assert not out.exists()


def test_restart_is_refused_for_multi_worker_runs(preset_dir, data_file, tmp_path, monkeypatch):
    monkeypatch.setattr("tf_prompt_tuning.app.classification_job.make_strategy", lambda name: tf.distribute.get_strategy())
    with pytest.raises(ValueError, match=r"--restart cannot coordinate several workers. Delete .*checkpoints"):
        run_training(_config(preset_dir, data_file, tmp_path, strategy="multi-worker"), print_fn=lambda *a: None,
                     restart=True)  # fmt: skip


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_as_well_as_float32(trained, preset_dir, data_file, tmp_path, precision):
    from tf_prompt_tuning.files.prompt_file import load_prompts

    metrics = run_training(_config(preset_dir, data_file, tmp_path, precision=precision),
                           print_fn=lambda *a: None)  # fmt: skip
    reference = trained[0]["results"]["prompt + head"]
    result = metrics["results"]["prompt + head"]
    # Within noise of float32 (16 test examples: one example is 0.0625).
    assert abs(result["test_accuracy"] - reference["test_accuracy"]) <= 0.125
    assert result["epoch_losses"][-1] < result["epoch_losses"][0]
    tensors = load_prompts(str(tmp_path / "prompt.safetensors")).tensors
    assert {t.dtype for t in tensors.values()} == {np.dtype("float32")}
    assert keras.config.dtype_policy().name == "float32"  # the job leaves the global policy alone


def test_nothing_is_written_when_the_prompt_does_not_fit(preset_dir, data_file, tmp_path):
    output_dir = tmp_path / "out"
    with pytest.raises(ValueError, match="exceeds the backbone's maximum of 32 positions"):
        run_training(_config(preset_dir, data_file, output_dir, max_length=30),
                     print_fn=lambda *a: None)  # fmt: skip
    assert not output_dir.exists()


def test_output_dir_that_cannot_be_written(preset_dir, data_file, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=r"The output directory '.*a_file/out' is not writable .*--output-dir"):
        run_training(_config(preset_dir, data_file, blocker / "out"), print_fn=lambda *a: None)


def test_prompt_file_for_another_backbone_is_refused(trained, tmp_path, capsys):
    other = save_tiny_preset(tmp_path / "other_preset", seed=1)
    prompt = str(trained[1] / "prompt.safetensors")
    assert main(["predict", "--prompt", prompt, "--backbone", other, "the plot was bad"]) == 2
    assert "another backbone" in capsys.readouterr().err


def test_diverging_run_stops_naming_the_step_and_keeps_its_checkpoint(preset_dir, data_file, tmp_path, capsys):
    code = main(["train", "--backbone", preset_dir, "--data", data_file, "--num-tokens", "2",
                 "--max-length", "16", "--no-baseline", "--learning-rate", "1e38", "--schedule", "constant",
                 "--checkpoint-every", "1", "--output-dir", str(tmp_path)])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert re.search(r"(The loss became (nan|inf) at epoch 1, step \d+|are not finite after step \d+) .*"
                     r"last good checkpoint is .*ckpt-\d+", err)  # fmt: skip
    assert "Traceback" not in err
    assert not (tmp_path / "prompt.safetensors").exists()
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints" / "prompt_tuned"))


def test_unfinished_run_with_other_settings_is_refused(preset_dir, data_file, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    settings = dataclasses.asdict(_config(preset_dir, data_file, tmp_path, num_tokens=8, epochs=5))
    (checkpoints / "config.json").write_text(json.dumps(settings))
    with pytest.raises(ValueError, match=r"other settings \(epochs: 5 there, 3 now, num_tokens: 8 there, 4 now\).*--restart"):
        run_training(_config(preset_dir, data_file, tmp_path), print_fn=lambda *a: None)
    metrics = run_training(_config(preset_dir, data_file, tmp_path, epochs=1, baseline=False),
                           print_fn=lambda *a: None, restart=True)  # fmt: skip
    assert metrics["results"]["prompt + head"]["best_epoch"] == 1
    assert not checkpoints.exists()  # removed once the run finished


def test_an_unfinished_run_from_before_a_new_setting_resumes(preset_dir, data_file, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    settings = dataclasses.asdict(_config(preset_dir, data_file, tmp_path, epochs=1, baseline=False))
    del settings["deep_initializer"]  # written before the setting existed: it ran at the default
    settings["encoder"] = settings.pop("prompt_encoder")  # and under the setting's old name
    (checkpoints / "config.json").write_text(json.dumps(settings))
    printed = []
    run_training(_config(preset_dir, data_file, tmp_path, epochs=1, baseline=False), print_fn=printed.append)
    assert any(line.startswith("resuming the unfinished run") for line in printed)


def _train_command(preset_dir, data_file, output_dir):
    return [
        sys.executable, "-m", "tf_prompt_tuning", "train", "--backbone", preset_dir, "--data", data_file,
        "--num-tokens", "4", "--init", "labels", "--epochs", "4", "--batch-size", "4",
        "--max-length", "16", "--learning-rate", "0.05", "--checkpoint-every", "5",
        "--output-dir", str(output_dir),
    ]  # fmt: skip


def test_killed_run_restarted_with_the_same_command_ends_with_the_same_prompt(preset_dir, data_file, tmp_path):
    from tf_prompt_tuning.files.prompt_file import load_prompts

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    reference = subprocess.run(_train_command(preset_dir, data_file, tmp_path / "reference"), env=env,
                               capture_output=True, text=True, timeout=600)  # fmt: skip
    assert reference.returncode == 0, reference.stderr[-3000:]

    output_dir = tmp_path / "killed"
    command = _train_command(preset_dir, data_file, output_dir)
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill it mid-way through the second phase (the prompt; the head-only
    # baseline comes first), once a few of its checkpoints exist.
    checkpoints = str(output_dir / "checkpoints" / "prompt_tuned")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        latest = tf.train.latest_checkpoint(checkpoints)
        # Saves every 5 steps and after each 32-step epoch: the 11th is at step 50 of 128.
        if latest is not None and int(latest.rsplit("-", 1)[1]) >= 11:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (output_dir / "prompt.safetensors").exists()

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming the unfinished run" in resumed.stdout
    assert "Resuming from" in resumed.stdout
    expected = load_prompts(str(tmp_path / "reference" / "prompt.safetensors")).tensors
    actual = load_prompts(str(output_dir / "prompt.safetensors")).tensors
    assert expected.keys() == actual.keys()
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=0, atol=1e-6)
    metrics = json.loads((output_dir / "metrics.json").read_text())
    reference_metrics = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    for name, result in reference_metrics["results"].items():
        assert metrics["results"][name]["dev_accuracy"] == result["dev_accuracy"]
        np.testing.assert_allclose(metrics["results"][name]["epoch_losses"], result["epoch_losses"], rtol=1e-5)
    assert not (output_dir / "checkpoints").exists()


def test_a_generation_prompt_is_not_a_classifier_task(tmp_path, capsys):
    
    from tf_prompt_tuning import PromptCausalLM, save_prompts

    path = save_prompts(PromptCausalLM(tiny_gpt2_lm(), num_tokens=3), str(tmp_path / "lm.safetensors"))
    assert main(["predict", "--prompt", path, "text"]) == 2
    err = capsys.readouterr().err  # an LM prompt that `generate-labels` did not write: no labels to give
    assert "holds an LM prompt without the template and label words" in err
    assert "load this one into a PromptCausalLM to generate" in err and len(err.strip().splitlines()) == 1


def test_cli_train_under_a_mirrored_strategy(preset_dir, data_file, tmp_path, capsys):
    # One replica on this CPU-only machine; the multi-replica math is in test_distribution.py.
    code = main(["train", "--backbone", preset_dir, "--data", data_file, "--epochs", "1", "--num-tokens", "2",
                 "--max-length", "16", "--no-baseline", "--strategy", "mirrored", "--precision", "mixed_bfloat16",
                 "--output-dir", str(tmp_path)])  # fmt: skip
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["config"]["strategy"] == "mirrored" and metrics["config"]["precision"] == "mixed_bfloat16"


def _save_tiny_gpt2_preset(path):
    # Byte-level BPE with one merge: about every character is a token.
    keras.utils.set_random_seed(0)
    characters = sorted(set("abcdefghijklmnopqrstuvwxyz,.!'")) + ["th"]
    vocabulary = {"<|endoftext|>": 0, "Ġ": 1, **{c: i + 2 for i, c in enumerate(characters)}}
    keras_hub.models.GPT2Backbone(
        vocabulary_size=len(vocabulary), num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=64,
    ).save_to_preset(str(path))  # fmt: skip
    keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary, merges=["t h"]).save_to_preset(str(path))
    return str(path)


def test_an_appended_prompt_on_a_decoder_reads_the_training_texts_once(data_file, tmp_path):
    preset = _save_tiny_gpt2_preset(tmp_path / "gpt2")
    printed = []
    metrics = run_training(
        _config(preset, data_file, tmp_path / "out", placement="append", pooling="last", initializer="uniform",
                max_length=32, epochs=2),
        print_fn=printed.append,
    )  # fmt: skip
    reads = [line for line in printed if line.startswith("read ") and "input tokens once" in line]
    assert len(reads) == 1  # the prompt model; the head-only baseline has no appended prompt
    result = metrics["results"]["prompt + head"]
    assert len(result["dev_accuracy"]) == 2 and result["epoch_losses"][-1] < result["epoch_losses"][0]
    model, _, metadata = load_task(str(tmp_path / "out" / "prompt.safetensors"))
    assert metadata["placement"] == "append" and model.decoder is not None
