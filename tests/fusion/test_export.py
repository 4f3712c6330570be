"""ONNX export: onnxruntime reproduces predict_proba / predict for every fusion and tower.

Each case fits a tiny net for two epochs on a DataFrame whose column names
carry the extractors' grammar (``px_*``, ``logmel_*``, ``tok_*``), exports
it, and compares onnxruntime's output on other rows (another batch size than
the trace's, with missing modalities) with the estimator's own.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mmsk import ImagePixels, TokenSequences
from mmsk.fusion import FusionClassifier, FusionRegressor
from mmsk.fusion.encoders import compact_tokens
from mmsk.fusion.export import METADATA_KEY, onnx_input_names
from mmsk.fusion.modules import FUSIONS

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

ROOT = Path(__file__).resolve().parents[2]
TOL = dict(atol=1e-5, rtol=1e-5)
SIDE, MELS, FRAMES, MAX_LEN, VOCAB = 6, 5, 8, 10, 20
FAST = dict(hidden_units=8, max_epochs=2, batch_size=32, random_state=0)
CONV = ("conv", {"width": 4})
TOWERS = {
    "mlp": {},
    "conv-image": {"image": CONV},
    "conv-spectrogram": {"spec": CONV},
    "gru": {"text": ("gru", {"embedding_dim": 8})},
    "lstm-bidirectional": {"text": ("lstm", {"embedding_dim": 8, "bidirectional": True})},
    "transformer": {"text": ("transformer", {"embedding_dim": 8, "n_heads": 2})},
}
ALL_TOWERS = {**TOWERS["conv-image"], **TOWERS["conv-spectrogram"], **TOWERS["transformer"]}


def make_frame(n, seed=0, blocks=("num", "image", "spec", "text")):
    """A ColumnTransformer-style DataFrame with missing modalities, and a binary label.

    Rows 1, 5, 9, ... lack the numeric block (all-NaN), rows 2, 6, ... the
    image and the spectrogram, rows 3, 7, ... the text (all padding); token
    rows have every length from 1 to MAX_LEN, and ids the training never saw.
    """
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, n)
    parts = []
    if "num" in blocks:
        num = rng.normal(size=(n, 4)) + y[:, None]
        num[:, 3] = rng.randint(0, 2, n)  # a binary column: kept unscaled by "auto"
        parts.append(pd.DataFrame(num, columns=[f"num__f{j}" for j in range(4)]))
    if "image" in blocks:
        image = rng.uniform(size=(n, SIDE * SIDE)) + 0.5 * y[:, None]
        names = [f"image__px_{r}_{c}_L" for r in range(SIDE) for c in range(SIDE)]
        parts.append(pd.DataFrame(image, columns=names))
    if "spec" in blocks:
        spec = rng.normal(size=(n, MELS * FRAMES)) - y[:, None]
        names = [f"spec__logmel_{m:02d}_{f:03d}" for m in range(MELS) for f in range(FRAMES)]
        parts.append(pd.DataFrame(spec, columns=names))
    if "text" in blocks:
        ids = np.zeros((n, MAX_LEN))
        for i in range(n):
            length = 1 + i % MAX_LEN
            ids[i, :length] = rng.randint(2, VOCAB + 5 * seed, size=length)
            ids[i, rng.randint(length)] = 2 + y[i]
        parts.append(pd.DataFrame(ids, columns=[f"text__tok_{j:03d}" for j in range(MAX_LEN)]))
    X = pd.concat(parts, axis=1)
    prefixes = {"num": [1], "image": [2], "spec": [2], "text": [3]}
    for block, offsets in prefixes.items():
        columns = [c for c in X.columns if c.startswith(f"{block}__")]
        for offset in offsets:
            X.loc[offset::4, columns] = 0.0 if block == "text" else np.nan
    return X, y


@pytest.fixture(scope="module")
def train():
    return make_frame(48)


@pytest.fixture(scope="module")
def test():
    return make_frame(37, seed=1)  # not the trace's batch of 16


def run_onnx(estimator, X, tmp_path, **kwargs):
    path = estimator.to_onnx(tmp_path / "model.onnx", **kwargs)
    session = ort.InferenceSession(str(path))
    (out,) = session.run(None, estimator.onnx_inputs(X))
    return out, session


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - b)))


# -- parity ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tower", list(TOWERS))
@pytest.mark.parametrize("fusion", FUSIONS)
def test_classifier_parity_every_fusion_and_tower(fusion, tower, train, test, tmp_path):
    X, y = train
    clf = FusionClassifier(fusion=fusion, towers=TOWERS[tower], **FAST).fit(X, y)
    assert clf.net_.module_.wide is not None  # the wide path is in every case
    out, session = run_onnx(clf, test[0], tmp_path)
    expected = clf.predict_proba(test[0])
    assert out.shape == expected.shape
    assert np.allclose(out, expected, **TOL), max_diff(out, expected)
    # batch size 1, with and without a missing modality
    for row in (0, 1, 3):
        one = test[0].iloc[[row]]
        (out,) = session.run(None, clf.onnx_inputs(one))
        assert np.allclose(out, clf.predict_proba(one), **TOL)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_regressor_parity_with_every_tower_in_one_net(fusion, train, test, tmp_path):
    X, y = train
    target = 50.0 + 20.0 * y + X["num__f0"].fillna(0).to_numpy()  # far from standard scale
    reg = FusionRegressor(fusion=fusion, towers=ALL_TOWERS, **FAST).fit(X, target)
    out, session = run_onnx(reg, test[0], tmp_path)
    expected = reg.predict(test[0])
    assert out.shape == expected.shape == (37,) and out.dtype == np.float64
    assert np.allclose(out, expected, **TOL), max_diff(out, expected)
    assert [o.name for o in session.get_outputs()] == ["predictions"]


def test_deep_path_only_and_multi_output_regression(train, test, tmp_path):
    X, y = train
    target = np.c_[y, -3.0 * y + 1000.0]
    reg = FusionRegressor(wide=False, towers=ALL_TOWERS, **FAST).fit(X, target)
    assert reg.net_.module_.wide is None
    out, _ = run_onnx(reg, test[0], tmp_path)
    assert out.shape == (37, 2)
    assert np.allclose(out, reg.predict(test[0]), **TOL)


@pytest.mark.parametrize("Estimator", [FusionClassifier, FusionRegressor])
def test_ensemble_is_averaged_in_the_graph(Estimator, train, test, tmp_path):
    X, y = train
    est = Estimator(fusion="gated", towers=TOWERS["gru"], n_estimators=2, **FAST).fit(X, y)
    out, _ = run_onnx(est, test[0], tmp_path)
    expected = est.predict_proba(test[0]) if Estimator is FusionClassifier else est.predict(test[0])
    assert np.allclose(out, expected, **TOL)
    # the average differs from either member, so both are in the graph
    est.nets_ = est.nets_[:1]
    single = est.predict_proba(test[0]) if Estimator is FusionClassifier else est.predict(test[0])
    assert not np.allclose(out, single, **TOL)


def test_dict_sparse_and_multiclass_input(tmp_path):
    rng = np.random.RandomState(0)
    X = {"dense": rng.normal(size=(60, 5)), "tfidf": sparse.random(60, 12, density=0.3, rng=0)}
    y = rng.randint(0, 3, 60).astype(str)
    clf = FusionClassifier(fusion="attention", **FAST).fit(X, y)
    inputs = clf.onnx_inputs(X)
    assert all(isinstance(a, np.ndarray) for a in inputs.values())
    out, session = run_onnx(clf, X, tmp_path)
    assert out.shape == (60, 3)
    assert np.allclose(out, clf.predict_proba(X), **TOL)
    meta = json.loads(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
    assert meta["classes"] == ["0", "1", "2"] and meta["blocks"][1]["columns"] is None


@pytest.mark.parametrize("opset", [14, 20])
def test_other_opsets(opset, train, test, tmp_path):
    X, y = train
    clf = FusionClassifier(fusion="attention", towers=ALL_TOWERS, **FAST).fit(X, y)
    out, _ = run_onnx(clf, test[0], tmp_path, opset=opset)
    assert np.allclose(out, clf.predict_proba(test[0]), **TOL)


# -- the graph's interface -------------------------------------------------------------------


def test_inputs_names_dtypes_and_metadata(train, test, tmp_path):
    X, y = train
    clf = FusionClassifier(towers=ALL_TOWERS, **FAST).fit(X, y)
    before = clf.predict_proba(test[0])
    _, session = run_onnx(clf, test[0], tmp_path)
    names = ["x0", "mask0", "x1", "mask1", "x2", "mask2", "x3", "mask3"]
    assert onnx_input_names(clf) == names
    assert [i.name for i in session.get_inputs()] == names
    types = [i.type for i in session.get_inputs()]
    assert types == ["tensor(float)", "tensor(bool)"] * 3 + ["tensor(int64)", "tensor(bool)"]
    assert [i.shape for i in session.get_inputs()][:2] == [["batch", 4], ["batch"]]
    assert session.get_outputs()[0].shape == ["batch", 2]
    inputs = clf.onnx_inputs(test[0])
    assert list(inputs) == names
    assert inputs["mask0"].tolist()[:4] == [True, False, True, True]
    assert (inputs["x0"][1] == 0).all() and (inputs["x3"][3] == 0).all()
    meta = json.loads(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
    assert meta["estimator"] == "FusionClassifier" and meta["output"] == "probabilities"
    assert [b["modality"] for b in meta["blocks"]] == clf.modalities_
    assert meta["blocks"][3]["dtype"] == "int64" and meta["classes"] == [0, 1]
    assert meta["feature_names_in"] == list(clf.feature_names_in_)
    # exporting leaves the estimator as it was
    np.testing.assert_array_equal(clf.predict_proba(test[0]), before)
    assert not clf.net_.module_.training


def test_numpy_only_inputs_of_the_docs_match(train, test, tmp_path):
    # docs/export.md builds the inputs from the model's metadata with numpy alone
    text = (ROOT / "docs" / "export.md").read_text()
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "def feed(" in b]
    namespace = {}
    exec(compile(code, "docs/export.md", "exec"), namespace)
    X, y = train
    clf = FusionClassifier(towers=ALL_TOWERS, **FAST).fit(X, y)
    path = clf.to_onnx(tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path))
    feed = namespace["feed"](session, test[0].to_numpy())
    expected = clf.onnx_inputs(test[0])
    assert list(feed) == list(expected)
    for name, value in expected.items():
        assert feed[name].dtype == value.dtype
        np.testing.assert_array_equal(feed[name], value)
    (out,) = session.run(None, feed)
    assert np.allclose(out, clf.predict_proba(test[0]), **TOL)


def test_serving_with_extractors_and_onnxruntime_without_torch(tmp_path):
    # docs/export.md: pickle pipeline[:-1], export the net, serve both where torch is absent
    rng = np.random.RandomState(0)
    y = rng.randint(0, 2, 40)
    images = [rng.uniform(0, 0.5, size=(SIDE, SIDE)) + 0.5 * label for label in y]
    images[3] = None  # a missing image
    words = np.array(["red", "green", "blue", "dark", "light"])
    texts = [" ".join(rng.choice(words, 1 + i % 5)) + " bright" * k for i, k in enumerate(y)]
    texts[5] = None  # a missing text
    df = pd.DataFrame({"image": images, "caption": texts, "age": rng.normal(size=40)})
    features = ColumnTransformer(
        [
            ("image", ImagePixels(size=(SIDE, SIDE), mode="L"), "image"),
            ("text", TokenSequences(max_len=MAX_LEN), "caption"),
            ("num", StandardScaler(), ["age"]),
        ]
    ).set_output(transform="pandas")
    towers = {"image": CONV, "text": ("gru", {"embedding_dim": 8})}
    model = make_pipeline(features, FusionClassifier(towers=towers, **FAST)).fit(df, y)
    model[-1].to_onnx(tmp_path / "fusion.onnx")
    joblib.dump(model[:-1], tmp_path / "features.joblib")
    df.to_pickle(tmp_path / "df.pkl")
    text = (ROOT / "docs" / "export.md").read_text()
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "def feed(" in b]
    (tmp_path / "feed.py").write_text(code)
    script = f"""
import sys
class NoTorch:  # import torch fails: the service has none
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError("no torch here")
sys.meta_path.insert(0, NoTorch())
sys.path.insert(0, {str(tmp_path)!r})
import joblib, numpy as np, pandas as pd, onnxruntime as ort
from feed import feed
features = joblib.load({str(tmp_path / "features.joblib")!r})
session = ort.InferenceSession({str(tmp_path / "fusion.onnx")!r})
inputs = feed(session, features.transform(pd.read_pickle({str(tmp_path / "df.pkl")!r})))
np.save({str(tmp_path / "proba.npy")!r}, session.run(None, inputs)[0])
assert "torch" not in sys.modules
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT)
    proba = np.load(tmp_path / "proba.npy")
    assert np.allclose(proba, model.predict_proba(df), **TOL)
    assert not model[-1].onnx_inputs(model[:-1].transform(df))["mask0"][3]


def test_export_under_no_grad(train, test, tmp_path):
    # without grad, torch's transformer layers take a fused path that ONNX lacks
    X, y = train
    clf = FusionClassifier(fusion="attention", towers=TOWERS["transformer"], **FAST).fit(X, y)
    with torch.no_grad():
        out, _ = run_onnx(clf, test[0], tmp_path)
    assert np.allclose(out, clf.predict_proba(test[0]), **TOL)


def test_compact_tokens_is_a_stable_sort_of_the_padding():
    # the export-friendly permutation gives what a stable argsort gives, bit for bit
    generator = torch.Generator().manual_seed(0)
    for n, length in [(0, 3), (1, 1), (7, 5), (40, 12)]:
        ids = torch.randint(0, 30, (n, length), generator=generator)
        ids = ids * (torch.rand(n, length, generator=generator) > 0.4)
        got, lengths = compact_tokens(ids, 25)
        capped = torch.where(ids >= 25, torch.ones_like(ids), ids)
        order = torch.argsort((capped == 0).to(torch.int32), dim=1, stable=True)
        assert torch.equal(got, capped.gather(1, order))
        assert torch.equal(lengths, (capped != 0).sum(dim=1))


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("Estimator", [FusionClassifier, FusionRegressor])
def test_not_fitted(Estimator, tmp_path):
    with pytest.raises(NotFittedError, match="not fitted"):
        Estimator().to_onnx(tmp_path / "model.onnx")
    with pytest.raises(NotFittedError, match="not fitted"):
        Estimator().onnx_inputs(np.zeros((2, 3)))


def test_missing_onnx_names_the_extra(monkeypatch, tmp_path):
    X = np.random.RandomState(0).normal(size=(30, 3))
    reg = FusionRegressor(**FAST).fit(X, X[:, 0])
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'mmsk\[onnx\]'"):
        reg.to_onnx(tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()
    assert set(reg.onnx_inputs(X)) == {"x0", "mask0"}  # needs no onnx


@pytest.mark.parametrize("opset", [13, 2.0, True, "17"])
def test_bad_opset(opset, tmp_path):
    X = np.random.RandomState(0).normal(size=(30, 3))
    reg = FusionRegressor(**FAST).fit(X, X[:, 0])
    with pytest.raises(ValueError, match="opset must be None or an int >= 14"):
        reg.to_onnx(tmp_path / "model.onnx", opset=opset)


def test_inputs_are_checked_as_in_predict(train):
    X, y = train
    clf = FusionClassifier(**FAST).fit(X, y)
    bad = X.copy()
    bad.iloc[0, 0] = np.nan  # one NaN in a present block
    with pytest.raises(ValueError, match="row 0 has NaN in column 'num__f0'"):
        clf.onnx_inputs(bad)
    with pytest.raises(ValueError, match="missing:\n- text__tok_009"):
        clf.onnx_inputs(X.iloc[:, :-1])
