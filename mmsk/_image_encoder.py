"""Frozen embeddings of images from a pretrained torch model (:class:`~mmsk.image.ImageEncoder`)."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from functools import partial
from numbers import Integral, Real
from typing import Any

import numpy as np
from PIL import Image

from ._docstrings import fill_doc
from ._embed import Embedder, module_fingerprint
from ._files import MAX_FILE_BYTES
from ._image_load import (
    _BANDS,
    _RESIZE_POLICIES,
    _check_choice,
    _check_pair,
    _crop_box,
    _pad,
    _uint8_pixels,
    load_image,
)
from ._optional import import_optional
from ._torch import resolve_device

# -- ImageEncoder ------------------------------------------------------------------
#: Attribute names under which torchvision-style models keep their classification head.
_HEAD_NAMES = ("fc", "classifier", "head", "heads")
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")
_ENCODER_MODES = ("RGB", "L")
_OUTPUT = "the model's output"


class _Stop(BaseException):
    """Raised by a feature hook to end the forward pass once the features are known.

    A ``BaseException``, so that a model's own ``except Exception`` cannot swallow it.
    """


def _looks_like_path(value: Any) -> bool:
    if isinstance(value, os.PathLike):
        return True
    return isinstance(value, str) and (
        os.path.isfile(value)
        or os.sep in value
        or "/" in value
        or value.lower().endswith(_WEIGHT_SUFFIXES)
    )


def _read_state_dict(path: Any) -> dict:
    """Read a state dict saved with ``torch.save(module.state_dict(), path)``."""
    import torch

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ImageEncoder: weights file not found: {path!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - say what the file should hold
        raise ValueError(
            f"ImageEncoder: cannot read weights from {path!r} ({type(exc).__name__}: {exc}). "
            "weights= takes a state dict saved with torch.save(module.state_dict(), path); "
            "a whole module saved with torch.save(module, path) goes in model= instead."
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint
    if not isinstance(state, dict):
        raise ValueError(f"ImageEncoder: {path!r} holds a {type(state).__name__}, not a state dict")
    return state


def _load_image_model(model: Any, weights: Any, device: Any) -> Any:
    """Build the torch module that ``model`` and ``weights`` name, frozen, on ``device``.

    A module object is deep-copied (the user's object is never changed).
    """
    import torch

    nn = torch.nn
    weight_file = weights is not None and _looks_like_path(weights)
    torchvision_name = isinstance(model, str) and not _looks_like_path(model)
    if weights is not None and not weight_file and not torchvision_name:
        raise ValueError(
            f"ImageEncoder: weights={weights!r} is not an existing file, and a weights name "
            "('DEFAULT', 'IMAGENET1K_V1') needs a torchvision model name as model="
        )
    if isinstance(model, nn.Module):
        module = copy.deepcopy(model)
    elif isinstance(model, (str, os.PathLike)) and _looks_like_path(model):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ImageEncoder: model file not found: {path!r}")
        module = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(module, nn.Module):
            raise ValueError(
                f"ImageEncoder: {path!r} holds a {type(module).__name__}, not a torch module. "
                "For a state dict, give the architecture as model= (a module, a class or a "
                "torchvision name) and the file as weights=."
            )
    elif isinstance(model, str):
        tv = import_optional("torchvision", "vision")
        if weight_file:
            named = None
        elif weights is None:
            named = "DEFAULT"
        else:
            named = weights
        module = tv.models.get_model(model, weights=named)
    elif callable(model):
        module = model()
        if not isinstance(module, nn.Module):
            raise ValueError(
                f"ImageEncoder: model() returned a {type(module).__name__}, not a torch module"
            )
    else:
        raise ValueError(f"ImageEncoder: cannot make a model from {model!r}")
    if weight_file:
        state = _read_state_dict(weights)
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(
                f"ImageEncoder: the weights in {os.fspath(weights)!r} do not fit "
                f"{type(module).__name__}: {exc}"
            ) from exc
    module.eval()
    module.requires_grad_(False)
    return module.to(resolve_device(device))


def _find_head(module: Any) -> tuple[str, Any]:
    """Name and module of the final classification layer (a Linear)."""
    import torch

    linear = torch.nn.Linear
    for name in _HEAD_NAMES:
        sub = getattr(module, name, None)
        if isinstance(sub, linear):
            return name, sub
        if isinstance(sub, torch.nn.Module):
            inner = [(n, m) for n, m in sub.named_modules() if isinstance(m, linear)]
            if inner:
                return f"{name}.{inner[-1][0]}", inner[-1][1]
    if isinstance(module, torch.nn.Sequential):
        inner = [(n, m) for n, m in module.named_children() if isinstance(m, linear)]
        if inner:
            return inner[-1]
    raise ValueError(
        f"ImageEncoder: cannot tell the final layer of {type(module).__name__} (no Linear "
        f"named {', '.join(_HEAD_NAMES)}, and not a Sequential ending in one). Give "
        "layer='<submodule name>' (its output is the embedding) or layer=None (the model's output)."
    )


def _first_tensor(value: Any, what: str) -> Any:
    import torch

    if isinstance(value, (tuple, list)) and value:
        value = value[0]
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"ImageEncoder: {what} is a {type(value).__name__}, not a tensor")
    return value


class _FrozenImageModel:
    """A loaded model in eval mode on its device, and the layer whose features it returns."""

    def __init__(self, module: Any, layer: Any, device: Any):
        import torch

        self.module = module
        self.device = torch.device(resolve_device(device))
        self.dtype = next(
            (p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32
        )
        self._box: list[Any] = []
        self._stat_tensors: dict[Any, tuple[Any, Any]] = {}  # per (mean, std): on the device
        if layer is None:
            self.where = _OUTPUT
            return
        if layer == "penultimate":
            name, target = _find_head(module)
            self.where = f"the input of {name!r}"
            target.register_forward_pre_hook(self._keep_input)
        else:
            try:
                target = module.get_submodule(layer)
            except AttributeError:
                children = [n for n, _ in module.named_children()]
                raise ValueError(
                    f"ImageEncoder: {type(module).__name__} has no submodule {layer!r}; "
                    f"its children are {children}"
                ) from None
            self.where = f"the output of {layer!r}"
            target.register_forward_hook(self._keep_output)

    def _stats(self, mean: Any, std: Any) -> tuple[Any, Any]:
        """Return ``mean`` and ``std`` as ``(1, C, 1, 1)`` tensors on the device, made once."""
        key = (None if mean is None else tuple(mean), None if std is None else tuple(std))
        stats = self._stat_tensors.get(key)
        if stats is None:
            import torch

            stats = tuple(
                None
                if value is None
                else torch.tensor(value, dtype=self.dtype, device=self.device).view(1, -1, 1, 1)
                for value in key
            )
            self._stat_tensors[key] = stats
        return stats

    def _keep_input(self, module: Any, args: tuple) -> None:
        self._box.append(args[0] if args else None)
        raise _Stop

    def _keep_output(self, module: Any, args: tuple, output: Any) -> None:
        self._box.append(output)
        raise _Stop

    def __call__(self, pixels: np.ndarray, mean: Any, std: Any) -> np.ndarray:
        """Embed a batch of ``(n, H, W, C)`` uint8 images; return ``(n, dim)`` float32."""
        import torch

        with torch.inference_mode():
            host = torch.from_numpy(pixels)
            if self.device.type == "cuda":  # an asynchronous copy needs page-locked memory
                host = host.pin_memory()
            x = host.to(self.device, non_blocking=True)
            x = x.permute(0, 3, 1, 2).to(self.dtype, memory_format=torch.contiguous_format)
            x = x.div_(255)
            shift, scale = self._stats(mean, std)
            if shift is not None:
                x = x.sub_(shift)
            if scale is not None:
                x = x.div_(scale)
            try:
                out = self.module(x)
            except _Stop:
                out = self._box.pop()
            else:
                if self.where != _OUTPUT:
                    raise ValueError(
                        f"ImageEncoder: the forward pass of {type(self.module).__name__} never "
                        f"reached {self.where}: choose another layer"
                    )
            finally:
                self._box.clear()
            out = _first_tensor(out, self.where)
            return out.reshape(out.shape[0], -1).float().cpu().numpy()


def _encoder_input(source: Any, *, mode: str, size: tuple[int, int], resize: str) -> np.ndarray:
    """Decode one item and bring it to ``size``: an ``(H, W, C)`` uint8 array."""
    img = load_image(source, mode)
    resample = Image.Resampling.BILINEAR
    if resize == "pad":
        arr = _pad(img, size, resample)
    else:
        if resize == "crop":
            box = _crop_box(img.size, size)
            if box is not None:
                img = img.resize(size, resample, box=box)
        if img.size != size:
            img = img.resize(size, resample)
        arr = _uint8_pixels(img)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _check_stats(value: Any, name: str, channels: int, positive: bool) -> None:
    if value is None:
        return
    ok = isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str)
    if ok:
        values = list(value)
        ok = len(values) == channels and all(
            isinstance(v, Real) and not isinstance(v, bool) and np.isfinite(v) for v in values
        )
        ok = ok and (not positive or all(v > 0 for v in values))
    if not ok:
        sign = "positive " if positive else ""
        raise ValueError(
            f"{name} must be None or {channels} {sign}numbers (one per channel of the mode), "
            f"got {value!r}"
        )


@fill_doc
class ImageEncoder(Embedder):
    """Frozen embeddings of images from a pretrained torch model.

    Every image is converted to ``mode``, resized to ``size``, scaled to
    [0, 1] and normalised with ``mean`` and ``std`` (per channel), and the
    batch goes through the model in eval mode with no gradients. The row
    is the model's features at ``layer``: by default the input of its final
    classification layer (the penultimate layer, e.g. the 512 pooled
    features of a ResNet-18).

    - **Any model**: a ``torch.nn.Module`` object, a class or function
      that builds one, a file holding a whole saved module, or a
      torchvision model name (extra ``vision``), each with optional
      ``weights`` from a local file.
    - **Lazy**: the model is built or loaded on first use (``fit``, or
      ``transform`` after unpickling), never by the constructor; ``clone``
      and ``set_params`` never load it. The loaded model is not pickled.
    - **Batched**: ``batch_size`` images per forward pass, on the GPU when
      there is one (``device="auto"``); ``n_jobs`` joblib workers decode
      and resize the images meanwhile.
    - **Cached**: with ``memory=``, each image's embedding is stored under
      the image's content, the model's weights and the preprocessing, so a
      grid search or a cross-validation embeds each image once.

    {items}

    Parameters
    ----------
    model : str, path-like, torch.nn.Module or callable, default="resnet18"
        The backbone:

        - a torchvision model name (``"resnet18"``, ``"efficientnet_b0"``,
          ``"vit_b_16"``, ...; needs ``pip install 'mmsk[vision]'``), built
          by ``torchvision.models.get_model``;
        - the path of a file holding a whole module saved with
          ``torch.save(module, path)`` (it is unpickled: load trusted files
          only);
        - a class or function called with no arguments that returns a
          module (use a module-level one, so that the estimator pickles);
        - a module object. It is a parameter like any other: it is pickled
          with the estimator and copied by :func:`~sklearn.base.clone`, and
          the embedder works on its own copy (your object is never moved,
          changed or put in eval mode).

        Names, paths and classes keep pickles small.
    weights : None, str or path-like, default=None
        The path of a state dict saved with
        ``torch.save(module.state_dict(), path)`` (a training checkpoint
        with a ``"state_dict"`` entry works too), loaded into the model
        (strictly: every key must match). For a torchvision name, also a
        weights name: ``"DEFAULT"``, ``"IMAGENET1K_V1"``,
        ``"ResNet18_Weights.IMAGENET1K_V1"``, downloaded on first use into
        torch's cache (``TORCH_HOME``). None keeps the weights the module
        comes with, and for a torchvision name means ``"DEFAULT"``, the
        pretrained weights.
    layer : "penultimate", str or None, default="penultimate"
        Where the features come from. ``"penultimate"``: the input of the
        final classification layer, the last ``Linear`` of the model's
        ``fc``, ``classifier``, ``head`` or ``heads`` (torchvision's names),
        or of an ``nn.Sequential`` model; the forward pass stops there. A
        submodule name (``"avgpool"``, ``"layer4"``, ``"features.7"``): the
        output of that submodule, flattened; the pass stops there too.
        None: the model's output, flattened.
    size : (int, int), default=(224, 224)
        ``(width, height)`` of the model's input, in Pillow's order.
    resize : {"stretch", "pad", "crop"}, default="stretch"
        How to reach ``size``, as in :class:`ImagePixels`: stretch, keep
        the aspect ratio and pad with black, or keep it and crop the
        centre.
    mode : {"RGB", "L"}, default="RGB"
        The channels the model takes: colour or grey.
    mean : sequence of float or None, default=(0.485, 0.456, 0.406)
        Per-channel mean subtracted from the [0, 1] pixels (ImageNet's by
        default); one value per channel of ``mode``. None subtracts
        nothing.
    std : sequence of float or None, default=(0.229, 0.224, 0.225)
        Per-channel standard deviation the pixels are divided by; None
        divides by nothing.
    batch_size : int, default=32
        Images per forward pass. The output does not depend on it (up to
        float rounding).
    device : "auto", str or torch.device, default="auto"
        Where the model runs: ``"auto"`` is ``"cuda"`` when a GPU is
        visible, else ``"cpu"``.
    {file_limits}
    {on_error}
    {n_jobs}
    {memory}
    {verbose}

    Attributes
    ----------
    embedding_dim_ : int
        Features per image at ``layer``, found by running the model once on
        a blank image in ``fit``.
    n_features_in_ : int
        Always 1: one column of items.
    feature_names_in_ : ndarray of shape (1,)
        The column name, when fitted on a DataFrame.
    n_features_out_ : int
        ``embedding_dim_``; the output names are ``emb_000``, ``emb_001``, ...

    See Also
    --------
    ImagePixels : The resized pixels themselves, for a trainable tower.
    ImageFeatures : Classical descriptors, no model needed.
    mmsk.text.SentenceEmbedder : Frozen embeddings of texts.

    Notes
    -----
    The cache key of an image is its content plus a fingerprint of the
    loaded model (architecture and weights), ``layer``, ``size``,
    ``resize``, ``mode``, ``mean``, ``std`` and the library versions; not
    ``batch_size``, ``device`` nor ``n_jobs``.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from mmsk import ImageEncoder
    >>> net = torch.nn.Sequential(
    ...     torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
    ...     torch.nn.Linear(4, 10))
    >>> encoder = ImageEncoder(model=net, size=(16, 16), mode="L", mean=(0.5,), std=(0.5,))
    >>> images = [np.zeros((20, 20), dtype=np.uint8), np.full((16, 24), 255, dtype=np.uint8)]
    >>> encoder.fit_transform(images).shape  # the 4 features entering the last Linear
    (2, 4)
    >>> encoder.get_feature_names_out().tolist()
    ['emb_000', 'emb_001', 'emb_002', 'emb_003']
    """

    _what = "images"
    _versioned = ("torch", "Pillow", "torchvision")
    _whole_files = True  # Pillow reads a small file in many small pieces: one read is faster
    _model_params = ("model", "weights", "layer", "device")
    _fingerprinted = ("model", "weights")

    def __init__(
        self,
        *,
        model="resnet18",
        weights=None,
        layer="penultimate",
        size=(224, 224),
        resize="stretch",
        mode="RGB",
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        batch_size=32,
        device="auto",
        max_file_bytes=MAX_FILE_BYTES,
        allowed_dirs=None,
        on_error="raise",
        n_jobs=None,
        memory=None,
        verbose=0,
    ):
        self.model = model
        self.weights = weights
        self.layer = layer
        self.size = size
        self.resize = resize
        self.mode = mode
        self.mean = mean
        self.std = std
        self.batch_size = batch_size
        self.device = device
        self.max_file_bytes = max_file_bytes
        self.allowed_dirs = allowed_dirs
        self.on_error = on_error
        self.n_jobs = n_jobs
        self.memory = memory
        self.verbose = verbose

    def _check_params(self) -> None:
        model = self.model
        if isinstance(model, str) and not model.strip():
            raise ValueError("model must name a model or a file, got an empty string")
        if not isinstance(model, (str, os.PathLike)) and not callable(model):
            raise ValueError(
                "model must be a torch module, a class or function that returns one, the path "
                f"of a saved module or a torchvision model name, got {model!r}"
            )
        weights = self.weights
        if weights is not None and not isinstance(weights, (str, os.PathLike)):
            raise ValueError(f"weights must be None, a path or a weights name, got {weights!r}")
        layer = self.layer
        if layer is not None and (not isinstance(layer, str) or not layer):
            raise ValueError(
                f"layer must be 'penultimate', a submodule name or None, got {layer!r}"
            )
        _check_pair(self.size, "size", "(width, height)")
        _check_choice(self.resize, "resize", _RESIZE_POLICIES)
        _check_choice(self.mode, "mode", _ENCODER_MODES)
        channels = len(_BANDS[self.mode])
        _check_stats(self.mean, "mean", channels, positive=False)
        _check_stats(self.std, "std", channels, positive=True)
        ok = isinstance(self.batch_size, Integral) and not isinstance(self.batch_size, bool)
        if not ok or self.batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {self.batch_size!r}")

    def fit(self, X: Any, y: Any = None) -> ImageEncoder:
        """Check the parameters, load the model and learn the embedding size.

        No image is read: ``fit`` loads the model (on first use) and runs it
        once on a blank image of ``size``.

        Parameters
        ----------
        X : sequence of items or one-column 2-D input
            The training column (only its name is used).
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted encoder.
        """
        return super().fit(X, y)

    def transform(self, X: Any) -> np.ndarray:
        """Embed every image.

        Parameters
        ----------
        X : sequence of items or one-column 2-D input
            The images.

        Returns
        -------
        ndarray of float32, shape (n_images, embedding_dim_)
            One row per image; NaN for a missing image (and, with
            ``on_error="nan"``, an unreadable one).
        """
        return super().transform(X)

    # -- the work ------------------------------------------------------------
    def _load_model(self) -> _FrozenImageModel:
        module = _load_image_model(self.model, self.weights, self.device)
        return _FrozenImageModel(module, self.layer, self.device)

    def _model_fingerprint(self, model: _FrozenImageModel) -> str:
        return module_fingerprint(model.module)

    def _embedding_dim(self, model: _FrozenImageModel) -> int:
        width, height = int(self.size[0]), int(self.size[1])
        blank = np.zeros((1, height, width, len(_BANDS[self.mode])), dtype=np.uint8)
        return int(model(blank, self._stat(self.mean), self._stat(self.std)).shape[1])

    def _preparer(self) -> Callable[[Any], np.ndarray]:
        size = (int(self.size[0]), int(self.size[1]))
        return partial(_encoder_input, mode=self.mode, size=size, resize=self.resize)

    def _embed(self, model: _FrozenImageModel, inputs: list[Any]) -> np.ndarray:
        return model(np.stack(inputs), self._stat(self.mean), self._stat(self.std))

    @staticmethod
    def _stat(value: Any) -> list[float] | None:
        return None if value is None else [float(v) for v in value]
