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


def test_model_and_audio_options_are_checked():
    script = _load_script()
    args = script.parse_args(["--audio", "embedder", "--models", "audio only, fused: concat"])
    assert args.models == ("audio only", "fused: concat") and args.pooling == ["mean"]
    assert script.parse_args([]).models == script.MODELS  # every model by default
    with pytest.raises(SystemExit):
        script.parse_args(["--models", "fused: nothing"])


@pytest.mark.slow
def test_quick_run_with_the_speech_embedding(shared_data, tmp_path):
    pytest.importorskip("openwakeword", reason="openwakeword==0.4.0 not installed")
    script = _load_script()
    argv = ["--quick", "--data-home", str(shared_data), "--cache", str(tmp_path / "cache")]
    argv += ["--audio", "embedder", "--conditions", "clean", "--models", "audio only"]
    tables = script.main([*argv, "--baselines"], echo=lambda *a: None)
    assert list(tables["clean: held-out speaker"].index) == ["audio only"]
    assert "clean: missing modality" not in tables
    baselines = tables["clean: baselines"]
    assert baselines["accuracy"].between(0, 1).all() and len(baselines) == 4
