"""MultimodalColumnTransformer's one-row path: the parent's output, checks and messages, faster."""

import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import StandardScaler

from mmsk import AudioFeatures, FusionClassifier, ImagePixels
from mmsk._items import ItemError
from mmsk.compose import MultimodalColumnTransformer, make_multimodal_pipeline


@pytest.fixture(scope="module")
def media(png_paths, wav_paths):
    """Six rows of an image, a second image and a clip, indexed 5, 15, ... (not positions)."""
    return pd.DataFrame(
        {"photo": png_paths, "thumb": png_paths[::-1], "clip": wav_paths, "x": np.arange(6.0)},
        index=np.arange(6) * 10 + 5,
    )


def _steps():
    return [
        ("photo", ImagePixels(size=(4, 3), mode="L"), "photo"),
        ("thumb", ImagePixels(size=(2, 2), mode="L"), ["thumb"]),  # a list: a one-column frame
        ("clip", AudioFeatures(sr=8000, n_mfcc=5, features=("mfcc", "rms")), "clip"),
    ]


def _pair(steps=None, **kwargs):
    steps = _steps() if steps is None else steps
    ours = MultimodalColumnTransformer(steps, **kwargs).set_output(transform="pandas")
    theirs = ColumnTransformer(steps, **kwargs).set_output(transform="pandas")
    return ours, theirs


@pytest.mark.parametrize("verbose", [True, False])
def test_the_lean_path_gives_the_parents_frame(media, verbose, monkeypatch):
    # (two images' own names are the same: unique without the prefixes only with one image)
    steps = _steps() if verbose else _steps()[::2]
    ours, theirs = _pair(steps, verbose_feature_names_out=verbose)
    expected = theirs.fit_transform(media)
    ours.fit(media)
    calls = []
    parent = ColumnTransformer._call_func_on_transformers
    monkeypatch.setattr(
        ColumnTransformer,
        "_call_func_on_transformers",
        lambda self, *a, **k: calls.append(1) or parent(self, *a, **k),
    )
    shuffled = media[["x", "clip", "thumb", "photo"]]  # other order, an extra column
    for X in (media, media.iloc[[3]], media.iloc[2:4], shuffled):
        got = ours.transform(X)
        pd.testing.assert_frame_equal(got, expected.loc[X.index])
        assert set(got.dtypes) == {np.dtype("float32")}
    assert calls == []  # none of these went the parent's way
    # the output's column Index is built once and reused
    assert ours.transform(media.iloc[[0]]).columns is ours.transform(media.iloc[[1]]).columns


def test_mixed_blocks_and_the_parents_way_give_the_same_frames(media):
    steps = [*_steps(), ("x", StandardScaler(), ["x"])]  # float64 next to float32: joined frames
    for n_jobs in (None, 2):  # 2: the parent's way (its joblib jobs), in threads here
        ours = MultimodalColumnTransformer(steps, n_jobs=n_jobs).set_output(transform="pandas")
        theirs = ColumnTransformer(steps, n_jobs=n_jobs).set_output(transform="pandas")
        with joblib.parallel_config(backend="threading"):
            expected = theirs.fit_transform(media)
            got = ours.fit(media).transform(media.iloc[[2]])
        pd.testing.assert_frame_equal(got, expected.iloc[[2]])
        assert got["x__x"].dtype == np.float64


def test_bad_input_gets_the_parents_errors_and_the_items_errors(media, tmp_path):
    ours, theirs = _pair()
    ours.fit(media)
    theirs.fit(media)

    def message(ct, X):
        with pytest.raises(Exception) as info:
            ct.transform(X)
        return type(info.value), str(info.value)

    missing = media.drop(columns="clip")
    assert message(ours, missing) == message(theirs, missing)
    assert "columns are missing" in message(ours, missing)[1]
    renamed = media.set_axis([0, "thumb", "clip", "x"], axis=1)  # a non-str name
    assert message(ours, renamed) == message(theirs, renamed)
    assert message(ours, media.to_numpy()) == message(theirs, media.to_numpy())
    # an unreadable item names its column, row label and item, as the extractor does alone
    bad = media.iloc[[1]].assign(clip=str(tmp_path / "gone.wav"))
    kind, text = message(ours, bad)
    assert (kind, text) == message(theirs, bad) and kind is ItemError
    assert text.startswith("clip: row 15 (") and "file not found" in text
    empty = media.iloc[:0]
    assert ours.transform(empty).shape == theirs.transform(empty).shape == (0, 12 + 4 + 12)


def test_names_follow_parameter_changes_and_memos_are_not_pickled(media):
    ours, _ = _pair()
    ours.fit(media)
    photo = ours.named_transformers_["photo"]
    assert len(photo.get_feature_names_out()) == 12
    photo.set_params(size=(2, 1))  # the names follow the parameters at once (no refit)
    assert list(photo.get_feature_names_out()) == ["px_0_0_L", "px_0_1_L"]
    photo.fit(media["photo"])
    out = ours.transform(media.iloc[[0]])
    assert out.shape == (1, 2 + 4 + 12) and list(out.columns[:2]) == [
        "photo__px_0_0_L",
        "photo__px_0_1_L",
    ]
    again = pickle.loads(pickle.dumps(ours))
    assert not {"_names_out_memo", "_names_index_memo"} & set(vars(again))
    assert "_names_memo" not in vars(again.named_transformers_["photo"])
    pd.testing.assert_frame_equal(again.transform(media), ours.transform(media))


def test_set_output_reaches_every_transformer_and_default_output_is_arrays(media):
    ours = MultimodalColumnTransformer(_steps()).fit(media)
    theirs = ColumnTransformer(_steps()).fit(media)
    np.testing.assert_array_equal(
        ours.transform(media.iloc[[4]]), theirs.transform(media.iloc[[4]])
    )
    ours.set_output(transform="pandas")
    fitted = [t for _, t, _ in ours.transformers_ if not isinstance(t, str)]
    assert len(fitted) == 3
    assert all(t._sklearn_output_config["transform"] == "pandas" for t in fitted)
    assert isinstance(ours.transform(media), pd.DataFrame)
    ours.set_output(transform="default")
    assert isinstance(ours.transform(media), np.ndarray)


def test_one_row_predict_of_a_pipeline_matches_the_batch(media):
    y = np.array([0, 1, 0, 1, 0, 1])
    model = make_multimodal_pipeline(
        image="photo", audio="clip", hidden_units=8, max_epochs=2, random_state=0
    )
    model.set_params(features__photo__size=(4, 4), features__clip__sr=8000)
    model.fit(media, y)
    batch = model.predict_proba(media)
    rows = np.vstack([model.predict_proba(media.iloc[[i]]) for i in range(6)])
    np.testing.assert_allclose(rows, batch, rtol=1e-6, atol=1e-7)
    fusion = model.named_steps["fusion"]
    assert isinstance(fusion, FusionClassifier)
    # a frame whose columns are not the fitted ones still gets scikit-learn's check
    features = model.named_steps["features"].transform(media)
    with pytest.raises(ValueError, match="feature names"):
        fusion.predict(features.iloc[:, ::-1])
