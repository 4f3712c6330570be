"""The HTTP service behind ``mmsk serve``: a fitted model behind a small JSON API.

:func:`create_app` wraps a fitted estimator (an mmsk pipeline, or any
estimator fitted on a DataFrame) in a :class:`fastapi.FastAPI` application:

- ``POST /predict``: ``{"records": [{column: value, ...}, ...]}`` ->
  ``{"predictions": [...]}``;
- ``POST /predict_proba`` (classifiers): -> ``{"classes": [...],
  "probabilities": [[...], ...]}``;
- ``GET /health``, ``GET /metadata`` (the model card), and the OpenAPI
  schema (``/openapi.json``, ``/docs``) with one field per input column.

:func:`serve` loads a model file with :mod:`mmsk.io` and runs the
application with uvicorn. The request models live in :mod:`mmsk._serve_schema`,
decoding under the limits in :mod:`mmsk._serve_decode`. fastapi and uvicorn
are the extra ``serve``, imported on first use. See ``docs/serving.md``.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoints'
# annotations, which name request models built inside create_app.

import json
import logging
import math
import os
import threading
import uuid
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from ._files import allowed_roots
from ._items import ItemError
from ._optional import import_optional
from ._serve_decode import decode_records, describe_value
from ._serve_schema import (
    ColumnSpec,
    Limits,
    Problem,
    RequestProblem,
    input_columns,
    request_models,
    summary,
)

__all__ = ["create_app", "serve"]

#: Defaults of the limits (see :func:`create_app`).
MAX_REQUEST_BYTES = 32 * 2**20
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_AUDIO_SECONDS = 300.0
MAX_RECORDS = 256
_SHOWN_PROBLEMS = 20
_OPTIONS_ENV = "MMSK_SERVE_OPTIONS"  # how `serve(workers=n)` hands its options to the workers
_HTTP_PROTOCOL = "mmsk._serve_http:NoDelayHTTPProtocol"  # uvicorn's, with TCP_NODELAY

logger = logging.getLogger("mmsk.serve")


# -- errors --------------------------------------------------------------------------
class _InternalError(Exception):
    """An unexpected failure, already logged with its traceback and request id."""


def _request_id(request: Any) -> str:
    return getattr(request.state, "request_id", None) or uuid.uuid4().hex


def _error_body(problems: list[Problem], request_id: str) -> dict[str, Any]:
    return {
        "error": summary(problems),
        "detail": [p.as_dict() for p in problems[:_SHOWN_PROBLEMS]],
        "request_id": request_id,
    }


def _validation_problems(errors: Iterable[Mapping[str, Any]], columns: list[ColumnSpec]) -> list:
    """Turn pydantic's errors into one problem per (record, column), in plain words."""
    specs = {spec.name: spec for spec in columns}
    names = ", ".join(spec.name for spec in columns)
    problems: dict[tuple[Any, Any], Problem] = {}
    for err in errors:
        kind, loc = err.get("type", ""), tuple(err.get("loc", ()))
        rest = loc[1:] if loc[:1] == ("body",) else loc
        record = column = None
        status = 422
        if kind == "json_invalid":
            status = 400
            where = f" at character {rest[0]}" if rest and isinstance(rest[0], int) else ""
            reason = f"malformed JSON{where}: {err.get('ctx', {}).get('error', 'cannot parse')}"
        elif not rest:
            reason = 'the body must be a JSON object {"records": [{column: value, ...}, ...]}'
        elif rest[0] != "records":
            reason = f'unknown field {rest[0]!r}: the body is {{"records": [...]}}'
        elif len(rest) == 1:
            reason = {
                "missing": 'no "records": the body is {"records": [{column: value, ...}, ...]}',
                "too_short": "records is empty: send at least one record",
                "too_long": f"too many records: {err.get('msg', '')}",
            }.get(kind, "records must be a list of JSON objects, one per row")
            status = 413 if kind == "too_long" else 422
        else:
            record = rest[1] if isinstance(rest[1], int) else None
            if len(rest) == 2:
                reason = f"a record must be a JSON object, got {describe_value(err.get('input'))}"
            else:
                column = str(rest[2])
                spec = specs.get(column)
                if kind == "extra_forbidden" and len(rest) == 3:
                    reason = f"unknown column; the model's input columns are: {names}"
                elif kind == "missing" and len(rest) == 3:
                    reason = (
                        "missing column: every record needs every input column (null if missing)"
                    )
                elif spec is None:
                    reason = err.get("msg", "invalid value")
                else:
                    reason = f"expected {spec.expected}, got {describe_value(err.get('input'))}"
        problems.setdefault(
            (record, column, kind == "json_invalid"), Problem(record, column, reason, status)
        )
    return list(problems.values()) or [Problem(None, None, "invalid request")]


# -- request id and body limit (pure ASGI) -------------------------------------------
async def _send_json(send: Any, status: int, payload: Mapping[str, Any]) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Guard:
    """Give every request an id (``X-Request-ID``) and refuse bodies over ``max_bytes``.

    The body is read here, up to the limit, before any parsing, so an
    oversized request costs at most ``max_bytes`` of memory.
    """

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), id_header]}
            await send(message)

        too_large = [
            Problem(
                None,
                None,
                f"request body larger than {self.max_bytes} bytes (--max-request-bytes)",
                413,
            )
        ]
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _send_json(send_with_id, 413, _error_body(too_large, request_id))
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await _send_json(send_with_id, 413, _error_body(too_large, request_id))
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send_with_id)


# -- the application -----------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    """Return ``value`` as plain JSON data: numpy scalars and arrays, paths, NaN -> null."""
    import numpy as np

    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [_jsonable(v) for v in items]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _default_card(model: Any, columns: list[ColumnSpec], classes: Any) -> dict[str, Any]:
    import sklearn

    from . import __version__

    return {
        "columns": [{"name": c.name, "role": c.role} for c in columns],
        "classes": classes,
        "task": "classification" if classes is not None else "regression",
        "estimator": type(model).__name__,
        "mmsk_version": __version__,
        "sklearn_version": sklearn.__version__,
    }


def _limits(
    allow_dirs: Any,
    max_request_bytes: int,
    max_image_pixels: int,
    max_audio_seconds: float,
    max_records: int,
) -> Limits:
    for name, value in [
        ("max_request_bytes", max_request_bytes),
        ("max_image_pixels", max_image_pixels),
        ("max_records", max_records),
    ]:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    seconds = max_audio_seconds
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ValueError(f"max_audio_seconds must be a number > 0, got {seconds!r}")
    dirs = allowed_roots(allow_dirs or (), name="allowed directory") or ()
    return Limits(max_request_bytes, max_image_pixels, float(seconds), max_records, dirs)


@lru_cache(maxsize=1)
def _response_models() -> tuple[type, type, type]:
    from pydantic import BaseModel, Field

    class PredictResponse(BaseModel):
        predictions: list[Any] = Field(description="One prediction per record, in order.")

    class ProbaResponse(BaseModel):
        classes: list[Any] = Field(description="The classes, in the columns' order.")
        probabilities: list[list[float]] = Field(
            description="One row per record: the probability of each class."
        )

    class ErrorDetail(BaseModel):
        record: int | None = Field(description="Index of the record at fault, if one is.")
        column: str | None = Field(description="The column at fault, if one is.")
        reason: str

    class ErrorResponse(BaseModel):
        error: str = Field(description="The first problem, in one line.")
        detail: list[ErrorDetail] = Field(description="The problems (at most 20).")
        request_id: str = Field(description="Also in the X-Request-ID header and the server log.")

    return PredictResponse, ProbaResponse, ErrorResponse


def create_app(
    model: Any,
    *,
    card: Mapping[str, Any] | None = None,
    allow_dirs: Iterable[str | os.PathLike] = (),
    max_request_bytes: int = MAX_REQUEST_BYTES,
    max_image_pixels: int = MAX_IMAGE_PIXELS,
    max_audio_seconds: float = MAX_AUDIO_SECONDS,
    max_records: int = MAX_RECORDS,
    title: str | None = None,
) -> Any:
    """Build the web application that serves a fitted model.

    Parameters
    ----------
    model : estimator
        A fitted estimator, usually a :func:`~mmsk.make_multimodal_pipeline`
        pipeline. Its input columns and their roles come from ``card`` or,
        without one, from the pipeline's fitted ``ColumnTransformer`` (or,
        for a plain estimator fitted on a DataFrame, ``feature_names_in_``,
        all numeric).
    card : mapping or None, default=None
        The model card (:func:`mmsk.io.read_card`), served at ``/metadata``;
        its ``"columns"`` (``[{"name": ..., "role": ...}, ...]``) name the
        input columns. None: a card is made from the model.
    allow_dirs : iterable of path-like, default=()
        Directories whose files a request may name by path (symlinks and
        ``..`` resolved before the check); relative paths are read from the
        first one. Empty: paths are refused, files come as base64.
    max_request_bytes : int, default=33554432 (32 MiB)
        Largest request body, and largest file named by a path.
    max_image_pixels : int, default=16777216 (4096 x 4096)
        Most pixels of an image, read from its header before decoding.
    max_audio_seconds : float, default=300.0
        Longest audio clip, read from its header before decoding.
    max_records : int, default=256
        Most records in one request.
    title : str or None, default=None
        Title of the OpenAPI schema; None says what the model is.

    Returns
    -------
    fastapi.FastAPI
        The application: run it with any ASGI server, e.g.
        ``uvicorn.run(app)``.

    Raises
    ------
    ImportError
        If fastapi is not installed (``pip install "mmsk[serve]"``).
    ValueError
        If a limit is not positive, an allowed directory does not exist, or
        the input columns cannot be told from the model or the card.

    See Also
    --------
    serve : Load a model file and run this application.

    Notes
    -----
    Prediction runs in a thread pool (the endpoints are synchronous), so
    the server keeps answering while a request is predicted. Requests are
    validated and their files decoded and checked concurrently; the
    model's ``predict`` itself runs under a lock, one request at a time,
    since estimators are not thread-safe in general (the fusion networks
    set torch's global thread count). For parallel prediction run several
    worker processes (``serve(workers=n)``), each with its own model.

    Examples
    --------
    >>> import pandas as pd
    >>> from fastapi.testclient import TestClient
    >>> from sklearn.linear_model import LogisticRegression
    >>> from mmsk.serve import create_app
    >>> X = pd.DataFrame({"age": [20.0, 30.0, 40.0, 50.0]})
    >>> model = LogisticRegression().fit(X, [0, 0, 1, 1])
    >>> client = TestClient(create_app(model))
    >>> client.post("/predict", json={"records": [{"age": 22}, {"age": 48}]}).json()
    {'predictions': [0, 1]}
    >>> answer = client.post("/predict", json={"records": [{"age": "old"}]})
    >>> answer.status_code, answer.json()["error"]
    (422, "record 0, column 'age': expected a finite number or null, got string 'old'")
    """
    import_optional("fastapi", "serve")
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from . import __version__

    limits = _limits(
        allow_dirs, max_request_bytes, max_image_pixels, max_audio_seconds, max_records
    )
    columns = input_columns(model, card)
    _, PredictRequest = request_models(columns, max_records=limits.max_records)
    PredictResponse, ProbaResponse, ErrorResponse = _response_models()
    raw_classes = getattr(model, "classes_", None)
    classes = None if raw_classes is None else _jsonable(raw_classes)
    metadata = _jsonable(dict(card) if card is not None else _default_card(model, columns, classes))
    lock = threading.Lock()

    errors = {
        status: {"model": ErrorResponse, "description": text}
        for status, text in [
            (400, "Malformed JSON."),
            (403, "A path outside the allowed directories, or paths not allowed."),
            (413, "Over a limit: request bytes, records, image pixels or audio seconds."),
            (422, "A missing or unknown column, a value of the wrong type, an undecodable file."),
            (500, "An unexpected error; its traceback is in the server log under the request id."),
        ]
    }
    app = FastAPI(
        title=title or f"mmsk model: {type(model).__name__}",
        version=__version__,
        description="Predictions of an mmsk model. Columns: "
        + ", ".join(f"`{c.name}` ({c.role})" for c in columns)
        + '. Images and audio come as `{"base64": ...}` or as paths inside allowed directories.',
    )
    app.add_middleware(_Guard, max_bytes=limits.max_request_bytes)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = _validation_problems(exc.errors(), columns)
        if "json" not in request.headers.get("content-type", "") and problems[0].record is None:
            problems = [
                Problem(None, None, "send the body as JSON (Content-Type: application/json)")
            ]
        return JSONResponse(_error_body(problems, _request_id(request)), problems[0].status)

    @app.exception_handler(RequestProblem)
    def _refused(request: Request, exc: RequestProblem) -> JSONResponse:
        return JSONResponse(_error_body(exc.problems, _request_id(request)), exc.status)

    @app.exception_handler(StarletteHTTPException)  # 404, 405, a body FastAPI cannot parse
    def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        problems = [Problem(None, None, str(exc.detail), exc.status_code)]
        body = _error_body(problems, _request_id(request))
        return JSONResponse(body, exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(_InternalError)
    @app.exception_handler(Exception)
    def _failed(request: Request, exc: Exception) -> JSONResponse:
        request_id = _request_id(request)
        if not isinstance(exc, _InternalError):
            logger.error("request %s failed", request_id, exc_info=exc)
        body = {
            "error": "internal server error; the server log has the details",
            "detail": [],
            "request_id": request_id,
        }
        return JSONResponse(body, 500)

    def run(request: Request, body: Any, method: str) -> Any:
        X = decode_records([r.model_dump(by_alias=True) for r in body.records], columns, limits)
        try:
            with lock:
                return getattr(model, method)(X)
        except ItemError as exc:
            raise RequestProblem([Problem(exc.row, exc.column, exc.reason)]) from None
        except ValueError as exc:  # scikit-learn's word for input it cannot use, e.g. NaN
            logger.warning(
                "request %s: %s refused the input: %s", _request_id(request), method, exc
            )
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            reason = f"the model cannot use this input: {first[:300]}"
            raise RequestProblem([Problem(None, None, reason)]) from None
        except Exception as exc:
            logger.exception("request %s: %s failed", _request_id(request), method)
            raise _InternalError from exc

    @app.get("/health", summary="Liveness check")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metadata", summary="The model card: input columns, classes, task, versions")
    def card_endpoint() -> JSONResponse:
        return JSONResponse(metadata)

    # The endpoints answer a JSONResponse of plain JSON data (_jsonable): FastAPI would
    # otherwise check the answer against response_model (kept for the OpenAPI schema) in a
    # second trip through the thread pool, for a dict we built ourselves.
    @app.post("/predict", response_model=PredictResponse, responses=errors, summary="Predict")
    def predict(body: PredictRequest, request: Request) -> JSONResponse:  # type: ignore[valid-type]
        return JSONResponse({"predictions": _jsonable(run(request, body, "predict"))})

    if classes is not None and hasattr(model, "predict_proba"):

        @app.post(
            "/predict_proba",
            response_model=ProbaResponse,
            responses=errors,
            summary="Class probabilities",
        )
        def predict_proba(body: PredictRequest, request: Request) -> JSONResponse:  # type: ignore[valid-type]
            proba = _jsonable(run(request, body, "predict_proba"))
            return JSONResponse({"classes": classes, "probabilities": proba})

    return app


# -- running it ----------------------------------------------------------------------
def _load_app(model_path: str, *, trusted: bool = False, **options: Any) -> Any:
    from mmsk.io import load_with_card

    model, card = load_with_card(model_path, trusted=trusted)
    return create_app(model, card=card, **options)


def _log_to_stderr() -> None:
    """Show this module's log (refusals, tracebacks) next to uvicorn's, unless configured."""
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _app_from_environment() -> Any:
    """Build the app of one worker process of ``serve(workers=n)`` (a uvicorn factory)."""
    _log_to_stderr()
    options = json.loads(os.environ[_OPTIONS_ENV])
    return _load_app(options.pop("model_path"), **options)


def serve(
    model_path: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int | None = None,
    allow_dirs: Iterable[str | os.PathLike] = (),
    max_request_bytes: int = MAX_REQUEST_BYTES,
    max_image_pixels: int = MAX_IMAGE_PIXELS,
    max_audio_seconds: float = MAX_AUDIO_SECONDS,
    max_records: int = MAX_RECORDS,
    trusted: bool = False,
    log_level: str = "info",
) -> None:
    """Serve a saved model over HTTP until interrupted: ``mmsk serve MODEL``.

    Loads ``model_path`` with :func:`mmsk.io.load` and its card with
    :func:`mmsk.io.read_card`, builds the application with
    :func:`create_app` and runs it with uvicorn, whose HTTP protocol sets
    ``TCP_NODELAY`` on every connection (the sockets uvicorn binds for
    ``workers`` lack it, and each response would wait 40 ms for the
    client's delayed acknowledgement: :mod:`mmsk._serve_http`).

    Parameters
    ----------
    model_path : str or path-like
        A model file written by :func:`mmsk.io.save`.
    host : str, default="127.0.0.1"
        Interface to listen on. The default accepts local clients only; put
        a reverse proxy in front rather than listening on ``0.0.0.0``
        (``docs/serving.md``).
    port : int, default=8000
        TCP port.
    workers : int or None, default=None
        Worker processes, each loading its own copy of the model; None or 1:
        one process.
    allow_dirs, max_request_bytes, max_image_pixels, max_audio_seconds, max_records
        As in :func:`create_app`.
    trusted : bool, default=False
        Passed to :func:`mmsk.io.load`: allow a model file that needs
        unpickling (runs code from the file: only for files you trust).
    log_level : str, default="info"
        uvicorn's log level.

    Raises
    ------
    ImportError
        If fastapi or uvicorn is not installed (``pip install "mmsk[serve]"``).
    ValueError
        For a bad option or a model file that cannot be served.

    See Also
    --------
    create_app : The application, for embedding or testing.

    Examples
    --------
    >>> from mmsk.serve import serve
    >>> serve("digits.mmsk", port=8000, allow_dirs=["/srv/images"])  # doctest: +SKIP

    (Skipped: it needs a model file and serves until interrupted.)
    """
    import_optional("fastapi", "serve")
    uvicorn = import_optional("uvicorn", "serve")
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    options: dict[str, Any] = {
        "allow_dirs": [
            os.fspath(d) for d in ([allow_dirs] if isinstance(allow_dirs, str) else allow_dirs)
        ],
        "max_request_bytes": max_request_bytes,
        "max_image_pixels": max_image_pixels,
        "max_audio_seconds": max_audio_seconds,
        "max_records": max_records,
    }
    _log_to_stderr()
    app = _load_app(os.fspath(model_path), trusted=trusted, **options)  # fail here, not in workers
    # TCP_NODELAY on every connection: the sockets uvicorn binds for workers lack it (_serve_http)
    common = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "server_header": False,
        "http": _HTTP_PROTOCOL,
    }
    if workers is None or workers == 1:
        uvicorn.run(app, **common)
        return
    del app
    os.environ[_OPTIONS_ENV] = json.dumps(
        {"model_path": os.fspath(model_path), "trusted": trusted, **options}
    )
    uvicorn.run("mmsk.serve:_app_from_environment", factory=True, workers=workers, **common)
