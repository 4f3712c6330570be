"""Texts as a pretrained model's own token ids and attention mask, for fine-tuning.

:class:`PretrainedTokens` runs the tokenizer of a local Hugging Face or
sentence-transformers model folder and returns, per text, ``max_length``
token ids then ``max_length`` attention-mask values: the input of the
fusion estimators' ``"pretrained"`` tower, which fine-tunes that model
(:mod:`mmsk.fusion.pretrained`). transformers (extra ``text``) is imported
on first use only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from numbers import Integral
from typing import Any

import numpy as np

from ._base import ItemTransformer, _label, _reason
from ._docstrings import fill_doc
from ._items import ItemError, describe_item, is_missing, row_name, valid_text
from ._optional import import_optional
from ._sentence import _as_text

__all__ = ["PretrainedTokens"]


def load_tokenizer(model: str) -> Any:
    """Load the tokenizer of a local model folder, never downloading."""
    transformers = import_optional("transformers", "text")
    try:
        return transformers.AutoTokenizer.from_pretrained(model, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise OSError(
            f"PretrainedTokens: cannot load a tokenizer from {model!r} ({exc}); give a local "
            "folder holding a saved Hugging Face or sentence-transformers model"
        ) from exc


@fill_doc
class PretrainedTokens(ItemTransformer):
    """Texts as the token ids and attention mask of a pretrained model's tokenizer.

    Each text becomes ``2 * max_length`` integers: the ids the model's own
    tokenizer gives it (special tokens included, truncated or padded to
    ``max_length``), then its attention mask (1 for a token, 0 for
    padding). Give the block to a ``"pretrained"`` tower of the same model,
    which fine-tunes the model inside the fusion net::

        towers={"text": ("pretrained", {"model": folder, "trainable_layers": 2})}

    - **Lazy**: the tokenizer is loaded by ``fit`` (or, after unpickling,
      by ``transform``), never by the constructor, and is not pickled.
    - **Offline**: ``model`` is a local folder, read with
      ``local_files_only=True``; nothing is downloaded.
    - A missing text (``None``, ``NaN``, ``pd.NA``) gives a row of zeros
      (ids and mask), which the fusion net reads as a missing modality; an
      empty string is a text (the model's special tokens).

    Items are ``str``, or ``bytes`` decoded as UTF-8.

    Parameters
    ----------
    model : str or path-like
        Folder of the model (``config.json`` and the tokenizer files), e.g.
        one written by ``SentenceTransformer.save`` or
        ``AutoModel.save_pretrained``.
    max_length : int, default=128
        Tokens per text, special tokens included; longer texts are cut.
    on_error : {"raise", "nan"}, default="raise"
        What to do with an item that is not a text (wrong type, bytes that
        are not UTF-8). ``"raise"`` raises an
        :class:`~mmsk._items.ItemError` naming the column, the row and the
        item; ``"nan"`` gives that row zeros (a missing text) and warns once
        with the number of such rows.

    Attributes
    ----------
    vocab_size_ : int
        Size of the tokenizer's vocabulary.
    n_features_in_ : int
        Always 1: one column of texts.
    feature_names_in_ : ndarray of shape (1,)
        The column name, when fitted on a DataFrame.
    n_features_out_ : int
        ``2 * max_length``; the names are ``ids_000`` ... then ``mask_000`` ...

    See Also
    --------
    TokenSequences : Token ids of a vocabulary learned from the data.
    SentenceEmbedder : The same models, frozen, as embeddings.

    Examples
    --------
    >>> from mmsk import PretrainedTokens
    >>> tokens = PretrainedTokens(model="path/to/all-MiniLM-L6-v2", max_length=8)
    >>> X = tokens.fit_transform(["A cat sat.", None])  # doctest: +SKIP
    >>> X[:, :8].tolist(), X[:, 8:].tolist()  # doctest: +SKIP
    ([[101, 1037, 4937, 2938, 1012, 102, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]],
     [[1, 1, 1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]])
    """

    _what = "texts"
    _text_items = True
    _output_dtype = np.int64

    def __init__(self, *, model=None, max_length=128, on_error="raise"):
        self.model = model
        self.max_length = max_length
        self.on_error = on_error

    def _check_params(self) -> None:
        if not isinstance(self.model, str | os.PathLike):
            raise ValueError(
                "model must be the folder of a Hugging Face or sentence-transformers model "
                f"(str or path-like), got {self.model!r}"
            )
        ok = isinstance(self.max_length, Integral) and not isinstance(self.max_length, bool)
        if not ok or self.max_length < 2:
            raise ValueError(f"max_length must be an int >= 2, got {self.max_length!r}")

    def _fit_items(
        self, items: Sequence[Any], column: str | None, labels: Sequence[Any] | None = None
    ) -> None:
        tokenizer = self._tokenizer()
        self.vocab_size_ = int(len(tokenizer))

    def _tokenizer(self) -> Any:
        loaded = self.__dict__.get("_loaded_tokenizer")
        if loaded is None or loaded[0] != os.fspath(self.model):
            loaded = (os.fspath(self.model), load_tokenizer(os.fspath(self.model)))
            self._loaded_tokenizer = loaded
        return loaded[1]

    def __getstate__(self) -> dict[str, Any]:
        """Leave the tokenizer out: it is loaded again from ``model`` on first use."""
        state = super().__getstate__()
        return {k: v for k, v in state.items() if not k.startswith("_loaded_")}

    def transform(self, X: Any) -> np.ndarray:
        """Tokenize every text.

        Parameters
        ----------
        X : sequence of str or one-column 2-D input
            The texts.

        Returns
        -------
        ndarray of int64, shape (n_texts, 2 * max_length)
            Per text its token ids, then its attention mask; zeros for a
            missing text.
        """
        return super().transform(X)

    def __sklearn_tags__(self):
        """Declare text input and integer output."""
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []
        return tags

    def _feature_names(self) -> list[str]:
        width = max(3, len(str(self.max_length - 1)))
        return [f"{part}_{i:0{width}d}" for part in ("ids", "mask") for i in range(self.max_length)]

    def _extract_all(
        self, items: Sequence[Any], column: str | None, labels: Sequence[Any] | None = None
    ) -> np.ndarray:
        n, length = len(items), int(self.max_length)
        out = np.zeros((n, 2 * length), dtype=np.int64)
        rows, texts, failures = [], [], []
        for row, item in enumerate(items):
            if is_missing(item, text=True):
                continue
            try:
                texts.append(valid_text(_as_text(item)))
                rows.append(row)
            except Exception as exc:  # noqa: BLE001 - every item failure gets the same policy
                label = _label(labels, row)
                if self.on_error == "raise":
                    raise ItemError(column, row, describe_item(item), _reason(exc), label) from exc
                failures.append((row_name(row, label), describe_item(item), _reason(exc)))
        if texts:
            encoded = self._tokenizer()(
                texts,
                max_length=length,
                padding="max_length",
                truncation=True,
                return_attention_mask=True,
                return_token_type_ids=False,
                return_tensors="np",
            )
            out[rows, :length] = encoded["input_ids"]
            out[rows, length:] = encoded["attention_mask"]
        self._warn_failures(failures, n, column, became="missing texts (zero rows)")
        return out
