"""mmsk on a dask cluster: map_partitions with predict_frame, joblib's dask backend.

A two-worker LocalCluster on 127.0.0.1, workers as threads of this process
(they start in a fraction of a second; processes take tens of seconds here,
so the test that needs them is marked slow). Every wait has a timeout.
"""

import concurrent.futures

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from mmsk import ImagePixels, predict_frame
from mmsk.compose import make_multimodal_pipeline

dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
joblib = pytest.importorskip("joblib")

TIMEOUT = 60  # seconds, for every result we wait for
FEATURES = ["x", "z", "colour"]
METHODS = ["predict", "predict_proba"]


def _cluster(processes):
    return distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=processes,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
    )


@pytest.fixture(scope="module")
def client():
    # convert-string False: text columns keep pandas' types, missing values NaN (dask's own
    # string type makes them pd.NA, which OneHotEncoder takes for an unseen category)
    config = {"distributed.comm.timeouts.connect": "20s", "dataframe.convert-string": False}
    with dask.config.set(config):
        with _cluster(processes=False) as cluster, distributed.Client(cluster, timeout=30) as c:
            yield c


def _frame(n, seed=0):
    rng = np.random.RandomState(seed)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n).round(3),
            "z": rng.normal(size=n).round(3),
            "colour": rng.choice(["red", "blue", "green"], n),
        }
    )
    frame.loc[rng.rand(n) < 0.05, "x"] = np.nan
    frame.loc[rng.rand(n) < 0.05, "colour"] = np.nan  # a category of its own
    frame["label"] = np.where(frame["z"] + (frame["colour"] == "red") > 0.3, "yes", "no")
    return frame


def _pipeline(n_jobs=1):  # one torch thread: this machine's 2 cores are shared
    return make_multimodal_pipeline(
        numeric=["x", "z"], categorical="colour", max_epochs=2, random_state=0, n_jobs=n_jobs
    )


@pytest.fixture(scope="module")
def model():
    train = _frame(200)
    return _pipeline().fit(train, train["label"])


def _bounded(function, *args):
    """Run ``function(*args)`` in a thread and wait for it at most TIMEOUT seconds."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(function, *args).result(timeout=TIMEOUT)


# -- map_partitions ------------------------------------------------------------------------
def test_map_partitions_predictions_equal_in_process(client, model, tmp_path):
    frame = _frame(600, seed=1)
    expected = predict_frame(frame, model, METHODS)
    ddf = dd.from_pandas(frame[FEATURES], npartitions=4)
    meta = predict_frame(ddf.head(1), model, METHODS).iloc[:0]  # one real row, not dask's fakes
    pred = ddf.map_partitions(predict_frame, model, METHODS, meta=meta)
    assert pred.dtypes.to_dict() == expected.dtypes.to_dict()
    got = pred.compute(timeout=TIMEOUT)
    pd.testing.assert_frame_equal(got, expected)
    # from Parquet files, the model shipped once as a delayed object rather than per task
    frame.to_parquet(tmp_path / "part.parquet", row_group_size=150)
    ddf = dd.read_parquet(tmp_path / "part.parquet", split_row_groups=True)
    assert ddf.npartitions == 4
    shared = dask.delayed(model)
    pred = ddf.map_partitions(predict_frame, shared, "predict", meta=meta[["prediction"]])
    got = pred.compute(timeout=TIMEOUT).reset_index(drop=True)  # each file part counts from 0
    pd.testing.assert_frame_equal(got, expected[["prediction"]])


def test_map_partitions_features_equal_in_process(client, model):
    frame = _frame(300, seed=2)
    features = model[:-1]  # the extractors: what the network sees
    expected = predict_frame(frame, features, "transform")
    assert list(expected.columns) == list(features.get_feature_names_out())
    ddf = dd.from_pandas(frame, npartitions=3)
    meta = predict_frame(frame.head(1), features, "transform").iloc[:0]
    got = ddf.map_partitions(predict_frame, features, "transform", meta=meta)
    pd.testing.assert_frame_equal(got.compute(timeout=TIMEOUT), expected)


# -- joblib's dask backend -------------------------------------------------------------------
def test_extractor_n_jobs_runs_on_the_cluster(client, png_paths):
    items = png_paths * 4
    extractor = ImagePixels(size=(8, 8), mode="L", n_jobs=2).fit(items)
    expected = clone(extractor).set_params(n_jobs=None).fit(items).transform(items)

    def on_dask():
        with joblib.parallel_config(backend="dask"):
            return extractor.transform(items)

    with distributed.get_task_stream(client) as tasks:
        got = _bounded(on_dask)
    np.testing.assert_array_equal(got, expected)
    assert len(tasks.data) >= 2  # the item batches ran as tasks on the workers


def test_grid_search_under_the_dask_backend(client):
    train = _frame(160, seed=3)
    grid = {"fusion__hidden_units": [8, 16], "features__numeric__simpleimputer__strategy": ["mean"]}
    search = GridSearchCV(_pipeline(), grid, cv=2, n_jobs=-1)

    def on_dask():
        with joblib.parallel_config(backend="dask"):
            return search.fit(train, train["label"])

    with distributed.get_task_stream(client) as tasks:
        _bounded(on_dask)
    assert len(tasks.data) >= 4  # 2 candidates x 2 folds, fitted on the workers
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == 2 and np.all((scores >= 0) & (scores <= 1))
    # the refit runs here, seeded: it equals a fit of the best parameters in this process
    best = clone(_pipeline()).set_params(**search.best_params_).fit(train, train["label"])
    np.testing.assert_array_equal(
        search.best_estimator_.predict_proba(train), best.predict_proba(train)
    )


@pytest.mark.slow
def test_grid_search_on_worker_processes_equals_in_process():
    """Worker processes: each fit has its own torch generator, so scores repeat exactly.

    One torch thread on both sides (dask's workers get OMP_NUM_THREADS=1): other
    thread counts sum in other orders, and training amplifies the last bits.
    """
    train = _frame(160, seed=3)
    grid = {"fusion__hidden_units": [8, 16]}
    pipeline = _pipeline()
    expected = GridSearchCV(pipeline, grid, cv=2, refit=False).fit(train, train["label"])

    def on_dask():
        search = GridSearchCV(pipeline, grid, cv=2, n_jobs=-1, refit=False)
        with joblib.parallel_config(backend="dask"):
            return search.fit(train, train["label"])

    with _cluster(processes=True) as cluster, distributed.Client(cluster, timeout=60):
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            search = pool.submit(on_dask).result(timeout=300)
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], expected.cv_results_["mean_test_score"], rtol=1e-12
    )
