"""FusionClassifier / FusionRegressor: the scikit-learn contract and skorch's power.

Mirrors skorch's ``test_net.py`` (pickle, clone, Pipeline, GridSearchCV,
callbacks, history, devices) and runs scikit-learn's common checks.
"""

import os
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from scipy import sparse
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from skorch.callbacks import Callback, Checkpoint, EpochScoring
from skorch.exceptions import DeviceWarning

from mmsk.fusion import FusionClassifier, FusionRegressor
from mmsk.fusion._data import BatchIterator, FusionDataset

FUSIONS = ["concat", "late", "gated", "attention", "tensor"]
# Small and fast, yet enough training for the accuracy checks
# (check_classifiers_train needs > 0.83, check_classifiers_classes all 3 classes
# predicted from 30 rows, check_regressors_train R^2 > 0.5).
FAST = dict(hidden_units=8, max_epochs=10, batch_size=16, lr=0.01, random_state=0)
SMALL = dict(hidden_units=8, max_epochs=8, batch_size=32, lr=0.01, random_state=0)

# Checks expected to fail, with the reason. Only the sample-weight equivalence,
# which mini-batch training cannot meet to rtol=1e-7; with full-batch training and
# no batch norm it passes (tests/fusion/test_sample_weight.py runs it there).
_EQUIVALENCE = (
    "mini-batches of 16 rows: a weighted fit's batches, shuffling and batch-norm "
    "statistics differ from those of the repeated rows; equivalent with batch_size=-1, "
    "norm=None, dropout=0 (tests/fusion/test_sample_weight.py)"
)
EXPECTED_FAILED_CHECKS: dict[str, str] = {
    "check_sample_weight_equivalence_on_dense_data": _EQUIVALENCE,
    "check_sample_weight_equivalence_on_sparse_data": _EQUIVALENCE,
}


@parametrize_with_checks(
    [FusionClassifier(**FAST), FusionRegressor(**FAST)],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def to_frame(blocks):
    """A DataFrame whose columns are named like ColumnTransformer's pandas output."""
    return pd.concat(
        [
            pd.DataFrame(b, columns=[f"{k}__f{j}" for j in range(b.shape[1])])
            for k, b in blocks.items()
        ],
        axis=1,
    )


# -- fitting on the input kinds ------------------------------------------------------------


@pytest.mark.parametrize("fusion", FUSIONS)
def test_fusions_learn_dict_input(blocks_data, fusion):
    X, y = blocks_data
    clf = FusionClassifier(fusion=fusion, **SMALL).fit(X, y)
    assert clf.modalities_ == ["m0", "m1", "m2"]
    assert clf.modality_dims_ == {"m0": 6, "m1": 4, "m2": 3}
    assert clf.modality_columns_ == {"m0": None, "m1": None, "m2": None}
    assert clf.n_features_in_ == 13
    assert not hasattr(clf, "feature_names_in_")
    assert clf.score(X, y) > 0.8


def test_dataframe_prefixes_become_blocks(blocks_data):
    X, y = blocks_data
    df = to_frame(X)
    df["age"] = np.arange(len(df), dtype=float)  # no prefix: the "other" block
    clf = FusionClassifier(**SMALL).fit(df, y)
    assert clf.modalities_ == ["m0", "m1", "m2", "other"]
    assert clf.modality_dims_ == {"m0": 6, "m1": 4, "m2": 3, "other": 1}
    assert_array_equal(clf.feature_names_in_, df.columns)
    assert_array_equal(clf.modality_columns_["other"], [13])
    assert clf.score(df, y) > 0.8


def test_column_transformer_pandas_output_maps_to_blocks(blocks_data):
    X, y = blocks_data
    df = pd.DataFrame(np.hstack([X["m0"], X["m1"]]), columns=[f"c{i}" for i in range(10)])
    ct = ColumnTransformer(
        [
            ("image", StandardScaler(), [f"c{i}" for i in range(6)]),
            ("audio", StandardScaler(), [f"c{i}" for i in range(6, 10)]),
        ]
    ).set_output(transform="pandas")
    model = make_pipeline(ct, FusionClassifier(**SMALL)).fit(df, y)
    assert model[-1].modalities_ == ["image", "audio"]
    assert model[-1].modality_dims_ == {"image": 6, "audio": 4}
    # output_indices_ works as an explicit mapping (the dropped remainder is empty)
    clf = FusionClassifier(modalities=ct.output_indices_, **SMALL).fit(ct.transform(df), y)
    assert clf.modalities_ == ["image", "audio"]


def test_plain_2d_input_is_one_block():
    X = [[0, 1], [1, 0], [2, 1], [3, 0]] * 10  # a list of int rows
    y = [0, 1, 0, 1] * 10
    clf = FusionClassifier(**SMALL).fit(X, y)
    assert clf.modalities_ == ["input"]
    assert clf.predict(X).shape == (40,)
    clf.fit(np.asarray(X, dtype=np.int64), y)
    assert clf.modality_dims_ == {"input": 2}


@pytest.mark.parametrize(
    "modalities",
    [
        {
            "a": ["m0__f0", "m0__f1", "m0__f2", "m0__f3", "m0__f4", "m0__f5"],
            "b": ["m1__f0", "m1__f1", "m1__f2", "m1__f3", "m2__f0", "m2__f1", "m2__f2"],
        },
        {"a": "m0__", "b": "m1__", "c": "m2__"},
        {"a": slice(0, 6), "b": slice(6, 13)},
        {"a": [0, 1, 2, 3, 4, 5], "b": np.arange(6, 13)},
        {"a": np.arange(13) < 6, "b": np.arange(13) >= 6},
        {"a": slice(0, 6), "b": [-7, -6, -5, -4, -3, -2, -1]},
    ],
    ids=["names", "prefix", "slice", "indices", "mask", "negative"],
)
def test_explicit_modalities_every_form(blocks_data, modalities):
    X, y = blocks_data
    df = to_frame(X)
    clf = FusionClassifier(modalities=modalities, **SMALL).fit(df, y)
    assert clf.modalities_ == list(modalities)
    assert_array_equal(clf.modality_columns_["a"], np.arange(6))
    assert clf.score(df, y) > 0.8
    if not any(
        isinstance(v, str) or np.asarray(v).dtype.kind in "OU"
        for v in modalities.values()
        if not isinstance(v, slice)
    ):
        clf.fit(df.to_numpy(), y)  # positions also work without names
        assert sum(clf.modality_dims_.values()) == 13


def test_sparse_block_is_densified_batch_by_batch(blocks_data, monkeypatch):
    X, y = blocks_data
    wide = np.where(np.abs(X["m1"]) > 1, X["m1"], 0.0)
    dense = {**X, "m1": wide}
    sparse_X = {**X, "m1": sparse.csr_matrix(wide)}
    densified = []
    toarray = sparse.csr_matrix.toarray

    def spy(self, *args, **kwargs):
        densified.append(self.shape[0])
        return toarray(self, *args, **kwargs)

    monkeypatch.setattr(sparse.csr_matrix, "toarray", spy)
    # standardize=True scales both alike ("auto" leaves a sparse block as it is)
    clf_sparse = FusionClassifier(standardize=True, **SMALL).fit(sparse_X, y)
    assert densified and max(densified) <= 32  # batches, never the whole block
    clf_dense = FusionClassifier(standardize=True, **SMALL).fit(dense, y)
    assert_allclose(clf_sparse.predict_proba(sparse_X), clf_dense.predict_proba(dense), atol=1e-3)


def test_whole_sparse_input():
    rng = np.random.RandomState(0)
    X = sparse.random(120, 10, density=0.3, format="csr", random_state=rng)
    y = np.asarray(X[:, 0].todense()).ravel() > 0
    clf = FusionClassifier(**SMALL).fit(X, y)
    assert clf.predict(X).shape == (120,)


def test_inputs_are_not_modified(blocks_data):
    X, y = blocks_data
    X = {k: v.astype(np.float32) for k, v in X.items()}
    X["m2"][:10] = np.nan  # missing modality in the first rows
    before = {k: v.copy() for k, v in X.items()}
    FusionClassifier(**SMALL).fit(X, y).predict(X)
    for k in X:
        assert_array_equal(X[k], before[k])


# -- labels, targets -----------------------------------------------------------------------


@pytest.mark.parametrize("labels", [[3, 7], ["cat", "dog", "eel"], [-1.0, 2.0], [True, False]])
def test_label_kinds(labels, make_blocks):
    X, _ = make_blocks(n=120)
    y = np.asarray(labels)[np.arange(120) % len(labels)]
    clf = FusionClassifier(**SMALL).fit(X, y)
    assert_array_equal(clf.classes_, np.unique(labels))
    assert set(clf.predict(X)) <= set(labels)
    proba = clf.predict_proba(X)
    assert proba.shape == (120, len(labels)) and proba.dtype == np.float64
    assert_allclose(proba.sum(axis=1), 1.0)


def test_class_weight_balanced(blocks_data):
    X, y = blocks_data
    clf = FusionClassifier(class_weight="balanced", **SMALL).fit(X, y)
    weight = clf.net_.criterion_.weight
    assert weight is not None and weight.shape == (2,)


def test_regressor_single_and_multi_output(blocks_data):
    X, _ = blocks_data
    y1 = 10 + 5 * X["m0"][:, 0] - 3 * X["m1"][:, 1]
    reg = FusionRegressor(**SMALL).fit(X, y1)
    assert reg.predict(X).shape == (240,)
    assert reg.score(X, y1) > 0.7
    assert reg.n_outputs_ == 1
    y2 = np.column_stack([y1, -y1])
    reg.fit(X, y2)
    assert reg.predict(X).shape == (240, 2) and reg.n_outputs_ == 2
    assert reg.fit(X, y1[:, None]).predict(X).shape == (240, 1)


def test_regressor_without_standardize_has_identity_target_scaling(blocks_data):
    X, _ = blocks_data
    reg = FusionRegressor(standardize=False, **SMALL).fit(X, X["m0"][:, 0])
    assert_array_equal(reg.target_mean_, [0.0]) and assert_array_equal(reg.target_scale_, [1.0])


# -- randomness, persistence, composition --------------------------------------------------


@pytest.mark.parametrize("fusion", FUSIONS)
def test_same_random_state_same_predictions(blocks_data, fusion):
    X, y = blocks_data
    params = dict(SMALL, fusion=fusion, modality_dropout=0.3, validation_fraction=0.2)
    a = FusionClassifier(**params).fit(X, y).predict_proba(X)
    b = FusionClassifier(**params).fit(X, y).predict_proba(X)
    assert_array_equal(a, b)
    c = FusionClassifier(**{**params, "random_state": 1}).fit(X, y).predict_proba(X)
    assert not np.array_equal(a, c)


def test_fit_leaves_global_torch_rng_alone(blocks_data):
    X, y = blocks_data
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    FusionClassifier(**SMALL).fit(X, y)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("Estimator", [FusionClassifier, FusionRegressor])
def test_pickle_round_trip(blocks_data, Estimator):
    X, y = blocks_data
    est = Estimator(fusion="attention", **SMALL).fit(X, y)
    loaded = pickle.loads(pickle.dumps(est))
    method = "predict_proba" if Estimator is FusionClassifier else "predict"
    assert_array_equal(getattr(est, method)(X), getattr(loaded, method)(X))
    assert loaded.net_.history[-1, "epoch"] == SMALL["max_epochs"]


def test_clone_is_unfitted_with_equal_params(blocks_data):
    X, y = blocks_data
    clf = FusionClassifier(fusion="gated", **SMALL).fit(X, y)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params()
    assert not hasattr(twin, "net_")


def test_pipeline(blocks_data):
    X, y = blocks_data
    Xa = np.hstack(list(X.values()))
    pipe = make_pipeline(StandardScaler(), FusionClassifier(**SMALL)).fit(Xa, y)
    assert pipe.score(Xa, y) > 0.8


def test_grid_search_over_fusion_and_hidden_units(make_blocks):
    X, y = make_blocks(n=120)
    search = GridSearchCV(
        FusionClassifier(max_epochs=4, batch_size=32, random_state=0),
        {"fusion": ["concat", "gated"], "hidden_units": [4, 8]},
        cv=3,
    )
    search.fit(to_frame(X), y)
    assert set(search.best_params_) == {"fusion", "hidden_units"}
    assert search.best_estimator_.modalities_ == ["m0", "m1", "m2"]


# -- missing modalities --------------------------------------------------------------------


def test_one_modality_missing_for_all_rows_beats_chance(make_blocks):
    # both modalities carry the label (redundant views), as in audio-visual digits
    X, y = make_blocks(n=400, dims=(5, 5), informative=(0,))
    X["m1"] = X["m1"].copy()
    X["m1"][:, 0] = X["m0"][:, 0] + 0.3 * np.random.RandomState(1).normal(size=400)
    params = dict(SMALL, max_epochs=15, modality_dropout=0.3)
    clf = FusionClassifier(**params).fit(X, y)
    for gone in ["m0", "m1"]:
        X_missing = {**X, gone: np.full_like(X[gone], np.nan)}
        assert clf.score(X_missing, y) > 0.75, gone
    # some rows missing, some present: works too
    X_some = {**X, "m0": X["m0"].copy()}
    X_some["m0"][::2] = np.nan
    assert clf.score(X_some, y) > 0.75


@pytest.mark.parametrize("fusion", FUSIONS)
def test_every_fusion_handles_missing_rows_in_fit_and_predict(blocks_data, fusion):
    X, y = blocks_data
    X = {k: v.copy() for k, v in X.items()}
    X["m1"][::3] = np.nan
    X["m2"][1::3] = np.nan
    clf = FusionClassifier(fusion=fusion, **SMALL).fit(X, y)
    proba = clf.predict_proba(X)
    assert np.isfinite(proba).all()
    X_all_gone = {**X, "m2": np.full_like(X["m2"], np.nan)}
    assert np.isfinite(clf.predict_proba(X_all_gone)).all()


def test_modality_dropout_changes_training_but_stays_seeded(blocks_data):
    X, y = blocks_data
    plain = FusionClassifier(**SMALL).fit(X, y).predict_proba(X)
    dropped = FusionClassifier(modality_dropout=0.5, **SMALL).fit(X, y).predict_proba(X)
    assert not np.allclose(plain, dropped)


def test_row_without_any_modality_is_an_error(blocks_data, make_blocks):
    X, y = blocks_data
    X = {k: v.copy() for k, v in X.items()}
    for block in X.values():
        block[17] = np.nan
    with pytest.raises(ValueError, match=r"row 17 has no modality"):
        FusionClassifier(**SMALL).fit(X, y)
    clf = FusionClassifier(**SMALL).fit(make_blocks()[0], y)
    with pytest.raises(ValueError, match=r"row 17 has no modality"):
        clf.predict(X)


def test_nan_inside_present_block_names_column_and_row(blocks_data):
    X, y = blocks_data
    df = to_frame(X)
    df.iloc[5, 7] = np.nan  # m1__f1
    with pytest.raises(ValueError, match=r"modality 'm1': row 5 has NaN in column 'm1__f1'"):
        FusionClassifier(**SMALL).fit(df, y)
    Xd = {k: v.copy() for k, v in X.items()}
    Xd["m0"][9, 2] = np.nan
    with pytest.raises(ValueError, match=r"modality 'm0': row 9 has NaN in column 2"):
        FusionClassifier(**SMALL).fit(Xd, y)
    Xs = {**X, "m0": sparse.csr_matrix(Xd["m0"])}
    with pytest.raises(ValueError, match=r"modality 'm0': row 9 has NaN in column 2"):
        FusionClassifier(**SMALL).fit(Xs, y)


def test_sparse_all_nan_row_is_missing(blocks_data):
    X, y = blocks_data
    m0 = X["m0"].copy()
    m0[3] = np.nan
    clf = FusionClassifier(**SMALL).fit({**X, "m0": sparse.csr_matrix(m0)}, y)
    assert clf.predict(X).shape == (240,)


def test_infinity_is_an_error(blocks_data):
    X, y = blocks_data
    X = {**X, "m1": X["m1"].copy()}
    X["m1"][0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        FusionClassifier(**SMALL).fit(X, y)


def test_modality_missing_in_every_training_row_is_an_error(blocks_data):
    X, y = blocks_data
    with pytest.raises(ValueError, match="missing .* in every training row"):
        FusionClassifier(**SMALL).fit({**X, "m2": np.full_like(X["m2"], np.nan)}, y)


# -- layout mismatch and bad parameters -----------------------------------------------------


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_predict_needs_the_fitted_layout(blocks_data):
    X, y = blocks_data
    clf = FusionClassifier(**SMALL).fit(X, y)
    with pytest.raises(ValueError, match=r"missing: \['m2'\], unknown: \['zz'\]"):
        clf.predict({"m0": X["m0"], "m1": X["m1"], "zz": X["m2"]})
    with pytest.raises(ValueError, match="modality 'm1' has 3 features, .* fitted with 4"):
        clf.predict({**X, "m1": X["m1"][:, :3]})
    with pytest.raises(ValueError, match="fitted on a dict of blocks"):
        clf.predict(np.hstack(list(X.values())))
    clf.fit(to_frame(X), y)
    with pytest.raises(ValueError, match="not on a dict of blocks"):
        clf.predict(X)
    with pytest.raises(ValueError, match="feature names should match"):
        clf.predict(to_frame(X).iloc[:, ::-1])
    with pytest.raises(ValueError, match="X has 12 features, but FusionClassifier is expecting 13"):
        clf.predict(to_frame(X).to_numpy()[:, :12])


@pytest.mark.parametrize(
    "modalities, message",
    [
        ({"a": slice(0, 7), "b": slice(6, 13)}, "column 'm1__f0' is in two modalities"),
        ({"a": ["m0__f0", "nope"]}, "no column named 'nope'"),
        ({"a": slice(0, 6)}, r"7 column\(s\) of X are in no modality"),
        ({"a": "zz__"}, "no column name starts with 'zz__'"),
        ({"a": [0, 99]}, "column position 99 is out of range"),
        ({"a": [0, 0]}, "selects a column twice"),
        ({"a": np.ones(3, bool)}, "boolean mask of length 3"),
        (["m0"], "modalities must be None or a non-empty dict"),
        ({"a": slice(0, 0)}, "selects no column"),
    ],
)
def test_bad_modalities(blocks_data, modalities, message):
    X, y = blocks_data
    with pytest.raises(ValueError, match=message):
        FusionClassifier(modalities=modalities, **SMALL).fit(to_frame(X), y)


def test_modalities_by_name_need_names(blocks_data):
    X, y = blocks_data
    with pytest.raises(ValueError, match="X has no column names"):
        FusionClassifier(modalities={"a": "m0__"}, **SMALL).fit(to_frame(X).to_numpy(), y)
    with pytest.raises(ValueError, match="leave modalities=None"):
        FusionClassifier(modalities={"a": [0]}, **SMALL).fit(X, y)


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(fusion="early"), "fusion must be one of"),
        (dict(hidden_units=0), "hidden_units must be an int >= 1"),
        (dict(norm="group"), "norm must be 'batch', 'layer' or None"),
        (dict(dropout=1.5), r"dropout must be a float in \[0, 1\)"),
        (dict(modality_dropout=-0.1), "modality_dropout must be"),
        (dict(validation_fraction=0.0), r"validation_fraction must be a float in \(0, 1\)"),
        (dict(lr=0), "lr must be a float > 0"),
        (dict(batch_size=0), "batch_size must be an int >= 1"),
        (dict(fusion="attention", hidden_units=6, n_heads=4), "divisible by n_heads"),
        (dict(callbacks="print"), "callbacks must be a list"),
        (dict(device="gpu9"), "device must be"),
        (dict(n_jobs=0), "n_jobs must be an int >= 1"),
    ],
)
def test_bad_parameters(blocks_data, params, message):
    X, y = blocks_data
    with pytest.raises(ValueError, match=message):
        FusionClassifier(**{**SMALL, **params}).fit(X, y)


def test_errors_for_targets(blocks_data):
    X, y = blocks_data
    with pytest.raises(ValueError, match="at least 2 classes in y; got 1 class"):
        FusionClassifier(**SMALL).fit(X, np.zeros(240))
    with pytest.raises(ValueError, match="requires y to be passed"):
        FusionClassifier(**SMALL).fit(X, None)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        FusionClassifier(**SMALL).fit(X, y[:-1])
    with pytest.raises(ValueError, match="n_samples=1"):
        FusionRegressor(**SMALL).fit({k: v[:1] for k, v in X.items()}, [1.0])
    with pytest.raises(ValueError, match="keys are modality names and must be str"):
        FusionClassifier(**SMALL).fit({0: X["m0"]}, y)


# -- skorch reachable: callbacks, history, optimizer, criterion, device --------------------


def test_history_and_validation(blocks_data):
    X, y = blocks_data
    clf = FusionClassifier(validation_fraction=0.25, **SMALL).fit(X, y)
    history = clf.net_.history
    assert len(history) == SMALL["max_epochs"]
    train_loss, valid_loss, valid_acc = history[:, ("train_loss", "valid_loss", "valid_acc")][-1]
    assert train_loss < history[0, "train_loss"]
    assert np.isfinite(valid_loss) and 0 <= valid_acc <= 1
    # 25% of 240 rows held out, stratified, batch by batch
    assert sum(history[-1, "batches", :, "valid_batch_size"]) == 60


def test_callbacks_are_reachable_and_params_untouched(blocks_data, tmp_path):
    X, y = blocks_data
    scoring = EpochScoring("accuracy", on_train=True, name="train_acc", lower_is_better=False)
    checkpoint = Checkpoint(monitor="train_loss_best", dirname=str(tmp_path))
    callbacks = [scoring, ("ckpt", checkpoint)]
    clf = FusionClassifier(callbacks=callbacks, **SMALL).fit(X, y)
    assert len(clf.net_.history[:, "train_acc"]) == SMALL["max_epochs"]
    assert (tmp_path / "params.pt").exists()
    assert clf.callbacks[0] is scoring and not hasattr(scoring, "best_score_")  # deep-copied
    assert dict(clf.net_.callbacks_)["ckpt"].dirname == str(tmp_path)


def test_scoring_callbacks_on_validation_data_with_and_without_caching(blocks_data):
    X, y = blocks_data
    callbacks = [
        EpochScoring("f1_macro", name="valid_f1", lower_is_better=False),
        EpochScoring("f1_macro", name="valid_f1_nc", lower_is_better=False, use_caching=False),
    ]
    clf = FusionClassifier(validation_fraction=0.25, callbacks=callbacks, **SMALL).fit(X, y)
    cached, uncached = clf.net_.history[-1, ("valid_f1", "valid_f1_nc")]
    assert 0.5 < cached == pytest.approx(uncached)


def test_checkpoint_params_load_back(blocks_data, tmp_path):
    X, y = blocks_data
    ckpt = Checkpoint(monitor="valid_loss_best", dirname=str(tmp_path))
    clf = FusionClassifier(validation_fraction=0.25, callbacks=[("ckpt", ckpt)], **SMALL)
    clf.fit(X, y)
    best = int(np.argmin(clf.net_.history[:, "valid_loss"]))
    assert clf.net_.history[best, "event_cp"] is True
    clf.net_.load_params(checkpoint=dict(clf.net_.callbacks_)["ckpt"])
    assert clf.predict_proba(X).shape == (240, 2)


def test_early_stopping_stops_and_keeps_best(blocks_data):
    X, _ = blocks_data
    noise = np.random.RandomState(0).randint(0, 2, size=240)  # nothing to learn: overfits
    clf = FusionClassifier(early_stopping=True, n_iter_no_change=2, **{**SMALL, "max_epochs": 60})
    clf.fit(X, noise)
    assert len(clf.net_.history) < 60
    assert "valid_loss" in clf.net_.history[-1]


def test_optimizer_and_criterion_are_passed(blocks_data):
    X, y = blocks_data
    clf = FusionClassifier(
        optimizer=torch.optim.SGD, optimizer_kwargs={"momentum": 0.9}, **{**SMALL, "lr": 0.05}
    ).fit(X, y)
    assert isinstance(clf.net_.optimizer_, torch.optim.SGD)
    assert clf.net_.optimizer_.param_groups[0]["momentum"] == 0.9
    reg = FusionRegressor(criterion=torch.nn.L1Loss, **SMALL).fit(X, X["m0"][:, 0])
    assert isinstance(reg.net_.criterion_, torch.nn.L1Loss)


def test_fast_path_never_indexes_single_rows(blocks_data, monkeypatch):
    X, y = blocks_data

    def no_single_rows(self, i):
        raise AssertionError("per-sample indexing on the fast path")

    monkeypatch.setattr(FusionDataset, "__getitem__", no_single_rows)
    clf = FusionClassifier(validation_fraction=0.2, **SMALL).fit(X, y)
    clf.predict(X)
    assert clf.net_.iterator_train is BatchIterator
    assert clf.net_.history[-1, "train_batch_count"] == 6  # 192 rows / 32


def test_verbose_zero_is_quiet_and_verbose_prints(blocks_data, capsys):
    X, y = blocks_data
    FusionClassifier(**SMALL).fit(X, y)
    assert capsys.readouterr().out == ""
    FusionClassifier(verbose=1, **SMALL).fit(X, y)
    assert "train_loss" in capsys.readouterr().out


class _RecordThreads(Callback):
    def on_epoch_begin(self, net, **kwargs):
        net.history.record("threads", torch.get_num_threads())


@pytest.mark.parametrize("n_jobs", [1, 2, -1])
def test_n_jobs_sets_torch_threads_during_fit_only(blocks_data, n_jobs):
    X, y = blocks_data
    before = torch.get_num_threads()
    clf = FusionClassifier(n_jobs=n_jobs, callbacks=[_RecordThreads()], **SMALL).fit(X, y)
    expected = os.cpu_count() if n_jobs == -1 else n_jobs
    assert set(clf.net_.history[:, "threads"]) == {expected}
    assert torch.get_num_threads() == before
    clf.predict(X)
    assert torch.get_num_threads() == before


def test_device_auto_is_recorded(blocks_data):
    X, y = blocks_data
    clf = FusionClassifier(**SMALL).fit(X, y)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert clf.device_ == expected == clf.net_.device
    assert next(clf.net_.module_.parameters()).device.type == expected


def test_model_saved_on_cuda_loads_on_cpu(blocks_data, monkeypatch):
    # Simulate a model fitted on a GPU: skorch records the device and, on a
    # machine without CUDA, maps the weights to the CPU with a DeviceWarning.
    X, y = blocks_data
    clf = FusionClassifier(device="cpu", **SMALL).fit(X, y)
    expected = clf.predict_proba(X)
    clf.net_.device = clf.device_ = clf.net_.dataset__device = "cuda"
    payload = pickle.dumps(clf)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = pickle.loads(payload)
    messages = [str(w.message) for w in caught if issubclass(w.category, DeviceWarning)]
    assert any("requested device (cuda) is not available" in m for m in messages)
    assert loaded.device_ == "cpu" == str(loaded.net_.device)
    assert_array_equal(loaded.predict_proba(X), expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no cuda device")
def test_gpu_fit_predict_and_pickle(blocks_data):
    X, y = blocks_data
    clf = FusionClassifier(fusion="attention", **SMALL).fit(X, y)
    assert clf.device_ == "cuda"
    assert next(clf.net_.module_.parameters()).is_cuda
    proba = clf.predict_proba(X)
    assert clf.score(X, y) > 0.8
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = pickle.loads(pickle.dumps(clf))
    assert_allclose(loaded.predict_proba(X), proba, atol=1e-6)
    cpu = FusionClassifier(device="cpu", **SMALL).fit(X, y)
    assert cpu.score(X, y) > 0.8


def test_grid_search_in_parallel_gives_the_same_scores(make_blocks):
    # Fits in loky workers get fewer torch threads; n_jobs=1 on the estimator
    # pins the thread count, so the scores match the sequential search exactly.
    X, y = make_blocks(n=90)
    grid = {"fusion": ["concat", "late"]}
    est = FusionClassifier(n_jobs=1, **SMALL)
    scores = [
        GridSearchCV(est, grid, cv=2, n_jobs=n_jobs)
        .fit(to_frame(X), y)
        .cv_results_["mean_test_score"]
        for n_jobs in [1, 2]
    ]
    assert_array_equal(scores[0], scores[1])
