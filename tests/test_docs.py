"""The code blocks of the user guide pages listed here run, in order, as written."""

import re
import warnings
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
#: Pages whose python blocks form one script (run in one namespace, in order).
PAGES = ["inspection.md"]


@pytest.mark.parametrize("page", PAGES)
def test_docs_page_code_runs(page, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib").use("Agg")
    import matplotlib.pyplot as plt

    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, f"{page} has python blocks"
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__main__"}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*non-interactive.*", UserWarning)
            for i, block in enumerate(blocks):
                exec(compile(block, f"{page} block {i + 1}", "exec"), namespace)
    finally:
        plt.close("all")
