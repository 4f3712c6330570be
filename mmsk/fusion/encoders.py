"""Trainable encoders: towers that learn from pixels, spectrograms and token ids.

The default tower (:class:`mmsk.fusion.modules.Tower`) is an MLP over a
block of frozen features. The encoders here learn from raw-ish blocks end
to end, as the classic multimodal models do:

- :class:`ConvEncoder`: a small CNN over an image-like block, e.g. the
  pixels of ``ImagePixels`` or the frames of ``LogMelSpectrogram``
  (``(C, H, W)``, flattened channels-first);
- :class:`RecurrentEncoder`: an embedding and a GRU or LSTM over token ids,
  e.g. the output of ``TokenSequences``;
- :class:`TransformerEncoder`: an embedding, a learned positional
  embedding and a small transformer encoder over token ids, mean-pooled.

Every encoder is called as ``encoder(x, present)`` like ``Tower`` and
returns ``(B, embed_dim)``, so all of them feed every fusion layer. Token
blocks follow ``TokenSequences``' convention: id 0 is padding, id 1 is
out of vocabulary. The sequence encoders ignore the padding wherever it is
(they move the tokens of a row to its front first), and map ids the
training data never showed (``>= vocab_size``) to the out-of-vocabulary id.

This module also holds the table of tower kinds and their options
(:data:`TOWER_OPTIONS`) and :func:`check_tower`, which validates one entry
of the estimators' ``towers`` parameter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Integral
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

__all__ = [
    "OOV_ID",
    "PAD_ID",
    "SEQUENCE_KINDS",
    "TOWER_KINDS",
    "TOWER_OPTIONS",
    "ConvEncoder",
    "RecurrentEncoder",
    "TransformerEncoder",
    "check_tower",
    "compact_tokens",
    "norm_layer",
]

#: Token id of padding (the convention of ``mmsk.TokenSequences``).
PAD_ID = 0
#: Token id of a token out of the vocabulary.
OOV_ID = 1

#: The kinds of tower, in the order the docs list them.
TOWER_KINDS = ("mlp", "conv", "gru", "lstm", "transformer", "pretrained", "pretrained_image")
#: The towers over token ids (int64 blocks, padding masked, no standardisation).
SEQUENCE_KINDS = ("gru", "lstm", "transformer", "pretrained")

#: Options of each tower kind and their defaults. ``None`` is filled in ``fit``:
#: ``hidden_units`` and ``n_layers`` of an MLP from the estimator's parameters,
#: ``shape`` from the block's column names, ``vocab_size`` from the largest id.
TOWER_OPTIONS: dict[str, dict[str, Any]] = {
    "mlp": {"hidden_units": None, "n_layers": None},
    "conv": {"shape": None, "depth": 2, "width": 16, "kernel_size": 3},
    "gru": {
        "embedding_dim": 32,
        "hidden_units": None,
        "n_layers": 1,
        "bidirectional": False,
        "vocab_size": None,
    },
    "lstm": {
        "embedding_dim": 32,
        "hidden_units": None,
        "n_layers": 1,
        "bidirectional": False,
        "vocab_size": None,
    },
    "transformer": {"embedding_dim": 32, "n_layers": 1, "n_heads": 4, "vocab_size": None},
    # a Hugging Face encoder, fine-tuned (mmsk.fusion.pretrained.PRETRAINED_OPTIONS)
    "pretrained": {
        "model": None,
        "trainable_layers": "all",
        "lr": 3e-5,
        "pooling": "mean",
        "config": None,
    },
    # a torch image backbone, fine-tuned (mmsk.fusion.pretrained_image.PRETRAINED_IMAGE_OPTIONS)
    "pretrained_image": {
        "model": None,
        "weights": None,
        "layer": "penultimate",
        "trainable_layers": "all",
        "lr": 1e-4,
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "shape": None,
        "features": None,
    },
}


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= low


def check_tower(spec: Any, where: str) -> tuple[str, dict[str, Any]]:
    """Validate one tower choice and fill in the defaults of its options.

    Parameters
    ----------
    spec : str or (str, dict)
        A kind from :data:`TOWER_KINDS`, or a kind and its options, e.g.
        ``("conv", {"depth": 3})``.
    where : str
        What to call the choice in error messages, e.g. ``"towers['image']"``.

    Returns
    -------
    kind : str
        The tower kind.
    options : dict
        Every option of the kind (:data:`TOWER_OPTIONS`), the given ones
        checked, the others at their defaults (``None`` where ``fit`` fills
        them in).

    Raises
    ------
    ValueError
        For an unknown kind or option, or an option of the wrong type.

    Examples
    --------
    >>> from mmsk.fusion.encoders import check_tower
    >>> check_tower(("conv", {"depth": 3}), "towers['image']")
    ('conv', {'shape': None, 'depth': 3, 'width': 16, 'kernel_size': 3})
    """
    if isinstance(spec, str):
        kind, given = spec, {}
    elif isinstance(spec, tuple | list) and len(spec) == 2 and isinstance(spec[1], Mapping):
        kind, given = spec
    else:
        raise ValueError(
            f"{where} must be a tower kind (one of {TOWER_KINDS}) or a (kind, options) "
            f"pair such as ('conv', {{'depth': 3}}), got {spec!r}"
        )
    if kind not in TOWER_OPTIONS:
        raise ValueError(f"{where}: unknown tower kind {kind!r}; use one of {TOWER_KINDS}")
    if kind == "pretrained":
        from mmsk.fusion.pretrained import check_pretrained

        return kind, check_pretrained(given, where)
    if kind == "pretrained_image":
        from mmsk.fusion.pretrained_image import check_pretrained_image

        return kind, check_pretrained_image(given, where)
    options = dict(TOWER_OPTIONS[kind])
    for key, value in given.items():
        if key not in options:
            raise ValueError(
                f"{where}: {kind!r} towers have no option {key!r}; their options are "
                f"{sorted(options)}"
            )
        if key == "bidirectional":
            ok, want = isinstance(value, bool | np.bool_), "a bool"
        elif key == "shape":
            ok, want = _is_shape(value), "(C, H, W) or (H, W), positive ints"
        elif key == "vocab_size":
            ok, want = value is None or _is_int(value, 2), "None or an int >= 2"
        elif key == "kernel_size":
            ok, want = _is_int(value, 1) and value % 2 == 1, "an odd int >= 1"
        else:
            ok, want = _is_int(value, 1), "an int >= 1"
        if not ok:
            raise ValueError(f"{where}: option {key!r} must be {want}, got {value!r}")
        options[key] = value
    if kind == "transformer" and options["embedding_dim"] % options["n_heads"]:
        raise ValueError(
            f"{where}: a transformer tower needs embedding_dim divisible by n_heads, got "
            f"embedding_dim={options['embedding_dim']} and n_heads={options['n_heads']}"
        )
    if options.get("shape") is not None:
        shape = tuple(int(s) for s in options["shape"])
        options["shape"] = shape if len(shape) == 3 else (1, *shape)
    return kind, options


def _is_shape(value: Any) -> bool:
    return (
        isinstance(value, tuple | list)
        and len(value) in (2, 3)
        and all(_is_int(s, 1) for s in value)
    )


def norm_layer(kind: str | None, width: int, *, spatial: bool = False) -> nn.Module:
    """Return the normalisation layer a tower uses after a linear or conv layer.

    Parameters
    ----------
    kind : {"batch", "layer"} or None
        Batch norm, layer norm (:class:`~torch.nn.GroupNorm` with one group
        over ``(C, H, W)`` when ``spatial``), or none.
    width : int
        Features (channels when ``spatial``).
    spatial : bool, default=False
        Normalise ``(B, C, H, W)`` maps instead of ``(B, width)`` vectors.

    Returns
    -------
    torch.nn.Module
        The layer (:class:`~torch.nn.Identity` for None).

    Examples
    --------
    >>> from mmsk.fusion.encoders import norm_layer
    >>> [type(norm_layer(kind, 8, spatial=True)).__name__ for kind in ("batch", "layer", None)]
    ['BatchNorm2d', 'GroupNorm', 'Identity']
    """
    if kind == "batch":
        return nn.BatchNorm2d(width) if spatial else nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.GroupNorm(1, width) if spatial else nn.LayerNorm(width)
    return nn.Identity()


def _projection(in_dim: int, embed_dim: int, dropout: float, norm: str | None) -> nn.Sequential:
    """``Linear -> norm -> ReLU -> Dropout``, the last layer of every tower."""
    return nn.Sequential(
        nn.Linear(in_dim, embed_dim), norm_layer(norm, embed_dim), nn.ReLU(), nn.Dropout(dropout)
    )


class ConvEncoder(nn.Module):
    """A small CNN over an image-like block: conv blocks, global average pool, projection.

    ``depth`` blocks of ``Conv2d -> norm -> ReLU -> MaxPool2d(2)``, the
    first with ``width`` channels, each next one with twice as many (a
    dimension already down to 1 is not pooled further), then a global
    average pool and ``Linear -> norm -> ReLU -> Dropout`` to ``embed_dim``.

    Parameters
    ----------
    shape : (int, int, int)
        ``(C, H, W)`` of one row; the block holds ``C * H * W`` values per
        row, channels first (as ``ImagePixels`` and ``LogMelSpectrogram``
        flatten them).
    embed_dim : int
        Width of the output.
    depth : int, default=2
        Number of conv blocks.
    width : int, default=16
        Channels of the first conv block.
    kernel_size : int, default=3
        Odd kernel size; the convolutions keep the map size ("same" padding).
    dropout : float, default=0.1
        Dropout after the projection.
    norm : {"batch", "layer"} or None, default="batch"
        :class:`~torch.nn.BatchNorm2d`, or :class:`~torch.nn.GroupNorm`
        with one group, after each convolution; batch or layer norm in the
        projection.
    mean, scale : array-like of shape (C * H * W,) or None, default=None
        Input standardisation ``(x - mean) / scale`` (the estimators pass
        per-channel statistics); None: identity.

    Examples
    --------
    >>> import torch
    >>> from mmsk.fusion.encoders import ConvEncoder
    >>> encoder = ConvEncoder((1, 8, 8), embed_dim=4, width=4).eval()
    >>> encoder(torch.zeros(3, 64), torch.ones(3, dtype=torch.bool)).shape
    torch.Size([3, 4])
    """

    def __init__(
        self,
        shape: Sequence[int],
        *,
        embed_dim: int,
        depth: int = 2,
        width: int = 16,
        kernel_size: int = 3,
        dropout: float = 0.1,
        norm: str | None = "batch",
        mean: np.ndarray | None = None,
        scale: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        channels, height, width_px = (int(s) for s in shape)
        self.shape = (channels, height, width_px)
        in_dim = channels * height * width_px
        mean = np.zeros(in_dim) if mean is None else np.asarray(mean)
        scale = np.ones(in_dim) if scale is None else np.asarray(scale)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).clone())
        self.register_buffer("inv_scale", 1.0 / torch.as_tensor(scale, dtype=torch.float32))
        layers: list[nn.Module] = []
        c_in, h, w = channels, height, width_px
        for i in range(depth):
            c_out = width * 2**i
            layers += [
                nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=norm is None),
                norm_layer(norm, c_out, spatial=True),
                nn.ReLU(),
            ]
            pool = (2 if h > 1 else 1, 2 if w > 1 else 1)
            if pool != (1, 1):
                layers.append(nn.MaxPool2d(pool, ceil_mode=True))
                h, w = math.ceil(h / pool[0]), math.ceil(w / pool[1])
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.projection = _projection(c_in, embed_dim, dropout, norm)

    def forward(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Embed ``(B, C*H*W)`` rows; rows that lack the modality enter as zeros (the mean)."""
        x = (x - self.mean) * self.inv_scale * present.unsqueeze(1).to(x.dtype)
        maps = self.features(x.view(-1, *self.shape))
        return self.projection(maps.mean(dim=(2, 3)))


def compact_tokens(ids: torch.Tensor, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each row's tokens to its front, keeping their order; map unknown ids to OOV.

    Parameters
    ----------
    ids : LongTensor of shape (B, L)
        Token ids, ``PAD_ID`` (0) for padding, anywhere in the row.
    vocab_size : int
        Ids ``>= vocab_size`` become ``OOV_ID`` (1).

    Returns
    -------
    ids : LongTensor of shape (B, L)
        The tokens of each row first, then its padding.
    lengths : LongTensor of shape (B,)
        Number of tokens of each row (0 for an all-padding row).

    Examples
    --------
    >>> import torch
    >>> from mmsk.fusion.encoders import compact_tokens
    >>> ids, lengths = compact_tokens(torch.tensor([[0, 0, 5, 9], [3, 0, 4, 0]]), 6)
    >>> ids.tolist(), lengths.tolist()
    ([[5, 1, 0, 0], [3, 4, 0, 0]], [2, 2])
    """
    ids = torch.where(ids >= vocab_size, torch.full_like(ids, OOV_ID), ids)
    pad = ids == PAD_ID
    token = (~pad).to(ids.dtype)
    lengths = token.sum(dim=1)
    # A stable sort of the padding flags, written as a permutation from running
    # counts (a token goes after the tokens before it, a pad after the tokens
    # and the pads before it): integer arithmetic that ONNX exports, unlike a
    # stable sort.
    token_slot = torch.cumsum(token, dim=1) - 1
    pad_slot = lengths.unsqueeze(1) + torch.cumsum(1 - token, dim=1) - 1
    slot = torch.where(pad, pad_slot, token_slot)
    return torch.empty_like(ids).scatter_(1, slot, ids), lengths


class RecurrentEncoder(nn.Module):
    """Token ids through an embedding and a GRU or LSTM; the last states, projected.

    Each row's tokens are moved to its front and packed
    (:func:`~torch.nn.utils.rnn.pack_padded_sequence`), so the recurrent
    net never sees the padding: where and how much padding a row has does
    not change its output. The final hidden state of the last layer (of
    both directions when ``bidirectional``) goes through
    ``Linear -> norm -> ReLU -> Dropout`` to ``embed_dim``.

    Parameters
    ----------
    vocab_size : int
        Size of the embedding table, the reserved ids 0 (padding) and 1 (out
        of vocabulary) included; larger ids are read as 1.
    embed_dim : int
        Width of the output.
    cell : {"gru", "lstm"}, default="gru"
        The recurrent layer, :class:`~torch.nn.GRU` or :class:`~torch.nn.LSTM`.
    embedding_dim : int, default=32
        Width of the token embeddings.
    hidden_units : int, default=64
        Hidden size of the recurrent layer (per direction).
    n_layers : int, default=1
        Stacked recurrent layers.
    bidirectional : bool, default=False
        Also read each text backwards.
    dropout : float, default=0.1
        Dropout between recurrent layers and after the projection.
    norm : {"batch", "layer"} or None, default="batch"
        Normalisation in the projection.

    Examples
    --------
    >>> import torch
    >>> from mmsk.fusion.encoders import RecurrentEncoder
    >>> encoder = RecurrentEncoder(10, embed_dim=4, hidden_units=8, bidirectional=True).eval()
    >>> ids = torch.tensor([[2, 5, 0, 0], [0, 0, 0, 0]])
    >>> encoder(ids, torch.tensor([True, False])).shape
    torch.Size([2, 4])
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        embed_dim: int,
        cell: str = "gru",
        embedding_dim: int = 32,
        hidden_units: int = 64,
        n_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.1,
        norm: str | None = "batch",
    ) -> None:
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', got {cell!r}")
        self.vocab_size = int(vocab_size)
        self.n_directions = 2 if bidirectional else 1
        self.embedding = nn.Embedding(self.vocab_size, embedding_dim, padding_idx=PAD_ID)
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(
            embedding_dim,
            hidden_units,
            num_layers=n_layers,
            batch_first=True,
            bidirectional=bool(bidirectional),
            dropout=dropout if n_layers > 1 else 0.0,
        )
        self.projection = _projection(hidden_units * self.n_directions, embed_dim, dropout, norm)

    def forward(self, ids: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Embed ``(B, L)`` token ids; rows that lack the modality read as all padding."""
        ids, lengths = compact_tokens(ids * present.unsqueeze(1).to(ids.dtype), self.vocab_size)
        packed = pack_padded_sequence(
            self.embedding(ids),
            lengths.clamp(min=1).cpu(),  # an empty row reads one padding token
            batch_first=True,
            enforce_sorted=False,
        )
        # the default initial state, made explicit: the TorchScript ONNX exporter
        # fails on a one-layer packed RNN without it
        h0 = self.embedding.weight.new_zeros(
            self.rnn.num_layers * self.n_directions, ids.shape[0], self.rnn.hidden_size
        )
        _, state = self.rnn(packed, (h0, h0) if isinstance(self.rnn, nn.LSTM) else h0)
        if isinstance(state, tuple):  # LSTM: (h_n, c_n)
            state = state[0]
        last = state[-self.n_directions :].transpose(0, 1).reshape(ids.shape[0], -1)
        return self.projection(last)


class TransformerEncoder(nn.Module):
    """Token ids through embeddings and a small transformer encoder, mean-pooled.

    Token embeddings plus learned positional embeddings (positions counted
    from a row's first token) go through ``n_layers``
    :class:`~torch.nn.TransformerEncoderLayer` with the padding masked as
    keys; the token outputs are averaged over the real tokens and go
    through ``Linear -> norm -> ReLU -> Dropout`` to ``embed_dim``. Where
    and how much padding a row has does not change its output.

    Parameters
    ----------
    vocab_size : int
        Size of the embedding table, the reserved ids 0 (padding) and 1 (out
        of vocabulary) included; larger ids are read as 1.
    max_len : int
        Longest sequence (the size of the positional table).
    embed_dim : int
        Width of the output.
    embedding_dim : int, default=32
        Width of the token embeddings and of the transformer (``d_model``);
        divisible by ``n_heads``.
    n_layers : int, default=1
        Transformer encoder layers.
    n_heads : int, default=4
        Attention heads.
    dropout : float, default=0.1
        Dropout in the transformer layers and after the projection.
    norm : {"batch", "layer"} or None, default="batch"
        Normalisation in the projection.

    Examples
    --------
    >>> import torch
    >>> from mmsk.fusion.encoders import TransformerEncoder
    >>> encoder = TransformerEncoder(10, 4, embed_dim=4, embedding_dim=8, n_heads=2).eval()
    >>> ids = torch.tensor([[2, 5, 0, 0], [0, 0, 0, 0]])
    >>> encoder(ids, torch.tensor([True, False])).shape
    torch.Size([2, 4])
    """

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        *,
        embed_dim: int,
        embedding_dim: int = 32,
        n_layers: int = 1,
        n_heads: int = 4,
        dropout: float = 0.1,
        norm: str | None = "batch",
    ) -> None:
        super().__init__()
        self.vocab_size = int(vocab_size)
        self.embedding = nn.Embedding(self.vocab_size, embedding_dim, padding_idx=PAD_ID)
        self.position = nn.Parameter(torch.randn(int(max_len), embedding_dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            embedding_dim,
            n_heads,
            dim_feedforward=2 * embedding_dim,
            dropout=dropout,
            batch_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.projection = _projection(embedding_dim, embed_dim, dropout, norm)

    def forward(self, ids: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Embed ``(B, L)`` token ids; rows that lack the modality read as all padding."""
        ids, lengths = compact_tokens(ids * present.unsqueeze(1).to(ids.dtype), self.vocab_size)
        length = max(int(lengths.max()), 1) if len(lengths) else 1
        ids = ids[:, :length]  # the rest is padding in every row
        pad = torch.arange(length, device=ids.device) >= lengths.unsqueeze(1)
        pad[:, 0] = False  # an empty row attends to one padding token, never to nothing
        tokens = self.encoder(
            self.embedding(ids) + self.position[:length], src_key_padding_mask=pad
        )
        keep = (~pad).unsqueeze(2).to(tokens.dtype)
        return self.projection((tokens * keep).sum(dim=1) / keep.sum(dim=1))
