"""Prediction over data larger than memory: chunk by chunk, or partition by partition.

:func:`predict_frame` applies a fitted model to one DataFrame and returns its
outputs as named columns (``prediction``, ``proba_<class>``, the features of
``transform``), indexed like the input: the unit of work both for
:func:`predict_table`, which streams a CSV or Parquet file through it
(:func:`mmsk._tables.iter_table_chunks` in, :class:`mmsk._tables.TableWriter`
out, a tqdm bar over the rows), and for ``dask.dataframe``'s
``map_partitions``. ``mmsk predict`` is a thin wrapper around
:func:`predict_table`. See ``docs/scale.md``.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import IO, Any

from ._items import ItemError
from ._tables import DEFAULT_CHUNK_SIZE, TableWriter, _Table, missing_columns_error

__all__ = ["METHODS", "predict_frame", "predict_table"]

#: What :func:`predict_frame` can call, and the columns each one gives.
METHODS = ("predict", "predict_proba", "transform")


def _methods(method: str | Sequence[str]) -> list[str]:
    methods = [method] if isinstance(method, str) else list(method)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods or len(set(methods)) != len(methods):
        raise ValueError(
            f"method must be one of {METHODS} or a sequence of them (each once), got {method!r}"
        )
    return methods


def _call(model: Any, X: Any, methods: Sequence[str]) -> dict[str, Any]:
    """Each method's output; a pipeline asked for several extracts the features once."""
    from sklearn.pipeline import Pipeline

    final = model[-1] if isinstance(model, Pipeline) and len(model) > 1 else None
    if len(methods) > 1 and final is not None and all(hasattr(final, m) for m in methods):
        Xt = model[:-1].transform(X)  # what Pipeline.predict etc. do before the last step
        return {m: getattr(final, m)(Xt) for m in methods}
    for m in methods:
        if not hasattr(model, m):
            raise ValueError(f"{type(model).__name__} has no method {m!r}")
    return {m: getattr(model, m)(X) for m in methods}


def _columns(model: Any, method: str, values: Any) -> dict[str, Any]:
    """Name the columns of one method's output."""
    import numpy as np
    import pandas as pd

    if method == "transform":
        if isinstance(values, pd.DataFrame):
            return {name: values[name].to_numpy() for name in values.columns}
        values = values.toarray() if hasattr(values, "toarray") else np.asarray(values)
        values = values.reshape(len(values), -1)
        names = _feature_names(model, values.shape[1])
        return {name: values[:, j] for j, name in enumerate(names)}
    values = np.asarray(values)
    if method == "predict":
        if values.ndim == 1:
            return {"prediction": values}
        return {f"prediction_{j}": values[:, j] for j in range(values.shape[1])}
    classes = getattr(model, "classes_", None)
    if classes is None or values.ndim != 2 or len(classes) != values.shape[1]:
        raise ValueError(
            f"predict_proba of {type(model).__name__} gave shape {values.shape}, not one "
            "column per class of classes_ (multi-output classifiers are not supported)"
        )
    return {f"proba_{label}": values[:, j] for j, label in enumerate(classes)}


def _feature_names(model: Any, width: int | None) -> list[str]:
    try:
        names = [str(n) for n in model.get_feature_names_out()]
    except (AttributeError, ValueError, TypeError):
        names = None
    if names is None or (width is not None and len(names) != width):
        names = [f"x{j}" for j in range(width or 0)]
    return names


def _frame(model: Any, outputs: dict[str, Any], index: Any, decimals: int | None) -> Any:
    import numpy as np
    import pandas as pd

    columns: dict[str, Any] = {}
    for method, values in outputs.items():
        named = _columns(model, method, values)
        if method == "predict_proba" and decimals is not None:
            named = {k: np.round(v, decimals) for k, v in named.items()}
        columns.update(named)
    return pd.DataFrame(columns, index=index)


def predict_frame(
    X: Any,
    model: Any,
    method: str | Sequence[str] = "predict",
    *,
    decimals: int | None = None,
) -> Any:
    """Apply a fitted model to a DataFrame; return its outputs as named columns.

    This is the unit of work of :func:`predict_table` (one chunk) and the
    function to give ``dask.dataframe.DataFrame.map_partitions`` (one
    partition): the result is indexed like ``X``, and a model asked for
    several outputs of a :class:`~sklearn.pipeline.Pipeline` extracts the
    features once.

    Parameters
    ----------
    X : pandas.DataFrame
        The rows, with the columns the model was fitted on. It comes first,
        as ``map_partitions`` and :meth:`pandas.DataFrame.pipe` pass it.
    model : estimator
        A fitted estimator or pipeline, e.g. of
        :func:`mmsk.make_multimodal_pipeline`.
    method : str or sequence of str, default="predict"
        What to call, one or several of ``"predict"`` (a column
        ``prediction``; ``prediction_<j>`` for several outputs),
        ``"predict_proba"`` (``proba_<class>`` per class, in the order of
        ``model.classes_``) and ``"transform"`` (one column per feature,
        named by ``get_feature_names_out()``; e.g. ``model[:-1]`` gives
        the features a pipeline's network sees). Columns come in this order.
    decimals : int or None, default=None
        Round the probabilities to this many decimals.

    Returns
    -------
    pandas.DataFrame
        One row per row of ``X``, with ``X``'s index.

    Raises
    ------
    ValueError
        If ``method`` is unknown or the model lacks it, and whatever the
        model raises for bad rows (e.g. an :class:`~mmsk.ItemError` naming
        column, position and item).

    See Also
    --------
    predict_table : The same over a CSV or Parquet file, in chunks.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sklearn.linear_model import LogisticRegression
    >>> from mmsk import predict_frame
    >>> X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]}, index=[10, 11, 12, 13])
    >>> model = LogisticRegression().fit(X, ["no", "no", "yes", "yes"])
    >>> predict_frame(X.tail(2), model, ["predict", "predict_proba"], decimals=1)
       prediction  proba_no  proba_yes
    12        yes       0.4        0.6
    13        yes       0.2        0.8
    """
    methods = _methods(method)
    return _frame(model, _call(model, X, methods), X.index, decimals)


def _empty_output(model: Any, methods: Sequence[str]) -> Any:
    """Make the output columns with no rows, for an input without data rows."""
    import numpy as np
    import pandas as pd

    columns: dict[str, Any] = {}
    for method in methods:
        if method == "predict":
            classes = getattr(model, "classes_", None)
            dtype = np.asarray(classes).dtype if classes is not None else np.float64
            columns["prediction"] = np.empty(0, dtype=dtype)
        elif method == "predict_proba":
            columns.update({f"proba_{c}": np.empty(0) for c in getattr(model, "classes_", [])})
        else:
            columns.update({name: np.empty(0) for name in _feature_names(model, None)})
    return pd.DataFrame(columns)


_FIRST_ROW = re.compile(r"\(first: row (\d+) ")


def _is_item_warning(category: type) -> bool:
    """Whether ``category`` is mmsk's ItemWarning (its module is loaded when one was raised)."""
    base = sys.modules.get("mmsk._base")
    return base is not None and issubclass(category, base.ItemWarning)


def _chunk_output(
    model: Any,
    chunk: Any,
    methods: Sequence[str],
    *,
    features: list[str] | None,
    id_column: str | None,
    prepare: Callable[[Any], Any] | None,
    decimals: int | None,
    src: Any,
    registry: dict[Any, Any],
) -> Any:
    """One chunk's output; errors and warnings name rows of the file, not of the chunk."""
    import pandas as pd

    start, stop = chunk.index[0], chunk.index[-1]
    first = (
        pd.DataFrame({"row": chunk.index.to_numpy()})
        if id_column is None
        else pd.DataFrame({id_column: chunk[id_column].to_numpy()})
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            X = chunk if features is None else chunk[features]
            X = X if prepare is None else prepare(X)
            outputs = _call(model, X, methods)
        except ItemError as exc:  # positions count from the chunk's first row; the labels
            # (the chunk's index) are the file's rows already
            error = ItemError(exc.column, start + exc.row, exc.item, exc.reason, exc.label)
            raise error.with_traceback(exc.__traceback__) from exc.__cause__
        except ValueError as exc:
            raise ValueError(f"{src}, data rows {start}-{stop}: {exc}") from exc
    for warning in caught:  # again, "first: row N" counted from the file's first row
        message = str(warning.message)
        # mmsk's extractors name rows by the chunk's index, the file's rows already
        labelled = _is_item_warning(warning.category)
        if (
            not labelled
            and issubclass(warning.category, UserWarning)
            and _FIRST_ROW.search(message)
        ):
            message = _FIRST_ROW.sub(lambda m: f"(first: row {start + int(m[1])} ", message)
        else:
            message = warning.message
        warnings.warn_explicit(
            message, warning.category, warning.filename, warning.lineno, registry=registry
        )
    out = _frame(model, outputs, None, decimals)
    for name in out.columns:  # as the one-shot `mmsk predict` built it, column by column
        first[name] = out[name].to_numpy()
    return first


def predict_table(
    model: Any,
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str] | IO[str],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    method: str | Sequence[str] = "predict",
    columns: Sequence[str] | None = None,
    id_column: str | None = None,
    prepare: Callable[[Any], Any] | None = None,
    decimals: int | None = None,
    progress: bool | None = None,
) -> int:
    """Predict over a CSV or Parquet file chunk by chunk, appending to an output file.

    Reads ``chunk_size`` rows (:func:`mmsk.iter_table_chunks`), predicts
    them (:func:`predict_frame`), writes their rows, then reads the next:
    memory holds one chunk, whatever the length of the file, and the model
    never sees more than ``chunk_size`` rows at once. The output has, in
    the input's order, a first column ``row`` (the 0-based data row number)
    or ``id_column``, then the outputs of ``method``; it equals predicting
    the whole file at once.

    Parameters
    ----------
    model : estimator
        A fitted estimator or pipeline.
    src : str or path-like
        The input: ``.parquet`` (``.pq``, ``.parq``) is Parquet (extra
        ``parquet``), any other name CSV with a header row.
    dst : str, path-like or text stream
        The output: a name ending in ``.parquet`` (``.pq``, ``.parq``) is
        written as Parquet, one row group per chunk; any other name, or a
        stream such as ``sys.stdout``, as CSV, the header once. A file is
        written under a temporary name and moved into place when complete,
        so a failed run leaves none (a stream keeps the rows it got); its
        folder is created.
    chunk_size : int, default=10_000
        Rows per chunk.
    method : str or sequence of str, default="predict"
        ``"predict"``, ``"predict_proba"``, ``"transform"`` or several, as in
        :func:`predict_frame`.
    columns : sequence of str or None, default=None
        Input columns the model needs: only these (and ``id_column``) are
        read, checked before any row is predicted, and given to the model.
        None reads every column and gives them all to the model.
    id_column : str or None, default=None
        Copy this input column as the first output column instead of ``row``.
    prepare : callable or None, default=None
        Applied to each chunk (a DataFrame) before the model, e.g. to make
        relative paths absolute; it must keep the rows.
    decimals : int or None, default=None
        Round the probabilities to this many decimals.
    progress : bool or None, default=None
        A tqdm bar over the rows, on stderr: None shows it when stderr is a
        terminal (tqdm's rule), True always, False never.

    Returns
    -------
    int
        The number of rows written.

    Raises
    ------
    FileNotFoundError
        If ``src`` does not exist.
    ValueError
        If ``src`` lacks a column (the message names it and lists the ones
        it has) or cannot be parsed, or the model fails on a chunk: an
        :class:`~mmsk.ItemError` names column, data row (of the file) and
        item; other errors are prefixed with the file and the chunk's rows.

    See Also
    --------
    predict_frame : One DataFrame; the partition function for dask.
    iter_table_chunks : The reader.

    Notes
    -----
    A CSV file is read twice: a first pass (also one chunk at a time) counts
    the rows for the bar and fixes column types that hold in every chunk
    (see :func:`mmsk.iter_table_chunks`), so that a chunk is never read
    differently from the whole file; it also finds a malformed line before
    any prediction is made. An input with a header and no rows gives an
    output with the header (CSV) or the schema (Parquet) and no rows.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn.linear_model import LinearRegression
    >>> from mmsk import predict_table
    >>> folder = getfixture("tmp_path")
    >>> data = pd.DataFrame({"key": list("abcde"), "x": [0.0, 1.0, 2.0, 3.0, 4.0]})
    >>> data.to_csv(folder / "data.csv", index=False)
    >>> model = LinearRegression().fit(data[["x"]], 2 * data["x"])
    >>> predict_table(model, folder / "data.csv", folder / "pred.csv", chunk_size=2,
    ...               columns=["x"], id_column="key", decimals=3)
    5
    >>> print((folder / "pred.csv").read_text().strip())
    key,prediction
    a,0.0
    b,2.0
    c,4.0
    d,6.0
    e,8.0
    """
    import numpy as np
    import pandas as pd
    from tqdm.auto import tqdm

    methods = _methods(method)
    needed = None
    if columns is not None:
        needed = [*columns, *([id_column] if id_column is not None else [])]
    table = _Table(src, needed, chunk_size)
    if id_column is not None and id_column not in table.header:
        raise missing_columns_error(src, [id_column], table.header)
    disable = None if progress is None else not progress
    bar = tqdm(total=table.n_rows, unit="row", unit_scale=True, disable=disable)
    registry: dict[Any, Any] = {}  # warnings repeated by every chunk are shown once
    with TableWriter(dst) as out, bar:
        for chunk in table.chunks():
            if len(chunk):
                frame = _chunk_output(
                    model,
                    chunk,
                    methods,
                    features=None if columns is None else list(dict.fromkeys(columns)),
                    id_column=id_column,
                    prepare=prepare,
                    decimals=decimals,
                    src=src,
                    registry=registry,
                )
                out.write(frame)
                bar.update(len(chunk))
        if out.n_rows == 0:  # a header and no rows: the header (or schema), no rows
            if id_column is None:
                first = pd.DataFrame({"row": np.empty(0, dtype=np.int64)})
            else:
                first = table.empty()[[id_column]].reset_index(drop=True)
            out.write(pd.concat([first, _empty_output(model, methods)], axis=1))
    return out.n_rows
