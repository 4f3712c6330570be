"""Frozen embeddings of audio clips from a pretrained ONNX or torch model.

:class:`AudioEmbedder` reads each clip with :func:`~mmsk.audio.load_audio`
(mono, resampled to ``sr``), brings it to the sample format the model takes
(``dtype``), cuts it into fixed windows, runs every window of a batch of
clips through the model (one ONNX file, a pipeline of them, a torch module
or a plain function) and pools the model's frames over the clip. The model
is loaded on first use, never pickled, and cached items are never decoded
nor embedded again (:class:`~mmsk._embed.Embedder`).

onnxruntime is imported when an ``.onnx`` model is loaded, torch when a
torch model is: importing this module stays cheap.
"""

from __future__ import annotations

import importlib.util
import numbers
import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ._audio_load import _check_int, load_audio
from ._audio_models import Chain, Rescale, stages_of
from ._docstrings import fill_doc
from ._embed import Embedder

__all__ = ["AudioEmbedder", "Rescale"]

#: Sample formats a model can take, see ``dtype``.
DTYPES = ("float32", "int16")
#: Statistics ``pooling`` can name.
POOLINGS = ("mean", "max", "min", "std")
#: Where a clip shorter than the window sits in it.
PADS = ("center", "start")
#: The models of openwakeword 0.4.0, in its package folder ``resources/models``.
OPENWAKEWORD_MODELS = ("melspectrogram.onnx", "embedding_model.onnx")


# -- per clip ------------------------------------------------------------------
def _samples(value: Any, sr: int) -> int | None:
    """Convert a length in samples (int) or seconds (float) to samples."""
    if value is None:
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    return max(1, int(round(float(value) * sr)))


def _clip_windows(
    source: Any, *, sr: int, dtype: str, window: int | None, hop: int, pad: str
) -> np.ndarray:
    """Decode one clip and cut it into ``(n_windows, window)`` model inputs."""
    y, _ = load_audio(source, sr, mono=True)
    if dtype == "int16":
        y = np.clip(np.round(y * 32768.0), -32768, 32767)
    y = y.astype(np.float32, copy=False)
    if window is None:
        return y[np.newaxis, :]
    n = y.shape[0]
    if n < window:
        before = (window - n) // 2 if pad == "center" else 0
        return np.pad(y, (before, window - n - before))[np.newaxis, :]
    count = 1 + -(-(n - window) // hop)  # the last window reaches the clip's end
    y = np.pad(y, (0, (count - 1) * hop + window - n))
    return np.lib.stride_tricks.sliding_window_view(y, window)[::hop].copy()


def _pool(frames: np.ndarray, pooling: tuple[str, ...]) -> np.ndarray:
    """Pool ``(n_frames, dim)`` over frames: ``dim * len(pooling)`` values."""
    frames = frames.astype(np.float64, copy=False)
    ops = {"mean": np.mean, "max": np.max, "min": np.min, "std": np.std}
    return np.concatenate([ops[name](frames, axis=0) for name in pooling]).astype(np.float32)


def _openwakeword_dir() -> Path:
    spec = importlib.util.find_spec("openwakeword")
    if spec is None or spec.origin is None:
        raise ImportError(
            "openwakeword is not installed: pip install 'openwakeword==0.4.0' (its models are "
            "CC BY-NC-SA 4.0; later versions do not ship them), or give models_dir= the folder "
            f"holding {' and '.join(OPENWAKEWORD_MODELS)}"
        )
    return Path(spec.origin).parent / "resources" / "models"


@fill_doc
class AudioEmbedder(Embedder):
    """Frozen embeddings of audio clips from a pretrained ONNX or torch model.

    Each clip is mixed to mono, resampled to ``sr``, converted to the
    sample format the model takes (``dtype``) and cut into windows of
    ``window`` samples every ``hop`` samples. The windows of a batch of
    clips go through the model together; the model's output frames are
    pooled over the clip (``pooling``), giving one row per clip.

    - **Any model**: an ``.onnx`` file (run by onnxruntime, extra
      ``audio-embed``), a torch module, a function on
      arrays, or a list of these applied in sequence (a front end, then an
      encoder).
    - **Lazy**: the model is loaded on first use (``fit``, or ``transform``
      after unpickling), never by the constructor; ``clone`` and
      ``set_params`` never load it. The loaded model is not pickled.
    - **Batched**: ``batch_size`` windows per forward pass, on the GPU when
      there is one (``device="auto"``); ``n_jobs`` joblib workers decode
      and resample the clips meanwhile.
    - **Cached**: with ``memory=``, each clip's row is stored under the
      clip's content, the model files' content and the input contract.

    :meth:`from_openwakeword` sets all of this up for the speech embedding
    that the ``openwakeword==0.4.0`` package ships (16 kHz int16 audio,
    96 values per 0.78 s window). mmsk ships no model.

    {items}

    Parameters
    ----------
    model : str, path-like, torch.nn.Module, callable or list, default=None
        The model (required; None raises in ``fit``). One stage or a list
        (or tuple) of stages, each applied to the previous one's output:

        - the path of an ``.onnx`` file with one input, run by onnxruntime
          (``pip install 'mmsk[audio-embed]'``). Its first output is the
          result. When its input declares fixed sizes after the batch axis
          (``(batch, 76, 32, 1)``), the previous stage's output is reshaped
          to them if it holds as many values. Files are never unpickled;
        - a ``torch.nn.Module``: the embedder works on its own copy, in eval
          mode, without gradients; it takes and returns float tensors;
        - a class, or a function of no arguments, that builds a module or a
          function stage (module-level, so that the estimator pickles);
        - a function from one ndarray to another, e.g. :class:`Rescale`.

        The first stage takes a float32 array ``(batch, window)`` of
        samples (in ``dtype``'s range); the last returns
        ``(batch, dim)`` or ``(batch, frames..., dim)``: the embedding on
        the last axis, every middle axis counted as frames.
    sr : int, default=16000
        Sampling rate in Hz the model takes; every file is resampled to it
        (:func:`librosa.resample`, ``"soxr_hq"``). A waveform array item
        is taken to be at ``sr`` already.
    dtype : {"float32", "int16"}, default="float32"
        The sample values the model takes: ``"float32"``, floats in
        [-1, 1]; ``"int16"``, 16-bit PCM values: the samples times 32768,
        rounded and clipped to [-32768, 32767] (handed over as float32, or
        as int16 to an ONNX input that declares it).
    window : int, float or None, default=None
        The model's input length: an int is samples, a float seconds. A
        clip shorter than it is zero-padded to it (``pad``); a longer one
        is cut into windows every ``hop``, the last one zero-padded at its
        end, so that every sample is seen. None gives the model each whole
        clip, one clip per forward pass.
    hop : int, float or None, default=None
        Step between windows (int: samples, float: seconds); None means
        ``window`` (no overlap).
    pad : {"center", "start"}, default="center"
        Where a clip shorter than ``window`` sits in its window: in the
        middle (zeros on both sides) or at the start (zeros after it).
    pooling : str or sequence of str, default="mean"
        Statistics over the clip's frames (every window's frames):
        ``"mean"``, ``"max"``, ``"min"``, ``"std"``. A sequence
        concatenates them in its order.
    clip_stages : int, default=0
        How many of the first stages run on one clip's windows at a time
        (the rest on batches across clips). For a stage that normalises
        over its whole input, such as openwakeword's mel spectrogram (its
        dB floor is 80 dB below the loudest value in the batch), 1 keeps
        one clip's output independent of the other clips in its batch, as
        when the clip is run alone.
    batch_size : int, default=64
        Windows per forward pass (and clips per decoding task). The output
        does not depend on it (up to float rounding).
    device : "auto", str or torch.device, default="auto"
        Where the model runs: ``"auto"`` is ``"cuda"`` when a GPU is
        visible (to torch, or to onnxruntime's CUDA provider), else
        ``"cpu"``.
    {on_error}
    {n_jobs}
    {memory}
    {verbose}

    Attributes
    ----------
    embedding_dim_ : int
        Values per frame of the model's output (its last axis), found by
        running the model once on a silent window in ``fit``.
    window_ : int or None
        ``window`` in samples.
    hop_ : int or None
        ``hop`` in samples.
    n_features_in_ : int
        Always 1: one column of items.
    feature_names_in_ : ndarray of shape (1,)
        The column name, when fitted on a DataFrame.
    n_features_out_ : int
        ``embedding_dim_ * len(pooling)``; the names are
        ``emb_<stat>_<index>``: ``emb_mean_000``, ..., ``emb_max_000``, ...

    See Also
    --------
    AudioFeatures : Hand-made librosa features, no model needed.
    LogMelSpectrogram : Log-mel images, for a trainable tower.

    Notes
    -----
    The windows are cut from the waveform itself, so a front-end model that
    computes frames without padding (as openwakeword's mel spectrogram does)
    gives exactly the frames it would give on the whole clip. The cache key
    of a clip is its content plus a fingerprint of the loaded model (the
    bytes of each model file, the weights of each torch module,
    :func:`joblib.hash` of each function), ``sr``, ``dtype``, ``window``,
    ``hop``, ``pad``, ``pooling`` and the library versions; not
    ``batch_size``, ``device`` nor ``n_jobs``.

    Examples
    --------
    A tiny torch model made here: frames of 16 samples, 4 values each.

    >>> import numpy as np
    >>> import torch
    >>> from mmsk import AudioEmbedder
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Unflatten(1, (-1, 16)), torch.nn.Linear(16, 4))
    >>> emb = AudioEmbedder(model=net, sr=8000, window=0.05, pooling=["mean", "max"])
    >>> tone = np.sin(2 * np.pi * 440 * np.arange(4000) / 8000).astype("float32")
    >>> X = emb.fit_transform([tone, tone[:100], None])
    >>> X.shape, emb.window_
    ((3, 8), 400)
    >>> emb.get_feature_names_out()[[0, 4]].tolist()
    ['emb_mean_000', 'emb_max_000']
    >>> bool(np.isnan(X[2]).all())  # a missing clip gives a NaN row
    True

    openwakeword's speech embedding (``pip install openwakeword==0.4.0``,
    models under CC BY-NC-SA 4.0; skipped here, it needs the package):

    >>> emb = AudioEmbedder.from_openwakeword()  # doctest: +SKIP
    >>> emb.fit_transform(["clips/0_theo_0.wav"]).shape  # doctest: +SKIP
    (1, 96)
    """

    _what = "audio items"
    _versioned = ("librosa", "soundfile", "soxr", "onnxruntime", "torch")
    _model_params = ("model", "device")
    _fingerprinted = ("model",)

    def __init__(
        self,
        *,
        model=None,
        sr=16000,
        dtype="float32",
        window=None,
        hop=None,
        pad="center",
        pooling="mean",
        clip_stages=0,
        batch_size=64,
        device="auto",
        on_error="raise",
        n_jobs=None,
        memory=None,
        verbose=0,
    ):
        self.model = model
        self.sr = sr
        self.dtype = dtype
        self.window = window
        self.hop = hop
        self.pad = pad
        self.pooling = pooling
        self.clip_stages = clip_stages
        self.batch_size = batch_size
        self.device = device
        self.on_error = on_error
        self.n_jobs = n_jobs
        self.memory = memory
        self.verbose = verbose

    @classmethod
    def from_openwakeword(
        cls, models_dir: str | os.PathLike | None = None, **params: Any
    ) -> AudioEmbedder:
        """Set up an embedder for openwakeword 0.4.0's speech embedding.

        The chain of openwakeword's own ``AudioFeatures``: 16 kHz audio as
        int16 values, ``melspectrogram.onnx`` (32 mel bands every 10 ms,
        512-sample frames, no padding), ``x / 10 + 2``, then
        ``embedding_model.onnx`` (Google's speech embedding) on windows of
        76 mel frames (12,512 samples, 0.78 s) every 8 frames (1,280
        samples, 80 ms): 96 values per window, pooled over the clip. A clip
        shorter than 0.78 s is zero-padded in the middle of one window.

        mmsk does not ship these models: openwakeword's README puts them
        under CC BY-NC-SA 4.0 (non-commercial). Install
        ``openwakeword==0.4.0`` (later versions download them instead of
        shipping them) or point ``models_dir`` at a folder holding the two
        files; nothing is loaded before ``fit``.

        Parameters
        ----------
        models_dir : str, path-like or None, default=None
            Folder holding ``melspectrogram.onnx`` and
            ``embedding_model.onnx``; None finds it in the installed
            openwakeword package (``openwakeword/resources/models``),
            without importing it.
        **params
            Other parameters of :class:`AudioEmbedder` (``pooling``,
            ``memory``, ``n_jobs``, ...); they may override the preset.

        Returns
        -------
        AudioEmbedder
            The unfitted embedder; its ``model`` is the list
            ``[<melspectrogram.onnx>, Rescale(0.1, 2.0), <embedding_model.onnx>]``.

        Raises
        ------
        ImportError
            If ``models_dir`` is None and openwakeword is not installed.
        FileNotFoundError
            If a model file is missing from the folder.

        Examples
        --------
        >>> from mmsk import AudioEmbedder
        >>> emb = AudioEmbedder.from_openwakeword(pooling=["mean", "max"])  # doctest: +SKIP
        >>> emb.sr, emb.dtype, emb.window, emb.hop  # doctest: +SKIP
        (16000, 'int16', 12512, 1280)
        """
        folder = _openwakeword_dir() if models_dir is None else Path(models_dir)
        paths = [folder / name for name in OPENWAKEWORD_MODELS]
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} not found: openwakeword 0.4.0 ships it under "
                    "openwakeword/resources/models (pip install 'openwakeword==0.4.0')"
                )
        preset = dict(
            model=[str(paths[0]), Rescale(0.1, 2.0), str(paths[1])],
            sr=16000,
            dtype="int16",
            window=12512,
            hop=1280,
            pad="center",
            clip_stages=1,
        )
        return cls(**{**preset, **params})

    def _check_params(self) -> None:
        if self.model is None:
            raise ValueError(
                "model is required: an .onnx file, a torch module, a function, a list of "
                "these, or AudioEmbedder.from_openwakeword()"
            )
        stages = stages_of(self.model)
        if not stages:
            raise ValueError("model is an empty list: give at least one stage")
        for i, stage in enumerate(stages):
            if isinstance(stage, str) and not stage.strip():
                raise ValueError(f"model stage {i + 1} is an empty string")
            if not isinstance(stage, (str, os.PathLike)) and not callable(stage):
                raise ValueError(
                    f"model stage {i + 1}: expected a path, a torch module or a callable, "
                    f"got {stage!r}"
                )
        _check_int("sr", self.sr)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        for name in ("window", "hop"):
            value = getattr(self, name)
            ok = value is None or (
                isinstance(value, numbers.Real)
                and not isinstance(value, bool)
                and np.isfinite(value)
                and value > 0
            )
            if not ok:
                raise ValueError(
                    f"{name} must be None, an int >= 1 (samples) or a float > 0 (seconds), "
                    f"got {value!r}"
                )
        if self.window is None and self.hop is not None:
            raise ValueError("hop needs window: set window= too, or leave hop=None")
        if self.pad not in PADS:
            raise ValueError(f"pad must be one of {PADS}, got {self.pad!r}")
        pooling = (self.pooling,) if isinstance(self.pooling, str) else self.pooling
        try:
            pooling = tuple(pooling)
        except TypeError:
            raise ValueError(
                f"pooling must be a name or a sequence of names, got {pooling!r}"
            ) from None
        bad = [p for p in pooling if p not in POOLINGS]
        if not pooling or bad or len(set(pooling)) != len(pooling):
            raise ValueError(
                f"pooling must name one or more of {POOLINGS}, each once, got {self.pooling!r}"
            )
        _check_int("batch_size", self.batch_size)
        _check_int("clip_stages", self.clip_stages, 0)
        if self.clip_stages > len(stages):
            raise ValueError(
                f"clip_stages={self.clip_stages} exceeds the number of model stages ({len(stages)})"
            )

    def _pooling(self) -> tuple[str, ...]:
        return (self.pooling,) if isinstance(self.pooling, str) else tuple(self.pooling)

    def fit(self, X: Any, y: Any = None) -> AudioEmbedder:
        """Check the parameters, load the model and learn the embedding size.

        No clip is read: ``fit`` loads the model (on first use) and runs it
        once on a silent window.

        Parameters
        ----------
        X : sequence of items or one-column 2-D input
            The training column (only its name is used).
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted embedder.
        """
        return super().fit(X, y)

    def transform(self, X: Any) -> np.ndarray:
        """Embed every clip.

        Parameters
        ----------
        X : sequence of items or one-column 2-D input
            The clips.

        Returns
        -------
        ndarray of float32, shape (n_clips, n_features_out_)
            One row per clip; NaN for a missing clip (and, with
            ``on_error="nan"``, an unreadable one).
        """
        return super().transform(X)

    # -- the work ------------------------------------------------------------
    def _load_model(self) -> Chain:
        return Chain(self.model, self.device)

    def _model_fingerprint(self, model: Chain) -> str:
        return model.fingerprint()

    def _fit_items(
        self, items: Sequence[Any], column: str | None, labels: Sequence[Any] | None = None
    ) -> None:
        self.window_ = _samples(self.window, self.sr)
        self.hop_ = _samples(self.hop, self.sr) if self.hop is not None else self.window_
        silent = np.zeros((1, self.window_ or int(self.sr)), dtype=np.float32)
        self.embedding_dim_ = int(self._get_model()(silent).shape[-1])

    def _feature_names(self) -> list[str]:
        width = max(3, len(str(self.embedding_dim_ - 1)))
        return [
            f"emb_{stat}_{i:0{width}d}"
            for stat in self._pooling()
            for i in range(self.embedding_dim_)
        ]

    def _preparer(self) -> Callable[[Any], np.ndarray]:
        return partial(
            _clip_windows,
            sr=int(self.sr),
            dtype=self.dtype,
            window=self.window_,
            hop=self.hop_,
            pad=self.pad,
        )

    def _embed(self, model: Chain, inputs: list[np.ndarray]) -> np.ndarray:
        pooling = self._pooling()
        if self.window_ is None:  # whole clips of any length: one at a time
            return np.stack([_pool(model(clip)[0], pooling) for clip in inputs])
        split = int(self.clip_stages)
        if split:  # these stages see one clip's windows at a time
            inputs = [model(clip, 0, split) for clip in inputs]
        windows = np.concatenate(inputs)
        step = int(self.batch_size)
        frames = np.concatenate(
            [model(windows[s : s + step], split) for s in range(0, len(windows), step)]
        )
        ends = np.cumsum([len(clip) for clip in inputs])
        return np.stack(
            [
                _pool(frames[end - len(clip) : end].reshape(-1, frames.shape[-1]), pooling)
                for clip, end in zip(inputs, ends, strict=True)
            ]
        )
