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
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence

import numpy as np

from tf_prompt_tuning._io import cache_dir, write_atomically

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
        """A fixed, seeded train/dev/test split."""
        if not (0 < dev_fraction < 1 and 0 < test_fraction < 1 and dev_fraction + test_fraction < 1):
            raise ValueError(
                "`dev_fraction` and `test_fraction` must be in (0, 1) and sum to less "
                f"than 1. Received: dev_fraction={dev_fraction}, test_fraction={test_fraction}."
            )
        order = np.random.default_rng(seed).permutation(len(self))
        n_test = round(len(self) * test_fraction)
        n_dev = round(len(self) * dev_fraction)
        test, dev, train = np.split(order, [n_test, n_test + n_dev])
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
    """Parses `id<TAB>rating<TAB>text` lines; rating > 0 positive, < 0 negative."""
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
        if rating != 0 and text:
            texts.append(text)
            labels.append(int(rating > 0))
    return _make_dataset(texts, labels, SENTIMENT_LABELS, source)


def _make_dataset(texts, labels, label_names, source) -> TextDataset:
    if not texts:
        raise DataError(f"{source} has no examples. Pass a file with at least one row.")
    return TextDataset(tuple(texts), np.asarray(labels, dtype="int32"), tuple(label_names))


def _read_rows(path: str, text_column: str, label_column: str) -> list[tuple[str, str]]:
    extension = os.path.splitext(path)[1].lower()
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            content = f.read()
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text ({error}). Save it as UTF-8.") from None
    if not content.strip():
        raise DataError(f"{path} is empty. Pass a file with a header and rows.")
    if extension in (".jsonl", ".json"):
        records = []
        for number, line in enumerate(_lines(content), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}, line {number}: not valid JSON ({error.msg}).") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}, line {number}: expected a JSON object per line.")
            records.append((number, record))
    else:
        delimiter = "," if extension == ".csv" else "\t"
        reader = csv.DictReader(io.StringIO(content), delimiter=delimiter, strict=True)
        try:
            records = [(reader.line_num, row) for row in reader]
        except csv.Error as error:
            raise DataError(f"{path}, line {reader.reader.line_num}: {error}.") from None
        for number, row in records:
            if None in row or None in row.values():
                raise DataError(
                    f"{path}, line {number}: expected {len(reader.fieldnames)} fields "
                    f"({', '.join(reader.fieldnames)}). Received: {row}."
                )
    columns = set(records[0][1]) if records else set()
    for column in (text_column, label_column):
        if records and column not in columns:
            which = "text_column" if column == text_column else "label_column"
            raise DataError(
                f"{path} has no column {column!r} (`{which}`). Its columns are "
                f"{sorted(columns)}."
            )
    rows = []
    for number, record in records:
        if text_column not in record or label_column not in record:
            raise DataError(f"{path}, line {number}: missing {text_column!r} or {label_column!r}.")
        rows.append((str(record[text_column]), str(record[label_column])))
    return rows


def _label_order(label: str):
    """Integer labels in numeric order, then names in alphabetical order."""
    is_int = label.lstrip("-").isdigit()
    return (0, int(label), "") if is_int else (1, 0, label)


def load_text_file(
    path: str,
    *,
    text_column: str = "text",
    label_column: str = "label",
    label_names: Sequence[str] | None = None,
) -> TextDataset:
    """Loads a CSV, TSV or JSONL file of texts and labels.

    CSV (`.csv`) and TSV (`.tsv`, `.txt`) need a header row; JSONL
    (`.jsonl`) has one object per line. Labels are names or integers.

    Args:
        path: the file.
        text_column: the column (or JSON key) holding the text.
        label_column: the column holding the label.
        label_names: the declared classes, in order; a label outside them is
            an error. Default: the sorted distinct labels found.
    """
    if not os.path.isfile(path):
        what = "is a directory, not a file" if os.path.isdir(path) else "does not exist"
        raise DataError(f"Data file {path!r} {what}. Check the path.")
    rows = _read_rows(path, text_column, label_column)
    if not rows:
        raise DataError(f"{path} has a header but no rows. Add at least one example.")
    found = sorted({label for _, label in rows}, key=_label_order)
    names = tuple(label_names) if label_names is not None else tuple(found)
    index = {name: i for i, name in enumerate(names)}
    unknown = [label for label in found if label not in index]
    if unknown:
        raise DataError(
            f"{path} has labels {unknown} that are not among the declared classes "
            f"{list(names)}. Fix the rows or declare those classes."
        )
    if len(names) < 2:
        raise DataError(f"{path} has only the class {list(names)}; classification needs two or more.")
    return _make_dataset([t for t, _ in rows], [index[l] for _, l in rows], names, path)


def load_dataset(name_or_path: str = "movie_reviews", **kwargs) -> TextDataset:
    """A built-in sentiment set by name, or a user's file by path."""
    if name_or_path in SENTIMENT_SETS:
        return load_sentiment(name_or_path)
    return load_text_file(name_or_path, **kwargs)
