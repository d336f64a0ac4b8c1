"""Writes a built-in set as two CSV files: a held-out test set and the rest.

The built-in sets other than the movie reviews are small (3,610-4,946
snippets), so the jobs' own 10% test split would hold 360-490 of them.
This sets aside a larger test set once, by a seeded draw, for the
`--data` / `--test-data` options of `generate-labels` and `methods.py`:

    .venv/bin/python benchmarks/held_out_split.py --data nyt_editorials --test-size 1500 \
        --output-dir outputs/nyt_editorials
    # -> outputs/nyt_editorials/train.csv (the rest), outputs/nyt_editorials/test.csv

A snippet the set repeats is never on both sides: training drops the
repeats of test texts. The files are the snippets and their label names ("negative"/"positive"),
written with `csv.writer`; each is read back with `load_text_file` and
checked to be exactly what was written.
"""

from __future__ import annotations

import argparse
import csv
import os

import numpy as np

from tf_prompt_tuning.app.datasets import SENTIMENT_SETS, load_sentiment, load_text_file


def write_csv(path, data):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows((text, data.label_names[label]) for text, label in zip(data.texts, data.labels))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, choices=sorted(SENTIMENT_SETS))
    parser.add_argument("--test-size", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", required=True)
    args = parser.parse_args()
    data = load_sentiment(args.data)
    if not 0 < args.test_size < len(data):
        parser.error(f"--test-size must be between 1 and {len(data) - 1} for {args.data}; received {args.test_size}")
    order = np.random.default_rng(args.seed).permutation(len(data))
    os.makedirs(args.output_dir, exist_ok=True)
    test = data.subset(order[: args.test_size])
    # The sets repeat some snippets: a text that is in the test set stays out of training.
    held_out = set(test.texts)
    rest = [i for i in order[args.test_size :] if data.texts[i] not in held_out]
    train = data.subset(rest)
    for name, part in (("test.csv", test), ("train.csv", train)):
        path = os.path.join(args.output_dir, name)
        write_csv(path, part)
        back = load_text_file(path, label_names=data.label_names)  # what the jobs will read
        if back.texts != part.texts or not np.array_equal(back.labels, part.labels):
            raise SystemExit(f"{path} does not read back as written")
    print(
        f"{args.data}: {len(rest)} rows in train.csv ({len(data) - args.test_size - len(rest)} repeats of "
        f"test texts left out), {len(test)} in test.csv, in {args.output_dir}"
    )


if __name__ == "__main__":
    main()
