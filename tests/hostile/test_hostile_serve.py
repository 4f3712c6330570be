"""The server: path items follow the extractors' file rules; refused texts are a 4xx per record."""

import io
import json
import os
import re

import numpy as np
import pandas as pd
import pytest
from hostile_helpers import within
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402

from mmsk import ImagePixels, TfidfSVD  # noqa: E402
from mmsk.serve import create_app  # noqa: E402


def _png(value):
    out = io.BytesIO()
    Image.new("L", (6, 6), value).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("allowed")
    (folder / "good.png").write_bytes(_png(100))
    (folder / "big.png").write_bytes(_png(7) + b"\0" * 5000)
    (folder / "empty.png").write_bytes(b"")
    (folder / "sub").mkdir()
    os.mkfifo(folder / "pipe.png")
    (folder / "zero.png").symlink_to("/dev/zero")
    frame = pd.DataFrame(
        {
            "image": [_png(v) for v in (10, 60, 120, 200)],
            "text": ["red car", "blue car", "red sky", "blue sea"],
        }
    )
    features = ColumnTransformer(
        [("image", ImagePixels(size=(3, 3)), "image"), ("text", TfidfSVD(n_components=2), "text")]
    )
    model = Pipeline([("features", features), ("clf", LogisticRegression())])
    model.fit(frame, [0, 1, 0, 1])
    app = create_app(model, allow_dirs=[folder], max_request_bytes=4000)
    with TestClient(app) as client:
        yield client, folder
    try:  # release a reader a regression left blocked on the FIFO
        os.close(os.open(folder / "pipe.png", os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


def _post(client, records):
    body = json.dumps({"records": records}, ensure_ascii=True)  # lone surrogates as \\ud800
    return client.post("/predict", content=body, headers={"content-type": "application/json"})


GOOD = {"image": "good.png", "text": "red car"}
CASES = {
    "fifo": ({"image": "pipe.png"}, 422, "image", r"^a FIFO \(named pipe\), not a regular file"),
    "directory": ({"image": "sub"}, 422, "image", r"^is a directory, not a file$"),
    "empty file": ({"image": "empty.png"}, 422, "image", r"^empty file \(0 bytes\)$"),
    "over the size limit": (
        {"image": "big.png"},
        413,
        "image",
        r"^file of \d+ bytes, more than the limit of 4000 \(--max-request-bytes\)$",
    ),
    "symlink to a device": ({"image": "zero.png"}, 403, "image", r"^path outside the allowed"),
    "lone surrogate": (
        {"text": "red \ud800 car"},
        422,
        "text",
        r"not valid Unicode text: a lone surrogate",
    ),
    "control: a good record": ({"text": "ok"}, None, None, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_records_get_a_4xx_naming_record_and_column(served, case):
    client, _ = served
    change, status, column, reason = CASES[case]
    answer = within(20, _post, client, [GOOD, {**GOOD, **change}])
    if status is None:
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2
        return
    assert answer.status_code == status, answer.text
    first = answer.json()["detail"][0]
    assert (first["record"], first["column"]) == (1, column), first
    assert re.search(reason, first["reason"]), first["reason"]
    assert "Traceback" not in answer.text


def test_a_good_record_predicts_the_same_alone_and_in_a_batch(served):
    client, _ = served
    alone = _post(client, [GOOD]).json()["predictions"]
    again = _post(client, [GOOD, GOOD]).json()["predictions"]
    assert again == alone * 2
    assert np.asarray(alone).shape == (1,)
