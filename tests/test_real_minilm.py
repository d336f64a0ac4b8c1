"""The main job on the real MiniLM and the real movie reviews, shrunk (slow).

Needs the movie reviews in the cache (`./run.sh` puts them there); skipped
otherwise, since tests never use the network.
"""

import os

import keras
import numpy as np
import pytest

from tf_prompt_tuning.app.classification_job import TrainConfig, run_training
from tf_prompt_tuning.app.datasets import SENTIMENT_SETS, cache_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def movie_reviews_cached():
    if not os.path.isfile(os.path.join(cache_dir(), SENTIMENT_SETS["movie_reviews"][0])):
        pytest.skip("movie reviews not cached; run ./run.sh once")


def test_prompt_tuning_minilm_on_movie_reviews(movie_reviews_cached, tmp_path):
    from tf_prompt_tuning.backbones.backbone import load_backbone

    backbone, tokenizer = load_backbone()
    before = [keras.ops.convert_to_numpy(v).copy() for v in backbone.weights]
    config = TrainConfig(train_size=640, epochs=1, output_dir=str(tmp_path))
    metrics = run_training(config, print_fn=lambda *a: None, backbone_and_tokenizer=(backbone, tokenizer))
    results = metrics["results"]
    assert results["head only"]["test_accuracy"] > 0.6
    assert results["prompt + head"]["test_accuracy"] > 0.6
    assert metrics["prompt_file_bytes"] < 40_000
    for value, variable in zip(before, backbone.weights):
        np.testing.assert_array_equal(value, keras.ops.convert_to_numpy(variable))
