"""
Deployment: a safe model file and an HTTP service
=================================================

A fitted pipeline goes to production in two steps. :func:`mmsk.save` writes
it as a *safe* model file (skops, with a model card): :func:`mmsk.load` reads
it back without running any code from the file. :func:`mmsk.serve.create_app`
turns the loaded model into a web application (FastAPI) that answers
``/predict`` and ``/predict_proba`` with JSON; ``mmsk serve model.skops``
runs the same application with uvicorn.

Here we query the application in the process with FastAPI's
:class:`~fastapi.testclient.TestClient`, which speaks HTTP to it without a
network port. Set ``MMSK_EXAMPLE_FAST=1`` for a run of seconds.
"""

# %%
# Fit and save
# ------------
import base64
import os
import tempfile
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

import mmsk
from mmsk.compose import make_multimodal_pipeline
from mmsk.datasets import load_sample
from mmsk.io import read_card
from mmsk.serve import create_app

FAST = os.environ.get("MMSK_EXAMPLE_FAST", "") not in ("", "0")

sample = load_sample()
train = (sample.groups != "theo").to_numpy()
X_train, y_train = sample.data[train], sample.target[train]
X_test, y_test = sample.data[~train], sample.target[~train]

model = make_multimodal_pipeline(
    image="image", audio="audio", max_epochs=10 if FAST else 100, random_state=0
)
model.fit(X_train, y_train)
print(f"accuracy on the held-out speaker: {model.score(X_test, y_test):.3f}")

folder = Path(tempfile.mkdtemp(prefix="mmsk-deploy-"))
path = folder / "digits.skops"
mmsk.save(model, path)
print(f"{path.name}: {path.stat().st_size / 1e6:.1f} MB")

# %%
# The model card
# --------------
# The file carries a card: the input columns and their roles, the classes,
# the versions it was made with. :func:`mmsk.io.read_card` reads it without
# loading the model.
card = read_card(path)
print({key: card[key] for key in ("columns", "classes") if key in card})

# %%
# Load it back
# ------------
# No code from the file runs: only the types mmsk and scikit-learn trust
# are rebuilt. The loaded pipeline predicts what the original predicts.
loaded = mmsk.load(path)
assert (loaded.predict(X_test) == model.predict(X_test)).all()

# %%
# Serve it
# --------
# Files reach the service as base64 (paths are refused unless the server is
# started with allowed directories).


def b64(file):
    return {"base64": base64.b64encode(Path(file).read_bytes()).decode()}


app = create_app(loaded, card=card)
client = TestClient(app)
rows = X_test.head(5)
records = [{"image": b64(r.image), "audio": b64(r.audio)} for r in rows.itertuples()]
answer = client.post("/predict", json={"records": records})
answer.raise_for_status()
print("served: ", answer.json()["predictions"])
print("in-process:", loaded.predict(rows).tolist())
print("truth:  ", y_test.head(5).tolist())

# %%
# A bad request gets a clear 4xx answer in JSON, naming the record and the
# column, never a traceback:
bad = client.post("/predict", json={"records": [{"image": {"base64": "no!"}, "audio": None}]})
print(bad.status_code, bad.json()["error"])

proba = client.post("/predict_proba", json={"records": records[:1]}).json()
print(np.round(proba["probabilities"][0], 3))
