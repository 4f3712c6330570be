"""The content-addressed feature cache and the base class's use of it."""

import warnings

import joblib
import numpy as np
import pytest

from mmsk import ItemError, ItemWarning
from mmsk._base import BadItem, ItemTransformer
from mmsk._cache import FeatureCache, cache_location


class Summer(ItemTransformer):
    """A tiny extractor for the base-class tests: sums a numeric item."""

    calls = 0

    def __init__(self, *, k=2, on_error="raise", n_jobs=None, memory=None, verbose=0):
        self.k = k
        self.on_error = on_error
        self.n_jobs = n_jobs
        self.memory = memory
        self.verbose = verbose

    def _check_params(self):
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")

    def _feature_names(self):
        return [f"sum_{i}" for i in range(self.k)]

    def _extract(self, source):
        type(self).calls += 1
        if not isinstance(source, np.ndarray):
            raise BadItem(f"unsupported item type {type(source).__name__}")
        return np.full(self.k, source.sum())


def test_cache_location_forms(tmp_path):
    assert cache_location(None) is None
    assert cache_location(str(tmp_path)) == tmp_path
    assert cache_location(joblib.Memory(tmp_path, verbose=0)) == tmp_path
    assert cache_location(joblib.Memory(None)) is None
    with pytest.raises(ValueError, match="memory should be"):
        cache_location(3)


def test_cache_roundtrip_and_isolation(tmp_path):
    a = FeatureCache(tmp_path, "X", "params-a")
    b = FeatureCache(tmp_path, "X", "params-b")
    a.put("k", np.arange(3, dtype="float32"))
    np.testing.assert_array_equal(a.get("k"), [0, 1, 2])
    assert b.get("k") is None  # other parameters, other entry
    assert a.get("other") is None
    assert not list(tmp_path.rglob("*.tmp"))
    off = FeatureCache(None, "X", "t")
    off.put("k", np.ones(2))
    assert off.get("k") is None and not off.enabled


def test_memory_extracts_each_item_once(tmp_path):
    items = [np.full(3, i, dtype=float) for i in range(20)]
    Summer.calls = 0
    first = Summer(memory=tmp_path).fit_transform(items)
    assert Summer.calls == 20
    again = Summer(memory=str(tmp_path)).fit_transform(items[::-1])
    assert Summer.calls == 20  # every item came from the cache
    np.testing.assert_array_equal(again, first[::-1])
    Summer(k=3, memory=tmp_path).fit_transform(items)
    assert Summer.calls == 40  # a parameter that changes the output misses


def test_on_error_policies(tmp_path):
    X = [np.ones(2), 7, None]
    with pytest.raises(ItemError, match=r"^row 1 \(7\): unsupported item type int$"):
        Summer().fit_transform(X)
    with pytest.raises(ItemError, match=r"^row 0 \('nope.wav'\): file not found$"):
        Summer(memory=tmp_path).fit_transform(["nope.wav"])  # hashing opens the file
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = Summer(on_error="nan").fit_transform(X)
    assert [w.category for w in caught] == [ItemWarning]
    assert "1 of 3 items" in str(caught[0].message)
    assert out.shape == (3, 2) and np.isnan(out[1:]).all() and (out[0] == 2).all()


def test_fit_validates(tmp_path):
    with pytest.raises(ValueError, match="on_error"):
        Summer(on_error="ignore").fit([np.ones(1)])
    with pytest.raises(ValueError, match="k must be"):
        Summer(k=0).fit([np.ones(1)])
    with pytest.raises(ValueError, match="memory should be"):
        Summer(memory=1.5).fit([np.ones(1)])


def test_parallel_and_progress_bar_do_not_change_output(capsys):
    items = [np.full(2, i, dtype=float) for i in range(600)]
    items[5] = None
    serial = Summer().fit_transform(items)
    parallel = Summer(n_jobs=2, verbose=1).fit_transform(items)
    np.testing.assert_array_equal(serial, parallel)
    assert "Summer" in capsys.readouterr().err
