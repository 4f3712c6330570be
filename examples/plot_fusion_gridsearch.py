"""
Tuning an image + audio fusion network with GridSearchCV
========================================================

One scikit-learn :class:`~sklearn.pipeline.Pipeline` reads PNG and WAV files,
turns each modality into features, and trains a fusion network on both. We
tune the fusion method *and* a feature extractor's parameter together with
:class:`~sklearn.model_selection.GridSearchCV`, holding speakers out, then
score the winner with :func:`~sklearn.model_selection.cross_val_score`.

The data are the AV-digits sample shipped with mmsk: 300 pairs of a
handwritten digit (an MNIST image) and the same digit spoken (an FSDD
recording), six speakers.

Set the environment variable ``MMSK_EXAMPLE_FAST=1`` for a quick run (a
smaller grid, two folds, five epochs): that is what the test suite does.
"""

# %%
# The data
# --------
# :func:`mmsk.datasets.load_sample` returns a DataFrame of file paths, the
# digit as the target, and the speaker of each recording as ``groups``.
import os
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, GroupKFold, LeaveOneGroupOut, cross_val_score
from sklearn.pipeline import Pipeline

from mmsk import AudioFeatures, FusionClassifier, ImagePixels
from mmsk.datasets import load_sample
from mmsk.plotting import plot_cv_scores, plot_history

FAST = os.environ.get("MMSK_EXAMPLE_FAST", "") not in ("", "0")

sample = load_sample()
X, y, groups = sample.data, sample.target, sample.groups
print(
    f"{len(X)} rows, columns {list(X.columns)}, {y.nunique()} classes, "
    f"speakers {sorted(groups.unique())}"
)

# %%
# The pipeline
# ------------
# Each modality has its extractor, inside a
# :class:`~sklearn.compose.ColumnTransformer` whose pandas output names the
# columns ``image__...`` and ``audio__...``. :class:`~mmsk.FusionClassifier`
# finds the two blocks from these prefixes: one tower per modality, then the
# fusion layer, then the head.
#
# Two caches keep the search cheap: the extractors' ``memory=`` stores the
# features of every file (so a file is read and analysed once, whatever the
# fold or grid point), and the pipeline's ``memory=`` stores the fitted
# ``ColumnTransformer`` for each fold and extractor setting.
#
# ``FusionClassifier(n_jobs=1)`` pins torch to one thread per fit. Results
# then do not depend on how many fits run side by side: the search below
# gives exactly the same scores with ``n_jobs=1`` as with ``n_jobs=2``.
cache = Path(tempfile.mkdtemp(prefix="mmsk-example-"))

image = ImagePixels(size=(28, 28), mode="L", memory=cache)
audio = AudioFeatures(sr=8000, n_fft=512, hop_length=128, n_mfcc=20, memory=cache)
features = ColumnTransformer([("image", image, "image"), ("audio", audio, "audio")])
features.set_output(transform="pandas")  # columns "image__px_0_0_L", "audio__mfcc_00_mean", ...

fusion = FusionClassifier(
    fusion="concat",
    hidden_units=64,
    embed_dim=32,
    dropout=0.2,
    lr=3e-3,
    batch_size=32,
    max_epochs=5 if FAST else 60,
    early_stopping=True,  # on 15% of the training rows, best weights restored
    n_iter_no_change=10,
    validation_fraction=0.15,
    n_jobs=1,
    random_state=0,
)

model = Pipeline([("features", features), ("fusion", fusion)], memory=str(cache / "pipeline"))

# %%
# The grid search
# ---------------
# The grid crosses the fusion methods with the number of MFCCs of the audio
# extractor. The audio block is wider with 20 MFCCs than with 13; the net
# learns its block widths in every ``fit``, so nothing else has to change.
# The folds hold speakers out (:class:`~sklearn.model_selection.GroupKFold`),
# so a score says how well the model does on a voice it has never heard.
param_grid = {
    "fusion__fusion": ["concat", "gated"]
    if FAST
    else ["concat", "late", "gated", "attention", "tensor"],
    "features__audio__n_mfcc": [13, 20],
}
cv = GroupKFold(n_splits=2 if FAST else 3)
search = GridSearchCV(model, param_grid, cv=cv, n_jobs=2)

start = time.perf_counter()
search.fit(X, y, groups=groups)
print(
    f"{len(search.cv_results_['params'])} candidates x {cv.get_n_splits()} folds "
    f"in {time.perf_counter() - start:.0f} s"
)

results = pd.DataFrame(search.cv_results_)
table = pd.DataFrame(
    {
        "fusion": results["param_fusion__fusion"],
        "n_mfcc": results["param_features__audio__n_mfcc"],
        "accuracy": results["mean_test_score"],
        "std": results["std_test_score"],
        "rank": results["rank_test_score"],
        "fit_s": results["mean_fit_time"],
    }
).sort_values(["rank", "fusion", "n_mfcc"])
print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
print(f"best: {search.best_params_} (accuracy {search.best_score_:.3f})")

# %%
# Scoring the best model, one speaker at a time
# ---------------------------------------------
# ``best_estimator_`` is the whole pipeline, refitted on all rows with the
# best parameters. :func:`~sklearn.model_selection.cross_val_score` clones
# and refits it, here leaving out one speaker per fold. The speakers also
# chose the parameters, so this is slightly optimistic; pass ``search``
# itself to ``cross_val_score`` for a nested, unbiased estimate.
per_speaker = cross_val_score(
    search.best_estimator_, X, y, groups=groups, cv=LeaveOneGroupOut(), n_jobs=2
)
speakers = [groups.iloc[test].iloc[0] for _, test in LeaveOneGroupOut().split(X, y, groups)]
for speaker, score in zip(speakers, per_speaker, strict=True):
    print(f"  {speaker:>9}: {score:.3f}")
print(f"mean accuracy over held-out speakers: {per_speaker.mean():.3f} +/- {per_speaker.std():.3f}")

# %%
# Figures
# -------
# Left: the per-fold accuracy of every candidate of the grid. Right: the
# training curves of the refitted best network, read from the skorch history
# of the last pipeline step (``best_estimator_[-1].net_.history``).
n_splits = cv.get_n_splits()
scores = {
    f"{p['fusion__fusion']}\n{p['features__audio__n_mfcc']} MFCC": [
        search.cv_results_[f"split{k}_test_score"][i] for k in range(n_splits)
    ]
    for i, p in enumerate(search.cv_results_["params"])
}
fig, (ax_scores, ax_history) = plt.subplots(
    1, 2, figsize=(12, 4.5), width_ratios=[2, 1], layout="constrained"
)
plot_cv_scores(
    scores, ax=ax_scores, chance=0.1, title=f"GridSearchCV, {n_splits} speaker-held-out folds"
)
ax_scores.tick_params(axis="x", labelsize=8)
best_net = search.best_estimator_[-1].net_
plot_history(
    best_net.history,
    ax=ax_history,
    title=f"refit of the best ({search.best_params_['fusion__fusion']})",
)
plt.show()

# %%
# The feature cache lives in a temporary folder here; point ``memory=`` at a
# lasting one (say ``~/.cache/mmsk``) to reuse the features across runs.
shutil.rmtree(cache, ignore_errors=True)
