"""What the server of :mod:`mmsk.serve` accepts: input columns and request models.

Two jobs, none of which needs a web framework (the third, decoding
validated records under the limits, is :mod:`mmsk._serve_decode`):

- :func:`input_columns` finds the model's input columns and their roles, from
  a model card or from the fitted pipeline's ``ColumnTransformer``;
- :func:`request_models` turns them into pydantic models (one field per
  column) that validate a request and document it in the OpenAPI schema;
- :class:`Problem` and :class:`RequestProblem` are what every refusal is:
  the record, the column and the reason.

pydantic (a dependency of fastapi, extra ``serve``) is imported inside
:func:`request_models` only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ColumnSpec",
    "Limits",
    "Problem",
    "RequestProblem",
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
