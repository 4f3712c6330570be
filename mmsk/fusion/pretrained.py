"""A tower that fine-tunes a pretrained Hugging Face text encoder inside the fusion net.

The ``"pretrained"`` tower kind reads the block that
:class:`mmsk.PretrainedTokens` makes from the same model (``ids_000`` ...
then ``mask_000`` ...: the model's own token ids and attention mask) and
runs the model's encoder on it, pooled and projected to the net's
``embed_dim``; its weights train with the rest of the network.

- **Freezing**: ``trainable_layers="all"`` trains every weight, an int
  ``k`` trains the top ``k`` transformer layers only (0 freezes the whole
  encoder; then it runs without gradients). Frozen layers stay in eval
  mode (no dropout) while the net trains.
- **Own learning rate**: the encoder's weights form their own optimizer
  parameter group with ``lr`` (default 3e-5, the usual range for
  fine-tuning); the rest of the net keeps the estimator's ``lr``.
- **Lazy and portable**: the weights are read from the model folder when
  the net is built, in ``fit`` (never by the estimator's constructor).
  ``fit`` also stores the model's configuration in the tower's options, so
  a saved net (:func:`mmsk.save`, whose weights file holds the fine-tuned
  encoder) is rebuilt from that configuration alone: loading it needs
  neither the model folder nor its weights. The tokenizer belongs to
  :class:`mmsk.PretrainedTokens`, which reads it from the folder.

Nothing is downloaded: the model is a local folder (a Hugging Face or
sentence-transformers save), loaded with ``local_files_only=True``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from numbers import Integral, Real
from typing import Any

import torch
from torch import nn

from mmsk._optional import import_optional
from mmsk.fusion.encoders import TOWER_OPTIONS, _projection

__all__ = [
    "PRETRAINED_OPTIONS",
    "PretrainedTextEncoder",
    "check_pretrained",
    "from_config_only",
    "load_config",
]

#: Options of the ``"pretrained"`` tower and their defaults; ``config`` is filled in ``fit``.
PRETRAINED_OPTIONS: dict[str, Any] = TOWER_OPTIONS["pretrained"]
POOLINGS = ("mean", "cls")

_CONFIG_ONLY: ContextVar[bool] = ContextVar("mmsk_pretrained_config_only", default=False)


@contextlib.contextmanager
def from_config_only() -> Iterator[None]:
    """Within the block, pretrained towers are built from their stored config, weights unread.

    The estimators use it to rebuild a saved net, whose weights file holds
    the fine-tuned encoder anyway.

    Yields
    ------
    None
        Control returns to the ``with`` block.

    Examples
    --------
    >>> from mmsk.fusion.pretrained import from_config_only
    >>> with from_config_only():
    ...     pass
    """
    token = _CONFIG_ONLY.set(True)
    try:
        yield
    finally:
        _CONFIG_ONLY.reset(token)


def check_pretrained(given: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate the options of a ``"pretrained"`` tower and fill in the defaults.

    Parameters
    ----------
    given : dict
        The options given, e.g. ``{"model": path, "trainable_layers": 2}``.
    where : str
        What to call the choice in error messages.

    Returns
    -------
    dict
        Every option (:data:`PRETRAINED_OPTIONS`).

    Raises
    ------
    ValueError
        For an unknown option, a missing ``model`` or a bad value.

    Examples
    --------
    >>> from mmsk.fusion.pretrained import check_pretrained
    >>> check_pretrained({"model": "minilm", "trainable_layers": 1}, "towers['text']")
    {'model': 'minilm', 'trainable_layers': 1, 'lr': 3e-05, 'pooling': 'mean', 'config': None}
    """
    options = dict(PRETRAINED_OPTIONS)
    for key, value in given.items():
        if key not in options:
            raise ValueError(
                f"{where}: 'pretrained' towers have no option {key!r}; their options are "
                f"{sorted(options)}"
            )
        options[key] = value
    model = options["model"]
    if not isinstance(model, str | os.PathLike):
        raise ValueError(
            f"{where}: a 'pretrained' tower needs the option 'model', the folder of a Hugging "
            f"Face or sentence-transformers model (the one PretrainedTokens reads), got {model!r}"
        )
    options["model"] = os.fspath(model)
    layers = options["trainable_layers"]
    if not (
        layers == "all"
        or (isinstance(layers, Integral) and not isinstance(layers, bool) and layers >= 0)
    ):
        raise ValueError(
            f"{where}: option 'trainable_layers' must be 'all' or an int >= 0 (0 freezes the "
            f"encoder), got {layers!r}"
        )
    lr = options["lr"]
    if lr is not None and (not isinstance(lr, Real) or isinstance(lr, bool) or not lr > 0):
        raise ValueError(
            f"{where}: option 'lr' must be a positive float, or None for the net's lr, got {lr!r}"
        )
    if options["pooling"] not in POOLINGS:
        raise ValueError(
            f"{where}: option 'pooling' must be one of {POOLINGS}, got {options['pooling']!r}"
        )
    if options["config"] is not None and not isinstance(options["config"], Mapping):
        raise ValueError(f"{where}: option 'config' must be a dict (set by fit) or None")
    return options


def load_config(model: str) -> dict[str, Any]:
    """Read a local model folder's configuration, as plain JSON data.

    Parameters
    ----------
    model : str
        The model folder.

    Returns
    -------
    dict
        The configuration (``transformers.AutoConfig``), as JSON-able data.

    Raises
    ------
    OSError
        When the folder holds no model configuration.
    """
    transformers = import_optional("transformers", "text")
    try:
        config = transformers.AutoConfig.from_pretrained(model, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise OSError(
            f"pretrained tower: cannot read a model configuration from {model!r} ({exc}); give "
            "a local folder holding a saved Hugging Face or sentence-transformers model"
        ) from exc
    return json.loads(config.to_json_string(use_diff=False))


def _build_model(model: str, config: Mapping[str, Any] | None) -> nn.Module:
    transformers = import_optional("transformers", "text")
    if _CONFIG_ONLY.get() or torch.get_default_device().type == "meta":
        if config is None:
            raise ValueError("a pretrained tower rebuilt without weights needs its stored config")
        config = dict(config)
        built = transformers.AutoConfig.for_model(config.pop("model_type"), **config)
        return transformers.AutoModel.from_config(built, attn_implementation="sdpa")
    bars = transformers.utils.logging
    shown = bars.is_progress_bar_enabled()
    bars.disable_progress_bar()  # no "Loading weights" bar in every fit of a grid search
    try:
        return transformers.AutoModel.from_pretrained(
            model, local_files_only=True, attn_implementation="sdpa"
        )
    except (OSError, ValueError) as exc:
        raise OSError(
            f"pretrained tower: cannot load the model {model!r} ({exc}); give a local folder "
            "holding a saved Hugging Face or sentence-transformers model"
        ) from exc
    finally:
        if shown:
            bars.enable_progress_bar()


def _layer_list(model: nn.Module) -> nn.ModuleList:
    """Return the model's stack of transformer layers: its longest ``ModuleList``."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise ValueError(f"cannot find the transformer layers of {type(model).__name__}")
    return max(lists, key=len)


class PretrainedTextEncoder(nn.Module):
    """A pretrained Hugging Face encoder over ``[ids | attention mask]`` rows, pooled, projected.

    Parameters
    ----------
    model : str
        Local folder of the model (read when ``config`` is None or outside
        :func:`from_config_only`).
    embed_dim : int
        Width of the output.
    trainable_layers : "all" or int, default="all"
        Train every weight, or only the top ``k`` transformer layers (and
        the pooler, when the model has one); 0 freezes the encoder.
    pooling : {"mean", "cls"}, default="mean"
        Average the token states over the attention mask (as
        sentence-transformers does for MiniLM), or take the first token's.
    config : dict or None, default=None
        The model's configuration, to build it without its files.
    dropout : float, default=0.1
        Dropout after the projection.
    norm : {"batch", "layer"} or None, default="batch"
        Normalisation in the projection.
    lr : float or None, default=None
        Recorded only; the estimators give the encoder this learning rate.

    Examples
    --------
    >>> import torch
    >>> from transformers import BertConfig
    >>> from mmsk.fusion.pretrained import PretrainedTextEncoder, from_config_only
    >>> config = BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=2,
    ...                     num_attention_heads=2, intermediate_size=16).to_dict()
    >>> with from_config_only():
    ...     encoder = PretrainedTextEncoder("unused", embed_dim=4, config=config,
    ...                                     trainable_layers=1).eval()
    >>> rows = torch.tensor([[2, 5, 3, 1, 1, 1], [0, 0, 0, 0, 0, 0]])  # ids | mask
    >>> encoder(rows, torch.tensor([True, False])).shape
    torch.Size([2, 4])
    """

    def __init__(
        self,
        model: str,
        *,
        embed_dim: int,
        trainable_layers: str | int = "all",
        pooling: str = "mean",
        config: Mapping[str, Any] | None = None,
        dropout: float = 0.1,
        norm: str | None = "batch",
        lr: float | None = None,
    ) -> None:
        super().__init__()
        self.model = _build_model(model, config)
        self.pooling = pooling
        self.frozen: list[nn.Module] = []
        if trainable_layers != "all":
            layers = _layer_list(self.model)
            k = min(int(trainable_layers), len(layers))
            top = list(layers[len(layers) - k :])
            if k > 0 and hasattr(self.model, "pooler") and self.model.pooler is not None:
                top.append(self.model.pooler)
            kept = {id(p) for part in top for p in part.parameters()}
            for p in self.model.parameters():
                p.requires_grad_(id(p) in kept)
            # outside the trained layers, the modules with no trainable weight run in
            # eval mode (no dropout in the frozen layers); inside them dropout stays on
            training = {id(m) for part in top for m in part.modules()}
            self.frozen = [
                m
                for m in self.model.modules()
                if id(m) not in training and not any(p.requires_grad for p in m.parameters())
            ]
        self.trainable = trainable_layers
        hidden = int(self.model.config.hidden_size)
        self.projection = _projection(hidden, embed_dim, dropout, norm)

    def train(self, mode: bool = True) -> PretrainedTextEncoder:
        """Set the training mode; the frozen parts stay in eval mode."""
        super().train(mode)
        for module in self.frozen:
            module.eval()
        return self

    def forward(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Embed ``(B, 2L)`` rows of ids then attention mask; absent rows read one pad token."""
        length = x.shape[1] // 2
        ids, mask = x[:, :length].long(), x[:, length:].long()
        mask = mask * present.unsqueeze(1).to(mask.dtype)
        ids = ids * mask
        keep = mask.any(dim=0)  # the positions some row attends to (padding is contiguous)
        keep[0] = keep[0] | ~keep.any()
        ids, mask = ids[:, keep], mask[:, keep]
        empty = ~mask.any(dim=1)
        mask[:, 0] = mask[:, 0] | empty.to(mask.dtype)  # never attend to nothing
        context = torch.no_grad() if self.trainable == 0 else contextlib.nullcontext()
        with context:
            states = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        if self.pooling == "cls":
            pooled = states[:, 0]
        else:
            weight = mask.unsqueeze(2).to(states.dtype)
            pooled = (states * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1e-9)
        return self.projection(pooled)
