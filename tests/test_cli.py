"""The ``mmsk`` command: parsing, the demo on the shipped sample, errors."""

import subprocess
import sys

import pytest

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
