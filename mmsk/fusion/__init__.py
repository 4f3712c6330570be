"""Fusion networks: scikit-learn estimators that wrap a skorch net.

:class:`FusionClassifier` and :class:`FusionRegressor` take numeric modality
blocks (a dict of 2-D arrays, a DataFrame with ``name__`` column prefixes,
or any 2-D input with ``modalities=``), put one tower per block (an MLP,
or with ``towers=`` a trainable CNN, GRU, LSTM or transformer encoder from
:mod:`mmsk.fusion.encoders`), fuse the towers (``"concat"``, ``"late"``,
``"gated"``, ``"attention"``, ``"tensor"``) and train with skorch. A fitted
estimator exports its network to ONNX (``to_onnx``, ``onnx_inputs``; see
:mod:`mmsk.fusion.export`). :class:`CrossModalRetriever` learns one shared
embedding space for two modalities from pairs (:mod:`mmsk.fusion.retrieval`),
with the scorers :func:`recall_at_k` and :func:`mean_reciprocal_rank`.
Importing this package imports torch.
"""

from mmsk.fusion.estimators import FusionClassifier, FusionRegressor
from mmsk.fusion.retrieval import CrossModalRetriever, mean_reciprocal_rank, recall_at_k

__all__ = [
    "CrossModalRetriever",
    "FusionClassifier",
    "FusionRegressor",
    "mean_reciprocal_rank",
    "recall_at_k",
]
