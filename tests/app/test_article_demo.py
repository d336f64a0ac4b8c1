import keras
import numpy as np
from conftest import assert_keras_save_load_parity

from tf_prompt_tuning.app.article_demo import (
    INITIAL_PROMPT,
    SENTENCE,
    build_article_model,
    run_article_demo,
)


def test_demo_reproduces_the_tutorial_with_a_really_frozen_model(tmp_path):
    lines = []
    result = run_article_demo(plot_path=str(tmp_path / "loss.png"), print_fn=lines.append)
    assert len(result.losses) == 5000
    assert result.final_loss < 0.01 * result.initial_loss
    assert result.probability > 0.99
    assert result.frozen_unchanged
    np.testing.assert_allclose(result.prompt_before, INITIAL_PROMPT, rtol=1e-6)
    assert not np.allclose(result.prompt_after, result.prompt_before)
    assert (result.parameters.trainable, result.parameters.total) == (4, 4 + 2 * 4 + 4 + 4 * 2 + 2)
    assert (tmp_path / "loss.png").stat().st_size > 1000
    assert any(line.startswith("step  4999") for line in lines)


def test_frozen_model_is_seeded():
    a = build_article_model(seed=3).get_layer("frozen_model").fc1.kernel
    b = build_article_model(seed=3).get_layer("frozen_model").fc1.kernel
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_article_model_save_load_parity(tmp_path):
    assert_keras_save_load_parity(build_article_model(), np.asarray([SENTENCE], "float32"), tmp_path)
