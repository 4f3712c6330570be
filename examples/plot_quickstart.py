"""
Quickstart: image + audio digits in one Pipeline
================================================

The AV-digits sample ships with mmsk: 300 pairs of a handwritten digit (an
MNIST image, a PNG file) and the same digit spoken (an FSDD recording, a WAV
file), six speakers. One scikit-learn :class:`~sklearn.pipeline.Pipeline`
reads the files, turns each modality into features and trains a fusion
network on both; we compare it with each modality alone on a speaker held
out.

Set ``MMSK_EXAMPLE_FAST=1`` for a run of seconds (fewer epochs), as the tests
and the documentation build do.
"""

# %%
# The data
# --------
# :func:`mmsk.datasets.load_sample` returns a :class:`~sklearn.utils.Bunch`:
# ``data`` is a DataFrame of file paths, ``target`` the digit and ``groups``
# the speaker of each recording.
import os

import matplotlib.pyplot as plt
from PIL import Image
from sklearn.compose import ColumnTransformer
from sklearn.metrics import ConfusionMatrixDisplay
from sklearn.pipeline import Pipeline

from mmsk import AudioFeatures, FusionClassifier, ImagePixels
from mmsk.datasets import load_sample

FAST = os.environ.get("MMSK_EXAMPLE_FAST", "") not in ("", "0")

sample = load_sample()
print(sample.data.head(3))
train = (sample.groups != "theo").to_numpy()  # theo's 50 clips are the test set
X_train, y_train = sample.data[train], sample.target[train]
X_test, y_test = sample.data[~train], sample.target[~train]

fig, axes = plt.subplots(1, 5, figsize=(8, 1.8))
for ax, path, label in zip(axes, X_test["image"], y_test, strict=False):
    ax.imshow(Image.open(path), cmap="gray")
    ax.set_title(f"digit {label}")
    ax.axis("off")

# %%
# The pipeline
# ------------
# One extractor per modality inside a
# :class:`~sklearn.compose.ColumnTransformer` with pandas output: the columns
# are named ``image__...`` and ``audio__...``, and
# :class:`~mmsk.FusionClassifier` finds its two blocks from these prefixes.
features = ColumnTransformer(
    [
        ("image", ImagePixels(size=(28, 28), mode="L"), "image"),
        ("audio", AudioFeatures(sr=8000, n_fft=512, hop_length=128), "audio"),
    ]
).set_output(transform="pandas")


model = Pipeline(
    [
        ("features", features),
        ("fusion", FusionClassifier(max_epochs=10 if FAST else 100, random_state=0)),
    ]
)
model.fit(X_train, y_train)
print(f"image + audio: accuracy {model.score(X_test, y_test):.3f} on the held-out speaker")

# %%
# Each modality alone
# -------------------
# ``model[:-1]`` is the fitted feature step; a net on one block of its output
# is the single-modality model, on the same features.
F_train, F_test = model[:-1].transform(X_train), model[:-1].transform(X_test)
scores = {"both": model.score(X_test, y_test)}
for name in ["image", "audio"]:
    columns = F_train.columns[F_train.columns.str.startswith(f"{name}__")]
    net = FusionClassifier(max_epochs=10 if FAST else 100, random_state=0)
    net.fit(F_train[columns], y_train)
    scores[name] = net.score(F_test[columns], y_test)
    print(f"{name:>13}: accuracy {scores[name]:.3f} on the held-out speaker")

# %%
# Where the fused model errs
# --------------------------
# A confusion matrix through scikit-learn's display.
ConfusionMatrixDisplay.from_estimator(model, X_test, y_test, colorbar=False)
plt.title(f"image + audio, held-out speaker (accuracy {scores['both']:.2f})")
plt.show()
