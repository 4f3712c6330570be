"""What the server of :mod:`mmsk.serve` accepts: input columns, request models, decoding.

Three jobs, none of which needs a web framework:

- :func:`input_columns` finds the model's input columns and their roles, from
  a model card or from the fitted pipeline's ``ColumnTransformer``;
- :func:`request_models` turns them into pydantic models (one field per
  column) that validate a request and document it in the OpenAPI schema;
- :func:`decode_records` turns validated records into the DataFrame the
  pipeline predicts on, enforcing the limits: base64 that decodes, images
  within a pixel count, audio within a duration, paths inside the allowed
  directories. Every refusal is a :class:`Problem` naming the record, the
  column and the reason.

pydantic (a dependency of fastapi, extra ``serve``) is imported inside
:func:`request_models` only.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._files import FileTooLarge, PathOutside, confine, read_regular
from ._items import BadItem, describe_item

__all__ = [
    "ColumnSpec",
    "Limits",
    "Problem",
    "RequestProblem",
    "decode_records",
    "input_columns",
    "request_models",
]

ROLES = ("image", "audio", "text", "numeric", "categorical")
MEDIA_ROLES = ("image", "audio")
#: What a value of each role must be, as said in error messages and field descriptions.
EXPECTED = {
    "image": 'an object {"base64": "<bytes of an image file>"}, a path string, or null',
    "audio": 'an object {"base64": "<bytes of an audio file>"}, a path string, or null',
    "text": "a string or null",
    "numeric": "a finite number or null",
}
_SHOWN_CATEGORIES = 20


@dataclass(frozen=True)
class ColumnSpec:
    """One input column of the model: its name, role and accepted values."""

    name: str
    role: str
    #: For categorical columns: "string", "number" or "any" (the fitted categories' type).
    kind: str = "any"
    categories: tuple[Any, ...] | None = None
    #: The value a JSON null becomes (None, or NaN where the encoder learned NaN).
    missing: Any = None
    description: str | None = None

    @property
    def expected(self) -> str:
        """Say what a value of this column must be."""
        if self.role != "categorical":
            return EXPECTED[self.role]
        return {
            "string": "a string (a category) or null",
            "number": "a finite number (a category) or null",
        }.get(self.kind, "a string, number or boolean (a category) or null")


@dataclass(frozen=True)
class Problem:
    """Why one value (or the whole request, when ``record`` is None) was refused."""

    record: int | None
    column: str | None
    reason: str
    status: int = 422

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form ``{"record", "column", "reason"}``."""
        return {"record": self.record, "column": self.column, "reason": self.reason}


class RequestProblem(Exception):
    """A request refused for the problems it lists; the status is the first one's."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        self.status = self.problems[0].status
        super().__init__(summary(self.problems))


def summary(problems: Sequence[Problem]) -> str:
    """One line that says what is wrong: the first problem, and how many more."""
    first = problems[0]
    where = []
    if first.record is not None:
        where.append(f"record {first.record}")
    if first.column is not None:
        where.append(f"column {first.column!r}")
    text = (", ".join(where) + ": " if where else "") + first.reason
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more problem{'s' * (len(problems) > 2)})"
    return text


@dataclass(frozen=True)
class Limits:
    """The bounds a request must keep; see :func:`mmsk.serve.create_app`."""

    max_request_bytes: int
    max_image_pixels: int
    max_audio_seconds: float
    max_records: int
    allow_dirs: tuple[Path, ...] = ()


# -- the model's input columns -------------------------------------------------------
def _base_estimator(transformer: Any) -> Any:
    steps = getattr(transformer, "steps", None)
    return steps[0][1] if steps else transformer


def _role_of(transformer: Any) -> str:
    """Guess a ColumnTransformer branch's role from the class of its first estimator."""
    est = _base_estimator(transformer)
    cls = type(est)
    module, name = cls.__module__, cls.__name__
    if module.startswith("mmsk.image"):
        return "image"
    if module.startswith("mmsk.audio") or name == "AudioEmbedder":
        return "audio"
    if module.startswith(("mmsk.text", "sklearn.feature_extraction.text")) or name == "TfidfSVD":
        return "text"
    if name in ("OneHotEncoder", "OrdinalEncoder", "TargetEncoder"):
        return "categorical"
    return "numeric"


def _column_names(columns: Any, names_in: Sequence[str] | None) -> list[str]:
    if isinstance(columns, str):
        return [columns]
    values = list(np.atleast_1d(np.asarray(columns, dtype=object)))
    if all(isinstance(v, str) for v in values):
        return [str(v) for v in values]
    if names_in is not None and all(
        isinstance(v, (int, np.integer, bool, np.bool_)) for v in values
    ):
        if values and all(isinstance(v, (bool, np.bool_)) for v in values):
            return [n for n, keep in zip(names_in, values, strict=True) if keep]
        return [str(names_in[int(v)]) for v in values]
    raise ValueError(
        f"cannot tell the input column names from the column selection {columns!r}; "
        'pass card={"columns": [{"name": ..., "role": ...}, ...]}'
    )


def _categories(encoder: Any, position: int) -> tuple[str, tuple[Any, ...] | None, Any]:
    cats = getattr(_base_estimator(encoder), "categories_", None)
    if cats is None or position >= len(cats):
        return "any", None, None
    values = [v.item() if isinstance(v, np.generic) else v for v in cats[position]]
    is_nan = [isinstance(v, float) and math.isnan(v) for v in values]
    present = [v for v, nan in zip(values, is_nan, strict=True) if v is not None and not nan]
    if present and all(isinstance(v, str) for v in present):
        kind = "string"
    elif present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        kind = "number"
    else:
        kind = "any"
    # A null becomes the missing value the encoder learned (None and NaN are two categories).
    if any(v is None for v in values):
        missing = None
    elif any(is_nan) or kind == "number":
        missing = float("nan")
    else:
        missing = None
    return kind, tuple(present), missing


def _feature_step(model: Any) -> Any:
    steps = getattr(model, "named_steps", None)
    if steps is None:
        return model if hasattr(model, "transformers_") else None
    if "features" in steps and hasattr(steps["features"], "transformers_"):
        return steps["features"]
    first = model.steps[0][1]
    return first if hasattr(first, "transformers_") else None


def _columns_from_pipeline(model: Any) -> list[ColumnSpec]:
    features = _feature_step(model)
    if features is None:
        names = getattr(model, "feature_names_in_", None)
        if names is None:
            raise ValueError(
                f"cannot tell the input columns of a {type(model).__name__}: it is neither a "
                "pipeline with a fitted ColumnTransformer nor fitted on a DataFrame; pass "
                'card={"columns": [{"name": ..., "role": ...}, ...]}'
            )
        return [ColumnSpec(str(n), "numeric") for n in names]
    names_in = getattr(features, "feature_names_in_", None)
    specs: list[ColumnSpec] = []
    for _, transformer, columns in features.transformers_:
        if isinstance(transformer, str):  # "drop" or "passthrough"
            if transformer == "drop":
                continue
            role = "numeric"
        else:
            role = _role_of(transformer)
        for j, name in enumerate(_column_names(columns, names_in)):
            if role == "categorical":
                kind, cats, missing = _categories(transformer, j)
                specs.append(ColumnSpec(name, role, kind, cats, missing))
            else:
                specs.append(ColumnSpec(name, role))
    return specs


def _card_roles(card_columns: Any) -> list[tuple[str, str, str | None]]:
    """Read a card's ``columns``: a list of ``{"name", "role"}`` or a mapping role -> names."""
    out: list[tuple[str, str, str | None]] = []
    if isinstance(card_columns, Mapping):
        for role, names in card_columns.items():
            for name in [names] if isinstance(names, str) else list(names or ()):
                out.append((str(name), str(role), None))
    else:
        for entry in card_columns:
            if not isinstance(entry, Mapping) or "name" not in entry:
                raise ValueError(
                    f'card columns must be {{"name": ..., "role": ...}}, got {entry!r}'
                )
            role = entry.get("role", entry.get("modality", "numeric"))
            out.append((str(entry["name"]), str(role), entry.get("description")))
    for name, role, _ in out:
        if role not in ROLES:
            raise ValueError(f"card column {name!r}: unknown role {role!r}; roles are {ROLES}")
    return out


def _card_columns(card: Mapping[str, Any] | None) -> Any:
    """Return the roles a card lists: ``columns``, else a mmsk.save card's ``inputs.roles``."""
    if not card:
        return None
    if card.get("columns"):
        return card["columns"]
    roles = (card.get("inputs") or {}).get("roles")
    if isinstance(roles, Mapping) and any(roles.values()):
        return roles
    return None


def input_columns(model: Any, card: Mapping[str, Any] | None = None) -> list[ColumnSpec]:
    """Return the model's input columns, from ``card["columns"]`` or the fitted pipeline.

    The card, when it lists columns, says which columns there are and their
    roles; the fitted pipeline adds what it knows (the categories of a
    categorical column).

    Parameters
    ----------
    model : estimator
        The fitted model.
    card : mapping or None, default=None
        A model card (:func:`mmsk.io.read_card`).

    Returns
    -------
    list of ColumnSpec
        One per input column, in the pipeline's order.

    Examples
    --------
    >>> from mmsk._serve_schema import input_columns
    >>> card = {"columns": [{"name": "img", "role": "image"}, {"name": "age", "role": "numeric"}]}
    >>> [(c.name, c.role) for c in input_columns(None, card)]
    [('img', 'image'), ('age', 'numeric')]
    """
    listed = _card_columns(card)
    try:
        fitted = {c.name: c for c in _columns_from_pipeline(model)}
    except ValueError:
        if listed is None:
            raise
        fitted = {}
    if listed is None:
        specs = list(fitted.values())
    else:
        specs = []
        for name, role, description in _card_roles(listed):
            known = fitted.get(name)
            if known is not None and known.role == role:
                specs.append(ColumnSpec(**{**known.__dict__, "description": description}))
            else:
                specs.append(ColumnSpec(name, role, description=description))
    if not specs:
        raise ValueError("the model has no input columns")
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ValueError(f"input column {spec.name!r} is listed twice")
        seen.add(spec.name)
    return specs


# -- pydantic models -----------------------------------------------------------------
def _description(spec: ColumnSpec) -> str:
    if spec.description:
        return f"{spec.role} column: {spec.description}. Value: {spec.expected}."
    text = f"{spec.role} column. Value: {spec.expected}."
    if spec.role in MEDIA_ROLES:
        text += " A path must lie inside a directory the server allows (--allow-dir)."
    if spec.categories is not None:
        shown = ", ".join(map(repr, spec.categories[:_SHOWN_CATEGORIES]))
        more = len(spec.categories) - _SHOWN_CATEGORIES
        text += f" Known categories: {shown}" + (f" and {more} more" if more > 0 else "") + "."
        text += " An unknown category is encoded as none of them."
    return text


def _example(spec: ColumnSpec) -> Any:
    if spec.role in MEDIA_ROLES:
        return {"base64": f"<base64 of the {spec.role} file>"}
    if spec.role == "text":
        return "some text"
    if spec.role == "categorical" and spec.categories:
        return spec.categories[0]
    return 0.0


def request_models(columns: Sequence[ColumnSpec], *, max_records: int) -> tuple[type, type]:
    """Build the pydantic models of one record and of a request body.

    The record model has one field per input column, with the column's name
    as its alias (so any column name works), its type and a description; it
    forbids other keys. Every column is required: send null for a missing
    value.

    Parameters
    ----------
    columns : sequence of ColumnSpec
        The input columns, see :func:`input_columns`.
    max_records : int
        Most records a request may hold.

    Returns
    -------
    Record, PredictRequest : pydantic model classes
        ``PredictRequest`` is ``{"records": [Record, ...]}``.

    Examples
    --------
    >>> from mmsk._serve_schema import ColumnSpec, request_models
    >>> Record, Request = request_models([ColumnSpec("age", "numeric")], max_records=10)
    >>> Request.model_validate({"records": [{"age": 31}]}).records[0].model_dump(by_alias=True)
    {'age': 31.0}
    """
    from typing import Annotated

    from pydantic import (
        BaseModel,
        ConfigDict,
        Field,
        StrictBool,
        StrictInt,
        StrictStr,
        create_model,
    )

    class Base64Item(BaseModel):
        """The bytes of a file, base64-encoded (RFC 4648, standard alphabet, padded)."""

        model_config = ConfigDict(extra="forbid")
        base64: StrictStr = Field(description="The file's bytes, base64-encoded.")

    number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
    types: dict[str, Any] = {
        "image": Base64Item | StrictStr | None,
        "audio": Base64Item | StrictStr | None,
        "text": StrictStr | None,
        "numeric": number | None,
    }
    category_types = {
        "string": StrictStr | None,
        "number": StrictInt | number | None,
        "any": StrictStr | StrictInt | number | StrictBool | None,
    }
    fields: dict[str, Any] = {}
    for i, spec in enumerate(columns):
        kind = category_types[spec.kind] if spec.role == "categorical" else types[spec.role]
        info = Field(alias=spec.name, title=spec.name, description=_description(spec))
        fields[f"col_{i}"] = (kind, info)
    record = create_model(
        "Record",
        __config__=ConfigDict(extra="forbid"),  # keys are the aliases, the column names
        __doc__="One row: a value for every input column of the model (null if missing).",
        **fields,
    )
    example = {spec.name: _example(spec) for spec in columns}
    request = create_model(
        "PredictRequest",
        __config__=ConfigDict(
            extra="forbid", json_schema_extra={"examples": [{"records": [example]}]}
        ),
        __doc__="Rows to predict, in order; the answer has one prediction per row.",
        records=(
            list[record],  # type: ignore[valid-type]
            Field(min_length=1, max_length=max_records, description="The rows to predict."),
        ),
    )
    return record, request


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
        Records validated by the model of :func:`request_models`, keyed by
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
    >>> from mmsk._serve_schema import ColumnSpec, Limits, decode_records
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
