"""Prediction in chunks: mmsk.predict_table, predict_frame, iter_table_chunks, `mmsk predict`."""

import contextlib
import io
import warnings

import numpy as np
import pandas as pd
import pytest

from mmsk import ItemError, ItemWarning, iter_table_chunks, predict_frame, predict_table
from mmsk.cli import main
from mmsk.compose import make_multimodal_pipeline

N = 3000
FEATURES = ["x", "z", "colour", "code"]


def _table(n=N, seed=0):
    rng = np.random.RandomState(seed)
    frame = pd.DataFrame(
        {
            "key": [f"k{i:05d}" for i in range(n)],
            "x": rng.normal(size=n).round(4),
            "z": rng.normal(size=n).round(4),
            "colour": rng.choice(["red", "blue", "green"], n),
            # codes that look like numbers in the first half: pandas would read those chunks
            # as integers, the whole file as text
            "code": np.where(np.arange(n) < n // 2, rng.choice(["1", "2"], n), "x"),
        }
    )
    frame.loc[rng.rand(n) < 0.05, "x"] = np.nan
    frame["label"] = np.where(frame["z"] + (frame["colour"] == "red") > 0.3, "yes", "no")
    return frame


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stream")
    frame = _table()
    frame.to_csv(folder / "data.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def parquet(data):
    """The same rows as a Parquet file (row groups of 700)."""
    pytest.importorskip("pyarrow")
    path = data / "data.parquet"
    pd.read_csv(data / "data.csv").to_parquet(path, row_group_size=700)
    return path


@pytest.fixture(scope="module")
def model(data):
    train = pd.read_csv(data / "data.csv").sample(400, random_state=0)
    pipeline = make_multimodal_pipeline(
        numeric=["x", "z"], categorical=["colour", "code"], max_epochs=3, random_state=0, n_jobs=1
    )
    return pipeline.fit(train, train["label"])


def _one_shot(model, X, proba=True, id_column=None):
    """What `mmsk predict` wrote before it streamed: the whole file at once."""
    if id_column is None:
        out = pd.DataFrame({"row": range(len(X))})
    else:
        out = pd.DataFrame({id_column: X[id_column].to_numpy()})
    out["prediction"] = model.predict(X)
    if proba:
        p = model.predict_proba(X)
        for j, label in enumerate(model.classes_):
            out[f"proba_{label}"] = p[:, j].round(6)
    return out


class Counting:
    """A model that records the rows of every call, and what the output file holds by then."""

    def __init__(self, model, watch=None):
        self.model, self.watch, self.calls, self.written = model, watch, [], []
        self.classes_ = model.classes_

    def _seen(self, X):
        self.calls.append(len(X))
        if self.watch is not None:  # the temporary file the output is written to
            tmp = list(self.watch.parent.glob(f".{self.watch.name}.*.tmp"))
            self.written.append(len(tmp[0].read_text().splitlines()) - 1 if tmp else None)

    def predict(self, X):
        self._seen(X)
        return self.model.predict(X)

    def predict_proba(self, X):
        return self.model.predict_proba(X)


# -- equal to one-shot ---------------------------------------------------------------
def test_csv_in_chunks_equals_one_shot_byte_for_byte(data, model, tmp_path):
    expected = _one_shot(model, pd.read_csv(data / "data.csv")).to_csv(index=False)
    n = predict_table(
        model, data / "data.csv", tmp_path / "pred.csv", chunk_size=128,
        method=["predict", "predict_proba"], columns=FEATURES, decimals=6,
    )  # fmt: skip
    assert n == N
    assert (tmp_path / "pred.csv").read_text() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.csv"]  # no temporary left


def test_parquet_in_chunks_equals_one_shot(data, parquet, model, tmp_path):
    X = pd.read_parquet(parquet)
    expected = _one_shot(model, X, id_column="key")
    kwargs = dict(method=["predict", "predict_proba"], columns=FEATURES, decimals=6)
    counting = Counting(model)
    predict_table(
        counting, parquet, tmp_path / "p.parquet", chunk_size=600, id_column="key", **kwargs
    )
    assert counting.calls == [600] * 5  # across row groups of 700
    got = pd.read_parquet(tmp_path / "p.parquet")
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert got["prediction"].tolist() == expected["prediction"].tolist()
    # Parquet in, CSV out; CSV in, Parquet out
    expected = expected.rename(columns={"key": "row"}).assign(row=range(N))
    predict_table(model, parquet, tmp_path / "p.csv", chunk_size=1000, **kwargs)
    assert (tmp_path / "p.csv").read_text() == expected.to_csv(index=False)
    predict_table(model, data / "data.csv", tmp_path / "c.parquet", chunk_size=1000, **kwargs)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "c.parquet"), expected, check_dtype=False
    )


def test_predict_frame_keeps_the_index_and_names_the_outputs(model):
    X = _table(50, seed=1).set_index("key")
    out = predict_frame(X, model, ["predict_proba", "predict"])
    assert out.index.equals(X.index)
    assert list(out.columns) == ["proba_no", "proba_yes", "prediction"]
    np.testing.assert_array_equal(out["prediction"], model.predict(X))
    np.testing.assert_allclose(out[["proba_no", "proba_yes"]], model.predict_proba(X))
    features = predict_frame(X, model[:-1], "transform")
    assert list(features.columns) == list(model[:-1].get_feature_names_out())
    np.testing.assert_allclose(features.to_numpy(), model[:-1].transform(X).to_numpy())
    with pytest.raises(ValueError, match="method must be one of"):
        predict_frame(X, model, "score")


# -- memory: bounded by the chunk ---------------------------------------------------------
def test_the_model_never_sees_more_than_chunk_size_rows(data, model, tmp_path):
    dst = tmp_path / "pred.csv"
    counting = Counting(model, watch=dst)
    predict_table(counting, data / "data.csv", dst, chunk_size=250, columns=FEATURES)
    assert counting.calls == [250] * 12
    # each chunk's rows are in the output file before the next chunk is predicted
    assert counting.written == [-1, *range(250, N, 250)]  # -1: not even the header yet
    assert len(pd.read_csv(dst)) == N


def test_chunks_have_the_types_of_the_whole_file(data):
    whole = pd.read_csv(data / "data.csv")
    chunks = list(iter_table_chunks(data / "data.csv", 400, columns=["code", "x", "key"]))
    assert [len(c) for c in chunks] == [400] * 7 + [200]
    assert [c.index[0] for c in chunks] == list(range(0, N, 400))
    for chunk in chunks:
        assert list(chunk.columns) == ["code", "x", "key"]
        assert chunk.dtypes.to_dict() == whole[["code", "x", "key"]].dtypes.to_dict()
    pd.testing.assert_frame_equal(pd.concat(chunks), whole[["code", "x", "key"]])
    # without the first pass pandas reads the first chunks' codes as integers
    first = next(iter(pd.read_csv(data / "data.csv", chunksize=400)))
    assert first["code"].dtype.kind == "i"


def test_a_failed_run_leaves_no_partial_file(data, model, tmp_path):
    class FailsLate(Counting):
        def predict(self, X):
            if X.index[0] >= 1000:
                raise ValueError("no more")
            return super().predict(X)

    dst = tmp_path / "pred.csv"
    dst.write_text("old\n")
    with pytest.raises(ValueError, match=r"data\.csv, data rows 1000-1499: no more"):
        predict_table(FailsLate(model), data / "data.csv", dst, chunk_size=500)
    assert dst.read_text() == "old\n" and sorted(tmp_path.iterdir()) == [dst]


# -- progress, empty files, bad input ------------------------------------------------------
def test_progress_bar_goes_to_stderr(data, model, tmp_path, capsys):
    predict_table(model, data / "data.csv", tmp_path / "a.csv", chunk_size=1000, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "100%" in captured.err and "3.00k/3.00k" in captured.err and "row/s" in captured.err
    predict_table(model, data / "data.csv", tmp_path / "b.csv", chunk_size=1000, progress=False)
    predict_table(model, data / "data.csv", tmp_path / "c.csv", chunk_size=1000)  # not a TTY
    assert capsys.readouterr().err == ""


def test_an_empty_file_gives_an_empty_output(model, tmp_path):
    pytest.importorskip("pyarrow")
    (tmp_path / "head.csv").write_text(",".join(["key", *FEATURES]) + "\n")
    kwargs = dict(method=["predict", "predict_proba"], columns=FEATURES)
    assert predict_table(model, tmp_path / "head.csv", tmp_path / "o.csv", **kwargs) == 0
    assert (tmp_path / "o.csv").read_text() == "row,prediction,proba_no,proba_yes\n"
    _table(0).to_parquet(tmp_path / "head.parquet")
    n = predict_table(
        model, tmp_path / "head.parquet", tmp_path / "o.parquet", id_column="key", **kwargs
    )
    empty = pd.read_parquet(tmp_path / "o.parquet")
    assert n == 0 and list(empty.columns) == ["key", "prediction", "proba_no", "proba_yes"]
    assert len(empty) == 0
    (tmp_path / "nothing.csv").write_text("")
    with pytest.raises(ValueError, match=r"cannot read .*nothing\.csv as CSV: No columns"):
        predict_table(model, tmp_path / "nothing.csv", tmp_path / "n.csv")
    assert not (tmp_path / "n.csv").exists()


def test_a_missing_column_is_named_before_any_prediction(data, model, tmp_path):
    frame = pd.read_csv(data / "data.csv").drop(columns="colour")
    frame.to_csv(tmp_path / "d.csv", index=False)
    counting = Counting(model)
    with pytest.raises(ValueError, match=r"d\.csv has no column 'colour' \(it has: key, x, z"):
        predict_table(counting, tmp_path / "d.csv", tmp_path / "o.csv", columns=FEATURES)
    with pytest.raises(ValueError, match=r"has no column 'serial'"):
        predict_table(counting, data / "data.csv", tmp_path / "o.csv", id_column="serial")
    with pytest.raises(FileNotFoundError, match="no such data file"):
        predict_table(counting, tmp_path / "none.csv", tmp_path / "o.csv")
    assert counting.calls == [] and not (tmp_path / "o.csv").exists()


@pytest.fixture(scope="module")
def image_model(png_paths):
    frame = pd.DataFrame({"img": png_paths * 2, "x": np.arange(12.0)})
    model = make_multimodal_pipeline(
        image="img", numeric="x", max_epochs=1, random_state=0, n_jobs=1
    )
    return model.fit(frame, [0, 1] * 6)


def test_an_item_error_names_the_row_of_the_file(image_model, png_paths, tmp_path):
    frame = pd.DataFrame({"img": (png_paths * 7)[:40], "x": np.arange(40.0)})
    frame.loc[27, "img"] = str(tmp_path / "gone.png")
    frame.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(ItemError, match=r"^img: row 27 \('.*gone\.png'\): file not found") as e:
        predict_table(image_model, tmp_path / "d.csv", tmp_path / "o.csv", chunk_size=10)
    assert e.value.row == 27
    extractor = image_model.named_steps["features"].named_transformers_["img"]
    try:
        extractor.set_params(on_error="nan")  # the fitted one, a missing image now a NaN row
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            predict_table(image_model, tmp_path / "d.csv", tmp_path / "o.csv", chunk_size=10)
    finally:
        extractor.set_params(on_error="raise")
    messages = [str(w.message) for w in caught if issubclass(w.category, ItemWarning)]
    assert len(messages) == 1 and "1 of 10 images" in messages[0]
    assert "(first: row 27 (" in messages[0]
    assert len(pd.read_csv(tmp_path / "o.csv")) == 40


# -- the command line -------------------------------------------------------------------------
def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def model_file(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "model.joblib"
    train = tmp_path_factory.mktemp("train") / "train.csv"
    pd.read_csv(data / "data.csv").sample(400, random_state=0).to_csv(train, index=False)
    code, _, err = _run(
        ["fit", train, "--target", "label", "--numeric", "x", "z", "--categorical", "colour",
         "code", "--max-epochs", "3", "--random-state", "0", "--n-jobs", "1", "--out", path]
    )  # fmt: skip
    assert code == 0, err
    return path


def test_cli_predict_in_chunks_equals_one_chunk(model_file, data, tmp_path):
    code, small, err = _run(["predict", model_file, data / "data.csv", "--proba",
                             "--id", "key", "--chunk-size", "300"])  # fmt: skip
    assert code == 0 and err == ""
    code, whole, _ = _run(["predict", model_file, data / "data.csv", "--proba", "--id", "key",
                           "--chunk-size", N])  # fmt: skip
    assert small == whole and small.startswith("key,prediction,proba_no,proba_yes\nk00000,")
    assert len(small.splitlines()) == N + 1


def test_cli_predict_reads_and_writes_parquet(model_file, data, parquet, tmp_path):
    code, csv, _ = _run(["predict", model_file, data / "data.csv", "--proba", "--id", "key"])
    code, out, _ = _run(["predict", model_file, parquet, "--proba", "--id", "key",
                         "--out", tmp_path / "p.parquet", "--chunk-size", "500"])  # fmt: skip
    assert code == 0 and out == f"wrote {N} predictions to {tmp_path / 'p.parquet'}\n"
    got = pd.read_parquet(tmp_path / "p.parquet")
    pd.testing.assert_frame_equal(got, pd.read_csv(io.StringIO(csv)), check_dtype=False)


def test_cli_quiet_and_chunk_size_checks(model_file, data, tmp_path, capsys):
    code, out, err = _run(["predict", model_file, data / "data.csv", "--quiet",
                           "--out", tmp_path / "p.csv"])  # fmt: skip
    assert code == 0 and out == "" and err == ""
    assert len(pd.read_csv(tmp_path / "p.csv")) == N
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(model_file), str(data / "data.csv"), "--chunk-size", "0"])
    assert exit_info.value.code == 2
    assert "--chunk-size: must be at least 1, got 0" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_text("x,z,colour\n1,2,red\n")
    code, out, err = _run(["predict", model_file, tmp_path / "bad.csv"])
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("mmsk predict: error: ") and "has no column 'code'" in err
