"""Safe model files: round trips, the model card, trust rules, damaged files."""

import contextlib
import datetime
import importlib
import inspect
import io
import json
import os
import pickle
import re
import subprocess
import sys
import zipfile

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
import torch
from sklearn.ensemble import StackingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

import mmsk
import mmsk.io
from mmsk import (
    AudioFeatures,
    FusionClassifier,
    FusionRegressor,
    GroupStandardScaler,
    ImageEncoder,
    ImageFeatures,
    ImagePixels,
    LogMelSpectrogram,
    TfidfSVD,
    TokenSequences,
)
from mmsk.cli import main
from mmsk.compose import MultimodalColumnTransformer, make_multimodal_pipeline
from mmsk.datasets import load_sample
from mmsk.io import ModelFileError, ModelVersionWarning, UntrustedModelError

FAST = dict(hidden_units=8, max_epochs=3, random_state=0)


def _run(argv):
    """Run ``mmsk`` in-process; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _rewrite(source, target, **members):
    """Copy a zip file, replacing members (bytes) or dropping them (None)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            data = members.pop(name, old.read(name))
            if data is not None:
                new.writestr(name, data)
        for name, data in members.items():
            new.writestr(name, data)
    return target


def _card_bytes(path, **changes):
    card = mmsk.io.read_card(path)
    card.update(changes)
    return json.dumps(card).encode()


# -- data and fitted models ---------------------------------------------------------------
@pytest.fixture(scope="module")
def blocks():
    rng = np.random.RandomState(0)
    X = {"image": rng.normal(size=(80, 6)), "audio": rng.normal(size=(80, 3))}
    y = np.where(X["image"][:, 0] + X["audio"][:, 0] > 0, "yes", "no")
    return X, y


@pytest.fixture(scope="module")
def classifier(blocks):
    X, y = blocks
    clf = FusionClassifier(
        fusion="gated",
        class_weight="balanced",
        early_stopping=True,
        validation_fraction=0.25,
        scoring="accuracy",
        **FAST,
    )
    return clf.fit(X, y)


@pytest.fixture(scope="module")
def sample():
    frame = load_sample().frame.groupby("label").head(3).reset_index(drop=True)  # 30 rows
    frame["caption"] = "said by " + frame["speaker"]
    return frame


@pytest.fixture(scope="module")
def pipeline(sample):
    model = make_multimodal_pipeline(
        image="image",
        audio="audio",
        text="caption",
        categorical="speaker",
        numeric="take",
        towers={"image": "conv"},  # batch-norm buffers and a conv tower
        **FAST,
    )
    return model.fit(sample, sample["label"])


@pytest.fixture(scope="module")
def pipeline_file(pipeline, sample, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "digits.skops"
    X = sample.drop(columns="label")
    return mmsk.save(pipeline, path, X=X, y=sample["label"], target="label", run="test")


# -- round trips --------------------------------------------------------------------------
def test_fusion_classifier_round_trip_is_bit_identical(classifier, blocks, tmp_path):
    X, _ = blocks
    path = mmsk.save(classifier, tmp_path / "clf.skops")
    assert path == tmp_path / "clf.skops" and zipfile.is_zipfile(path)
    loaded = mmsk.load(path)
    assert type(loaded) is FusionClassifier and loaded is not classifier
    assert np.array_equal(loaded.predict_proba(X), classifier.predict_proba(X))
    assert np.array_equal(loaded.predict(X), classifier.predict(X))
    assert loaded.get_params() == classifier.get_params()
    assert loaded.classes_.tolist() == ["no", "yes"] and loaded.device_ == "cpu"
    assert list(loaded.net_.history[:, "valid_score"]) == list(
        classifier.net_.history[:, "valid_score"]
    )
    # the class weights reach the rebuilt criterion
    assert torch.equal(loaded.net_.criterion_.weight, classifier.net_.criterion_.weight)
    # it refits like the original
    refit = mmsk.load(path).fit(X, blocks[1])
    assert np.array_equal(refit.predict_proba(X), classifier.predict_proba(X))


def test_fusion_regressor_ensemble_round_trip(tmp_path):
    rng = np.random.RandomState(1)
    X = rng.normal(size=(50, 4))
    y = np.c_[X[:, 0] * 3, X[:, 1] - X[:, 2]]
    reg = FusionRegressor(n_estimators=3, fusion="late", modalities={"a": [0, 1], "b": [2, 3]})
    reg.set_params(**FAST).fit(X, y)
    loaded = mmsk.load(mmsk.save(reg, tmp_path / "reg.skops"))
    assert len(loaded.nets_) == 3 and loaded.net_ is loaded.nets_[0]
    assert np.array_equal(loaded.predict(X), reg.predict(X))
    assert loaded.predict(X).shape == (50, 2)
    card = loaded.model_card_
    assert card["task"] == "regression" and card["classes"] is None
    assert card["fusion"][0]["n_estimators"] == 3 and len(card["fusion"][0]["nets"]) == 3


def test_pipeline_on_the_shipped_sample_round_trip(pipeline, pipeline_file, sample):
    loaded = mmsk.load(pipeline_file)
    assert np.array_equal(loaded.predict_proba(sample), pipeline.predict_proba(sample))
    assert [name for name, _ in loaded.steps] == ["features", "fusion"]
    assert type(loaded.named_steps["features"]) is MultimodalColumnTransformer
    features = sample.drop(columns="label")
    assert np.array_equal(
        loaded.named_steps["features"].transform(features),
        pipeline.named_steps["features"].transform(features),
    )


def test_grid_search_and_stacking_round_trips(blocks, tmp_path):
    X = np.c_[blocks[0]["image"], blocks[0]["audio"]]
    y = blocks[1]
    search = GridSearchCV(
        make_pipeline(StandardScaler(), FusionClassifier(max_epochs=2, random_state=0)),
        {"fusionclassifier__hidden_units": [4, 8]},
        cv=2,
    ).fit(X, y)
    stack = StackingClassifier(
        [("fusion", FusionClassifier(**FAST)), ("linear", LogisticRegression())], cv=2
    ).fit(X, y)
    for model in (search, stack):
        loaded = mmsk.load(mmsk.save(model, tmp_path / "model.skops"))
        assert type(loaded) is type(model)
        assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
        assert loaded.score(X, y) == model.score(X, y)
    card = mmsk.io.read_card(tmp_path / "model.skops")
    assert [f["path"] for f in card["fusion"]] == ["estimators_[0]"]
    loaded = mmsk.load(mmsk.save(search, tmp_path / "search.skops"))
    assert loaded.best_params_ == search.best_params_
    paths = [f["path"] for f in loaded.model_card_["fusion"]]
    assert paths == ["best_estimator_.steps[1][1]"]


def _extractors():
    rng = np.random.RandomState(0)
    images = rng.randint(0, 255, size=(4, 16, 16, 3)).astype("uint8")
    waves = rng.normal(size=(4, 4000)).astype("float32")
    texts = ["a red car", "blue sky", "red roses", None]
    return [
        (ImagePixels(size=(8, 8)), images), (ImageFeatures(), images),
        (AudioFeatures(sr=8000, n_mfcc=4), waves), (LogMelSpectrogram(sr=8000), waves),
        (TokenSequences(), texts), (TfidfSVD(n_components=2), texts),
        (GroupStandardScaler(), rng.normal(size=(4, 2))),
    ]  # fmt: skip


@pytest.mark.parametrize("extractor, X", _extractors(), ids=lambda v: type(v).__name__)
def test_extractors_round_trip(extractor, X, tmp_path):
    extractor.fit(X)
    loaded = mmsk.load(mmsk.save(extractor, tmp_path / "x.skops"))
    assert np.array_equal(loaded.transform(X), extractor.transform(X), equal_nan=True)


def test_embedders_reload_their_model_lazily(tmp_path):
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    )  # fmt: skip
    torch.save(net, tmp_path / "net.pt")
    images = np.random.RandomState(0).randint(0, 255, size=(4, 12, 12, 3)).astype("uint8")
    encoder = ImageEncoder(model=str(tmp_path / "net.pt"), size=(12, 12)).fit(images)
    loaded = mmsk.load(mmsk.save(encoder, tmp_path / "enc.skops"))
    assert "_loaded_model" not in vars(loaded)  # nothing loaded yet
    np.testing.assert_array_equal(loaded.transform(images), encoder.transform(images))
    # a torch module object has no safe form: saving says what to do
    with pytest.raises(ValueError, match="model of ImageEncoder is a torch object.*model name"):
        mmsk.save(ImageEncoder(model=net, size=(12, 12)).fit(images), tmp_path / "x.skops")


def test_map_location(classifier, blocks, tmp_path):
    path = mmsk.save(classifier, tmp_path / "clf.skops")
    loaded = mmsk.load(path, map_location="auto")
    assert loaded.device_ in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device must be"):
        mmsk.load(path, map_location="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            mmsk.load(path, map_location="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no cuda device")
def test_a_model_fitted_on_a_gpu_loads_on_the_cpu(blocks, tmp_path):
    X, y = blocks
    gpu = FusionClassifier(device="cuda", **FAST).fit(X, y)
    with zipfile.ZipFile(mmsk.save(gpu, tmp_path / "gpu.skops")) as archive:
        assert b"cuda" not in archive.read("schema.json").replace(b'"cuda"', b"")
    cpu = mmsk.load(tmp_path / "gpu.skops")
    assert cpu.device_ == "cpu" and next(cpu.net_.module_.parameters()).device.type == "cpu"
    np.testing.assert_allclose(cpu.predict_proba(X), gpu.predict_proba(X), atol=1e-5)


# -- the model card -------------------------------------------------------------------------
def test_card_contents(pipeline_file, pipeline, sample):
    card = mmsk.io.read_card(pipeline_file)
    assert card["format"] == "mmsk-model" and card["format_version"] == 1
    assert card["estimator"] == "sklearn.pipeline.Pipeline"
    assert card["task"] == "classification" and card["target"] == "label"
    assert card["classes"] == list(range(10))
    created = datetime.datetime.fromisoformat(card["created"])
    assert abs(datetime.datetime.now(datetime.timezone.utc) - created).total_seconds() < 600
    inputs = card["inputs"]
    assert inputs["columns"] == list(sample.columns)
    assert inputs["roles_source"] == "inferred"
    assert inputs["roles"] == {
        "image": ["image"], "audio": ["audio"], "text": ["caption"],
        "numeric": ["take"], "categorical": ["speaker"],
    }  # fmt: skip
    data = card["training_data"]
    assert data["sha256"] == mmsk.io.data_fingerprint(sample.drop(columns="label"))
    assert data["target_sha256"] == mmsk.io.data_fingerprint(sample["label"])
    assert (data["n_rows"], data["n_columns"]) == (30, sample.shape[1] - 1)
    (fusion,) = card["fusion"]
    assert fusion["path"] == "steps[1][1]" and fusion["estimator"] == "FusionClassifier"
    assert fusion["modalities"] == pipeline.named_steps["fusion"].modality_dims_
    assert fusion["nets"][0]["epochs"] == 3 and "train_loss" in fusion["nets"][0]
    versions = card["versions"]
    assert versions["mmsk"] == mmsk.__version__ and versions["torch"].startswith(torch.__version__)
    for name in ("scikit-learn", "numpy", "skops"):
        assert versions[name]
    assert card["extra"] == {"run": "test"}
    assert mmsk.load(pipeline_file).model_card_ == card


def test_card_holds_the_validation_scores(classifier, tmp_path):
    card = mmsk.io.read_card(mmsk.save(classifier, tmp_path / "clf.skops", roles={"x": ["a"]}))
    (fusion,) = card["fusion"]
    assert fusion["early_stopping"] is True and fusion["scoring"] == "accuracy"
    history = classifier.net_.history
    best = [e for e in history if e.get("valid_score_best")][-1]
    net = fusion["nets"][0]
    assert net["best_epoch"] == best["epoch"] and net["valid_score"] == best["valid_score"]
    assert net["valid_loss"] == pytest.approx(best["valid_loss"])
    assert card["inputs"]["roles"] == {"x": ["a"]} and card["inputs"]["roles_source"] == "given"
    assert card["training_data"] is None
    with pytest.raises(TypeError, match="JSON data"):
        mmsk.save(classifier, tmp_path / "bad.skops", when=datetime.date.today())
    assert not (tmp_path / "bad.skops").exists()


def test_read_card_loads_nothing(pipeline_file, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("read_card must not load the model")

    for name in ("load", "loads", "get_untrusted_types"):
        monkeypatch.setattr(sio, name, refuse)
    assert mmsk.io.read_card(pipeline_file)["target"] == "label"
    code = (
        "import sys, mmsk.io; card = mmsk.io.read_card(sys.argv[1]); "
        "assert card['task'] == 'classification'; "
        "assert 'torch' not in sys.modules and 'skops' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code, str(pipeline_file)], check=True)


# -- trust ----------------------------------------------------------------------------------
class Payload:
    """Unpickling it creates a file: the code a pickle can run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("compress", [0, 3])
def test_a_pickle_is_refused_and_its_payload_never_runs(tmp_path, sample, compress):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.skops"  # the suffix does not decide the format
    joblib.dump({"pipeline": Payload(marker)}, path, compress=compress)
    with pytest.raises(UntrustedModelError, match=r"is a pickle .*trusted=True.*--trust-pickle"):
        mmsk.load(path)
    with pytest.raises(ModelFileError, match="is a pickle file"):
        mmsk.io.read_card(path)
    for command in ("predict", "evaluate"):
        code, out, err = _run([command, path, tmp_path / "data.csv"])
        assert code == 2 and out == ""
        assert err.startswith(f"mmsk {command}: error: ") and err.count("\n") == 1
        assert "--trust-pickle" in err
    done = subprocess.run(
        [sys.executable, "-m", "mmsk.cli", "predict", str(path), "x.csv"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert not marker.exists()


def test_a_trusted_pickle_loads_with_a_warning(classifier, blocks, tmp_path):
    path = tmp_path / "clf.joblib"
    joblib.dump(classifier, path)
    with pytest.warns(UserWarning, match="was unpickled"):
        loaded = mmsk.load(path, trusted=True)
    assert np.array_equal(loaded.predict_proba(blocks[0]), classifier.predict_proba(blocks[0]))
    assert loaded.model_card_["task"] == "classification"
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2], protocol=4))
    with pytest.warns(UserWarning, match="was unpickled"):
        assert mmsk.load(tmp_path / "list.pkl", trusted=True) == [1, 2]


def test_an_old_mmsk_fit_file_works_with_trust_pickle(tmp_path):
    import sklearn

    frame = pd.DataFrame({"x": np.linspace(-1, 1, 30), "label": ["a", "b", "c"] * 10})
    frame.to_csv(tmp_path / "data.csv", index=False)
    model = make_multimodal_pipeline(numeric="x", **FAST).fit(frame, frame["label"])
    old = {
        "format": "mmsk-model", "format_version": 1, "mmsk_version": mmsk.__version__,
        "sklearn_version": sklearn.__version__, "pipeline": model, "task": "classification",
        "target": "label", "classes": ["a", "b", "c"],
        "columns": {"image": [], "audio": [], "text": [], "numeric": ["x"], "categorical": []},
    }  # fmt: skip
    joblib.dump(old, tmp_path / "old.joblib")
    code, _, err = _run(["evaluate", tmp_path / "old.joblib", tmp_path / "data.csv"])
    assert code == 2 and "--trust-pickle" in err
    code, out, err = _run(
        ["evaluate", tmp_path / "old.joblib", tmp_path / "data.csv", "--trust-pickle"]
    )
    assert code == 0 and "accuracy" in out
    assert err.startswith("mmsk evaluate: warning: ") and "was unpickled" in err
    assert err.count("\n") == 1


def test_saving_refuses_what_loading_would_not_trust(tmp_path):
    from skorch.callbacks import EpochTimer

    cases = {
        "posix.system|nt.system": FunctionTransformer(os.system),
        r"skorch\.callbacks\.logging\.EpochTimer": FusionClassifier(callbacks=[EpochTimer()]),
        r"a torch\.nn\.modules\.loss\.MSELoss object": FusionRegressor(
            criterion=torch.nn.MSELoss()
        ),
    }
    for match, model in cases.items():
        with pytest.raises(ValueError, match=f"cannot save .*({match})"):
            mmsk.save(model, tmp_path / "m.skops")
        assert not (tmp_path / "m.skops").exists()
    import sklearn

    with sklearn.config_context(enable_metadata_routing=True):
        routed = LogisticRegression().set_fit_request(sample_weight=True)
        with pytest.raises(ValueError, match=r"set_\*_request\(\) routing requests"):
            mmsk.save(routed, tmp_path / "m.skops")
    # torch classes as parameter values are fine
    assert mmsk.load(mmsk.save(FusionRegressor(optimizer=torch.optim.SGD), tmp_path / "m.skops"))


def test_a_foreign_type_in_a_skops_file_is_refused(pipeline_file, tmp_path, sample):
    marker = tmp_path / "pwned"
    evil = make_pipeline(FunctionTransformer(os.system))
    path = _rewrite(io.BytesIO(sio.dumps(evil)), tmp_path / "evil.skops")
    with zipfile.ZipFile(path, "a") as archive:  # with a card copied from a real model
        archive.writestr(mmsk.io.CARD_NAME, _card_bytes(pipeline_file))
    with pytest.raises(UntrustedModelError, match=f"{os.system.__module__}.system"):
        mmsk.load(path)
    code, _, err = _run(["predict", path, tmp_path / "data.csv"])
    assert code == 2 and err.count("\n") == 1 and "allow-list" in err
    assert not marker.exists()


def test_every_allowed_mmsk_type_is_an_mmsk_class():
    from sklearn.base import BaseEstimator

    for name in mmsk.io.MMSK_TYPES:
        module, _, attr = name.rpartition(".")
        value = getattr(importlib.import_module(module), attr)
        assert inspect.isclass(value) and value.__module__ == module, name
    public = [getattr(mmsk, name) for name in mmsk.__all__ if name[0].isupper()]
    for cls in public:
        if isinstance(cls, type) and issubclass(cls, BaseEstimator):
            assert f"{cls.__module__}.{cls.__name__}" in mmsk.io.MMSK_TYPES, cls


# -- damaged and foreign files, versions -------------------------------------------------------
def test_damaged_and_foreign_files_get_one_line_errors(pipeline_file, tmp_path, sample):
    good = pipeline_file.read_bytes()
    with zipfile.ZipFile(pipeline_file) as archive:
        weights = [n for n in archive.namelist() if n.endswith(".bin")]
    cases = {
        "truncated": (good[: len(good) // 2], "damaged or truncated zip file"),
        "empty": (b"", "is empty"),
        "csv": (b"image,label\na.png,1\n", "is not an mmsk model file"),
        "random": (bytes(range(256)) * 4, "is not an mmsk model file"),
    }
    for name, (data, _) in cases.items():
        (tmp_path / name).write_bytes(data)
    with zipfile.ZipFile(tmp_path / "other zip", "w") as archive:
        archive.writestr("readme.txt", "hello")
    cases["other zip"] = (None, "zip file but not an mmsk model file")
    plain = tmp_path / "plain skops"
    plain.write_bytes(sio.dumps(LogisticRegression()))
    cases["plain skops"] = (None, r"not an mmsk model file \(no model card\)")
    edits = {
        "card not json": ({mmsk.io.CARD_NAME: b"{nope"}, "damaged model card"),
        "card of others": ({mmsk.io.CARD_NAME: b'{"format": "x"}'}, "mmsk did not write"),
        "newer format": (
            {mmsk.io.CARD_NAME: _card_bytes(pipeline_file, format_version=99)},
            "model format 99, newer than this mmsk reads",
        ),
        "no schema": ({"schema.json": None}, "its model is not"),
        "bad schema": ({"schema.json": b'{"__class__": 1}'}, "is damaged"),
        "bad weights": ({weights[0]: b"not safetensors"}, "is damaged.*weights"),
    }
    for name, (members, message) in edits.items():
        _rewrite(pipeline_file, tmp_path / name, **members)
        cases[name] = (None, message)
    for name, (_, message) in cases.items():
        path = tmp_path / name
        with pytest.raises(ModelFileError, match=message):
            mmsk.load(path)
        for command in ("predict", "evaluate"):
            code, out, err = _run([command, path, tmp_path / "data.csv"])
            assert code == 2 and out == "", (name, err)
            assert err.startswith(f"mmsk {command}: error: ") and err.count("\n") == 1, err
            assert re.search(message, err), (name, err)
    code, _, err = _run(["predict", tmp_path / "missing.skops", tmp_path / "data.csv"])
    assert code == 2 and "no such model file" in err


def test_weights_that_do_not_fit_the_net_are_refused(classifier, blocks, tmp_path):
    small = FusionClassifier(hidden_units=4, max_epochs=1, n_estimators=1).fit(*blocks)
    files = [mmsk.save(m, tmp_path / f"{i}.skops") for i, m in enumerate((classifier, small))]
    weights = []
    for path in files:
        with zipfile.ZipFile(path) as archive:
            name = sorted(n for n in archive.namelist() if n.endswith(".bin"))[0]
            weights.append((name, archive.read(name)))  # the first net's weights
    _rewrite(files[0], tmp_path / "mixed.skops", **{weights[0][0]: weights[1][1]})
    with pytest.raises(ModelFileError, match="weights do not fit the net the file describes"):
        mmsk.load(tmp_path / "mixed.skops")


def test_another_version_is_named_in_a_warning(pipeline_file, tmp_path, sample):
    import sklearn

    old = dict(mmsk.io.read_card(pipeline_file)["versions"], mmsk="0.0.1")
    old["scikit-learn"] = "1.0.2"
    card = {mmsk.io.CARD_NAME: _card_bytes(pipeline_file, versions=old)}
    path = _rewrite(pipeline_file, tmp_path / "old.skops", **card)

    expected = (
        rf"written with mmsk 0\.0\.1, scikit-learn 1\.0\.2, .*this is mmsk "
        rf"{re.escape(mmsk.__version__)}, scikit-learn {re.escape(sklearn.__version__)}"
    )
    with pytest.warns(ModelVersionWarning, match=expected):
        loaded = mmsk.load(path)
    assert loaded.model_card_["versions"]["mmsk"] == "0.0.1"
    sample.to_csv(tmp_path / "data.csv", index=False)
    code, out, err = _run(["predict", path, tmp_path / "data.csv"])
    assert code == 0 and len(pd.read_csv(io.StringIO(out))) == 30
    assert err.startswith("mmsk predict: warning: ") and "mmsk 0.0.1" in err
