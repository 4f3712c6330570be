"""The main job: image-only, audio-only and fused models compared on AV-digits.

``mmsk demo`` calls :func:`run_demo`. It cross-validates, speaker held out,
one model per modality set on the shipped AV-digits sample (or the full
data under ``data_home``), prints a table and writes a bar chart.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_validate
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from . import datasets
from .audio import AudioFeatures
from .image import ImagePixels

__all__ = ["make_demo_models", "run_demo"]

MODALITY_SETS = {
    "image only": ("image",),
    "audio only": ("audio",),
    "image + audio": ("image", "audio"),
}


def _extractors(cache: Any) -> dict[str, Any]:
    return {
        "image": ImagePixels(size=(28, 28), mode="L", memory=cache),
        "audio": AudioFeatures(sr=8000, n_fft=512, hop_length=128, memory=cache),
    }


def make_demo_models(cache: Any = None) -> dict[str, Pipeline]:
    """Build the demo's pipelines, one per modality set.

    Parameters
    ----------
    cache : None, str or joblib.Memory, default=None
        Feature cache shared by the extractors of every pipeline, so each
        item is extracted once across models and folds.

    Returns
    -------
    dict of str to Pipeline
        ``"image only"``, ``"audio only"`` and ``"image + audio"``.

    Examples
    --------
    >>> from mmsk.demo import make_demo_models
    >>> sorted(make_demo_models())
    ['audio only', 'image + audio', 'image only']
    """
    models = {}
    for name, modalities in MODALITY_SETS.items():
        extractors = _extractors(cache)
        features = ColumnTransformer([(m, extractors[m], m) for m in modalities])
        classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        models[name] = Pipeline([("features", features), ("classifier", classifier)])
    return models


def run_demo(
    *,
    data_home: str | Path | None = None,
    full: bool = False,
    cv: int = 5,
    out_dir: str | Path = "mmsk-demo",
    n_jobs: int | None = None,
    plot: bool = True,
    echo: Any = print,
) -> pd.DataFrame:
    """Cross-validate image-only, audio-only and fused models on AV-digits.

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
        Folder for the chart and the feature cache.
    n_jobs : int or None, default=None
        Parallel folds (joblib).
    plot : bool, default=True
        Write ``accuracy.png`` (needs matplotlib: ``pip install 'mmsk[plot]'``).
    echo : callable, default=print
        Where the table goes.

    Returns
    -------
    pandas.DataFrame
        One row per model: mean and std of the accuracy over folds, fit time.

    Examples
    --------
    >>> from mmsk.demo import run_demo
    >>> table = run_demo(cv=2, plot=False, echo=lambda *a: None)  # doctest: +SKIP
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bunch = datasets.load_av_digits(data_home=data_home) if full else datasets.load_sample()
    X, y, groups = bunch.data, bunch.target, bunch.groups
    n_groups = len(np.unique(groups))
    if not 2 <= cv <= n_groups:
        raise ValueError(f"cv must be between 2 and the number of speakers ({n_groups}), got {cv}")
    echo(
        f"AV-digits {'full data' if full else 'shipped sample'}: {len(y)} pairs of a spoken "
        f"and a handwritten digit, {n_groups} speakers; {cv}-fold CV, speakers held out."
    )
    scores: dict[str, np.ndarray] = {}
    rows = []
    for name, model in make_demo_models(cache=out / "cache").items():
        start = time.perf_counter()
        result = cross_validate(model, X, y, groups=groups, cv=GroupKFold(cv), n_jobs=n_jobs)
        scores[name] = result["test_score"]
        rows.append(
            {
                "model": name,
                "accuracy": result["test_score"].mean(),
                "std": result["test_score"].std(),
                "fit_s": result["fit_time"].mean(),
                "total_s": time.perf_counter() - start,
            }
        )
    table = pd.DataFrame(rows).set_index("model")
    echo(table.to_string(float_format=lambda v: f"{v:.3f}"))
    if plot:
        from .plotting import plot_cv_scores

        ax = plot_cv_scores(
            scores,
            title=f"AV-digits, {cv}-fold speaker-held-out CV ({len(y)} pairs)",
            chance=0.1,
        )
        path = out / "accuracy.png"
        ax.figure.savefig(path, dpi=120)
        echo(f"wrote {path}")
    return table
