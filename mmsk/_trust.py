"""The allow-list of a safe model file: which types loading it may build.

skops builds only the types it trusts, and trusts by default the
scikit-learn estimators and the numpy and scipy types. A model file of
:func:`mmsk.save` needs a few more, each allowed only in the form that the
models need:

- mmsk's estimators (:data:`MMSK_TYPES`), as objects or classes;
- numpy dtypes (skops reads them from an empty ``.npy`` array);
- scikit-learn's plain helpers of model selection and ensembles: the
  ``Bunch`` of ``named_estimators_`` (built as a dict), the cross-validation
  splitters and the scorers of a search (as objects or classes), and the
  metric functions in ``sklearn.metrics`` (as function references, which
  loading only looks up);
- torch's optimizer and loss classes, as the value of a fusion estimator's
  ``optimizer`` or ``criterion`` parameter: a class, never an object.

Building an allowed object runs no code of the file: skops creates it with
``__new__`` and sets its attributes (through ``__setstate__`` where the
class has one: scikit-learn's version check, and the fusion estimators'
rebuilding of their nets from plain data, see :mod:`mmsk._portable`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

__all__ = ["MMSK_TYPES", "refused_types"]

#: The mmsk types a model file may hold, besides what skops trusts by default.
MMSK_TYPES = (
    "mmsk.audio.AudioFeatures",
    "mmsk.audio.LogMelSpectrogram",
    "mmsk.audio_embed.AudioEmbedder",
    "mmsk.compose.MultimodalColumnTransformer",
    "mmsk.compose.TfidfSVD",
    "mmsk.fusion.blocks.BlockLayout",
    "mmsk.fusion.estimators.FusionClassifier",
    "mmsk.fusion.estimators.FusionRegressor",
    "mmsk.fusion.retrieval.CrossModalRetriever",
    "mmsk.image.ImageEncoder",
    "mmsk.image.ImageFeatures",
    "mmsk.image.ImagePixels",
    "mmsk.preprocessing.GroupStandardScaler",
    "mmsk.text.SentenceEmbedder",
    "mmsk.text.TokenSequences",
    "mmsk.text_pretrained.PretrainedTokens",
)
_OBJECT = frozenset({"ObjectNode", "TypeNode"})
_METRICS = ("_score", "_error", "_loss", "_deviance")
# a dtype is loaded as the dtype of an empty array read with allow_pickle=False
_NUMPY_TYPES = {"numpy.dtype": frozenset({"DTypeNode"})}


def _name(value: Any) -> str:
    return f"{value.__module__}.{value.__name__}"


@functools.lru_cache(maxsize=1)
def _sklearn_types() -> dict[str, frozenset[str]]:
    """Return scikit-learn's extra allowed types, each with the skops loaders it may use."""
    import inspect

    from sklearn import metrics
    from sklearn.metrics import _scorer
    from sklearn.model_selection import _split
    from sklearn.utils import Bunch

    allowed = {_name(Bunch): frozenset({"DictNode"})}
    for module, suffix in [(_split, ""), (_scorer, "Scorer")]:  # splitters, scorers
        for name, value in vars(module).items():
            defined_here = inspect.isclass(value) and value.__module__ == module.__name__
            if (
                defined_here
                and name.endswith(suffix)
                and hasattr(value, "__call__" if suffix else "split")
            ):
                allowed[_name(value)] = _OBJECT
    # the metric functions of scorers: those of the scorer names, and the other metrics
    functions = [metrics.get_scorer(name)._score_func for name in metrics.get_scorer_names()]
    functions += [getattr(metrics, name) for name in metrics.__all__ if name.endswith(_METRICS)]
    for value in functions:
        if inspect.isfunction(value):
            allowed[_name(value)] = frozenset({"FunctionNode"})
    return allowed


@functools.lru_cache(maxsize=1)
def _torch_types() -> dict[str, frozenset[str]]:
    """Return torch's optimizer and loss classes, allowed as classes only."""
    import torch

    kinds = (torch.optim.Optimizer, torch.nn.modules.loss._Loss)
    allowed = {}
    for namespace in (torch.optim, torch.nn):
        for value in vars(namespace).values():
            if isinstance(value, type) and issubclass(value, kinds) and value not in kinds:
                allowed[_name(value)] = frozenset({"TypeNode"})
    return allowed


def _records(schema: Any) -> Iterator[dict[str, Any]]:
    """Yield every object record of a skops ``schema.json`` (those with a ``__loader__``)."""
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "__loader__" in item:
                yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def refused_types(untrusted: list[str], schema: Any) -> list[str]:
    """Return what a skops file holds outside the allow-list, described for a message.

    Parameters
    ----------
    untrusted : list of str
        :func:`skops.io.get_untrusted_types` of the file.
    schema : dict
        Its ``schema.json``, decoded.

    Returns
    -------
    list of str
        Type names outside the allow-list, and allowed types in a form
        they may not take (e.g. ``"a torch.nn.modules.loss.MSELoss
        object"``); empty when the file may be loaded.

    Examples
    --------
    >>> from mmsk._trust import refused_types
    >>> refused_types(["mmsk.image.ImagePixels", "posix.system"], {})
    ['posix.system']
    """
    refused = {name for name in untrusted if name not in MMSK_TYPES}
    if not refused:
        return []
    allowed = dict(_NUMPY_TYPES)
    if any(name.startswith("sklearn.") for name in refused):
        allowed.update(_sklearn_types())
    if any(name.startswith("torch.") for name in refused):
        allowed.update(_torch_types())
    refused -= set(allowed)
    for record in _records(schema):
        name = f"{record.get('__module__')}.{record.get('__class__')}"
        if name in allowed and record["__loader__"] not in allowed[name]:
            if allowed[name] == {"TypeNode"}:
                refused.add(f"a {name} object (the class is allowed, not an object)")
            else:
                refused.add(f"a {name} stored as {record['__loader__']}")
    return sorted(refused)
