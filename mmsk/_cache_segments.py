"""Layer 3 of the feature cache: checksummed segment files on disk.

``<location>/mmsk_features/<extractor>/<token>/`` holds *segments*, one per
stored batch: a header (magic, rows, width, dtype, CRC-32 of the key table),
the 16-byte keys, a CRC-32 per row, then the rows. A segment is written to a
temporary file and renamed into place, and never changed, so readers see
whole segments or none. A :class:`_Store` reads each segment's key table
once, then only the rows it needs, each checked against its CRC-32. Faults
go to the callbacks it is given (:class:`mmsk._cache.FeatureCache` turns them
into one :class:`mmsk._cache.CacheWarning`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["FAULT", "UNSTORED", "WITHOUT", "key_bytes"]

FAULT = "fault"
WITHOUT = "features are computed without it"
UNSTORED = "features are computed and not stored"

#: ``fault(marker, what, exc)``: report a fault once per marker.
Fault = Callable[[str, str, BaseException], None]

_MAGIC = b"MMSKSEG1"
_HEAD = struct.Struct("<8sII8sI")  # magic, rows, width, dtype, CRC-32 of the key table
_KEY_BYTES = 16
_SUFFIX = ".seg"


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

    def __init__(self, path: str, width: int, dtype: np.dtype, crcs: list[int], offset: int):
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
        crcs = np.frombuffer(table, dtype="<u4", offset=n * _KEY_BYTES, count=n).tolist()
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

    def __init__(self, folder: Path, fault: Fault, changed: Callable[[str], None]) -> None:
        self.folder, self.fault, self.changed = folder, fault, changed
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
            self.fault(FAULT, f"cannot be read; {WITHOUT}", exc)
            return
        for name in sorted(set(names) - self.seen):
            self.seen.add(name)
            try:
                segment, keys = _Segment.read(os.path.join(self.folder, name))
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                what = f"skipping the damaged segment {name}; its entries are recomputed"
                self.fault(name, what, exc)
                continue
            for row, key in enumerate(keys):
                self.index[key] = (segment, row)

    def read_rows(self, wanted: Sequence[bytes], width: int, dtype: np.dtype) -> dict:
        """Read the rows of ``wanted`` keys found in the index, checking each checksum.

        The rows wanted from one segment are read with one ``pread`` of the
        span they lie in (when they fill at least a quarter of it, else one
        ``pread`` each); each row is checked against its CRC-32 and returned
        as a read-only view of the bytes read.
        """
        found: dict[bytes, np.ndarray] = {}
        by_segment: dict[_Segment, list[tuple[int, bytes]]] = {}
        get = self.index.get
        for key in wanted:
            entry = get(key)
            if entry is not None:
                by_segment.setdefault(entry[0], []).append((entry[1], key))
        size, crc32 = width * dtype.itemsize, zlib.crc32
        for segment, entries in by_segment.items():
            if segment.width != width or segment.dtype != dtype:
                continue
            path = segment.path
            entries.sort()
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            except OSError:
                continue
            try:
                first, last = entries[0][0], entries[-1][0]
                if (last - first + 1) <= 4 * len(entries):
                    spans = [(first, last, entries)]
                else:
                    spans = [(entry[0], entry[0], [entry]) for entry in entries]
                crcs = segment.crcs
                for lo, hi, group in spans:
                    data = os.pread(fd, (hi - lo + 1) * size, segment.offset + lo * size)
                    usable = len(data) // size  # (a truncated file: the rest are misses)
                    rows = np.frombuffer(data, dtype=dtype, count=usable * width)
                    views = list(rows.reshape(usable, width))  # one read-only view per row
                    for row, key in group:
                        at = row - lo
                        if at >= usable or crc32(views[at]) != crcs[row]:
                            self._changed(key, path)
                            continue
                        found[key] = views[at]
            except OSError:
                pass
            finally:
                os.close(fd)
        return found

    def _changed(self, key: bytes, path: str) -> None:
        self.index.pop(key, None)
        self.changed(path)

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
            self.fault(FAULT, f"cannot be written; {UNSTORED}", exc)
            return
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
        self.seen.add(name)
        dtype = np.dtype(rows.dtype).newbyteorder("<")
        segment = _Segment(str(self.folder / name), rows.shape[1], dtype, crcs.tolist(), offset)
        for row, key in enumerate(keys):
            self.index[key] = (segment, row)
