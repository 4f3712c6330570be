"""Tabular + text: mmsk defaults and mmsk tuned against LogisticRegression and HistGradientBoosting.

Protocol
--------
Two published splits under ``<data-home>``:

- ``imdb_genre``: is the film a drama (``Genre_is_Drama``); 800 train, 200
  test rows; ROC-AUC of ``predict_proba[:, 1]``. ``Rank`` (a row id) dropped.
- ``petfinder``: ``AdoptionSpeed`` (5 classes); ``val.csv`` (1,500 rows) to
  train and ``test.csv`` (1,500 rows) to test, as the folder's README says;
  macro-F1 of ``predict``. Every model gets ``class_weight="balanced"``
  (macro-F1 weighs the rare class 0 as much as the others).

Features, the same for every model: the ``"features"`` step of
``mmsk.make_multimodal_pipeline`` with its defaults (text ->
``TfidfSVD(64)``, numeric -> median imputation with indicators and
standardisation, categorical -> one-hot), fitted on the training rows. imdb:
text ``Description``, numeric ``Year, Runtime, Rating, Votes, Revenue,
Metascore``. petfinder: text ``Description``, the numeric and categorical
columns of its ``column_info.json``. A missing description is a NaN block;
LogisticRegression gets it as 0 (``SimpleImputer``), HistGradientBoosting
as NaN.

Models:

- ``mmsk default``: ``FusionClassifier()`` with its defaults (plus the
  class weights above), ``random_state=0``;
- ``mmsk tuned``: ``GridSearchCV`` (3-fold stratified CV on the training rows
  only, the task's metric) over ``lr`` in {1e-3, 3e-3}, ``scoring`` in {None,
  the metric} with ``n_estimators=5``;
- ``LogisticRegression``: ``StandardScaler`` + LR, ``C`` chosen by 5-fold CV on
  the training rows from {0.01, 0.03, 0.1, 0.3, 1, 3};
- ``HistGradientBoosting``: ``learning_rate`` in {0.03, 0.1} and
  ``max_leaf_nodes`` in {15, 31} by 3-fold CV on the training rows.

Each is scored once on the test rows. Wall times include the model selection
and exclude the shared feature extraction (printed once). Torch runs one
thread (``n_jobs=1``).

Run::

    python benchmarks/eval_tabular_text.py --data-home ../shared/data
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, log_loss, roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mmsk import FusionClassifier, make_multimodal_pipeline
from mmsk.datasets import get_data_home

IMDB_NUMERIC = ["Year", "Runtime (Minutes)", "Rating", "Votes", "Revenue (Millions)", "Metascore"]


def load_imdb(home):
    folder = home / "imdb_genre"
    frames = [pd.read_csv(folder / name) for name in ("train.csv", "test.csv")]
    out = []
    for df in frames:
        y = df["Genre_is_Drama"].astype(str).str.lower().map({"true": 1, "false": 0})
        out.append((df.drop(columns=["Genre_is_Drama", "Rank"]), y.to_numpy(dtype=int)))
    roles = dict(text="Description", numeric=IMDB_NUMERIC)
    return out, roles, "roc_auc", None


def load_petfinder(home):
    folder = home / "petfinder"
    info = json.loads((folder / "column_info.json").read_text())
    out = []
    for name in ("val.csv", "test.csv"):
        df = pd.read_csv(folder / name)
        out.append((df.drop(columns=["AdoptionSpeed"]), df["AdoptionSpeed"].to_numpy()))
    roles = dict(text="Description", numeric=info["num_cols"], categorical=info["cat_cols"])
    return out, roles, "f1_macro", "balanced"


def models(metric, class_weight):
    inner = StratifiedKFold(3, shuffle=True, random_state=0)
    net = dict(random_state=0, n_jobs=1, class_weight=class_weight)
    return {
        "mmsk default": lambda: FusionClassifier(**net),
        "mmsk tuned": lambda: GridSearchCV(
            FusionClassifier(n_estimators=5, **net),
            {"lr": [1e-3, 3e-3], "scoring": [None, metric]},
            scoring=metric,
            cv=inner,
        ),
        "LogisticRegression": lambda: GridSearchCV(
            make_pipeline(
                SimpleImputer(strategy="constant", fill_value=0.0),
                StandardScaler(),
                LogisticRegression(max_iter=3000, class_weight=class_weight),
            ),
            {"logisticregression__C": [0.01, 0.03, 0.1, 0.3, 1, 3]},
            scoring=metric,
            cv=StratifiedKFold(5, shuffle=True, random_state=0),
        ),
        "HistGradientBoosting": lambda: GridSearchCV(
            HistGradientBoostingClassifier(random_state=0, class_weight=class_weight),
            {"learning_rate": [0.03, 0.1], "max_leaf_nodes": [15, 31]},
            scoring=metric,
            cv=inner,
        ),
    }


def score(metric, model, X, y):
    if metric == "roc_auc":
        return roc_auc_score(y, model.predict_proba(X)[:, 1])
    return f1_score(y, model.predict(X), average="macro")


def evaluate(name, loader, home, echo=print):
    ((X_train, y_train), (X_test, y_test)), roles, metric, class_weight = loader(home)
    features = make_multimodal_pipeline(**roles, random_state=0).named_steps["features"]
    start = time.perf_counter()
    F_train = features.fit_transform(X_train)
    F_test = features.transform(X_test)
    echo(
        f"{name}: {len(y_train)} train / {len(y_test)} test rows, {F_train.shape[1]} feature "
        f"columns, extracted in {time.perf_counter() - start:.1f} s; metric {metric}"
    )
    rows = []
    for label, make in models(metric, class_weight).items():
        start = time.perf_counter()
        model = make().fit(F_train, y_train)
        seconds = time.perf_counter() - start
        value = score(metric, model, F_test, y_test)
        loss = log_loss(y_test, model.predict_proba(F_test), labels=np.unique(y_train))
        chosen = getattr(model, "best_params_", "")
        rows.append(
            dict(data=name, model=label, metric=metric, test=value, log_loss=loss, fit_s=seconds)
        )
        echo(
            f"  {label:<22} test {metric} {value:.3f}  log-loss {loss:.3f}  "
            f"{seconds:6.1f} s {chosen}"
        )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=None, help="folder holding imdb_genre/, petfinder/")
    parser.add_argument("--data", nargs="+", default=["imdb_genre", "petfinder"])
    args = parser.parse_args(argv)
    home = get_data_home(args.data_home)
    loaders = {"imdb_genre": load_imdb, "petfinder": load_petfinder}
    rows = []
    for name in args.data:
        rows += evaluate(name, loaders[name], home)
    table = pd.DataFrame(rows)
    print()
    print("| data (metric) | model | test | log-loss | fit time (s) |")
    print("|---|---|---|---|---|")
    for r in table.itertuples():
        print(
            f"| {r.data} ({r.metric}) | {r.model} | {r.test:.3f} | {r.log_loss:.3f} "
            f"| {r.fit_s:.1f} |"
        )
    return table


if __name__ == "__main__":
    main()
