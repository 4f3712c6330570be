"""The CLI: ``--allow-dir`` confines the paths of a CSV file; hostile paths are one line, exit 2."""

import contextlib
import io
import os

import numpy as np
import pandas as pd
import pytest
from hostile_helpers import within
from PIL import Image

from mmsk.cli import main


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A data folder (CSV + images), a secret image outside it, a symlink out, a fitted model."""
    root = tmp_path_factory.mktemp("cli")
    data, outside = root / "data", root / "outside"
    (data / "images").mkdir(parents=True)
    outside.mkdir()
    rng = np.random.RandomState(0)
    names = []
    for i in range(12):
        Image.fromarray((rng.rand(8, 8) * 255).astype("uint8")).save(data / "images" / f"{i}.png")
        names.append(f"images/{i}.png")
    Image.new("L", (8, 8), 3).save(outside / "secret.png")
    (data / "images" / "escape.png").symlink_to(outside / "secret.png")
    frame = pd.DataFrame({"image": names, "x": rng.normal(size=12), "label": np.arange(12) % 2})
    frame.to_csv(data / "train.csv", index=False)
    model = root / "model.joblib"
    fit = ["fit", data / "train.csv", "--target", "label", "--image", "image", "--numeric", "x"]
    code, _, err = _run([*fit, "--max-epochs", "1", "--out", model, "--allow-dir", data])
    assert code == 0, err
    return {"root": root, "data": data, "outside": outside, "frame": frame, "model": model}


def _csv(project, name, row, value):
    frame = project["frame"].copy()
    frame.loc[row, "image"] = value
    path = project["data"] / name
    frame.to_csv(path, index=False)
    return path


HOSTILE = {
    "absolute path outside": lambda p: str(p["outside"] / "secret.png"),
    "dot-dot": lambda p: "../outside/secret.png",
    "symlink out": lambda p: "images/escape.png",
}


@pytest.mark.parametrize("command", ["fit", "predict", "evaluate"])
@pytest.mark.parametrize("case", list(HOSTILE))
def test_allow_dir_refuses_paths_outside_in_one_line(project, command, case):
    csv = _csv(project, f"{command}_{case.replace(' ', '_')}.csv", 3, HOSTILE[case](project))
    if command == "fit":
        argv = ["fit", csv, "--target", "label", "--image", "image", "--numeric", "x"]
        argv += ["--max-epochs", "1", "--out", project["root"] / "other.joblib"]
    else:
        argv = [command, project["model"], csv]
    code, _, err = _run([*argv, "--allow-dir", project["data"]])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"mmsk {command}: error: image: row 3 (")
    assert "path outside the allowed directories" in err


def test_the_saved_model_carries_no_allowed_dirs(project):
    """--allow-dir is the run's option: without it, the model reads any path again."""
    csv = _csv(project, "free.csv", 3, str(project["outside"] / "secret.png"))
    code, out, err = _run(["predict", project["model"], csv])
    assert code == 0, err
    assert len(pd.read_csv(io.StringIO(out))) == 12


def test_a_fifo_in_the_data_is_one_line_not_a_hang(project, tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    csv = _csv(project, "fifo.csv", 5, str(fifo))
    code, _, err = within(20, _run, ["predict", project["model"], csv])
    assert code == 2 and err.count("\n") == 1
    assert "image: row 5 (" in err and "a FIFO (named pipe), not a regular file" in err


def test_allow_dir_must_name_a_directory(project):
    code, _, err = _run(
        ["predict", project["model"], project["data"] / "train.csv", "--allow-dir", "/no/where"]
    )
    assert code == 2 and "--allow-dir: '/no/where' is not a directory" in err
