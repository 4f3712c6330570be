"""make_multimodal_pipeline: structure per role, validation, fits; TfidfSVD."""

import pickle

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy.stats import skew
from sklearn.base import clone
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, PowerTransformer, RobustScaler, StandardScaler

from mmsk import AudioFeatures, FusionClassifier, FusionRegressor, ImagePixels
from mmsk.compose import TfidfSVD, make_multimodal_pipeline
from mmsk.datasets import load_sample

FAST = dict(max_epochs=3, hidden_units=16, random_state=0)


def _blocks(model):
    return {name: (trans, cols) for name, trans, cols in model.named_steps["features"].transformers}


@pytest.fixture(scope="module")
def tabular():
    rng = np.random.RandomState(0)
    n = 48
    words = np.array(["cheap", "sturdy", "broken", "lovely", "late", "fast"])
    df = pd.DataFrame(
        {
            "id": np.arange(n),
            "review": [" ".join(rng.choice(words, 3)) for _ in range(n)],
            "price": rng.uniform(1, 100, n),
            "weight": rng.normal(size=n),
            "shop": rng.choice(["north", "south", "east"], n),
        }
    )
    df.loc[[3, 7], "price"] = np.nan
    df.loc[[5], "review"] = None
    df.loc[[9], "shop"] = None
    y = (df["weight"] > 0).astype(int)
    return df, y


# -- structure -----------------------------------------------------------------------
def test_one_block_per_media_column_and_one_per_tabular_role():
    model = make_multimodal_pipeline(
        image=["front", "back"],
        audio="voice",
        text="caption",
        numeric=["age", "price"],
        categorical=["city"],
    )
    assert isinstance(model, Pipeline)
    assert [name for name, _ in model.steps] == ["features", "fusion"]
    blocks = _blocks(model)
    assert list(blocks) == ["front", "back", "voice", "caption", "numeric", "categorical"]
    image, cols = blocks["front"]
    assert isinstance(image, ImagePixels) and cols == "front"
    assert (image.size, image.mode) == ((32, 32), "RGB")
    audio, cols = blocks["voice"]
    assert isinstance(audio, AudioFeatures) and audio.sr == 16000 and cols == "voice"
    assert isinstance(blocks["caption"][0], TfidfSVD)
    numbers, cols = blocks["numeric"]
    assert cols == ["age", "price"]
    steps = [type(s) for _, s in numbers.steps]
    assert steps == [SimpleImputer, RobustScaler, PowerTransformer, StandardScaler]
    codes, cols = blocks["categorical"]
    assert isinstance(codes, OneHotEncoder) and codes.handle_unknown == "ignore"
    assert cols == ["city"]
    assert isinstance(model.named_steps["fusion"], FusionClassifier)


def test_numeric_block_unskews_heavy_tails_and_can_be_plain_z_scores():
    rng = np.random.RandomState(0)
    n = 300
    df = pd.DataFrame(
        {
            "votes": rng.lognormal(8, 2, n),  # heavy right tail, like counts and prices
            "year": rng.randint(2000, 2020, n).astype(float),
            "flat": np.full(n, 7.0),  # a constant column stays finite
        }
    )
    df.loc[::10, "votes"] = np.nan
    model = make_multimodal_pipeline(numeric=["votes", "year", "flat"])
    out = model.named_steps["features"].fit_transform(df).to_numpy()
    assert out.shape == (n, 4)  # three columns and the indicator of missing votes
    assert np.isfinite(out).all()
    assert_allclose(out.mean(axis=0), 0, atol=1e-6)
    assert_allclose(out[:, :2].std(axis=0), 1, rtol=1e-6)
    assert len(np.unique(out[:, 1])) == 20  # every year kept apart (raw Yeo-Johnson merges them)
    assert abs(skew(out[:, 0])) < 0.5
    plain = model.set_params(
        features__numeric__robustscaler="passthrough",
        features__numeric__powertransformer="passthrough",
    )
    z = plain.named_steps["features"].fit_transform(df).to_numpy()
    assert skew(z[:, 0]) > 3  # the tail is still there
    assert_allclose(z[:, 0].std(), 1, rtol=1e-6)


def test_task_fusion_and_network_parameters_reach_the_estimator():
    model = make_multimodal_pipeline(
        numeric="x", task="regression", fusion="gated", random_state=3, n_jobs=2, max_epochs=7
    )
    net = model.named_steps["fusion"]
    assert isinstance(net, FusionRegressor)
    assert (net.fusion, net.random_state, net.n_jobs, net.max_epochs) == ("gated", 3, 2, 7)


def test_n_jobs_memory_and_random_state_reach_the_extractors(tmp_path):
    model = make_multimodal_pipeline(
        image="img", audio="wav", text="t", memory=tmp_path, n_jobs=2, random_state=5
    )
    blocks = _blocks(model)
    for name in ("img", "wav"):
        assert blocks[name][0].memory == str(tmp_path)
        assert blocks[name][0].n_jobs == 2
    assert blocks["t"][0].random_state == 5
    assert model.memory == str(tmp_path / "pipeline")


def test_block_names_are_valid_and_unique():
    model = make_multimodal_pipeline(
        text=["my__notes", "numeric", "remainder", "__x__"], numeric="n", image="my_notes"
    )
    names = list(_blocks(model))
    assert names == ["my_notes", "my_notes_2", "numeric_2", "remainder_2", "x", "numeric"]
    clone(model)  # sklearn accepts the names (validated in get_params / set_params)
    model.set_params(features__my_notes_2__n_components=8)


def test_clone_and_set_params_reach_the_blocks():
    model = make_multimodal_pipeline(image="photo", fusion="late")
    model.set_params(features__photo__mode="L", fusion__fusion="attention")
    copy = clone(model)
    assert _blocks(copy)["photo"][0].mode == "L"
    assert copy.named_steps["fusion"].fusion == "attention"


# -- validation --------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "no feature columns"),
        ({"image": "a", "text": ["b", "a"]}, "'a' has two roles, image and text"),
        ({"numeric": ["a", "b", "a"]}, "numeric: column 'a' is listed twice"),
        ({"numeric": [0, 1]}, "column names must be str"),
        ({"numeric": 3}, "must be a column name or a sequence"),
        ({"numeric": "a", "task": "ranking"}, "task must be one of"),
        ({"numeric": "a", "fusion": "sum"}, "fusion must be one of"),
        ({"numeric": "a", "max_epoch": 3}, "unknown parameter.*max_epoch"),
        ({"numeric": "a", "task": "regression", "class_weight": "balanced"}, "class_weight"),
    ],
)
def test_bad_arguments_raise_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_multimodal_pipeline(**kwargs)


# -- fitting ---------------------------------------------------------------------------
def test_fits_numeric_categorical_and_text(tabular):
    df, y = tabular
    model = make_multimodal_pipeline(
        text="review", numeric=["price", "weight"], categorical="shop", **FAST
    )
    model.fit(df, y)
    net = model.named_steps["fusion"]
    assert net.modalities_ == ["review", "numeric", "categorical"]
    assert net.modality_dims_["review"] == 6  # vocabulary of 6 words caps the 64 components
    assert net.modality_dims_["numeric"] == 3  # price, weight, price's missing indicator
    assert model.predict_proba(df).shape == (len(df), 2)
    unseen = df.head(2).assign(shop=["west", "west"], review=[None, "brand new words"])
    assert model.predict(unseen).shape == (2,)


def test_fits_regression(tabular):
    df, _ = tabular
    y = 2 * df["weight"] + 1
    model = make_multimodal_pipeline(numeric="weight", task="regression", **FAST)
    pred = model.fit(df, y).predict(df)
    assert pred.shape == (len(df),) and np.isfinite(pred).all()


def test_fits_images_and_audio_of_the_shipped_sample():
    sample = load_sample()
    frame = sample.frame.groupby("label").head(3)  # 30 rows, every digit
    model = make_multimodal_pipeline(
        image="image", audio="audio", categorical="speaker", fusion="gated", **FAST
    )
    model.fit(frame, frame["label"])
    net = model.named_steps["fusion"]
    assert net.modality_dims_["image"] == 32 * 32 * 3
    assert net.modalities_ == ["image", "audio", "categorical"]
    assert set(model.predict(frame)) <= set(range(10))
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(again.predict_proba(frame), model.predict_proba(frame))


# -- TfidfSVD ----------------------------------------------------------------------------
def test_tfidf_svd_names_width_and_missing_texts():
    texts = pd.Series(["red car", "blue car", np.nan, "red sky", "blue sea sky"], name="t")
    svd = TfidfSVD(n_components=10, random_state=0).set_output(transform="pandas")
    out = svd.fit_transform(texts)
    assert svd.n_components_ == 4  # four texts (the missing one aside) cap the ten components
    assert list(out.columns) == ["svd_00", "svd_01", "svd_02", "svd_03"]
    assert out.iloc[2].isna().all() and out.drop(index=2).notna().all().all()
    again = svd.transform(pd.DataFrame({"t": [None, "red car", 17]}))
    assert again.shape == (3, 4) and again.iloc[0].isna().all()
    np.testing.assert_allclose(again.iloc[1], out.iloc[0], atol=1e-6)


def test_tfidf_svd_follows_the_sklearn_contract():
    texts = ["a red car", "a blue car", "red roses", "blue sky", "grey sky"]
    svd = TfidfSVD(n_components=2, random_state=0)
    first = svd.fit_transform(texts)
    np.testing.assert_allclose(clone(svd).fit(texts).transform(texts), first, atol=1e-6)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(svd)).transform(texts), first)
    assert svd.n_features_in_ == 1 and first.dtype == np.float32
    assert svd.__sklearn_tags__().input_tags.string


@pytest.mark.parametrize(
    "texts, params, match",
    [
        ([None, np.nan], {}, "every text is missing"),
        (["a b"], {"n_components": 0}, "n_components must be an int >= 1"),
        ("just one string", {}, "Iterable over texts expected"),
    ],
)
def test_tfidf_svd_errors(texts, params, match):
    with pytest.raises(ValueError, match=match):
        TfidfSVD(**params).fit(texts)


# -- MultimodalColumnTransformer -----------------------------------------------------
def test_multimodal_column_transformer_gives_what_column_transformer_gives(tabular, png_paths):
    from sklearn.compose import ColumnTransformer

    from mmsk.compose import MultimodalColumnTransformer

    df, _ = tabular
    df = df.iloc[:6].assign(photo=png_paths).set_index(np.arange(6) * 10 + 5)  # not 0..n-1
    steps = [
        ("photo", ImagePixels(size=(4, 3), mode="L"), "photo"),
        ("numeric", StandardScaler(), ["price", "weight"]),
        ("shop", OneHotEncoder(sparse_output=False), ["shop"]),
    ]
    for kwargs in ({}, {"remainder": "passthrough"}, {"verbose_feature_names_out": False}):
        ours = MultimodalColumnTransformer(steps, **kwargs).set_output(transform="pandas")
        theirs = ColumnTransformer(steps, **kwargs).set_output(transform="pandas")
        expected = theirs.fit_transform(df)
        for got in (ours.fit_transform(df), ours.transform(df), ours.transform(df.iloc[2:4])):
            pd.testing.assert_frame_equal(got, expected.loc[got.index])
        np.testing.assert_array_equal(ours.get_feature_names_out(), theirs.get_feature_names_out())
    ours = MultimodalColumnTransformer(steps).fit(df)  # default output: arrays, as the parent
    np.testing.assert_array_equal(ours.transform(df), ColumnTransformer(steps).fit_transform(df))


def test_multimodal_column_transformer_names_follow_changes(tabular, png_paths):
    from mmsk.compose import MultimodalColumnTransformer

    df, _ = tabular
    df = df.iloc[:6].assign(photo=png_paths)
    ct = MultimodalColumnTransformer(
        [("photo", ImagePixels(size=(2, 2), mode="L"), "photo"), ("n", StandardScaler(), ["price"])]
    ).set_output(transform="pandas")
    assert list(ct.fit_transform(df).columns)[-2:] == ["photo__px_1_1_L", "n__price"]
    ct.set_params(verbose_feature_names_out=False)
    assert list(ct.transform(df).columns)[-2:] == ["px_1_1_L", "price"]
    ct.named_transformers_["photo"].set_params(size=(3, 1)).fit(df["photo"])  # refitted in place
    out = ct.transform(df)
    assert out.shape == (6, 4) and list(out.columns)[:3] == ["px_0_0_L", "px_0_1_L", "px_0_2_L"]
    assert "_names_out_memo" not in pickle.loads(pickle.dumps(ct)).__dict__
