"""Sphinx configuration of the mmsk documentation site.

Build (warnings are errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The user guide is the Markdown files of ``docs/`` (myst-parser), the gallery is
``examples/plot_*.py`` (sphinx-gallery, run in their fast mode,
``MMSK_EXAMPLE_FAST=1``), and the API reference (``api.rst``) is written here, at
build time, from ``mmsk.__all__`` and the ``__all__`` of the modules in
``API_MODULES``: a new public name appears in the reference without editing any
page.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

# Gallery scripts run in their fast mode (seconds each), on a non-interactive backend.
os.environ.setdefault("MMSK_EXAMPLE_FAST", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import mmsk  # noqa: E402

project = "mmsk"
author = "The mmsk developers"
copyright = "The mmsk developers"
release = version = mmsk.__version__

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb"]
html_theme = "alabaster"
html_static_path: list[str] = []

myst_heading_anchors = 3
# myst.xref_missing: the Markdown guides link to repository files (README.md,
# ../benchmarks/...) that are not pages of the site; config.cache: autosummary_context
# holds a function (_mmsk_methods), which Sphinx cannot pickle (it re-reads the config)
suppress_warnings = ["myst.xref_missing", "config.cache"]

autosummary_generate = True
#: methods documented on a class page: public, defined by mmsk (not scikit-learn's
#: get_params or torch's Module methods), set_*_request and set_output left out
_SKIPPED_METHODS = {"get_params", "set_params", "set_output", "get_metadata_routing", "forward"}


def _mmsk_methods(fullname: str) -> list[str]:
    module, _, name = fullname.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    out = []
    for attr in sorted(dir(cls)):
        if attr.startswith("_") or attr in _SKIPPED_METHODS or attr.endswith("_request"):
            continue
        member = inspect.getattr_static(cls, attr)
        func = getattr(member, "__func__", member)
        if callable(func) and getattr(func, "__module__", "").startswith("mmsk"):
            out.append(attr)
    return out


autosummary_context = {"mmsk_methods": _mmsk_methods}
autosummary_imported_members = True
autodoc_default_options = {"inherited-members": False}
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

intersphinx_mapping: dict[str, tuple[str, None]] = {}  # offline builds: no inventories

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",  # every examples/plot_*.py runs
    "ignore_pattern": r"__init__\.py",
    "plot_gallery": "True",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
    "show_memory": False,
    "min_reported_time": 1,
    "doc_module": ("mmsk",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"mmsk": None},
}

# -- the API reference, written from __all__ --------------------------------------------

#: Modules with a section of their own (those that exist on this branch are documented).
API_MODULES = [
    "mmsk.datasets",
    "mmsk.compose",
    "mmsk.preprocessing",
    "mmsk.io",
    "mmsk.serve",
    "mmsk.fusion.export",
    "mmsk.inspection",
    "mmsk.retrieval",
    "mmsk.plotting",
]


def _module_exists(name: str) -> bool:
    """Whether ``name`` is a module of this checkout's mmsk (not another installed copy)."""
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        return False
    package = Path(mmsk.__file__).resolve().parent
    return spec is not None and package in Path(spec.origin).resolve().parents


def _autosummary(names: list[str], *, template: str | None = None) -> list[str]:
    """Write an autosummary directive (names relative to the current module)."""
    if not names:
        return []
    lines = [".. autosummary::", "   :toctree: generated/", "   :nosignatures:"]
    if template:
        lines.append(f"   :template: {template}")
    return [*lines, "", *(f"   {n}" for n in names), ""]


def api_reference() -> str:
    """Return the text of ``api.rst``: every public name, top-level then by module."""
    top = [n for n in mmsk.__all__ if n not in getattr(mmsk, "_SUBMODULES", ())]
    classes = [n for n in top if inspect.isclass(getattr(mmsk, n))]
    functions = [n for n in top if n not in classes]
    objects = {id(getattr(mmsk, n)) for n in top}
    lines = [
        ".. This file is written by docs/conf.py from mmsk.__all__: do not edit it.",
        "",
        "API reference",
        "=============",
        "",
        "Everything below is importable as written. The top-level names come from",
        "``mmsk`` itself (``from mmsk import FusionClassifier``); each module's section",
        "lists the names it adds.",
        "",
        "Top-level classes",
        "-----------------",
        "",
        ".. currentmodule:: mmsk",
        "",
        *_autosummary(classes, template="class.rst"),
        "Top-level functions",
        "-------------------",
        "",
        *_autosummary(functions),
    ]
    modules = [*(f"mmsk.{m}" for m in getattr(mmsk, "_SUBMODULES", ())), *API_MODULES]
    for name in dict.fromkeys(modules):
        if not _module_exists(name):
            continue
        module = importlib.import_module(name)
        own = []
        for member in getattr(module, "__all__", []):
            obj = getattr(module, member)
            if id(obj) in objects or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue  # documented at the top level, or a constant
            own.append(member)
        title = f":mod:`{name}`"
        lines += [
            title,
            "-" * len(title),
            "",
            f".. automodule:: {name}",
            "   :no-members:",
            "",
            f".. currentmodule:: {name}",
            "",
            *_autosummary(
                [m for m in own if inspect.isclass(getattr(module, m))], template="class.rst"
            ),
            *_autosummary([m for m in own if not inspect.isclass(getattr(module, m))]),
        ]
    return "\n".join(lines) + "\n"


def _write_api_reference() -> None:
    """Write ``api.rst`` (only when its text changes, so that Sphinx re-reads it only then)."""
    path = DOCS / "api.rst"
    text = api_reference()
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


_write_api_reference()  # before autosummary reads the sources


# A shape in a numpydoc type, "(n_rows, n_components_)", is plain text, not an
# reStructuredText reference ("name_"): escape the underscore before numpydoc reads it.
_SHAPE_NAME = re.compile(r"(?<=[\s(,])([A-Za-z]\w*)_(?=[,)])")


def _escape_shape_names(app, what, name, obj, options, lines):  # noqa: ANN001
    for i, line in enumerate(lines):
        if "shape" in line and "``" not in line:
            lines[i] = _SHAPE_NAME.sub(r"\1\\_", line)


def setup(app):  # noqa: ANN001, ANN201
    """Escape shape names in docstrings (before numpydoc, priority 400 < 500)."""
    app.connect("autodoc-process-docstring", _escape_shape_names, priority=400)
    return {"parallel_read_safe": True}
