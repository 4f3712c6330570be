"""
Missing modalities: train for them with modality_dropout
========================================================

In real data a row often lacks a modality: no photo, a recording that failed.
mmsk reads a missing item (``None`` or ``NaN`` in the column) as a row of NaN
features, and :class:`~mmsk.FusionClassifier` reads an all-NaN block as a
missing modality: the row is predicted from the modalities it has.

A net that always saw both modalities in training may do badly when one is
gone. ``modality_dropout`` hides whole modalities of random training rows,
so that the net learns to predict from each alone. We compare the two on a
held-out speaker of the AV-digits sample, with the audio, the image or
neither removed from every test row. Set ``MMSK_EXAMPLE_FAST=1`` for a run of
seconds.
"""

# %%
# Features, extracted once
# ------------------------
# Both models use the same features, so we extract them once, with a
# missing item in the column giving a NaN row.
import os

import matplotlib.pyplot as plt
import pandas as pd
from sklearn.compose import ColumnTransformer

from mmsk import AudioFeatures, FusionClassifier, ImagePixels
from mmsk.datasets import load_sample

FAST = os.environ.get("MMSK_EXAMPLE_FAST", "") not in ("", "0")

sample = load_sample()
features = ColumnTransformer(
    [
        ("image", ImagePixels(size=(28, 28), mode="L"), "image"),
        ("audio", AudioFeatures(sr=8000, n_fft=512, hop_length=128), "audio"),
    ]
).set_output(transform="pandas")
train = (sample.groups != "theo").to_numpy()
X_train = features.fit_transform(sample.data[train])
y_train, y_test = sample.target[train], sample.target[~train]

# the test rows three ways: complete, without their audio, without their image
test_rows = sample.data[~train]
conditions = {
    "both": test_rows,
    "image only": test_rows.assign(audio=None),
    "audio only": test_rows.assign(image=None),
}
X_test = {name: features.transform(rows) for name, rows in conditions.items()}
print(X_test["image only"].filter(like="audio__").isna().all(axis=None))  # True

# %%
# Two nets: without and with modality dropout
# -------------------------------------------
epochs = 10 if FAST else 100
results = {}
for dropout in [0.0, 0.3]:
    net = FusionClassifier(
        fusion="concat", modality_dropout=dropout, max_epochs=epochs, random_state=0
    ).fit(X_train, y_train)
    results[f"modality_dropout={dropout}"] = {
        name: net.score(X, y_test) for name, X in X_test.items()
    }
table = pd.DataFrame(results)
print(table.round(3))

# %%
# The net trained with modality dropout keeps more of its accuracy when a
# modality is gone; with both present the two are close.
ax = table.plot.bar(rot=0, figsize=(6, 3.5))
ax.set_ylabel("accuracy, held-out speaker")
ax.axhline(0.1, color="gray", linestyle=":", label="chance")
ax.legend(loc="lower left")
plt.tight_layout()
plt.show()
