"""
Speak a digit, find its handwritten images: cross-modal retrieval
=================================================================

:class:`~mmsk.CrossModalRetriever` learns one embedding space for two
modalities from paired rows, as CLIP does for captions and photos: a tower
per modality, unit-length embeddings, and a symmetric contrastive (InfoNCE)
loss that pulls each pair together and pushes the other rows of the batch
away. Here the pairs are AV-digits: a spoken digit (FSDD) and a handwritten
image of the same digit (MNIST). We search the images with a voice that was
never heard in training (speaker ``theo`` held out) and count a match as
relevant when it shows the spoken digit.

The audio side decides how well this works. With ``openwakeword==0.4.0``
installed, the clips go through the pretrained speech embedding that it
ships (:meth:`mmsk.AudioEmbedder.from_openwakeword`; its models are
CC BY-NC-SA 4.0 and not part of mmsk); without it, through librosa's
hand-made summary statistics (:class:`~mmsk.AudioFeatures`). The script
says which one it used, and why.

The full set (3,000 pairs) is read from ``data_home`` (the ``MMSK_DATA``
environment variable, see :func:`mmsk.datasets.load_av_digits`). Set
``MMSK_EXAMPLE_FAST=1`` for a run of seconds on the 300-pair sample shipped
with mmsk (:func:`mmsk.datasets.load_sample`): that is what the test suite
does.
"""

# %%
# The data
# --------
# Both loaders hold out the speaker ``theo``: the training pairs come from the
# five other speakers, the queries and the gallery from ``theo``'s pairs.
import os
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, GroupKFold

from mmsk import (
    AudioEmbedder,
    AudioFeatures,
    CrossModalRetriever,
    GroupStandardScaler,
    ImagePixels,
)
from mmsk.datasets import load_av_digits, load_sample
from mmsk.fusion.retrieval import mean_reciprocal_rank, recall_at_k

FAST = os.environ.get("MMSK_EXAMPLE_FAST", "") not in ("", "0")

if FAST:
    train, test = (load_sample(split="speaker", subset=s) for s in ("train", "test"))
else:
    data_home = os.environ.get("MMSK_DATA")
    train, test = (
        load_av_digits(data_home=data_home, split="speaker", subset=s) for s in ("train", "test")
    )
print(
    f"train: {len(train.data)} pairs of {sorted(train.groups.unique())}; "
    f"test: {len(test.data)} pairs of {sorted(test.groups.unique())}"
)


# %%
# The audio block: a pretrained speech embedding when it is installed
# -------------------------------------------------------------------
# :meth:`~mmsk.AudioEmbedder.from_openwakeword` finds openwakeword's two ONNX
# models (a mel front end and Google's speech embedding) in the installed
# package; nothing is downloaded. It gives 96 values per 0.78 s window,
# mean-pooled over the clip. It raises ``ImportError`` when openwakeword is
# absent (as in a fresh environment), and the example then falls back to
# :class:`~mmsk.AudioFeatures`: MFCC, chroma and spectral summary statistics.
def audio_block():
    """Return (name, extractor, why) for the audio column."""
    try:
        embedder = AudioEmbedder.from_openwakeword(pooling="mean", n_jobs=1)
    except (ImportError, FileNotFoundError) as exc:
        why = f"openwakeword 0.4.0 is not usable ({type(exc).__name__}: {exc})"
        return "AudioFeatures", AudioFeatures(sr=8000, n_fft=512, hop_length=128), why
    return "AudioEmbedder.from_openwakeword", embedder, "openwakeword 0.4.0 is installed"


audio_name, audio_extractor, why = audio_block()
print(f"audio block: {audio_name} ({why})")

# %%
# Features, and audio standardised per speaker
# --------------------------------------------
# 28 x 28 grey pixels for the images, the block above for the clips. The
# features of a new voice sit away from those of the training voices;
# standardising the audio block within each speaker
# (:class:`~mmsk.GroupStandardScaler`, cepstral mean and variance
# normalisation in speech terms) removes much of that shift (most of it for
# the hand-made features, a little for the embedding). At test time it uses
# the statistics of ``theo``'s own (unlabelled) clips: a transductive step,
# fine for a gallery searched by one speaker at a time.
features = ColumnTransformer(
    [
        ("image", ImagePixels(size=(28, 28), mode="L"), "image"),
        ("audio", audio_extractor, "audio"),
    ]
).set_output(transform="pandas")  # columns "image__px_0_0_L", "audio__...", ...
X_train_raw = features.fit_transform(train.data)
X_test_raw = features.transform(test.data)
audio_columns = [c for c in X_train_raw.columns if c.startswith("audio__")]

scaler = GroupStandardScaler(min_group_size=2)
X_train, X_test = X_train_raw.copy(), X_test_raw.copy()
X_train[audio_columns] = scaler.fit_transform(X_train_raw[audio_columns], groups=train.groups)
X_test[audio_columns] = scaler.transform(X_test_raw[audio_columns], groups=test.groups)
y_train, y_test = train.target.to_numpy(), test.target.to_numpy()

# %%
# Learning the shared space, the temperature chosen by speaker-held-out CV
# ------------------------------------------------------------------------
# The retriever finds the ``audio`` and ``image`` blocks from the column
# prefixes. The digit labels ``y`` make every pair of the same digit a
# positive (not only a clip and its own image): the space gathers each
# digit's clips and images, which is what "find images of the spoken digit"
# asks. Early stopping holds out 10% of the training pairs.
# ``n_jobs=1`` (one torch thread) is the fastest for nets this small on a CPU.
#
# The initial softmax temperature (CLIP's 0.07, then learned) matters when
# labels define the positives; :class:`~sklearn.model_selection.GridSearchCV`
# picks it with the retrieval scorers, folds holding training speakers out,
# so ``theo`` plays no part in the choice. In each fold the scorers rank the
# held-out speakers' images for each of their clips, relevance by digit.
params = dict(
    query="audio",
    target="image",
    max_epochs=10 if FAST else 100,
    batch_size=64 if FAST else 256,
    n_jobs=1,
    random_state=0,
)
scorers = {"recall@1": recall_at_k(1), "recall@5": recall_at_k(5), "MRR": mean_reciprocal_rank}
search = GridSearchCV(
    CrossModalRetriever(**params),
    {"temperature": [0.07, 0.2]},
    scoring=scorers,
    refit="MRR",
    cv=GroupKFold(n_splits=2 if FAST else 5),
)
start = time.perf_counter()
search.fit(X_train, y_train, groups=train.groups)
for i, candidate in enumerate(search.cv_results_["params"]):
    cv_scores = "  ".join(f"{k} {search.cv_results_[f'mean_test_{k}'][i]:.3f}" for k in scorers)
    print(f"  temperature {candidate['temperature']}: {cv_scores}")
retriever = search.best_estimator_
print(
    f"chose temperature={search.best_params_['temperature']} in "
    f"{time.perf_counter() - start:.0f} s; the refit trained {len(retriever.net_.history)} "
    f"epochs, final temperature {retriever.temperature_:.3f}"
)
best = search.best_params_


# %%
# Recall@k and mean reciprocal rank, against two baselines
# --------------------------------------------------------
# Now the test: the scorers rank the whole gallery (``theo``'s images) for
# every one of his clips; a match is relevant when it shows the same digit.
# Baselines, fitted in the same run with the chosen temperature: the raw
# audio block (no per-speaker scaling), and pairs only (no labels: only a
# clip's own image is a positive in training).
#
# On the full set (``docs/retrieval.md`` has the table, from
# ``benchmarks/eval_retrieval.py``, median of three seeds), the speech
# embedding reaches recall@1 0.976 and recall@5 0.988 on ``theo``, the
# hand-made features 0.884 and 0.950: a clip whose digit the audio tower
# mistakes sits among the images of the wrong digit, so recall@5 gains little
# over recall@1.
def report(name, model, X):
    scores = {key: scorer(model, X, y_test) for key, scorer in scorers.items()}
    print(f"{name:<34}" + "  ".join(f"{key} {value:.3f}" for key, value in scores.items()))
    return scores


scores = report("per-speaker audio, digit labels", retriever, X_test)
raw = CrossModalRetriever(**params, **best).fit(X_train_raw, y_train)
raw_scores = report("raw audio, digit labels", raw, X_test_raw)
pairs_only = CrossModalRetriever(**params, **best).fit(X_train)
pairs_scores = report("per-speaker audio, pairs only", pairs_only, X_test)

# %%
# Speak a digit, look at the images found
# ---------------------------------------
# :meth:`~mmsk.CrossModalRetriever.rank` returns the ``k`` best gallery rows
# of each query, by cosine similarity in the shared space. The gallery is
# ``theo``'s images; the queries are one clip of each digit, by ``theo``.
image_columns = [c for c in X_test.columns if c.startswith("image__")]
gallery = X_test[image_columns]
queries = [int(np.flatnonzero(y_test == digit)[0]) for digit in np.unique(y_test)]
indices, similarity = retriever.rank(X_test.iloc[queries], gallery, k=5)
pixels = X_test_raw[image_columns].to_numpy().reshape(-1, 28, 28)

fig, axes = plt.subplots(len(queries), 5, figsize=(5, 1.1 * len(queries)), layout="constrained")
for row, (q, found) in enumerate(zip(queries, indices, strict=True)):
    for col, g in enumerate(found):
        ax = axes[row, col]
        ax.imshow(pixels[g], cmap="gray_r")
        ax.set_xticks([])
        ax.set_yticks([])
        colour = "tab:green" if y_test[g] == y_test[q] else "tab:red"
        for spine in ax.spines.values():
            spine.set_color(colour)
            spine.set_linewidth(2)
        ax.set_title(f"{similarity[row, col]:.2f}", fontsize=7)
    axes[row, 0].set_ylabel(f'"{y_test[q]}"', rotation=0, labelpad=14)
fig.suptitle("spoken digit (theo) -> top-5 images", fontsize=9)
plt.show()

# %%
# Other uses of the space
# -----------------------
# ``retriever.transform(X, modality="image")`` embeds any images (a gallery
# to index once, e.g. with :class:`~sklearn.neighbors.NearestNeighbors`), and
# ``rank(images, clips, query_modality="image", gallery_modality="audio")``
# searches the other way. :meth:`mmsk.FusionClassifier.transform` gives a
# different space: the fused embedding of *both* modalities of a row.
