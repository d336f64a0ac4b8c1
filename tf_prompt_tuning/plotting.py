"""Plots a person would rather look at than read, saved as PNG files."""

from __future__ import annotations

import io

import numpy as np

from tf_prompt_tuning._io import write_atomically


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
    """Loss (moving average) and dev accuracy per epoch of several runs, side by side."""
    fig = _figure(figsize=(11, 4))
    loss_ax, acc_ax = fig.subplots(1, 2)
    for name, result in results.items():
        losses = np.asarray(result["step_losses"])
        window = max(1, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        loss_ax.plot(smooth, label=name)
        epochs = np.arange(1, len(result["dev_accuracy"]) + 1)
        acc_ax.plot(
            epochs, result["dev_accuracy"], marker="o",
            label=f"{name} (test {result['test_accuracy']:.3f})",
        )  # fmt: skip
    loss_ax.set(title="training loss (moving average)", xlabel="step", ylabel="loss")
    acc_ax.set(title="dev accuracy after each epoch", xlabel="epoch", ylabel="accuracy")
    acc_ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return _save(fig, path)
