"""The models behind :class:`~mmsk.audio_embed.AudioEmbedder`: stages loaded and chained.

A model is one stage or a list of stages applied in sequence to a batch of
windows: an ONNX file (onnxruntime), a torch module, or
a function on arrays (:class:`Rescale`). Each loaded stage maps an ndarray to
an ndarray and has a fingerprint (the bytes of its file, the weights of its
module, the hash of its function) for the feature cache. onnxruntime and
torch are imported only when a stage needs them.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

import joblib
import numpy as np

from ._embed import module_fingerprint

__all__ = ["Chain", "Rescale", "stages_of"]

_ONNX_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}


class Rescale:
    """A model stage that maps its input ``x`` to ``x * scale + offset``.

    Use it between the stages of an :class:`AudioEmbedder` pipeline, e.g.
    openwakeword's ``x / 10 + 2`` between its mel-spectrogram and embedding
    models. Unlike a lambda, it pickles and it keys the feature cache by its
    values.

    Parameters
    ----------
    scale : float, default=1.0
        Factor.
    offset : float, default=0.0
        Added after scaling.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.audio_embed import Rescale
    >>> Rescale(0.1, 2.0)(np.array([10.0, -20.0], dtype=np.float32))
    array([3., 0.], dtype=float32)
    """

    def __init__(self, scale: float = 1.0, offset: float = 0.0):
        self.scale = float(scale)
        self.offset = float(offset)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Return ``x * scale + offset`` in ``x``'s float type."""
        dtype = x.dtype if x.dtype.kind == "f" else np.float32
        return (x * dtype.type(self.scale) + dtype.type(self.offset)).astype(dtype, copy=False)

    def __repr__(self) -> str:
        """Show the values, as a constructor call."""
        return f"Rescale(scale={self.scale!r}, offset={self.offset!r})"


# -- the stages of a model -----------------------------------------------------
def _file_digest(path: str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _onnx_device(device: Any) -> str:
    """``"cuda"`` or ``"cpu"`` for onnxruntime, without importing torch for "auto"."""
    if device is None or device == "auto":
        import onnxruntime as ort

        return "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
    from ._torch import resolve_device

    return "cuda" if str(resolve_device(device)).startswith("cuda") else "cpu"


class _OnnxStage:
    """An ONNX file run by onnxruntime: one input, its first output."""

    def __init__(self, path: str, device: Any):
        from ._optional import import_optional

        ort = import_optional("onnxruntime", "audio-embed")
        providers = ["CPUExecutionProvider"]
        if _onnx_device(device) == "cuda":
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(path, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types vary
            raise ValueError(f"AudioEmbedder: cannot load the ONNX model {path!r}: {exc}") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            names = [i.name for i in inputs]
            raise ValueError(
                f"AudioEmbedder: the ONNX model {path!r} takes {len(inputs)} inputs {names}; "
                "a stage must take one (wrap the model in a function stage)"
            )
        self.input = inputs[0].name
        self.dtype = _ONNX_TYPES.get(inputs[0].type, np.float32)
        shape = list(inputs[0].shape)
        fixed = len(shape) > 1 and all(isinstance(d, int) and d > 0 for d in shape[1:])
        self.shape = tuple(shape[1:]) if fixed else None
        self.path = path

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.shape is not None and x.shape[1:] != self.shape:
            if x.size == x.shape[0] * int(np.prod(self.shape)):
                x = x.reshape(x.shape[0], *self.shape)  # e.g. (n, 1, 76, 32) -> (n, 76, 32, 1)
        x = np.ascontiguousarray(x, dtype=self.dtype)
        return np.asarray(self.session.run(None, {self.input: x})[0])

    def fingerprint(self) -> str:
        return "onnx:" + _file_digest(self.path)


class _TorchStage:
    """A torch module in eval mode on its device, run without gradients."""

    def __init__(self, module: Any, device: Any):
        import torch

        from ._torch import resolve_device

        self.device = torch.device(resolve_device(device))
        module = module.to(self.device)
        module.eval()
        module.requires_grad_(False)
        self.module = module
        self.dtype = next(
            (p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32
        )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            out = self.module(t.to(self.device, self.dtype))
            if isinstance(out, (tuple, list)) and out:
                out = out[0]
            if not isinstance(out, torch.Tensor):
                raise ValueError(
                    f"AudioEmbedder: the torch model returned a {type(out).__name__}, not a tensor"
                )
            return out.float().cpu().numpy()

    def fingerprint(self) -> str:
        return "torch:" + module_fingerprint(self.module)


class _FunctionStage:
    """A plain function from one ndarray to another."""

    def __init__(self, function: Callable[[np.ndarray], Any]):
        self.function = function

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.function(x))

    def fingerprint(self) -> str:
        try:
            return "function:" + joblib.hash(self.function)
        except Exception:  # noqa: BLE001 - e.g. a lambda, which does not pickle
            code = getattr(self.function, "__code__", None)
            if code is None:
                raise
            where = f"{self.function.__module__}.{self.function.__qualname__}"
            return "code:" + joblib.hash((where, code.co_code, code.co_consts))


def _is_torch_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")  # an object can only be a module if torch is imported
    return torch is not None and isinstance(obj, torch.nn.Module)


def _is_factory(obj: Any) -> bool:
    """Tell whether ``obj`` builds the stage: a class, or a function of no arguments."""
    if isinstance(obj, type):
        return True
    try:
        parameters = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):  # a builtin or a ufunc: a stage
        return False
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in parameters if p.kind in kinds and p.default is p.empty]
    variadic = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)
    return not required and not variadic


def _load_stage(spec: Any, device: Any, position: int) -> Any:
    where = f"model stage {position}" if position else "model"
    if isinstance(spec, (str, os.PathLike)):
        path = os.fspath(spec)
        if not os.path.isfile(path):
            raise ValueError(f"AudioEmbedder: {where}: no such file {path!r}")
        if not path.lower().endswith(".onnx"):
            raise ValueError(
                f"AudioEmbedder: {where}: {path!r} is not an .onnx file; a torch model is given "
                "as a module (or a class or function that builds one), or exported to ONNX"
            )
        return _OnnxStage(path, device)
    if _is_torch_module(spec):
        return _TorchStage(copy.deepcopy(spec), device)
    if callable(spec) and _is_factory(spec):
        built = spec()
        if _is_torch_module(built):
            return _TorchStage(built, device)
        if callable(built):
            return _FunctionStage(built)
        raise ValueError(
            f"AudioEmbedder: {where}: {spec!r} built a {type(built).__name__}, "
            "not a torch module nor a callable"
        )
    if callable(spec):
        return _FunctionStage(spec)
    raise ValueError(
        f"AudioEmbedder: {where}: expected the path of an .onnx file, a torch "
        f"module, a class or function that builds one, or a function on arrays; got {spec!r}"
    )


def stages_of(model: Any) -> list[Any]:
    if isinstance(model, (list, tuple)):
        return list(model)
    return [model]


class Chain:
    """The loaded stages of a model, applied in sequence to one batch."""

    def __init__(self, model: Any, device: Any):
        specs = stages_of(model)
        many = len(specs) > 1
        self.stages = [_load_stage(s, device, i + 1 if many else 0) for i, s in enumerate(specs)]

    def __call__(self, x: np.ndarray, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Run ``stages[start:stop]`` on a batch; the whole chain ends in ``(n, frames, dim)``."""
        n = x.shape[0]
        for stage in self.stages[start:stop]:
            x = stage(x)
            if x.ndim < 1 or x.shape[0] != n:
                raise ValueError(
                    f"AudioEmbedder: a model stage gave an output of shape {x.shape} for a "
                    f"batch of {n} inputs; every stage must keep the batch axis first"
                )
        if stop is not None and stop < len(self.stages):
            return x
        if x.ndim < 2:
            raise ValueError(
                f"AudioEmbedder: the model gave an output of shape {x.shape} for a batch of {n} "
                "inputs; it must be (batch, dim) or (batch, frames..., dim), the embedding on "
                "the last axis"
            )
        return x.reshape(n, -1, x.shape[-1])

    def fingerprint(self) -> str:
        return joblib.hash([stage.fingerprint() for stage in self.stages])
