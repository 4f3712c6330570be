"""How the server of :mod:`mmsk.serve` decodes validated records, under its limits.

:func:`decode_records` turns the records that the models of
:func:`mmsk._serve_schema.request_models` validated into the DataFrame the
pipeline predicts on, enforcing the limits: base64 that decodes, images
within a pixel count, audio within a duration, paths inside the allowed
directories. Every refusal is a :class:`mmsk._serve_schema.Problem` naming
the record, the column and the reason.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ._files import FileTooLarge, PathOutside, confine, read_regular
from ._items import BadItem, describe_item
from ._serve_schema import MEDIA_ROLES, ColumnSpec, Limits, Problem, RequestProblem

__all__ = ["decode_records", "describe_value"]


# -- decoding ------------------------------------------------------------------------
class _Refused(Exception):
    """One value refused: the reason, and the HTTP status to answer with."""

    def __init__(self, reason: str, status: int = 422):
        super().__init__(reason)
        self.reason = reason
        self.status = status


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _Refused(f"not valid base64 ({exc})") from None


def _read_allowed(value: str, limits: Limits) -> bytes:
    """Read the file a request names, if it lies inside an allowed directory.

    The rules are the extractors' (:mod:`mmsk._files`): symlinks and ``..``
    resolved before the check, regular files only, the size from ``fstat``
    before reading.
    """
    if not limits.allow_dirs:
        raise _Refused(
            'paths are not accepted here: send the file as {"base64": ...} '
            "(the server's operator can allow directories with --allow-dir)",
            403,
        )
    if not value:
        raise _Refused("not a valid path", 422)
    try:
        # "~" is no home directory here: the client's home is not ours
        real = confine(value, limits.allow_dirs, base=limits.allow_dirs[0])
        return read_regular(
            real,
            max_bytes=limits.max_request_bytes,
            limit_name="--max-request-bytes",
            nofollow=True,
        )
    except PathOutside as exc:
        raise _Refused(str(exc), 403) from None
    except FileTooLarge as exc:
        raise _Refused(str(exc), 413) from None
    except FileNotFoundError:
        raise _Refused("file not found") from None
    except BadItem as exc:  # not a regular file, empty, a NUL in the path
        raise _Refused(str(exc)) from None
    except OSError as exc:
        raise _Refused(f"cannot open the file ({exc.strerror or type(exc).__name__})") from None


def _check_image(data: bytes, limits: Limits) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            width, height = img.size
            if width * height > limits.max_image_pixels:
                raise _Refused(
                    f"image of {width} x {height} = {width * height} pixels, more than the "
                    f"limit of {limits.max_image_pixels} (--max-image-pixels)",
                    413,
                )
            img.load()
    except Image.DecompressionBombError as exc:  # Pillow's own limit, if lower
        raise _Refused(f"image too large to decode ({exc})", 413) from None
    except UnidentifiedImageError:
        raise _Refused("not an image Pillow can read (unknown format or corrupt header)") from None
    except (OSError, SyntaxError, EOFError, ValueError) as exc:
        text = str(exc).strip() or type(exc).__name__
        raise _Refused(f"the image does not decode: truncated or corrupt ({text})") from None


def _check_audio(data: bytes, limits: Limits) -> None:
    import soundfile as sf

    try:
        info = sf.info(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - libsndfile's errors vary by version
        text = (getattr(exc, "error_string", None) or str(exc)).strip().rstrip(".")
        raise _Refused(f"cannot decode audio ({text}); send WAV, FLAC, OGG or MP3 bytes") from None
    seconds = info.frames / info.samplerate if info.samplerate else math.inf
    if seconds > limits.max_audio_seconds:
        raise _Refused(
            f"audio of {seconds:.1f} s, longer than the limit of {limits.max_audio_seconds:g} s "
            "(--max-audio-seconds)",
            413,
        )


def _media(value: Any, role: str, limits: Limits) -> bytes | None:
    if value is None:
        return None
    data = _read_allowed(value, limits) if isinstance(value, str) else _b64decode(value["base64"])
    if not data:
        raise _Refused("empty file")
    if len(data) > limits.max_request_bytes:
        raise _Refused(f"file larger than {limits.max_request_bytes} bytes", 413)
    if role == "image":
        _check_image(data, limits)
    else:
        _check_audio(data, limits)
    return data


def decode_records(
    records: Iterable[Mapping[str, Any]], columns: Sequence[ColumnSpec], limits: Limits
) -> Any:
    """Turn validated records into the DataFrame the pipeline predicts on.

    Image and audio values become the bytes of their files (decoded base64,
    or read from an allowed path) after the checks: an image must decode
    and keep within ``max_image_pixels``, an audio file's header must say
    at most ``max_audio_seconds``. A JSON null becomes the column's missing
    value.

    Parameters
    ----------
    records : iterable of mapping
        Records validated by the model of
        :func:`mmsk._serve_schema.request_models`, keyed by
        column name.
    columns : sequence of ColumnSpec
        The input columns.
    limits : Limits
        The bounds to enforce.

    Returns
    -------
    pandas.DataFrame
        One row per record, one column per input column.

    Raises
    ------
    RequestProblem
        Listing every refused value with its record, column and reason.

    Examples
    --------
    >>> from pathlib import Path
    >>> from mmsk._serve_decode import decode_records
    >>> from mmsk._serve_schema import ColumnSpec, Limits
    >>> limits = Limits(1000, 100, 1.0, 10)
    >>> frame = decode_records([{"x": 1.5}, {"x": None}], [ColumnSpec("x", "numeric")], limits)
    >>> frame["x"].tolist()
    [1.5, nan]
    >>> decode_records([{"x": "/etc/passwd"}], [ColumnSpec("x", "image")], limits)
    Traceback (most recent call last):
    ...
    mmsk._serve_schema.RequestProblem: record 0, column 'x': paths are not accepted here: ...
    """
    import pandas as pd

    values: dict[str, list[Any]] = {spec.name: [] for spec in columns}
    problems: list[Problem] = []
    for i, record in enumerate(records):
        for spec in columns:
            value = record[spec.name]
            if spec.role in MEDIA_ROLES:
                try:
                    value = _media(value, spec.role, limits)
                except _Refused as exc:
                    problems.append(Problem(i, spec.name, exc.reason, exc.status))
                    value = None
            elif value is None:
                value = spec.missing
            values[spec.name].append(value)
    if problems:
        raise RequestProblem(problems)
    data = {}
    for spec in columns:
        column = values[spec.name]
        if spec.role == "numeric":
            data[spec.name] = np.array([np.nan if v is None else v for v in column], dtype=float)
        elif spec.role == "categorical" and spec.kind == "number":
            data[spec.name] = pd.Series(column)  # int64, or float64 with NaN, as when fitted
        else:
            data[spec.name] = pd.Series(column, dtype=object)
    return pd.DataFrame(data)


def describe_value(value: Any) -> str:
    """Describe a JSON value for an error message: its JSON type and a short repr."""
    kinds = {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}
    kind = "object" if isinstance(value, Mapping) else kinds.get(type(value), type(value).__name__)
    return f"{kind} {describe_item(value, width=40)}"
