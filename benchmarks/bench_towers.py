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
cross-validation refits only the fusion net; extraction times are shown
apart. Accuracy is the mean over folds and seeds, ``sd seeds`` the standard
deviation of the per-seed means, ``worst spk`` the accuracy on the hardest
held-out speaker; fit time is the mean of ``cross_validate``'s ``fit_time``
over folds and seeds.

    python benchmarks/bench_towers.py                # 3 seeds, 30 epochs
    python benchmarks/bench_towers.py --seeds 1 --epochs 10   # quick
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GroupKFold, cross_validate

from mmsk import AudioFeatures, FusionClassifier, ImagePixels, LogMelSpectrogram
from mmsk.datasets import load_sample

AUDIO = dict(sr=8000, n_fft=512, hop_length=128)


def features(audio):
    return ColumnTransformer(
        [("image", ImagePixels(size=(28, 28)), "image"), ("audio", audio, "audio")]
    ).set_output(transform="pandas")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (n_jobs)")
    parser.add_argument("--fusion", default="concat")
    args = parser.parse_args()

    sample = load_sample()
    X, y, groups = sample.data, sample.target, sample.groups
    extracted = {}
    for name, audio in [
        ("features", AudioFeatures(**AUDIO)),
        ("logmel", LogMelSpectrogram(n_mels=32, n_frames=32, **AUDIO)),
    ]:
        start = time.perf_counter()
        extracted[name] = features(audio).fit_transform(X)
        took = time.perf_counter() - start
        print(f"extract {name:8s}: {extracted[name].shape[1]:5d} columns in {took:5.1f} s")

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
    cv = GroupKFold(n_splits=groups.nunique())
    print(
        f"\n{len(X)} rows, {groups.nunique()} speakers (GroupKFold), fusion={args.fusion!r}, "
        f"{args.epochs} epochs, batch {args.batch_size}, {args.seeds} seed(s), "
        f"{args.threads} torch thread(s), {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}\n"
    )
    print(f"{'pipeline':20s} {'accuracy':>8s} {'sd seeds':>9s} {'worst spk':>10s} {'fit/fold':>9s}")
    for name, feature_set, keep, towers in runs:
        data = extracted[feature_set]
        if keep is not None:
            data = data.filter(like=f"{keep}__")
        scores, times = [], []
        for seed in range(args.seeds):
            clf = FusionClassifier(
                fusion=args.fusion,
                towers=towers,
                max_epochs=args.epochs,
                batch_size=args.batch_size,
                n_jobs=args.threads,
                device="cpu",
                random_state=seed,
            )
            result = cross_validate(clf, data, y, groups=groups, cv=cv)
            scores.append(result["test_score"])
            times.extend(result["fit_time"])
        scores = np.array(scores)  # (seeds, speakers)
        print(
            f"{name:20s} {scores.mean():8.3f} {scores.mean(axis=1).std():9.3f} "
            f"{scores.mean(axis=0).min():10.3f} {np.mean(times):7.2f} s"
        )


if __name__ == "__main__":
    main()
