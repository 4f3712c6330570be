"""The fusion layers: modality embeddings of width ``embed_dim`` -> one fused vector.

Each layer takes ``hs``, a list of ``(B, embed_dim)`` modality embeddings,
and ``present``, a ``(B, M)`` bool mask (False where a row lacks the
modality), and has an ``out_dim``: the width of its output, which
:class:`Head` maps to the outputs (:class:`LateFusion` has a head per
modality and outputs them directly). :data:`FUSIONS` names them in the
order of ``fusion=``. :class:`~mmsk.fusion.modules.FusionModule` assembles
the towers, one of these layers and the head; the classes' public home
(their ``__module__``, the type names in pickled nets) is
:mod:`mmsk.fusion.modules`.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "FUSIONS",
    "AttentionFusion",
    "ConcatFusion",
    "GatedFusion",
    "Head",
    "LateFusion",
    "TensorFusion",
]


class ConcatFusion(nn.Module):
    """Concatenate the modality embeddings; learned vectors stand in for missing ones.

    Parameters
    ----------
    n_modalities : int
        Number of modalities.
    embed_dim : int
        Width of each embedding; the output has ``n_modalities * embed_dim``.

    Examples
    --------
    >>> from mmsk.fusion.modules import ConcatFusion
    >>> fuse = ConcatFusion(2, 4)
    >>> fuse([torch.ones(3, 4), torch.ones(3, 4)], torch.ones(3, 2, dtype=torch.bool)).shape
    torch.Size([3, 8])
    """

    def __init__(self, n_modalities: int, embed_dim: int) -> None:
        super().__init__()
        self.missing = nn.Parameter(torch.zeros(n_modalities, embed_dim))
        self.out_dim = n_modalities * embed_dim

    def forward(self, hs: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        """Fuse a list of (B, embed_dim) embeddings into (B, M * embed_dim)."""
        hs = [torch.where(present[:, i : i + 1], h, self.missing[i]) for i, h in enumerate(hs)]
        return torch.cat(hs, dim=1)


class LateFusion(nn.Module):
    """A head per modality; outputs averaged with learned, renormalised weights.

    Parameters
    ----------
    n_modalities : int
        Number of modalities.
    embed_dim : int
        Width of each embedding.
    n_outputs : int
        Outputs of each head, and of the fusion.
    hidden_units : int
        Hidden width of each head.
    dropout : float
        Dropout rate in the heads.

    Examples
    --------
    >>> from mmsk.fusion.modules import LateFusion
    >>> fuse = LateFusion(2, 4, n_outputs=3, hidden_units=8, dropout=0.0)
    >>> present = torch.tensor([[True, False], [True, True]])
    >>> fuse([torch.ones(2, 4), torch.ones(2, 4)], present).shape
    torch.Size([2, 3])
    """

    def __init__(
        self,
        n_modalities: int,
        embed_dim: int,
        *,
        n_outputs: int,
        hidden_units: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.heads = nn.ModuleList(
            Head(embed_dim, hidden_units, n_outputs, dropout) for _ in range(n_modalities)
        )
        self.weight = nn.Parameter(torch.zeros(n_modalities))
        self.out_dim = n_outputs

    def forward(self, hs: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        """Combine per-modality outputs; a missing modality gets weight 0."""
        outs = torch.stack([head(h) for head, h in zip(self.heads, hs, strict=True)], dim=1)
        logits = self.weight.expand(present.shape).masked_fill(~present, float("-inf"))
        weights = torch.softmax(logits, dim=1)
        return (weights.unsqueeze(2) * outs).sum(dim=1)


class GatedFusion(nn.Module):
    """Gated multimodal units (Arevalo et al., 2017) for any number of modalities.

    ``z = softmax_m(W_z [h_1; ...; h_M])`` per feature, over the present
    modalities; the output is ``sum_m z_m * tanh(W_m h_m)``.

    Parameters
    ----------
    n_modalities : int
        Number of modalities.
    embed_dim : int
        Width of each embedding and of the output.

    Examples
    --------
    >>> from mmsk.fusion.modules import GatedFusion
    >>> fuse = GatedFusion(2, 4)
    >>> fuse([torch.ones(3, 4), torch.ones(3, 4)], torch.ones(3, 2, dtype=torch.bool)).shape
    torch.Size([3, 4])
    """

    def __init__(self, n_modalities: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Linear(embed_dim, embed_dim) for _ in range(n_modalities))
        self.gate = nn.Linear(n_modalities * embed_dim, n_modalities * embed_dim)
        self.out_dim = embed_dim

    def forward(self, hs: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        """Fuse into (B, embed_dim)."""
        n, d = len(hs), hs[0].shape[1]
        keep = present.unsqueeze(2)
        h = torch.stack(hs, dim=1) * keep.to(hs[0].dtype)
        z = self.gate(h.reshape(-1, n * d)).view(-1, n, d).masked_fill(~keep, float("-inf"))
        z = torch.softmax(z, dim=1)
        proj = torch.stack([torch.tanh(p(h[:, i])) for i, p in enumerate(self.proj)], dim=1)
        return (z * proj).sum(dim=1)


class AttentionFusion(nn.Module):
    """Modality tokens through multi-head self-attention, then a masked mean pool.

    Parameters
    ----------
    n_modalities : int
        Number of modalities (tokens).
    embed_dim : int
        Width of each token and of the output; divisible by ``n_heads``.
    n_heads : int
        Attention heads.
    dropout : float
        Dropout rate on the attention weights.

    Examples
    --------
    >>> from mmsk.fusion.modules import AttentionFusion
    >>> fuse = AttentionFusion(3, 8, n_heads=2, dropout=0.0)
    >>> present = torch.tensor([[True, False, True], [False, False, True]])
    >>> fuse([torch.ones(2, 8)] * 3, present).shape
    torch.Size([2, 8])
    """

    def __init__(self, n_modalities: int, embed_dim: int, *, n_heads: int, dropout: float):
        super().__init__()
        self.modality = nn.Parameter(torch.randn(n_modalities, embed_dim) * 0.02)
        self.attention = nn.MultiheadAttention(
            embed_dim, n_heads, dropout=dropout, batch_first=True
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.out_dim = embed_dim

    def forward(self, hs: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        """Fuse into (B, embed_dim)."""
        tokens = torch.stack(hs, dim=1) + self.modality
        attended, _ = self.attention(
            tokens, tokens, tokens, key_padding_mask=~present, need_weights=False
        )
        tokens = self.norm(tokens + attended)
        weight = present.unsqueeze(2).to(tokens.dtype)
        return (tokens * weight).sum(dim=1) / weight.sum(dim=1)


class TensorFusion(nn.Module):
    """Low-rank multimodal fusion (Liu et al., 2018), ``rank`` factors per modality.

    Parameters
    ----------
    n_modalities : int
        Number of modalities.
    embed_dim : int
        Width of each embedding and of the output.
    rank : int
        Number of rank-one terms.

    Examples
    --------
    >>> from mmsk.fusion.modules import TensorFusion
    >>> fuse = TensorFusion(2, 4, rank=3)
    >>> present = torch.tensor([[True, False], [True, True]])
    >>> fuse([torch.ones(2, 4), torch.ones(2, 4)], present).shape
    torch.Size([2, 4])
    """

    def __init__(self, n_modalities: int, embed_dim: int, *, rank: int) -> None:
        super().__init__()
        self.factors = nn.ParameterList(
            nn.Parameter(nn.init.xavier_normal_(torch.empty(rank, embed_dim + 1, embed_dim)))
            for _ in range(n_modalities)
        )
        self.rank_weight = nn.Parameter(nn.init.xavier_normal_(torch.empty(1, rank)).view(rank))
        self.bias = nn.Parameter(torch.zeros(embed_dim))
        self.out_dim = embed_dim

    def forward(self, hs: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        """Fuse into (B, embed_dim)."""
        fused = None
        for i, (h, factor) in enumerate(zip(hs, self.factors, strict=True)):
            h = h * present[:, i : i + 1].to(h.dtype)  # missing: only the 1 term is left
            z = torch.cat([h, torch.ones_like(h[:, :1])], dim=1)
            f = torch.matmul(z, factor)  # (rank, B, embed_dim)
            fused = f if fused is None else fused * f
        return torch.einsum("r,rbo->bo", self.rank_weight, fused) + self.bias


class Head(nn.Sequential):
    """``Linear -> ReLU -> Dropout -> Linear``: fused vector to outputs.

    Parameters
    ----------
    in_dim : int
        Width of the fused vector.
    hidden_units : int
        Hidden width.
    n_outputs : int
        Number of outputs.
    dropout : float
        Dropout rate.

    Examples
    --------
    >>> from mmsk.fusion.modules import Head
    >>> Head(6, 8, 3, 0.0)(torch.zeros(2, 6)).shape
    torch.Size([2, 3])
    """

    def __init__(self, in_dim: int, hidden_units: int, n_outputs: int, dropout: float):
        super().__init__(
            nn.Linear(in_dim, hidden_units),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_units, n_outputs),
        )


FUSIONS = ("concat", "late", "gated", "attention", "tensor")
