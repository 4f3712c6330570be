"""mmsk.serve: a real server on a free local port, spoken to over HTTP."""

import base64
import contextlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from mmsk.cli import build_parser, main  # noqa: E402
from mmsk.compose import make_multimodal_pipeline  # noqa: E402
from mmsk.datasets import load_sample  # noqa: E402
from mmsk.serve import _HTTP_PROTOCOL, create_app  # noqa: E402

COLUMNS = ["image", "audio", "take", "speaker"]
TIMEOUT = 30.0  # seconds, for every HTTP call
LIMITS = dict(max_request_bytes=600_000, max_image_pixels=1000, max_audio_seconds=2.0)


@contextlib.contextmanager
def running(app):
    """Run ``app`` with uvicorn in a thread on a free port of 127.0.0.1; yield a client."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # mmsk serve's protocol: without TCP_NODELAY every answer on this socket waits 40 ms
    config = uvicorn.Config(app, log_level="warning", lifespan="off", http=_HTTP_PROTOCOL)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        assert not thread.is_alive(), "server did not stop"


def b64(path):
    return {"base64": base64.b64encode(Path(path).read_bytes()).decode()}


def png_bytes(width, height):
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (width, height), 128).save(out, format="PNG")
    return out.getvalue()


def wav_bytes(seconds, sr=8000):
    import soundfile as sf

    out = io.BytesIO()
    sf.write(out, np.zeros(int(seconds * sr), dtype="float32"), sr, format="WAV")
    return out.getvalue()


@pytest.fixture(scope="module")
def sample():
    frame = load_sample().frame.groupby("label").head(3).reset_index(drop=True)  # 30 rows
    frame["speaker"] = frame["speaker"].astype(object)
    return frame


@pytest.fixture(scope="module")
def model(sample):
    model = make_multimodal_pipeline(
        image="image",
        audio="audio",
        numeric="take",
        categorical="speaker",
        max_epochs=2,
        hidden_units=16,
        random_state=0,
    )
    return model.fit(sample, sample["label"])


@pytest.fixture(scope="module")
def records(sample):
    return [
        {"image": b64(r.image), "audio": b64(r.audio), "take": int(r.take), "speaker": r.speaker}
        for r in sample.itertuples()
    ]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, sample):
    """An allowed folder with two files and a symlink to a file outside it."""
    allowed = tmp_path_factory.mktemp("allowed")
    outside = tmp_path_factory.mktemp("outside")
    for path in sample["image"][:2].tolist() + sample["audio"][:2].tolist():
        shutil.copy(path, allowed / Path(path).name)
    secret = outside / "secret.png"
    shutil.copy(sample["image"][0], secret)
    (allowed / "escape.png").symlink_to(secret)
    return allowed, outside


@pytest.fixture(scope="module")
def client(model, dirs):
    with running(create_app(model, allow_dirs=[dirs[0]], **LIMITS)) as client:
        yield client


def post(client, route, records):
    return client.post(route, json={"records": records})


# -- the endpoints ---------------------------------------------------------------------
def test_health_metadata_and_request_id(client):
    answer = client.get("/health")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}
    assert len(answer.headers["x-request-id"]) == 32
    card = client.get("/metadata").json()
    assert card["columns"] == [
        {"name": "image", "role": "image"},
        {"name": "audio", "role": "audio"},
        {"name": "take", "role": "numeric"},
        {"name": "speaker", "role": "categorical"},
    ]
    assert card["classes"] == list(range(10)) and card["task"] == "classification"


def test_openapi_schema_lists_the_columns(client):
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/predict_proba", "/health", "/metadata"} <= set(schema["paths"])
    record = schema["components"]["schemas"]["Record"]
    assert list(record["properties"]) == COLUMNS
    assert record["required"] == COLUMNS and record["additionalProperties"] is False
    props = record["properties"]
    assert props["image"]["description"].startswith("image column")
    assert "'george'" in props["speaker"]["description"]
    assert {"type": "number"} in props["take"]["anyOf"]
    body = schema["paths"]["/predict"]["post"]["responses"]
    assert body["422"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
    for route, name in [("/predict", "PredictResponse"), ("/predict_proba", "ProbaResponse")]:
        answer = schema["paths"][route]["post"]["responses"]["200"]["content"]
        assert answer["application/json"]["schema"]["$ref"].endswith(name)


def test_answers_skip_fastapis_second_trip_through_the_thread_pool(model, records, monkeypatch):
    # the endpoints answer JSON they made themselves; FastAPI's response check is not run
    def refuse(*args, **kwargs):
        raise AssertionError("the answer went through serialize_response")

    monkeypatch.setattr("fastapi.routing.serialize_response", refuse)
    with running(create_app(model, **LIMITS)) as client:
        for route in ("/predict", "/predict_proba"):
            answer = post(client, route, records[:2])
            assert answer.status_code == 200, answer.text
        assert len(answer.json()["probabilities"]) == 2


def test_predict_and_predict_proba_match_the_model(client, model, sample, records):
    answer = post(client, "/predict", records)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == model.predict(sample[COLUMNS]).tolist()
    answer = post(client, "/predict_proba", records).json()
    assert answer["classes"] == list(range(10))
    expected = model.predict_proba(sample[COLUMNS])
    np.testing.assert_allclose(answer["probabilities"], expected, rtol=1e-6, atol=1e-7)


def test_paths_inside_an_allowed_directory(client, model, sample, dirs):
    allowed, _ = dirs
    first = sample.iloc[:2]
    records = [  # an absolute path, and one relative to the first allowed directory
        {
            "image": str(allowed / Path(r.image).name),
            "audio": Path(r.audio).name,
            "take": int(r.take),
            "speaker": None,  # a missing value
        }
        for r in first.itertuples()
    ]
    answer = post(client, "/predict_proba", records)
    assert answer.status_code == 200, answer.text
    expected = model.predict_proba(first[COLUMNS].assign(speaker=None))
    np.testing.assert_allclose(answer.json()["probabilities"], expected, rtol=1e-6, atol=1e-7)


def test_sixteen_concurrent_clients_get_consistent_answers(client, model, sample, records):
    expected = model.predict(sample[COLUMNS]).tolist()

    def one(i):
        start = (3 * i) % 27
        answer = post(client, "/predict", records[start : start + 3])
        return start, answer.status_code, answer.json()["predictions"]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(16), timeout=4 * TIMEOUT))
    for start, status, predictions in results:
        assert status == 200 and predictions == expected[start : start + 3]


# -- refusals: 4xx JSON naming record, column and reason ------------------------------
def _bad(records, i, column, value):
    bad = [dict(r) for r in records[:3]]
    bad[i][column] = value
    return bad


CASES = {
    "unknown column": (lambda r, d: [r[0], {**r[1], "colour": "red"}], 422, 1, "colour", "unknown"),
    "missing column": (
        lambda r, d: [{k: v for k, v in r[0].items() if k != "take"}],
        422,
        0,
        "take",
        "missing column",
    ),
    "wrong type": (lambda r, d: _bad(r, 2, "take", "abc"), 422, 2, "take", "number"),
    "bad base64": (lambda r, d: _bad(r, 1, "image", {"base64": "@@@"}), 422, 1, "image", "base64"),
    "not an image": (
        lambda r, d: _bad(r, 0, "image", {"base64": base64.b64encode(b"GIF89a nope").decode()}),
        422,
        0,
        "image",
        "not an image|does not decode",
    ),
    "truncated audio": (  # the header reads, the extractor finds the data cut short
        lambda r, d: _bad(r, 1, "audio", {"base64": r[1]["audio"]["base64"][:2000]}),
        422,
        1,
        "audio",
        "truncated",
    ),
    "too many pixels": (
        lambda r, d: _bad(r, 2, "image", {"base64": base64.b64encode(png_bytes(40, 40)).decode()}),
        413,
        2,
        "image",
        "1600 pixels.*max-image-pixels",
    ),
    "audio too long": (
        lambda r, d: _bad(r, 0, "audio", {"base64": base64.b64encode(wav_bytes(3.0)).decode()}),
        413,
        0,
        "audio",
        "3.0 s.*max-audio-seconds",
    ),
    "path outside": (
        lambda r, d: _bad(r, 1, "image", str(d[1] / "secret.png")),
        403,
        1,
        "image",
        "outside",
    ),
    "dot-dot escape": (
        lambda r, d: _bad(r, 0, "image", f"{d[0]}/../{d[1].name}/secret.png"),
        403,
        0,
        "image",
        "outside",
    ),
    "symlink escape": (
        lambda r, d: _bad(r, 2, "image", str(d[0] / "escape.png")),
        403,
        2,
        "image",
        "outside",
    ),
    "missing file": (lambda r, d: _bad(r, 0, "audio", "nope.wav"), 422, 0, "audio", "not found"),
}


def _check_error(answer, status, record, column, reason):
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error", "detail", "request_id"}
    assert body["request_id"] == answer.headers["x-request-id"]
    first = body["detail"][0]
    assert (first["record"], first["column"]) == (record, column)
    assert re.search(reason, first["reason"]), first["reason"]
    assert "Traceback" not in answer.text


@pytest.mark.parametrize("case", list(CASES))
def test_bad_records_get_a_4xx_naming_record_and_column(client, records, dirs, case):
    make, status, record, column, reason = CASES[case]
    _check_error(post(client, "/predict", make(records, dirs)), status, record, column, reason)


def test_malformed_json_and_oversized_body(client, records):
    answer = client.post(
        "/predict",
        content=b'{"records": [{"take": 1,',
        headers={"content-type": "application/json"},
    )
    _check_error(answer, 400, None, None, "malformed JSON")
    big = [{**records[0], "speaker": "x" * 700_000}]
    _check_error(post(client, "/predict", big), 413, None, None, "larger than 600000 bytes")
    answer = client.post("/predict", json={"rows": []})
    _check_error(answer, 422, None, None, "unknown field 'rows'|no \"records\"")


def test_paths_refused_when_no_directory_is_allowed(model, records, dirs):
    with running(create_app(model)) as closed:
        answer = post(closed, "/predict", _bad(records, 0, "image", str(dirs[0] / "escape.png")))
        _check_error(answer, 403, 0, "image", "paths are not accepted")


def test_unexpected_errors_are_a_generic_500_logged_with_the_request_id(caplog):
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    class Broken(LogisticRegression):
        def predict(self, X):
            raise RuntimeError("secret internals")

    model = Broken().fit(pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]}), [0, 0, 1, 1])
    with running(create_app(model)) as broken:
        answer = post(broken, "/predict", [{"x": 1.0}])
    assert answer.status_code == 500
    body = answer.json()
    assert "secret" not in answer.text and "Traceback" not in answer.text
    logged = [r for r in caplog.records if body["request_id"] in r.getMessage()]
    assert logged and "secret internals" in str(logged[0].exc_info[1])


def test_create_app_checks_its_options(model, tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        create_app(model, allow_dirs=[tmp_path / "nowhere"])
    with pytest.raises(ValueError, match="max_image_pixels"):
        create_app(model, max_image_pixels=0)


def test_json_of_the_error_body_is_stable():
    from mmsk._serve_schema import Problem, summary

    problems = [Problem(3, "img", "not valid base64"), Problem(4, "img", "x")]
    assert summary(problems) == "record 3, column 'img': not valid base64 (and 1 more problem)"
    assert json.loads(json.dumps(problems[0].as_dict())) == {
        "record": 3,
        "column": "img",
        "reason": "not valid base64",
    }


# -- the command ------------------------------------------------------------------------
def test_serve_parser_defaults_and_options(monkeypatch):
    args = build_parser().parse_args(["serve", "m.mmsk"])
    assert (args.host, args.port, args.workers, args.allow_dir) == ("127.0.0.1", 8000, None, None)
    seen = {}
    monkeypatch.setattr("mmsk.serve.serve", lambda path, **kw: seen.update(kw, path=path))
    argv = ["serve", "m.mmsk", "--allow-dir", "a", "--allow-dir", "b", "--port", "9000"]
    assert main([*argv, "--max-image-pixels", "5", "--max-audio-seconds", "1.5"]) == 0
    assert seen["path"] == "m.mmsk" and seen["allow_dirs"] == ["a", "b"] and seen["port"] == 9000
    assert (seen["max_image_pixels"], seen["max_audio_seconds"]) == (5, 1.5)


def test_serve_without_fastapi_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fastapi", None)
    assert main(["serve", "m.mmsk"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "mmsk[serve]" in err


_STAND_IN_IO = """
import sys, types, joblib
io = types.ModuleType("mmsk.io")
io.load = lambda path, *, trusted=False, map_location="cpu": joblib.load(path)
io.read_card = lambda path: {"columns": [{"name": "x", "role": "numeric"}], "task": "regression"}
sys.modules["mmsk.io"] = io
"""


def test_mmsk_serve_command_serves_a_model_file(tmp_path):
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit(pd.DataFrame({"x": [0.0, 1.0, 2.0]}), [1.0, 3.0, 5.0])
    try:
        from mmsk.io import save
    except ImportError:  # mmsk.io is not on this branch yet: a stand-in reads joblib files
        import joblib

        path = tmp_path / "model.joblib"
        joblib.dump(model, path)
        prelude = _STAND_IN_IO
    else:
        path, prelude = save(model, tmp_path / "model.mmsk"), ""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = prelude + textwrap.dedent(
        f"""
        from mmsk.cli import main
        sys.exit(main(["serve", {str(path)!r}, "--port", "{port}", "--log-level", "warning"]))
        """
    )
    if not prelude:
        code = "import sys\n" + code
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=os.getcwd(), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT) as http:
            while True:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "mmsk serve did not start"
                try:
                    if http.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            answer = http.post("/predict", json={"records": [{"x": 3.0}]})
            assert answer.json() == {"predictions": [pytest.approx(7.0)]}
            assert http.get("/metadata").json()["task"] == "regression"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        proc.stderr.close()
