"""
Exporting the fusion network to ONNX
====================================

A fitted :class:`~mmsk.FusionClassifier` writes its trained network as one
ONNX graph (``to_onnx``), which onnxruntime runs without torch. The
extractors stay Python: a service keeps the pipeline's feature step and the
ONNX file. See ``docs/export.md`` for the graph's inputs and outputs. Set
``MMSK_EXAMPLE_FAST=1`` for a run of seconds.
"""

# %%
# Fit a pipeline
# --------------
import json
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import onnxruntime as ort
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from mmsk import AudioFeatures, FusionClassifier, ImagePixels
from mmsk.datasets import load_sample
from mmsk.fusion.export import onnx_input_names

FAST = os.environ.get("MMSK_EXAMPLE_FAST", "") not in ("", "0")

sample = load_sample()
train = (sample.groups != "theo").to_numpy()
features = ColumnTransformer(
    [
        ("image", ImagePixels(size=(28, 28), mode="L"), "image"),
        ("audio", AudioFeatures(sr=8000, n_fft=512, hop_length=128), "audio"),
    ]
).set_output(transform="pandas")
net = FusionClassifier(fusion="gated", max_epochs=10 if FAST else 100, random_state=0)
model = Pipeline([("features", features), ("fusion", net)])
model.fit(sample.data[train], sample.target[train])

# %%
# Export the network
# ------------------
# Two inputs per modality block: its values and a mask that says which rows
# have the modality.
path = Path(tempfile.mkdtemp(prefix="mmsk-onnx-")) / "fusion.onnx"
model[-1].to_onnx(path)
print(onnx_input_names(model[-1]))

session = ort.InferenceSession(str(path))
meta = json.loads(session.get_modelmeta().custom_metadata_map["mmsk"])
print([(b["modality"], b["width"]) for b in meta["blocks"]])

# %%
# onnxruntime gives the estimator's probabilities
# -----------------------------------------------
# ``onnx_inputs`` turns the feature step's output into the graph's inputs.
X_test = model[:-1].transform(sample.data[~train])
(proba_onnx,) = session.run(None, model[-1].onnx_inputs(X_test))
proba_torch = model[-1].predict_proba(X_test)
print(f"largest difference: {np.abs(proba_onnx - proba_torch).max():.2e}")

labels = np.asarray(meta["classes"])[proba_onnx.argmax(axis=1)]
print(f"accuracy through onnxruntime: {(labels == sample.target[~train]).mean():.3f}")

# %%
# A missing modality is a mask of False: drop the audio of every row.
X_no_audio = X_test.copy()
X_no_audio[X_no_audio.filter(like="audio__").columns] = np.nan
(proba_image_only,) = session.run(None, model[-1].onnx_inputs(X_no_audio))

fig, ax = plt.subplots(figsize=(5, 3))
ax.hist(proba_onnx.max(axis=1), bins=20, alpha=0.7, label="image + audio")
ax.hist(proba_image_only.max(axis=1), bins=20, alpha=0.7, label="image only")
ax.set_xlabel("probability of the predicted class")
ax.legend()
plt.show()
