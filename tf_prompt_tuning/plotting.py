"""Plots a person would rather look at than read, saved as PNG files."""

from __future__ import annotations

import os


def plot_losses(losses, path: str, title: str = "Prompt tuning loss") -> str:
    """Saves a loss curve as a PNG and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(losses)
    ax.set(title=title, xlabel="step", ylabel="loss", yscale="log")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
