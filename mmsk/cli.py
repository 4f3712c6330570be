"""The ``mmsk`` command line: thin wrappers around the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(
        data_home=args.data_home,
        full=args.full,
        cv=args.cv,
        out_dir=args.out,
        n_jobs=args.n_jobs,
        plot=not args.no_plot,
        max_epochs=args.max_epochs,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``mmsk`` command.

    Returns
    -------
    argparse.ArgumentParser
        The parser, one sub-command per job.

    Examples
    --------
    >>> from mmsk.cli import build_parser
    >>> build_parser().parse_args(["demo", "--cv", "3"]).cv
    3
    """
    parser = argparse.ArgumentParser(
        prog="mmsk", description="Multimodal learning as a scikit-learn workflow."
    )
    parser.add_argument("--version", action="version", version=f"mmsk {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="compare image-only, audio-only and fused networks on AV-digits"
    )
    demo.add_argument("--full", action="store_true", help="use the full data under --data-home")
    demo.add_argument("--data-home", default=None, help="folder of the full data (env MMSK_DATA)")
    demo.add_argument("--cv", type=int, default=5, help="folds, speakers held out (default 5)")
    demo.add_argument("--out", default="mmsk-demo", help="output folder (default mmsk-demo)")
    demo.add_argument("--n-jobs", type=int, default=None, help="parallel folds")
    demo.add_argument("--max-epochs", type=int, default=None, help="training epochs (default 60)")
    demo.add_argument("--no-plot", action="store_true", help="do not write the PNGs")
    demo.set_defaults(func=_demo)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mmsk`` command.

    Parameters
    ----------
    argv : sequence of str or None, default=None
        Arguments; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        The exit status.

    Examples
    --------
    >>> from mmsk.cli import main
    >>> main(["demo", "--help"])  # doctest: +SKIP
    """
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        print(f"mmsk {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
