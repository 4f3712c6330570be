"""The content-addressed feature cache behind the extractors' ``memory=``.

One entry per (item content, extractor, output-changing parameters,
library versions). Entries are ``.npy`` files under
``<location>/mmsk_features/<namespace>/<k[:2]>/<k>.npy``, written atomically,
so that joblib workers and concurrent processes can share one cache.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np

__all__ = ["FeatureCache", "cache_location"]


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


class FeatureCache:
    """A folder of per-item feature vectors, addressed by content and parameters.

    Parameters
    ----------
    location : pathlib.Path or None
        Root folder; None makes a cache that stores nothing.
    namespace : str
        Name of the extractor (a folder level).
    token : str
        Hash of the parameters and versions that change the output.

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

    def _path(self, key: str) -> Path:
        full = joblib.hash((key, self.token))
        assert self.location is not None
        return self.location / "mmsk_features" / self.namespace / full[:2] / f"{full}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """Return the stored vector for ``key``, or None on a miss."""
        if self.location is None:
            return None
        path = self._path(key)
        try:
            return np.load(path, allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError, EOFError):
            return None

    def put(self, key: str, value: np.ndarray) -> None:
        """Store ``value`` under ``key`` (atomically: write, then rename)."""
        if self.location is None:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, np.asarray(value), allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
