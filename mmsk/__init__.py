"""mmsk: multimodal learning as an ordinary scikit-learn workflow.

Per-modality feature extractors (:class:`ImagePixels`, :class:`AudioFeatures`,
:class:`TokenSequences`, ...) go into a
:class:`~sklearn.compose.ColumnTransformer`, then a fusion network
(:class:`FusionClassifier`, :class:`FusionRegressor`) into one
:class:`~sklearn.pipeline.Pipeline`.

:func:`save` and :func:`load` write and read safe model files
(:mod:`mmsk.io`).

Names are resolved lazily (PEP 562): ``import mmsk`` imports neither torch
nor librosa; the first use of a name imports its module.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "AudioFeatures": "mmsk.audio",
    "LogMelSpectrogram": "mmsk.audio",
    "AudioEmbedder": "mmsk.audio_embed",
    "ImagePixels": "mmsk.image",
    "ImageFeatures": "mmsk.image",
    "ImageEncoder": "mmsk.image",
    "TokenSequences": "mmsk.text",
    "SentenceEmbedder": "mmsk.text",
    "PretrainedTokens": "mmsk.text_pretrained",
    "FusionClassifier": "mmsk.fusion",
    "FusionRegressor": "mmsk.fusion",
    "CrossModalRetriever": "mmsk.fusion",
    "make_multimodal_pipeline": "mmsk.compose",
    "TfidfSVD": "mmsk.compose",
    "predict_table": "mmsk._stream",
    "predict_frame": "mmsk._stream",
    "iter_table_chunks": "mmsk._tables",
    "GroupStandardScaler": "mmsk.preprocessing",
    "ItemError": "mmsk._items",
    "ItemWarning": "mmsk._base",
    "save": "mmsk.io",
    "load": "mmsk.io",
    "CacheWarning": "mmsk._cache",
}
_SUBMODULES = ("datasets", "inspection", "io", "plotting")

__all__ = sorted([*_LAZY, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"mmsk.{name}")
    raise AttributeError(f"module 'mmsk' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
