"""Making a modality missing in a fraction of the rows (any modality)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._items import as_items
from ._base import Corruption, _object_array

__all__ = ["MissingModality", "set_missing"]


# -- any modality --------------------------------------------------------------------------
class MissingModality(Corruption):
    """Make the modality missing in a given fraction of the rows.

    Exactly ``round(rate * n_rows)`` rows, drawn at random, lose *all* of
    the modality's columns together: an item becomes ``None``, a number
    ``NaN``. That is what the fusion estimators read as a missing modality
    (an all-NaN block), so the score shows how the model copes without it.

    Parameters
    ----------
    levels : sequence of float, default=(0.1, 0.25, 0.5, 0.75, 1.0)
        Fractions of rows in [0, 1], from mild to severe; 0 is clean.

    Examples
    --------
    >>> import pandas as pd
    >>> from mmsk.inspection import MissingModality
    >>> X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": ["x", "y", "z", "w"]})
    >>> out = MissingModality().apply(X, ["a", "b"], 0.5, random_state=0)
    >>> int(out["a"].isna().sum()), out["b"].isna().tolist() == out["a"].isna().tolist()
    (2, True)
    """

    name = "missing"
    kinds = None
    unit = "rows missing"

    def __init__(self, levels: Sequence[float] = (0.1, 0.25, 0.5, 0.75, 1.0)):
        super().__init__(levels=levels)

    def _check_level(self, level: float) -> None:
        if not 0 <= level <= 1:
            raise ValueError(f"{self.name}: the missing rate must lie in [0, 1], got {level!r}")

    def rows(self, n_rows: int, level: float, *, random_state: Any = None) -> np.ndarray:
        """Choose the rows that lose the modality.

        The rows come from one random permutation: with the same seed, the
        rows missing at a lower rate are also missing at a higher one.

        Parameters
        ----------
        n_rows : int
            Number of rows.
        level : float
            The missing rate.
        random_state : int, numpy Generator or None, default=None
            Seed.

        Returns
        -------
        ndarray of int
            The sorted positions of ``round(level * n_rows)`` rows.

        Examples
        --------
        >>> from mmsk.inspection import MissingModality
        >>> MissingModality().rows(10, 0.3, random_state=0).size
        3
        """
        level = self.check_level(level)
        order = np.random.default_rng(random_state).permutation(n_rows)
        return np.sort(order[: int(round(level * n_rows))])

    def __call__(self, items: Any, level: float, *, random_state: Any = None) -> list[Any]:
        """Set a fraction ``level`` of the items to ``None``.

        Parameters
        ----------
        items : sequence of items
            The column.
        level : float
            The missing rate.
        random_state : int, numpy Generator or None, default=None
            Seed.

        Returns
        -------
        list
            The items, ``round(level * n)`` of them replaced by ``None``.

        Examples
        --------
        >>> from mmsk.inspection import MissingModality
        >>> MissingModality()(["a", "b", "c", "d"], 0.5, random_state=0).count(None)
        2
        """
        values, _ = as_items(items)
        out = list(values)
        for row in self.rows(len(out), level, random_state=random_state):
            out[row] = None
        return out

    def apply(
        self, X: Any, columns: Sequence[Any], level: float, *, random_state: Any = None
    ) -> Any:
        """Return a copy of ``X`` with the modality missing in a fraction of rows.

        The same rows lose every column in ``columns``: items become
        ``None``, numbers ``NaN``.

        Parameters
        ----------
        X : DataFrame or 2-D ndarray
            The input table; not modified.
        columns : sequence
            Column labels (DataFrame) or positions (array) of one modality.
        level : float
            The missing rate.
        random_state : int, numpy Generator or None, default=None
            Seed.

        Returns
        -------
        DataFrame or ndarray
            The copy.

        Examples
        --------
        >>> import numpy as np
        >>> from mmsk.inspection import MissingModality
        >>> out = MissingModality().apply(np.ones((4, 3)), [0, 1], 1.0)
        >>> np.isnan(out).sum(axis=0).tolist()
        [4, 4, 0]
        """
        rows = self.rows(len(X), level, random_state=random_state)
        return set_missing(X, columns, rows)


def set_missing(X: Any, columns: Sequence[Any], rows: Any = None) -> Any:
    """Return a copy of ``X`` whose ``columns`` are missing in ``rows`` (all if None).

    Numeric columns get ``NaN``; other columns ``None``.

    Parameters
    ----------
    X : DataFrame or 2-D ndarray
        The table; not modified.
    columns : sequence
        Column labels or positions.
    rows : array of int or None, default=None
        Row positions; None means every row.

    Returns
    -------
    DataFrame or ndarray
        The copy.

    Examples
    --------
    >>> import pandas as pd
    >>> from mmsk.inspection._missing import set_missing
    >>> set_missing(pd.DataFrame({"a": ["x", "y"]}), ["a"], [1])["a"].tolist()
    ['x', None]
    """
    import pandas as pd

    n = len(X)
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.intp)
    out = X.copy()
    if hasattr(out, "iloc"):
        for col in columns:
            series = out[col]
            if series.dtype.kind in "fc":
                values = series.to_numpy(copy=True)
                values[rows] = np.nan
            elif series.dtype.kind in "iub":
                values = series.to_numpy(dtype=np.float64, copy=True)
                values[rows] = np.nan
            else:
                values = _object_array(series.tolist())
                values[rows] = None
                out[col] = pd.Series(values, index=series.index, name=series.name, dtype=object)
                continue
            out[col] = pd.Series(values, index=series.index, name=series.name)
        return out
    cols = list(columns)
    if out.dtype.kind in "iub":
        out = out.astype(np.float64)
    if out.dtype == object:
        for col in cols:
            out[rows, col] = None
    else:
        out[np.ix_(rows, cols)] = np.nan
    return out
