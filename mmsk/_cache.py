"""The feature cache behind the extractors' ``memory=``.

Three layers, each cheaper than the one below:

1. **Path keys** (:data:`PATH_KEYS`): a process remembers the content key of
   a file by its ``(size, mtime_ns, inode, device)``, so an unchanged file is
   read and hashed once per process, whatever the number of transforms.
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
import hashlib
import importlib.metadata
import os
import secrets
import struct
import tempfile
import threading
import time
import warnings
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np

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
#: A file's stat vouches for its key only if it was hashed this long after its last change
#: (file times are coarse: a same-size rewrite within one tick keeps the time stamp).
RACY_NS = 2_000_000_000
#: Most paths whose keys a process remembers.
PATH_MEMO_SIZE = 1_000_000

_MAGIC = b"MMSKSEG1"
_HEAD = struct.Struct("<8sII8sI")  # magic, rows, width, dtype, CRC-32 of the key table
_KEY_BYTES = 16
_SUFFIX = ".seg"


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


@functools.lru_cache(maxsize=64)
def library_versions(modules: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Return ``(name, version)`` of mmsk, numpy and ``modules``, looked up once per process.

    Examples
    --------
    >>> from mmsk._cache import library_versions
    >>> [name for name, _ in library_versions(("scipy",))]
    ['mmsk', 'numpy', 'scipy']
    """
    found = []
    for name in dict.fromkeys(("mmsk", "numpy", *modules)):
        try:
            found.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            found.append((name, "?"))
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


_FAULT = "fault"
_WITHOUT = "features are computed without it"
_UNSTORED = "features are computed and not stored"


_LOCK = threading.RLock()
_WARNED: set[tuple[str, str]] = set()


# -- layer 1: path -> content key ------------------------------------------------------
class PathKeys:
    """Remember the content key of each file by its stat signature (one per process).

    Examples
    --------
    >>> import os, tempfile
    >>> from mmsk._cache import PathKeys
    >>> path = os.path.join(tempfile.mkdtemp(), "a.bin")
    >>> with open(path, "wb") as fh:
    ...     _ = fh.write(b"abc")
    >>> os.utime(path, ns=(0, 0))  # an old file: its stat can vouch for it
    >>> memo = PathKeys()
    >>> memo.lookup(path) is None
    True
    >>> memo.remember(path, memo.signature(path), "k1", started_ns=10**19)
    >>> memo.lookup(path)
    'k1'
    """

    def __init__(self, size: int = PATH_MEMO_SIZE) -> None:
        self.size = size
        self._keys: dict[str, tuple[tuple[int, int, int, int], str]] = {}

    @staticmethod
    def signature(path: str) -> tuple[int, int, int, int]:
        """``(size, mtime_ns, inode, device)`` of ``path`` (raises OSError)."""
        st = os.stat(path)
        return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)

    def lookup(self, path: str, max_bytes: int | None = None) -> str | None:
        """Return the remembered key if the file is unchanged, else None (no stat if unknown).

        A file larger than ``max_bytes`` (the caller's file policy) gets None,
        so that it is opened, and refused, under that policy.
        """
        entry = self._keys.get(path)
        if entry is None:
            return None
        if max_bytes is not None and entry[0][0] > max_bytes:
            return None
        try:
            if self.signature(path) == entry[0]:
                return entry[1]
        except OSError:
            pass
        self._keys.pop(path, None)
        return None

    def remember(
        self, path: str, signature: tuple[int, int, int, int], key: str, started_ns: int
    ) -> None:
        """Record ``key`` for ``path`` hashed from ``started_ns`` on, if the stat can vouch."""
        if started_ns - signature[1] <= RACY_NS:
            return  # changed too recently: a same-size rewrite could keep its time stamp
        if len(self._keys) >= self.size:
            self._keys.clear()
        self._keys[path] = (signature, key)

    def clear(self) -> None:
        """Forget every path."""
        self._keys.clear()


# -- layer 2: memory ---------------------------------------------------------------------
class MemoryLayer:
    """The vectors of this process, least recently used out past ``max_bytes``.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk._cache import MemoryLayer
    >>> layer = MemoryLayer(max_bytes=8)
    >>> layer.put("s", b"a", np.zeros(2, dtype="float32"))
    >>> layer.put("s", b"b", np.ones(2, dtype="float32"))  # evicts "a"
    >>> layer.get("s", b"a") is None, layer.get("s", b"b").tolist()
    (True, [1.0, 1.0])
    """

    def __init__(self, max_bytes: int = MEMORY_LAYER_BYTES) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._rows: OrderedDict[tuple[Any, bytes], np.ndarray] = OrderedDict()

    def get(self, scope: Any, key: bytes) -> np.ndarray | None:
        """Return the vector (read-only) or None."""
        return self._rows.get((scope, key))

    def __contains__(self, scope_key: tuple[Any, bytes]) -> bool:
        """Whether ``(scope, key)`` is held."""
        return scope_key in self._rows

    def put(self, scope: Any, key: bytes, row: np.ndarray) -> None:
        """Hold a copy of ``row``."""
        with _LOCK:
            if (scope, key) in self._rows or row.nbytes > self.max_bytes:
                return
            row = np.array(row, copy=True)
            row.flags.writeable = False
            self._rows[(scope, key)] = row
            self.nbytes += row.nbytes
            while self.nbytes > self.max_bytes:
                _, old = self._rows.popitem(last=False)
                self.nbytes -= old.nbytes

    def clear(self) -> None:
        """Drop everything."""
        with _LOCK:
            self._rows.clear()
            self.nbytes = 0


#: This process's path memo and memory layer.
PATH_KEYS = PathKeys()
MEMORY = MemoryLayer()


# -- layer 3: disk -----------------------------------------------------------------------
def key_bytes(key: str) -> bytes:
    """Return the 16 bytes stored for a key: a 32-digit hex key as is, others hashed."""
    if len(key) == 2 * _KEY_BYTES:
        try:
            return bytes.fromhex(key)
        except ValueError:
            pass
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=_KEY_BYTES).digest()


class _Segment:
    """The key table of one segment file: where each row is and its checksum."""

    __slots__ = ("crcs", "dtype", "offset", "path", "width")

    def __init__(self, path: str, width: int, dtype: np.dtype, crcs: np.ndarray, offset: int):
        self.path, self.width, self.dtype, self.crcs, self.offset = path, width, dtype, crcs, offset

    @classmethod
    def read(cls, path: str) -> tuple[_Segment, list[bytes]]:
        with open(path, "rb") as fh:
            head = fh.read(_HEAD.size)
            if len(head) < _HEAD.size:
                raise ValueError("truncated header")
            magic, n, width, dtype, table_crc = _HEAD.unpack(head)
            if magic != _MAGIC:
                raise ValueError("not an mmsk feature segment")
            table = fh.read(n * (_KEY_BYTES + 4))
        if len(table) != n * (_KEY_BYTES + 4) or zlib.crc32(table) != table_crc:
            raise ValueError("damaged key table")
        keys = [table[i * _KEY_BYTES : (i + 1) * _KEY_BYTES] for i in range(n)]
        crcs = np.frombuffer(table, dtype="<u4", offset=n * _KEY_BYTES, count=n)
        dt = np.dtype(dtype.rstrip(b"\0").decode("ascii"))
        return cls(path, width, dt, crcs, _HEAD.size + len(table)), keys


def _encode_segment(keys: Sequence[bytes], rows: np.ndarray) -> tuple[bytes, np.ndarray, int]:
    """Return a segment's bytes, its row checksums and where its rows start."""
    rows = np.ascontiguousarray(rows)
    dtype = rows.dtype.newbyteorder("<") if rows.dtype.byteorder == ">" else rows.dtype
    rows = rows.astype(dtype, copy=False)
    crcs = np.fromiter((zlib.crc32(r) for r in rows), dtype="<u4", count=len(rows))
    table = b"".join(keys) + crcs.tobytes()
    code = dtype.str.encode("ascii").ljust(8, b"\0")
    head = _HEAD.pack(_MAGIC, len(rows), rows.shape[1], code, zlib.crc32(table))
    return head + table + rows.tobytes(), crcs, len(head) + len(table)


class _Store:
    """What this process knows of one store folder: its segments' key tables."""

    def __init__(self, folder: Path, root: Path) -> None:
        self.folder, self.root = folder, root
        self.index: dict[bytes, tuple[_Segment, int]] = {}
        self.seen: set[str] = set()
        self.readable = self.writable = True
        self.lock = threading.Lock()

    def refresh(self) -> None:
        """Read the key tables of segments not seen yet (other workers' writes)."""
        if not self.readable:
            return
        try:
            names = [e.name for e in os.scandir(self.folder) if e.name.endswith(_SUFFIX)]
        except FileNotFoundError:
            return  # nothing stored yet
        except OSError as exc:
            self.readable = False
            _warn_once(_FAULT, self.root, f"cannot be read; {_WITHOUT}", exc)
            return
        for name in sorted(set(names) - self.seen):
            self.seen.add(name)
            try:
                segment, keys = _Segment.read(os.path.join(self.folder, name))
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                what = f"skipping the damaged segment {name}; its entries are recomputed"
                _warn_once(name, self.root, what, exc)
                continue
            for row, key in enumerate(keys):
                self.index[key] = (segment, row)

    def read_rows(self, wanted: dict[bytes, int], width: int, dtype: np.dtype) -> dict:
        """Read the rows of ``wanted`` keys found in the index, checking each checksum."""
        found: dict[bytes, np.ndarray] = {}
        by_segment: dict[str, list[tuple[bytes, _Segment, int]]] = {}
        for key in wanted:
            entry = self.index.get(key)
            if entry is not None and entry[0].width == width and entry[0].dtype == dtype:
                by_segment.setdefault(entry[0].path, []).append((key, *entry))
        for path, entries in by_segment.items():
            size = width * dtype.itemsize
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            except OSError:
                continue
            try:
                for key, segment, row in entries:
                    data = os.pread(fd, size, segment.offset + row * size)
                    if len(data) != size or zlib.crc32(data) != int(segment.crcs[row]):
                        self.index.pop(key, None)
                        warnings.warn(
                            f"mmsk feature cache: a stored entry in {path!r} does not match "
                            "its checksum (changed on disk); it is recomputed",
                            CacheWarning,
                            stacklevel=4,
                        )
                        continue
                    found[key] = np.frombuffer(data, dtype=dtype)
            except OSError:
                pass
            finally:
                os.close(fd)
        return found

    def write(self, keys: Sequence[bytes], rows: np.ndarray) -> None:
        """Store ``rows`` as one new segment (temporary file, then rename)."""
        if not self.writable:
            return
        payload, crcs, offset = _encode_segment(keys, rows)
        name = f"{time.time_ns():016x}-{os.getpid():x}-{secrets.token_hex(4)}{_SUFFIX}"
        tmp = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
            os.replace(tmp, self.folder / name)
            tmp = None
        except OSError as exc:
            self.writable = False
            _warn_once(_FAULT, self.root, f"cannot be written; {_UNSTORED}", exc)
            return
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
        self.seen.add(name)
        dtype = np.dtype(rows.dtype).newbyteorder("<")
        segment = _Segment(str(self.folder / name), rows.shape[1], dtype, crcs, offset)
        for row, key in enumerate(keys):
            self.index[key] = (segment, row)


_STORES: dict[tuple[str, str, str], _Store] = {}


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
                store = _STORES.setdefault(scope, _Store(folder, self.location))
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
        raw = [key_bytes(k) for k in keys]
        out: list[np.ndarray | None] = [MEMORY.get(scope, k) for k in raw]
        wanted = {k: i for i, k in enumerate(raw) if out[i] is None}
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
        for i, k in enumerate(raw):
            row = found.get(k)
            if row is not None and out[i] is None:
                MEMORY.put(scope, k, row)
                out[i] = row
        return out

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
        scope = self._scope
        for key, row in zip(keys, rows, strict=True):
            MEMORY.put(scope, key_bytes(key), row)

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
        _WARNED.clear()
