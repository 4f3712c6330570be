"""How the extractor base splits a column into joblib tasks, and BLAS threads per batch.

Two small policies of :class:`mmsk._base.ItemTransformer`, kept apart from
it: :func:`batch_size` (how many items one joblib task extracts) and
:func:`blas_threads` (a BLAS thread limit set once around a whole batch,
not once per item).
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["MAX_BATCH", "MIN_BATCH", "TASKS_PER_WORKER", "batch_size", "blas_threads"]

#: Largest number of items one joblib task handles (and one cache segment holds).
MAX_BATCH = 256
#: Smallest task with several workers: below it a task costs more to send than to do.
MIN_BATCH = 4
#: Tasks per worker with ``n_jobs > 1``: enough to even out the workers' loads (and
#: move the progress bar in small steps), few enough that dispatch stays cheap.
TASKS_PER_WORKER = 8


def batch_size(n: int, workers: int) -> int:
    """Return the number of items per joblib task for ``n`` items on ``workers`` workers.

    One worker: :data:`MAX_BATCH`. Several: about :data:`TASKS_PER_WORKER`
    tasks per worker, each of :data:`MIN_BATCH` to :data:`MAX_BATCH` items.

    Examples
    --------
    >>> from mmsk._batching import batch_size
    >>> batch_size(3000, 1), batch_size(3000, 2), batch_size(600, 2), batch_size(10, 2)
    (256, 188, 38, 4)
    """
    if workers <= 1:
        return MAX_BATCH
    return max(MIN_BATCH, min(MAX_BATCH, math.ceil(n / (workers * TASKS_PER_WORKER))))


@functools.lru_cache(maxsize=1)
def _blas_controllers() -> tuple[Any, ...]:
    """Return threadpoolctl's controllers of the loaded BLAS libraries (built once: ms)."""
    from threadpoolctl import ThreadpoolController

    return tuple(lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas")


_lock = threading.Lock()
_depth = 0
_saved: list[tuple[Any, int]] = []


@contextlib.contextmanager
def blas_threads(limit: int | None) -> Iterator[None]:
    """Limit every loaded BLAS library to ``limit`` threads inside the block (None: no change).

    Set once per batch by the extractor base. The limit is process-wide, so
    nested and concurrent blocks (joblib's threading backend) share it: the
    first block entered sets it and the last one left restores the previous
    numbers of threads.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk._batching import blas_threads
    >>> with blas_threads(1):
    ...     float((np.ones((4, 4)) @ np.ones(4))[0])
    4.0
    """
    global _depth
    if limit is None:
        yield
        return
    with _lock:
        if _depth == 0:
            _saved[:] = [(lib, lib.get_num_threads()) for lib in _blas_controllers()]
            for lib, before in _saved:
                if before != limit:
                    lib.set_num_threads(limit)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for lib, before in _saved:
                    if before != limit:
                        lib.set_num_threads(before)
                _saved.clear()
