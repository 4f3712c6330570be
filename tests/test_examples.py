"""The gallery scripts under examples/ run, and the fusion example's search is reproducible.

Every ``examples/*.py`` runs as ``__main__`` (what sphinx-gallery does) in its
fast mode (``MMSK_EXAMPLE_FAST=1``), with matplotlib's Agg backend, in a
temporary working directory, within ``TIMEOUT_S`` seconds (fast mode takes seconds
on a quiet machine; the bound is for a busy one). The fusion example's ``GridSearchCV`` is then
repeated with other ``n_jobs`` values and must give the same scores and the
same best parameters.
"""

import ast
import contextlib
import importlib.util
import runpy
import signal
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.py"))
FUSION_EXAMPLE = EXAMPLES_DIR / "plot_fusion_gridsearch.py"
RETRIEVAL_EXAMPLE = EXAMPLES_DIR / "plot_retrieval.py"

TIMEOUT_S = 150  # per example, fast mode


@contextlib.contextmanager
def _time_limit(seconds, what):
    """Fail a run of ``what`` that takes more than ``seconds`` (main thread, POSIX)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def expired(signum, frame):
        raise TimeoutError(f"{what} ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _run_example(path, workdir, *, fast=True):
    """Run one example script as sphinx-gallery does; return its globals."""
    matplotlib = pytest.importorskip("matplotlib")
    with pytest.MonkeyPatch.context() as mp:
        if fast:
            mp.setenv("MMSK_EXAMPLE_FAST", "1")
        else:
            mp.delenv("MMSK_EXAMPLE_FAST", raising=False)
        mp.setenv("MPLBACKEND", "Agg")
        mp.chdir(workdir)
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        try:
            with warnings.catch_warnings(), _time_limit(TIMEOUT_S if fast else 3600, path.name):
                # plt.show() under Agg says it cannot show; that is expected here
                warnings.filterwarnings("ignore", ".*non-interactive.*", UserWarning)
                return runpy.run_path(str(path), run_name="__main__")
        finally:
            plt.close("all")


@pytest.fixture(scope="module")
def example_globals(tmp_path_factory):
    """Run each example once per module (fast mode), on demand."""
    done = {}

    def get(path):
        if path not in done:
            done[path] = _run_example(path, tmp_path_factory.mktemp(path.stem))
        return done[path]

    return get


def _same_search(search, X, y, groups, n_jobs, cache):
    """Repeat ``search`` with another ``n_jobs`` and a fresh feature cache."""
    model = clone(search.estimator).set_params(
        memory=str(cache / "pipeline"),
        features__image__memory=cache,
        features__audio__memory=cache,
    )
    again = GridSearchCV(model, search.param_grid, cv=search.cv, n_jobs=n_jobs)
    return again.fit(X, y, groups=groups)


def _assert_same_results(search, again):
    assert again.best_params_ == search.best_params_
    assert again.best_score_ == search.best_score_
    assert list(again.cv_results_["params"]) == list(search.cv_results_["params"])
    n_splits = search.n_splits_
    for key in ["mean_test_score"] + [f"split{k}_test_score" for k in range(n_splits)]:
        np.testing.assert_array_equal(again.cv_results_[key], search.cv_results_[key], key)


def test_there_are_examples():
    assert FUSION_EXAMPLE in EXAMPLES
    assert len(EXAMPLES) >= 6
    names = {p.stem for p in EXAMPLES}
    for topic in ["quickstart", "tabular_text", "missing_modalities", "deployment", "onnx_export"]:
        assert f"plot_{topic}" in names
    assert RETRIEVAL_EXAMPLE in EXAMPLES


def _has_openwakeword():
    return importlib.util.find_spec("openwakeword") is not None


def _check_retrieval_run(ns, audio_name, floor):
    assert ns["FAST"] and set(ns["test"].groups) == {"theo"}
    assert ns["audio_name"] == audio_name
    assert any(c.startswith("audio__") for c in ns["X_train"].columns)
    scores = ns["scores"]
    # 10 digits: chance recall@1 is about 0.1; the fast run trains for seconds
    assert scores["recall@1"] > floor
    assert scores["recall@1"] <= scores["MRR"] <= 1 and scores["recall@1"] <= scores["recall@5"]
    assert ns["indices"].shape == (10, 5)


def test_retrieval_example_finds_the_spoken_digit(example_globals):
    ns = example_globals(RETRIEVAL_EXAMPLE)
    if _has_openwakeword():
        # the speech embedding: 0.96 on the sample's 50 held-out clips when measured
        _check_retrieval_run(ns, "AudioEmbedder.from_openwakeword", 0.8)
        assert ns["X_train"].filter(like="audio__").shape[1] == 96
    else:
        _check_retrieval_run(ns, "AudioFeatures", 0.4)


def test_retrieval_example_falls_back_to_audio_features(example_globals, tmp_path, capsys):
    """Without openwakeword the example uses AudioFeatures and says why."""
    if not _has_openwakeword():  # the run above already took the fallback
        ns = example_globals(RETRIEVAL_EXAMPLE)
    else:
        with pytest.MonkeyPatch.context() as mp:
            mp.setitem(sys.modules, "openwakeword", None)  # find_spec now finds nothing
            ns = _run_example(RETRIEVAL_EXAMPLE, tmp_path)
        assert "audio block: AudioFeatures (openwakeword 0.4.0 is not usable (ImportError: " in (
            capsys.readouterr().out
        )
    _check_retrieval_run(ns, "AudioFeatures", 0.4)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_is_a_gallery_script(path):
    source = path.read_text(encoding="utf-8")
    assert path.name.startswith("plot_"), "examples are named plot_<topic>.py"
    doc = ast.get_docstring(ast.parse(source))
    assert doc, "an example starts with a title docstring"
    title, underline = doc.splitlines()[:2]
    assert title.strip() and set(underline.strip()) == {"="}, "title underlined with ="
    assert "\n# %%\n" in source, "an example has # %% cells"
    readme = (EXAMPLES_DIR / "README.txt").read_text(encoding="utf-8")
    assert path.name in readme, "examples/README.txt lists every example"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path, example_globals):
    namespace = example_globals(path)
    assert namespace["__name__"] == "__main__"


def test_fusion_example_search_does_not_depend_on_n_jobs(example_globals, tmp_path):
    ns = example_globals(FUSION_EXAMPLE)
    search = ns["search"]
    assert ns["FAST"] and len(search.cv_results_["params"]) >= 4
    assert search.best_params_.keys() == {"fusion__fusion", "features__audio__n_mfcc"}
    for n_jobs in sorted({1, 2} - {search.n_jobs}):
        again = _same_search(search, ns["X"], ns["y"], ns["groups"], n_jobs, tmp_path / str(n_jobs))
        _assert_same_results(search, again)


@pytest.mark.slow
def test_fusion_example_full_mode_search_does_not_depend_on_n_jobs(tmp_path):
    ns = _run_example(FUSION_EXAMPLE, tmp_path, fast=False)
    search = ns["search"]
    assert not ns["FAST"] and len(search.cv_results_["params"]) == 10
    for n_jobs in sorted({1, 2} - {search.n_jobs}):
        again = _same_search(search, ns["X"], ns["y"], ns["groups"], n_jobs, tmp_path / str(n_jobs))
        _assert_same_results(search, again)


def test_modality_importance_example(example_globals):
    ns = example_globals(EXAMPLES_DIR / "plot_modality_importance.py")
    result = ns["result"]
    assert ns["FAST"] and len(result) == 4
    assert set(result["method"]) == {"permutation", "ablation"}
    assert set(result["modality"]) == {"image", "audio"}
    perm = result[result["method"] == "permutation"].set_index("modality")
    assert (perm["importance_mean"] > 0).all(), "both modalities carry information"


@pytest.mark.slow
def test_modality_importance_example_full_data_measures_agree(shared_data, tmp_path, monkeypatch):
    """On known speakers, permutation and ablation rank the modalities alike (full AV-digits)."""
    monkeypatch.setenv("MMSK_DATA", str(shared_data))
    ns = _run_example(EXAMPLES_DIR / "plot_modality_importance.py", tmp_path, fast=False)
    result = ns["result"]
    assert not ns["FAST"] and len(ns["X_test"]) == 500
    by_method = {m: part.set_index("modality") for m, part in result.groupby("method")}
    for method, part in by_method.items():
        assert (part["importance_mean"] > 0.05).all(), (method, "both modalities matter")
    first = {m: part["importance_mean"].idxmax() for m, part in by_method.items()}
    assert first["permutation"] == first["ablation"], first


def test_robustness_report_example(example_globals):
    ns = example_globals(EXAMPLES_DIR / "plot_robustness_report.py")
    reports = ns["reports"]
    assert sorted(reports) == [0.0, 0.3]
    summary = reports[0.3].summary
    assert summary["effective_robustness"].notna().all()
    assert reports[0.0].summary["effective_robustness"].isna().all()
    assert {("audio", "noise"), ("audio", "missing"), ("image", "missing")} <= set(
        zip(summary["modality"], summary["corruption"], strict=True)
    )
    results = ns["search"].cv_results_
    assert np.isfinite(results["mean_test_robust"]).all()
