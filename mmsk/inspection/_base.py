"""The base class of the corruptions: the item loop, level checks, errors."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator

from .._items import BadItem, ItemError, as_items, describe_item, is_missing

__all__ = ["Corruption"]


class Corruption(BaseEstimator):
    """Base class of the corruptions: the item loop, level checks, errors.

    A subclass sets :attr:`name`, :attr:`kinds`, :attr:`unit` and
    :attr:`clean_level`, and writes ``_check_level`` and ``_corrupt_item``
    (one item, one level, a :class:`numpy.random.Generator`).

    Parameters
    ----------
    levels : sequence of float
        The levels to evaluate, from mild to severe.

    Examples
    --------
    >>> from mmsk.inspection import TokenDrop
    >>> TokenDrop(levels=[0.5]).levels
    [0.5]
    """

    #: Short name, as used in ``robustness_report(corruptions=...)``.
    name: ClassVar[str] = ""
    #: Modality kinds the corruption is meant for (None: any).
    kinds: ClassVar[tuple[str, ...] | None] = None
    #: What a level measures, for tables and plots.
    unit: ClassVar[str] = "level"
    #: The level at which nothing changes (the clean input).
    clean_level: ClassVar[float] = 0.0

    def __init__(self, levels: Sequence[float] = (0.1, 0.25, 0.5)):
        self.levels = levels

    # -- levels -----------------------------------------------------------------------------
    def _check_level(self, level: float) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def check_level(self, level: Any) -> float:
        """Validate one level and return it as a float.

        Parameters
        ----------
        level : float
            A level of this corruption.

        Returns
        -------
        float
            The level.

        Raises
        ------
        ValueError
            If the level is not a real number or is out of this corruption's range.

        Examples
        --------
        >>> from mmsk.inspection import MissingModality
        >>> MissingModality().check_level(0.5)
        0.5
        """
        if isinstance(level, (bool, np.bool_)) or not isinstance(level, numbers.Real):
            raise ValueError(f"{self.name}: a level must be a real number, got {level!r}")
        value = float(level)
        if math.isnan(value):
            raise ValueError(f"{self.name}: a level must not be NaN")
        self._check_level(value)
        return value

    def checked_levels(self) -> list[float]:
        """Return :attr:`levels` validated, as a list of floats.

        Returns
        -------
        list of float
            The levels, mild to severe.

        Raises
        ------
        ValueError
            If ``levels`` is empty, not a sequence, or holds a bad level.

        Examples
        --------
        >>> from mmsk.inspection import AudioNoise
        >>> AudioNoise(levels=(10, 0)).checked_levels()
        [10.0, 0.0]
        """
        levels = self.levels
        if isinstance(levels, numbers.Real):
            levels = [levels]
        if isinstance(levels, (str, bytes)):
            levels = [levels]  # rejected by check_level, naming it
        try:
            values = list(levels)
        except TypeError:
            raise ValueError(
                f"{self.name}: levels must be a sequence of numbers, got {self.levels!r}"
            ) from None
        if not values:
            raise ValueError(f"{self.name}: levels must not be empty")
        return [self.check_level(v) for v in values]

    # -- items ------------------------------------------------------------------------------
    def _corrupt_item(self, item: Any, level: float, rng: np.random.Generator) -> Any:
        raise NotImplementedError  # pragma: no cover - overridden

    def __call__(self, items: Any, level: float, *, random_state: Any = None) -> list[Any]:
        """Corrupt a column of items at ``level``.

        Parameters
        ----------
        items : sequence of items
            A list, array, :class:`pandas.Series` or one-column 2-D input.
        level : float
            The corruption level (see the class).
        random_state : int, numpy Generator or None, default=None
            Seed of the random draws; the same seed gives the same output.

        Returns
        -------
        list
            The corrupted items, one per input item; missing items stay missing.

        Raises
        ------
        ValueError
            For a bad level.
        mmsk.ItemError
            For an item that cannot be corrupted, naming the column, row and item.

        Examples
        --------
        >>> from mmsk.inspection import TokenDrop
        >>> TokenDrop()(["a b c d", None], 0.0)
        ['a b c d', None]
        """
        level = self.check_level(level)
        values, column = as_items(items, what="items")
        rng = np.random.default_rng(random_state)
        out = []
        for row, item in enumerate(values):
            if is_missing(item):
                out.append(item)
                continue
            try:
                out.append(self._corrupt_item(item, level, rng))
            except (BadItem, OSError, ValueError, TypeError) as exc:
                reason = str(exc) or type(exc).__name__
                if isinstance(exc, FileNotFoundError):
                    reason = "file not found"
                raise ItemError(
                    column, row, describe_item(item), f"{self.name} corruption: {reason}"
                ) from exc
        return out

    def apply(
        self, X: Any, columns: Sequence[Any], level: float, *, random_state: Any = None
    ) -> Any:
        """Return a copy of the table ``X`` with ``columns`` corrupted at ``level``.

        Parameters
        ----------
        X : DataFrame or 2-D ndarray
            The input table; not modified.
        columns : sequence
            Column labels (DataFrame) or positions (array) of one modality.
        level : float
            The corruption level.
        random_state : int, numpy Generator or None, default=None
            Seed of the random draws.

        Returns
        -------
        DataFrame or ndarray
            The corrupted copy.

        Examples
        --------
        >>> import pandas as pd
        >>> from mmsk.inspection import TokenDrop
        >>> X = pd.DataFrame({"text": ["a b", "c d"], "n": [1, 2]})
        >>> TokenDrop().apply(X, ["text"], 1.0)["text"].tolist()
        ['', '']
        """
        level = self.check_level(level)
        rng = np.random.default_rng(random_state)
        out = X.copy()
        for col in columns:
            if hasattr(out, "iloc"):
                values = self(out[col].rename(str(col)), level, random_state=rng)
                out[col] = _column_like(values, out[col])
            else:
                values = self(list(out[:, col]), level, random_state=rng)
                out[:, col] = _object_array(values) if out.dtype == object else values
        return out


def _object_array(values: Sequence[Any]) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = list(values)
    return arr


def _column_like(values: Sequence[Any], like: Any) -> Any:
    """Return a Series holding ``values`` with ``like``'s index and name."""
    import pandas as pd

    return pd.Series(_object_array(values), index=like.index, name=like.name, dtype=object)
