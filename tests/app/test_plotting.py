"""Plots: written atomically as PNG files, without touching pyplot's state."""

import sys

import numpy as np

from tf_prompt_tuning.app.plotting import plot_losses, plot_training_curves

PNG = b"\x89PNG\r\n\x1a\n"


def test_a_loss_curve_is_a_png(tmp_path):
    path = plot_losses(np.linspace(2.0, 0.1, 50), str(tmp_path / "loss.png"))
    assert open(path, "rb").read(8) == PNG
    assert "matplotlib.pyplot" not in sys.modules or not sys.modules["matplotlib.pyplot"].get_fignums()


def test_training_curves_of_several_runs(tmp_path):
    run = {"step_losses": list(np.linspace(1.0, 0.2, 120)), "dev_curve": [[0, 0.5], [60, 0.7], [120, 0.8]],
           "test_accuracy": 0.79}  # fmt: skip
    path = plot_training_curves({"prompt": run, "deep": run}, str(tmp_path / "curves.png"))
    assert open(path, "rb").read(8) == PNG and not list(tmp_path.glob("*.tmp*"))
