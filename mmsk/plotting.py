"""Figures for mmsk results (matplotlib, imported lazily: extra ``plot``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._optional import import_optional

__all__ = [
    "plot_confusion_matrix",
    "plot_cv_scores",
    "plot_history",
    "plot_modality_importance",
    "plot_robustness",
]


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


def _history_of(history: Any) -> tuple[Sequence[Mapping[str, Any]], int | None]:
    """Return the per-epoch rows and, for a fitted estimator, the epoch early stopping restored."""
    net = getattr(history, "net_", None)
    if net is None and hasattr(history, "history") and hasattr(history, "callbacks_"):
        net = history  # a skorch net
    if net is None:
        return history, None
    restored = None
    for _, callback in getattr(net, "callbacks_", []):
        if type(callback).__name__ == "EarlyStopping" and getattr(callback, "load_best", False):
            best = getattr(callback, "best_epoch_", None)
            restored = int(best) if best is not None else None
    return net.history, restored


def _best_epoch(history: Sequence[Mapping[str, Any]]) -> tuple[int | None, str | None]:
    """Find the last epoch flagged best (``valid_score_best``, else ``valid_loss_best``)."""
    for key in ("valid_score", "valid_loss"):
        flagged = [
            row.get("epoch", i + 1) for i, row in enumerate(history) if row.get(f"{key}_best")
        ]
        if flagged:
            return int(flagged[-1]), key
    return None, None


def plot_history(
    history: Any,
    *,
    ax: Any = None,
    keys: Sequence[str] = ("train_loss", "valid_loss"),
    title: str | None = None,
    mark_best: bool = True,
) -> Any:
    """Training curves from a skorch history (a list of per-epoch dicts).

    The best epoch is marked by a dotted vertical line: the epoch whose
    weights early stopping restored (read from the estimator's
    ``EarlyStopping`` callback when given a fitted estimator), else the
    last epoch the history flags best (``valid_score_best`` when a
    validation score was recorded, else ``valid_loss_best``).

    Parameters
    ----------
    history : fitted fusion estimator, skorch net or sequence of mapping
        A fitted :class:`~mmsk.FusionClassifier` or
        :class:`~mmsk.FusionRegressor` (its ``net_.history``), a skorch
        net, or any list of per-epoch dicts with an ``"epoch"`` key.
    ax : matplotlib Axes or None, default=None
        Where to draw; a new figure when None.
    keys : sequence of str, default=("train_loss", "valid_loss")
        The per-epoch values to draw; missing ones are skipped.
    title : str or None, default=None
        Title of the axes.
    mark_best : bool, default=True
        Mark the best (restored) epoch.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from mmsk.plotting import plot_history
    >>> hist = [{"epoch": 1, "train_loss": 1.0, "valid_loss": 0.9, "valid_loss_best": True},
    ...         {"epoch": 2, "train_loss": 0.5, "valid_loss": 1.1, "valid_loss_best": False}]
    >>> ax = plot_history(hist)
    >>> [line.get_label() for line in ax.get_lines()]
    ['train loss', 'valid loss', 'best epoch 1 (valid loss)']
    """
    history, restored = _history_of(history)
    ax = _axes(ax)
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    for key in keys:
        values = [row.get(key) for row in history]
        if all(v is None for v in values):
            continue
        points = [(e, v) for e, v in zip(epochs, values, strict=True) if v is not None]
        ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=key.replace("_", " "))
    if mark_best and ax.get_lines():
        best, key = _best_epoch(history)
        if restored is not None:
            label = f"restored best, epoch {restored}"
            best = restored
        elif best is not None:
            label = f"best epoch {best} ({key.replace('_', ' ')})"
        if best is not None:
            ax.axvline(best, color="black", linestyle=":", linewidth=1.2, label=label)
    ax.xaxis.set_major_locator(
        import_optional("matplotlib.ticker", "plot").MaxNLocator(integer=True)
    )
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if ax.get_lines():
        ax.legend()
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    return ax


def plot_modality_importance(
    result: Any, *, ax: Any = None, metric: str | None = None, title: str | None = None
) -> Any:
    """Bar chart of :func:`mmsk.inspection.modality_importance`: one bar per modality and method.

    Bars are the mean importance (the drop of the score), error bars the
    standard deviation over the permutation repeats; modalities are sorted
    by their largest importance, the most important on top.

    Parameters
    ----------
    result : pandas.DataFrame
        The result of :func:`mmsk.inspection.modality_importance`.
    ax : matplotlib Axes or None, default=None
        Where to draw; a new figure when None.
    metric : str or None, default=None
        The metric to show when the result holds several; None: the first.
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
    >>> import pandas as pd
    >>> from mmsk.plotting import plot_modality_importance
    >>> result = pd.DataFrame({"modality": ["image", "audio"] * 2,
    ...                        "method": ["permutation"] * 2 + ["ablation"] * 2,
    ...                        "metric": "accuracy", "importance_mean": [0.3, 0.1, 0.4, 0.05],
    ...                        "importance_std": [0.02, 0.01, 0.0, 0.0],
    ...                        "baseline_score": 0.9})
    >>> ax = plot_modality_importance(result)
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['audio', 'image']
    """
    metrics = list(dict.fromkeys(result["metric"]))
    metric = metrics[0] if metric is None else metric
    if metric not in metrics:
        raise ValueError(f"metric {metric!r} is not in the result; it has {metrics}")
    part = result[result["metric"] == metric]
    methods = list(dict.fromkeys(part["method"]))
    order = part.groupby("modality")["importance_mean"].max().sort_values().index.tolist()
    ax = _axes(ax)
    height = 0.8 / len(methods)
    cmap = import_optional("matplotlib", "plot").colormaps["tab10"]
    for j, method in enumerate(methods):
        rows = part[part["method"] == method].set_index("modality").reindex(order)
        y = np.arange(len(order)) + (j - (len(methods) - 1) / 2) * height
        ax.barh(
            y,
            rows["importance_mean"],
            xerr=rows["importance_std"],
            height=height,
            capsize=4,
            color=cmap(j % 10),
            label=method,
        )
    ax.set_yticks(np.arange(len(order)), order)
    ax.axvline(0, color="grey", linewidth=0.8)
    low = float(np.min(part["importance_mean"] - part["importance_std"]))
    high = float(np.max(part["importance_mean"] + part["importance_std"]))
    span = max(high, 0.0) - min(low, 0.0) or 1.0
    # room on the right for the legend, so that it never covers a bar
    ax.set_xlim(min(low, 0.0) - 0.03 * span, max(high, 0.0) + 0.45 * span)
    baseline = float(part["baseline_score"].iloc[0])
    ax.set_xlabel(f"importance: drop of {metric} (baseline {baseline:.3f})")
    ax.legend(title="method", loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title)
    return ax


def _level_label(level: float, unit: str, severity: float) -> str:
    if severity == 0:
        return "clean"
    text = f"{level:g}"
    if "dB" in unit:
        return f"{text} dB"
    if unit in ("rows missing", "area occluded", "tokens dropped"):
        return f"{level:.0%}"
    return text


def plot_robustness(
    report: Any,
    *,
    axes: Any = None,
    metric: str | None = None,
    title: str | None = None,
    show_baseline: bool | None = None,
) -> Any:
    """Score-versus-level curves of :func:`mmsk.inspection.robustness_report`.

    One axes per modality and corruption; the x axis runs from clean to the
    most severe level (evenly spaced, as MultiBench's relative robustness
    counts them), labelled with the levels. Several reports (a mapping
    label -> report, e.g. two models) are drawn on the same axes, the
    legend giving each one's relative robustness; a report's baseline, if
    any, is dashed.

    Parameters
    ----------
    report : Bunch, DataFrame or mapping of str to either
        A report (its ``scores`` table is read), or several by label.
    axes : array of matplotlib Axes or None, default=None
        Where to draw, one per curve (in the report's order); new figure when None.
    metric : str or None, default=None
        The metric to show when the report holds several; None: the first.
    title : str or None, default=None
        Title of the figure.
    show_baseline : bool or None, default=None
        Draw a report's ``baseline_score`` curve (dashed); None: only when
        one report is drawn.

    Returns
    -------
    ndarray of matplotlib.axes.Axes
        The axes drawn on, one per modality and corruption.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import pandas as pd
    >>> from mmsk.plotting import plot_robustness
    >>> scores = pd.DataFrame({"modality": "audio", "corruption": "noise", "unit": "SNR (dB)",
    ...                        "level": [float("inf"), 10, 0], "severity": [0, 0.5, 1],
    ...                        "metric": "accuracy", "score": [0.9, 0.8, 0.5]})
    >>> axes = plot_robustness({"model": {"scores": scores}})
    >>> [t.get_text() for t in axes[0].get_xticklabels()]
    ['clean', '10 dB', '0 dB']
    """
    reports = report if isinstance(report, Mapping) and "scores" not in report else {"": report}
    tables = {}
    for label, rep in reports.items():
        table = rep["scores"] if isinstance(rep, Mapping) else rep
        tables[label] = table
    show_baseline = len(tables) == 1 if show_baseline is None else show_baseline
    first = next(iter(tables.values()))
    metrics = list(dict.fromkeys(first["metric"]))
    metric = metrics[0] if metric is None else metric
    if metric not in metrics:
        raise ValueError(f"metric {metric!r} is not in the report; it has {metrics}")
    curves = list(dict.fromkeys(zip(first["modality"], first["corruption"], strict=True)))
    if axes is None:
        plt = import_optional("matplotlib.pyplot", "plot")
        n_cols = min(3, len(curves))
        n_rows = -(-len(curves) // n_cols)
        _, axes = plt.subplots(
            n_rows,
            n_cols,
            figsize=(4.2 * n_cols, 3.4 * n_rows),
            layout="constrained",
            squeeze=False,
            sharey=True,
        )
        for ax in axes.ravel()[len(curves) :]:
            ax.set_visible(False)
    axes = np.asarray(axes).ravel()[: len(curves)]
    from mmsk.inspection import relative_robustness

    cmap = import_optional("matplotlib", "plot").colormaps["tab10"]
    for ax, (modality, corruption) in zip(axes, curves, strict=True):
        ticks = None
        for j, (label, table) in enumerate(tables.items()):
            rows = table[
                (table["modality"] == modality)
                & (table["corruption"] == corruption)
                & (table["metric"] == metric)
            ].sort_values("severity")
            if rows.empty:
                continue
            ticks = rows if ticks is None else ticks
            rr = relative_robustness(rows["score"])
            name = f"{label}: RR {rr:.3f}" if label else f"RR {rr:.3f}"
            ax.plot(rows["severity"], rows["score"], marker="o", color=cmap(j % 10), label=name)
            if show_baseline and "baseline_score" in rows:
                ax.plot(
                    rows["severity"],
                    rows["baseline_score"],
                    linestyle="--",
                    color=cmap(j % 10),
                    alpha=0.7,
                    label=f"{label + ': ' if label else ''}baseline",
                )
        unit = str(ticks["unit"].iloc[0]) if "unit" in ticks else "level"
        ax.set_xticks(
            ticks["severity"],
            [
                _level_label(v, unit, sev)
                for v, sev in zip(ticks["level"], ticks["severity"], strict=True)
            ],
        )
        ax.tick_params(axis="x", labelsize=8)
        ax.set_xlabel(unit)
        ax.set_ylabel(metric)
        ax.set_title(f"{modality}: {corruption}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        axes[0].figure.suptitle(title)
    return axes


def plot_confusion_matrix(
    estimator: Any,
    X: Any,
    y: Any,
    *,
    ax: Any = None,
    normalize: str | None = None,
    title: str | None = None,
    **kwargs: Any,
) -> Any:
    """Confusion matrix of a fitted classifier, drawn by scikit-learn's display.

    A thin call of :meth:`sklearn.metrics.ConfusionMatrixDisplay.from_estimator`.

    Parameters
    ----------
    estimator : fitted classifier
        A classifier or a pipeline ending in one.
    X : array-like or DataFrame
        The input to predict.
    y : array-like
        The true labels.
    ax : matplotlib Axes or None, default=None
        Where to draw; a new figure when None.
    normalize : {"true", "pred", "all"} or None, default=None
        As in :func:`sklearn.metrics.confusion_matrix`.
    title : str or None, default=None
        Title of the axes.
    **kwargs
        Passed on to ``from_estimator`` (``labels``, ``cmap``, ``colorbar`` ...).

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.dummy import DummyClassifier
    >>> from mmsk.plotting import plot_confusion_matrix
    >>> clf = DummyClassifier(strategy="most_frequent").fit([[0], [1], [2]], [0, 1, 1])
    >>> ax = plot_confusion_matrix(clf, [[0], [1], [2]], [0, 1, 1])
    >>> ax.get_xlabel()
    'Predicted label'
    """
    import_optional("matplotlib", "plot")
    from sklearn.metrics import ConfusionMatrixDisplay

    kwargs.setdefault("colorbar", False)
    display = ConfusionMatrixDisplay.from_estimator(
        estimator, X, y, ax=_axes(ax), normalize=normalize, **kwargs
    )
    if title:
        display.ax_.set_title(title)
    return display.ax_
