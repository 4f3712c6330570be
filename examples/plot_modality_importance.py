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

The two are asked twice: on test rows of the speakers the network was
trained on (where they agree), and on a speaker it has never heard (where
they do not, and the disagreement itself tells something).

The data are the full AV-digits set (3,000 pairs, found under
``MMSK_DATA``); set ``MMSK_EXAMPLE_FAST=1`` for a run of seconds on the
300-pair sample shipped with mmsk (what the test suite does).
"""

# %%
# Degraded data: known speakers, and a new one
# --------------------------------------------
# The clips of five speakers are split at random (stratified by digit) into
# training rows and test rows; the sixth speaker, ``theo``, is held out
# whole. The loaders return the degraded audio as waveforms (8 kHz) and the
# degraded images as arrays: items that mmsk's extractors read like files.
import os
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from mmsk import AudioFeatures, FusionClassifier, ImagePixels
from mmsk.datasets import load_av_digits, load_sample
from mmsk.inspection import modality_importance
from mmsk.plotting import plot_confusion_matrix, plot_history, plot_modality_importance

FAST = os.environ.get("MMSK_EXAMPLE_FAST", "") not in ("", "0")
DEGRADED = dict(audio_snr_db=0.0, image_energy_removed=0.75, random_state=0)

if FAST:
    known = load_sample(subset="train", **DEGRADED)
    new = load_sample(subset="test", **DEGRADED)
else:
    home = os.environ.get("MMSK_DATA")
    known = load_av_digits(data_home=home, subset="train", **DEGRADED)
    new = load_av_digits(data_home=home, subset="test", **DEGRADED)
X_train, X_test, y_train, y_test = train_test_split(
    known.data, known.target, test_size=0.2, stratify=known.target, random_state=0
)
X_new, y_new = new.data, new.target
print(
    f"{len(X_train)} training pairs, {len(X_test)} test pairs of the same five speakers, "
    f"{len(X_new)} pairs of speaker {sorted(set(new.groups))[0]}"
)

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
print(
    f"test accuracy: known speakers {model.score(X_test, y_test):.3f}, "
    f"new speaker {model.score(X_new, y_new):.3f}"
)

# %%
# Modality importance on the known speakers
# -----------------------------------------
# Five permutations per modality; the ablation is deterministic and runs
# once. Both are drops of the accuracy from the intact test rows (the
# *baseline*): the larger, the more the model relies on the modality.
N_REPEATS = 2 if FAST else 5
columns = ["modality", "method", "rank", "importance_mean", "importance_std", "baseline_score"]


def importances(X, y, where):
    """Both measures on ``X``, printed with the top modality of each."""
    found = modality_importance(
        model, X, y, scoring="accuracy", n_repeats=N_REPEATS, random_state=0
    )
    print(f"-- {where}")
    print(found[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for method, part in found.groupby("method", sort=False):
        top = part.iloc[0]
        print(f"{method}: {top['modality']} matters most (drop {top['importance_mean']:.3f})")
    return found


result = importances(X_test, y_test, "test rows of the known speakers")

# %%
# On the full data the two measures agree on the known speakers: both
# modalities matter, and both rank the audio first (permutation drops 0.703
# for the audio and 0.379 for the image, ablation 0.356 and 0.090).
# Shuffling a modality costs more than removing it (a shuffled modality
# points to a wrong digit, a missing one to none), but the order is the
# same. The fast mode (the 300-pair sample: 200 training pairs, 50 test
# pairs, what the documentation shows when it is built without the data)
# is too small for that: there the two ablation drops lie within a few
# test rows of each other, and the order of the two measures can differ.
#
# A new speaker
# -------------
# The same questions on speaker ``theo``, whom the network never heard:
result_new = importances(X_new, y_new, "speaker theo (never heard in training)")

# %%
# Two questions, two answers
# --------------------------
# Here the measures can disagree, because they ask different things.
# Ablation asks what the model loses *without* a modality, so it ranks first
# the modality that is better *on its own for this speaker*. Permutation
# asks how much the model *follows* a modality: a shuffled modality
# disagrees with the other one, and the drop is large for the modality the
# network believes when the two conflict, a trust it learned on the known
# speakers. A voice that does not carry to a new speaker is still followed
# in conflict, while the image is the better modality alone. We can watch
# that directly: pair every image with the recording of another row and see
# whose digit the network predicts.
order = np.random.default_rng(0).permutation(len(X_new))
mixed = X_new.copy()
mixed["audio"] = X_new["audio"].iloc[order].set_axis(X_new.index)
predicted = model.predict(mixed)
image_digit = np.asarray(y_new)
audio_digit = image_digit[order]
conflict = image_digit != audio_digit
follows_image = np.mean(predicted[conflict] == image_digit[conflict])
follows_audio = np.mean(predicted[conflict] == audio_digit[conflict])
print(
    f"speaker theo, {conflict.sum()} rows where image and audio say different digits: the "
    f"network predicts the image's digit in {follows_image:.0%}, the audio's in {follows_audio:.0%}"
)
# %%
# When the two measures disagree on new data but agree on data like the
# training data, a modality has stopped carrying to the new data: here the
# audio of a new speaker. Per-speaker normalisation of the audio features
# (:class:`mmsk.GroupStandardScaler`) is the remedy measured in
# ``docs/fusion.md``.

# %%
# Figures
# -------
# Top: the importances on the known speakers and on the new one (error bars:
# standard deviation over the permutations). Bottom: the confusion matrix
# on the known speakers' test rows, and the training curves, the dotted
# line at the epoch whose weights early stopping restored.
fig, ((ax_imp, ax_new), (ax_cm, ax_hist)) = plt.subplots(
    2, 2, figsize=(12, 9), layout="constrained"
)
plot_modality_importance(result, ax=ax_imp, title="known speakers (test rows)")
plot_modality_importance(result_new, ax=ax_new, title="new speaker (theo)")
plot_confusion_matrix(
    model, X_test, y_test, ax=ax_cm, normalize="true", values_format=".1f", text_kw={"fontsize": 7}
)
ax_cm.set_title("confusion matrix, known speakers")
plot_history(model[-1], ax=ax_hist, title="training history")
plt.show()

# %%
# The feature cache lives in a temporary folder here.
shutil.rmtree(cache, ignore_errors=True)
