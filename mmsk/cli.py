"""The ``mmsk`` command line: thin wrappers around the library.

``mmsk demo`` runs :func:`mmsk.demo.run_demo`. ``mmsk fit`` reads a CSV
file, builds a pipeline with :func:`mmsk.compose.make_multimodal_pipeline`
from the column roles it is given, fits it and saves it with
:func:`mmsk.save`. Its options set the extractors (``--image-size``,
``--image-mode``, ``--audio-sr``, ``--text-encoder tfidf|sentence``) and the
training (``--max-epochs``, ``--early-stopping``, ``--scoring``,
``--device``, ...), a ``--params`` file (JSON or TOML) sets any parameter of
the pipeline, flags winning, and ``--verbose`` prints progress on stderr
(:mod:`mmsk._cli_fit`, :mod:`mmsk._cli_params`). ``mmsk predict`` and
``mmsk evaluate`` load such a file with :func:`mmsk.io.load_with_card` and
apply it to another CSV file.
``mmsk serve`` runs :func:`mmsk.serve.serve` (extra ``serve``). See
``docs/cli.md`` and ``docs/serving.md``.

A model file is a safe model file of :func:`mmsk.save` (``.skops`` by
convention; usable from Python with ``mmsk.load(path)``): loading it runs no
code from the file. Its model card (:func:`mmsk.io.read_card`) holds what the
commands need: the column roles, the task, the target, the classes, and the
training data's fingerprint, the training score and the fit time. Model
files of an earlier ``mmsk fit`` (a ``joblib`` pickle of a dict) and other
pickles load only with ``--trust-pickle``, since unpickling a file runs any
code it holds. See ``docs/io.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import _cli_fit, _cli_params
from ._cli_data import (
    _PATH_ROLES,
    _ROLES,
    MAX_AUTO_CLASSES,
    _check_columns,
    _confined,
    _features,
    _infer_task,
    _load_model,
    _read_csv,
    _resolve_paths,
    _roles,
    _target,
)
from ._tables import DEFAULT_CHUNK_SIZE

__all__ = ["build_parser", "main"]


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


# -- fit -------------------------------------------------------------------------
def _fit(args: argparse.Namespace) -> int:
    import pandas as pd

    from .io import save

    params = _cli_params.read_params(args.params) if args.params else {}
    roles = _cli_params.roles_with_params(_roles(args), params)
    frame = _read_csv(args.data)
    features = [c for role in _ROLES for c in roles[role]]
    _check_columns(frame, [args.target, *features], args.data)
    if args.target in features:
        raise ValueError(f"target column {args.target!r} is also given as a feature")
    for col in roles["numeric"]:
        if not pd.api.types.is_numeric_dtype(frame[col]):
            example = frame[col].dropna().iloc[0]
            raise ValueError(
                f"--numeric column {col!r} is not numeric (it holds e.g. {example!r}); "
                "give it as --categorical or --text"
            )
    y = _target(frame, args.target, args.data)
    task = _cli_params.given_task(args, params)
    task = _infer_task(y) if task == "auto" else task
    pipeline, options = _cli_fit.build_pipeline(args, roles, task, params)
    X = _resolve_paths(frame, roles["image"] + roles["audio"], Path(args.data).resolve().parent)

    start = time.perf_counter()
    # What Pipeline.fit does, keeping the features to score on them without extracting twice.
    step, net = pipeline.named_steps["features"], pipeline.named_steps["fusion"]
    with _cli_fit.progress(pipeline, args.verbose):  # on stderr
        with _confined(pipeline, args.allow_dir):
            Xt = step.fit_transform(X, y)
        net.fit(Xt, y)
    seconds = time.perf_counter() - start
    score = float(net.score(Xt, y))

    classes = net.classes_.tolist() if task == "classification" else None
    save(
        pipeline,
        args.out,
        X=frame[features],
        y=y,
        roles=roles,
        target=args.target,
        task=task,
        n_rows=len(frame),
        train_score=score,
        fit_seconds=seconds,
        data=str(Path(args.data).resolve()),
        cli_options=options,
    )

    kind = f"{task}, {len(classes)} classes" if classes is not None else task
    print(f"data      {args.data}: {len(frame)} rows; target {args.target!r} ({kind})")
    sources = {name: cols for name, _, cols in step.transformers}
    for name in net.modalities_:
        cols = sources[name]
        cols = cols if isinstance(cols, str) else ", ".join(cols)
        width = net.modality_dims_[name]
        print(f"block     {name:<12} <- {cols}  ({width} feature{'s' * (width != 1)})")
    nets = getattr(net, "nets_", [net.net_])
    counts = [len(member.history) for member in nets]
    epochs = (
        f"{counts[0]} epochs" if len(set(counts)) == 1 else f"{'/'.join(map(str, counts))} epochs"
    )
    if len(nets) > 1:
        epochs = f"{len(nets)} networks averaged, {epochs}{' each' * (len(set(counts)) == 1)}"
    metric = "accuracy" if task == "classification" else "R2"
    print(f"network   fusion {net.fusion!r}, {epochs}, on {net.device_}")
    print(f"fitted    in {seconds:.1f} s; training {metric} {score:.3f}")
    print(f"saved     {args.out}")
    return 0


# -- predict ---------------------------------------------------------------------
def _predict(args: argparse.Namespace) -> int:
    model = _load_model(args.model, args.trust_pickle, "predict")
    pipeline = model["pipeline"]
    if args.proba and model["task"] != "classification":
        raise ValueError("--proba needs a classification model; this one is a regression")
    from ._stream import predict_table

    columns = model["columns"]
    paths = [c for role in _PATH_ROLES for c in columns[role]]
    base = Path(args.data).resolve().parent
    with _confined(pipeline, args.allow_dir):
        n_rows = predict_table(
            pipeline,
            args.data,
            sys.stdout if args.out is None else args.out,
            chunk_size=args.chunk_size,
            method=["predict", "predict_proba"] if args.proba else "predict",
            columns=[c for cols in columns.values() for c in cols],
            id_column=args.id,
            prepare=lambda chunk: _resolve_paths(chunk, paths, base),
            decimals=6,
            progress=False if args.quiet else None,
        )
    if args.out is not None and not args.quiet:
        print(f"wrote {n_rows} predictions to {args.out}")
    return 0


# -- evaluate --------------------------------------------------------------------
def _metrics(model: dict[str, Any], X: Any, y: Any) -> dict[str, float | None]:
    import numpy as np
    from sklearn import metrics

    pipeline = model["pipeline"]
    if model["task"] == "regression":
        pred = pipeline.predict(X)
        return {
            "r2": float(metrics.r2_score(y, pred)) if len(y) > 1 else None,
            "mae": float(metrics.mean_absolute_error(y, pred)),
            "rmse": float(np.sqrt(metrics.mean_squared_error(y, pred))),
        }
    proba = pipeline.predict_proba(X)
    classes = pipeline.classes_
    pred = classes[proba.argmax(axis=1)]
    known = np.isin(np.asarray(y), classes).all()
    scores = {
        "accuracy": float(metrics.accuracy_score(y, pred)),
        "balanced_accuracy": float(metrics.balanced_accuracy_score(y, pred)),
        "f1_macro": float(metrics.f1_score(y, pred, average="macro", zero_division=0)),
        # log loss is undefined for labels the model has never seen
        "log_loss": float(metrics.log_loss(y, proba, labels=classes)) if known else None,
    }
    if len(classes) == 2:
        both = known and len(np.unique(y)) == 2
        auc = metrics.roc_auc_score(np.asarray(y) == classes[1], proba[:, 1]) if both else None
        scores["roc_auc"] = None if auc is None else float(auc)
    return scores


def _evaluate(args: argparse.Namespace) -> int:
    import warnings

    model = _load_model(args.model, args.trust_pickle, "evaluate")
    X = _features(model, args.data)
    target = model["target"]
    if target is None:
        raise ValueError(f"{args.model}: its model card names no target column to score on")
    _check_columns(X, [target], args.data)
    y = _target(X, target, args.data)
    with warnings.catch_warnings(), _confined(model["pipeline"], args.allow_dir):
        warnings.simplefilter("ignore", UserWarning)  # e.g. "y_pred contains classes not in y_true"
        scores = _metrics(model, X, y)
    if args.json:
        report = {
            "model": args.model,
            "data": args.data,
            "n_rows": len(X),
            "target": target,
            "task": model["task"],
            "metrics": scores,
        }
        print(json.dumps(report, indent=2))
        return 0
    print(f"{args.data}: {len(X)} rows, target {target!r} ({model['task']})")
    for name, value in scores.items():
        print(f"{name:<18} {'n/a' if value is None else f'{value:.4f}'}")
    return 0


# -- serve -----------------------------------------------------------------------
def _serve(args: argparse.Namespace) -> int:
    from .serve import serve

    serve(
        args.model,
        host=args.host,
        port=args.port,
        workers=args.workers,
        allow_dirs=args.allow_dir or [],
        max_request_bytes=args.max_request_bytes,
        max_image_pixels=args.max_image_pixels,
        max_audio_seconds=args.max_audio_seconds,
        max_records=args.max_records,
        trusted=args.trust_pickle,
        log_level=args.log_level,
    )
    return 0


def _add_allow_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-dir",
        action="append",
        metavar="DIR",
        help="read image and audio files only inside DIR (repeatable; symlinks and '..' "
        "resolved): a path of DATA outside them is an error. Use it for a DATA file you did "
        "not write yourself",
    )


def _add_serve(sub: Any) -> None:
    from . import serve as limits  # the defaults; imports neither fastapi nor uvicorn

    serve = sub.add_parser(
        "serve",
        help="serve a saved model over HTTP (extra: pip install 'mmsk[serve]')",
        description="Serve MODEL over HTTP: POST /predict and /predict_proba take JSON "
        '{"records": [{column: value, ...}]}, with images and audio as {"base64": ...}. '
        "GET /health, /metadata, /docs. See docs/serving.md.",
    )
    serve.add_argument("model", metavar="MODEL", help="model file written by mmsk.io.save")
    serve.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=8000, metavar="N", help="TCP port (default 8000)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes, one model each (default 1)",
    )
    serve.add_argument(
        "--allow-dir",
        action="append",
        metavar="DIR",
        help="a directory whose files requests may name by path (repeatable; default: none, "
        "paths are refused)",
    )
    for flag, kind, default, what in [
        ("--max-request-bytes", int, limits.MAX_REQUEST_BYTES, "largest request body or file"),
        ("--max-image-pixels", int, limits.MAX_IMAGE_PIXELS, "most pixels of an image"),
        ("--max-audio-seconds", float, limits.MAX_AUDIO_SECONDS, "longest audio clip"),
        ("--max-records", int, limits.MAX_RECORDS, "most records per request"),
    ]:
        serve.add_argument(
            flag,
            type=kind,
            default=default,
            metavar="S" if kind is float else "N",
            help=f"{what} (default {default})",
        )
    serve.add_argument(
        "--trust-pickle",
        action="store_true",
        help="load a model file that needs unpickling (runs its code: only files you trust)",
    )
    serve.add_argument(
        "--log-level", default="info", metavar="LEVEL", help="uvicorn's log level (default info)"
    )
    serve.set_defaults(func=_serve)


# -- parser ------------------------------------------------------------------------
def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``mmsk`` command.

    Returns
    -------
    argparse.ArgumentParser
        The parser, one sub-command per job: ``demo``, ``fit``, ``predict``,
        ``evaluate``, ``serve``.

    Examples
    --------
    >>> from mmsk.cli import build_parser
    >>> build_parser().parse_args(["demo", "--cv", "3"]).cv
    3
    >>> args = build_parser().parse_args(
    ...     ["fit", "train.csv", "--target", "label", "--image", "img", "--out", "m.skops"]
    ... )
    >>> args.image, args.task, args.fusion
    (['img'], 'auto', 'concat')
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

    fit = sub.add_parser(
        "fit",
        help="fit a multimodal model on a CSV file and save it",
        description="Fit extractors and a fusion network on DATA (CSV) and save them to --out. "
        "Relative paths in --image and --audio columns are read relative to DATA's folder.",
    )
    fit.add_argument("data", metavar="DATA", help="training data, a CSV file with a header")
    fit.add_argument("--target", required=True, metavar="COL", help="column to predict")
    for role, what in [
        ("image", "image file paths"),
        ("audio", "audio file paths"),
        ("text", "free text"),
        ("numeric", "numbers"),
        ("categorical", "categories"),
    ]:
        fit.add_argument(
            f"--{role}", nargs="+", action="extend", metavar="COL", help=f"column(s) of {what}"
        )
    fit.add_argument(
        "--task",
        choices=("auto", "classification", "regression"),
        action=_cli_fit.Given,
        default="auto",
        help="auto (default): regression for a numeric target with non-integer values or more "
        f"than {MAX_AUTO_CLASSES} distinct integers, else classification",
    )
    fit.add_argument(
        "--fusion",
        action=_cli_fit.Given,
        default="concat",
        help="concat (default), late, gated, attention or tensor (see docs/fusion.md)",
    )
    fit.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="most training epochs (default 100; early stopping usually ends sooner)",
    )
    fit.add_argument("--random-state", type=int, default=None, help="seed, for repeatable fits")
    fit.add_argument("--n-jobs", type=int, default=None, help="parallel feature extraction")
    _cli_fit.add_fit_options(fit)
    fit.add_argument(
        "--out", required=True, metavar="MODEL", help="model file to write (e.g. model.skops)"
    )
    _add_allow_dir(fit)
    fit.set_defaults(func=_fit)

    predict = sub.add_parser(
        "predict",
        help="predict with a saved model",
        description="Write one prediction per row of DATA as CSV: the row number (or --id "
        "column), the prediction, and with --proba one probability column per class. DATA is "
        "read, predicted and written --chunk-size rows at a time, so it may exceed memory.",
    )
    predict.add_argument("model", metavar="MODEL", help="model file written by `mmsk fit`")
    predict.add_argument(
        "data", metavar="DATA", help="CSV (or .parquet) file with the model's feature columns"
    )
    predict.add_argument(
        "--out", default=None, help="CSV (or .parquet) file to write (default: CSV on stdout)"
    )
    predict.add_argument("--proba", action="store_true", help="add class probabilities")
    predict.add_argument(
        "--chunk-size",
        type=_positive,
        default=DEFAULT_CHUNK_SIZE,
        metavar="N",
        help=f"rows read, predicted and written at a time (default {DEFAULT_CHUNK_SIZE:,})",
    )
    predict.add_argument(
        "--quiet", action="store_true", help="no progress bar (on stderr) and no summary line"
    )
    predict.add_argument(
        "--id", default=None, metavar="COL", help="copy this column of DATA as the first column"
    )
    predict.add_argument(
        "--trust-pickle",
        action="store_true",
        help="also load a pickle or joblib model file (an earlier mmsk fit's); unpickling "
        "runs any code the file holds: only for files you trust",
    )
    _add_allow_dir(predict)
    predict.set_defaults(func=_predict)

    evaluate = sub.add_parser(
        "evaluate",
        help="score a saved model on labelled data",
        description="Print the model's metrics on DATA, which holds the target column.",
    )
    evaluate.add_argument("model", metavar="MODEL", help="model file written by `mmsk fit`")
    evaluate.add_argument("data", metavar="DATA", help="CSV file with features and target")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.add_argument(
        "--trust-pickle",
        action="store_true",
        help="also load a pickle or joblib model file (an earlier mmsk fit's); unpickling "
        "runs any code the file holds: only for files you trust",
    )
    _add_allow_dir(evaluate)
    evaluate.set_defaults(func=_evaluate)
    _add_serve(sub)
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
        The exit status: 0 on success, 2 for a usage or data error, which is
        reported on one line of stderr as ``mmsk <command>: error: ...``.

    Examples
    --------
    >>> from mmsk.cli import main
    >>> main(["demo", "--help"])  # doctest: +SKIP
    """
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # stdout closed early, e.g. `mmsk predict ... | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout
        return 1
    except (OSError, ValueError, ImportError) as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message
        print(f"mmsk {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
