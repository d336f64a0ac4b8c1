"""Plots a person would rather look at than read, saved as PNG files."""

from __future__ import annotations

import io

import numpy as np

from tf_prompt_tuning.files._io import write_atomically


def _figure(**kwargs):
    """A figure outside pyplot: saving it needs no GUI backend and leaves the
    user's pyplot state (e.g. a notebook's inline backend) alone."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save(fig, path: str) -> str:
    """Writes the figure as a PNG atomically: never a half-written image."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return write_atomically(path, buffer.getvalue())


def plot_losses(losses, path: str, title: str = "Prompt tuning loss") -> str:
    """Saves a loss curve as a PNG and returns its path."""
    fig = _figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(losses)
    ax.set(title=title, xlabel="step", ylabel="loss", yscale="log")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_training_curves(results: dict, path: str) -> str:
    """Loss (moving average) and dev accuracy against the step, of several
    runs side by side; the dev points come from `dev_curve` (`[step, accuracy]`
    pairs, evaluated every few steps and after each epoch)."""
    fig = _figure(figsize=(11, 4))
    loss_ax, acc_ax = fig.subplots(1, 2)
    for name, result in results.items():
        losses = np.asarray(result["step_losses"])
        window = max(1, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        # Each average is drawn at the last step it covers.
        loss_ax.plot(np.arange(window, len(losses) + 1), smooth, label=name)
        steps, accuracy = np.asarray(result["dev_curve"], dtype=float).reshape(-1, 2).T
        acc_ax.plot(steps, accuracy, marker="o", label=f"{name} (test {result['test_accuracy']:.3f})")
    loss_ax.set(title="training loss (moving average)", xlabel="step", ylabel="loss")
    acc_ax.set(title="dev accuracy during training", xlabel="step", ylabel="accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return _save(fig, path)
