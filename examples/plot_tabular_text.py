"""
Tabular data and free text with make_multimodal_pipeline
========================================================

Most multimodal tables are numbers, categories and a text column.
:func:`mmsk.make_multimodal_pipeline` builds the whole pipeline from the
roles of the columns: a scaler for the numbers, a one-hot encoder for the
categories, :class:`~mmsk.TfidfSVD` for the text, and a
:class:`~mmsk.FusionClassifier` over the three blocks.

The data here are made in the example (a small synthetic table of pet
adoptions, where the text and the numbers both carry the label), so that it
runs anywhere. Set ``MMSK_EXAMPLE_FAST=1`` for a run of seconds.
"""

# %%
# A table with numbers, categories and text
# -----------------------------------------
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline

from mmsk import make_multimodal_pipeline

FAST = os.environ.get("MMSK_EXAMPLE_FAST", "") not in ("", "0")

rng = np.random.default_rng(0)
n = 300 if FAST else 1500
adopted = rng.integers(0, 2, n)
good = ["playful", "friendly", "gentle", "healthy", "vaccinated", "calm"]
bad = ["shy", "old", "injured", "nervous", "needs care", "sick"]
neutral = ["brown", "black", "small", "large", "short hair", "long hair", "indoor"]


def describe(label):
    words = list(rng.choice(good if label else bad, 2)) + list(rng.choice(neutral, 4))
    return " ".join(rng.permutation(words))


df = pd.DataFrame(
    {
        "age_months": rng.gamma(2.0, 12.0, n) * np.where(adopted, 0.6, 1.2),
        "fee": rng.normal(50, 20, n).round(),
        "kind": rng.choice(["cat", "dog"], n),
        "city": rng.choice(["Lyon", "Oslo", "Porto"], n),
        "description": [describe(label) for label in adopted],
        "adopted": adopted,
    }
)
# some noise in the labels, so that no single column gives them away
flip = rng.random(n) < 0.15
df.loc[flip, "adopted"] = 1 - df.loc[flip, "adopted"]
print(df.head())

# %%
# The pipeline from column roles
# ------------------------------
model = make_multimodal_pipeline(
    numeric=["age_months", "fee"],
    categorical=["kind", "city"],
    text="description",
    max_epochs=10 if FAST else 50,
    random_state=0,
)
model.set_params(features__description__n_components=8)  # a short vocabulary here
print(model)

X, y = df.drop(columns="adopted"), df["adopted"]
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
model.fit(X_train, y_train)
print(f"fusion network: test accuracy {model.score(X_test, y_test):.3f}")

# %%
# A linear baseline on the same features
# --------------------------------------
# A fusion net should be measured against a linear model on the same
# features: here both get the same feature step and the same folds. (The
# fast mode trains the net for 10 epochs only; run the full example for the
# fair comparison.)
baseline = make_pipeline(model.named_steps["features"], LogisticRegression(max_iter=1000))
cv_net = cross_val_score(model, X, y, cv=3)
cv_linear = cross_val_score(baseline, X, y, cv=3)
print(f"3-fold accuracy: fusion {cv_net.mean():.3f}, logistic regression {cv_linear.mean():.3f}")

fig, ax = plt.subplots(figsize=(5, 3))
ax.bar(
    ["fusion net", "logistic regression"],
    [cv_net.mean(), cv_linear.mean()],
    yerr=[cv_net.std(), cv_linear.std()],
    color=["tab:blue", "tab:gray"],
)
ax.set_ylim(0.5, 1)
ax.set_ylabel("3-fold accuracy")
plt.show()
