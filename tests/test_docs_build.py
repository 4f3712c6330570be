"""The documentation site builds with warnings as errors, and its API page is complete.

The build runs the gallery (every ``examples/plot_*.py``, fast mode) and takes
minutes, so it is ``slow``: ``python -m pytest -m slow tests/test_docs_build.py``.
The check of the API page's contents is fast and runs by default.
"""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BUILD_COMMAND = "python -m sphinx -W --keep-going -b html docs docs/_build/html"


def _conf():
    """docs/conf.py as a module (it writes docs/api.rst when it is read)."""
    spec = importlib.util.spec_from_file_location("mmsk_docs_conf", DOCS / "conf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_reference_lists_every_public_name():
    import mmsk

    text = _conf().api_reference()
    for name in mmsk.__all__:
        if name in mmsk._SUBMODULES:
            assert f".. automodule:: mmsk.{name}" in text, name
        else:
            assert f"\n   {name}\n" in text, f"mmsk.{name} is not in the API reference"
    for module in [
        "mmsk.datasets",
        "mmsk.compose",
        "mmsk.preprocessing",
        "mmsk.io",
        "mmsk.serve",
        "mmsk.fusion.export",
    ]:
        assert f".. automodule:: {module}" in text
    # a name of a module's __all__ that is not top-level is listed in the module's section
    assert "\n   read_card\n" in text and "\n   create_app\n" in text
    assert "\n   onnx_inputs\n" in text and "\n   load_sample\n" in text


def test_gallery_takes_every_example_and_the_readme_has_the_command():
    conf = _conf()
    assert conf.sphinx_gallery_conf["filename_pattern"] == r"/plot_"
    assert conf.sphinx_gallery_conf["examples_dirs"] == str(ROOT / "examples")
    development = (ROOT / "README.md").read_text().split("## Development", 1)[1]
    assert BUILD_COMMAND in development


def test_every_guide_page_is_in_the_toctree():
    """A page missing from index.md's toctrees fails the (slow) site build: catch it here."""
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    listed = set()
    for block in index.split("```{toctree}")[1:]:
        body = block.split("```", 1)[0]
        listed |= {line.strip() for line in body.splitlines() if line and line[0] not in " :"}
    pages = {path.stem for path in DOCS.glob("*.md")} - {"index"}
    assert pages <= listed, f"not in a toctree of docs/index.md: {sorted(pages - listed)}"


@pytest.mark.slow
def test_site_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx", reason="sphinx is not installed (extra 'docs')")
    for extra in ["numpydoc", "sphinx_gallery", "myst_parser", "matplotlib"]:
        pytest.importorskip(extra, reason=f"{extra} is not installed (extra 'docs')")
    out = tmp_path / "html"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-b",
            "html",
            "-q",
            "-d",
            str(tmp_path / "doctrees"),
            "docs",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-8000:]
    assert (out / "index.html").is_file()
    api = (out / "api.html").read_text(encoding="utf-8")
    assert "FusionClassifier" in api and "make_multimodal_pipeline" in api
    gallery = sorted(p.stem for p in (out / "auto_examples").glob("plot_*.html"))
    assert gallery == sorted(p.stem for p in (ROOT / "examples").glob("plot_*.py"))
    assert (out / "fusion.html").is_file() and (out / "generated").is_dir()
