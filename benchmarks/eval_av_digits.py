"""AV-digits, full data: single modalities against the five fusion methods.

Protocol
--------
Data: ``mmsk.datasets.load_av_digits(split="speaker")``, the seeded protocol of
the loader. The network trains on ``subset="train"`` (2,500 pairs, speakers
george, jackson, lucas, nicolas, yweweler) and is scored on ``subset="test"``
(500 pairs of the held-out speaker theo). Two conditions:

- ``clean``: the recordings and images as they are;
- ``degraded``: the AV-MNIST-style degradation documented in
  ``load_av_digits``: white noise mixed into every clip at ``--snr-db`` (0 dB)
  and ``--energy-removed`` (0.75) of the images' energy removed by PCA (the
  PCA is fitted by the loader on all 3,000 images, labels unused, as its docs
  say).

Features: a ColumnTransformer with ``ImagePixels(size=(28, 28), mode="L")`` on
``image`` (784 columns) and ``AudioFeatures(sr=8000, n_fft=512,
hop_length=128)`` on ``audio`` (256 columns), ``set_output(transform="pandas")``.
It is fitted on the training rows and transforms the test rows once per
condition; the extractors cache each item's features under ``--cache``.

Models: one :class:`mmsk.FusionClassifier` configuration for all (``NETWORK``
below, the demo's network; nothing is tuned, on the test set or elsewhere):
image only (the ``image__`` columns), audio only (the ``audio__`` columns) and
fused with each ``fusion`` in concat, late, gated, attention, tensor. Early
stopping watches a stratified 15 % of the *training* rows. Each model is
fitted with ``random_state`` 0 .. ``--seeds``-1 (weights, dropout, batches and
the validation split); the table gives the mean and standard deviation of the
test accuracy over seeds, and the mean fit time.

Missing modalities: the fused models (trained with ``modality_dropout=0``, the
models of the main table, and retrained with ``--modality-dropout``, 0.3)
predict the test rows with the whole image block set to NaN (what the
extractors emit for a missing item), then with the whole audio block NaN. Each
is compared with the single-modality model of the modality that is left.
Chance is 0.1.

Audio features: ``--audio embedder`` replaces ``AudioFeatures`` by
``AudioEmbedder.from_openwakeword(pooling=--pooling)``: the speech embedding
that ``openwakeword==0.4.0`` ships as ONNX (96 values per 0.78 s window, mean
pooled by default; its models are CC BY-NC-SA 4.0 and not part of mmsk: install
the package to run this). ``--models`` keeps some of the models above (e.g.
``"audio only,fused: concat"``; the missing-modality part needs all seven),
``--no-missing`` skips the missing-modality part, and ``--baselines`` adds
LogisticRegression (standardised, ``C`` by 3-fold CV on the training rows) and
``FusionClassifier()`` with its defaults, on audio alone and on image + audio,
scored on the held-out speaker.

Optional: ``--loso`` adds leave-one-speaker-out cross-validation over all
3,000 pairs (``GroupKFold(6)`` on the speakers), on the features above,
comparing ``FusionClassifier()`` with its defaults (fused, and on the image
alone), "mmsk tuned" (an inner leave-one-speaker-out CV on the training
speakers only chooses between the raw audio block and the audio block
standardised within each speaker by ``GroupStandardScaler``, with
``--tuned-estimators`` networks averaged), LogisticRegression (``C`` by CV)
and HistGradientBoosting, with per-speaker accuracies and fit times.
``--loso-only`` runs that comparison alone (about 12 minutes on 2 cores).

Runtime on 2 shared CPU cores: 10 to 12 minutes for the default run (3 seeds,
both conditions); ``--loso`` adds about 8; ``--quick`` takes under a minute.

Run
---
::

    source .venv/bin/activate
    MMSK_DATA=/work/shared/data python benchmarks/eval_av_digits.py --out av_digits.md
    python benchmarks/eval_av_digits.py --data-home /work/shared/data --loso
    python benchmarks/eval_av_digits.py --quick        # smoke run: 300 pairs, 2 epochs
    python benchmarks/eval_av_digits.py --audio embedder --conditions clean --seeds 1 \
        --models "audio only,fused: concat" --baselines   # the pretrained speech embedding

``--out`` writes every table: markdown for ``.md``, one long CSV (a ``table``
column says which) for ``.csv``. Torch runs ``--threads`` threads per fit (1 by
default: these networks are small and a second thread only helps on an idle
machine).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mmsk import AudioEmbedder, AudioFeatures, GroupStandardScaler, ImagePixels
from mmsk.datasets import load_av_digits
from mmsk.fusion import FusionClassifier  # imports torch now, not inside the first timed fit

FUSION_METHODS = ("concat", "late", "gated", "attention", "tensor")
SINGLE = ("image", "audio")
MODELS = tuple(f"{m} only" for m in SINGLE) + tuple(f"fused: {f}" for f in FUSION_METHODS)

#: One network for every model (mmsk/demo.py's NETWORK); ``fusion`` varies.
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
)
CHANCE = 0.1
#: Rows kept by ``--quick``: takes 0, 10, 20, 30, 40 (the shipped sample's rows).
QUICK_TAKES = (0, 10, 20, 30, 40)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mmsk.datasets import get_data_home

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--data-home",
        default=None,
        help="folder with fsdd/ and mnist/ (default: mmsk.datasets.get_data_home(), "
        "i.e. $MMSK_DATA, else ~/mmsk_data)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="max_epochs (default 60)")
    parser.add_argument(
        "--seeds", type=int, default=None, help="random_state 0..N-1 per model (default 3)"
    )
    parser.add_argument(
        "--conditions",
        default="clean,degraded",
        help="comma-separated, from clean, degraded (default: both)",
    )
    parser.add_argument("--snr-db", type=float, default=0.0, help="degraded: audio SNR in dB")
    parser.add_argument(
        "--energy-removed", type=float, default=0.75, help="degraded: image energy removed"
    )
    parser.add_argument(
        "--modality-dropout",
        type=float,
        default=0.3,
        help="modality_dropout of the missing-modality models (also reported: 0)",
    )
    parser.add_argument(
        "--audio",
        choices=("features", "embedder"),
        default="features",
        help="audio block: AudioFeatures (default) or AudioEmbedder.from_openwakeword() "
        "(needs openwakeword==0.4.0, whose models are CC BY-NC-SA 4.0)",
    )
    parser.add_argument(
        "--pooling", default="mean", help="--audio embedder: comma-separated pooling (mean)"
    )
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        help="comma-separated models of the held-out-speaker table (default: all seven)",
    )
    parser.add_argument(
        "--no-missing", action="store_true", help="skip the missing-modality comparison"
    )
    parser.add_argument(
        "--baselines",
        action="store_true",
        help="add LogisticRegression and FusionClassifier() defaults on audio and image+audio",
    )
    parser.add_argument("--loso", action="store_true", help="add leave-one-speaker-out CV")
    parser.add_argument(
        "--loso-only",
        action="store_true",
        help="only the leave-one-speaker-out comparison (mmsk default/tuned vs baselines)",
    )
    parser.add_argument(
        "--tuned-estimators", type=int, default=3, help="networks averaged by 'mmsk tuned'"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per fit")
    parser.add_argument(
        "--cache", default=None, help="feature cache folder (default: <tmp>/mmsk-eval-av-digits)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 300 pairs (takes 0, 10, ..., 40), 2 epochs, 1 seed",
    )
    parser.add_argument("--out", default=None, help="write the tables here (.md or .csv)")
    args = parser.parse_args(argv)
    args.data_home = get_data_home(args.data_home)
    if args.epochs is None:
        args.epochs = 2 if args.quick else NETWORK["max_epochs"]
    if args.seeds is None:
        args.seeds = 1 if args.quick else 3
    if args.seeds < 1 or args.epochs < 1:
        parser.error("--seeds and --epochs must be at least 1")
    args.conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    unknown = set(args.conditions) - {"clean", "degraded"}
    if unknown or not args.conditions:
        parser.error(f"--conditions: unknown {sorted(unknown)}; use clean, degraded")
    if args.cache is None:
        args.cache = str(Path(tempfile.gettempdir()) / "mmsk-eval-av-digits")
    args.models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown or not args.models:
        parser.error(f"--models: unknown {unknown}; choose from {', '.join(MODELS)}")
    args.pooling = [p.strip() for p in args.pooling.split(",") if p.strip()]
    return args


def audio_extractor(args: argparse.Namespace):
    """The audio block's extractor: AudioFeatures, or the openwakeword speech embedding."""
    if args.audio == "embedder":
        return AudioEmbedder.from_openwakeword(pooling=args.pooling, memory=args.cache)
    return AudioFeatures(sr=8000, n_fft=512, hop_length=128, memory=args.cache)


# --------------------------------------------------------------------------- data


def load_condition(args: argparse.Namespace, condition: str) -> dict[str, Any]:
    """Load train and test rows of one condition and extract their features."""
    degrade = (
        dict(audio_snr_db=args.snr_db, image_energy_removed=args.energy_removed)
        if condition == "degraded"
        else {}
    )
    common = dict(data_home=args.data_home, split="speaker", random_state=0, **degrade)
    train = load_av_digits(subset="train", **common)
    test = load_av_digits(subset="test", **common)
    if args.quick:
        train, test = (_keep_takes(b, QUICK_TAKES) for b in (train, test))
    features = ColumnTransformer(
        [
            ("image", ImagePixels(size=(28, 28), mode="L", memory=args.cache), "image"),
            ("audio", audio_extractor(args), "audio"),
        ]
    ).set_output(transform="pandas")
    start = time.perf_counter()
    X_train = features.fit_transform(train.data)
    X_test = features.transform(test.data)
    return dict(
        X_train=X_train,
        y_train=train.target.to_numpy(),
        groups_train=train.groups.to_numpy(),
        X_test=X_test,
        y_test=test.target.to_numpy(),
        groups_test=test.groups.to_numpy(),
        pca_components=train.image_pca_components,
        extract_s=time.perf_counter() - start,
    )


def _keep_takes(bunch, takes):
    keep = bunch.frame["take"].isin(takes).to_numpy()
    bunch.data = bunch.data[keep].reset_index(drop=True)
    bunch.target = bunch.target[keep].reset_index(drop=True)
    bunch.groups = bunch.groups[keep].reset_index(drop=True)
    bunch.frame = bunch.frame[keep].reset_index(drop=True)
    return bunch


def columns_of(X: pd.DataFrame, model: str) -> list[str]:
    """The columns a model sees: one block for "<m> only", all for a fused model."""
    if model.endswith(" only"):
        prefix = model.split()[0] + "__"
        return [c for c in X.columns if c.startswith(prefix)]
    return list(X.columns)


def without(X: pd.DataFrame, modality: str) -> pd.DataFrame:
    """``X`` with the whole ``modality`` block missing (all NaN) in every row."""
    X = X.copy()
    X.loc[:, X.columns.str.startswith(modality + "__")] = np.nan
    return X


# --------------------------------------------------------------------------- models


def make_model(model: str, args: argparse.Namespace, seed: int, **params: Any):
    fusion = {} if model.endswith(" only") else {"fusion": model.split(": ")[1]}
    return FusionClassifier(
        **{**NETWORK, "max_epochs": args.epochs},
        **fusion,
        **params,
        random_state=seed,
        n_jobs=args.threads,
    )


def fit_timed(clf, X, y):
    start = time.perf_counter()
    clf.fit(X, y)
    return clf, time.perf_counter() - start


def evaluate_split(data: dict, args: argparse.Namespace, echo) -> tuple[pd.DataFrame, dict]:
    """Fit every model for every seed on train; score on the held-out speaker."""
    rows, fitted = [], {}
    for model in args.models:
        cols = columns_of(data["X_train"], model)
        for seed in range(args.seeds):
            clf, fit_s = fit_timed(
                make_model(model, args, seed), data["X_train"][cols], data["y_train"]
            )
            acc = clf.score(data["X_test"][cols], data["y_test"])
            fitted[model, seed] = clf
            rows.append(
                dict(
                    model=model, seed=seed, accuracy=acc, fit_s=fit_s, epochs=len(clf.net_.history)
                )
            )
        last = [r["accuracy"] for r in rows[-args.seeds :]]
        echo(f"    {model:<18} accuracy {np.mean(last):.3f}  ({fit_s:.1f} s last fit)")
    return pd.DataFrame(rows), fitted


def summarize(per_seed: pd.DataFrame) -> pd.DataFrame:
    table = per_seed.groupby("model", sort=False).agg(
        accuracy=("accuracy", "mean"),
        std=("accuracy", "std"),
        min=("accuracy", "min"),
        max=("accuracy", "max"),
        fit_s=("fit_s", "mean"),
        epochs=("epochs", "mean"),
    )
    table["std"] = table["std"].fillna(0.0)
    return table


def verdict(per_seed: pd.DataFrame) -> str:
    """Best fusion against best single modality (by mean), and per-seed wins."""
    table = summarize(per_seed)
    single = table.loc[[m for m in table.index if m.endswith(" only")], "accuracy"]
    fused = table.loc[[m for m in table.index if m.startswith("fused")], "accuracy"]
    if single.empty or fused.empty:
        return "no verdict: it needs a single-modality and a fused model (see --models)"
    best_single, best_fused = single.idxmax(), fused.idxmax()
    by_seed = per_seed.pivot(index="seed", columns="model", values="accuracy")
    wins = int((by_seed[best_fused] > by_seed[best_single]).sum())
    n_fused_better = int((fused > single.max()).sum())
    return (
        f"best fusion {best_fused!r} {fused.max():.3f} vs best single {best_single!r} "
        f"{single.max():.3f}: {100 * (fused.max() - single.max()):+.1f} points; "
        f"better in {wins}/{len(by_seed)} seeds; "
        f"{n_fused_better}/{len(fused)} fusion methods beat the best single modality"
    )


def missing_modalities(
    data: dict, fitted: dict, args: argparse.Namespace, echo
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fused models scored with every row's image (then audio) block missing."""
    X_test, y_test = data["X_test"], data["y_test"]
    views = {
        "both": X_test,
        "image NaN": without(X_test, "image"),
        "audio NaN": without(X_test, "audio"),
    }
    single = {
        m: np.mean(
            [
                fitted[f"{m} only", s].score(X_test[columns_of(X_test, f"{m} only")], y_test)
                for s in range(args.seeds)
            ]
        )
        for m in SINGLE
    }
    rows = []
    for p in sorted({0.0, args.modality_dropout}):
        for fusion in FUSION_METHODS:
            model = f"fused: {fusion}"
            for seed in range(args.seeds):
                if p == 0.0:
                    clf, fit_s = fitted[model, seed], np.nan  # the main table's model
                else:
                    clf, fit_s = fit_timed(
                        make_model(model, args, seed, modality_dropout=p),
                        data["X_train"],
                        data["y_train"],
                    )
                row = dict(fusion=fusion, modality_dropout=p, seed=seed, fit_s=fit_s)
                row.update({view: clf.score(X, y_test) for view, X in views.items()})
                rows.append(row)
            echo(f"    {model:<18} modality_dropout={p:<4} done")
    per_seed = pd.DataFrame(rows)
    table = per_seed.groupby(["modality_dropout", "fusion"], sort=False)[
        ["both", "image NaN", "audio NaN"]
    ].mean()
    table = table.rename(
        columns={"image NaN": "audio left (image NaN)", "audio NaN": "image left (audio NaN)"}
    )
    table["audio-only model"] = single["audio"]
    table["image-only model"] = single["image"]
    table["d_audio"] = table["audio left (image NaN)"] - single["audio"]
    table["d_image"] = table["image left (audio NaN)"] - single["image"]
    return table, per_seed


def missing_verdict(table: pd.DataFrame) -> list[str]:
    """Per modality_dropout: lowest one-modality accuracy and the worst shortfall."""
    lines = []
    for p, part in table.groupby(level="modality_dropout", sort=False):
        left = part[["audio left (image NaN)", "image left (audio NaN)"]]
        deltas = part[["d_audio", "d_image"]].stack()
        _, fusion, column = deltas.idxmin()
        lines.append(
            f"modality_dropout={p:g}: lowest one-modality accuracy {left.min().min():.3f} "
            f"(chance {CHANCE}); worst shortfall against the single-modality model "
            f"{100 * deltas.min():+.1f} points ({fusion}, {column})"
        )
    return lines


def per_speaker_audio(X: pd.DataFrame, groups: np.ndarray) -> pd.DataFrame:
    """``X`` with the audio block standardised within each speaker (GroupStandardScaler).

    Each speaker's statistics come from that speaker's own rows, labels
    unused: at test time, the unlabelled clips of the new speaker.
    """
    audio = [c for c in X.columns if c.startswith("audio__")]
    out = X.astype(np.float64)
    out[audio] = GroupStandardScaler(min_group_size=2).fit_transform(X[audio], groups=groups)
    return out


LOSO_MODELS = (
    "image only (mmsk default)",
    "mmsk default",
    "mmsk tuned",
    "LogisticRegression",
    "HistGradientBoosting",
)


def _loso_baseline(model: str):
    if model == "LogisticRegression":
        return GridSearchCV(
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
            {"logisticregression__C": [0.01, 0.1, 1.0]},
            cv=3,
        )
    return HistGradientBoostingClassifier(random_state=0)


def _tune(X_raw, X_group, y, groups, args, echo):
    """Pick raw or per-speaker audio by leave-one-speaker-out CV on the training rows."""
    inner = list(GroupKFold(len(np.unique(groups))).split(X_raw, y, groups))
    scores = {}
    for variant, X in (("raw audio", X_raw), ("per-speaker audio", X_group)):
        fold_scores = []
        for train, valid in inner:
            clf = FusionClassifier(n_estimators=args.tuned_estimators, random_state=0, n_jobs=1)
            clf.fit(X.iloc[train], y[train])
            fold_scores.append(clf.score(X.iloc[valid], y[valid]))
        scores[variant] = float(np.mean(fold_scores))
    best = max(scores, key=scores.get)
    echo(f"      inner CV: {', '.join(f'{k} {v:.3f}' for k, v in scores.items())} -> {best}")
    return best


def loso(data: dict, args: argparse.Namespace, echo) -> pd.DataFrame:
    """Leave-one-speaker-out CV over train + test rows: mmsk default and tuned vs baselines.

    The same features for every model. ``mmsk default`` is ``FusionClassifier()``
    with its defaults; ``mmsk tuned`` chooses, by an inner leave-one-speaker-out
    CV on the training speakers only, between the raw audio block and the audio
    block standardised within each speaker (``GroupStandardScaler``), with
    ``n_estimators=--tuned-estimators`` networks averaged.
    """
    X = pd.concat([data["X_train"], data["X_test"]], ignore_index=True)
    y = np.concatenate([data["y_train"], data["y_test"]])
    groups = np.concatenate([data["groups_train"], data["groups_test"]])
    X_group = per_speaker_audio(X, groups)
    image = columns_of(X, "image only")
    folds = list(GroupKFold(len(np.unique(groups))).split(X, y, groups))
    rows = []
    for model in LOSO_MODELS:
        scores, times, chosen = [], [], []
        for train, test in folds:
            start = time.perf_counter()
            X_fit, X_eval = X.iloc[train], X.iloc[test]
            if model == "mmsk tuned":
                variant = _tune(
                    X.iloc[train], X_group.iloc[train], y[train], groups[train], args, echo
                )
                chosen.append(variant)
                source = X_group if variant == "per-speaker audio" else X
                X_fit, X_eval = source.iloc[train], source.iloc[test]
                clf = FusionClassifier(n_estimators=args.tuned_estimators, random_state=0, n_jobs=1)
            elif model.startswith("image only"):
                X_fit, X_eval = X_fit[image], X_eval[image]
                clf = FusionClassifier(random_state=0, n_jobs=1)
            elif model == "mmsk default":
                clf = FusionClassifier(random_state=0, n_jobs=1)
            else:
                clf = _loso_baseline(model)
            clf.fit(X_fit, y[train])
            scores.append(clf.score(X_eval, y[test]))
            times.append(time.perf_counter() - start)
            echo(f"    {model:<26} {groups[test][0]:<9} {scores[-1]:.3f}  {times[-1]:.1f} s")
        row = dict(model=model, accuracy=np.mean(scores), fit_s=np.mean(times))
        row.update({str(groups[test][0]): s for (_, test), s in zip(folds, scores, strict=True)})
        if chosen:
            row["chosen"] = ", ".join(sorted(set(chosen)))
        rows.append(row)
        echo(f"    {model:<26} mean over {len(folds)} speakers {row['accuracy']:.3f}")
    return pd.DataFrame(rows).set_index("model")


def baselines(data: dict, args: argparse.Namespace, echo) -> pd.DataFrame:
    """LogisticRegression and FusionClassifier() defaults, audio alone and image + audio."""
    rows = []
    audio = columns_of(data["X_train"], "audio only")
    for inputs, cols in (("audio", audio), ("image + audio", list(data["X_train"].columns))):
        for model in ("LogisticRegression", "FusionClassifier()"):
            if model == "LogisticRegression":
                clf = _loso_baseline(model)
            else:
                clf = FusionClassifier(random_state=0, n_jobs=args.threads)
            clf, fit_s = fit_timed(clf, data["X_train"][cols], data["y_train"])
            acc = clf.score(data["X_test"][cols], data["y_test"])
            rows.append(dict(inputs=inputs, model=model, accuracy=acc, fit_s=fit_s))
            echo(f"    {inputs:<14} {model:<20} accuracy {acc:.3f}  ({fit_s:.1f} s)")
    return pd.DataFrame(rows).set_index(["inputs", "model"])


# --------------------------------------------------------------------------- output


def fmt(table: pd.DataFrame) -> str:
    return table.to_string(float_format=lambda v: f"{v:.3f}", na_rep="-")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if np.isnan(value) else f"{value:.3f}"
    return str(value)


def to_markdown(table: pd.DataFrame) -> str:
    table = table.reset_index()
    lines = [
        "| " + " | ".join(map(str, table.columns)) + " |",
        "|" + "|".join("---" for _ in table.columns) + "|",
    ]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table.itertuples(False)]
    return "\n".join(lines)


def write_out(path: str, tables: dict[str, pd.DataFrame], notes: list[str]) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        long = pd.concat(
            [t.reset_index().assign(table=name) for name, t in tables.items()], ignore_index=True
        )
        long.to_csv(out, index=False)
    else:
        parts = ["# AV-digits evaluation (benchmarks/eval_av_digits.py)", ""]
        parts += [f"- {n}" for n in notes] + [""]
        for name, table in tables.items():
            parts += [f"## {name}", "", to_markdown(table), ""]
        out.write_text("\n".join(parts))


def main(argv: list[str] | None = None, echo=print) -> dict[str, pd.DataFrame]:
    """Run the evaluation; return the tables by name (also printed and, with --out, written)."""
    args = parse_args(argv)
    start = time.perf_counter()
    echo(
        f"AV-digits from {args.data_home}; split='speaker' (held out: theo); "
        f"{args.seeds} seed(s); max_epochs={args.epochs}; torch threads={args.threads}; "
        f"audio block: {type(audio_extractor(args)).__name__}"
        + ("; QUICK smoke run (300 pairs)" if args.quick else "")
    )
    tables: dict[str, pd.DataFrame] = {}
    notes: list[str] = []
    for condition in args.conditions:
        data = load_condition(args, condition)
        what = (
            f"audio at {args.snr_db:g} dB SNR, {args.energy_removed:.0%} of image energy "
            f"removed ({data['pca_components']} PCA components kept)"
            if condition == "degraded"
            else "no degradation"
        )
        echo(
            f"\n== {condition}: {what}; train {len(data['y_train'])} rows, test "
            f"{len(data['y_test'])} rows; features {data['X_train'].shape[1]} columns "
            f"({data['extract_s']:.1f} s)"
        )
        if args.loso_only:
            args.loso = True
        if not args.loso_only:
            section = time.perf_counter()
            per_seed, fitted = evaluate_split(data, args, echo)
            table = summarize(per_seed)
            line = verdict(per_seed)
            echo(f"\n{condition}: test accuracy on the held-out speaker (mean over seeds)")
            echo(fmt(table))
            echo(line)
            echo(
                f"({condition}: held-out-speaker models took {time.perf_counter() - section:.0f} s)"
            )
            tables[f"{condition}: held-out speaker"] = table
            notes.append(f"{condition} ({what}): {line}")

            if args.no_missing or set(args.models) != set(MODELS):
                echo("\n  (missing modalities skipped: --no-missing, or not every model run)")
            else:
                echo(f"\n  missing modalities ({condition}) ...")
                section = time.perf_counter()
                missing, _ = missing_modalities(data, fitted, args, echo)
                echo(
                    f"\n{condition}: one modality missing in every test row (fused models; "
                    f"d_* = left modality minus its single-modality model; chance {CHANCE})"
                )
                echo(fmt(missing))
                for line in missing_verdict(missing):
                    echo(line)
                    notes.append(f"{condition} missing modality: {line}")
                took = time.perf_counter() - section
                echo(f"({condition}: missing-modality part took {took:.0f} s)")
                tables[f"{condition}: missing modality"] = missing

        if args.baselines:
            echo(f"\n  baselines on the same features ({condition}) ...")
            table = baselines(data, args, echo)
            echo(f"\n{condition}: baselines, test accuracy on the held-out speaker")
            echo(fmt(table))
            tables[f"{condition}: baselines"] = table

        if args.loso:
            echo(f"\n  leave-one-speaker-out ({condition}) ...")
            section = time.perf_counter()
            table = loso(data, args, echo)
            echo(f"\n{condition}: leave-one-speaker-out CV, 3,000 pairs (random_state=0)")
            echo(fmt(table))
            echo(f"({condition}: leave-one-speaker-out took {time.perf_counter() - section:.0f} s)")
            tables[f"{condition}: leave-one-speaker-out"] = table
    wall = time.perf_counter() - start
    echo(f"\ntotal wall time {wall:.0f} s")
    notes.append(f"total wall time {wall:.0f} s; args: {vars(args)}")
    if args.out:
        write_out(args.out, tables, notes)
        echo(f"wrote {args.out}")
    return tables


if __name__ == "__main__":
    main()
