"""Figures for mmsk results (matplotlib, imported lazily: extra ``plot``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._optional import import_optional

__all__ = ["plot_cv_scores", "plot_history"]


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    plt = import_optional("matplotlib.pyplot", "plot")
    _, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    return ax


def plot_cv_scores(
    scores: Mapping[str, Sequence[float]],
    *,
    ax: Any = None,
    metric: str = "accuracy",
    title: str | None = None,
    chance: float | None = None,
) -> Any:
    """Bar chart of cross-validation scores: mean per model, error bar = std.

    Parameters
    ----------
    scores : mapping of str to sequence of float
        Model name -> the per-fold scores, in the order to draw.
    ax : matplotlib Axes or None, default=None
        Where to draw; a new figure when None.
    metric : str, default="accuracy"
        Label of the y axis.
    title : str or None, default=None
        Title of the axes.
    chance : float or None, default=None
        Draw a dashed line at the chance level.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from mmsk.plotting import plot_cv_scores
    >>> ax = plot_cv_scores({"image": [0.8, 0.9], "audio": [0.6, 0.7]})
    >>> [t.get_text() for t in ax.get_xticklabels()]
    ['image', 'audio']
    """
    ax = _axes(ax)
    names = list(scores)
    means = np.array([np.mean(scores[n]) for n in names])
    stds = np.array([np.std(scores[n]) for n in names])
    cmap = import_optional("matplotlib", "plot").colormaps["tab10"]
    bars = ax.bar(
        names, means, yerr=stds, capsize=6, color=[cmap(i % 10) for i in range(len(names))]
    )
    for bar, mean, std in zip(bars, means, stds, strict=True):
        ax.annotate(
            f"{mean:.3f}",
            (bar.get_x() + bar.get_width() / 2, mean + std),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=9,
        )
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
        ax.legend(loc="lower right")
    top = float(np.max(means + stds)) if len(names) else 1.0
    ax.set_ylim(0, min(1.0, top) * 1.12 if top <= 1.0 else top * 1.12)
    ax.set_ylabel(f"{metric} (mean ± std over folds)")
    if title:
        ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return ax


def plot_history(
    history: Sequence[Mapping[str, Any]],
    *,
    ax: Any = None,
    keys: Sequence[str] = ("train_loss", "valid_loss"),
    title: str | None = None,
) -> Any:
    """Training curves from a skorch history (a list of per-epoch dicts).

    Parameters
    ----------
    history : sequence of mapping
        ``net_.history`` of a fitted fusion estimator, or any list of
        per-epoch dicts with an ``"epoch"`` key.
    ax : matplotlib Axes or None, default=None
        Where to draw; a new figure when None.
    keys : sequence of str, default=("train_loss", "valid_loss")
        The per-epoch values to draw; missing ones are skipped.
    title : str or None, default=None
        Title of the axes.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from mmsk.plotting import plot_history
    >>> hist = [{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": 0.5}]
    >>> len(plot_history(hist).get_lines())
    1
    """
    ax = _axes(ax)
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    for key in keys:
        values = [row.get(key) for row in history]
        if all(v is None for v in values):
            continue
        points = [(e, v) for e, v in zip(epochs, values, strict=True) if v is not None]
        ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=key.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if ax.get_lines():
        ax.legend()
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    return ax
