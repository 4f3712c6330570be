"""Shared timing helpers for the scripts in ``benchmarks/``.

Every benchmark follows one protocol, so that its figures can be compared and
trusted on a shared machine:

- variants are **interleaved**: repetition ``r`` runs every variant once
  (A B C, A B C, ...), so a burst of load from another process hits all of
  them alike; with ``rotate=True`` the order also shifts by one each
  repetition (A B C, B C A, C A B, ...), so that no variant always follows
  the same one (a variant that leaves the allocator or the caches in a bad
  state would otherwise slow its successor every time);
- the report gives the **median** of the repetitions and their spread
  (minimum and maximum), and the ratio of medians to the named baseline;
  ``paired_speed`` gives the median of the per-repetition ratios too (the
  variants of one repetition ran within seconds of each other: a drift of
  the machine's speed cancels in their ratio);
- a line is printed after each timed call (``flush=True``), so a long run is
  never silent;
- ``add_common_arguments`` gives each script the same ``--repeats``,
  ``--warmup`` and ``--quick`` options;
- the CPU time of the process is recorded beside the wall time
  (``Timing.cpu_seconds``, ``report(..., clock="cpu")``): on a loaded
  machine it is the steadier of the two for single-threaded work (with
  several threads it also counts their spinning).

Run a script with ``--quick`` for a smoke run (seconds), without it for the
figures quoted in the docs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Timing:
    """Wall times (seconds) of one variant over the repetitions, and its CPU times."""

    name: str
    seconds: list[float] = field(default_factory=list)
    last_result: Any = None
    cpu_seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.seconds), max(self.seconds)

    def on(self, clock: str) -> list[float]:
        """The repetitions' seconds on ``clock``: ``"wall"`` or ``"cpu"`` (this process)."""
        return {"wall": self.seconds, "cpu": self.cpu_seconds}[clock]


def add_common_arguments(parser: argparse.ArgumentParser, *, repeats: int = 5) -> None:
    """Add ``--repeats``, ``--warmup`` and ``--quick`` to a benchmark's parser."""
    parser.add_argument(
        "--repeats",
        type=int,
        default=repeats,
        help=f"timed repetitions per variant (default {repeats})",
    )
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed calls per variant before timing (default 1)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: small data, 3 repetitions, no warm-up"
    )


def interleaved(
    variants: Mapping[str, Callable[[], Any]],
    *,
    repeats: int,
    warmup: int = 1,
    verbose: bool = True,
    label: str = "",
    rotate: bool = False,
) -> dict[str, Timing]:
    """Time ``variants`` interleaved: A B C, A B C, ... ``repeats`` times.

    With ``rotate``, repetition ``r`` starts at the ``r``-th variant (A B C,
    B C A, C A B, ...). Each callable is called with no argument; its return
    value is kept in ``Timing.last_result``. Warm-up calls (also interleaved) are not timed;
    with ``verbose`` each call, warm-up included, prints a line as it ends.
    """
    out = {name: Timing(name) for name in variants}
    prefix = f"{label} " if label else ""
    for w in range(max(0, warmup)):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            if verbose:
                dt = time.perf_counter() - t0
                print(f"  {prefix}warm-up {w + 1}/{warmup} {name}: {dt:.4f} s", flush=True)
    items = list(variants.items())
    for r in range(repeats):
        shift = r % len(items) if rotate and items else 0
        for name, fn in items[shift:] + items[:shift]:
            t0, c0 = time.perf_counter(), time.process_time()
            result = fn()
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            out[name].seconds.append(dt)
            out[name].cpu_seconds.append(dc)
            out[name].last_result = result
            if verbose:
                print(
                    f"  {prefix}rep {r + 1}/{repeats} {name}: {dt:.4f} s (cpu {dc:.4f} s)",
                    flush=True,
                )
    return out


def report(
    timings: Mapping[str, Timing], *, baseline: str, unit: str = "s", clock: str = "wall"
) -> str:
    """A table of medians, spread and the ratio of medians to ``baseline``.

    A ratio above 1 means the variant is slower than the baseline.
    ``clock="cpu"`` reports the process's CPU time instead of wall time.
    """
    scale = {"s": 1.0, "ms": 1e3}[unit]
    base = statistics.median(timings[baseline].on(clock))
    width = max(len(name) for name in timings)
    what = "median" if clock == "wall" else "cpu median"
    lines = [f"{'variant':<{width}}  {what} ({unit})  [min, max]          ratio to {baseline}"]
    for name, t in timings.items():
        values = t.on(clock)
        median, lo, hi = statistics.median(values), min(values), max(values)
        lines.append(
            f"{name:<{width}}  {median * scale:11.4f}  [{lo * scale:.4f}, {hi * scale:.4f}]"
            f"  {median / base:6.3f}x"
        )
    return "\n".join(lines)


def paired_speed(
    timings: Mapping[str, Timing], slower: str, faster: str
) -> tuple[float, float, float]:
    """The median, min and max over repetitions of ``slower``'s time over ``faster``'s.

    Repetition ``r`` of interleaved variants ran within seconds (back to back
    without rotation), so their ratio cancels a drift of the machine's speed
    that the ratio of medians keeps (on a shared virtual machine one
    repetition can take 1.5x another). Above 1: ``faster`` is faster.
    """
    ratios = [
        a / b for a, b in zip(timings[slower].seconds, timings[faster].seconds, strict=True) if b
    ]
    return statistics.median(ratios), min(ratios), max(ratios)


def machine_line() -> str:
    """One line describing the machine's load, for the top of every report."""
    try:
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        load = "n/a"
    return f"cpus={os.cpu_count()} loadavg={load}"
