"""Text-to-label generation (zero-shot, few-shot, soft prompt) on a tiny
Gemma 3 converted from a GGUF file the tests write, with its tokenizer."""

import contextlib
import dataclasses
import json
import os

import numpy as np
import pytest
from tiny_files import write_tiny_gemma3_gguf

from tf_prompt_tuning.app import datasets
from tf_prompt_tuning.app import label_generation_job as job
from tf_prompt_tuning.app.cli import main
from tf_prompt_tuning.backbones.gemma3_gguf import convert_gemma3_gguf


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    return convert_gemma3_gguf(write_tiny_gemma3_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf"))


def _data(size=120):
    # Words of the tiny vocabulary; the label names are single pieces there.
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(["the", "cat", "sat", "user"], 4)) for _ in range(size)]
    labels = np.array(["cat" in text for text in texts], "int32")
    return datasets.TextDataset(texts, labels, ("sat", "cat"))


@pytest.fixture
def tiny_job(gemma, monkeypatch):
    monkeypatch.setattr(job, "load_backbone", lambda name: gemma)
    monkeypatch.setattr(datasets, "load_dataset", lambda name: _data())


def test_every_method_is_scored_on_the_same_held_out_examples(tiny_job, tmp_path):
    config = job.LabelGenerationConfig(
        backbone="tiny", num_tokens=4, steps=30, batch_size=8, learning_rate=0.1, eval_size=10,
        shots=2, max_text_tokens=8, output_dir=str(tmp_path / "out"),
    )  # fmt: skip
    results = job.run_label_generation(config, print_fn=lambda *a: None)
    with open(tmp_path / "out" / "results.json") as f:
        assert json.load(f)["methods"].keys() == set(job.METHODS)
    # The trained prompt is kept, and reads back as the model that was scored.
    backbone, _ = job.load_backbone("tiny")
    restored = job.PromptCausalLM.from_prompt_file(str(tmp_path / "out" / "soft_prompt.safetensors"), backbone)
    assert restored.num_tokens == 4
    assert 0 <= results["methods"]["soft_prompt"]["first_token_accuracy"] <= 1
    for method in job.METHODS:
        result = results["methods"][method]
        assert result["examples"] == 10
        assert 0 <= result["accuracy"] <= 1 - result["invalid"] + 1e-9
    losses = results["methods"]["soft_prompt"]["losses"]
    assert len(losses) == 30 and np.mean(losses[-5:]) < np.mean(losses[:5])


def test_an_appended_soft_prompt_trains_from_inputs_read_once(tiny_job, tmp_path):
    printed = []
    config = job.LabelGenerationConfig(
        backbone="tiny", num_tokens=4, steps=30, batch_size=8, learning_rate=0.1, eval_size=10,
        max_text_tokens=8, placement="append", train_size=40, dev_size=12, eval_every=10,
        output_dir=str(tmp_path / "out"),
    )  # fmt: skip
    results = job.run_label_generation(config, methods=("soft_prompt",), print_fn=printed.append)
    assert sum(line.startswith("  read ") and "input tokens once" in line for line in printed) == 1
    result = results["methods"]["soft_prompt"]
    assert len(result["losses"]) == 30 and np.mean(result["losses"][-5:]) < np.mean(result["losses"][:5])
    assert result["train_examples"] == 40
    assert [step for step, _ in result["dev_curve"]] == [0, 10, 20, 30]
    assert results["config"]["placement"] == "append"


def test_the_prompt_that_scored_best_on_dev_is_kept():
    import types

    import keras

    prompt = keras.layers.Dense(1)
    prompt.build((None, 1))
    lm = types.SimpleNamespace(prompt=prompt)
    config = job.LabelGenerationConfig(steps=6, eval_every=2)
    scores = iter([0.1, 0.5, 0.9, 0.7])

    def step(x, y):  # the prompt's value records the step
        prompt.kernel.assign([[x]])
        return 1.0

    batches = ((float(i + 1), None) for i in range(100))
    result = job._train_loop(lm, step, batches, lambda: next(scores), config, lambda *a: None)
    assert result["dev_curve"] == [[0, 0.1], [2, 0.5], [4, 0.9], [6, 0.7]]
    assert prompt.kernel.numpy()[0, 0] == 4.0  # as it was after step 4


def test_label_word_loss_over_the_vocabulary_or_the_label_words():
    import keras

    logits = np.random.default_rng(0).normal(size=(3, 7)).astype("float32")
    label_ids = [4, 1]
    one_hot = np.array([[1, 0], [0, 1], [1, 0]], "float32")
    over_vocabulary = job.LabelWordLoss(label_ids, "vocabulary", reduction=None)(one_hot, logits)
    expected = keras.losses.sparse_categorical_crossentropy(np.array([4, 1, 4]), logits, from_logits=True)
    np.testing.assert_allclose(over_vocabulary, expected, rtol=1e-5)
    over_words = job.LabelWordLoss(label_ids, "label_words", reduction=None)(one_hot, logits)
    expected = keras.losses.sparse_categorical_crossentropy(np.array([0, 1, 0]), logits[:, label_ids], from_logits=True)
    np.testing.assert_allclose(over_words, expected, rtol=1e-5)
    soft = np.array([[0.25, 0.75]] * 3, "float32")  # a teacher's distribution: the mix of both
    mixed = job.LabelWordLoss(label_ids, "label_words", reduction=None)(soft, logits)
    ends = [job.LabelWordLoss(label_ids, "label_words", reduction=None)(np.eye(2, dtype="float32")[[k] * 3], logits) for k in (0, 1)]
    np.testing.assert_allclose(mixed, 0.25 * ends[0] + 0.75 * ends[1], rtol=1e-5)
    with pytest.raises(ValueError, match=r"`loss` must be one of \('vocabulary', 'label_words'\). Received: loss='words'"):
        job.LabelWordLoss(label_ids, "words")


def test_a_prompt_started_from_the_few_shot_prompt_starts_as_it(gemma):
    backbone, tokenizer = gemma
    data = _data()
    names = list(data.label_names)
    config = job.LabelGenerationConfig(initializer="few_shot", shots=2, max_text_tokens=8)
    prefix = job.INSTRUCTION + job.few_shot_text(data, names, config)
    lm = job._soft_prompt_lm(backbone, tokenizer, names, prefix, config)
    assert lm.num_tokens == 1 + len(job._ids(tokenizer, prefix))
    texts = data.texts[:4]
    base = job.PromptCausalLM(backbone, num_tokens=0)
    few_shot = [job._Encoder(tokenizer, 8, prefix)(t) for t in texts]
    bare = [job._Encoder(tokenizer, 8, start=False)(t) for t in texts]
    label_ids = job._label_token_ids(tokenizer, names)
    np.testing.assert_allclose(
        job._label_distribution(lm, bare, label_ids), job._label_distribution(base, few_shot, label_ids), atol=1e-5
    )


def test_a_shared_prefix_read_once_scores_as_the_whole_rows(gemma):
    backbone, tokenizer = gemma
    data = _data()
    names = list(data.label_names)
    encode = job._Encoder(tokenizer, 8, job.INSTRUCTION + job.few_shot_text(data, names, job.LabelGenerationConfig(shots=2)))
    rows = [encode(t) for t in data.texts[:20]]  # rows of several lengths, batches of 16 and 4
    assert len(set(map(len, rows))) > 1
    base = job.PromptCausalLM(backbone, num_tokens=0)
    label_ids = job._label_token_ids(tokenizer, names)
    np.testing.assert_allclose(
        job._label_distribution(base, rows, label_ids, len(encode.prefix)), job._label_distribution(base, rows, label_ids),
        atol=1e-5,
    )
    classes = job.token_labels(tokenizer, names)
    whole = job.first_token_accuracy(base, rows, data.labels, classes)
    assert job.first_token_accuracy(base, rows, data.labels, classes, len(encode.prefix)) == whole


def test_a_token_reads_as_the_label_its_first_word_is(gemma):
    _, tokenizer = gemma
    classes = job.token_labels(tokenizer, ["Cat", "sat"])
    vocabulary = tokenizer.get_vocabulary()
    for piece, expected in (("\u2581cat", 0), ("\u2581sat", 1), ("\u2581the", -1), ("\u2581ca", -1), ("<bos>", -1)):
        assert classes[vocabulary.index(piece)] == expected, piece


def test_context_distillation_trains_on_the_few_shot_models_answers(tiny_job, tmp_path):
    config = job.LabelGenerationConfig(
        backbone="tiny", num_tokens=4, steps=20, batch_size=8, learning_rate=0.1, eval_size=10, shots=2,
        max_text_tokens=8, placement="append", targets="few_shot", loss="label_words", initializer="labels",
        optimizer="adafactor", warmup_steps=5, train_size=32, score="first_token", output_dir=str(tmp_path / "out"),
    )  # fmt: skip
    results = job.run_label_generation(config, methods=("few_shot", "soft_prompt"), print_fn=lambda *a: None)
    assert results["metric"] == "first_token" and results["methods"]["few_shot"]["examples"] == 10
    result = results["methods"]["soft_prompt"]
    assert 0.0 <= result["teacher_train_accuracy"] <= 1.0
    assert len(result["losses"]) == 20 and np.all(np.isfinite(result["losses"]))
    assert np.mean(result["losses"][-5:]) < np.mean(result["losses"][:5])


def test_template_instruction_and_verbalizer_are_the_users(tiny_job, tmp_path):
    out = tmp_path / "out"
    code = main([
        "generate-labels", "--backbone", "tiny", "--method", "few_shot", "--shots", "2", "--eval-size", "6",
        "--max-text-tokens", "8", "--score", "first_token", "--template", "Text: {text}\\nLabel:",
        "--instruction", "Sort.\\n", "--verbalizer", "cat, sat", "--output-dir", str(out),
    ])  # fmt: skip
    assert code == 0
    with open(out / "results.json") as f:
        results = json.load(f)
    assert results["label_names"] == ["cat", "sat"]
    assert results["config"]["template"] == "Text: {text}\nLabel:" and results["config"]["instruction"] == "Sort.\n"


def test_a_verbalizer_of_the_wrong_length_is_refused_before_writing(tiny_job, tmp_path):
    config = job.LabelGenerationConfig(backbone="tiny", verbalizer=("a", "b", "c"), output_dir=str(tmp_path / "out"))
    with pytest.raises(ValueError, match=r"one word per class: 2 for \['sat', 'cat'\]. Received: verbalizer=\['a', 'b', 'c'\]"):
        job.run_label_generation(config, print_fn=lambda *a: None)
    assert not (tmp_path / "out").exists()


def test_a_trained_prompt_file_labels_texts_as_the_job_scored_them(tiny_job, tmp_path, capsys):
    out = tmp_path / "out"
    config = job.LabelGenerationConfig(
        backbone="tiny", num_tokens=4, steps=10, batch_size=8, learning_rate=0.1, eval_size=12,
        max_text_tokens=8, placement="append", score="first_token", output_dir=str(out),
    )  # fmt: skip
    results = job.run_label_generation(config, methods=("soft_prompt",), print_fn=lambda *a: None)
    path = str(out / "soft_prompt.safetensors")
    writer = job.LabelWriter.load(path)
    test = _data().split(seed=0)[2].subset(np.arange(12))
    scored = writer.evaluate(test.texts, test.labels)
    assert scored["written_accuracy"] == results["methods"]["soft_prompt"]["accuracy"]
    rows = writer.predict(test.texts[:3])
    assert [set(row["probabilities"]) for row in rows] == [{"sat", "cat"}] * 3
    assert all(abs(sum(row["probabilities"].values()) - 1) < 1e-5 and row["label"] in ("sat", "cat") for row in rows)
    capsys.readouterr()
    assert main(["predict", "--prompt", path, *test.texts[:2]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [row["label"] for row in rows[:2]]
    assert main(["evaluate", "--prompt", path]) == 0
    assert capsys.readouterr().out.startswith("accuracy ")
    # Exported, the SavedModel answers strings as `predict` does, with no tf_prompt_tuning code.
    import tensorflow as tf

    assert main(["export", "--prompt", path, "--output", str(tmp_path / "served")]) == 0
    serve = tf.saved_model.load(str(tmp_path / "served")).signatures["serve_text"]
    served = serve(text=tf.constant(list(test.texts[:3])))
    assert [label.decode() for label in served["label"].numpy()] == [row["label"] for row in rows]
    np.testing.assert_allclose(served["probability"].numpy(), [row["probability"] for row in rows], atol=1e-5)
    np.testing.assert_allclose(served["probabilities"].numpy().sum(-1), 1.0, atol=1e-5)
    capsys.readouterr()
    assert main(["export", "--prompt", path, "--output", str(tmp_path / "served")]) == 2  # exists: refused
    assert "Choose a new path, or pass overwrite=True (--overwrite)" in capsys.readouterr().err


def test_label_writers_prompt_files_serve_from_one_bank(tiny_job, tmp_path):
    """Two tasks' `generate-labels` files in one `PromptCausalLMBank`: each
    row, framed by its task's template, gets its own writer's logits."""
    from tf_prompt_tuning.models.prompt_causal_lm_bank import PromptCausalLMBank

    writers = []
    for task, template in enumerate(("Review: {text}\nSentiment:", "Text: {text}\nLabel:")):
        config = job.LabelGenerationConfig(
            backbone="tiny", num_tokens=4, steps=5, batch_size=8, learning_rate=0.1, eval_size=4,
            max_text_tokens=8, placement="append", score="first_token", seed=task, template=template,
            output_dir=str(tmp_path / f"task{task}"),
        )  # fmt: skip
        job.run_label_generation(config, methods=("soft_prompt",), print_fn=lambda *a: None)
        writers.append(job.LabelWriter.load(str(tmp_path / f"task{task}" / "soft_prompt.safetensors")))
    bank = PromptCausalLMBank(writers[0].lm.backbone, num_tokens=4, placement="append")
    for task in range(2):
        bank.add_prompt_file(f"task{task}", str(tmp_path / f"task{task}" / "soft_prompt.safetensors"))
    texts = _data().texts[:3]
    rows = [writers[task].encode(text) for text in texts for task in range(2)]
    ids, mask = job._pad(rows)
    task_id = np.array([0, 1] * len(texts))
    served = bank.next_token_logits({"token_ids": ids, "padding_mask": mask, "task_id": task_id})
    for task in range(2):
        own = writers[task].lm.next_token_logits({"token_ids": ids[task_id == task], "padding_mask": mask[task_id == task]})
        np.testing.assert_allclose(np.asarray(served)[task_id == task], own, atol=1e-4)
    assert not np.allclose(writers[0].lm.prompt.prompt_value(), writers[1].lm.prompt.prompt_value())


def test_deep_appended_label_prompts_train_save_and_label(tiny_job, tmp_path):
    out = tmp_path / "deep"
    config = job.LabelGenerationConfig(
        backbone="tiny", num_tokens=4, steps=20, batch_size=8, learning_rate=0.1, eval_size=12,
        max_text_tokens=8, placement="append", deep=True, score="first_token", output_dir=str(out),
    )  # fmt: skip
    results = job.run_label_generation(config, methods=("soft_prompt",), print_fn=lambda *a: None)
    losses = results["methods"]["soft_prompt"]["losses"]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) and results["config"]["deep"] is True
    writer = job.LabelWriter.load(str(out / "soft_prompt.safetensors"))
    assert writer.lm.deep and np.abs(writer.lm.prompt.deep_prompts.numpy()).max() > 0  # they trained
    test = _data().split(seed=0)[2].subset(np.arange(12))
    assert writer.evaluate(test.texts, test.labels)["written_accuracy"] == results["methods"]["soft_prompt"]["accuracy"]


def test_an_lm_prompt_file_without_its_template_is_refused(gemma, tmp_path):
    backbone, _ = gemma
    path = job.save_prompts(job.PromptCausalLM(backbone, num_tokens=2), str(tmp_path / "lm.safetensors"))
    with pytest.raises(ValueError, match=r"holds an LM prompt without the template and label words"):
        job.LabelWriter.load(path)


def test_first_word_reads_the_label_and_nothing_else():
    assert job.first_word(" Positive.\n\nReview") == "positive"
    assert job.first_word("\n negative, I think") == "negative"
    assert job.first_word("   ") == ""


def test_generation_accuracy_counts_invalid_words_as_wrong(gemma):
    backbone, tokenizer = gemma

    class Fixed:  # generates " cat" then "\n" for every row
        def generate(self, ids, mask, new_tokens, end_token_ids):
            row = [job._ids(tokenizer, " cat")[0], job._ids(tokenizer, "\n")[0], 0]
            return {"token_ids": np.array([row] * len(ids)), "padding_mask": np.array([[True, True, False]] * len(ids))}

    result = job.generation_accuracy(Fixed(), tokenizer, [[2, 5], [2, 6], [2]], [1, 0, 1], ["sat", "cat"])
    assert result == {"accuracy": 2 / 3, "invalid": 0.0, "examples": 3}
    result = job.generation_accuracy(Fixed(), tokenizer, [[2, 5]], [0], ["positive", "negative"])
    assert result == {"accuracy": 0.0, "invalid": 1.0, "examples": 1}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--steps", "0"], "`steps` must be a positive integer. Received: steps=0."),
        (["--dev-size", "-2"], "`dev_size` must be a positive integer. Received: dev_size=-2."),
        (["--eval-every", "0"], "`eval_every` must be a positive integer. Received: eval_every=0."),
        (["--warmup-steps", "-1"], "`warmup_steps` must be a positive integer. Received: warmup_steps=-1."),
        (["--split-seed", "-1"], "`split_seed` must be a positive integer. Received: split_seed=-1."),
        (["--targets", "teacher"], "argument --targets: invalid choice: 'teacher'"),
        (["--loss", "mse"], "argument --loss: invalid choice: 'mse'"),
        (["--score", "bleu"], "argument --score: invalid choice: 'bleu'"),
        (["--template", "Review: {txt}"], "`template` must hold '{text}' exactly once"),
        (["--verbalizer", "good,,bad"], "`verbalizer` must be a list of label words, one per class"),
        (["--eval-size", "-1"], "`eval_size` must be a positive integer"),
        (["--learning-rate", "0"], "`learning_rate` must be a finite number above 0. Received: learning_rate=0.0."),
        (["--learning-rate", "inf"], "Received: learning_rate=inf."),
        (["--learning-rate", "nan"], "Received: learning_rate=nan."),
        (["--method", "beam"], "argument --method: invalid choice: 'beam'"),
        (["--init", "words"], "argument --init: invalid choice: 'words'"),
        (["--placement", "after_first"], "argument --placement: invalid choice: 'after_first' (choose from 'prepend', 'append')"),
        (["--deep"], "Received: deep=True with placement='prepend'. Use --placement append, or leave out --deep."),
    ],
)
def test_cli_errors_are_one_line_and_write_nothing(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    usage = "invalid choice" in message  # argparse's own errors exit
    with pytest.raises(SystemExit) if usage else contextlib.nullcontext():
        code = main(["generate-labels", *argv, "--output-dir", str(out)])
        assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not os.path.exists(out)



def test_a_test_data_file_is_scored_instead_of_the_held_out_split(gemma, monkeypatch, tmp_path):
    monkeypatch.setattr(job, "load_backbone", lambda name: gemma)
    real = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset", lambda name, **kw: _data() if name == "tiny" else real(name, **kw))
    rows = ["text,label", "the cat sat user,cat", "the the sat user,sat", "cat cat the sat,cat"]
    (tmp_path / "test.csv").write_text("\n".join(rows) + "\n")
    config = job.LabelGenerationConfig(
        backbone="tiny", data="tiny", test_data=str(tmp_path / "test.csv"), eval_size=10, shots=2,
        max_text_tokens=8, score="first_token", output_dir=str(tmp_path / "out"),
    )  # fmt: skip
    results = job.run_label_generation(config, methods=("zero_shot",), print_fn=lambda *a: None)
    assert results["methods"]["zero_shot"]["examples"] == 3  # the file's rows, not the split's 10
    with pytest.raises(ValueError, match=r"`test_data` must be a .csv/.tsv/.jsonl file. Received: test_data='missing.csv'"):
        dataclasses.replace(config, test_data="missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nthe cat,dog\n")
    with pytest.raises(datasets.DataError, match="dog"):
        job.run_label_generation(dataclasses.replace(config, test_data=str(bad)), methods=("zero_shot",),
                                 print_fn=lambda *a: None)  # fmt: skip
