"""The training and extractor options of ``mmsk fit``.

:mod:`mmsk.cli` stays thin: this module adds the options to the ``fit``
parser (:func:`add_fit_options`) and turns them and a ``--params`` file
(read by :mod:`mmsk._cli_params`) into the pipeline of
:func:`mmsk.compose.make_multimodal_pipeline` (:func:`build_pipeline`).
Explicit flags override the file. Unknown keys get a "did you mean" and the
full list of valid ones. See ``docs/cli.md``.

Only the standard library is imported at module level, so that building the
parser stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._cli_params import PIPELINE_ARGS, ROLES, _given, _unknown, did_you_mean

__all__ = ["Given", "add_fit_options", "build_pipeline", "image_size", "progress"]

_EARLY_STOPPING = {"auto": "auto", "on": True, "off": False}
#: Options of ``fit`` recorded in the model card's ``extra.cli_options`` when given.
_RECORDED = (
    "task",
    "fusion",
    "max_epochs",
    "early_stopping",
    "scoring",
    "n_estimators",
    "device",
    "class_weight",
    "random_state",
    "n_jobs",
    "image_size",
    "image_mode",
    "audio_sr",
    "text_encoder",
    "text_model",
    "text_components",
    "verbose",
)


# -- parser ------------------------------------------------------------------------------
class Given(argparse.Action):
    """Store the value and remember that it was given (``namespace.given``), for precedence."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None):
        setattr(namespace, self.dest, values)
        given = set(getattr(namespace, "given", None) or ())
        given.add(self.dest)
        namespace.given = given


def image_size(text: str) -> tuple[int, int]:
    """Parse ``"28"`` or ``"32x24"`` (width x height) into a ``(width, height)`` pair.

    Parameters
    ----------
    text : str
        One positive int (a square), or two joined by ``x``.

    Returns
    -------
    tuple of (int, int)
        ``(width, height)``, as :class:`mmsk.ImagePixels` takes ``size``.

    Examples
    --------
    >>> from mmsk._cli_fit import image_size
    >>> image_size("28"), image_size("32x24")
    ((28, 28), (32, 24))
    """
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values, default=0) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive int or WIDTHxHEIGHT (e.g. 28 or 32x24), got {text!r}"
        )
    return (values[0], values[-1])


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return value


def add_fit_options(fit: argparse.ArgumentParser) -> None:
    """Add the training, extractor, ``--params`` and ``--verbose`` options to ``fit``.

    Every one defaults to None (not given), so that a ``--params`` file
    decides what a flag does not.

    Parameters
    ----------
    fit : argparse.ArgumentParser
        The ``fit`` sub-command's parser.

    Examples
    --------
    >>> import argparse
    >>> from mmsk._cli_fit import add_fit_options
    >>> parser = argparse.ArgumentParser()
    >>> add_fit_options(parser)
    >>> args = parser.parse_args(["--image-size", "28", "--early-stopping", "off"])
    >>> args.image_size, args.early_stopping, args.audio_sr
    ((28, 28), 'off', None)
    """
    net = fit.add_argument_group("network")
    net.add_argument(
        "--early-stopping",
        choices=tuple(_EARLY_STOPPING),
        default=None,
        help="hold out rows and stop when they stop improving: auto (default; on with at "
        "least 20 held-out rows), on, off",
    )
    net.add_argument(
        "--scoring",
        default=None,
        metavar="NAME",
        help="scikit-learn scorer that early stopping watches (e.g. f1_macro; default: the "
        "validation loss, or the balanced accuracy with --class-weight balanced)",
    )
    net.add_argument(
        "--n-estimators",
        type=_positive,
        default=None,
        metavar="N",
        help="networks trained with different seeds and averaged (default: 5 for at most "
        "10,000 rows of MLP towers, else 1)",
    )
    net.add_argument(
        "--class-weight",
        choices=("balanced",),
        default=None,
        help="weigh classes inversely to their frequency in the loss (classification)",
    )
    net.add_argument(
        "--device",
        default=None,
        metavar="DEV",
        help="auto (default: cuda when a GPU is visible), cpu, cuda or cuda:N; also where "
        "--text-encoder sentence runs",
    )
    ext = fit.add_argument_group("extractors (the same for every column of the role)")
    ext.add_argument(
        "--image-size",
        type=image_size,
        default=None,
        metavar="WxH",
        help="size the images are resized to: N (square) or WIDTHxHEIGHT (default 32x32)",
    )
    ext.add_argument(
        "--image-mode",
        choices=("L", "LA", "RGB", "RGBA"),
        default=None,
        help="colour mode of the pixels: L (grey), RGB (default), LA, RGBA",
    )
    ext.add_argument(
        "--audio-sr",
        type=_positive,
        default=None,
        metavar="HZ",
        help="sample rate every clip is resampled to (default 16000)",
    )
    ext.add_argument(
        "--text-encoder",
        choices=("tfidf", "sentence"),
        default=None,
        help="tfidf (default): TF-IDF then truncated SVD; sentence: a sentence-transformers "
        "model (extra text), see --text-model",
    )
    ext.add_argument(
        "--text-model",
        default=None,
        metavar="PATH_OR_NAME",
        help="model of --text-encoder sentence (implies it): a local folder or a Hugging Face "
        "Hub name (default sentence-transformers/all-MiniLM-L6-v2)",
    )
    ext.add_argument(
        "--text-components",
        type=_positive,
        default=None,
        metavar="N",
        help="most SVD components of --text-encoder tfidf (default 64)",
    )
    fit.add_argument(
        "--params",
        default=None,
        metavar="FILE",
        help="JSON or TOML file of make_multimodal_pipeline arguments and pipeline set_params "
        'keys, e.g. {"fusion__hidden_units": 32}; flags override it',
    )
    fit.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=None,
        help="print progress on stderr: items extracted and one line per training epoch",
    )


# -- the pipeline --------------------------------------------------------------------------
def _check_device(device: str) -> None:
    from ._torch import resolve_device

    resolve_device(device)  # an unknown device, or cuda without one: before any extraction


def _check_scoring(scoring: str) -> None:
    from sklearn.metrics import get_scorer_names

    names = sorted(get_scorer_names())
    if scoring not in names:
        raise ValueError(
            f"--scoring {scoring!r} is not a scikit-learn scorer{did_you_mean([scoring], names)} "
            "(see sklearn.metrics.get_scorer_names())"
        )


def _as_value(value: Any, current: Any) -> Any:
    """Make a file's list a tuple where the parameter holds a tuple (e.g. ``ngram_range``)."""
    if isinstance(value, list) and isinstance(current, tuple):
        return tuple(value)
    return value


def _text_model(name: str) -> str:
    """Make an existing local folder absolute (the model file must not depend on cwd)."""
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def _blocks(pipeline: Any, roles: dict[str, list[str]], role: str) -> list[str]:
    columns = set(roles[role])
    step = pipeline.named_steps["features"]
    return [name for name, _, col in step.transformers if isinstance(col, str) and col in columns]


def build_pipeline(
    args: argparse.Namespace, roles: dict[str, list[str]], task: str, params: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """Build the pipeline of ``mmsk fit`` from its flags and its params file.

    In this order: :func:`~mmsk.compose.make_multimodal_pipeline` with the
    file's plain keys (the function's arguments and the fusion estimator's
    parameters) and the flags that are its arguments; the sentence
    encoder, if asked for; the file's ``set_params`` keys (``step__param``);
    last, the flags, so that they win.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``fit`` arguments.
    roles : dict of str to list of str
        The columns of each role (flags and file merged).
    task : {"classification", "regression"}
        The task.
    params : dict
        The params file's keys.

    Returns
    -------
    pipeline : sklearn.pipeline.Pipeline
        Not fitted.
    cli_options : dict
        The options given, as JSON data, for the model card.

    Raises
    ------
    ValueError
        For an unknown key (with "did you mean" and the valid keys), an
        option that has no column to act on, or a bad value.
    """
    from .compose import make_multimodal_pipeline
    from .fusion import FusionClassifier, FusionRegressor

    given = _given(args)
    estimator = FusionClassifier if task == "classification" else FusionRegressor
    net_params = set(estimator().get_params(deep=False)) - {"fusion", "n_jobs", "random_state"}
    plain = {k: v for k, v in params.items() if "__" not in k and k not in ROLES}
    nested = {k: v for k, v in params.items() if "__" in k}
    bad_plain = sorted(k for k in plain if k not in net_params and k not in PIPELINE_ARGS)
    other = FusionRegressor if task == "classification" else FusionClassifier
    for key in bad_plain:
        if key in other().get_params(deep=False):
            raise ValueError(
                f"params file: {key!r} is a parameter of {other.__name__}, not of "
                f"{estimator.__name__} (the task is {task})"
            )

    kwargs: dict[str, Any] = {k: v for k, v in plain.items() if k not in bad_plain}
    kwargs.pop("task", None)  # given_task() decided it
    defaults = estimator().get_params(deep=False)
    kwargs = {k: _as_value(v, defaults.get(k)) for k, v in kwargs.items()}
    for name in ("random_state", "n_jobs"):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    if "fusion" in given or "fusion" not in kwargs:
        kwargs["fusion"] = args.fusion
    pipeline = make_multimodal_pipeline(**roles, task=task, **kwargs)

    text_encoder = args.text_encoder or ("sentence" if args.text_model else "tfidf")
    _check_option_roles(args, roles, text_encoder, task)
    if text_encoder == "sentence":
        from .compose import _memories
        from .text import SentenceEmbedder

        memory = _memories(kwargs.get("memory"))[0]
        model = {} if args.text_model is None else {"model": _text_model(args.text_model)}
        device = {} if args.device is None else {"device": args.device}
        for block in _blocks(pipeline, roles, "text"):
            embedder = SentenceEmbedder(memory=memory, **model, **device)
            pipeline.set_params(**{f"features__{block}": embedder})

    current = pipeline.get_params(deep=True)
    bad_nested = sorted(k for k in nested if k not in current)
    if bad_plain or bad_nested:
        settable = [  # not the steps, nor the lists of them
            k
            for k, v in current.items()
            if "__" in k and not hasattr(v, "get_params") and not k.endswith("__transformers")
        ]
        valid = sorted({*ROLES, *PIPELINE_ARGS, *net_params, *settable})
        raise _unknown("params file key", [*bad_plain, *bad_nested], valid)
    for key in nested:
        if hasattr(current[key], "get_params"):
            raise ValueError(
                f"params file: {key!r} is a step of the pipeline; set its parameters instead "
                f"({key}__...)"
            )
    pipeline.set_params(**{k: _as_value(v, current[k]) for k, v in nested.items()})
    pipeline.set_params(**_flag_params(args, pipeline, roles, given))
    return pipeline, _recorded(args, params, text_encoder)


def _check_option_roles(
    args: argparse.Namespace, roles: dict[str, list[str]], text_encoder: str, task: str
) -> None:
    for option, value, role in [
        ("--image-size", args.image_size, "image"),
        ("--image-mode", args.image_mode, "image"),
        ("--audio-sr", args.audio_sr, "audio"),
        ("--text-encoder", args.text_encoder, "text"),
        ("--text-model", args.text_model, "text"),
        ("--text-components", args.text_components, "text"),
    ]:
        if value is not None and not roles[role]:
            raise ValueError(f"{option} needs a --{role} column (there is none)")
    if args.text_model is not None and text_encoder != "sentence":
        raise ValueError("--text-model is the model of --text-encoder sentence, not of tfidf")
    if args.text_components is not None and text_encoder != "tfidf":
        raise ValueError("--text-components is a setting of --text-encoder tfidf, not sentence")
    if args.class_weight is not None and task != "classification":
        raise ValueError(f"--class-weight needs a classification task; this one is a {task}")
    if args.device is not None:
        _check_device(args.device)
    if args.scoring is not None:
        _check_scoring(args.scoring)


def _flag_params(
    args: argparse.Namespace, pipeline: Any, roles: dict[str, list[str]], given: set[str]
) -> dict[str, Any]:
    """Return the ``set_params`` keys of the flags given."""
    out: dict[str, Any] = {}
    net = {
        "max_epochs": args.max_epochs,
        "early_stopping": _EARLY_STOPPING.get(args.early_stopping),
        "scoring": args.scoring,
        "n_estimators": args.n_estimators,
        "device": args.device,
        "class_weight": args.class_weight,
        "random_state": args.random_state,
        "n_jobs": args.n_jobs,
    }
    out.update({f"fusion__{k}": v for k, v in net.items() if v is not None})
    if "fusion" in given:
        out["fusion__fusion"] = args.fusion
    for block in _blocks(pipeline, roles, "image"):
        if args.image_size is not None:
            out[f"features__{block}__size"] = tuple(args.image_size)
        if args.image_mode is not None:
            out[f"features__{block}__mode"] = args.image_mode
    for block in _blocks(pipeline, roles, "audio"):
        if args.audio_sr is not None:
            out[f"features__{block}__sr"] = args.audio_sr
    for block in _blocks(pipeline, roles, "text"):
        if args.text_components is not None:
            out[f"features__{block}__n_components"] = args.text_components
    return out


def _recorded(args: argparse.Namespace, params: dict[str, Any], text_encoder: str) -> dict:
    options: dict[str, Any] = {}
    for name in _RECORDED:
        value = getattr(args, name, None)
        if value is not None and value is not False:
            options[name] = list(value) if isinstance(value, tuple) else value
    if "text_model" in options:
        options["text_model"] = _text_model(options["text_model"])
    if args.text is not None or params.get("text"):
        options["text_encoder"] = text_encoder
    if args.params is not None:
        options["params_file"] = str(Path(args.params).resolve())
        options["params"] = params
    return options


# -- fitting ---------------------------------------------------------------------------------
@contextlib.contextmanager
def progress(pipeline: Any, on: bool | None) -> Iterator[None]:
    """With ``on``, turn on the progress output of ``pipeline`` inside the block, on stderr.

    The extractors that have a ``verbose`` parameter show a bar per column
    (tqdm, on stderr) and the fusion network prints skorch's table, a line
    per epoch, which goes to stderr instead of stdout (where the summary
    goes). The previous ``verbose`` values come back afterwards, so the
    saved model is as quiet as it was built.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        The pipeline of :func:`build_pipeline`.
    on : bool or None
        ``--verbose``.

    Yields
    ------
    None
    """
    if not on:
        yield
        return
    before = pipeline.get_params(deep=True)
    keys = [  # mmsk's own: not the timing lines of Pipeline and ColumnTransformer
        k
        for k in before
        if k.endswith("__verbose")
        and type(before[k.removesuffix("__verbose")]).__module__.startswith("mmsk.")
    ]
    pipeline.set_params(**{k: max(1, int(before[k] or 0)) for k in keys})
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        pipeline.set_params(**{k: before[k] for k in keys})
