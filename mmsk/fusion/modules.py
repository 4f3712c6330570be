"""The torch side: one tower per modality, a fusion layer, a head.

Every module here is small and takes plain tensors. A batch is a dict
``{"mask": (B, M) bool, "x0": (B, d0), "x1": (B, d1), ...}``; ``mask`` is
False where a row lacks a modality, and :class:`FusionModule` is called as
``module(**batch)``. A block is float32, or int64 token ids for a sequence
tower. The towers are :class:`Tower` (an MLP, the default) or the trainable
encoders of :mod:`mmsk.fusion.encoders` (conv, GRU/LSTM, transformer), built
by :func:`build_tower`. Tower outputs (the *modality embeddings*) all have
width ``embed_dim``. The fusion layers:

- :class:`ConcatFusion`: concatenate; a missing modality's embedding is
  replaced by a learned "missing" vector.
- :class:`LateFusion`: a head per modality; their outputs are averaged with
  learned weights, renormalised over the modalities present in the row.
- :class:`GatedFusion`: gated multimodal units; a softmax gate per feature
  over the present modalities weights their ``tanh`` projections.
- :class:`AttentionFusion`: modality embeddings plus a learned modality
  embedding are tokens for multi-head self-attention (missing ones masked
  as keys), then a masked mean pool.
- :class:`TensorFusion`: low-rank multimodal fusion (Liu et al., 2018):
  ``[h_m, 1]`` per modality through rank-``r`` factors, multiplied across
  modalities; a missing modality keeps only its constant-1 term.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mmsk.fusion._fusion_layers import (
    FUSIONS,
    AttentionFusion,
    ConcatFusion,
    GatedFusion,
    Head,
    LateFusion,
    TensorFusion,
)
from mmsk.fusion.encoders import (
    SEQUENCE_KINDS,
    TOWER_KINDS,
    ConvEncoder,
    RecurrentEncoder,
    TransformerEncoder,
    norm_layer,
)
from mmsk.fusion.pretrained import PretrainedTextEncoder
from mmsk.fusion.pretrained_image import PretrainedImageEncoder
from mmsk.fusion.wide import WideLinear

__all__ = [
    "FUSIONS",
    "AttentionFusion",
    "ConcatFusion",
    "FusionModule",
    "GatedFusion",
    "LateFusion",
    "TensorFusion",
    "Tower",
    "build_tower",
    "drop_modalities",
]


# The fusion layers live in _fusion_layers; their public home (pickled nets' type
# names, the API reference) stays mmsk.fusion.modules.
for _layer in (AttentionFusion, ConcatFusion, GatedFusion, Head, LateFusion, TensorFusion):
    _layer.__module__ = __name__
del _layer


def mlp(widths: Sequence[int], *, dropout: float, norm: str | None) -> nn.Sequential:
    """Stack ``Linear -> norm -> ReLU -> Dropout`` layers through ``widths``.

    Parameters
    ----------
    widths : sequence of int
        Input width, then the width of each layer.
    dropout : float
        Dropout rate after each layer.
    norm : {"batch", "layer"} or None
        Normalisation after each linear layer.

    Returns
    -------
    torch.nn.Sequential
        The layers.

    Examples
    --------
    >>> from mmsk.fusion.modules import mlp
    >>> mlp([5, 8, 4], dropout=0.0, norm=None)(torch.zeros(2, 5)).shape
    torch.Size([2, 4])
    """
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(a, b), norm_layer(norm, b), nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class Tower(nn.Module):
    """Standardise one block and map it to the modality embedding with an MLP.

    Parameters
    ----------
    in_dim : int
        Width of the block.
    hidden_units, embed_dim, n_layers : int
        ``n_layers`` layers: ``n_layers - 1`` of width ``hidden_units``, then
        one of width ``embed_dim``.
    dropout : float
        Dropout after each layer.
    norm : {"batch", "layer"} or None
        Normalisation after each linear layer.
    mean, scale : array-like of shape (in_dim,) or None
        Input standardisation, ``(x - mean) / scale``; None: identity.

    Examples
    --------
    >>> from mmsk.fusion.modules import Tower
    >>> tower = Tower(6, hidden_units=8, embed_dim=4, n_layers=2, dropout=0.0, norm=None)
    >>> tower(torch.zeros(3, 6), torch.ones(3, dtype=torch.bool)).shape
    torch.Size([3, 4])
    """

    def __init__(
        self,
        in_dim: int,
        *,
        hidden_units: int,
        embed_dim: int,
        n_layers: int,
        dropout: float,
        norm: str | None,
        mean: np.ndarray | None = None,
        scale: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        mean = np.zeros(in_dim) if mean is None else np.asarray(mean)
        scale = np.ones(in_dim) if scale is None else np.asarray(scale)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).clone())
        self.register_buffer("inv_scale", 1.0 / torch.as_tensor(scale, dtype=torch.float32))
        widths = [in_dim] + [hidden_units] * (n_layers - 1) + [embed_dim]
        self.mlp = mlp(widths, dropout=dropout, norm=norm)

    def forward(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Embed a block; rows that lack the modality enter as zeros (the mean)."""
        x = (x - self.mean) * self.inv_scale * present.unsqueeze(1).to(x.dtype)
        return self.mlp(x)


def build_tower(
    kind: str,
    in_dim: int,
    options: Mapping[str, Any] | None = None,
    *,
    hidden_units: int,
    embed_dim: int,
    n_layers: int,
    dropout: float,
    norm: str | None,
    mean: np.ndarray | None = None,
    scale: np.ndarray | None = None,
) -> nn.Module:
    """Build the tower of one block: an MLP or a trainable encoder.

    Parameters
    ----------
    kind : {"mlp", "conv", "gru", "lstm", "transformer", "pretrained", "pretrained_image"}
        The tower kind (:data:`mmsk.fusion.encoders.TOWER_KINDS`).
    in_dim : int
        Width of the block.
    options : dict or None, default=None
        The kind's options, as :func:`mmsk.fusion.encoders.check_tower`
        returns them; ``shape`` (conv) and ``vocab_size`` (sequence kinds)
        must be set. An option that is None or absent falls back on the
        keyword arguments below (MLP) or on the encoder's default.
    hidden_units, embed_dim, n_layers : int
        The network's sizes; every tower outputs ``embed_dim``.
    dropout : float
        Dropout rate.
    norm : {"batch", "layer"} or None
        Normalisation in the tower.
    mean, scale : array-like of shape (in_dim,) or None, default=None
        Input standardisation (MLP and conv towers; sequence towers take ids).

    Returns
    -------
    torch.nn.Module
        A module called as ``tower(x, present)`` that returns ``(B, embed_dim)``.

    Examples
    --------
    >>> from mmsk.fusion.modules import build_tower
    >>> sizes = dict(hidden_units=8, embed_dim=4, n_layers=1, dropout=0.0, norm=None)
    >>> type(build_tower("conv", 64, {"shape": (1, 8, 8)}, **sizes)).__name__
    'ConvEncoder'
    """
    opts = {key: value for key, value in (options or {}).items() if value is not None}
    common = {"embed_dim": embed_dim, "dropout": dropout, "norm": norm}
    if kind == "mlp":
        return Tower(
            in_dim,
            hidden_units=opts.get("hidden_units", hidden_units),
            n_layers=opts.get("n_layers", n_layers),
            mean=mean,
            scale=scale,
            **common,
        )
    if kind == "pretrained":
        return PretrainedTextEncoder(**opts, **common)
    if kind == "pretrained_image":  # its None options mean something: passed as they are
        return PretrainedImageEncoder(**dict(options or {}), **common)
    needed = "shape" if kind == "conv" else "vocab_size" if kind in SEQUENCE_KINDS else None
    if needed is not None and needed not in opts:
        raise ValueError(f"a {kind!r} tower needs the option {needed!r}")
    if kind == "conv":
        if int(np.prod(opts["shape"])) != in_dim:
            raise ValueError(f"shape {opts['shape']} does not hold the block's {in_dim} values")
        return ConvEncoder(mean=mean, scale=scale, **opts, **common)
    if kind in ("gru", "lstm"):
        return RecurrentEncoder(cell=kind, **{"hidden_units": hidden_units, **opts}, **common)
    if kind == "transformer":
        return TransformerEncoder(max_len=in_dim, **opts, **common)
    raise ValueError(f"unknown tower kind {kind!r}; use one of {TOWER_KINDS}")


def drop_modalities(present: torch.Tensor, p: float) -> torch.Tensor:
    """Hide each present modality with probability ``p``, keeping one per row.

    Parameters
    ----------
    present : BoolTensor of shape (B, M)
        True where the row has the modality.
    p : float
        Drop probability.

    Returns
    -------
    present : BoolTensor of shape (B, M)
        A subset of ``present`` with at least one True per row (a row that
        would lose all keeps one present modality chosen at random).

    Examples
    --------
    >>> from mmsk.fusion.modules import drop_modalities
    >>> kept = drop_modalities(torch.ones(4, 3, dtype=torch.bool), 1.0)
    >>> kept.sum(dim=1).tolist()
    [1, 1, 1, 1]
    """
    keep = present & (torch.rand(present.shape, device=present.device) >= p)
    empty = ~keep.any(dim=1, keepdim=True)
    score = torch.rand(present.shape, device=present.device).masked_fill(~present, -1.0)
    pick = nn.functional.one_hot(score.argmax(dim=1), present.shape[1]).bool()
    return keep | (empty & pick)


#: Evaluation batches smaller than this are zero-padded (see FusionModule.forward).
MIN_EVAL_ROWS = 16


class FusionModule(nn.Module):
    """Towers, then the fusion layer chosen by ``fusion``, then the head.

    Parameters
    ----------
    dims : list of int
        Width of each block.
    n_outputs : int
        Number of outputs (classes, or regression targets).
    fusion : {"concat", "late", "gated", "attention", "tensor"}, default="concat"
        The fusion layer.
    hidden_units : int, default=64
        Width of hidden layers in towers and head.
    embed_dim : int or None, default=None
        Width of each tower's output; None means ``hidden_units``.
    n_layers : int, default=1
        Layers per tower.
    dropout : float, default=0.1
        Dropout in towers, attention and head.
    norm : {"batch", "layer"} or None, default="batch"
        Normalisation in the towers.
    n_heads : int, default=4
        Attention heads (``fusion="attention"``).
    rank : int, default=4
        Rank of the factors (``fusion="tensor"``).
    modality_dropout : float, default=0.0
        While training, hide each present modality of a row with this
        probability (never all of a row's modalities).
    means, scales : list of (array-like or None) or None, default=None
        Per-block input standardisation.
    towers : list of (str, dict) or None, default=None
        Per block, the tower kind and its options (see :func:`build_tower`);
        None: an MLP tower for every block.
    wide : list of bool or None, default=None
        Per block, whether it also feeds the wide part
        (:class:`~mmsk.fusion.wide.WideLinear`), a linear map added to the
        head's output; None: no wide part.

    Examples
    --------
    >>> import torch
    >>> from mmsk.fusion.modules import FusionModule
    >>> net = FusionModule(dims=[5, 3], n_outputs=2, fusion="gated", hidden_units=8)
    >>> batch = {"mask": torch.ones(4, 2, dtype=torch.bool),
    ...          "x0": torch.zeros(4, 5), "x1": torch.zeros(4, 3)}
    >>> net(**batch).shape
    torch.Size([4, 2])
    """

    def __init__(
        self,
        *,
        dims: Sequence[int],
        n_outputs: int,
        fusion: str = "concat",
        hidden_units: int = 64,
        embed_dim: int | None = None,
        n_layers: int = 1,
        dropout: float = 0.1,
        norm: str | None = "batch",
        n_heads: int = 4,
        rank: int = 4,
        modality_dropout: float = 0.0,
        means: Sequence[np.ndarray | None] | None = None,
        scales: Sequence[np.ndarray | None] | None = None,
        towers: Sequence[tuple[str, Mapping[str, Any]]] | None = None,
        wide: Sequence[bool] | None = None,
    ) -> None:
        super().__init__()
        n = len(dims)
        embed_dim = hidden_units if embed_dim is None else embed_dim
        self.n_modalities = n
        self.modality_dropout = modality_dropout
        if towers is None:
            towers = [("mlp", {})] * n
        self.towers = nn.ModuleList(
            build_tower(
                kind,
                d,
                options,
                hidden_units=hidden_units,
                embed_dim=embed_dim,
                n_layers=n_layers,
                dropout=dropout,
                norm=norm,
                mean=None if means is None else means[i],
                scale=None if scales is None else scales[i],
            )
            for i, (d, (kind, options)) in enumerate(zip(dims, towers, strict=True))
        )
        if fusion == "concat":
            self.fusion = ConcatFusion(n, embed_dim)
        elif fusion == "late":
            self.fusion = LateFusion(
                n, embed_dim, n_outputs=n_outputs, hidden_units=hidden_units, dropout=dropout
            )
        elif fusion == "gated":
            self.fusion = GatedFusion(n, embed_dim)
        elif fusion == "attention":
            self.fusion = AttentionFusion(n, embed_dim, n_heads=n_heads, dropout=dropout)
        elif fusion == "tensor":
            self.fusion = TensorFusion(n, embed_dim, rank=rank)
        else:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        self.head = (
            nn.Identity()
            if fusion == "late"
            else Head(self.fusion.out_dim, hidden_units, n_outputs, dropout)
        )
        self.wide = (
            WideLinear(dims, n_outputs, use=wide, means=means, scales=scales)
            if wide is not None and any(wide)
            else None
        )

    def train(self, mode: bool = True) -> FusionModule:
        """Set training mode, walking the submodules only when the mode changes.

        skorch calls ``train`` before every batch; walking all submodules each
        time costs about 75 µs, a few percent of a small net's batch. Set a
        submodule's mode on the submodule itself (as usual) after this call.

        Parameters
        ----------
        mode : bool, default=True
            Training (True) or evaluation (False) mode.

        Returns
        -------
        self : FusionModule
            The module.

        Examples
        --------
        >>> from mmsk.fusion.modules import FusionModule
        >>> net = FusionModule(dims=[3], n_outputs=1, hidden_units=4)
        >>> net.eval().towers[0].training, net.train().towers[0].training
        (False, True)
        """
        if self.training == mode:
            return self
        return super().train(mode)

    def refresh_batch_norm(self, batches: Iterable[Mapping[str, torch.Tensor]]) -> None:
        """Recompute the batch-norm statistics of the trainable encoders from batches.

        The running averages that batch norm keeps while training lag behind
        the weights; in a conv tower, with several batch norms in a row, the
        lag can cost much accuracy in evaluation mode. This recomputes them
        for the final weights ("precise BN"): one pass over ``batches``,
        without gradients, with plain (not exponential) averages. MLP towers
        (:class:`Tower`) keep their running averages.

        Parameters
        ----------
        batches : iterable of dict
            Batches as ``forward`` takes them (``"mask"``, ``"x0"``, ...),
            usually the training rows, shuffled as in training.

        Examples
        --------
        >>> import torch
        >>> from mmsk.fusion.modules import FusionModule
        >>> net = FusionModule(dims=[16], n_outputs=2, hidden_units=4,
        ...                    towers=[("conv", {"shape": (1, 4, 4), "width": 2})])
        >>> batch = {"mask": torch.ones(8, 1, dtype=torch.bool), "x0": torch.randn(8, 16)}
        >>> net.refresh_batch_norm([batch])
        >>> int(net.towers[0].features[1].num_batches_tracked)
        1
        """
        towers = [(i, t) for i, t in enumerate(self.towers) if not isinstance(t, Tower)]
        frozen = {id(m) for _, tower in towers for m in getattr(tower, "frozen", [])}
        norms = [  # (a frozen layer of a pretrained backbone keeps its statistics)
            m
            for _, tower in towers
            for m in tower.modules()
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) and id(m) not in frozen
        ]
        if not norms:
            return
        was_training = self.training
        self.eval()
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a plain average over the batches
            m.train()
        with torch.no_grad():
            for batch in batches:
                for i, tower in towers:
                    tower(batch[f"x{i}"], batch["mask"][:, i].bool())
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
            m.eval()
        self.train(was_training)

    def embed(self, mask: torch.Tensor, **blocks: torch.Tensor) -> torch.Tensor:
        """Map a batch to the fused embedding, the input of the head.

        The fusion layer's output, before the head and without the wide
        part (for ``fusion="late"``: the weighted average of the
        per-modality heads' outputs). :meth:`forward` does not call this
        method, so the outputs stay exactly what they were.

        Parameters
        ----------
        mask : BoolTensor of shape (B, M)
            True where the row has the modality.
        **blocks : Tensor of shape (B, d_i)
            The blocks, ``x0`` ... ``x{M-1}``.

        Returns
        -------
        fused : Tensor of shape (B, fusion.out_dim)
            The fused embedding.

        Examples
        --------
        >>> import torch
        >>> from mmsk.fusion.modules import FusionModule
        >>> net = FusionModule(dims=[3, 2], n_outputs=1, hidden_units=4).eval()
        >>> mask = torch.ones(2, 2, dtype=torch.bool)
        >>> net.embed(mask, x0=torch.zeros(2, 3), x1=torch.zeros(2, 2)).shape
        torch.Size([2, 8])
        """
        n = mask.shape[0]
        if not self.training and n < MIN_EVAL_ROWS:  # as in forward: same bits in any batch
            pad = MIN_EVAL_ROWS - n
            mask = torch.cat([mask, mask.new_ones(pad, mask.shape[1])])
            blocks = {k: torch.cat([v, v.new_zeros(pad, *v.shape[1:])]) for k, v in blocks.items()}
            return self.embed(mask, **blocks)[:n]
        present = mask.bool()
        if self.training and self.modality_dropout > 0:
            present = drop_modalities(present, self.modality_dropout)
        hs = [tower(blocks[f"x{i}"], present[:, i]) for i, tower in enumerate(self.towers)]
        return self.fusion(hs, present)

    def forward(self, mask: torch.Tensor, **blocks: torch.Tensor) -> torch.Tensor:
        """Map a batch to outputs (logits for classification).

        Parameters
        ----------
        mask : BoolTensor of shape (B, M)
            True where the row has the modality.
        **blocks : Tensor of shape (B, d_i)
            The blocks, ``x0`` ... ``x{M-1}``.

        Returns
        -------
        out : Tensor of shape (B, n_outputs)
            The head's output.

        Examples
        --------
        >>> import torch
        >>> from mmsk.fusion.modules import FusionModule
        >>> net = FusionModule(dims=[3], n_outputs=1, hidden_units=4).eval()
        >>> net(mask=torch.ones(2, 1, dtype=torch.bool), x0=torch.zeros(2, 3)).shape
        torch.Size([2, 1])
        """
        n = mask.shape[0]
        if not self.training and n < MIN_EVAL_ROWS:
            # BLAS takes other code paths for a handful of rows (e.g. GEMV for one),
            # which changes the last bits; zero-padding tiny batches keeps a row's
            # output the same, up to float32 rounding, whatever batch it comes in.
            pad = MIN_EVAL_ROWS - n
            mask = torch.cat([mask, mask.new_ones(pad, mask.shape[1])])
            blocks = {k: torch.cat([v, v.new_zeros(pad, *v.shape[1:])]) for k, v in blocks.items()}
            return self.forward(mask, **blocks)[:n]
        present = mask.bool()
        if self.training and self.modality_dropout > 0:
            present = drop_modalities(present, self.modality_dropout)
        hs = [tower(blocks[f"x{i}"], present[:, i]) for i, tower in enumerate(self.towers)]
        out = self.head(self.fusion(hs, present))
        if self.wide is not None:
            out = out + self.wide(blocks, present)
        return out
