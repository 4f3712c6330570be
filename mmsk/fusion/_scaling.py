"""The input scaling of the towers: the ``standardize`` rules and the statistics.

:func:`scaling_rule` maps a ``standardize`` value to one of :data:`SCALINGS`;
:func:`block_stats` computes each block's per-feature shift and scale over
its present rows by that rule (``"auto"`` leaves sparse blocks, binary
columns and normalised embeddings, see :data:`MIN_EMBEDDING_WIDTH`, in their
natural scale), and :func:`channel_stats` the per-channel statistics of an
image-like block for a conv tower; both weighted by ``sample_weight`` when
given. The names' home is :mod:`mmsk.fusion._data`, which re-exports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.utils.sparsefuncs import mean_variance_axis

from mmsk.fusion._masking import MASK, block_key
from mmsk.fusion._weights import weighted_moments

__all__ = ["MIN_EMBEDDING_WIDTH", "SCALINGS", "block_stats", "channel_stats", "scaling_rule"]


def channel_stats(
    prepared: dict[str, Any],
    i: int,
    shape: Sequence[int],
    sample_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of an image-like block, per feature.

    A conv tower standardises each channel with one mean and one scale (per
    pixel, a border pixel that is nearly constant would be blown up).

    Parameters
    ----------
    prepared : dict
        The prepared dict from :func:`mask_blocks`.
    i : int
        The block.
    shape : (int, int, int)
        ``(C, H, W)`` of one row, channels first.
    sample_weight : ndarray of shape (n_samples,) or None, default=None
        Row weights: weighted moments over the present rows of positive weight.

    Returns
    -------
    mean, scale : ndarray of shape (C * H * W,)
        Each channel's statistics over its present training rows, repeated
        over the channel's ``H * W`` features; a constant channel gets scale 1.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.fusion._data import channel_stats
    >>> x = np.array([[0, 2, 10, 10], [2, 4, 10, 10]], dtype="float32")
    >>> mean, scale = channel_stats({"x0": x, "mask": np.ones((2, 1), bool)}, 0, (2, 1, 2))
    >>> mean.tolist(), scale.tolist()
    ([2.0, 2.0, 10.0, 10.0], [1.4142135381698608, 1.4142135381698608, 1.0, 1.0])
    """
    rows = prepared[MASK][:, i]
    if sample_weight is not None:
        rows = rows & (sample_weight > 0)
    block = prepared[block_key(i)][rows]
    n_channels, size = int(shape[0]), int(shape[1]) * int(shape[2])
    if sample_weight is not None:
        mean, var = weighted_moments(block, sample_weight[rows])
        square = var + mean**2
    elif sparse.issparse(block):
        mean, var = mean_variance_axis(block.astype(np.float64), axis=0)
        square = var + mean**2
    else:
        mean = block.mean(axis=0, dtype=np.float64)
        square = np.square(block, dtype=np.float64).mean(axis=0)
    mean = mean.reshape(n_channels, size).mean(axis=1)
    std = np.sqrt(np.maximum(square.reshape(n_channels, size).mean(axis=1) - mean**2, 0.0))
    std[~(std > 1e-6 * np.maximum(np.abs(mean), 1.0))] = 1.0
    return (
        np.repeat(mean, size).astype(np.float32),
        np.repeat(std, size).astype(np.float32),
    )


#: The input scaling rules of ``standardize``, per block.
SCALINGS = ("auto", "standard", "none")

#: The fewest columns of a block that ``"auto"`` takes for a normalised embedding.
MIN_EMBEDDING_WIDTH = 8


def _unit_rows(block: Any, present: np.ndarray) -> bool:
    """Whether a dense block is a normalised embedding: wide, every present row of unit norm."""
    if sparse.issparse(block) or block.ndim != 2 or block.shape[1] < MIN_EMBEDDING_WIDTH:
        return False
    rows = block[present] if not present.all() else block
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows, dtype=np.float64))
    return bool(np.all(np.abs(norms - 1.0) <= 1e-3))


def scaling_rule(value: Any, name: str) -> str:
    """Map one ``standardize`` value (bool or rule name) to a rule of :data:`SCALINGS`.

    Parameters
    ----------
    value : bool or str
        ``True`` means ``"standard"``, ``False`` means ``"none"``.
    name : str
        What is being set, for the error message.

    Returns
    -------
    str
        ``"auto"``, ``"standard"`` or ``"none"``.

    Examples
    --------
    >>> from mmsk.fusion._data import scaling_rule
    >>> scaling_rule(True, "standardize"), scaling_rule("auto", "standardize")
    ('standard', 'auto')
    """
    if isinstance(value, bool | np.bool_):
        return "standard" if value else "none"
    if isinstance(value, str) and value in SCALINGS:
        return value
    raise ValueError(f"{name} must be True, False, 'auto', 'standard' or 'none', got {value!r}")


def block_stats(
    prepared: dict[str, Any],
    n_blocks: int,
    rules: Sequence[str] | None = None,
    sample_weight: np.ndarray | None = None,
    names: Sequence[str] | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-feature shift and scale of each block over its present rows, by rule.

    The rules (one per block, :data:`SCALINGS`):

    - ``"standard"``: every column to zero mean and unit variance;
    - ``"auto"``: a sparse block (TF-IDF, counts, one-hot) keeps its natural
      scale, and so does a *normalised embedding* (a dense block of at
      least :data:`MIN_EMBEDDING_WIDTH` columns whose present rows all have
      unit L2 norm, to within 1e-3: sentence-transformers or CLIP vectors);
      in any other dense block, a *binary* column (every present value 0
      or 1: one-hot codes, indicators) keeps its scale too, and every other
      column is standardised;
    - ``"none"``: the identity.

    A constant column gets scale 1.

    Parameters
    ----------
    prepared : dict
        The prepared dict from :func:`mask_blocks`.
    n_blocks : int
        Number of blocks.
    rules : sequence of str or None, default=None
        One rule per block; None: ``"standard"`` for every block.
    sample_weight : ndarray of shape (n_samples,) or None, default=None
        Row weights: the moments are weighted, over the present rows of
        positive weight (integer weights give the moments of repeated rows).
    names : sequence of str or None, default=None
        The blocks' modality names, for the error message.

    Returns
    -------
    means, scales : list of ndarray
        Vectors of float32, one per block: the input enters as
        ``(x - mean) / scale``.

    Raises
    ------
    ValueError
        If a modality is missing in every row.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.fusion._data import block_stats
    >>> x = np.array([[0.0, 1.0], [2.0, 1.0]], dtype="float32")
    >>> means, scales = block_stats({"x0": x, "mask": np.ones((2, 1), bool)}, 1)
    >>> means[0].tolist(), scales[0].tolist()
    ([1.0, 1.0], [1.0, 1.0])
    >>> onehot = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], dtype="float32")
    >>> means, _ = block_stats({"x0": onehot, "mask": np.ones((3, 1), bool)}, 1, ["auto"])
    >>> means[0].tolist()
    [0.0, 0.0]
    """
    mask = prepared[MASK]
    rules = ["standard"] * n_blocks if rules is None else list(rules)
    means, scales = [], []
    for i in range(n_blocks):
        block = prepared[block_key(i)]
        present = mask[:, i]
        if sample_weight is not None:
            present = present & (sample_weight > 0)
        if not present.any():
            what = f"block {i}" if names is None else f"modality {names[i]!r}"
            weighted = "" if sample_weight is None else " of positive sample_weight"
            raise ValueError(
                f"{what} is missing (all-NaN, or all-padding for token ids) in every training "
                f"row{weighted}: there is nothing to learn it from; drop it, or check how its "
                "column was read (every item unreadable with on_error='nan'?)"
            )
        rule = rules[i]
        width = block.shape[1]
        if rule == "none" or (
            rule == "auto" and (sparse.issparse(block) or _unit_rows(block, present))
        ):
            means.append(np.zeros(width, dtype=np.float32))
            scales.append(np.ones(width, dtype=np.float32))
            continue
        if not present.all():
            block = block[present]
        if sample_weight is not None:
            mean, var = weighted_moments(block, sample_weight[present])
            std = np.sqrt(var)
        elif sparse.issparse(block):
            mean, var = mean_variance_axis(block.astype(np.float64), axis=0)
            std = np.sqrt(var)
        else:
            mean = block.mean(axis=0, dtype=np.float64)
            std = block.std(axis=0, dtype=np.float64)
        std[~(std > 1e-12)] = 1.0
        if rule == "auto":
            binary = ((block == 0) | (block == 1)).all(axis=0)
            mean[binary], std[binary] = 0.0, 1.0
        means.append(mean.astype(np.float32))
        scales.append(std.astype(np.float32))
    return means, scales
