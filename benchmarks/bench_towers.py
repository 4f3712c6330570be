"""Conv towers on pixels and log-mel frames against MLP towers on features (AV-digits sample).

Four pipelines on the shipped AV-digits sample (300 image-audio pairs, six
speakers), scored by speaker-held-out cross-validation (``GroupKFold`` over
the speakers, so every fold tests on a voice it never heard):

========================  ==================================================  =========
name                      features                                            towers
========================  ==================================================  =========
``mlp/features``          ImagePixels(28x28) + AudioFeatures                  MLP, MLP
``conv/logmel``           ImagePixels(28x28) + LogMelSpectrogram(32x32)       conv, conv
``mlp/logmel``            ImagePixels(28x28) + LogMelSpectrogram(32x32)       MLP, MLP
``conv+mlp/features``     ImagePixels(28x28) + AudioFeatures                  conv, MLP
========================  ==================================================  =========

and, to tell the towers from the fusion, each modality alone with either
tower. The extractors learn nothing from the data in ``fit`` (fixed sizes, no
vocabulary), so each feature set is extracted once for all rows and the
cross-validation refits only the fusion net; the two extractions are timed
apart (interleaved, ``--repeats`` times).

Protocol (``benchmarks/_timing.py``): repetition ``r`` runs every pipeline
once, with ``random_state=r`` (A B C ..., A B C ..., so a burst of load hits
all alike), and prints a line as each ends; torch and BLAS run the same
``--threads`` threads everywhere. The timing table gives, per pipeline, the
median and [min, max] of the wall time of one whole ``cross_validate`` and
the ratio of medians to ``mlp/features``. The accuracy table gives the mean
over folds and seeds, ``sd seeds`` (the standard deviation of the per-seed
means), ``worst spk`` (the accuracy on the hardest held-out speaker) and
``fit/fold`` (the median of ``cross_validate``'s ``fit_time`` over folds and
seeds).

    python benchmarks/bench_towers.py                # 3 seeds, 30 epochs
    python benchmarks/bench_towers.py --quick        # seconds: 3 seeds, 2 epochs, 2 folds
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GroupKFold, cross_validate
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # this checkout's mmsk, and _timing
from _timing import add_common_arguments, interleaved, machine_line, report

from mmsk import AudioFeatures, FusionClassifier, ImagePixels, LogMelSpectrogram
from mmsk.datasets import load_sample

AUDIO = dict(sr=8000, n_fft=512, hop_length=128)


def features(audio):
    return ColumnTransformer(
        [("image", ImagePixels(size=(28, 28)), "image"), ("audio", audio, "audio")]
    ).set_output(transform="pandas")


class Run:
    """One pipeline's cross-validation; each call uses the next seed and keeps its scores."""

    def __init__(self, data: Any, y: Any, groups: Any, cv: Any, args: Any, towers: Any) -> None:
        self.data, self.y, self.groups, self.cv = data, y, groups, cv
        self.args, self.towers = args, towers
        self.scores: list[np.ndarray] = []
        self.fit_times: list[np.ndarray] = []

    def __call__(self) -> np.ndarray:
        clf = FusionClassifier(
            fusion=self.args.fusion,
            towers=self.towers,
            max_epochs=self.args.epochs,
            batch_size=self.args.batch_size,
            n_jobs=self.args.threads,
            device="cpu",
            random_state=len(self.scores),
        )
        result = cross_validate(clf, self.data, self.y, groups=self.groups, cv=self.cv)
        self.scores.append(result["test_score"])
        self.fit_times.append(result["fit_time"])
        return result["test_score"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch (n_jobs) and BLAS threads")
    parser.add_argument("--fusion", default="concat")
    parser.add_argument("--folds", type=int, default=None, help="default: one per speaker")
    add_common_arguments(parser, repeats=3)
    parser.set_defaults(warmup=0)  # each call is many fits; the first pays little extra
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.repeats, args.warmup, args.folds = 2, 3, 0, 2
    with threadpool_limits(args.threads):
        _run(args)


def _run(args: argparse.Namespace) -> None:
    print(machine_line(), flush=True)
    sample = load_sample()
    X, y, groups = sample.data, sample.target, sample.groups
    extractors = {
        "features": lambda: features(AudioFeatures(**AUDIO)).fit_transform(X),
        "logmel": lambda: features(
            LogMelSpectrogram(n_mels=32, n_frames=32, **AUDIO)
        ).fit_transform(X),
    }
    timed = interleaved(extractors, repeats=args.repeats, warmup=0, label="extract")
    extracted = {name: t.last_result for name, t in timed.items()}
    print(report(timed, baseline="features"), flush=True)
    for name, frame in extracted.items():
        print(f"  {name}: {frame.shape[1]} columns", flush=True)

    runs = [  # name, feature set, modalities kept (None: both), towers
        ("mlp/features", "features", None, None),
        ("conv/logmel", "logmel", None, "conv"),
        ("mlp/logmel", "logmel", None, None),
        ("conv+mlp/features", "features", None, {"image": "conv"}),
        ("image only: mlp", "features", "image", None),
        ("image only: conv", "features", "image", "conv"),
        ("audio only: mlp/feat", "features", "audio", None),
        ("audio only: conv/mel", "logmel", "audio", "conv"),
    ]
    n_folds = groups.nunique() if args.folds is None else args.folds
    cv = GroupKFold(n_splits=n_folds)
    print(
        f"\n{len(X)} rows, {groups.nunique()} speakers ({n_folds}-fold GroupKFold), "
        f"fusion={args.fusion!r}, {args.epochs} epochs, batch {args.batch_size}, "
        f"{args.repeats} seed(s) interleaved, {args.threads} torch and BLAS thread(s), "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}\n",
        flush=True,
    )
    variants = {}
    for name, feature_set, keep, towers in runs:
        data = extracted[feature_set]
        if keep is not None:
            data = data.filter(like=f"{keep}__")
        variants[name] = Run(data, y, groups, cv, args, towers)
    timed = interleaved(variants, repeats=args.repeats, warmup=args.warmup, label="cv")
    print(f"\n{machine_line()}\ncross_validate wall time ({n_folds} fits each)")
    print(report(timed, baseline="mlp/features"))
    print(
        f"\n{'pipeline':20s} {'accuracy':>8s} {'sd seeds':>9s} {'worst spk':>10s} {'fit/fold':>9s}"
    )
    for name, run in variants.items():
        scores = np.array(run.scores[-args.repeats :])  # (seeds, folds), warm-up calls left out
        fit = np.median(run.fit_times[-args.repeats :])
        print(
            f"{name:20s} {scores.mean():8.3f} {scores.mean(axis=1).std():9.3f} "
            f"{scores.mean(axis=0).min():10.3f} {fit:7.2f} s"
        )


if __name__ == "__main__":
    main()
