"""sample_weight, groups, metadata routing and history_ of the fusion estimators.

A weighted fit is a fit on repeated rows wherever the optimisation allows:
with full-batch training, no batch norm and no dropout the two see the same
loss, the same statistics and the same random draws, so they agree up to
float32 rounding. Every routing test restores the global configuration
with ``sklearn.config_context``.
"""

import pickle

import numpy as np
import pandas as pd
import pytest
import sklearn
from numpy.testing import assert_allclose, assert_array_equal
from scipy import sparse
from sklearn.exceptions import UnsetMetadataPassedError
from sklearn.metrics import accuracy_score, log_loss, make_scorer
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import make_pipeline
from skorch.callbacks import Callback

from mmsk import GroupStandardScaler, make_multimodal_pipeline
from mmsk.fusion import FusionClassifier, FusionRegressor
from mmsk.fusion._data import block_stats, channel_stats

# Full batch, no batch norm, no dropout, no early stopping: nothing but the
# weights tells a weighted fit from one on repeated rows.
EXACT = dict(
    hidden_units=8,
    max_epochs=15,
    batch_size=-1,
    dropout=0.0,
    norm=None,
    early_stopping=False,
    lr=0.02,
    random_state=0,
)
FAST = dict(hidden_units=8, max_epochs=6, batch_size=32, lr=0.02, random_state=0)


class RecordSplit(Callback):
    """Keep the row indices of the training and the validation split."""

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        self.train_ = np.asarray(dataset_train.indices)
        self.valid_ = np.asarray(dataset_valid.indices)


def split_of(est):
    return dict(est.net_.callbacks_)["record"]


def data(n=90, seed=0, n_classes=2):
    rng = np.random.RandomState(seed)
    X = {"a": rng.normal(size=(n, 5)), "b": rng.normal(size=(n, 3))}
    signal = X["a"][:, 0] + X["b"][:, 0] + 0.7 * rng.normal(size=n)
    edges = np.quantile(signal, np.linspace(0, 1, n_classes + 1)[1:-1])
    y = np.digitize(signal, edges)
    weight = rng.randint(0, 4, size=n)  # zeros too: a zero weight removes the row
    return X, y, weight


def repeat(X, weight):
    return {k: v.repeat(weight, axis=0) for k, v in X.items()}


# -- a weighted fit is a fit on repeated rows --------------------------------------------


@pytest.mark.parametrize(
    "params",
    [{}, {"class_weight": "balanced"}, {"class_weight": {0: 1.0, 1: 3.0, 2: 0.5}}],
    ids=["plain", "balanced", "class-dict"],
)
def test_weighted_classifier_equals_repeated_rows(params):
    X, y, weight = data(n_classes=3)
    weighted = FusionClassifier(**EXACT, **params).fit(X, y, sample_weight=weight)
    repeated = FusionClassifier(**EXACT, **params).fit(repeat(X, weight), y.repeat(weight))
    proba = weighted.predict_proba(X)
    assert_allclose(proba, repeated.predict_proba(X), atol=1e-5)
    # the weights matter: the unweighted fit is far off
    unweighted = FusionClassifier(**EXACT, **params).fit(X, y)
    assert np.abs(unweighted.predict_proba(X) - proba).max() > 1e-2


def test_weighted_regressor_ensemble_and_sparse_block_equal_repeated_rows():
    X, _, weight = data()
    X["b"] = sparse.csr_matrix(np.where(X["b"] > 0.5, X["b"], 0.0))  # a sparse block
    y = np.c_[3 * X["a"][:, 0] + 10, X["a"][:, 1]]  # two targets, off-centre
    # every member net gets the weights; standardize=True scales the sparse block too
    params = dict(EXACT, n_estimators=2, standardize=True)
    weighted = FusionRegressor(**params).fit(X, y, sample_weight=weight)
    Xr = {"a": X["a"].repeat(weight, axis=0), "b": X["b"][np.repeat(np.arange(90), weight)]}
    repeated = FusionRegressor(**params).fit(Xr, y.repeat(weight, axis=0))
    assert_allclose(weighted.target_mean_, repeated.target_mean_, rtol=1e-10)
    assert_allclose(weighted.target_scale_, repeated.target_scale_, rtol=1e-10)
    assert_allclose(weighted.predict(X), repeated.predict(X), atol=1e-4)
    for net_w, net_r in zip(weighted.nets_, repeated.nets_, strict=True):
        assert_allclose(net_w.history[:, "train_loss"], net_r.history[:, "train_loss"], rtol=1e-5)


def test_unweighted_fit_is_unchanged_by_none_ones_or_uniform_weights():
    X, y, _ = data()
    expected = FusionClassifier(**FAST).fit(X, y).predict_proba(X)  # the plain call path
    for weight in [None, np.ones(len(y)), np.full(len(y), 3.0), 2]:
        clf = FusionClassifier(**FAST).fit(X, y, sample_weight=weight, groups=None)
        assert_array_equal(clf.predict_proba(X), expected)
        assert type(clf.net_).__name__ == "NeuralNetClassifier"


@pytest.mark.parametrize(
    ("weight", "match"),
    [
        (-np.ones(90), "[Nn]egative"),
        (np.ones(89), "sample_weight"),
        (np.ones((90, 2)), "1D|1-D|shape"),
        (np.r_[np.nan, np.ones(89)], "NaN|infinity"),
        (np.r_[np.inf, np.ones(89)], "NaN|infinity"),
        (np.zeros(90), "weight.*zero|zero.*weight"),
    ],
    ids=["negative", "length", "2-D", "nan", "inf", "all-zero"],
)
def test_bad_weights_raise(weight, match):
    X, y, _ = data()
    with pytest.raises(ValueError, match=match):
        FusionClassifier(**FAST).fit(X, y, sample_weight=weight)


def test_weight_on_one_class_only_raises_naming_the_class():
    X, y, _ = data()
    with pytest.raises(ValueError, match=r"at least 2 classes.*class 1"):
        FusionClassifier(**FAST).fit(X, y, sample_weight=(y == 1).astype(float))


def test_criterion_without_reduction_is_refused_with_weights():
    import torch

    class Loss(torch.nn.Module):
        def __init__(self):
            super().__init__()

        def forward(self, y_pred, y_true):
            return torch.nn.functional.cross_entropy(y_pred, y_true)

    X, y, weight = data()
    with pytest.raises(ValueError, match="reduction='none'"):
        FusionClassifier(criterion=Loss, **FAST).fit(X, y, sample_weight=weight)


def test_weighted_statistics_are_those_of_repeated_rows():
    rng = np.random.RandomState(0)
    weight = rng.randint(0, 4, size=30).astype(float)
    dense = rng.normal(size=(30, 8)).astype(np.float32)
    mask = np.ones((30, 2), bool)
    mask[3, 1] = False  # a row without block 1
    rows = np.repeat(np.arange(30), weight.astype(int))
    prepared = {"x0": dense, "x1": sparse.csr_matrix(np.where(dense > 0.3, dense, 0)), "mask": mask}
    repeated = {k: v[rows] for k, v in prepared.items()}
    for rules in (["standard", "standard"], ["auto", "auto"]):
        got = block_stats(prepared, 2, rules, sample_weight=weight)
        want = block_stats(repeated, 2, rules)
        for a, b in zip(got[0] + got[1], want[0] + want[1], strict=True):
            assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    got = channel_stats(prepared, 0, (2, 2, 2), sample_weight=weight)
    assert_allclose(got, channel_stats(repeated, 0, (2, 2, 2)), rtol=1e-5)
    # all the weight on row 3, which lacks block 1: block 1 has no row to learn from
    with pytest.raises(ValueError, match="block 1 .* every training row of positive sample_weight"):
        block_stats(prepared, 2, sample_weight=np.eye(30)[3])


# -- weighted validation --------------------------------------------------------------------


def test_validation_loss_and_score_are_weighted_on_the_same_stratified_split():
    X, y, weight = data(n=120)
    params = dict(
        FAST,
        validation_fraction=0.3,
        early_stopping=False,
        scoring="accuracy",
        max_epochs=3,
        n_estimators=1,  # the history is one net's; predict_proba must be that net's too
    )
    clf = FusionClassifier(callbacks=[("record", RecordSplit())], **params)
    clf.fit(X, y, sample_weight=weight)
    plain = FusionClassifier(callbacks=[("record", RecordSplit())], **params).fit(X, y)
    valid = split_of(clf).valid_
    assert_array_equal(np.sort(valid), np.sort(split_of(plain).valid_))  # the same split
    assert np.bincount(y[valid]).tolist() == [18, 18]  # stratified, as without weights
    held_out = {k: v[valid] for k, v in X.items()}
    proba = clf.predict_proba(held_out)
    w = weight[valid]
    assert_allclose(clf.history_[-1, "valid_loss"], log_loss(y[valid], proba, sample_weight=w),
                    rtol=1e-4)  # fmt: skip
    weighted_accuracy = accuracy_score(y[valid], proba.argmax(1), sample_weight=w)
    assert clf.history_[-1, "valid_score"] == pytest.approx(weighted_accuracy)
    assert weighted_accuracy != pytest.approx(accuracy_score(y[valid], proba.argmax(1)))


def test_regressor_scoring_uses_held_out_weights():
    X, _, weight = data(n=120)
    y = X["a"][:, 0] * 4.0
    clf = FusionRegressor(
        callbacks=[("record", RecordSplit())],
        scoring="neg_mean_absolute_error",
        validation_fraction=0.25,
        early_stopping=False,
        n_estimators=1,
        **{**FAST, "max_epochs": 2},
    ).fit(X, y, sample_weight=weight)
    valid = split_of(clf).valid_
    error = np.abs(clf.predict({k: v[valid] for k, v in X.items()}) - y[valid])
    expected = -np.average(error, weights=weight[valid])
    assert clf.history_[-1, "valid_score"] == pytest.approx(expected, rel=1e-5)


# -- groups: a grouped validation split ----------------------------------------------------


def test_groups_hold_out_whole_groups():
    X, y, _ = data(n=120)
    groups = np.repeat(np.arange(12), 10)  # 12 speakers of 10 rows
    params = dict(FAST, early_stopping=True, validation_fraction=0.25)
    clf = FusionClassifier(callbacks=[("record", RecordSplit())], **params)
    clf.fit(X, y, groups=groups)
    split = split_of(clf)
    held_out, trained = set(groups[split.valid_]), set(groups[split.train_])
    assert len(held_out) == 3 and not held_out & trained  # ceil(0.25 * 12) whole groups
    assert len(split.valid_) + len(split.train_) == 120
    assert clf.early_stopping_ and "valid_loss" in clf.history_[-1]
    # another seed holds out other groups
    other = FusionClassifier(callbacks=[("record", RecordSplit())], **{**params, "random_state": 3})
    assert set(groups[split_of(other.fit(X, y, groups=groups)).valid_]) != held_out


def test_too_few_groups():
    X, y, _ = data()
    one = np.zeros(len(y))
    with pytest.raises(ValueError, match=r"early_stopping=True .*groups has 1 distinct group"):
        FusionClassifier(**FAST, early_stopping=True).fit(X, y, groups=one)
    with pytest.raises(ValueError, match=r"groups has 2 distinct .* at least 3 groups"):
        FusionClassifier(**FAST, early_stopping=True, validation_fraction=0.6).fit(
            X, y, groups=np.arange(len(y)) % 2
        )
    # "auto" turns early stopping off, as it does for too few rows
    assert not FusionClassifier(**FAST).fit(X, y, groups=one).early_stopping_
    with pytest.raises(ValueError, match=r"groups must be 1-D with one label per row of X \(90\)"):
        FusionClassifier(**FAST).fit(X, y, groups=one[:10])
    with pytest.raises(ValueError, match="groups: row 4 has no group"):
        FusionClassifier(**FAST).fit(X, y, groups=np.r_[np.zeros(4), np.nan, np.zeros(85)])


# -- metadata routing ------------------------------------------------------------------------


def test_set_fit_request_comes_from_the_signature():
    with sklearn.config_context(enable_metadata_routing=True):
        for cls in (FusionClassifier, FusionRegressor):
            requests = cls().get_metadata_routing().fit.requests
            assert requests == {"sample_weight": None, "groups": False}
            est = cls().set_fit_request(sample_weight=True, groups=True)
            assert est.get_metadata_routing().fit.requests == {
                "sample_weight": True,
                "groups": True,
            }
        X, y, weight = data()
        with pytest.raises(UnsetMetadataPassedError, match="sample_weight"):
            make_pipeline(FusionClassifier(**FAST)).fit(X, y, sample_weight=weight)
    assert not sklearn.get_config()["enable_metadata_routing"]


def test_grid_search_of_a_pipeline_routes_weights_to_fit_and_scorer():
    rng = np.random.RandomState(1)
    n = 120
    frame = pd.DataFrame(rng.normal(size=(n, 4)), columns=[f"a__f{j}" for j in range(2)]
                         + [f"b__f{j}" for j in range(2)])  # fmt: skip
    y = (frame["a__f0"] + frame["b__f0"] + rng.normal(size=n) > 0.8).astype(int)
    weight = np.where(y == 1, 6.0, 1.0)  # class 1 (the minority) counts six times
    grid = {"fusionclassifier__hidden_units": [4, 8]}
    with sklearn.config_context(enable_metadata_routing=True):
        clf = FusionClassifier(**{**FAST, "max_epochs": 10}).set_fit_request(sample_weight=True)
        scorer = make_scorer(accuracy_score).set_score_request(sample_weight=True)
        weighted = GridSearchCV(make_pipeline(clf), grid, cv=3, scoring=scorer)
        weighted.fit(frame, y, sample_weight=weight)
        direct = make_pipeline(clf).set_params(**weighted.best_params_)
        direct.fit(frame, y, sample_weight=weight)
        unweighted = GridSearchCV(make_pipeline(clf), grid, cv=3, scoring=scorer).fit(frame, y)
    # the refit got the weights: it is the direct weighted fit
    assert_array_equal(weighted.predict_proba(frame), direct.predict_proba(frame))
    # expected direction: upweighting class 1 raises its predicted probability and recall
    p_weighted = weighted.predict_proba(frame)[:, 1]
    p_plain = unweighted.predict_proba(frame)[:, 1]
    assert p_weighted.mean() > p_plain.mean() + 0.05
    recall = [(est.predict(frame)[y == 1] == 1).mean() for est in (weighted, unweighted)]
    assert recall[0] > recall[1]


def test_make_multimodal_pipeline_routes_weights_through_the_column_transformer():
    rng = np.random.RandomState(0)
    n = 80
    df = pd.DataFrame(
        {
            "price": rng.normal(size=n),
            "size": rng.normal(size=n),
            "shop": rng.choice(["north", "south", "east"], n),
        }
    )
    y = (df["price"] + (df["shop"] == "north") + 0.5 * rng.normal(size=n) > 0.5).astype(int)
    weight = rng.randint(0, 4, size=n).astype(float)
    params = dict(hidden_units=8, max_epochs=8, batch_size=32, random_state=0)
    with sklearn.config_context(enable_metadata_routing=True):
        model = make_multimodal_pipeline(numeric=["price", "size"], categorical="shop", **params)
        model.named_steps["fusion"].set_fit_request(sample_weight=True)
        model.named_steps["fusion"].set_score_request(sample_weight=True)  # the CV scores
        # the numeric block's StandardScaler consumes sample_weight too: it must say so
        numeric = dict((name, t) for name, t, _ in model.named_steps["features"].transformers)
        numeric["numeric"][-1].set_fit_request(sample_weight=True)
        search = GridSearchCV(model, {"fusion__fusion": ["concat", "late"]}, cv=2)
        search.fit(df, y, sample_weight=weight)
        direct = sklearn.clone(model).set_params(**search.best_params_)
        direct.fit(df, y, sample_weight=weight)
    assert_array_equal(search.predict_proba(df), direct.predict_proba(df))
    fusion = search.best_estimator_.named_steps["fusion"]
    assert type(fusion.net_).__name__ == "WeightedNetClassifier"
    numbers = search.best_estimator_.named_steps["features"].named_transformers_["numeric"]
    shaped = numbers[:-1].transform(df[["price", "size"]])  # all but the last step
    assert_allclose(numbers[-1].mean_, np.average(shaped, axis=0, weights=weight))
    assert not np.allclose(numbers[-1].mean_, shaped.mean(axis=0))  # the weights counted


def test_groups_routed_on_request_and_beside_group_standard_scaler():
    X, y, _ = data(n=120)
    frame = pd.DataFrame(np.hstack([X["a"], X["b"]]))
    groups = np.repeat(np.arange(12), 10)
    record = [("record", RecordSplit())]
    params = dict(FAST, early_stopping=True, validation_fraction=0.25, callbacks=record)
    with sklearn.config_context(enable_metadata_routing=True):
        # GroupStandardScaler asks for groups by default, the fusion net does not:
        # its validation split stays the stratified one of a fit without groups
        pipe = make_pipeline(GroupStandardScaler(), FusionClassifier(**params))
        pipe.fit(frame, y, groups=groups)
        assert len(pipe[0].group_stats_) == 12
        plain = make_pipeline(GroupStandardScaler(), FusionClassifier(**params)).fit(frame, y)
        assert_array_equal(split_of(pipe[-1]).valid_, split_of(plain[-1]).valid_)
        # on request, the net holds out whole groups, also inside a GridSearchCV whose
        # GroupKFold gets the same groups
        clf = FusionClassifier(**params).set_fit_request(groups=True)
        search = GridSearchCV(
            make_pipeline(GroupStandardScaler(), clf),
            {"fusionclassifier__hidden_units": [8]},
            cv=GroupKFold(n_splits=3),
        ).fit(frame, y, groups=groups)
    split = split_of(search.best_estimator_[-1])
    assert not set(groups[split.valid_]) & set(groups[split.train_])
    assert len(set(groups[split.valid_])) == 3


# -- history_ ----------------------------------------------------------------------------------


def test_history_is_the_first_nets_history_and_pickles():
    X, y, _ = data()
    clf = FusionClassifier(**{**FAST, "n_estimators": 2}).fit(X, y)
    assert clf.history_ is clf.net_.history is clf.nets_[0].history
    assert len(clf.history_) == FAST["max_epochs"]
    assert clf.nets_[1].history is not clf.history_
    again = pickle.loads(pickle.dumps(clf))
    assert again.history_ is again.net_.history
    assert again.history_[:, "train_loss"] == clf.history_[:, "train_loss"]
    # an estimator pickled before history_ existed gets it on load
    state = clf.__getstate__()
    del state["history_"]
    old = FusionClassifier.__new__(FusionClassifier)
    old.__setstate__(state)
    assert old.history_ is old.net_.history
    reg = FusionRegressor(**FAST).fit(X, X["a"][:, 0])
    assert reg.history_[-1, "epoch"] == FAST["max_epochs"]
