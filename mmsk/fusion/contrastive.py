"""The torch side of cross-modal retrieval: two towers, one space, a contrastive loss.

:class:`DualEncoder` maps each of two modality blocks through its own tower
(any tower of :func:`mmsk.fusion.modules.build_tower`: an MLP, a CNN over
pixels or a spectrogram, a GRU/LSTM/transformer over token ids) and a
linear projection onto the unit sphere of one shared space, as CLIP
(Radford et al., 2021) does. :class:`InfoNCELoss` is CLIP's symmetric
contrastive loss over a batch of pairs, with positives beyond the diagonal
where rows share a label. :func:`ranking_metrics` and :func:`top_k` are
the numpy side of evaluation: ranks of the first relevant gallery item and
the top-k matches by cosine similarity.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mmsk.fusion.modules import MIN_EVAL_ROWS, FusionModule, build_tower

__all__ = ["DualEncoder", "InfoNCELoss", "ranking_metrics", "top_k"]

#: CLIP clips the learned logit scale at 100 (a temperature of 0.01).
MAX_LOGIT_SCALE = 100.0


class DualEncoder(nn.Module):
    """Two towers and projections onto the unit sphere of one shared space.

    Parameters
    ----------
    dims : sequence of int
        Widths of the two blocks (query, then target).
    towers : sequence of (str, dict)
        Per block, the tower kind and its options (see
        :func:`mmsk.fusion.modules.build_tower`).
    hidden_units : int, default=128
        Hidden width of the towers, and the width of their output.
    embed_dim : int, default=64
        Width of the shared space (the projections' output).
    n_layers : int, default=2
        Layers per MLP tower.
    dropout : float, default=0.1
        Dropout in the towers.
    norm : {"batch", "layer"} or None, default="batch"
        Normalisation in the towers.
    means, scales : list of (array-like or None) or None, default=None
        Per-block input standardisation.
    temperature : float, default=0.07
        Initial softmax temperature of the loss (CLIP's); the module holds
        its inverse, the logit scale, as a log.
    learn_temperature : bool, default=True
        Whether the temperature is a trained parameter (else a buffer).

    Examples
    --------
    >>> import torch
    >>> from mmsk.fusion.contrastive import DualEncoder
    >>> net = DualEncoder(dims=[5, 3], towers=[("mlp", {}), ("mlp", {})],
    ...                   hidden_units=8, embed_dim=4).eval()
    >>> q, t, scale = net(mask=torch.ones(2, 2, dtype=torch.bool),
    ...                   x0=torch.zeros(2, 5), x1=torch.ones(2, 3))
    >>> q.shape, t.shape, round(float(scale.detach()), 2)
    (torch.Size([2, 4]), torch.Size([2, 4]), 14.29)
    >>> [round(float(v), 4) for v in q.detach().norm(dim=1)]
    [1.0, 1.0]
    """

    def __init__(
        self,
        *,
        dims: Sequence[int],
        towers: Sequence[tuple[str, Mapping[str, Any]]],
        hidden_units: int = 128,
        embed_dim: int = 64,
        n_layers: int = 2,
        dropout: float = 0.1,
        norm: str | None = "batch",
        means: Sequence[np.ndarray | None] | None = None,
        scales: Sequence[np.ndarray | None] | None = None,
        temperature: float = 0.07,
        learn_temperature: bool = True,
    ) -> None:
        super().__init__()
        self.towers = nn.ModuleList(
            build_tower(
                kind,
                d,
                options,
                hidden_units=hidden_units,
                embed_dim=hidden_units,
                n_layers=n_layers,
                dropout=dropout,
                norm=norm,
                mean=None if means is None else means[i],
                scale=None if scales is None else scales[i],
            )
            for i, (d, (kind, options)) in enumerate(zip(dims, towers, strict=True))
        )
        self.projections = nn.ModuleList(nn.Linear(hidden_units, embed_dim) for _ in dims)
        log_scale = torch.tensor(math.log(1.0 / temperature), dtype=torch.float32)
        if learn_temperature:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    def logit_scale(self) -> torch.Tensor:
        """Return the inverse temperature, clipped at 100 as in CLIP."""
        return self.log_scale.clamp(max=math.log(MAX_LOGIT_SCALE)).exp()

    def encode(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Map rows of block ``i`` (0: query, 1: target) to unit vectors of the space.

        Parameters
        ----------
        i : int
            The block.
        x : Tensor of shape (B, d_i)
            Its rows.

        Returns
        -------
        z : Tensor of shape (B, embed_dim)
            L2-normalised embeddings.

        Examples
        --------
        >>> import torch
        >>> from mmsk.fusion.contrastive import DualEncoder
        >>> net = DualEncoder(dims=[5, 3], towers=[("mlp", {})] * 2, hidden_units=8,
        ...                   embed_dim=4).eval()
        >>> net.encode(1, torch.zeros(3, 3)).shape
        torch.Size([3, 4])
        """
        n = x.shape[0]
        if not self.training and n < MIN_EVAL_ROWS:
            # as FusionModule.forward: the same bits for a row whatever batch it is in
            pad = x.new_zeros(MIN_EVAL_ROWS - n, *x.shape[1:])
            return self.encode(i, torch.cat([x, pad]))[:n]
        present = torch.ones(n, dtype=torch.bool, device=x.device)
        z = self.projections[i](self.towers[i](x, present))
        return nn.functional.normalize(z, dim=1)

    def refresh_batch_norm(self, batches: Iterable[Mapping[str, torch.Tensor]]) -> None:
        """Recompute the batch-norm statistics of the trainable encoders from batches.

        As :meth:`mmsk.fusion.modules.FusionModule.refresh_batch_norm`: one
        pass without gradients, plain averages; MLP towers keep theirs.

        Parameters
        ----------
        batches : iterable of dict
            Batches as ``forward`` takes them (``"mask"``, ``"x0"``, ``"x1"``).

        Examples
        --------
        >>> import torch
        >>> from mmsk.fusion.contrastive import DualEncoder
        >>> net = DualEncoder(dims=[16, 3], hidden_units=4, embed_dim=2,
        ...                   towers=[("conv", {"shape": (1, 4, 4), "width": 2}), ("mlp", {})])
        >>> batch = {"mask": torch.ones(8, 2, dtype=torch.bool), "x0": torch.randn(8, 16),
        ...          "x1": torch.randn(8, 3)}
        >>> net.refresh_batch_norm([batch])
        >>> int(net.towers[0].features[1].num_batches_tracked)
        1
        """
        FusionModule.refresh_batch_norm(self, batches)  # the same walk over self.towers

    def forward(
        self, mask: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embed a batch of pairs; return both embeddings and the logit scale.

        Parameters
        ----------
        mask : BoolTensor of shape (B, 2)
            Presence of each modality (all True for pairs; unused).
        x0, x1 : Tensor of shape (B, d_0) and (B, d_1)
            The query and target blocks.

        Returns
        -------
        z0, z1 : Tensor of shape (B, embed_dim)
            Unit embeddings of the two blocks.
        scale : Tensor of shape ()
            The logit scale (inverse temperature).
        """
        return self.encode(0, x0), self.encode(1, x1), self.logit_scale()


class InfoNCELoss(nn.Module):
    """CLIP's symmetric InfoNCE loss, with label-defined positives.

    For a batch of ``B`` pairs with unit embeddings ``q`` and ``t``, the
    logits are ``scale * q @ t.T``. Rows ``i`` and ``j`` are positives when
    ``labels[i] == labels[j]`` (with one distinct label per row: the
    diagonal, CLIP's loss). The loss is the mean of the query-to-target and
    target-to-query cross-entropies of the softmax over the batch against
    the uniform distribution over each row's positives (the supervised
    contrastive loss of Khosla et al., 2020, across modalities).

    Examples
    --------
    >>> import torch
    >>> from mmsk.fusion.contrastive import InfoNCELoss
    >>> q = torch.eye(3)
    >>> loss = InfoNCELoss()((q, q, torch.tensor(10.0)), torch.arange(3))
    >>> round(float(loss), 4)
    0.0001
    >>> same = InfoNCELoss()((q, q, torch.tensor(10.0)), torch.tensor([0, 0, 1]))
    >>> bool(same > loss)
    True
    """

    def forward(
        self, y_pred: tuple[torch.Tensor, torch.Tensor, torch.Tensor], labels: torch.Tensor
    ) -> torch.Tensor:
        """Return the loss of a batch ``(q, t, scale)`` with its labels."""
        q, t, scale = y_pred
        logits = scale * (q @ t.T)
        labels = labels.reshape(-1)
        positive = (labels[:, None] == labels[None, :]).to(logits.dtype)
        target = positive / positive.sum(dim=1, keepdim=True)
        loss_q = -(target * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
        loss_t = -(target * torch.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
        return (loss_q + loss_t) / 2


def top_k(
    queries: np.ndarray, gallery: np.ndarray, k: int, *, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Return the ``k`` gallery rows of highest dot product with each query, best first.

    Parameters
    ----------
    queries : ndarray of shape (n_queries, d)
        Query embeddings (unit vectors: the dot product is the cosine).
    gallery : ndarray of shape (n_gallery, d)
        Gallery embeddings.
    k : int
        Matches per query, at most ``n_gallery``.
    chunk : int, default=1024
        Queries per block of the similarity matrix (bounds the memory).

    Returns
    -------
    indices : ndarray of shape (n_queries, k)
        Gallery row positions, by decreasing similarity (ties: lower
        position first).
    scores : ndarray of shape (n_queries, k)
        Their similarities.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.fusion.contrastive import top_k
    >>> idx, s = top_k(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]]), 2)
    >>> idx.tolist(), s.round(2).tolist()
    ([[1, 2]], [[1.0, 0.6]])
    """
    indices, scores = [], []
    for start in range(0, len(queries), chunk):
        sim = queries[start : start + chunk] @ gallery.T
        # a stable sort of the negated scores: ties keep the gallery order
        order = np.argsort(-sim, axis=1, kind="stable")[:, :k]
        indices.append(order)
        scores.append(np.take_along_axis(sim, order, axis=1))
    if not indices:
        return np.empty((0, k), dtype=np.intp), np.empty((0, k))
    return np.concatenate(indices), np.concatenate(scores)


def ranking_metrics(
    queries: np.ndarray,
    gallery: np.ndarray,
    query_labels: np.ndarray,
    gallery_labels: np.ndarray,
    *,
    chunk: int = 1024,
) -> np.ndarray:
    """Return, per query, the rank (1 = best) of its first relevant gallery item.

    A gallery item is relevant to a query when their labels are equal. The
    rank is one plus the number of gallery items more similar than the
    best relevant one (ties count in the query's favour). A query with no
    relevant item in the gallery gets rank ``inf`` (a miss at every k, a
    reciprocal rank of 0).

    Parameters
    ----------
    queries, gallery : ndarray of shape (n_queries, d) and (n_gallery, d)
        Embeddings; similarity is the dot product.
    query_labels, gallery_labels : ndarray of shape (n_queries,) and (n_gallery,)
        Labels that define relevance.
    chunk : int, default=1024
        Queries per block of the similarity matrix.

    Returns
    -------
    ranks : ndarray of shape (n_queries,)
        float64 ranks, ``inf`` where nothing is relevant.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.fusion.contrastive import ranking_metrics
    >>> g = np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])
    >>> ranking_metrics(np.array([[1.0, 0.0]]), g, np.array([7]), np.array([7, 0, 0]))
    array([3.])
    """
    ranks = []
    for start in range(0, len(queries), chunk):
        sim = queries[start : start + chunk] @ gallery.T
        relevant = query_labels[start : start + chunk, None] == gallery_labels[None, :]
        best = np.where(relevant, sim, -np.inf).max(axis=1, initial=-np.inf)
        rank = 1.0 + (sim > best[:, None]).sum(axis=1)
        ranks.append(np.where(relevant.any(axis=1), rank, np.inf))
    return np.concatenate(ranks) if ranks else np.empty(0)
