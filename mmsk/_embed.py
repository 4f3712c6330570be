"""The base of the pretrained embedders: a frozen model, loaded lazily, run on batches.

:class:`~mmsk.text.SentenceEmbedder` and :class:`~mmsk.image.ImageEncoder`
share everything here: the model is loaded on first use (``fit`` or
``transform``), kept on a private attribute that is never pickled, and run
on whole batches of items instead of one item at a time. The item rules of
:class:`~mmsk._base.ItemTransformer` stay the same: a missing item gives a
NaN row without touching the model, an unreadable one an
:class:`~mmsk._items.ItemError` (or, with ``on_error="nan"``, a NaN row and
one warning), and ``memory=`` caches each item's vector by its content, so
a cached item is never decoded nor embedded again. Without ``n_jobs``, a
background thread decodes the next chunk of items while the model embeds
the current one (:func:`decoded_ahead`); the output order and the item
policy are the same as decoding in line.

torch is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import joblib
import numpy as np

from ._base import ItemTransformer, _is_path, _label, _reason, keyed_path, opened
from ._cache import FeatureCache
from ._files import FilePolicy
from ._items import ItemError, describe_item, is_missing, item_source, row_name

__all__ = ["Embedder", "module_fingerprint"]

# What _prepare_chunk says about one item.
_HIT, _INPUT, _FAILED = 0, 1, 2


def _prepare_chunk(
    prepare: Callable[[Any], Any],
    chunk: Sequence[tuple[int, Any, str | None]],
    column: str | None,
    cache: FeatureCache | None,
    text: bool,
    on_error: str,
    n_out: int,
    labels: Sequence[Any] | None = None,
    policy: FilePolicy | None = None,
) -> tuple[list[tuple[int, str | None, Any, int]], list[Any]]:
    """Decode one chunk of ``(row, item, key or None)`` (in a joblib worker or in-process).

    Returns ``(row, cache key, value, kind)`` for every item: a cached
    vector (``_HIT``), the decoded model input (``_INPUT``), or ``(row
    name, item description, reason)`` (``_FAILED``, with
    ``on_error="nan"``); and the path-key records of the paths read here.
    ``labels`` are the index labels of the chunk's entries (None: rows are
    named by position). Every path is opened under ``policy``; with a
    cache, a path whose key the process does not know yet is read once,
    hashed and looked up first.
    """
    results: list[tuple[int, str | None, Any, int]] = []
    records: list[Any] = []
    refresh = True
    for j, (row, item, key) in enumerate(chunk):
        try:
            if cache is not None and key is None and not text and _is_path(item):
                key, source, record = keyed_path(item, policy)
                records.append(record)
                hit = cache.get_many([key], n_out, np.float32, refresh=refresh)[0]
                refresh = False
                if hit is not None:
                    results.append((row, key, hit, _HIT))
                    continue
                results.append((row, key, prepare(source), _INPUT))
            else:
                with opened(item, policy) as given:
                    results.append(
                        (row, key, prepare(given if text else item_source(given)), _INPUT)
                    )
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - every item failure (MemoryError too): one policy
            reason = _reason(exc)
            label = _label(labels, j)
            if on_error == "raise":
                raise ItemError(column, row, describe_item(item), reason, label) from exc
            failure = (row_name(row, label), describe_item(item), reason)
            results.append((row, None, failure, _FAILED))
    return results, records


#: Decoded chunks the decoding thread may hold ready ahead of the model.
DECODE_AHEAD = 2

_END = object()


def decoded_ahead(
    function: Callable[..., Any], tasks: Iterable[tuple[Any, ...]], depth: int = DECODE_AHEAD
) -> Iterator[Any]:
    """Yield ``function(*task)`` for each task in order, computed ahead by one thread.

    A background thread runs the tasks one after the other and keeps at
    most ``depth`` results waiting in a bounded queue, so that decoding
    chunk k+1 overlaps the model's forward pass on chunk k (PIL, NumPy and
    torch release the GIL while they work). The results come in the
    tasks' order. An exception of a task is raised here, when its result
    would have come, and the thread runs no further task; closing the
    generator early (an error of the model) stops the thread too.

    Parameters
    ----------
    function : callable
        Called as ``function(*task)``.
    tasks : iterable of tuple
        The arguments of each call.
    depth : int, default=DECODE_AHEAD
        Results held ready at most.

    Yields
    ------
    object
        ``function(*task)``, in the order of ``tasks``.

    Raises
    ------
    Exception
        The first exception a task raised.

    Examples
    --------
    >>> from mmsk._embed import decoded_ahead
    >>> list(decoded_ahead(pow, [(2, 3), (3, 2), (10, 0)]))
    [8, 9, 1]
    """
    ready: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
    stop = threading.Event()

    def put(item: Any) -> None:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def work() -> None:
        try:
            for task in tasks:
                if stop.is_set():
                    return
                try:
                    put((True, function(*task)))
                except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                    put((False, exc))
                    return
        finally:
            put(_END)

    thread = threading.Thread(target=work, name="mmsk-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            ok, value = item
            if not ok:
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


class _ShapeError(ValueError):
    """The model's output has the wrong shape: a fault of the model, never of an item."""


class _Pending:
    """Decoded inputs waiting for the model, identical ones (same ``dedupe`` key) once.

    The key is the item's cache key when there is one (equal content), else
    what the subclass's ``_dedupe_key`` says (the text itself for texts).
    """

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.index: list[int] = []
        self.inputs: list[Any] = []
        self.keys: list[str | None] = []
        self.seen: dict[Any, int] = {}

    def add(self, row: int, key: str | None, value: Any, dedupe: Any) -> None:
        position = len(self.inputs)
        if dedupe is not None:
            seen = self.seen.get(dedupe)
            if seen is not None:
                self.rows.append(row)
                self.index.append(seen)
                return
            self.seen[dedupe] = position
        self.inputs.append(value)
        self.keys.append(key)
        self.rows.append(row)
        self.index.append(position)

    def __len__(self) -> int:
        return len(self.inputs)


def _same(a: Any, b: Any) -> bool:
    """Whether two parameter values name the same model (objects: identity)."""
    if a is b:
        return True
    plain = (str, bytes, int, float, bool, tuple, os.PathLike, type(None))
    if type(a) is type(b) and isinstance(a, plain):
        try:
            return bool(a == b)
        except Exception:  # noqa: BLE001 - an odd __eq__ means "not the same"
            return False
    return False


def module_fingerprint(model: Any) -> str:
    """Hash a model's architecture and weights, for the feature cache.

    For a :class:`torch.nn.Module`: its class, its ``repr`` (the layers and
    their settings) and every tensor of its ``state_dict`` (names, dtypes,
    shapes and values). Any other object is hashed by :func:`joblib.hash`.

    Parameters
    ----------
    model : object
        The loaded model.

    Returns
    -------
    str
        A hex digest; equal models give equal digests.

    Examples
    --------
    >>> import torch
    >>> from mmsk._embed import module_fingerprint
    >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> module_fingerprint(a) == module_fingerprint(a)
    True
    >>> module_fingerprint(a) == module_fingerprint(b)
    False
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        return joblib.hash(model)
    digest = hashlib.blake2b(digest_size=16)
    kind = type(model)
    digest.update(f"{kind.__module__}.{kind.__qualname__}\n{model!r}".encode())
    digest.update(repr(getattr(model, "max_seq_length", None)).encode())
    for name, tensor in model.state_dict().items():
        if not isinstance(tensor, torch.Tensor):
            digest.update(f"{name}={tensor!r}".encode())
            continue
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        flat = tensor.detach().reshape(-1)
        if flat.numel():
            data = flat.contiguous().view(torch.uint8) if flat.element_size() > 1 else flat
            digest.update(data.cpu().numpy().tobytes())
    return digest.hexdigest()


class Embedder(ItemTransformer):
    """Base of the pretrained embedders (not public).

    Subclasses set ``_model_params`` (the parameters the loaded model
    depends on) and write ``_load_model()``, ``_embedding_dim(model)``,
    ``_preparer()`` (a picklable function from one item's source to one
    model input), ``_embed(model, inputs)`` (a batch of inputs to an
    ``(n, dim)`` array) and, optionally, ``_dedupe_key(input)``.
    """

    #: Parameters that the loaded model depends on: changing one reloads it.
    _model_params: tuple[str, ...] = ("model",)
    #: Parameters replaced in the cache key by the fingerprint of the loaded model.
    _fingerprinted: tuple[str, ...] = ("model",)

    # -- hooks ---------------------------------------------------------------
    def _load_model(self) -> Any:
        raise NotImplementedError

    def _embedding_dim(self, model: Any) -> int:
        raise NotImplementedError

    def _preparer(self) -> Callable[[Any], Any]:
        raise NotImplementedError

    def _embed(self, model: Any, inputs: list[Any]) -> np.ndarray:
        raise NotImplementedError

    def _dedupe_key(self, value: Any) -> Any:
        """Key under which identical inputs are embedded once (None: never)."""
        return None

    def _model_fingerprint(self, model: Any) -> str:
        return module_fingerprint(model)

    def _chunk_size(self) -> int:
        """Items per decoding task, and inputs per call of ``_embed``."""
        return int(self.batch_size)

    # -- the model -----------------------------------------------------------
    def _get_model(self) -> Any:
        """Return the loaded model, loading it on first use (or after set_params)."""
        spec = tuple(getattr(self, name) for name in self._model_params)
        loaded = self.__dict__.get("_loaded_model")
        if loaded is not None and all(_same(a, b) for a, b in zip(loaded[0], spec, strict=True)):
            return loaded[1]
        self.__dict__.pop("_loaded_model", None)
        self.__dict__.pop("_loaded_fingerprint", None)
        model = self._load_model()
        self._loaded_model = (spec, model)
        return model

    def _fit_items(
        self, items: Sequence[Any], column: str | None, labels: Sequence[Any] | None = None
    ) -> None:
        """Load the model and learn the embedding size."""
        self.embedding_dim_ = int(self._embedding_dim(self._get_model()))

    def _feature_names(self) -> list[str]:
        dim = self.embedding_dim_
        width = max(3, len(str(dim - 1)))
        return [f"emb_{i:0{width}d}" for i in range(dim)]

    def __getstate__(self) -> dict[str, Any]:
        """Leave the loaded model out: it is reloaded from the parameters on first use."""
        state = super().__getstate__()
        return {k: v for k, v in state.items() if not k.startswith("_loaded_")}

    # -- the cache -----------------------------------------------------------
    def _cache_params(self) -> dict[str, Any]:
        params = super()._cache_params()
        for name in ("batch_size", "device", *self._fingerprinted):
            params.pop(name, None)
        fingerprint = self.__dict__.get("_loaded_fingerprint")
        if fingerprint is None:
            fingerprint = self._model_fingerprint(self._get_model())
            self._loaded_fingerprint = fingerprint
        params["model_fingerprint"] = fingerprint
        return params

    # -- the work ------------------------------------------------------------
    def _embed_checked(self, model: Any, inputs: list[Any], width: int) -> np.ndarray:
        vectors = self._embed(model, inputs)
        if not (isinstance(vectors, np.ndarray) and vectors.dtype == np.float32):
            vectors = np.asarray(vectors, dtype=np.float32)
        expected = (len(inputs), width)
        if vectors.shape != expected:
            raise _ShapeError(
                f"{type(self).__name__}: the model gave embeddings of shape {vectors.shape}, "
                f"expected {expected}; fit again after changing the model or its input size"
            )
        return vectors

    def _embed_one_by_one(
        self, model: Any, pending: _Pending, width: int, batch_error: Exception, report: Any
    ) -> np.ndarray:
        """Embed a batch the model refused input by input; the refused inputs are item errors.

        If the model refuses every input alone too, the fault is the model's
        (or the machine's), not the items': the batch's own error is raised.
        """
        vectors = np.full((len(pending.inputs), width), np.nan, dtype=np.float32)
        refused: list[tuple[int, Exception]] = []
        for j, value in enumerate(pending.inputs):
            try:
                vectors[j] = self._embed_checked(model, [value], width)[0]
            except (KeyboardInterrupt, SystemExit, _ShapeError):
                raise
            except Exception as exc:  # noqa: BLE001 - the policy of one item
                refused.append((j, exc))
        if len(refused) == len(pending.inputs) and len(refused) > 1:
            raise batch_error
        for j, exc in refused:
            rows = [row for row, k in zip(pending.rows, pending.index, strict=True) if k == j]
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else "no message"
            report(rows, f"the model refused it ({type(exc).__name__}: {text[:200]})", exc)
        return vectors

    def _flush(
        self,
        model: Any,
        pending: _Pending,
        out: np.ndarray,
        cache: FeatureCache | None,
        report: Any,
    ) -> None:
        try:
            vectors = self._embed_checked(model, pending.inputs, out.shape[1])
        except (KeyboardInterrupt, SystemExit, _ShapeError):
            raise
        except Exception as exc:  # noqa: BLE001 - find the inputs the model refuses
            vectors = self._embed_one_by_one(model, pending, out.shape[1], exc, report)
        if cache is not None:
            kept = [
                j
                for j, key in enumerate(pending.keys)
                if key is not None and np.isfinite(vectors[j]).all()
            ]
            if kept:
                cache.put_many([pending.keys[j] for j in kept], vectors[kept])
        out[pending.rows] = vectors[pending.index]

    def _extract_all(
        self, items: Sequence[Any], column: str | None, labels: Sequence[Any] | None = None
    ) -> np.ndarray:
        n = len(items)
        n_out = self.n_features_out_
        out = np.full((n, n_out), np.nan, dtype=np.float32)
        if n == 0:
            return out
        model = self._get_model()
        policy = self._file_policy()
        cache = self._cache(n_out)
        if cache is None:
            todo = [
                (i, item, None)
                for i, item in enumerate(items)
                if not is_missing(item, text=self._text_items)
            ]
        else:
            todo = self._cached_rows(items, cache, out, policy)
        step = self._chunk_size()
        prepare = self._preparer()
        chunks = [todo[s : s + step] for s in range(0, len(todo), step)]
        text, on_error = self._text_items, self.on_error
        tasks = [
            (
                prepare,
                chunk,
                column,
                cache,
                text,
                on_error,
                n_out,
                None if labels is None else [labels[row] for row, _, _ in chunk],
                policy,
            )
            for chunk in chunks
        ]
        ahead = len(tasks) > 1 and self._in_process(len(tasks))
        if ahead:
            results = decoded_ahead(_prepare_chunk, tasks)  # decoding overlaps the model
        else:
            results = self._run(_prepare_chunk, tasks) if tasks else ()
        bar = None
        if self.verbose:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, unit="item", desc=type(self).__name__)
            bar.update(n - len(todo))
        failures: list[tuple[int, tuple[Any, str, str]]] = []  # (position, failure)

        def report(rows: list[int], reason: str, exc: Exception) -> None:
            """Apply the item policy to rows whose (identical) input the model refused."""
            for row in rows:
                label = _label(labels, row)
                if on_error == "raise":
                    raise ItemError(column, row, describe_item(items[row]), reason, label) from exc
                failures.append((row, (row_name(row, label), describe_item(items[row]), reason)))

        own_dedupe = type(self)._dedupe_key is not Embedder._dedupe_key
        dedupe_key = self._dedupe_key if own_dedupe else None
        pending = _Pending()
        read: list[Any] = []  # path-key records of the files read
        try:
            for chunk, (prepared, records) in zip(chunks, results, strict=True):
                read.extend(records)
                for row, key, value, kind in prepared:
                    if kind == _INPUT:
                        same = dedupe_key(value) if key is None and dedupe_key else key
                        pending.add(row, key, value, same)
                        if len(pending.inputs) >= step:
                            self._flush(model, pending, out, cache, report)
                            pending = _Pending()
                    elif kind == _HIT:
                        out[row] = value
                        if cache is not None:
                            cache.remember([key], value[np.newaxis])
                    else:
                        failures.append((row, value))
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if ahead:  # stop the decoding thread (an error of the model or an item)
                results.close()
        if pending.rows:
            self._flush(model, pending, out, cache, report)
        if cache is not None:
            cache.remember_paths(read)  # here and at the cache's location: one key file
        failures.sort(key=lambda pair: pair[0])
        if bar is not None:
            bar.close()
        self._warn_failures([failure for _, failure in failures], n, column)
        return out
