"""Shared parameter text for the extractors' docstrings.

A docstring names a shared block as ``{on_error}``; :func:`fill_doc` swaps it
for the text below, indented as a numpydoc parameter entry.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = ["SHARED_DOCS", "fill_doc"]

T = TypeVar("T")

SHARED_DOCS: dict[str, str] = {
    "items": """\
    An *item* is a path (``str`` or :class:`pathlib.Path`), raw ``bytes``,
    an in-memory object, or a missing value (``None``, ``NaN``, ``pd.NA``).
    The input is a 1-D sequence of items (list, array, :class:`pandas.Series`)
    or a one-column 2-D input, so the transformer works inside a
    :class:`~sklearn.compose.ColumnTransformer` given a scalar column name.
    A missing item gives a row of NaN, which the fusion estimators read as a
    missing modality.""",
    "on_error": """\
    on_error : {"raise", "nan"}, default="raise"
        What to do with an item that cannot be read (no such file, corrupt
        or truncated data, wrong type, empty content). ``"raise"`` raises an
        :class:`~mmsk._items.ItemError` naming the column, the row and the
        item; ``"nan"`` gives that row NaN features and warns once with the
        number of such rows. No row is ever dropped.""",
    "n_jobs": """\
    n_jobs : int or None, default=None
        Number of joblib workers that load and process items, in batches.
        ``None`` means 1 unless in a :func:`joblib.parallel_backend` context;
        ``-1`` means all processors. The output does not depend on it.""",
    "memory": """\
    memory : None, str, path-like or joblib.Memory, default=None
        Where to cache per-item results, as for
        :class:`~sklearn.pipeline.Pipeline`. The cache is addressed by the
        item's content (the bytes of a file, not its name; the data of an
        array) and by the parameters and library versions that change the
        output, so cross-validation folds and grid-search candidates never
        extract the same item twice. A process reads an unchanged file once
        and serves repeat transforms from memory. A location that cannot be
        used gives one ``CacheWarning`` and the features are computed without
        it; results never depend on the cache.""",
    "verbose": """\
    verbose : int, default=0
        Show a tqdm progress bar over items when > 0.""",
    "max_duration": """\
    max_duration : float or None, default=600.0
        Longest clip in seconds; None: any. Checked on the file's header
        before decoding (frames / sampling rate), together with a bound on
        the samples decoded (``frames * channels`` at most ``max_duration``
        seconds of stereo at 192 kHz), so a small file whose header implies
        an enormous clip costs nothing: it is an item error (or, with
        ``on_error="nan"``, a NaN row). A waveform array longer than
        ``max_duration`` at ``sr`` is refused too. See ``docs/security.md``.""",
    "file_limits": """\
    max_file_bytes : int or None, default=268435456 (256 MiB)
        Largest file a path item may name, checked from its size before
        reading; None: any size. Only regular files are read: a directory,
        a FIFO, a device or a socket is an item error, never a hang.
    allowed_dirs : None, path-like or sequence of path-like, default=None
        Confine path items to these directories: a path that resolves
        (symlinks and ``..`` followed) outside all of them is an item error.
        None: any path. Use it whenever the column comes from someone else
        (an uploaded CSV file, a request). See ``docs/security.md``.""",
}


def fill_doc(obj: T) -> T:
    """Replace ``{name}`` markers in ``obj.__doc__`` by the shared texts.

    Parameters
    ----------
    obj : class or function
        Object whose docstring holds markers.

    Returns
    -------
    obj : class or function
        The same object, its docstring filled.

    Examples
    --------
    >>> from mmsk._docstrings import fill_doc
    >>> @fill_doc
    ... class A:
    ...     '''Doc.
    ...
    ...     Parameters
    ...     ----------
    ...     {verbose}
    ...     '''
    >>> "tqdm" in A.__doc__
    True
    """
    doc = obj.__doc__
    if doc:
        for key, text in SHARED_DOCS.items():
            doc = doc.replace("    {" + key + "}", text)
        obj.__doc__ = doc
    return obj
