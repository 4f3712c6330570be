"""
How does the model degrade? A robustness report, and what modality dropout buys
===============================================================================

:func:`mmsk.inspection.robustness_report` scores a fitted model with one
modality corrupted at graded levels (on the raw items: noise mixed into the
recordings at given SNRs, blurred, occluded or noisy images, and a modality
missing in a given share of the rows) and summarises each curve with
MultiBench's *relative robustness* (the area under the score-versus-level
curve) and, against a baseline model, its *effective robustness* (the score
kept above the baseline's curve).

Here two fusion networks on degraded AV-digits differ only in
``modality_dropout``, the share of training rows in which a modality is
hidden: 0 and 0.3. We compare their robustness, and use a robustness scorer
in :class:`~sklearn.model_selection.GridSearchCV`.

The data are the full AV-digits set (found under ``MMSK_DATA``); set
``MMSK_EXAMPLE_FAST=1`` for a run of seconds on the sample shipped with mmsk.
"""

# %%
# Data and models
# ---------------
# The AV-MNIST-style degradation (audio at 0 dB SNR, 75 % of the image
# energy removed), the clips of speaker ``theo`` held out.
import os
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline

from mmsk import AudioFeatures, FusionClassifier, ImagePixels
from mmsk.datasets import load_av_digits, load_sample
from mmsk.inspection import (
    AudioNoise,
    ImageBlur,
    MissingModality,
    make_robustness_scorer,
    robustness_report,
)
from mmsk.plotting import plot_robustness

FAST = os.environ.get("MMSK_EXAMPLE_FAST", "") not in ("", "0")
DEGRADED = dict(audio_snr_db=0.0, image_energy_removed=0.75, random_state=0)

if FAST:
    data = load_sample(**DEGRADED)
    test = (data.groups == "theo").to_numpy()
    X_train, y_train, groups = data.data[~test], data.target[~test], data.groups[~test]
    X_test, y_test = data.data[test], data.target[test]
else:
    home = os.environ.get("MMSK_DATA")
    train = load_av_digits(data_home=home, subset="train", **DEGRADED)
    held_out = load_av_digits(data_home=home, subset="test", **DEGRADED)
    X_train, y_train, groups = train.data, train.target, train.groups
    X_test, y_test = held_out.data, held_out.target

cache = Path(tempfile.mkdtemp(prefix="mmsk-example-"))
features = ColumnTransformer(
    [
        ("image", ImagePixels(size=(28, 28), mode="L", memory=cache), "image"),
        ("audio", AudioFeatures(sr=8000, n_fft=512, hop_length=128, memory=cache), "audio"),
    ]
).set_output(transform="pandas")
network = FusionClassifier(
    fusion="concat",
    hidden_units=64,
    embed_dim=32,
    dropout=0.2,
    lr=3e-3,
    batch_size=32,
    max_epochs=4 if FAST else 60,
    early_stopping=True,
    n_iter_no_change=10,
    validation_fraction=0.15,
    n_jobs=1,
    random_state=0,
)
model = Pipeline([("features", features), ("fusion", network)])
models = {
    p: clone(model).set_params(fusion__modality_dropout=p).fit(X_train, y_train) for p in (0.0, 0.3)
}
for p, fitted in models.items():
    print(f"modality_dropout={p}: clean test accuracy {fitted.score(X_test, y_test):.3f}")

# %%
# The reports
# -----------
# Audio: more white noise on top of the degradation, from 20 dB down to
# -10 dB SNR, then missing in 10 % ... 100 % of the rows. Image: Gaussian
# blur, occlusion and pixel noise (their default levels), then missing.
# With the same ``random_state`` both models see the same corrupted inputs;
# the model without modality dropout is the baseline of the effective
# robustness of the other.
corruptions = {
    "audio": [AudioNoise(levels=(20, 10, 5, 0, -5, -10)), "missing"],
    "image": ["blur", "occlusion", "noise", "missing"],
}
if FAST:  # fewer levels, for a run of seconds
    corruptions = {
        "audio": [AudioNoise(levels=(10, 0, -10)), MissingModality(levels=(0.5, 1.0))],
        "image": [ImageBlur(levels=(1, 3)), MissingModality(levels=(0.5, 1.0))],
    }
reports = {}
for p, fitted in models.items():
    reports[p] = robustness_report(
        fitted,
        X_test,
        y_test,
        corruptions=corruptions,
        scoring="accuracy",
        baseline=reports.get(0.0),
        random_state=0,
    )

curve = reports[0.3].scores
noise = curve[(curve["modality"] == "audio") & (curve["corruption"] == "noise")]
print("accuracy as noise is added to the audio (modality_dropout=0.3):")
print(
    noise[["level", "score", "baseline_score"]]
    .rename(columns={"level": "SNR dB", "score": "dropout 0.3", "baseline_score": "dropout 0"})
    .to_string(index=False, float_format=lambda v: f"{v:.3f}")
)
summary = reports[0.3].summary.rename(
    columns={
        "relative_robustness": "RR dropout 0.3",
        "baseline_relative_robustness": "RR dropout 0",
        "effective_robustness": "ER (0.3 vs 0)",
    }
)
print(
    summary[
        [
            "modality",
            "corruption",
            "clean_score",
            "worst_score",
            "RR dropout 0.3",
            "RR dropout 0",
            "ER (0.3 vs 0)",
        ]
    ].to_string(index=False, float_format=lambda v: f"{v:.3f}")
)

# %%
# The curves
# ----------
# One panel per modality and corruption, both models; the legend gives each
# curve's relative robustness (RR). The x axis runs from clean to the most
# severe level.
axes = plot_robustness(
    {"modality_dropout=0": reports[0.0], "modality_dropout=0.3": reports[0.3]},
    title="robustness on degraded AV-digits, speaker theo held out",
)
plt.show()

# %%
# Robustness as a model-selection criterion
# -----------------------------------------
# :func:`~mmsk.inspection.make_robustness_scorer` turns one curve into a
# score: here the relative robustness to the audio going missing. Next to
# the accuracy in a speaker-held-out :class:`~sklearn.model_selection.GridSearchCV`,
# it shows what each ``modality_dropout`` trades.
robust_to_missing_audio = make_robustness_scorer("audio", "missing", [0.25, 0.5, 1.0])
search = GridSearchCV(
    model,
    {"fusion__modality_dropout": [0.0, 0.3]},
    scoring={"accuracy": "accuracy", "robust": robust_to_missing_audio},
    refit="robust",
    cv=GroupKFold(n_splits=2 if FAST else 3),
)
search.fit(X_train, y_train, groups=groups)
for i, params in enumerate(search.cv_results_["params"]):
    print(
        f"modality_dropout={params['fusion__modality_dropout']}: "
        f"accuracy {search.cv_results_['mean_test_accuracy'][i]:.3f}, "
        f"robustness to missing audio {search.cv_results_['mean_test_robust'][i]:.3f}"
    )
print(f"chosen for robustness: {search.best_params_}")

# %%
# The feature cache lives in a temporary folder here.
shutil.rmtree(cache, ignore_errors=True)
