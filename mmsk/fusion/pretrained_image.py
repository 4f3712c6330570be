"""A tower that fine-tunes a pretrained torch image backbone inside the fusion net.

The ``"pretrained_image"`` tower kind reads the pixels that
:class:`mmsk.ImagePixels` makes (``(C, H, W)`` per row, flattened channels
first, values in [0, 1]), normalises them with the ``mean`` and ``std`` the
backbone expects, and runs the backbone (without its classification head)
on them; the features are projected to the net's ``embed_dim`` and the
backbone's weights train with the rest of the network. It is the image
counterpart of the ``"pretrained"`` text tower (:mod:`mmsk.fusion.pretrained`),
with the same options for freezing and for a learning rate of its own.

- **The backbone** is built by the loading code of
  :class:`mmsk.ImageEncoder` (``model=`` a module object, a class or
  function that returns one, or a torchvision name; ``weights=`` a state
  dict file or a torchvision weights name); the head is removed as
  ``ImageEncoder(layer=...)`` does.
- **Freezing**: ``trainable_layers="all"`` trains every weight, an int
  ``k`` trains the top ``k`` layers (the backbone's children that hold
  weights, in order, see :func:`backbone_layers`), a list of names trains
  the parameters under those prefixes (``["layer4", "fc"]``). Frozen parts
  stay in eval mode (batch-norm statistics unchanged, no dropout).
- **Lazy**: the backbone is built and its weights read when the net is
  built, in ``fit``.
- **Safe files**: :func:`mmsk.save` stores the fine-tuned weights with the
  rest of the net, never a pickled module. A torchvision name is stored as
  the name, and loading rebuilds the architecture from it (no download). A
  module object or a callable cannot be stored without pickle: the file
  keeps a marker in its place, and :func:`mmsk.load` needs the
  architecture again, ``mmsk.load(path, architectures={"image": TinyCNN})``
  (:mod:`mmsk.fusion._image_portable`).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import torch
from torch import nn

from mmsk import _portable
from mmsk._optional import import_optional
from mmsk.fusion._image_portable import MARKER
from mmsk.fusion.encoders import TOWER_OPTIONS, _projection
from mmsk.fusion.pretrained import _CONFIG_ONLY

__all__ = [
    "IMAGE_KIND",
    "PRETRAINED_IMAGE_OPTIONS",
    "PretrainedImageEncoder",
    "backbone_layers",
    "check_image_block",
    "check_pretrained_image",
    "probe_backbone",
]

#: The tower kind.
IMAGE_KIND = "pretrained_image"
#: Options of the ``"pretrained_image"`` tower and their defaults; ``shape``
#: is read from the block's names and ``features`` is set by ``fit``.
PRETRAINED_IMAGE_OPTIONS: dict[str, Any] = TOWER_OPTIONS[IMAGE_KIND]


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= low


def _stats_ok(value: Any, positive: bool) -> bool:
    if value is None:
        return True
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        return False
    return all(
        isinstance(v, Real)
        and not isinstance(v, bool)
        and math.isfinite(v)
        and (v > 0 or not positive)
        for v in value
    )


def check_pretrained_image(given: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate the options of a ``"pretrained_image"`` tower and fill in the defaults.

    Parameters
    ----------
    given : dict
        The options given, e.g. ``{"model": TinyCNN, "weights": "cnn.pt"}``.
    where : str
        What to call the choice in error messages.

    Returns
    -------
    dict
        Every option (:data:`PRETRAINED_IMAGE_OPTIONS`).

    Raises
    ------
    ValueError
        For an unknown option, a missing ``model`` or a bad value.

    Examples
    --------
    >>> from mmsk.fusion.pretrained_image import check_pretrained_image
    >>> options = check_pretrained_image({"model": "resnet18", "trainable_layers": 2}, "towers")
    >>> options["trainable_layers"], options["lr"], options["layer"]
    (2, 0.0001, 'penultimate')
    """
    options = dict(PRETRAINED_IMAGE_OPTIONS)
    for key, value in given.items():
        if key not in options:
            raise ValueError(
                f"{where}: {IMAGE_KIND!r} towers have no option {key!r}; their options are "
                f"{sorted(options)}"
            )
        options[key] = value
    from mmsk._image_encoder import _looks_like_path

    model = options["model"]
    if isinstance(model, str | os.PathLike) and _looks_like_path(model):
        raise ValueError(
            f"{where}: option 'model' must be the architecture (a torch module, a class or "
            "function that returns one, or a torchvision name), not a file; a state dict "
            f"file goes in 'weights' (a whole pickled module is not accepted), got {model!r}"
        )
    if not (isinstance(model, str | nn.Module) or callable(model)) or model == "":
        raise ValueError(
            f"{where}: a {IMAGE_KIND!r} tower needs the option 'model': a torch module, a class "
            f"or function that returns one, or a torchvision name, got {model!r}"
        )
    weights = options["weights"]
    if weights is not None and not isinstance(weights, str | os.PathLike):
        raise ValueError(
            f"{where}: option 'weights' must be None, the path of a state dict file or a "
            f"torchvision weights name, got {weights!r}"
        )
    options["weights"] = None if weights is None else os.fspath(weights)
    layer = options["layer"]
    if layer is not None and (not isinstance(layer, str) or not layer):
        raise ValueError(
            f"{where}: option 'layer' must be 'penultimate', a submodule name or None, got "
            f"{layer!r}"
        )
    layers = options["trainable_layers"]
    names_ok = isinstance(layers, list | tuple) and all(isinstance(n, str) and n for n in layers)
    if not (layers == "all" or _is_int(layers, 0) or names_ok):
        raise ValueError(
            f"{where}: option 'trainable_layers' must be 'all', an int >= 0 (the top layers "
            f"that train; 0 freezes the backbone) or a list of parameter-name prefixes, got "
            f"{layers!r}"
        )
    if names_ok:
        options["trainable_layers"] = list(layers)
    lr = options["lr"]
    if lr is not None and (not isinstance(lr, Real) or isinstance(lr, bool) or not lr > 0):
        raise ValueError(
            f"{where}: option 'lr' must be a positive float, or None for the net's lr, got {lr!r}"
        )
    for key, positive in (("mean", False), ("std", True)):
        if not _stats_ok(options[key], positive):
            sign = "positive " if positive else ""
            raise ValueError(
                f"{where}: option {key!r} must be None or one {sign}number per channel, got "
                f"{options[key]!r}"
            )
        if options[key] is not None:
            options[key] = tuple(float(v) for v in options[key])
    shape = options["shape"]
    if shape is not None:
        if not (isinstance(shape, tuple | list) and len(shape) in (2, 3)) or not all(
            _is_int(s, 1) for s in shape
        ):
            raise ValueError(
                f"{where}: option 'shape' must be (C, H, W) or (H, W), positive ints, got {shape!r}"
            )
        shape = tuple(int(s) for s in shape)
        options["shape"] = shape if len(shape) == 3 else (1, *shape)
    if options["features"] is not None and not _is_int(options["features"], 1):
        raise ValueError(f"{where}: option 'features' must be None (set by fit) or an int >= 1")
    return options


def check_image_block(
    options: dict[str, Any], name: str, dim: int, found: Any, where: str, show: str
) -> None:
    """Set a ``"pretrained_image"`` tower's ``shape`` from its block and check it fits.

    Parameters
    ----------
    options : dict
        The tower's checked options; ``shape`` is set in place.
    name : str
        The block's name.
    dim : int
        Its width.
    found : (str, tuple) or None
        What :func:`mmsk.fusion.blocks.infer_shape` read from its names.
    where : str
        What to call the tower in error messages.
    show : str
        How to describe the block's columns in error messages.

    Raises
    ------
    ValueError
        When the block holds no pixels of a known shape, or ``mean``/``std``
        do not have one value per channel.
    """
    if options["shape"] is None:
        if found is None or found[0] != "image":
            raise ValueError(
                f"{where}: a {IMAGE_KIND!r} tower reads the pixels of ImagePixels (columns "
                f"px_{{row}}_{{col}}_{{band}}), but block {name!r} has {show}; else give the "
                f"shape: ({IMAGE_KIND!r}, {{..., 'shape': (C, H, W)}})"
            )
        options["shape"] = tuple(found[1])
    channels = options["shape"][0]
    if math.prod(options["shape"]) != dim:
        raise ValueError(
            f"{where}: shape {options['shape']} holds {math.prod(options['shape'])} values per "
            f"row, but block {name!r} has {dim} columns"
        )
    for key in ("mean", "std"):
        if options[key] is not None and len(options[key]) != channels:
            raise ValueError(
                f"{where}: option {key!r} has {len(options[key])} values, but block {name!r} "
                f"has {channels} channel(s) (its shape is {options['shape']}, ImagePixels' "
                f"output_shape_); give one value per channel, or None"
            )


# -- the backbone ------------------------------------------------------------------------


def _architecture_only() -> bool:
    return _CONFIG_ONLY.get() or torch.get_default_device().type == "meta"


def _build_backbone(model: Any, weights: Any, layer: str | None) -> tuple[nn.Module, Any]:
    """Build the backbone with ImageEncoder's loading code; return it and its feature hook.

    Within :func:`mmsk.fusion.pretrained.from_config_only` (loading a saved
    net) or on the meta device, only the architecture is built: the
    weights file is not read and a torchvision name gets no weights.
    """
    from mmsk._image_encoder import _find_head, _load_image_model

    if isinstance(model, str) and model.startswith(MARKER):
        raise _portable.ArchitectureNeededError(
            f"a {IMAGE_KIND!r} tower's backbone was given at fit as a Python object "
            f"({model[len(MARKER) : -1]}), which a safe model file does not store (only its "
            "weights); give the architecture again: mmsk.load(path, architectures={block: "
            "module or class})"
        )
    meta = torch.get_default_device().type == "meta"
    if _architecture_only() and isinstance(model, str):
        tv = import_optional("torchvision", "vision")
        module = tv.models.get_model(model, weights=None)
    else:
        weights = None if _architecture_only() else weights
        module = _load_image_model(model, weights, "meta" if meta else "cpu")
    module.requires_grad_(True)
    hook = None
    if layer == "penultimate":
        name, _ = _find_head(module)
        if isinstance(module, nn.Sequential) and "." not in name:
            children = list(module.named_children())
            index = [n for n, _ in children].index(name)
            module = nn.Sequential(*[m for _, m in children[:index]])
        else:
            module.set_submodule(name, nn.Identity())
    elif layer is not None:
        try:
            target = module.get_submodule(layer)
        except AttributeError:
            children = [n for n, _ in module.named_children()]
            raise ValueError(
                f"{type(module).__name__} has no submodule {layer!r}; its children are {children}"
            ) from None
        hook = target
    return module, hook


def backbone_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """Return the layers that ``trainable_layers=k`` counts, lowest first.

    They are the module's children that hold weights, in order; where only
    one child holds weights (a ``features`` stack), its children instead.

    Parameters
    ----------
    module : torch.nn.Module
        The backbone, its head removed.

    Returns
    -------
    list of (str, torch.nn.Module)
        Each layer's parameter-name prefix and the layer.

    Examples
    --------
    >>> from torch import nn
    >>> from mmsk.fusion.pretrained_image import backbone_layers
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3), nn.Flatten())
    >>> [name for name, _ in backbone_layers(net)]
    ['0', '2']
    """
    prefix = ""
    while True:
        held = [(n, m) for n, m in module.named_children() if _has_weights(m)]
        if len(held) != 1 or not any(_has_weights(m) for m in held[0][1].children()):
            return [(f"{prefix}{n}", m) for n, m in held]
        prefix, module = f"{prefix}{held[0][0]}.", held[0][1]


def _has_weights(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _trainable_names(module: nn.Module, trainable: Any) -> set[str]:
    """Return the names of the parameters that train; a ValueError names the option."""
    names = [n for n, _ in module.named_parameters()]
    if trainable == "all":
        return set(names)
    if isinstance(trainable, list):
        prefixes = trainable
        for p in prefixes:
            if not any(n == p or n.startswith(f"{p}.") for n in names):
                layers = [name for name, _ in backbone_layers(module)]
                raise ValueError(
                    f"option 'trainable_layers' names {p!r}, which is no parameter (prefix) of "
                    f"{type(module).__name__}; its layers are {layers}"
                )
    else:
        layers = backbone_layers(module)
        if trainable > len(layers):
            raise ValueError(
                f"option 'trainable_layers' is {trainable}, but {type(module).__name__} has "
                f"{len(layers)} layers ({[n for n, _ in layers]}); give an int from 0 to "
                f"{len(layers)}, 'all' or a list of names"
            )
        prefixes = [n for n, _ in layers[len(layers) - trainable :]] if trainable else []
    return {n for n in names if any(n == p or n.startswith(f"{p}.") for p in prefixes)}


def _first_conv(module: nn.Module) -> nn.Module | None:
    return next((m for m in module.modules() if isinstance(m, nn.Conv2d | nn.Conv1d)), None)


class _Stop(BaseException):
    """Ends the forward pass once the feature layer has run."""


class PretrainedImageEncoder(nn.Module):
    """A pretrained torch image backbone over ``ImagePixels`` rows, normalised, projected.

    Parameters
    ----------
    model : torch.nn.Module, callable or str
        The architecture (see :class:`mmsk.ImageEncoder`'s ``model``; not a file).
    embed_dim : int
        Width of the output.
    shape : (int, int, int)
        ``(C, H, W)`` of one row (``ImagePixels.output_shape_``).
    weights : str or None, default=None
        State dict file or torchvision weights name (read unless the
        architecture alone is built, see :func:`_build_backbone`).
    layer : "penultimate", str or None, default="penultimate"
        Features: the input of the head (removed), a submodule's output, or
        the model's output.
    trainable_layers : "all", int or list of str, default="all"
        What trains (see the module docs); the rest is frozen, in eval mode.
    mean, std : sequence of float or None, default=None
        Per-channel normalisation of the [0, 1] pixels.
    features : int or None, default=None
        Width of the backbone's features (found by a dry run when None).
    dropout : float, default=0.1
        Dropout after the projection.
    norm : {"batch", "layer"} or None, default="batch"
        Normalisation in the projection.
    lr : float or None, default=None
        Recorded only; the estimators give the backbone this learning rate.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from mmsk.fusion.pretrained_image import PretrainedImageEncoder
    >>> cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    ...                     nn.Linear(4, 10))
    >>> tower = PretrainedImageEncoder(cnn, embed_dim=3, shape=(1, 8, 8), mean=(0.5,),
    ...                                std=(0.5,), trainable_layers=0).eval()
    >>> tower(torch.rand(2, 64), torch.tensor([True, False])).shape
    torch.Size([2, 3])
    >>> any(p.requires_grad for p in tower.model.parameters())
    False
    """

    def __init__(
        self,
        model: Any,
        *,
        embed_dim: int,
        shape: Sequence[int],
        weights: str | None = None,
        layer: str | None = "penultimate",
        trainable_layers: Any = "all",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        features: int | None = None,
        dropout: float = 0.1,
        norm: str | None = "batch",
        lr: float | None = None,
    ) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.model, target = _build_backbone(model, weights, layer)
        self._box: list[Any] = []
        if target is not None:
            target.register_forward_hook(self._keep_output)
        channels = self.shape[0]
        self.register_buffer("mean", _stat(mean, channels, 0.0))
        self.register_buffer("std", _stat(std, channels, 1.0))
        kept = _trainable_names(self.model, trainable_layers)
        for name, p in self.model.named_parameters():
            p.requires_grad_(name in kept)
        self.trainable = bool(kept)
        # the modules with weights, none of them trainable, run in eval mode
        self.frozen = [
            m
            for m in self.model.modules()
            if _has_weights(m) and not any(p.requires_grad for p in m.parameters())
        ]
        if features is None:
            features = self._dry_run()
        self.projection = _projection(int(features), embed_dim, dropout, norm)

    def _keep_output(self, module: nn.Module, args: tuple, output: Any) -> None:
        self._box.append(output)
        raise _Stop

    def _dry_run(self) -> int:
        was = self.training
        self.eval()
        device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        with torch.no_grad():
            out = self._features(torch.zeros(1, *self.shape, device=device))
        self.train(was)
        return int(out.shape[1])

    def train(self, mode: bool = True) -> PretrainedImageEncoder:
        """Set the training mode; the frozen parts stay in eval mode."""
        super().train(mode)
        for module in self.frozen:
            module.eval()
        return self

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        try:
            out = self.model(x)
        except _Stop:
            out = self._box.pop()
        finally:
            self._box.clear()
        if isinstance(out, tuple | list) and out:
            out = out[0]
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"the backbone's features are a {type(out).__name__}, not a tensor")
        return out.reshape(out.shape[0], -1)

    def forward(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Embed ``(B, C*H*W)`` pixel rows; absent rows enter as black images."""
        x = x.reshape(x.shape[0], *self.shape) * present.view(-1, 1, 1, 1).to(x.dtype)
        x = (x - self.mean) / self.std
        context = contextlib.nullcontext() if self.trainable else torch.no_grad()
        with context:
            features = self._features(x)
        return self.projection(features)


def _stat(value: Sequence[float] | None, channels: int, default: float) -> torch.Tensor:
    values = [default] * channels if value is None else [float(v) for v in value]
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)


def probe_backbone(options: dict[str, Any], where: str) -> int:
    """Build a tower's backbone once, check it takes the block's pixels, return its width.

    ``fit`` calls it, so that a backbone that does not fit the block (other
    channels, a fixed input size) or a bad ``trainable_layers`` is an error
    naming the tower.

    Parameters
    ----------
    options : dict
        The tower's options, ``shape`` set.
    where : str
        What to call the tower in error messages, e.g. ``"towers['image']"``.

    Returns
    -------
    int
        The width of the backbone's features at ``layer``.

    Raises
    ------
    ValueError
        Naming ``where`` and the option at fault.
    """
    shape = options["shape"]
    try:
        module, target = _build_backbone(options["model"], options["weights"], options["layer"])
        _trainable_names(module, options["trainable_layers"])
    except (ValueError, FileNotFoundError) as exc:
        raise ValueError(f"{where}: {str(exc).removeprefix('ImageEncoder: ')}") from exc
    conv = _first_conv(module)
    if conv is not None and conv.in_channels != shape[0]:
        raise ValueError(
            f"{where}: the backbone {type(module).__name__} takes {conv.in_channels} input "
            f"channel(s), but the block's pixels have {shape[0]} (shape {shape}, ImagePixels' "
            f"output_shape_); give ImagePixels the mode of the backbone ('L': 1, 'RGB': 3)"
        )
    try:
        return _width(module, target, shape)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(
            f"{where}: the backbone {type(module).__name__} cannot take the block's pixels of "
            f"shape (C, H, W) = {shape} ({exc}); give ImagePixels the size the backbone expects"
        ) from exc


def _width(module: nn.Module, target: nn.Module | None, shape: tuple[int, ...]) -> int:
    """Run the backbone once on a black image; return the width of its features."""
    box: list[Any] = []

    def keep(mod: nn.Module, args: tuple, output: Any) -> None:
        box.append(output)
        raise _Stop

    handle = None if target is None else target.register_forward_hook(keep)
    module.eval()
    try:
        with torch.no_grad():
            out = module(torch.zeros(1, *shape))
    except _Stop:
        out = box[0]
    finally:
        if handle is not None:
            handle.remove()
    if target is not None and not box:
        raise ValueError("the forward pass never reached the chosen layer")
    if isinstance(out, tuple | list) and out:
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"the backbone's features are a {type(out).__name__}, not a tensor")
    return int(out.reshape(out.shape[0], -1).shape[1])
