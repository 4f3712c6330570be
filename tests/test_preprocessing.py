import numpy as np
import pandas as pd
import pytest
import sklearn
from numpy.testing import assert_allclose
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from mmsk import GroupStandardScaler


def shifted_groups(seed=0):
    rng = np.random.RandomState(seed)
    groups = np.repeat(["ann", "bob", "cid"], 40)
    offset = {"ann": 0.0, "bob": 5.0, "cid": -3.0}
    X = rng.normal(size=(120, 3)) * 2 + np.array([offset[g] for g in groups])[:, None]
    return X, groups


def test_each_group_gets_zero_mean_unit_variance():
    X, groups = shifted_groups()
    out = GroupStandardScaler().fit_transform(X, groups=groups)
    for g in np.unique(groups):
        assert_allclose(out[groups == g].mean(axis=0), 0, atol=1e-12)
        assert_allclose(out[groups == g].std(axis=0), 1, atol=1e-12)


def test_new_group_uses_its_own_rows_small_group_falls_back():
    X, groups = shifted_groups()
    scaler = GroupStandardScaler(min_group_size=5).fit(X, groups=groups)
    new = np.random.RandomState(1).normal(size=(10, 3)) + 100
    out = scaler.transform(new, groups=["zed"] * 10)
    assert_allclose(out.mean(axis=0), 0, atol=1e-12)
    # 2 rows of a known group: its statistics from fit
    two = X[groups == "bob"][:2]
    mean, scale = scaler.group_stats_["bob"]
    assert_allclose(scaler.transform(two, groups=["bob", "bob"]), (two - mean) / scale)
    # 2 rows of an unknown group, or no groups: the overall statistics
    assert_allclose(
        scaler.transform(two, groups=["new", "new"]), (two - scaler.mean_) / scaler.scale_
    )
    assert_allclose(scaler.transform(two), (two - scaler.mean_) / scaler.scale_)


def test_all_nan_rows_stay_missing():
    X, groups = shifted_groups()
    X[3] = np.nan
    out = GroupStandardScaler().fit_transform(X, groups=groups)
    assert np.isnan(out[3]).all() and np.isfinite(np.delete(out, 3, axis=0)).all()


def test_errors_name_the_parameter():
    X, groups = shifted_groups()
    with pytest.raises(ValueError, match="one label per row"):
        GroupStandardScaler().fit(X, groups=groups[:5])
    with pytest.raises(ValueError, match="min_group_size"):
        GroupStandardScaler(min_group_size=1).fit(X)


def test_groups_are_routed_through_pipeline_and_column_transformer():
    X, groups = shifted_groups()
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    y = X[:, 0] - np.array([{"ann": 0.0, "bob": 5.0, "cid": -3.0}[g] for g in groups]) > 0
    features = ColumnTransformer([("audio", GroupStandardScaler(), ["a", "b", "c"])])
    model = make_pipeline(features, LogisticRegression())
    with sklearn.config_context(enable_metadata_routing=True):
        model.fit(df, y, groups=groups)
        routed = model.score(df, y, groups=groups)
        scaled = model[0].transform(df, groups=groups)
    assert_allclose(scaled[groups == "bob"].mean(axis=0), 0, atol=1e-12)
    plain = make_pipeline(
        ColumnTransformer([("audio", "passthrough", ["a", "b", "c"])]), LogisticRegression()
    ).fit(df, y)
    assert routed > plain.score(df, y) + 0.05


def test_pandas_output_keeps_names():
    X, groups = shifted_groups()
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    out = GroupStandardScaler().set_output(transform="pandas").fit_transform(df, groups=groups)
    assert list(out.columns) == ["a", "b", "c"]
