"""CrossModalRetriever: the shared space, ranking, scorers, errors; FusionClassifier.transform."""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from mmsk import CrossModalRetriever, FusionClassifier, FusionRegressor
from mmsk.fusion.contrastive import InfoNCELoss, ranking_metrics, top_k
from mmsk.fusion.retrieval import mean_reciprocal_rank, recall_at_k

# n_jobs=1: one torch thread is much faster for nets this small on a busy machine
SMALL = dict(
    hidden_units=32, embed_dim=8, batch_size=32, max_epochs=15, lr=3e-3, n_jobs=1, random_state=0
)


def make_pairs(n=300, n_classes=5, seed=0):
    """Pairs of two views of a latent point; the latent points form ``n_classes`` clusters."""
    rng = np.random.RandomState(seed)
    labels = rng.randint(n_classes, size=n)
    centers = rng.normal(scale=2.0, size=(n_classes, 4))
    z = centers[labels] + rng.normal(size=(n, 4))
    audio = z @ rng.normal(size=(4, 12)) + 0.1 * rng.normal(size=(n, 12))
    image = np.tanh(z @ rng.normal(size=(4, 20))) + 0.05 * rng.normal(size=(n, 20))
    return {"audio": audio, "image": image}, labels


def as_frame(blocks):
    """A DataFrame named like a ColumnTransformer's pandas output."""
    return pd.concat(
        [
            pd.DataFrame(b, columns=[f"{name}__f{j}" for j in range(b.shape[1])])
            for name, b in blocks.items()
        ],
        axis=1,
    )


def rows(blocks, index):
    return {name: b[index] for name, b in blocks.items()}


@pytest.fixture(scope="module")
def data():
    X, y = make_pairs()
    return X, y


@pytest.fixture(scope="module")
def fitted(data):
    X, _ = data
    return CrossModalRetriever(**SMALL).fit(rows(X, slice(0, 240)))


# -- the sklearn contract --------------------------------------------------------------------


@parametrize_with_checks(
    [
        CrossModalRetriever(
            modalities={"a": slice(0, 1), "b": slice(1, None)},
            hidden_units=8,
            embed_dim=4,
            max_epochs=2,
            n_jobs=1,
            random_state=0,
        )
    ],
    expected_failed_checks=lambda est: {
        "check_fit2d_1feature": "two modalities need at least two columns",
    },
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# -- learning --------------------------------------------------------------------------------


def test_learns_a_shared_space_far_above_chance(data, fitted):
    X, _ = data
    test = rows(X, slice(240, 300))  # 60 unseen pairs: chance recall@1 is 1/60
    assert fitted.score(test) > 0.3
    assert recall_at_k(5)(fitted, test) > 0.7
    # a retriever that never learned (one epoch, no steps to speak of) is far worse
    untrained = CrossModalRetriever(**{**SMALL, "max_epochs": 1, "lr": 1e-6}).fit(
        rows(X, slice(0, 240))
    )
    assert mean_reciprocal_rank(fitted, test) > mean_reciprocal_rank(untrained, test) + 0.2


def make_class_pairs(n=300, n_classes=5, seed=1):
    """Pairs that share only their class (as a spoken digit and an image of it)."""
    rng = np.random.RandomState(seed)
    labels = rng.randint(n_classes, size=n)
    centers = rng.normal(scale=2.0, size=(n_classes, 4))
    za = centers[labels] + rng.normal(size=(n, 4))
    zb = centers[labels] + rng.normal(size=(n, 4))
    audio = za @ rng.normal(size=(4, 12))
    return {"audio": audio, "image": np.tanh(zb @ rng.normal(size=(4, 20)))}, labels


def test_labels_make_same_label_rows_positives():
    X, y = make_class_pairs()
    train, test = rows(X, slice(0, 240)), rows(X, slice(240, 300))
    with_labels = CrossModalRetriever(**{**SMALL, "max_epochs": 10}).fit(train, y[:240])
    # relevance by label: most queries find an item of their class first (chance: 1/5)
    assert with_labels.score(test, y[240:]) > 0.6
    # by label relevance is never harder than by row (the partner has the label),
    # and here, where a pair shares nothing but its class, much easier
    assert with_labels.score(test, y[240:]) > with_labels.score(test) + 0.3


def test_infonce_positives_are_same_label_rows():
    rng = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(6, 4, generator=rng), dim=1)
    t = torch.nn.functional.normalize(torch.randn(6, 4, generator=rng), dim=1)
    scale = torch.tensor(5.0)
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    swap = torch.tensor([1, 0, 2, 4, 3, 5])  # permute targets within each label
    loss = InfoNCELoss()
    by_label = loss((q, t, scale), labels)
    assert torch.allclose(by_label, loss((q, t[swap], scale), labels))
    by_row = loss((q, t, scale), torch.arange(6))
    assert not torch.allclose(by_row, loss((q, t[swap], scale), torch.arange(6)))
    # aligned pairs score a lower loss than shuffled ones
    assert loss((q, q, scale), torch.arange(6)) < loss((q, q[swap], scale), torch.arange(6))


def test_seeded_fits_are_equal_and_pickle_round_trips(data, fitted):
    X, _ = data
    again = CrossModalRetriever(**SMALL).fit(rows(X, slice(0, 240)))
    emb = fitted.transform(X, modality="image")
    np.testing.assert_allclose(again.transform(X, modality="image"), emb, rtol=1e-6, atol=1e-7)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.transform(X, modality="image"), emb)
    assert restored.temperature_ == fitted.temperature_


def test_early_stopping_keeps_the_best_epoch(data):
    X, _ = data
    ret = CrossModalRetriever(**{**SMALL, "max_epochs": 40, "n_iter_no_change": 3})
    ret.fit(X)
    assert ret.early_stopping_
    losses = ret.net_.history[:, "valid_loss"]
    assert len(losses) <= 40 and min(losses) <= losses[-1]


# -- the space -------------------------------------------------------------------------------


def test_transform_shapes_names_and_input_forms(data, fitted):
    X, _ = data
    emb = fitted.transform(X, modality="audio")
    assert emb.shape == (300, 8) and emb.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    assert fitted.get_feature_names_out().tolist() == [f"shared{i}" for i in range(8)]
    # one modality alone: a dict with its key (found by itself), or its block as an array
    np.testing.assert_allclose(fitted.transform({"audio": X["audio"]}), emb, rtol=1e-6)
    np.testing.assert_allclose(fitted.transform(X["audio"], modality="audio"), emb, rtol=1e-6)
    image = fitted.transform({"image": X["image"]})
    np.testing.assert_allclose(image, fitted.transform(X, modality="image"), rtol=1e-6)
    assert fitted.transform(X).shape == (300, 8)  # both held: the query modality
    np.testing.assert_allclose(fitted.transform(X), emb, rtol=1e-6)


def test_dataframe_input_partial_columns_and_set_output(data):
    X, _ = data
    frame = as_frame(X)
    ret = CrossModalRetriever(**{**SMALL, "max_epochs": 2}).fit(frame)
    assert ret.modalities_ == ["audio", "image"]
    assert ret.modality_dims_ == {"audio": 12, "image": 20}
    full = ret.transform(frame, modality="image")
    only_image = frame[[c for c in frame.columns if c.startswith("image__")]]
    np.testing.assert_allclose(ret.transform(only_image), full, rtol=1e-6)
    out = ret.set_output(transform="pandas").transform(only_image)
    assert list(out.columns) == [f"shared{i}" for i in range(8)]


def test_sparse_blocks(data):
    X, _ = data
    sparse_X = {"audio": sparse.csr_matrix(np.maximum(X["audio"], 0)), "image": X["image"]}
    ret = CrossModalRetriever(**{**SMALL, "max_epochs": 2}).fit(sparse_X)
    dense = ret.transform({"audio": sparse_X["audio"].toarray()})
    np.testing.assert_allclose(ret.transform(sparse_X, modality="audio"), dense, rtol=1e-6)


def test_rank_returns_sorted_top_k_of_the_gallery(data, fitted):
    X, _ = data
    queries, gallery = {"audio": X["audio"][:7]}, {"image": X["image"][100:160]}
    indices, scores = fitted.rank(queries, gallery, k=5)
    assert indices.shape == scores.shape == (7, 5)
    assert (np.diff(scores, axis=1) <= 0).all()
    sim = fitted.transform(queries) @ fitted.transform(gallery).T
    np.testing.assert_allclose(scores, np.take_along_axis(sim, indices, axis=1), rtol=1e-6)
    assert np.allclose(scores[:, 0], sim.max(axis=1))
    # the other way round: images search the audio
    back, _ = fitted.rank(gallery, queries, k=3, query_modality="image", gallery_modality="audio")
    assert back.shape == (60, 3) and back.max() < 7


def test_top_k_and_ranks_on_known_vectors():
    gallery = np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8], [0.8, 0.6]])
    queries = np.array([[1.0, 0.0], [0.0, 1.0]])
    indices, scores = top_k(queries, gallery, 3)
    assert indices.tolist() == [[1, 3, 2], [0, 2, 3]]
    ranks = ranking_metrics(queries, gallery, np.array([1, 1]), np.array([1, 0, 0, 1]))
    assert ranks.tolist() == [2.0, 1.0]
    ranks = ranking_metrics(queries, gallery, np.array([5, 1]), np.array([1, 0, 0, 1]))
    assert ranks[0] == np.inf  # nothing relevant: a miss


def test_scorers_in_grid_search_on_a_pipeline(data):
    X, y = data
    frame = as_frame(X)
    audio = [c for c in frame.columns if c.startswith("audio__")]
    image = [c for c in frame.columns if c.startswith("image__")]
    features = ColumnTransformer(
        [("audio", StandardScaler(), audio), ("image", StandardScaler(), image)]
    ).set_output(transform="pandas")
    model = Pipeline(
        [("features", features), ("ret", CrossModalRetriever(**{**SMALL, "max_epochs": 3}))]
    )
    scoring = {"r1": recall_at_k(1), "r5": recall_at_k(5), "mrr": mean_reciprocal_rank}
    search = GridSearchCV(
        model, {"ret__embed_dim": [4, 8]}, scoring=scoring, refit="mrr", cv=KFold(2)
    )
    search.fit(frame, y)
    results = search.cv_results_
    assert search.best_params_["ret__embed_dim"] in (4, 8)
    for i in range(2):
        r1, r5, mrr = (results[f"mean_test_{name}"][i] for name in ("r1", "r5", "mrr"))
        assert 0 <= r1 <= mrr <= 1 and r1 <= r5  # by label: 5 classes, so r5 ~ 1
    assert results["mean_test_r5"].min() > 0.5


def test_recall_at_k_is_non_decreasing_in_k(data, fitted):
    X, _ = data
    test = rows(X, slice(240, 300))
    values = [recall_at_k(k)(fitted, test) for k in (1, 2, 5, 10)]
    assert values == sorted(values)
    assert repr(recall_at_k(3)) == "recall_at_k(k=3)"


# -- errors ----------------------------------------------------------------------------------


def test_errors(data, fitted):
    X, _ = data
    with pytest.raises(ValueError, match="modality must be one of"):
        fitted.transform(X, modality="text")
    with pytest.raises(ValueError, match=r"k=61 is larger than the gallery, which has 60"):
        fitted.rank({"audio": X["audio"][:2]}, {"image": X["image"][:60]}, k=61)
    with pytest.raises(ValueError, match="k must be an int"):
        fitted.rank({"audio": X["audio"][:2]}, {"image": X["image"][:60]}, k=0)
    with pytest.raises(ValueError, match="k must be an int"):
        recall_at_k(0)
    with pytest.raises(ValueError, match="lacks modality 'image'"):
        fitted.transform({"audio": X["audio"]}, modality="image")
    with pytest.raises(
        ValueError, match=r"X has 5 features, .* expecting 32 .*\(or 12 for modality 'audio'"
    ):
        fitted.transform(np.zeros((3, 5)), modality="audio")
    with pytest.raises(TypeError, match="need a CrossModalRetriever"):
        recall_at_k(1)(FusionClassifier(), X)


@pytest.mark.parametrize(
    ("params", "X", "match"),
    [
        ({}, {"audio": np.zeros((10, 3))}, "needs two modalities, but X has one block, 'audio'"),
        ({}, np.zeros((10, 3)), "needs two modalities, but X has one block, 'input'"),
        ({"query": "text"}, None, r"query='text' is not a modality of X"),
        ({"query": "audio", "target": "audio"}, None, "two modalities, both are 'audio'"),
        ({"batch_size": 1}, None, "batch_size must be an int >= 2"),
        ({"temperature": 0}, None, "temperature must be a float > 0"),
    ],
)
def test_fit_errors(params, X, match):
    if X is None:
        X = {"audio": np.zeros((10, 3)), "image": np.ones((10, 2))}
    with pytest.raises(ValueError, match=match):
        CrossModalRetriever(max_epochs=1, **params).fit(X)


def test_three_blocks_need_the_pair_named():
    X = {"audio": np.random.rand(30, 3), "image": np.random.rand(30, 2), "text": np.ones((30, 2))}
    with pytest.raises(ValueError, match="X has 3 blocks .* query= and target="):
        CrossModalRetriever(max_epochs=1).fit(X)
    ret = CrossModalRetriever(query="text", target="image", hidden_units=8, max_epochs=1)
    assert ret.fit(X).modalities_ == ["text", "image"]


def test_fit_rejects_a_pair_that_lacks_a_modality():
    X = {"audio": np.random.rand(10, 3), "image": np.random.rand(10, 2)}
    X["image"][4] = np.nan
    with pytest.raises(ValueError, match="row 4 lacks modality 'image'"):
        CrossModalRetriever(max_epochs=1).fit(X)


# -- FusionClassifier.transform --------------------------------------------------------------


@pytest.mark.parametrize("fusion", ["concat", "gated", "late"])
def test_fusion_transform_is_the_input_of_the_head(data, fusion):
    X, y = data
    clf = FusionClassifier(
        fusion=fusion,
        hidden_units=8,
        max_epochs=3,
        wide=False,
        n_estimators=1,
        n_jobs=1,
        random_state=0,
    )
    clf.fit(X, y)
    proba = clf.predict_proba(X)
    fused = clf.transform(X)
    width = {"concat": 16, "gated": 8, "late": 5}[fusion]
    assert fused.shape == (300, width)
    assert clf.get_feature_names_out().tolist() == [f"fused{i}" for i in range(width)]
    module = clf.net_.module_.eval()
    with torch.no_grad():
        logits = module.head(torch.as_tensor(fused, dtype=torch.float32))
    np.testing.assert_allclose(torch.softmax(logits, 1).numpy(), proba, rtol=1e-4, atol=1e-6)
    # predict is untouched by transform: same outputs, bit for bit, after it
    np.testing.assert_array_equal(clf.predict_proba(X), proba)


def test_fusion_regressor_transform_with_an_ensemble(data):
    X, _ = data
    reg = FusionRegressor(hidden_units=8, max_epochs=2, n_estimators=2, n_jobs=1, random_state=0)
    reg.fit(as_frame(X), X["audio"][:, 0])
    fused = reg.transform(as_frame(X))
    assert fused.shape == (300, 32)  # two nets, each concat of 2 x 8
    assert len(reg.get_feature_names_out()) == 32
