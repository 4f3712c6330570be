"""Opening the files that items name: regular files only, within a size, inside allowed folders.

Every extractor that reads a path, the feature cache's hashing and the
server's path items open files through here, so one set of rules holds
everywhere (``docs/security.md``):

- only a *regular* file is read: a FIFO, a device, a socket or a directory
  is refused before a byte is read (it is opened with ``O_NONBLOCK``, so
  even a FIFO without a writer cannot block the open);
- a file larger than a limit is refused from its size before reading, and
  an empty (0-byte) file is refused the same way for every modality;
- where allowed directories are given, the path is resolved (symlinks and
  ``..``) and must lie inside one of them.

Only the standard library (and :class:`mmsk._items.BadItem`) is used here.
"""

from __future__ import annotations

import io
import numbers
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from ._items import BadItem

__all__ = [
    "MAX_FILE_BYTES",
    "FilePolicy",
    "FileTooLarge",
    "NotRegularFile",
    "PathOutside",
    "allowed_roots",
    "check_max_bytes",
    "confine",
    "open_regular",
    "read_regular",
]

_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW_FLAGS = _FLAGS | getattr(os, "O_NOFOLLOW", 0)

#: Default largest file an extractor reads (``max_file_bytes``): 256 MiB.
MAX_FILE_BYTES = 256 * 2**20

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class PathOutside(BadItem):
    """A path that resolves outside the allowed directories."""


class NotRegularFile(BadItem):
    """A path that names a FIFO, a device, a socket or a directory."""


class FileTooLarge(BadItem):
    """A file larger than the limit."""


def allowed_roots(dirs: Any, *, name: str = "allowed_dirs") -> tuple[Path, ...] | None:
    """Resolve the allowed directories of a confinement option.

    Parameters
    ----------
    dirs : None, path-like or iterable of path-like
        The option's value. None means "no confinement"; an empty sequence
        allows no path at all.
    name : str, default="allowed_dirs"
        The option's name, for the error message.

    Returns
    -------
    tuple of pathlib.Path or None
        The directories, ``~`` expanded and resolved (symlinks followed).

    Raises
    ------
    ValueError
        If an entry is not an existing directory, or ``dirs`` is of
        another type.

    Examples
    --------
    >>> import tempfile
    >>> from mmsk._files import allowed_roots
    >>> allowed_roots(None) is None
    True
    >>> len(allowed_roots([tempfile.gettempdir()]))
    1
    """
    if dirs is None:
        return None
    if isinstance(dirs, (str, bytes, os.PathLike)):
        dirs = [dirs]
    if not isinstance(dirs, Iterable):
        raise ValueError(f"{name} must be None, a directory or a list of directories, got {dirs!r}")
    roots = []
    for folder in dirs:
        if not isinstance(folder, (str, os.PathLike)):
            raise ValueError(f"{name} must hold directory paths, got {folder!r}")
        real = Path(os.path.realpath(Path(os.fspath(folder)).expanduser()))
        if not real.is_dir():
            raise ValueError(f"{name}: {os.fspath(folder)!r} is not a directory")
        roots.append(real)
    return tuple(roots)


def confine(path: str | os.PathLike, roots: Iterable[Path], *, base: Path | None = None) -> str:
    """Resolve ``path`` and check that it lies inside one of ``roots``.

    Parameters
    ----------
    path : str or path-like
        The path an item names.
    roots : iterable of pathlib.Path
        Resolved allowed directories (:func:`allowed_roots`).
    base : pathlib.Path or None, default=None
        Folder a relative path is read from; None: the working directory.

    Returns
    -------
    str
        The resolved path (symlinks and ``..`` followed), to open.

    Raises
    ------
    PathOutside
        If the resolved path is not inside any root.
    BadItem
        If the path holds a NUL character.

    Examples
    --------
    >>> from pathlib import Path
    >>> from mmsk._files import confine
    >>> confine("/srv/data/a.png", [Path("/srv/data")])
    '/srv/data/a.png'
    >>> confine("/srv/data/../secret", [Path("/srv/data")])
    Traceback (most recent call last):
    ...
    mmsk._files.PathOutside: path outside the allowed directories (symlinks and '..' resolved)
    """
    raw = os.fspath(path)
    if "\x00" in raw:
        raise BadItem("not a valid path (it holds a NUL character)")
    candidate = Path(raw)
    if base is not None and not candidate.is_absolute():
        candidate = base / candidate
    real = os.path.realpath(candidate)
    if not any(Path(real).is_relative_to(root) for root in roots):
        raise PathOutside("path outside the allowed directories (symlinks and '..' resolved)")
    return real


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def open_regular(
    path: str | os.PathLike,
    *,
    max_bytes: int | None = MAX_FILE_BYTES,
    limit_name: str = "max_file_bytes",
    nofollow: bool = False,
) -> IO[bytes]:
    """Open a regular file for reading, refusing anything else before reading it.

    Parameters
    ----------
    path : str or path-like
        The file.
    max_bytes : int or None, default=MAX_FILE_BYTES
        Largest size accepted (from ``fstat``, before reading); None: any.
    limit_name : str, default="max_file_bytes"
        Name of the limit, for the error message.
    nofollow : bool, default=False
        Refuse a symlink as the last component (for an already resolved path).

    Returns
    -------
    binary file object
        Open on the file; the caller closes it.

    Raises
    ------
    FileNotFoundError, PermissionError
        As :func:`os.open` raises them.
    NotRegularFile
        For a directory, a FIFO, a device or a socket.
    FileTooLarge
        For a file over ``max_bytes``.
    BadItem
        For an empty (0-byte) file.

    Examples
    --------
    >>> import tempfile
    >>> from mmsk._files import open_regular
    >>> with tempfile.NamedTemporaryFile() as tmp:
    ...     _ = tmp.write(b"data"); tmp.flush()
    ...     with open_regular(tmp.name) as fh:
    ...         fh.read()
    b'data'
    >>> open_regular(tempfile.gettempdir())
    Traceback (most recent call last):
    ...
    mmsk._files.NotRegularFile: is a directory, not a file
    """
    fd = _open_checked(path, max_bytes, limit_name, nofollow)[0]
    try:
        return open(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _open_checked(
    path: str | os.PathLike, max_bytes: int | None, limit_name: str, nofollow: bool
) -> tuple[int, int]:
    """Open ``path`` as :func:`open_regular` does; return the descriptor and the file's size."""
    flags = _NOFOLLOW_FLAGS if nofollow else _FLAGS
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError)):
            raise
        try:  # a socket refuses open() itself (ENXIO): say what it is
            mode = os.stat(path).st_mode
        except OSError:
            raise exc from None
        if not stat.S_ISREG(mode):
            raise NotRegularFile(f"{_kind(mode)}, not a regular file: refused") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            if stat.S_ISDIR(info.st_mode):
                raise NotRegularFile("is a directory, not a file")
            raise NotRegularFile(
                f"{_kind(info.st_mode)}, not a regular file: refused (reading it could block "
                "or never end)"
            )
        if max_bytes is not None and info.st_size > max_bytes:
            raise FileTooLarge(
                f"file of {info.st_size} bytes, more than the limit of {max_bytes} ({limit_name})"
            )
        if info.st_size == 0:
            raise BadItem("empty file (0 bytes)")
        return fd, info.st_size
    except BaseException:
        os.close(fd)
        raise


def read_regular(
    path: str | os.PathLike,
    *,
    max_bytes: int | None = MAX_FILE_BYTES,
    limit_name: str = "max_file_bytes",
    nofollow: bool = False,
) -> bytes:
    """Read a whole regular file, at most ``max_bytes`` (see :func:`open_regular`).

    Examples
    --------
    >>> import tempfile
    >>> from mmsk._files import read_regular
    >>> with tempfile.NamedTemporaryFile() as tmp:
    ...     _ = tmp.write(b"0123456789"); tmp.flush()
    ...     read_regular(tmp.name, max_bytes=4)
    Traceback (most recent call last):
    ...
    mmsk._files.FileTooLarge: file of 10 bytes, more than the limit of 4 (max_file_bytes)
    """
    fd, size = _open_checked(path, max_bytes, limit_name, nofollow)
    cap = None if max_bytes is None else max_bytes + 1
    try:  # one read() for the whole file; more only if it is short of or past its size
        parts, total = [], 0
        want = size + 1 if cap is None else min(size + 1, cap)
        while cap is None or total < cap:
            chunk = os.read(fd, want if cap is None else min(want, cap - total))
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
            if total == size and len(parts) == 1:
                break  # asked for one byte more than its size and got its size: end of file
            want = 1 << 20
    finally:
        os.close(fd)
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    if max_bytes is not None and len(data) > max_bytes:  # it grew since fstat
        raise FileTooLarge(f"file of more than {max_bytes} bytes, the limit ({limit_name})")
    return data


class FilePolicy:
    """How an extractor opens the paths of its items: size limit and allowed folders.

    Parameters
    ----------
    max_bytes : int or None, default=MAX_FILE_BYTES
        Largest file read; None: any size.
    roots : tuple of pathlib.Path or None, default=None
        Resolved allowed directories; None: any path.
    whole : bool, default=False
        :meth:`open` reads the whole file at once (one ``read`` call) and
        returns it as a :class:`io.BytesIO`: faster for decoders that read
        small files in many small pieces (Pillow), at the cost of holding
        the file's bytes, which such decoders do anyway.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from mmsk._files import FilePolicy
    >>> policy = FilePolicy(roots=(Path(tempfile.mkdtemp()),))
    >>> policy.open("/etc/hostname")
    Traceback (most recent call last):
    ...
    mmsk._files.PathOutside: path outside the allowed directories (symlinks and '..' resolved)
    """

    def __init__(
        self,
        max_bytes: int | None = MAX_FILE_BYTES,
        roots: tuple[Path, ...] | None = None,
        *,
        whole: bool = False,
    ):
        self.max_bytes = max_bytes
        self.roots = roots
        self.whole = whole

    def open(self, path: str | os.PathLike) -> IO[bytes]:
        """Open ``path`` under the policy (its bytes in memory if ``whole``); caller closes it."""
        if self.whole:
            where, nofollow = self._where(path)
            return io.BytesIO(read_regular(where, max_bytes=self.max_bytes, nofollow=nofollow))
        return self.open_file(path)

    def open_file(self, path: str | os.PathLike) -> IO[bytes]:
        """Open ``path`` under the policy as a file (with a descriptor); the caller closes it."""
        where, nofollow = self._where(path)
        return open_regular(where, max_bytes=self.max_bytes, nofollow=nofollow)

    def _where(self, path: str | os.PathLike) -> tuple[str | os.PathLike, bool]:
        """Return the path to open and whether to refuse a final symlink (resolved in the roots)."""
        if self.roots is None:
            return path, False
        return confine(path, self.roots), True


def check_max_bytes(value: Any, name: str = "max_file_bytes") -> None:
    """Validate a ``max_file_bytes`` parameter: None or an int >= 1.

    Examples
    --------
    >>> from mmsk._files import check_max_bytes
    >>> check_max_bytes(0)
    Traceback (most recent call last):
    ...
    ValueError: max_file_bytes must be None or an int >= 1, got 0
    """
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be None or an int >= 1, got {value!r}")
