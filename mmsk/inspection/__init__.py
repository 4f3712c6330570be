"""Seeing inside a fitted multimodal model: which modality it relies on, how it degrades.

- :func:`modality_importance`: grouped permutation and ablation (missing
  modality) importance of each modality, as a tidy DataFrame;
- :func:`robustness_report`: scores with one modality corrupted at graded
  levels, with MultiBench's relative and effective robustness;
  :func:`make_robustness_scorer` gives one summary as a scorer for
  :class:`~sklearn.model_selection.GridSearchCV`;
- the corruptions, applied to raw items: :class:`AudioNoise`,
  :class:`ImageBlur`, :class:`ImageOcclusion`, :class:`ImageNoise`,
  :class:`TokenDrop`, :class:`MissingModality` (base :class:`Corruption`).

All of them only call the estimator's scorer, so they work on any fitted
estimator: a Pipeline whose first step is a ColumnTransformer of
extractors (the modalities are its branches), or an estimator fed
``name__`` prefixed feature blocks. See ``docs/inspection.md``.
"""

from ._corruptions import (
    AudioNoise,
    Corruption,
    ImageBlur,
    ImageNoise,
    ImageOcclusion,
    MissingModality,
    TokenDrop,
    get_corruption,
)
from ._importance import modality_importance
from ._robustness import (
    effective_robustness,
    make_robustness_scorer,
    relative_robustness,
    robustness_report,
)

__all__ = [
    "AudioNoise",
    "Corruption",
    "ImageBlur",
    "ImageNoise",
    "ImageOcclusion",
    "MissingModality",
    "TokenDrop",
    "effective_robustness",
    "get_corruption",
    "make_robustness_scorer",
    "modality_importance",
    "relative_robustness",
    "robustness_report",
]
