"""The contract the hostile-input suite asserts, and a thread-based timeout."""

import re
import threading
import warnings

import numpy as np
import pandas as pd
import pytest

from mmsk import ItemError, ItemWarning


def within(seconds, function, *args, **kwargs):
    """Run ``function`` in a daemon thread; fail if it takes longer than ``seconds``.

    For calls that may block in C code, where a signal cannot interrupt them.
    Returns the result, or raises what the function raised.
    """
    box = {}

    def target():
        try:
            box["value"] = function(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"{getattr(function, '__name__', function)} still running after {seconds} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def item_warnings(caught):
    return [w for w in caught if issubclass(w.category, ItemWarning)]


def check_item_policy(make, items, bad, match, *, column="col", missing=None, index=None):
    """Assert the whole item contract for a column whose rows ``bad`` cannot be used.

    - ``on_error="raise"``: an :class:`ItemError` naming the column, the first
      bad row (its index label when ``index`` is given) and the item, with
      the reason matching ``match``;
    - ``on_error="nan"``: one :class:`ItemWarning` with the count, as many
      output rows as input rows, the bad rows missing (NaN, or ``missing``
      for extractors whose missing row is something else) and the good rows
      equal to what the good items give on their own.
    """
    X = pd.Series(items, name=column, index=index, dtype=object)
    first = bad[0]
    shown = first if index is None else index[first]
    shown = repr(shown) if isinstance(shown, str) else str(shown)
    with pytest.raises(ItemError) as info:
        make(on_error="raise").fit(X).transform(X)
    err = info.value
    assert (err.column, err.row) == (column, first), str(err)
    assert str(err).startswith(f"{column}: row {shown} ("), str(err)
    assert re.search(match, err.reason), err.reason
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = make(on_error="nan").fit(X)
        out = est.transform(X)
    found = item_warnings(caught)
    assert len(found) >= 1, "no ItemWarning"
    message = str(found[-1].message)
    assert f"{len(bad)} of {len(items)}" in message and f"first: row {shown} (" in message
    assert len(item_warnings(caught)) == (2 if _warns_in_fit(est) else 1)
    assert out.shape[0] == len(items)
    good = [i for i in range(len(items)) if i not in bad]
    for row in bad:
        assert np.isnan(out[row]).all() if missing is None else missing(out[row]), row
    alone = make(on_error="raise").fit(pd.Series([items[i] for i in good], name=column))
    expected = alone.transform(pd.Series([items[i] for i in good], name=column, dtype=object))
    np.testing.assert_allclose(out[good], expected, rtol=1e-5, atol=1e-6)
    return err, message


def _warns_in_fit(est):
    """TfidfSVD reads its texts in fit too (and warns there); the extractors only in transform."""
    return type(est).__name__ == "TfidfSVD"
