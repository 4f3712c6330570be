"""Early stopping, scoring, schedules, input scaling, the wide path and seed ensembles."""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from scipy import sparse
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import StackingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    mean_absolute_error,
)
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.class_weight import compute_class_weight

from mmsk.fusion import FusionClassifier, FusionRegressor

QUICK = dict(hidden_units=8, batch_size=32, random_state=0)


def linear_problem(n=400, seed=0):
    rng = np.random.RandomState(seed)
    X = {"a": rng.normal(size=(n, 6)), "b": rng.normal(size=(n, 4))}
    y = (X["a"][:, 0] - X["b"][:, 1] + 0.5 * rng.normal(size=n) > 0).astype(int)
    return X, y


# -- early stopping ------------------------------------------------------------------------


def test_early_stopping_is_on_by_default_when_the_data_allow_a_validation_split():
    X, y = linear_problem(400)
    clf = FusionClassifier(max_epochs=200, **QUICK).fit(X, y)
    assert clf.early_stopping_
    history = clf.net_.history
    assert len(history) < 200 and "valid_loss" in history[-1]
    best = int(np.argmin(history[:, "valid_loss"]))
    assert history[best, "valid_loss_best"]


def test_early_stopping_auto_is_off_for_small_data_and_true_says_why():
    X, y = linear_problem(60)
    clf = FusionClassifier(max_epochs=3, **QUICK).fit(X, y)
    assert not clf.early_stopping_ and "valid_loss" not in clf.net_.history[-1]
    y_rare = y.copy()
    y_rare[:] = 0
    y_rare[0] = 1
    with pytest.raises(ValueError, match="early_stopping=True needs a validation split"):
        FusionClassifier(early_stopping=True, **QUICK).fit(X, y_rare)
    clf = FusionClassifier(early_stopping=True, max_epochs=3, **QUICK).fit(X, y)
    assert clf.early_stopping_


def test_scoring_records_valid_score_and_early_stopping_watches_it():
    X, y = linear_problem(400)
    clf = FusionClassifier(scoring="f1_macro", max_epochs=60, **QUICK).fit(X, y)
    history = clf.net_.history
    scores = history[:, "valid_score"]
    assert all(0 <= s <= 1 for s in scores)
    best = int(np.argmax(scores))
    assert history[best, "valid_score_best"]
    # the recorded score is the estimator's own f1 on the held-out rows
    split = clf.net_.get_split_datasets(*_prepared(clf, X, y))[1]
    assert split is not None and len(split) == 40
    # the scoring callback pickles with the net
    again = pickle.loads(pickle.dumps(clf))
    assert_array_equal(again.predict_proba(X), clf.predict_proba(X))


def _held_out_rows(clf, X, y):
    valid = clf.net_.get_split_datasets(*_prepared(clf, X, y))[1]
    rows = np.asarray(valid.indices)
    return {name: block[rows] for name, block in X.items()}, y[rows]


def test_a_class_weighted_fit_watches_the_class_weighted_accuracy_of_the_held_out_rows():
    X, y = linear_problem(400)
    rng = np.random.RandomState(1)
    labels = np.where((y == 1) & (rng.uniform(size=len(y)) < 0.3), "rare", "common")
    assert 0.05 < np.mean(labels == "rare") < 0.25
    clf = FusionClassifier(class_weight="balanced", max_epochs=6, n_estimators=1, **QUICK)
    history = clf.fit(X, labels).net_.history
    assert "valid_loss" in history[-1] and "valid_score" in history[-1]
    X_valid, y_valid = _held_out_rows(clf, X, labels)
    # the weights of the best epoch are restored: its score is that of the fitted model
    best = max(history[:, "valid_score"])
    w_common, w_rare = compute_class_weight("balanced", classes=np.unique(labels), y=labels)
    weights = np.where(y_valid == "rare", w_rare, w_common)
    assert best == pytest.approx(
        accuracy_score(y_valid, clf.predict(X_valid), sample_weight=weights)
    )
    # a stratified split keeps the class shares, so this is the balanced accuracy
    assert best == pytest.approx(balanced_accuracy_score(y_valid, clf.predict(X_valid)), abs=0.02)
    # without class weights: the validation loss; a scoring the user names wins
    plain = FusionClassifier(max_epochs=2, n_estimators=1, **QUICK).fit(X, labels)
    assert "valid_score" not in plain.net_.history[-1]
    named = FusionClassifier(
        class_weight="balanced", scoring="accuracy", max_epochs=3, n_estimators=1, **QUICK
    ).fit(X, labels)
    X_valid, y_valid = _held_out_rows(named, X, labels)
    assert max(named.net_.history[:, "valid_score"]) == pytest.approx(
        accuracy_score(y_valid, named.predict(X_valid))
    )


def _prepared(clf, X, y):
    prepared, _ = clf._prepare(X, fit=False)
    return prepared, np.searchsorted(clf.classes_, y)


def test_scoring_of_a_regressor_sees_unscaled_targets():
    X, _ = linear_problem(400)
    target = 1000.0 * X["a"][:, 0] + 5000.0
    reg = FusionRegressor(scoring="neg_mean_absolute_error", max_epochs=5, **QUICK).fit(X, target)
    scores = reg.net_.history[:, "valid_score"]
    assert all(s < 0 for s in scores)
    # in the target's units (about 1000 wide), not standardised units (about 1)
    assert -scores[0] > 20
    full = mean_absolute_error(target, reg.predict(X))
    assert full > 1


def test_callable_scorer_and_bad_scoring():
    X, y = linear_problem(400)
    calls = []

    def scorer(estimator, X_valid, y_valid):
        calls.append(len(y_valid))
        return f1_score(y_valid, estimator.predict(X_valid))

    FusionClassifier(scoring=scorer, max_epochs=3, n_estimators=1, **QUICK).fit(X, y)
    assert calls == [40, 40, 40]
    calls.clear()
    FusionClassifier(scoring=scorer, max_epochs=3, n_estimators=2, **QUICK).fit(X, y)
    assert calls == [40] * 6  # each network on its own held-out rows
    with pytest.raises(ValueError, match="scoring must be None"):
        FusionClassifier(scoring=3).fit(X, y)
    with pytest.raises(ValueError, match="not a scikit-learn scorer name"):
        FusionClassifier(scoring="no_such_metric", **QUICK).fit(X, y)


def test_patience_is_a_deprecated_alias():
    X, y = linear_problem(400)
    with pytest.warns(FutureWarning, match="n_iter_no_change"):
        clf = FusionClassifier(patience=2, max_epochs=100, lr=0.05, **QUICK).fit(X, y)
    stopper = dict(clf.net_.callbacks_)["early_stopping"]
    assert stopper.patience == 2


@pytest.mark.parametrize(
    "bad",
    [
        dict(tol=-1),
        dict(n_iter_no_change=0),
        dict(lr_schedule="x"),
        dict(weight_decay=-0.1),
        dict(early_stopping="yes"),
        dict(n_estimators=0),
        dict(standardize="z"),
    ],
)
def test_bad_training_parameters_are_named(bad):
    X, y = linear_problem(60)
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        FusionClassifier(**bad).fit(X, y)


# -- learning-rate schedules ---------------------------------------------------------------


def test_plateau_schedule_lowers_the_learning_rate_and_none_keeps_it():
    X, y = linear_problem(400)
    kw = dict(early_stopping=False, validation_fraction=0.2, max_epochs=40, lr=0.05, **QUICK)
    clf = FusionClassifier(**kw).fit(X, y)
    assert clf.net_.optimizer_.param_groups[0]["lr"] < 0.05
    flat = FusionClassifier(lr_schedule=None, **kw).fit(X, y)
    assert flat.net_.optimizer_.param_groups[0]["lr"] == pytest.approx(0.05)
    cosine = FusionClassifier(lr_schedule="cosine", **kw).fit(X, y)
    assert cosine.net_.optimizer_.param_groups[0]["lr"] < 0.01


def test_weight_decay_reaches_the_optimizer():
    X, y = linear_problem(60)
    clf = FusionClassifier(weight_decay=0.3, max_epochs=1, **QUICK).fit(X, y)
    assert clf.net_.optimizer_.param_groups[0]["weight_decay"] == 0.3
    clf = FusionClassifier(optimizer_kwargs={"weight_decay": 0.0}, max_epochs=1, **QUICK)
    assert clf.fit(X, y).net_.optimizer_.param_groups[0]["weight_decay"] == 0.0


def test_an_optimizer_without_weight_decay_still_trains():
    class PlainSGD(torch.optim.SGD):
        def __init__(self, params, lr):
            super().__init__(params, lr=lr)

    X, y = linear_problem(60)
    clf = FusionClassifier(optimizer=PlainSGD, max_epochs=1, **QUICK).fit(X, y)
    assert clf.net_.optimizer_.param_groups[0]["weight_decay"] == 0


def test_regressor_standardize_none_equals_false():
    X, _ = linear_problem(60)
    target = 100.0 + X["a"][:, 0]
    reg = FusionRegressor(standardize="none", max_epochs=1, **QUICK).fit(X, target)
    assert_array_equal(reg.target_mean_, [0.0]) and assert_array_equal(reg.target_scale_, [1.0])


# -- input scaling by kind -----------------------------------------------------------------


def test_auto_scaling_leaves_binary_columns_and_sparse_blocks_alone():
    rng = np.random.RandomState(0)
    n = 300
    continuous = rng.normal(50, 10, size=(n, 3))
    onehot = np.eye(4)[rng.randint(0, 4, n)]
    tfidf = sparse.random(n, 20, density=0.1, format="csr", random_state=rng)
    X = {"mixed": np.hstack([continuous, onehot]), "text": tfidf}
    y = (continuous[:, 0] > 50).astype(int)
    clf = FusionClassifier(max_epochs=1, **QUICK).fit(X, y)
    tower_mixed, tower_text = clf.net_.module_.towers
    assert_allclose(tower_mixed.mean[:3].numpy(), continuous.mean(axis=0), rtol=1e-4)
    assert_array_equal(tower_mixed.mean[3:].numpy(), 0)
    assert_array_equal(tower_mixed.inv_scale[3:].numpy(), 1)
    assert_array_equal(tower_text.mean.numpy(), 0)
    assert_array_equal(tower_text.inv_scale.numpy(), 1)
    # every column standardised with True; per block with a dict
    every = FusionClassifier(standardize=True, max_epochs=1, **QUICK).fit(X, y)
    assert (every.net_.module_.towers[0].mean[3:].numpy() > 0).all()
    per_block = FusionClassifier(standardize={"text": "standard"}, max_epochs=1, **QUICK)
    towers = per_block.fit(X, y).net_.module_.towers
    assert_array_equal(towers[0].mean[3:].numpy(), 0)  # "auto" for the block not named
    assert (towers[1].mean.numpy() > 0).any()
    with pytest.raises(ValueError, match="'nope', which is not a block"):
        FusionClassifier(standardize={"nope": True}, **QUICK).fit(X, y)


def test_auto_scaling_leaves_normalised_embeddings_alone():
    rng = np.random.RandomState(0)
    n = 200
    raw = rng.normal(size=(n, 16)) + 3.0
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)  # a sentence-transformers block
    narrow = unit[:, :4] / np.linalg.norm(unit[:, :4], axis=1, keepdims=True)
    unit_with_missing = unit.copy()
    unit_with_missing[:5] = np.nan  # missing rows do not count
    X = {"emb": unit, "narrow": narrow, "raw": raw, "gaps": unit_with_missing}
    y = (raw[:, 0] > 3).astype(int)
    clf = FusionClassifier(max_epochs=1, n_estimators=1, **QUICK).fit(X, y)
    emb, narrow_tower, raw_tower, gaps = clf.net_.module_.towers
    for tower in (emb, gaps):  # unit L2 norm in every present row: natural scale
        assert_array_equal(tower.mean.numpy(), 0)
        assert_array_equal(tower.inv_scale.numpy(), 1)
    # fewer than 8 columns, or rows of other norms: standardised column by column
    assert_allclose(narrow_tower.mean.numpy(), narrow.mean(axis=0), rtol=1e-4)
    assert_allclose(raw_tower.mean.numpy(), raw.mean(axis=0), rtol=1e-4)
    # "standard" (or True) still standardises an embedding
    every = FusionClassifier(standardize={"emb": "standard"}, max_epochs=1, n_estimators=1, **QUICK)
    assert_allclose(every.fit(X, y).net_.module_.towers[0].mean.numpy(), unit.mean(0), rtol=1e-4)
    off_by_a_little = dict(X, emb=unit * 1.01)  # not normalised: standardised
    towers = FusionClassifier(max_epochs=1, n_estimators=1, **QUICK).fit(off_by_a_little, y)
    assert (np.abs(towers.net_.module_.towers[0].mean.numpy()) > 0).all()


# -- bagging of seeds (n_estimators) ---------------------------------------------------------


def test_n_estimators_auto_bags_five_cheap_networks_on_small_data():
    X, y = linear_problem(120)
    clf = FusionClassifier(max_epochs=2, **QUICK).fit(X, y)
    assert clf.n_estimators == "auto" and clf.n_estimators_ == 5 and len(clf.nets_) == 5
    members = np.mean([net.predict_proba(clf._prepare(X, fit=False)[0]) for net in clf.nets_], 0)
    assert_allclose(clf.predict_proba(X), members, rtol=1e-5, atol=1e-7)  # their average
    seeds = {tuple(pair) for pair in clf._net_spec["seeds"]}
    assert len(seeds) == 5  # each its own batches and validation split
    one = FusionClassifier(max_epochs=2, n_estimators=1, **QUICK).fit(X, y)
    assert one.n_estimators_ == 1 and len(one.nets_) == 1
    reg = FusionRegressor(max_epochs=2, **QUICK).fit(X, X["a"][:, 0])
    assert reg.n_estimators_ == 5
    for bad in (0, 2.5, "five", True):
        with pytest.raises(ValueError, match="n_estimators must be an int >= 1 or 'auto'"):
            FusionClassifier(n_estimators=bad, **QUICK).fit(X, y)


def test_n_estimators_auto_trains_one_network_on_big_data_or_costly_towers():
    rng = np.random.RandomState(0)
    big = rng.normal(size=(10_001, 2)).astype("float32")
    clf = FusionClassifier(max_epochs=1, hidden_units=4, batch_size=2048, random_state=0)
    assert clf.fit(big, big[:, 0] > 0).n_estimators_ == 1  # more than 10,000 rows
    assert clf.fit(big[:10_000], big[:10_000, 0] > 0).n_estimators_ == 5
    images = rng.rand(60, 1, 8, 8).astype("float32")
    X = {"image": images.reshape(60, -1)}
    conv = FusionClassifier(towers={"image": ("conv", {"shape": (1, 8, 8)})}, max_epochs=1, **QUICK)
    assert conv.fit(X, images[:, 0, 0, 0] > 0.5).n_estimators_ == 1  # a conv tower: one net


# -- the wide path ---------------------------------------------------------------------------


def test_wide_part_is_on_by_default_and_starts_at_zero():
    X, y = linear_problem(60)
    module = FusionClassifier(max_epochs=1, **QUICK).fit(X, y).net_.module_
    assert module.wide is not None and module.wide.blocks == [0, 1]
    assert FusionClassifier(wide=False, max_epochs=1, **QUICK).fit(X, y).net_.module_.wide is None
    only_a = FusionClassifier(wide=["a"], max_epochs=1, **QUICK).fit(X, y).net_.module_.wide
    assert only_a.blocks == [0]
    with pytest.raises(ValueError, match="'c', which is not a block"):
        FusionClassifier(wide=["c"], **QUICK).fit(X, y)
    with pytest.raises(ValueError, match="wide must be"):
        FusionClassifier(wide="some", **QUICK).fit(X, y)


def test_wide_part_skips_token_blocks_and_missing_rows():
    rng = np.random.RandomState(0)
    tokens = rng.randint(0, 30, size=(80, 6)).astype(float)
    X = {"text": tokens, "num": rng.normal(size=(80, 3))}
    y = (X["num"][:, 0] > 0).astype(int)
    clf = FusionClassifier(towers={"text": "gru"}, max_epochs=1, **QUICK).fit(X, y)
    assert clf.net_.module_.wide.blocks == [1]
    with pytest.raises(ValueError, match="block of token ids"):
        FusionClassifier(towers={"text": "gru"}, wide=["text"], **QUICK).fit(X, y)
    wide = clf.net_.module_.wide
    batch = {"x0": torch.zeros(2, 6, dtype=torch.long), "x1": torch.ones(2, 3)}
    out = wide(batch, torch.tensor([[True, True], [True, False]]))
    assert_allclose(out[1].detach().numpy(), wide.linears[0].bias.detach().numpy())


def test_sparse_wide_problem_is_at_least_as_good_as_logistic_regression():
    # a bag-of-words task: linear in many sparse columns, few rows
    rng = np.random.RandomState(0)
    n, d = 600, 300
    X = sparse.random(n, d, density=0.03, format="csr", random_state=rng, data_rvs=rng.rand)
    coef = rng.normal(size=d)
    y = (X @ coef + 0.1 * rng.normal(size=n) > 0).astype(int)
    train, test = slice(0, 400), slice(400, None)
    lr = LogisticRegression(max_iter=2000).fit(X[train], y[train]).score(X[test], y[test])
    net = FusionClassifier(random_state=0, n_jobs=1).fit(X[train], y[train])
    assert net.score(X[test], y[test]) >= lr - 0.03


# -- ensembles and stacking ------------------------------------------------------------------


def test_n_estimators_averages_nets_with_different_seeds():
    X, y = linear_problem(300)
    clf = FusionClassifier(n_estimators=3, max_epochs=4, **QUICK).fit(X, y)
    assert len(clf.nets_) == 3 and clf.net_ is clf.nets_[0]
    prepared, _ = clf._prepare(X, fit=False)
    members = [net.predict_proba(prepared) for net in clf.nets_]
    assert not np.allclose(members[0], members[1])
    assert_allclose(clf.predict_proba(X), np.mean(members, axis=0), atol=1e-6)
    reg = FusionRegressor(n_estimators=2, max_epochs=2, **QUICK).fit(X, y.astype(float))
    assert len(reg.nets_) == 2 and reg.predict(X).shape == (300,)


def test_same_seed_same_predictions_with_ensembles():
    X, y = linear_problem(300)
    a = FusionClassifier(n_estimators=2, max_epochs=3, n_jobs=1, **QUICK).fit(X, y)
    b = FusionClassifier(n_estimators=2, max_epochs=3, n_jobs=1, **QUICK).fit(X, y)
    assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_stacking_the_fusion_pipeline_with_scikit_learn_models():
    rng = np.random.RandomState(0)
    n = 300
    df = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "shop": rng.choice(["a", "b", "c"], n),
        }
    )
    y = ((df["x1"] + (df["shop"] == "a")) > 0.5).astype(int)
    features = ColumnTransformer(
        [
            ("numeric", StandardScaler(), ["x1", "x2"]),
            ("shop", OneHotEncoder(sparse_output=False), ["shop"]),
        ]
    ).set_output(transform="pandas")
    fusion = make_pipeline(features, FusionClassifier(max_epochs=20, n_estimators=1, **QUICK))
    linear = make_pipeline(features, LogisticRegression())
    stack = StackingClassifier([("fusion", fusion), ("linear", linear)], cv=3)
    scores = cross_val_score(stack, df, y, cv=3)
    assert scores.mean() > 0.8
    fitted = stack.fit(df, y)
    assert fitted.named_estimators_["fusion"][-1].modalities_ == ["numeric", "shop"]
