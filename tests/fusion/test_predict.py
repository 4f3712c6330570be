"""The lean predict path: the same numbers as skorch's, the same checks as scikit-learn's."""

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import mmsk.fusion._core as core
from mmsk.fusion import FusionClassifier, FusionRegressor

FAST = dict(hidden_units=8, max_epochs=2, random_state=0)


def frame(blocks):
    """A DataFrame with ``name__`` prefixes, as ColumnTransformer's pandas output."""
    parts = [
        pd.DataFrame(b.astype("float32"), columns=[f"{n}__f{j}" for j in range(b.shape[1])])
        for n, b in blocks.items()
    ]
    return pd.concat(parts, axis=1)


@pytest.fixture
def skorch_path(monkeypatch):
    """Run a function with the former path: full validate_data, then net_.predict_proba."""

    def run(function, *args):
        with monkeypatch.context() as m:
            m.setattr(core, "frame_values", lambda estimator, X: None)
            m.setattr(core, "net_output", lambda net, prepared: net.predict_proba(prepared))
            return function(*args)

    return run


@pytest.mark.parametrize("kind", ["frame", "dict", "array"])
def test_classifier_probabilities_are_bit_identical(blocks_data, skorch_path, kind):
    blocks, y = blocks_data
    X = {"frame": frame(blocks), "dict": blocks, "array": np.hstack(list(blocks.values()))}[kind]
    clf = FusionClassifier(fusion="gated", **FAST).fit(X, y)
    for rows in (slice(0, 1), slice(0, 7), slice(None)):
        if kind == "frame":
            part = X.iloc[rows]
        else:
            part = {k: v[rows] for k, v in X.items()} if kind == "dict" else X[rows]
        lean = clf.predict_proba(part)
        np.testing.assert_array_equal(lean, skorch_path(clf.predict_proba, part))
        np.testing.assert_array_equal(clf.predict(part), skorch_path(clf.predict, part))


def test_missing_modalities_and_ensembles_are_bit_identical(blocks_data, skorch_path):
    blocks, y = blocks_data
    X = frame(blocks)
    X.iloc[::3, :6] = np.nan  # every third row lacks m0
    X.iloc[1::5, 6:10] = np.nan  # and some others lack m1
    clf = FusionClassifier(n_estimators=2, **FAST).fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), skorch_path(clf.predict_proba, X))
    reg = FusionRegressor(n_estimators=2, fusion="attention", **FAST).fit(X, np.c_[y, -y])
    out = reg.predict(X)
    assert out.shape == (len(X), 2)
    np.testing.assert_array_equal(out, skorch_path(reg.predict, X))


def test_several_batches_and_a_one_row_remainder(skorch_path):
    rng = np.random.RandomState(0)
    blocks = {"a": rng.normal(size=(1025, 5)), "b": rng.normal(size=(1025, 3))}
    X = frame(blocks)  # 1,025 rows: predicting in batches of 1,024 leaves one row
    reg = FusionRegressor(**FAST).fit(X.iloc[:200], blocks["a"][:200, 0])
    np.testing.assert_array_equal(reg.predict(X), skorch_path(reg.predict, X))
    sparse_X = sparse.csr_matrix(np.where(np.abs(blocks["a"]) > 1, blocks["a"], 0))
    clf = FusionClassifier(**FAST).fit(sparse_X[:200], blocks["b"][:200, 0] > 0)
    np.testing.assert_array_equal(
        clf.predict_proba(sparse_X), skorch_path(clf.predict_proba, sparse_X)
    )


def test_frames_that_need_the_full_checks_still_get_them(blocks_data, skorch_path):
    blocks, y = blocks_data
    X = frame(blocks)
    clf = FusionClassifier(**FAST).fit(X, y)
    as_float64 = X.astype("float64")
    as_float64.iloc[:, 0] = np.arange(len(X))  # an int-valued column in float64
    np.testing.assert_array_equal(
        clf.predict_proba(as_float64), skorch_path(clf.predict_proba, as_float64)
    )
    ints = X.assign(**{"m0__f0": np.arange(len(X))})  # an int64 column: the full path
    np.testing.assert_array_equal(clf.predict_proba(ints), skorch_path(clf.predict_proba, ints))
    with pytest.raises(ValueError, match="feature names should match"):
        clf.predict_proba(X[X.columns[::-1]])
    with pytest.raises(ValueError, match="infinity"):
        clf.predict_proba(X.replace({X.iloc[0, 0]: np.inf}))
    with pytest.warns(UserWarning, match="valid feature names"):
        with pytest.raises(ValueError, match="13 features"):
            clf.predict_proba(X.iloc[:, :12].to_numpy())
    with pytest.raises(ValueError, match="row 0 has NaN in column 'm0__f1'"):
        clf.predict_proba(X.iloc[:2].assign(m0__f1=np.nan))
