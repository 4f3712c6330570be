"""Tables larger than memory: CSV and Parquet files read and written in chunks.

:func:`iter_table_chunks` yields a file's rows a fixed number at a time, as
DataFrames indexed by their 0-based row numbers in the file, with the same
column types in every chunk. :class:`TableWriter` appends DataFrames to a
CSV file (the header once) or a Parquet file (one row group per chunk) and
moves the file into place only when it is complete. pandas reads CSV,
pyarrow reads and writes Parquet (extra ``parquet``); this module only joins
them. :mod:`mmsk._stream` builds prediction on them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from ._optional import import_optional

__all__ = ["DEFAULT_CHUNK_SIZE", "TableWriter", "is_parquet", "iter_table_chunks"]

#: Rows per chunk unless told otherwise.
DEFAULT_CHUNK_SIZE = 10_000
#: File name endings read and written as Parquet; anything else is CSV.
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")


def is_parquet(path: str | os.PathLike[str]) -> bool:
    """Tell whether ``path`` names a Parquet file (by its ending), else CSV.

    Examples
    --------
    >>> from mmsk._tables import is_parquet
    >>> is_parquet("data/part-0.parquet"), is_parquet("data.csv.gz")
    (True, False)
    """
    return Path(path).suffix.lower() in PARQUET_SUFFIXES


def check_chunk_size(chunk_size: Any) -> int:
    """Return ``chunk_size`` if it is an int >= 1, else raise a ValueError."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    return chunk_size


def missing_columns_error(path: Any, missing: Sequence[str], have: Sequence[Any]) -> ValueError:
    """Make the error for columns a file lacks: it names them, all the ones it has, the closest."""
    from ._cli_params import did_you_mean  # stdlib only

    have = [str(c) for c in have]
    hint = did_you_mean(missing, have)
    names = ", ".join(map(repr, missing))
    return ValueError(f"{path} has no column {names} (it has: {', '.join(have)}){hint}")


# -- reading -----------------------------------------------------------------------
class _Table:
    """A CSV or Parquet file opened for reading in chunks: header, row count, chunks."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        columns: Sequence[str] | None,
        chunk_size: int,
        dtype: Mapping[str, Any] | None = None,
    ):
        self.path = path
        self.chunk_size = check_chunk_size(chunk_size)
        if not Path(path).is_file():
            raise FileNotFoundError(f"no such data file: {path}")
        self.parquet = is_parquet(path)
        self.header = self._parquet_header() if self.parquet else self._csv_header()
        if columns is not None:
            columns = list(dict.fromkeys(columns))  # once each, in order
            missing = [c for c in columns if c not in self.header]
            if missing:
                raise missing_columns_error(path, missing, self.header)
        self.columns = columns
        self.dtype = dtype
        self.n_rows: int | None = None
        if self.parquet:
            self.n_rows = self._file.metadata.num_rows
        elif dtype is None:
            self.n_rows, self.dtype = self._scan_csv()

    # -- CSV ---------------------------------------------------------------------
    def _read_csv(self, **kwargs: Any) -> Any:
        import pandas as pd

        try:
            return pd.read_csv(self.path, **kwargs)
        except (ValueError, UnicodeDecodeError) as exc:  # pandas' parser errors are ValueErrors
            raise ValueError(f"cannot read {self.path} as CSV: {exc}") from exc

    def _csv_header(self) -> list[Any]:
        return list(self._read_csv(nrows=0).columns)

    def _csv_chunks(self, dtype: Mapping[str, Any] | None) -> Iterator[Any]:
        reader = self._read_csv(usecols=self.columns, chunksize=self.chunk_size, dtype=dtype)
        with reader:
            while True:
                try:
                    chunk = next(reader)
                except StopIteration:
                    return
                except (ValueError, UnicodeDecodeError) as exc:
                    raise ValueError(f"cannot read {self.path} as CSV: {exc}") from exc
                yield chunk

    def _scan_csv(self) -> tuple[int, dict[str, Any]]:
        """Count the rows, and find the column types that hold in every chunk.

        pandas infers each chunk's types from that chunk alone: a column of
        text whose values in one chunk all look like numbers, or are all
        missing, would come out as numbers there. One pass over the needed
        columns finds each column's kind in every chunk; where they differ,
        the column is read as float (integers and floats) or as text.
        """
        kinds: dict[str, set[str]] = {}
        n_rows = 0
        for chunk in self._csv_chunks(dtype=None):
            n_rows += len(chunk)
            for name, values in chunk.items():
                kinds.setdefault(name, set()).add(_kind(values))
        dtypes: dict[str, Any] = {}
        for name, seen in kinds.items():
            known = seen - {"empty"}
            if len(seen) == 1 or known <= {"bool"}:
                continue  # one kind, or booleans with gaps (the same values either way)
            dtypes[name] = "float64" if known <= {"int", "float"} else str
        return n_rows, dtypes

    # -- Parquet -----------------------------------------------------------------
    def _parquet_header(self) -> list[str]:
        pq = import_optional("pyarrow.parquet", "parquet")
        try:
            self._file = pq.ParquetFile(self.path)
        except Exception as exc:  # noqa: BLE001 - pyarrow's errors for a file that is not Parquet
            raise ValueError(f"cannot read {self.path} as Parquet: {exc}") from exc
        schema = self._file.schema_arrow
        index = (schema.pandas_metadata or {}).get("index_columns", [])
        return [n for n in schema.names if n not in index]  # a saved pandas index is not data

    def _parquet_chunks(self) -> Iterator[Any]:
        columns = self.header if self.columns is None else self.columns
        batches = self._file.iter_batches(batch_size=self.chunk_size, columns=columns)
        for batch in batches:
            yield batch.to_pandas()

    def chunks(self) -> Iterator[Any]:
        """Yield the chunks, indexed by their data row numbers, columns in order."""
        import pandas as pd

        chunks = self._parquet_chunks() if self.parquet else self._csv_chunks(self.dtype)
        start = 0
        for chunk in chunks:
            if self.columns is not None and list(chunk.columns) != self.columns:
                chunk = chunk[self.columns]
            chunk.index = pd.RangeIndex(start, start + len(chunk))
            start += len(chunk)
            yield chunk

    def empty(self) -> Any:
        """Return a frame with the file's (selected) columns and no rows."""
        if self.parquet:
            columns = self.header if self.columns is None else self.columns
            return self._file.schema_arrow.empty_table().select(columns).to_pandas()
        frame = self._read_csv(nrows=0, usecols=self.columns, dtype=self.dtype)
        return frame if self.columns is None else frame[self.columns]


def _kind(values: Any) -> str:
    """Tell the kind of a column of one CSV chunk: empty, bool, int, float or str."""
    import pandas as pd

    if values.isna().all():
        return "empty"
    if pd.api.types.is_bool_dtype(values):
        return "bool"
    if pd.api.types.is_integer_dtype(values):
        return "int"
    if pd.api.types.is_float_dtype(values):
        return "float"
    if values.dtype == object and all(isinstance(v, bool) for v in values.dropna()):
        return "bool"
    return "str"


def iter_table_chunks(
    path: str | os.PathLike[str],
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    *,
    columns: Sequence[str] | None = None,
    dtype: Mapping[str, Any] | None = None,
) -> Iterator[Any]:
    """Read a CSV or Parquet file as DataFrames of at most ``chunk_size`` rows.

    Memory holds one chunk at a time, whatever the file's length. A file
    whose name ends in ``.parquet``, ``.pq`` or ``.parq`` is read with
    :meth:`pyarrow.parquet.ParquetFile.iter_batches` (extra ``parquet``),
    any other with :func:`pandas.read_csv` (``chunksize=``; a header row,
    comma separated, compression inferred from the name).

    Parameters
    ----------
    path : str or path-like
        The file.
    chunk_size : int, default=10_000
        Most rows per chunk.
    columns : sequence of str or None, default=None
        Columns to read, in this order; None reads all of them. Checked
        against the header before any row is read.
    dtype : mapping or None, default=None
        CSV only: column types for :func:`pandas.read_csv`. When None, a
        first pass over the columns finds types that hold in every chunk
        (pandas infers types per chunk: a text column whose values in one
        chunk all look like numbers, or are all missing, would be numbers
        there); such a column is read as text, or as float when it holds
        integers and floats. The pass reads one chunk at a time too.

    Returns
    -------
    iterator of pandas.DataFrame
        The chunks, each indexed by its rows' 0-based numbers in the file
        (the first data row is 0), so ``chunk.index[0]`` says where the
        chunk starts. The file is opened and its header checked at once,
        so a missing file or column raises here, not at the first chunk.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If ``columns`` names a column the file lacks (the message lists the
        ones it has), the file cannot be parsed (pandas' message names the
        line), or ``chunk_size`` is not an int >= 1.
    ImportError
        For a Parquet file without pyarrow.

    See Also
    --------
    mmsk.predict_table : Predict over such a file, chunk by chunk.

    Examples
    --------
    >>> import pandas as pd
    >>> from mmsk import iter_table_chunks
    >>> path = getfixture("tmp_path") / "t.csv"
    >>> pd.DataFrame({"x": range(5), "name": list("abcde")}).to_csv(path, index=False)
    >>> [(chunk.index[0], len(chunk)) for chunk in iter_table_chunks(path, 2)]
    [(0, 2), (2, 2), (4, 1)]
    >>> next(iter_table_chunks(path, 2, columns=["name"])).columns.tolist()
    ['name']
    """
    return _Table(path, columns, chunk_size, dtype).chunks()


# -- writing -----------------------------------------------------------------------
class TableWriter:
    """Append DataFrames to a CSV or Parquet file, or CSV to an open text stream.

    A path gets a temporary file next to it, moved into place by
    :meth:`close` (its folder is created): an interrupted or failed run
    leaves no partial file, nor does it harm an existing one. CSV is
    written with :meth:`pandas.DataFrame.to_csv` (no index, the header
    before the first rows); Parquet with :class:`pyarrow.parquet.ParquetWriter`
    (one row group per frame, the schema of the first frame).

    Parameters
    ----------
    dst : str, path-like or text stream
        Where to write; a name ending in ``.parquet``, ``.pq`` or ``.parq``
        is Parquet, any other name or a stream (e.g. ``sys.stdout``) CSV.

    Examples
    --------
    >>> import pandas as pd
    >>> from mmsk._tables import TableWriter
    >>> path = getfixture("tmp_path") / "out.csv"
    >>> with TableWriter(path) as out:
    ...     out.write(pd.DataFrame({"row": [0, 1]}))
    ...     out.write(pd.DataFrame({"row": [2]}))
    >>> path.read_text().split()
    ['row', '0', '1', '2']
    """

    def __init__(self, dst: str | os.PathLike[str] | IO[str]):
        self.dst = dst
        self.stream = hasattr(dst, "write")
        self.parquet = not self.stream and is_parquet(dst)  # type: ignore[arg-type]
        self.n_rows = 0
        self._file: Any = dst if self.stream else None
        self._tmp: Path | None = None
        self._writer: Any = None
        self._schema: Any = None
        if self.parquet:
            self._pa = import_optional("pyarrow", "parquet")
            self._pq = import_optional("pyarrow.parquet", "parquet")
        if not self.stream:
            target = Path(dst)  # type: ignore[arg-type]
            target.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
            if not self.parquet:
                self._file = open(self._tmp, "x", newline="", encoding="utf-8")  # noqa: SIM115

    def write(self, frame: Any) -> None:
        """Append the rows of ``frame`` (the first call also fixes the columns)."""
        if self.parquet:
            self._write_parquet(frame)
        else:
            frame.to_csv(self._file, index=False, header=self._schema is None)
            self._file.flush()  # each chunk's rows reach the file (or pipe) before the next
            self._schema = list(frame.columns)
        self.n_rows += len(frame)

    def _write_parquet(self, frame: Any) -> None:
        pa = self._pa
        if self._writer is None:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            self._schema = table.schema
            self._writer = self._pq.ParquetWriter(self._tmp, self._schema)
        else:
            try:
                table = pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
                raise ValueError(
                    f"{self.dst}: these rows do not fit the columns of the first ones "
                    f"({self._schema.to_string(show_schema_metadata=False)}): {exc}"
                ) from exc
        self._writer.write_table(table)

    def close(self) -> None:
        """Finish the file and move it into place (a stream is only flushed)."""
        if self._writer is not None:
            self._writer.close()
        if self.stream:
            self._file.flush()
            return
        if self._file is not None:
            self._file.close()
        if self._tmp is not None:
            os.replace(self._tmp, self.dst)  # type: ignore[arg-type]
            self._tmp = None

    def abort(self) -> None:
        """Drop what was written to a path (a stream keeps what it got)."""
        if self.stream:
            return
        try:
            if self._writer is not None:
                self._writer.close()
            if self._file is not None:
                self._file.close()
        finally:
            if self._tmp is not None:
                self._tmp.unlink(missing_ok=True)
                self._tmp = None

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
