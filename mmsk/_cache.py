"""The feature cache behind the extractors' ``memory=``.

Three layers, each cheaper than the one below:

1. **Path keys** (:data:`PATH_KEYS`, :mod:`mmsk._cache_paths`): the content
   key of a file by its ``(size, mtime_ns, inode, device, ctime_ns)``,
   remembered by the process and stored under the location
   (``mmsk_features/_paths/``), so an unchanged file is read and hashed once,
   whatever the number of transforms and processes: later, one ``stat``.
2. **Memory** (:data:`MEMORY`): the vectors this process computed or read,
   bounded (:data:`MEMORY_LAYER_BYTES`, least recently used out), so the
   repeat transforms of a grid search touch no disk at all.
3. **Disk**: under ``<location>/mmsk_features/<namespace>/<token>/``, one
   *segment* file per stored batch, holding its rows, their content keys and
   a CRC-32 per row. A segment is written to a temporary file and renamed in
   place, and never changed afterwards, so joblib workers and concurrent
   processes share a store without locks: a reader sees whole segments or
   none. A process reads a segment's key table once and then each row it
   needs, checking the row's checksum: a row whose bytes changed is a miss
   (recomputed, with a :class:`CacheWarning`), never returned.

Keys are content keys (a hash of a file's bytes, an array's data, a text),
so a renamed or copied file hits and an edited file misses. A cache that
cannot be used (the location is not a directory, is read-only, the disk is
full) gives one :class:`CacheWarning` per location and process, and the
features are computed without it: a cache fault never changes a result.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import sys
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from ._cache_paths import PathKeys, PathStore, Signature
from ._cache_segments import FAULT as _FAULT
from ._cache_segments import UNSTORED as _UNSTORED
from ._cache_segments import WITHOUT as _WITHOUT
from ._cache_segments import _Store, key_bytes

__all__ = [
    "MEMORY",
    "PATH_KEYS",
    "CacheWarning",
    "FeatureCache",
    "cache_location",
    "cache_token",
    "library_versions",
]

#: Memory layer size, in bytes of feature vectors, per process.
MEMORY_LAYER_BYTES = 256 * 2**20


class CacheWarning(UserWarning):
    """The feature cache could not be used as asked; results are computed without it."""


def cache_location(memory: Any) -> Path | None:
    """Return the cache folder that ``memory`` names, or None for no cache.

    Parameters
    ----------
    memory : None, str, path-like or joblib.Memory
        What the user gave, as for :class:`sklearn.pipeline.Pipeline`.

    Returns
    -------
    pathlib.Path or None
        The folder (``~`` expanded); None when caching is off.

    Raises
    ------
    ValueError
        If ``memory`` is of another type.

    Examples
    --------
    >>> from mmsk._cache import cache_location
    >>> cache_location(None) is None
    True
    >>> cache_location("/tmp/cache").name
    'cache'
    """
    if memory is None:
        return None
    if isinstance(memory, (str, os.PathLike)):
        return Path(os.path.expanduser(os.fspath(memory)))
    if isinstance(memory, joblib.Memory) or hasattr(memory, "location"):
        location = getattr(memory, "location", None)
        return None if location is None else Path(os.path.expanduser(os.fspath(location)))
    raise ValueError(
        "memory should be None, a path or a joblib.Memory instance, "
        f"got {type(memory).__name__}: {memory!r}"
    )


#: Import names of the distributions whose import name differs from their name.
_IMPORT_NAMES = {"Pillow": "PIL", "sentence-transformers": "sentence_transformers"}


@functools.lru_cache(maxsize=64)
def library_versions(modules: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Return ``(name, version)`` of mmsk, numpy and ``modules``, looked up once per process.

    A distribution whose module is imported already gives its
    ``__version__`` (no scan of the installed packages' metadata, which
    costs milliseconds each); the others are looked up with
    :func:`importlib.metadata.version` (``"?"`` when not installed).

    Examples
    --------
    >>> from mmsk._cache import library_versions
    >>> [name for name, _ in library_versions(("scipy",))]
    ['mmsk', 'numpy', 'scipy']
    """
    found = []
    for name in dict.fromkeys(("mmsk", "numpy", *modules)):
        module = sys.modules.get(_IMPORT_NAMES.get(name, name))
        version = getattr(module, "__version__", None)
        if not isinstance(version, str):
            try:
                version = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                version = "?"
        found.append((name, version))
    return tuple(found)


def cache_token(name: str, params: dict[str, Any], modules: Sequence[str], layout: Any) -> str:
    """Hash what makes an extractor's output: class, parameters, library versions, layout.

    Examples
    --------
    >>> from mmsk._cache import cache_token
    >>> a = cache_token("X", {"k": 1}, (), (3, "float32"))
    >>> a == cache_token("X", {"k": 1}, (), (3, "float32")), a == cache_token("X", {"k": 2}, (), 3)
    (True, False)
    """
    return joblib.hash((name, params, dict(library_versions(tuple(modules))), layout))


def _warn_once(marker: str, location: Any, what: str, exc: BaseException) -> None:
    """Warn about a cache fault once per location (and ``marker``) and process."""
    with _LOCK:
        if (marker, str(location)) in _WARNED:
            return
        _WARNED.add((marker, str(location)))
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    warnings.warn(
        f"mmsk feature cache at {str(location)!r}: {what} ({reason})",
        CacheWarning,
        stacklevel=3,
    )


_LOCK = threading.RLock()
_WARNED: set[tuple[str, str]] = set()


# -- layer 2: memory ---------------------------------------------------------------------
class MemoryLayer:
    """The vectors of this process, least recently used out past ``max_bytes``.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk._cache import MemoryLayer
    >>> layer = MemoryLayer(max_bytes=16)
    >>> layer.put("s", b"a", np.zeros(2, dtype="float32"))
    >>> layer.put("s", b"b", np.ones(2, dtype="float32"))
    >>> layer.get("s", b"a").tolist()  # "a" is now the most recently used
    [0.0, 0.0]
    >>> layer.put("s", b"c", np.ones(2, dtype="float32"))  # evicts "b"
    >>> layer.get("s", b"b") is None, layer.get("s", b"a") is not None
    (True, True)
    """

    def __init__(self, max_bytes: int = MEMORY_LAYER_BYTES) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._rows: OrderedDict[tuple[Any, bytes], np.ndarray] = OrderedDict()

    def get(self, scope: Any, key: bytes) -> np.ndarray | None:
        """Return the vector (read-only) or None; a hit becomes the most recently used."""
        return self.get_many(scope, [key])[0]

    def get_many(self, scope: Any, keys: Sequence[bytes]) -> list[np.ndarray | None]:
        """:meth:`get` of each key, in one loop."""
        held = self._rows
        get, move = held.get, held.move_to_end
        found: list[np.ndarray | None] = []
        for key in keys:
            scope_key = (scope, key)
            row = get(scope_key)
            if row is not None:
                try:
                    move(scope_key)
                except KeyError:  # evicted by another thread meanwhile: still a valid row
                    pass
            found.append(row)
        return found

    def __contains__(self, scope_key: tuple[Any, bytes]) -> bool:
        """Whether ``(scope, key)`` is held."""
        return scope_key in self._rows

    def put(self, scope: Any, key: bytes, row: np.ndarray) -> None:
        """Hold a copy of ``row``."""
        self.put_many(scope, [key], [row])

    def put_many(
        self, scope: Any, keys: Sequence[bytes], rows: Sequence[np.ndarray], owned: bool = False
    ) -> None:
        """Hold a copy of each row; ``owned``: the rows are read-only and nobody else's (no copy).

        (Rows read from a segment are read-only views of bytes that nothing
        else holds, so they are kept as they are.)
        """
        held = self._rows
        with _LOCK:
            for key, row in zip(keys, rows, strict=True):
                if (scope, key) in held or row.nbytes > self.max_bytes:
                    continue
                if not owned:
                    row = np.array(row, copy=True)
                    row.flags.writeable = False
                held[(scope, key)] = row
                self.nbytes += row.nbytes
            while self.nbytes > self.max_bytes:
                _, old = held.popitem(last=False)
                self.nbytes -= old.nbytes

    def clear(self) -> None:
        """Drop everything."""
        with _LOCK:
            self._rows.clear()
            self.nbytes = 0


#: This process's path memo and memory layer.
PATH_KEYS = PathKeys()
MEMORY = MemoryLayer()


def _raw_keys(keys: Sequence[str]) -> list[bytes]:
    """Return :func:`key_bytes` of each key, in one pass for the usual 32-hex-digit keys."""
    fromhex = bytes.fromhex
    try:
        return [fromhex(k) if len(k) == 32 else key_bytes(k) for k in keys]
    except ValueError:  # a 32-character key that is not hex: hashed, as key_bytes does
        return [key_bytes(k) for k in keys]


def _reporters(location: Path) -> tuple[Any, Any]:
    """Return the fault and changed-entry callbacks of a store at ``location`` (warnings)."""

    def fault(marker: str, what: str, exc: BaseException) -> None:
        _warn_once(marker, location, what, exc)

    def changed(path: str) -> None:
        warnings.warn(
            f"mmsk feature cache: a stored entry in {path!r} does not match "
            "its checksum (changed on disk); it is recomputed",
            CacheWarning,
            stacklevel=6,
        )

    return fault, changed


_STORES: dict[tuple[str, str, str], _Store] = {}
_PATH_STORES: dict[str, PathStore] = {}


class FeatureCache:
    """One extractor setting's entries: memory layer, then the disk store.

    A handle (picklable, cheap): the state it reads lives in the process
    that uses it, so joblib workers each get their own. Its methods never
    raise for a cache fault: they warn (:class:`CacheWarning`) and miss.

    Parameters
    ----------
    location : pathlib.Path, str or None
        Root folder; None makes a cache that stores nothing.
    namespace : str
        Name of the extractor (a folder level).
    token : str
        Hash of the parameters, versions and output layout (see :func:`cache_token`).

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from mmsk._cache import FeatureCache
    >>> cache = FeatureCache(tempfile.mkdtemp(), "Demo", "t0")
    >>> cache.put("abc", np.ones(3, dtype="float32"))
    >>> cache.get("abc")
    array([1., 1., 1.], dtype=float32)
    """

    def __init__(self, location: Path | str | None, namespace: str, token: str):
        self.location = None if location is None else Path(location)
        self.namespace = namespace
        self.token = token

    @property
    def enabled(self) -> bool:
        """Whether entries are stored at all."""
        return self.location is not None

    @property
    def _scope(self) -> tuple[str, str, str]:
        return (str(self.location), self.namespace, self.token)

    def _store(self) -> _Store:
        scope = self._scope
        store = _STORES.get(scope)
        if store is None:
            assert self.location is not None
            folder = self.location / "mmsk_features" / self.namespace / self.token
            with _LOCK:
                store = _STORES.setdefault(scope, _Store(folder, *_reporters(self.location)))
        return store

    def get_many(
        self, keys: Sequence[str], width: int, dtype: Any, *, refresh: bool = True
    ) -> list[np.ndarray | None]:
        """Return the stored row of each key (None: a miss), memory first, then disk.

        ``refresh=False`` skips looking for segments written since this
        process last looked (for repeated lookups within one batch).
        """
        if self.location is None:
            return [None] * len(keys)
        scope, dtype = self._scope, np.dtype(dtype)
        raw = _raw_keys(keys)
        out = MEMORY.get_many(scope, raw)
        wanted = [k for k, row in zip(raw, out, strict=True) if row is None]
        if not wanted:
            return out
        store = self._store()
        try:
            with store.lock:
                if refresh or not store.seen:
                    store.refresh()
                found = store.read_rows(wanted, width, dtype)
        except Exception as exc:  # noqa: BLE001 - a cache fault is a miss, never an error
            _warn_once(_FAULT, self.location, f"cannot be read; {_WITHOUT}", exc)
            return out
        if not found:
            return out
        MEMORY.put_many(scope, list(found), list(found.values()), owned=True)
        if len(wanted) == len(raw):  # nothing was in memory
            return [found.get(k) for k in raw]
        return [found.get(k) if row is None else row for k, row in zip(raw, out, strict=True)]

    def put_many(self, keys: Sequence[str], rows: np.ndarray) -> None:
        """Store ``rows`` (one per key): in memory, and on disk as one segment."""
        if self.location is None or not len(keys):
            return
        scope, raw = self._scope, [key_bytes(k) for k in keys]
        for k, row in zip(raw, rows, strict=True):
            MEMORY.put(scope, k, row)
        store = self._store()
        try:
            with store.lock:
                store.write(raw, np.asarray(rows))
        except Exception as exc:  # noqa: BLE001 - a cache fault never changes a result
            store.writable = False
            _warn_once(_FAULT, self.location, f"cannot be written; {_UNSTORED}", exc)

    def remember(self, keys: Sequence[str], rows: np.ndarray) -> None:
        """Hold rows computed or read elsewhere (a joblib worker) in this process's memory."""
        if self.location is None:
            return
        MEMORY.put_many(self._scope, [key_bytes(key) for key in keys], list(rows))

    def _paths(self) -> PathStore:
        assert self.location is not None
        root = str(self.location)
        store = _PATH_STORES.get(root)
        if store is None:
            with _LOCK:
                folder = self.location / "mmsk_features" / "_paths"
                store = _PATH_STORES.setdefault(root, PathStore(folder))
        return store

    def load_paths(self) -> None:
        """Adopt the path keys stored at this location since this process last looked.

        Each record still has to match its file's signature to be used
        (:meth:`mmsk._cache_paths.PathKeys.lookup`); a damaged key file is
        skipped with a :class:`CacheWarning`.
        """
        if self.location is None:
            return
        store = self._paths()
        if not store.readable:
            return
        try:
            with _LOCK:
                new, damaged = store.refresh()
                PATH_KEYS.adopt_many(new)
        except Exception as exc:  # noqa: BLE001 - a cache fault is a miss, never an error
            store.readable = False
            _warn_once(_FAULT, self.location, f"cannot be read; {_WITHOUT}", exc)
            return
        for name, exc in damaged:
            what = f"skipping the damaged path-key file {name}; its files are read again"
            _warn_once(name, self.location, what, exc)

    def remember_paths(self, records: Sequence[tuple[str, Signature, str, int]]) -> None:
        """Remember path keys ``(path, signature, key, started_ns)``: here and at the location.

        Only the records :meth:`mmsk._cache_paths.PathKeys.remember` keeps (files
        not changed just before they were hashed) are stored, as one key file.
        """
        kept = [
            (p, sig, key)
            for p, sig, key, started in records
            if PATH_KEYS.remember(p, sig, key, started)
        ]
        if self.location is None or not kept:
            return
        store = self._paths()
        if not store.writable:
            return
        try:
            with _LOCK:
                store.write(kept)
        except Exception as exc:  # noqa: BLE001 - a cache fault never changes a result
            store.writable = False
            _warn_once(_FAULT, self.location, f"cannot be written; {_UNSTORED}", exc)

    def get(self, key: str) -> np.ndarray | None:
        """Return the stored vector for ``key``, or None on a miss."""
        if self.location is None:
            return None
        hit = MEMORY.get(self._scope, key_bytes(key))
        if hit is not None:
            return hit
        store = self._store()
        with store.lock:
            store.refresh()
            entry = store.index.get(key_bytes(key))
        if entry is None:
            return None
        return self.get_many([key], entry[0].width, entry[0].dtype, refresh=False)[0]

    def put(self, key: str, value: np.ndarray) -> None:
        """Store one vector under ``key``."""
        value = np.asarray(value)
        self.put_many([key], value.reshape(1, -1))


def forget() -> None:
    """Drop this process's path memo, memory layer and store indexes (as a new process).

    Examples
    --------
    >>> from mmsk._cache import forget
    >>> forget()
    """
    with _LOCK:
        PATH_KEYS.clear()
        MEMORY.clear()
        _STORES.clear()
        _PATH_STORES.clear()
        _WARNED.clear()
