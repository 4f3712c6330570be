"""The main job: image-only, audio-only and fused networks compared on AV-digits.

``mmsk demo`` calls :func:`run_demo`. On the shipped AV-digits sample (or the
full data under ``data_home``) it cross-validates, speakers held out, a
:class:`~mmsk.FusionClassifier` on the image block alone, on the audio block
alone, and on both with each of the five fusion methods (the last through a
:class:`~sklearn.model_selection.GridSearchCV` over ``fusion``). It prints a
table and writes two charts: accuracy per model with error bars, and the
training curves of the best model.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_validate
from sklearn.pipeline import Pipeline

from . import datasets
from .audio import AudioFeatures
from .fusion import FusionClassifier
from .image import ImagePixels

__all__ = ["FUSION_METHODS", "make_demo_model", "run_demo"]

FUSION_METHODS = ("concat", "late", "gated", "attention", "tensor")

#: The network used by every demo model; only ``fusion`` is searched.
NETWORK = dict(
    hidden_units=64,
    embed_dim=32,
    dropout=0.2,
    lr=3e-3,
    max_epochs=60,
    batch_size=32,
    early_stopping=True,
    n_iter_no_change=10,
    validation_fraction=0.15,
    n_estimators=1,  # one network per fit: the demo compares fusion methods, in about 30 s
    random_state=0,
)


def make_demo_model(
    modalities: tuple[str, ...] = ("image", "audio"), *, cache: Any = None, **network: Any
) -> Pipeline:
    """Build the demo's pipeline: extractors in a ColumnTransformer, then fusion.

    Parameters
    ----------
    modalities : tuple of str, default=("image", "audio")
        Which columns of AV-digits to use.
    cache : None, str or joblib.Memory, default=None
        Feature cache of the extractors and the pipeline, so each item is
        extracted once across models, folds and grid points.
    **network
        Parameters of :class:`~mmsk.FusionClassifier`, on top of the demo's
        defaults.

    Returns
    -------
    sklearn.pipeline.Pipeline
        Steps ``"features"`` and ``"fusion"``.

    Examples
    --------
    >>> from mmsk.demo import make_demo_model
    >>> model = make_demo_model(("audio",), fusion="gated")
    >>> model.named_steps["fusion"].fusion
    'gated'
    """
    extractors = {
        "image": ImagePixels(size=(28, 28), mode="L", memory=cache),
        "audio": AudioFeatures(sr=8000, n_fft=512, hop_length=128, memory=cache),
    }
    features = ColumnTransformer([(m, extractors[m], m) for m in modalities]).set_output(
        transform="pandas"
    )
    fusion = FusionClassifier(**{**NETWORK, **network})
    memory = None if cache is None else str(Path(cache) / "pipeline")
    return Pipeline([("features", features), ("fusion", fusion)], memory=memory)


def _fold_scores(cv_results: dict[str, Any], index: int, n_splits: int) -> np.ndarray:
    return np.array([cv_results[f"split{k}_test_score"][index] for k in range(n_splits)])


class _GridProgress:
    """A scorer for GridSearchCV that reports each candidate once its folds are scored.

    ``GridSearchCV`` fits candidate by candidate, fold by fold, when it runs
    in one process; after every ``n_splits`` scores this echoes the mean of
    the candidate just finished. The score is ``estimator.score`` (accuracy),
    what ``scoring=None`` would use. Used only when the search runs in one
    process (a worker's echo would not be seen).
    """

    def __init__(self, names: list[str], n_splits: int, echo: Any) -> None:
        self.names, self.n_splits, self.echo = names, n_splits, echo
        self.scores: list[float] = []
        self.start = time.perf_counter()

    def __call__(self, estimator: Any, X: Any, y: Any) -> float:
        score = float(estimator.score(X, y))
        self.scores.append(score)
        done, rest = divmod(len(self.scores), self.n_splits)
        if rest == 0 and done <= len(self.names):
            mean = float(np.mean(self.scores[-self.n_splits :]))
            seconds = time.perf_counter() - self.start
            name = f"fused: {self.names[done - 1]}"
            self.echo(f"    {name:<18} accuracy {mean:.3f}  ({seconds:.0f} s)")
            self.start = time.perf_counter()
        return score


def run_demo(
    *,
    data_home: str | Path | None = None,
    full: bool = False,
    cv: int = 5,
    out_dir: str | Path = "mmsk-demo",
    n_jobs: int | None = None,
    plot: bool = True,
    max_epochs: int | None = None,
    echo: Any = print,
) -> pd.DataFrame:
    """Cross-validate image-only, audio-only and fused networks on AV-digits.

    Parameters
    ----------
    data_home : str, path or None, default=None
        Where the full data live (see :func:`mmsk.datasets.get_data_home`);
        used only with ``full=True``.
    full : bool, default=False
        Use the full AV-digits data (3,000 pairs) instead of the shipped
        sample (300 pairs).
    cv : int, default=5
        Number of folds; folds hold speakers out (:class:`GroupKFold`).
    out_dir : str or path, default="mmsk-demo"
        Folder for the charts and the feature cache.
    n_jobs : int or None, default=None
        Parallel folds and grid points (joblib).
    plot : bool, default=True
        Write ``accuracy.png`` and ``training.png`` (needs matplotlib:
        ``pip install 'mmsk[plot]'``).
    max_epochs : int or None, default=None
        Override the networks' ``max_epochs`` (60, with early stopping).
    echo : callable, default=print
        Where the progress and the table go.

    Returns
    -------
    pandas.DataFrame
        One row per model: mean and std of the accuracy over folds, and the
        mean fit time of one fold.

    Examples
    --------
    >>> from mmsk.demo import run_demo
    >>> table = run_demo(cv=2, plot=False, echo=lambda *a: None)  # doctest: +SKIP
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache"
    bunch = datasets.load_av_digits(data_home=data_home) if full else datasets.load_sample()
    X, y, groups = bunch.data, bunch.target, bunch.groups
    n_groups = len(np.unique(groups))
    if not 2 <= cv <= n_groups:
        raise ValueError(f"cv must be between 2 and the number of speakers ({n_groups}), got {cv}")
    network = {} if max_epochs is None else {"max_epochs": max_epochs}
    folds = GroupKFold(cv)
    echo(
        f"AV-digits {'full data' if full else 'shipped sample'}: {len(y)} pairs of a spoken "
        f"and a handwritten digit, {n_groups} speakers; {cv}-fold CV, speakers held out."
    )
    scores: dict[str, np.ndarray] = {}
    rows = []
    for modality in ("image", "audio"):
        start = time.perf_counter()
        model = make_demo_model((modality,), cache=cache, **network)
        result = cross_validate(model, X, y, groups=groups, cv=folds, n_jobs=n_jobs)
        echo(
            f"    {modality + ' only':<18} accuracy {result['test_score'].mean():.3f}  "
            f"({time.perf_counter() - start:.0f} s)"
        )
        scores[f"{modality} only"] = result["test_score"]
        rows.append((f"{modality} only", result["test_score"], result["fit_time"].mean()))

    echo(f"  GridSearchCV over fusion in {list(FUSION_METHODS)}:")
    search = GridSearchCV(
        make_demo_model(cache=cache, **network),
        {"fusion__fusion": list(FUSION_METHODS)},
        # progress lines only in one process: a worker's echo would not be seen
        scoring=_GridProgress(list(FUSION_METHODS), cv, echo) if n_jobs in (None, 1) else None,
        cv=folds,
        n_jobs=n_jobs,
    )
    start = time.perf_counter()
    search.fit(X, y, groups=groups)
    echo(f"  ... GridSearchCV took {time.perf_counter() - start:.0f} s")
    results = search.cv_results_
    for i, params in enumerate(results["params"]):
        name = f"fused: {params['fusion__fusion']}"
        fold_scores = _fold_scores(results, i, cv)
        scores[name] = fold_scores
        rows.append((name, fold_scores, results["mean_fit_time"][i]))

    table = pd.DataFrame(
        [
            {"model": name, "accuracy": s.mean(), "std": s.std(), "fit_s": fit}
            for name, s, fit in rows
        ]
    ).set_index("model")
    echo(table.to_string(float_format=lambda v: f"{v:.3f}"))
    best = search.best_params_["fusion__fusion"]
    echo(f"best fusion by GridSearchCV: {best!r} (accuracy {search.best_score_:.3f})")
    if plot:
        from .plotting import plot_cv_scores, plot_history

        ax = plot_cv_scores(
            scores,
            title=f"AV-digits, {cv}-fold speaker-held-out CV ({len(y)} pairs)",
            chance=0.1,
        )
        ax.tick_params(axis="x", labelrotation=20)
        path = out / "accuracy.png"
        ax.figure.savefig(path, dpi=120)
        echo(f"wrote {path}")
        net = search.best_estimator_.named_steps["fusion"].net_
        ax = plot_history(
            net.history, title=f"best model (fusion={best!r}) refit: train vs 15% held-out loss"
        )
        path = out / "training.png"
        ax.figure.savefig(path, dpi=120)
        echo(f"wrote {path}")
    return table
