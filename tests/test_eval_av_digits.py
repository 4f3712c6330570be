"""benchmarks/eval_av_digits.py runs end to end (--quick) on the full AV-digits data."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "eval_av_digits.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("eval_av_digits", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_run_reports_every_model(shared_data, tmp_path):
    script = _load_script()
    out = tmp_path / "tables.md"
    lines = []
    tables = script.main(
        [
            "--quick",
            "--data-home",
            str(shared_data),
            "--cache",
            str(tmp_path / "cache"),
            "--out",
            str(out),
        ],
        echo=lambda *a: lines.append(" ".join(map(str, a))),
    )
    expected = {"image only", "audio only"} | {f"fused: {f}" for f in script.FUSION_METHODS}
    assert len(expected) == 7
    for condition in ("clean", "degraded"):
        table = tables[f"{condition}: held-out speaker"]
        assert set(table.index) == expected
        assert table["accuracy"].between(0, 1).all()
        assert (table["fit_s"] > 0).all()
        missing = tables[f"{condition}: missing modality"]
        assert set(missing.index.get_level_values("fusion")) == set(script.FUSION_METHODS)
        assert set(missing.index.get_level_values("modality_dropout")) == {0.0, 0.3}
        for column in ("both", "audio left (image NaN)", "image left (audio NaN)"):
            assert missing[column].between(0, 1).all()
    text = out.read_text()
    for model in expected:
        assert f"| {model} |" in text
    assert any("best fusion" in line for line in lines)
