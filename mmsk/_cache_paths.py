"""Layer 1 of the feature cache: the content key of a path, in this process and on disk.

A path item's content key is a hash of its file's bytes, so finding it
means reading the whole file. :class:`PathKeys` remembers the key of each
path with the file's *signature* ``(size, mtime_ns, inode, device,
ctime_ns)``: while a ``stat`` gives the same signature, the file is not read
again. :class:`PathStore` keeps those records under the cache location too,
so that a new process (a rerun, a joblib worker, the server) finds the key
of an unchanged file with one ``stat`` instead of a read and a hash.

On disk, ``<location>/mmsk_features/_paths/`` holds small immutable *key
files*, each written to a temporary file and renamed into place: a header
(magic, record count, path bytes, CRC-32 of the body), then per record the
signature, the 16-byte key and the path's length, then the paths. A damaged
or foreign file fails its checksum and is skipped, whole. A process reads
each key file once; past :data:`COMPACT_FILES` files, the next write merges
them into one. A record is trusted only while the file's signature is
unchanged, and only records hashed more than :data:`RACY_NS` after the
file's last change are kept (file times are coarse: a same-size rewrite
within one tick keeps its time stamp), so a changed file is never served
stale, whichever process remembered it.
"""

from __future__ import annotations

import os
import secrets
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["COMPACT_FILES", "RACY_NS", "PathKeys", "PathStore", "Signature"]

#: A file's stat vouches for its key only if it was hashed this long after its last change.
RACY_NS = 2_000_000_000
#: Most paths whose keys a process remembers.
PATH_MEMO_SIZE = 1_000_000
#: Key files of one location past which the next write merges them into one.
COMPACT_FILES = 16

#: ``(size, mtime_ns, inode, device, ctime_ns)`` of a file.
Signature = tuple[int, int, int, int, int]

_MAGIC = b"MMSKPKY1"
_HEAD = struct.Struct("<8sIII")  # magic, records, path bytes, CRC-32 of the body
_FIXED = np.dtype(
    [
        ("size", "<u8"),
        ("mtime", "<i8"),
        ("ino", "<u8"),
        ("dev", "<u8"),
        ("ctime", "<i8"),
    ]
)
_KEY_BYTES = 16
_SUFFIX = ".keys"


def signature_of(st: os.stat_result) -> Signature:
    """Return the signature of a file from its ``stat`` (or ``fstat``) result."""
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, st.st_ctime_ns)


class PathKeys:
    """Remember the content key of each file by its signature (one per process).

    Examples
    --------
    >>> import os, tempfile
    >>> from mmsk._cache_paths import PathKeys
    >>> path = os.path.join(tempfile.mkdtemp(), "a.bin")
    >>> with open(path, "wb") as fh:
    ...     _ = fh.write(b"abc")
    >>> os.utime(path, ns=(0, 0))  # an old file: its stat can vouch for it
    >>> memo = PathKeys()
    >>> memo.lookup(path) is None
    True
    >>> memo.remember(path, memo.signature(path), "k1", started_ns=10**19)
    True
    >>> memo.lookup(path)
    'k1'
    """

    def __init__(self, size: int = PATH_MEMO_SIZE) -> None:
        self.size = size
        self._keys: dict[str, tuple[Signature, str]] = {}

    @staticmethod
    def signature(path: str) -> Signature:
        """``(size, mtime_ns, inode, device, ctime_ns)`` of ``path`` (raises OSError)."""
        return signature_of(os.stat(path))

    def __contains__(self, path: str | os.PathLike) -> bool:
        """Whether a key is remembered for ``path`` (unchecked)."""
        return os.fspath(path) in self._keys

    def lookup(self, path: str, max_bytes: int | None = None) -> str | None:
        """Return the remembered key if the file is unchanged, else None (no stat if unknown).

        A file larger than ``max_bytes`` (the caller's file policy) gets None,
        so that it is opened, and refused, under that policy.
        """
        return self.lookup_many([path], max_bytes)[0]

    def lookup_many(self, paths: Sequence[str], max_bytes: int | None = None) -> list[str | None]:
        """:meth:`lookup` of each path, in one loop (the cache's hot path: one ``stat`` each).

        Examples
        --------
        >>> from mmsk._cache_paths import PathKeys
        >>> PathKeys().lookup_many(["/no/such/file"])
        [None]
        """
        get, stat, keys = self._keys.get, os.stat, self._keys
        found: list[str | None] = []
        for path in paths:
            entry = get(path)
            if entry is None or (max_bytes is not None and entry[0][0] > max_bytes):
                found.append(None)
                continue
            try:
                unchanged = signature_of(stat(path)) == entry[0]
            except OSError:
                unchanged = False
            if unchanged:
                found.append(entry[1])
            else:  # changed or gone: forget it
                keys.pop(path, None)
                found.append(None)
        return found

    def remember(self, path: str, signature: Signature, key: str, started_ns: int) -> bool:
        """Record ``key`` for ``path`` hashed from ``started_ns`` on, if the stat can vouch.

        Returns whether the record was kept (a file changed less than
        :data:`RACY_NS` before it was hashed is not).
        """
        if started_ns - signature[1] <= RACY_NS:
            return False  # changed too recently: a same-size rewrite could keep its time stamp
        self.adopt(path, signature, key)
        return True

    def adopt(self, path: str, signature: Signature, key: str) -> None:
        """Record a key vouched for elsewhere (by :meth:`remember` in another process)."""
        if len(self._keys) >= self.size:
            self._keys.clear()
        self._keys[path] = (signature, key)

    def adopt_many(self, records: dict[str, tuple[Signature, str]]) -> None:
        """Record keys read from a key file; a path this process remembers keeps its own."""
        if len(self._keys) + len(records) > self.size:
            self._keys.clear()
        if not self._keys:
            self._keys.update(records)
            return
        for path, entry in records.items():
            self._keys.setdefault(path, entry)

    def clear(self) -> None:
        """Forget every path."""
        self._keys.clear()


def encode_records(records: Iterable[tuple[str, Signature, str]]) -> bytes:
    """Return the bytes of a key file holding ``(path, signature, key)`` records.

    A path that the file system cannot name (a lone surrogate) is left out.

    Examples
    --------
    >>> from mmsk._cache_paths import decode_records, encode_records
    >>> data = encode_records([("a.png", (3, 1, 2, 4, 5), "00" * 16)])
    >>> decode_records(data)
    [('a.png', (3, 1, 2, 4, 5), '00000000000000000000000000000000')]
    """
    fixed, keys, names = [], [], []
    for path, sig, key in records:
        try:
            name = os.fsencode(path)
            raw = bytes.fromhex(key)
        except (UnicodeError, ValueError):
            continue
        if len(raw) != _KEY_BYTES or b"\0" in name:
            continue
        fixed.append(tuple(sig))
        keys.append(raw)
        names.append(name)
    table = np.array(fixed, dtype=_FIXED).tobytes()
    blob = b"\0".join(names)  # (no path holds a NUL)
    body = table + b"".join(keys) + blob
    return _HEAD.pack(_MAGIC, len(names), len(blob), zlib.crc32(body)) + body


def decode_records(data: bytes) -> list[tuple[str, Signature, str]]:
    """Return the records of a key file's bytes (raises ValueError if damaged)."""
    return list(zip(*_decode_columns(data), strict=True))


def _decode_columns(data: bytes) -> tuple[list[str], list[Signature], list[str]]:
    """Return the paths, signatures and keys of a key file's bytes (ValueError if damaged)."""
    if len(data) < _HEAD.size:
        raise ValueError("truncated header")
    magic, n, blob_len, crc = _HEAD.unpack_from(data)
    if magic != _MAGIC:
        raise ValueError("not an mmsk path-key file")
    body = memoryview(data)[_HEAD.size :]
    if len(body) != n * (_FIXED.itemsize + _KEY_BYTES) + blob_len or zlib.crc32(body) != crc:
        raise ValueError("damaged path-key file")
    signatures = np.frombuffer(body, dtype=_FIXED, count=n).tolist()  # tuples, as signature_of
    at = n * _FIXED.itemsize
    hexed = bytes(body[at : at + n * _KEY_BYTES]).hex()
    keys = [hexed[i : i + 2 * _KEY_BYTES] for i in range(0, len(hexed), 2 * _KEY_BYTES)]
    blob = bytes(body[at + n * _KEY_BYTES :])
    # one decode for all the paths, as os.fsdecode does each (NUL is one byte in any encoding)
    encoding = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    paths = blob.decode(*encoding).split("\0") if n else []
    if len(paths) != n:
        raise ValueError("damaged path-key file")
    return paths, signatures, keys


class PathStore:
    """The key files of one cache location, as this process has read them.

    Its methods raise ``OSError`` for a location that cannot be used; the
    caller (:class:`mmsk._cache.FeatureCache`) turns that into one warning.

    Examples
    --------
    >>> import tempfile
    >>> from mmsk._cache_paths import PathStore
    >>> folder = tempfile.mkdtemp()
    >>> PathStore(folder).write([("a.png", (3, 1, 2, 4, 5), "ab" * 16)])
    >>> new, damaged = PathStore(folder).refresh()
    >>> new["a.png"][1] == "ab" * 16, damaged
    (True, [])
    """

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self.records: dict[str, tuple[Signature, str]] = {}
        self.seen: set[str] = set()
        self.readable = self.writable = True

    def refresh(self) -> tuple[dict[str, tuple[Signature, str]], list[tuple[str, Exception]]]:
        """Read the key files not seen yet; return their records and the damaged files."""
        new: dict[str, tuple[Signature, str]] = {}
        damaged: list[tuple[str, Exception]] = []
        try:
            names = [e.name for e in os.scandir(self.folder) if e.name.endswith(_SUFFIX)]
        except FileNotFoundError:
            return new, damaged  # nothing stored yet
        for name in sorted(set(names) - self.seen):  # oldest first: later records win
            self.seen.add(name)
            try:
                with open(os.path.join(self.folder, name), "rb") as fh:
                    paths, signatures, keys = _decode_columns(fh.read())
            except FileNotFoundError:
                continue  # merged away by another process
            except (OSError, ValueError) as exc:
                damaged.append((name, exc))
                continue
            new.update(zip(paths, zip(signatures, keys, strict=True), strict=True))
        self.records.update(new)
        return new, damaged

    def write(self, records: list[tuple[str, Signature, str]]) -> None:
        """Store ``records`` as one new key file; merge the files seen past the limit."""
        if not records or not self.writable:
            return
        merge = len(self.seen) >= COMPACT_FILES
        for path, sig, key in records:
            self.records[path] = (sig, key)
        if merge:
            records = [(path, sig, key) for path, (sig, key) in self.records.items()]
        name = f"{time.time_ns():016x}-{os.getpid():x}-{secrets.token_hex(4)}{_SUFFIX}"
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(encode_records(records))
            os.replace(tmp, self.folder / name)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        if merge:
            for old in self.seen:
                try:
                    os.unlink(self.folder / old)
                except OSError:
                    pass  # merged by another process already
            self.seen.clear()
        self.seen.add(name)
