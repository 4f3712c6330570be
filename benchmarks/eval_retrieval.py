"""AV-digits retrieval, speaker held out: hand-made audio features against a speech embedding.

Protocol
--------
The protocol of ``examples/plot_retrieval.py``, for two audio blocks in the
same run. Data: ``mmsk.datasets.load_av_digits(split="speaker")``: the
retriever trains on ``subset="train"`` (2,500 pairs of george, jackson,
lucas, nicolas, yweweler) and is scored on ``subset="test"`` (the 500 pairs
of the held-out speaker theo): each of theo's clips searches the gallery of
his 500 images, and an image is relevant when it shows the spoken digit.

Features: ``ImagePixels(size=(28, 28), mode="L")`` on ``image`` and, on
``audio``, one of

- ``AudioFeatures``: ``AudioFeatures(sr=8000, n_fft=512, hop_length=128)``,
  librosa summary statistics (256 columns);
- ``AudioEmbedder``: ``AudioEmbedder.from_openwakeword(pooling="mean")``,
  the speech embedding that ``openwakeword==0.4.0`` ships as ONNX (96
  columns; its models are CC BY-NC-SA 4.0 and not part of mmsk). Skipped,
  with the reason printed, when openwakeword is not installed.

The audio block is standardised within each speaker
(``GroupStandardScaler``; at test time with theo's own unlabelled clips).
Model: ``CrossModalRetriever(query="audio", target="image", n_jobs=1)`` with
its defaults, fitted with the digit labels (same-digit pairs are
positives); the initial temperature is chosen from {0.07, 0.2} by
``GridSearchCV`` with ``GroupKFold(5)`` on the *training* speakers (MRR,
relevance by digit), so theo plays no part in the choice; the refit model
is scored once on theo: recall@1, recall@5, MRR.

Repetition ``r`` fits every variant with ``random_state=r``, variants
interleaved (A B, A B, ...): the table gives the median and the range over
repetitions of each score and of the fit time (selection and refit; the
feature extraction, done once per variant before, is reported apart).

Run::

    python benchmarks/eval_retrieval.py --data-home /work/shared/data
    python benchmarks/eval_retrieval.py --quick   # the shipped 300-pair sample, 10 epochs
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from _timing import add_common_arguments, interleaved, machine_line
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, GroupKFold

from mmsk import AudioEmbedder, AudioFeatures, GroupStandardScaler, ImagePixels
from mmsk.datasets import load_av_digits, load_sample
from mmsk.fusion import CrossModalRetriever  # imports torch before the first timed fit
from mmsk.fusion.retrieval import mean_reciprocal_rank, recall_at_k

SCORERS = {"recall@1": recall_at_k(1), "recall@5": recall_at_k(5), "MRR": mean_reciprocal_rank}
TEMPERATURES = (0.07, 0.2)


def audio_blocks() -> dict[str, Callable[[], Any]]:
    """The audio extractors to compare; the embedder only when openwakeword is there."""
    blocks: dict[str, Callable[[], Any]] = {
        "AudioFeatures": lambda: AudioFeatures(sr=8000, n_fft=512, hop_length=128),
    }
    try:
        AudioEmbedder.from_openwakeword()
    except (ImportError, FileNotFoundError) as exc:
        print(f"AudioEmbedder skipped: {type(exc).__name__}: {exc}", flush=True)
    else:
        blocks["AudioEmbedder"] = lambda: AudioEmbedder.from_openwakeword(pooling="mean", n_jobs=1)
    return blocks


def extract(block: Any, train: Any, test: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pixels and the audio block, the audio standardised within each speaker."""
    features = ColumnTransformer(
        [("image", ImagePixels(size=(28, 28), mode="L"), "image"), ("audio", block, "audio")]
    ).set_output(transform="pandas")
    X_train, X_test = features.fit_transform(train.data), features.transform(test.data)
    audio = [c for c in X_train.columns if c.startswith("audio__")]
    scaler = GroupStandardScaler(min_group_size=2)
    X_train[audio] = scaler.fit_transform(X_train[audio], groups=train.groups)
    X_test[audio] = scaler.transform(X_test[audio], groups=test.groups)
    return X_train, X_test


def fit_and_score(
    X_train: pd.DataFrame,
    X_test: pd.DataFrame,
    train: Any,
    y_test: np.ndarray,
    seed: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Choose the temperature by speaker-held-out CV on the training rows; score on theo."""
    search = GridSearchCV(
        CrossModalRetriever(
            query="audio",
            target="image",
            max_epochs=args.epochs,
            batch_size=args.batch_size,
            n_jobs=1,
            random_state=seed,
        ),
        {"temperature": list(TEMPERATURES)},
        scoring=SCORERS,
        refit="MRR",
        cv=GroupKFold(n_splits=args.cv),
    )
    search.fit(X_train, train.target.to_numpy(), groups=train.groups)
    model = search.best_estimator_
    scores = {key: scorer(model, X_test, y_test) for key, scorer in SCORERS.items()}
    return dict(
        scores,
        temperature=search.best_params_["temperature"],
        epochs=len(model.net_.history),
    )


def spread(values: list[float], fmt: str = ".3f") -> str:
    """``median [min, max]`` of ``values``, or the value alone."""
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}, {max(values):{fmt}}]"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=None, help="folder holding fsdd/ and mnist/")
    parser.add_argument("--epochs", type=int, default=100, help="max_epochs (default 100)")
    parser.add_argument("--cv", type=int, default=5, help="GroupKFold splits (default 5)")
    add_common_arguments(parser, repeats=3)
    args = parser.parse_args(argv)
    args.batch_size = 256
    if args.quick:
        args.epochs, args.cv, args.batch_size = 10, 2, 64
        args.repeats, args.warmup = min(args.repeats, 2), 0
    print(machine_line(), flush=True)
    if args.quick:
        train, test = (load_sample(split="speaker", subset=s) for s in ("train", "test"))
    else:
        train, test = (
            load_av_digits(data_home=args.data_home, split="speaker", subset=s)
            for s in ("train", "test")
        )
    print(
        f"train: {len(train.data)} pairs of {sorted(train.groups.unique())}; "
        f"test: {len(test.data)} pairs of {sorted(test.groups.unique())}",
        flush=True,
    )
    y_test = test.target.to_numpy()
    data, extract_s = {}, {}
    for name, block in audio_blocks().items():
        start = time.perf_counter()
        data[name] = extract(block(), train, test)
        extract_s[name] = time.perf_counter() - start
        print(
            f"{name}: {data[name][0].shape[1]} columns (image + audio), extracted in "
            f"{extract_s[name]:.1f} s",
            flush=True,
        )
    for _ in range(args.warmup):  # untimed: torch's first fit, allocations
        for X_train, _X_test in data.values():
            CrossModalRetriever(max_epochs=1, n_jobs=1, random_state=0).fit(X_train.iloc[:256])

    results: dict[str, list[dict[str, Any]]] = {name: [] for name in data}
    seconds: dict[str, list[float]] = {name: [] for name in data}
    for seed in range(args.repeats):

        def variant(name: str, seed: int = seed) -> Callable[[], dict[str, Any]]:
            X_train, X_test = data[name]
            return lambda: fit_and_score(X_train, X_test, train, y_test, seed, args)

        timings = interleaved(
            {name: variant(name) for name in data},
            repeats=1,
            warmup=0,
            label=f"random_state={seed}",
        )
        for name, timing in timings.items():
            r = timing.last_result
            results[name].append(r)
            seconds[name].append(timing.seconds[0])
            print(
                f"    {name}: "
                + "  ".join(f"{k} {r[k]:.3f}" for k in SCORERS)
                + f"  temperature {r['temperature']}, refit {r['epochs']} epochs",
                flush=True,
            )

    print()
    print(machine_line())
    print(
        f"{args.repeats} repetition(s) (random_state 0..{args.repeats - 1}): "
        "median [min, max]; fit = temperature search + refit"
    )
    print()
    print("| audio block | recall@1 | recall@5 | MRR | temperature | extraction (s) | fit (s) |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for name in data:
        runs = results[name]
        chosen = ", ".join(str(r["temperature"]) for r in runs)
        cells = [spread([r[k] for r in runs]) for k in SCORERS]
        print(
            f"| {name} | " + " | ".join(cells) + f" | {chosen} | {extract_s[name]:.0f} "
            f"| {spread(seconds[name], '.0f')} |"
        )
        rows.append(dict(audio=name, runs=runs, extract_s=extract_s[name], fit_s=seconds[name]))
    return rows


if __name__ == "__main__":
    main()
