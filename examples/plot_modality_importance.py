"""
Which modality does the model rely on? Modality importance on degraded AV-digits
================================================================================

A fusion network reads a handwritten digit (an image) and the same digit
spoken (a recording). When both are degraded, as in AV-MNIST (white noise
mixed into the audio at 0 dB SNR, 75 % of the image energy removed), neither
modality is enough on its own and the network has to use both. But which one
does it lean on more?

:func:`mmsk.inspection.modality_importance` answers with two measures, each
the drop of the test accuracy when a modality is taken away:

- *permutation*: the modality's input column is shuffled across the rows
  (the grouped version of :func:`sklearn.inspection.permutation_importance`);
- *ablation*: the modality is made missing in every row, and the network
  takes its missing-modality path.

The data are the full AV-digits set (3,000 pairs, found under
``MMSK_DATA``); set ``MMSK_EXAMPLE_FAST=1`` for a run of seconds on the
300-pair sample shipped with mmsk (what the test suite does).
"""

# %%
# Degraded data, held-out speaker
# -------------------------------
# Training and test rows come from different speakers: the test set is all
# the clips of ``theo``. The loaders return the degraded audio as waveforms
# (8 kHz) and the degraded images as arrays: items that mmsk's extractors
# read like files.
import os
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from mmsk import AudioFeatures, FusionClassifier, ImagePixels
from mmsk.datasets import load_av_digits, load_sample
from mmsk.inspection import modality_importance
from mmsk.plotting import plot_confusion_matrix, plot_history, plot_modality_importance

FAST = os.environ.get("MMSK_EXAMPLE_FAST", "") not in ("", "0")
DEGRADED = dict(audio_snr_db=0.0, image_energy_removed=0.75, random_state=0)

if FAST:
    data = load_sample(**DEGRADED)
    test = (data.groups == "theo").to_numpy()
    X_train, y_train = data.data[~test], data.target[~test]
    X_test, y_test = data.data[test], data.target[test]
else:
    home = os.environ.get("MMSK_DATA")
    train = load_av_digits(data_home=home, subset="train", **DEGRADED)
    held_out = load_av_digits(data_home=home, subset="test", **DEGRADED)
    X_train, y_train = train.data, train.target
    X_test, y_test = held_out.data, held_out.target
print(f"{len(X_train)} training pairs, {len(X_test)} test pairs (speaker theo)")

# %%
# The model
# ---------
# One :class:`~sklearn.pipeline.Pipeline`: the extractors in a
# :class:`~sklearn.compose.ColumnTransformer` (its branch names, ``image``
# and ``audio``, are the modalities the inspection finds), then the fusion
# network. ``modality_dropout=0.3`` hides a modality in 30 % of the training
# rows, so the network learns to predict from either one alone: the
# ablation below asks exactly that of it.
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
    max_epochs=5 if FAST else 60,
    early_stopping=True,
    n_iter_no_change=10,
    validation_fraction=0.15,
    modality_dropout=0.3,
    n_jobs=1,
    random_state=0,
)
model = Pipeline([("features", features), ("fusion", network)]).fit(X_train, y_train)
print(f"test accuracy: {model.score(X_test, y_test):.3f}")

# %%
# Modality importance
# -------------------
# Five permutations per modality; the ablation is deterministic and runs
# once. Both are drops of the accuracy from the intact test set (the
# *baseline*): the larger, the more the model relies on the modality.
result = modality_importance(
    model, X_test, y_test, scoring="accuracy", n_repeats=2 if FAST else 5, random_state=0
)
columns = ["modality", "method", "rank", "importance_mean", "importance_std", "baseline_score"]
print(result[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
for method, part in result.groupby("method", sort=False):
    top = part.iloc[0]
    print(f"{method}: {top['modality']} matters most (drop {top['importance_mean']:.3f})")

# %%
# Two questions, two answers
# --------------------------
# The two measures need not agree, because they ask different things.
# Ablation asks what the model loses *without* a modality, so it ranks the
# modality that is better on its own first. Permutation asks how much the
# model *follows* a modality: a shuffled modality disagrees with the other
# one, and the drop is large for the modality the network believes when
# the two conflict. We can watch that directly: pair every image with the
# recording of another row and see whose digit the network predicts.
order = np.random.default_rng(0).permutation(len(X_test))
mixed = X_test.copy()
mixed["audio"] = X_test["audio"].iloc[order].set_axis(X_test.index)
predicted = model.predict(mixed)
image_digit = np.asarray(y_test)
audio_digit = image_digit[order]
conflict = image_digit != audio_digit
follows_image = np.mean(predicted[conflict] == image_digit[conflict])
follows_audio = np.mean(predicted[conflict] == audio_digit[conflict])
print(
    f"{conflict.sum()} rows where image and audio say different digits: the network "
    f"predicts the image's digit in {follows_image:.0%}, the audio's in {follows_audio:.0%}"
)

# %%
# Figures
# -------
# Left: the importances (error bars: standard deviation over the
# permutations). Middle: the confusion matrix on the held-out speaker.
# Right: the training curves, the dotted line at the epoch whose weights
# early stopping restored.
fig, (ax_imp, ax_cm, ax_hist) = plt.subplots(
    1, 3, figsize=(15, 4.5), width_ratios=[1.2, 1, 1.1], layout="constrained"
)
plot_modality_importance(result, ax=ax_imp, title="modality importance (degraded AV-digits)")
plot_confusion_matrix(
    model, X_test, y_test, ax=ax_cm, normalize="true", values_format=".1f", text_kw={"fontsize": 7}
)
ax_cm.set_title("confusion matrix, speaker theo")
plot_history(model[-1], ax=ax_hist, title="training history")
plt.show()

# %%
# The feature cache lives in a temporary folder here.
shutil.rmtree(cache, ignore_errors=True)
