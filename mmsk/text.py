"""Text extractors: token ids for trainable text towers, and sentence embeddings.

Tokenizing follows scikit-learn's :class:`~sklearn.feature_extraction.text.CountVectorizer`
exactly (same ``lowercase``, ``token_pattern`` and ``tokenizer``), so a text
gives the same tokens here as in a bag-of-words pipeline.
:class:`SentenceEmbedder` wraps sentence-transformers (extra ``text``),
imported on first use only.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.utils.validation import check_is_fitted

from ._base import BadItem, ItemTransformer, _label, _reason
from ._docstrings import fill_doc
from ._items import ItemError, describe_item, is_missing, row_name, valid_text
from ._sentence import SentenceEmbedder

__all__ = ["OOV_ID", "PAD_ID", "SentenceEmbedder", "TokenSequences"]

#: Id of padding: the positions after (or before) a text's tokens, and every
#: position of a missing text.
PAD_ID = 0
#: Id of a token that is not in the vocabulary (out of vocabulary).
OOV_ID = 1
_SIDES = ("post", "pre")


@fill_doc
class TokenSequences(ItemTransformer):
    r"""Texts as fixed-length sequences of integer token ids.

    ``fit`` learns a vocabulary from the training texts; ``transform``
    turns each text into ``max_len`` ids, for the trainable text towers
    (embeddings, GRU, transformer) of the fusion estimators.

    - Tokens come from scikit-learn's
      :class:`~sklearn.feature_extraction.text.CountVectorizer` analyzer
      built with ``lowercase``, ``token_pattern`` and ``tokenizer``.
    - The vocabulary holds the tokens found in at least ``min_df`` texts,
      most frequent first (by total count over the training texts, as
      ``CountVectorizer(max_features=...)`` ranks them; ties in
      alphabetical order), cut so that it has at most ``max_tokens`` ids
      including the two reserved ones. The first token gets id 2.
    - Id 0 (``PAD_ID``) is padding, id 1 (``OOV_ID``) a token that is not
      in the vocabulary.
    - A missing text (``None``, ``NaN``, ``pd.NA``, ``""``), and a text with
      no tokens, gives a row of padding only: integers cannot be NaN, so the
      fusion net reads an all-zero row as a missing text.

    Items are ``str``, or ``bytes`` decoded as UTF-8. Any other item
    (a number, a list, ...), bytes that are not UTF-8 and a ``str`` that is
    not valid Unicode (lone surrogates) are errors, or with
    ``on_error="nan"`` all-padding rows.

    Parameters
    ----------
    max_len : int, default=64
        Number of ids per text (the output width).
    max_tokens : int or None, default=20000
        Largest number of ids, the reserved 0 and 1 included; the least
        frequent tokens are left out. At least 3. None keeps every token.
    min_df : int or float, default=1
        Keep the tokens that occur in at least this many training texts;
        a float in [0.0, 1.0] is a proportion of the (non-missing) texts,
        as in ``CountVectorizer``.
    lowercase : bool, default=True
        Lowercase the texts before tokenizing.
    token_pattern : str, default=r"(?u)\b\w\w+\b"
        Regular expression of a token, used when ``tokenizer`` is None: by
        default words of two or more letters or digits, punctuation
        dropped.
    tokenizer : callable or None, default=None
        Function from a (lowercased) string to a list of tokens; overrides
        ``token_pattern``.
    padding : {"post", "pre"}, default="post"
        Put the padding after (``"post"``) or before (``"pre"``) the ids of
        a text shorter than ``max_len``.
    truncating : {"post", "pre"}, default="post"
        For a text longer than ``max_len``: keep its first ``max_len``
        tokens (``"post"``, drop the end) or its last ones (``"pre"``).
    on_error : {"raise", "nan"}, default="raise"
        What to do with an item that is not a text (wrong type, bytes that
        are not UTF-8, lone surrogates), or that ``tokenizer`` refuses
        (raises on). ``"raise"`` raises an
        :class:`~mmsk._items.ItemError` naming the column, the row and the
        item; ``"nan"`` gives that row padding only and warns once, in
        ``transform``, with the number of such rows (``fit`` skips them).

    Attributes
    ----------
    vocabulary_ : dict of str to int
        Token to id, in id order (2, 3, ...).
    vocab_size_ : int
        Number of ids, the reserved 0 and 1 included: ``len(vocabulary_) + 2``.
        The size of an embedding table over the output.
    output_shape_ : tuple of int
        ``(max_len,)``.
    n_features_in_ : int
        Always 1: one column of texts.
    feature_names_in_ : ndarray of shape (1,)
        The column name, when fitted on a DataFrame.
    n_features_out_ : int
        ``max_len``; the output names are ``tok_000``, ``tok_001``, ...

    See Also
    --------
    sklearn.feature_extraction.text.CountVectorizer : The same tokens, counted.

    Examples
    --------
    >>> from mmsk import TokenSequences
    >>> texts = ["The cat sat.", "The dog!", None]
    >>> tokens = TokenSequences(max_len=4).fit(texts)
    >>> tokens.vocabulary_
    {'the': 2, 'cat': 3, 'dog': 4, 'sat': 5}
    >>> tokens.transform(["the cat ran", None])
    array([[2, 3, 1, 0],
           [0, 0, 0, 0]])
    >>> tokens.decode([[2, 3, 1, 0]])
    [['the', 'cat', '<oov>']]
    """

    _what = "texts"
    _text_items = True
    _output_dtype = np.int64

    def __init__(
        self,
        *,
        max_len=64,
        max_tokens=20000,
        min_df=1,
        lowercase=True,
        token_pattern=r"(?u)\b\w\w+\b",
        tokenizer=None,
        padding="post",
        truncating="post",
        on_error="raise",
    ):
        self.max_len = max_len
        self.max_tokens = max_tokens
        self.min_df = min_df
        self.lowercase = lowercase
        self.token_pattern = token_pattern
        self.tokenizer = tokenizer
        self.padding = padding
        self.truncating = truncating
        self.on_error = on_error

    # -- parameters ----------------------------------------------------------
    def _check_params(self) -> None:
        if not _is_int(self.max_len) or self.max_len < 1:
            raise ValueError(f"max_len must be an int >= 1, got {self.max_len!r}")
        if self.max_tokens is not None and (not _is_int(self.max_tokens) or self.max_tokens < 3):
            raise ValueError(
                "max_tokens must be None or an int >= 3 (ids 0 and 1 are reserved), "
                f"got {self.max_tokens!r}"
            )
        min_df = self.min_df
        if _is_int(min_df):
            ok = min_df >= 1
        else:
            ok = isinstance(min_df, Real) and not isinstance(min_df, bool) and 0 <= min_df <= 1
        if not ok:
            raise ValueError(
                f"min_df must be an int >= 1 or a float in [0.0, 1.0], got {self.min_df!r}"
            )
        if not isinstance(self.lowercase, (bool, np.bool_)):
            raise ValueError(f"lowercase must be a bool, got {self.lowercase!r}")
        if self.tokenizer is not None and not callable(self.tokenizer):
            raise ValueError(f"tokenizer must be callable or None, got {self.tokenizer!r}")
        if self.tokenizer is None:
            if not isinstance(self.token_pattern, str):
                raise ValueError(f"token_pattern must be a str, got {self.token_pattern!r}")
            try:
                groups = re.compile(self.token_pattern).groups
            except re.error as exc:
                raise ValueError(f"token_pattern is not a valid regular expression: {exc}") from exc
            if groups > 1:
                raise ValueError(
                    "token_pattern has more than 1 capturing group; only one may be captured, "
                    f"got {self.token_pattern!r}"
                )
        for name in ("padding", "truncating"):
            if getattr(self, name) not in _SIDES:
                raise ValueError(f"{name} must be one of {_SIDES}, got {getattr(self, name)!r}")

    def _analyzer(self) -> Callable[[Any], list[str]]:
        return CountVectorizer(
            lowercase=bool(self.lowercase),
            token_pattern=self.token_pattern if self.tokenizer is None else None,
            tokenizer=self.tokenizer,
        ).build_analyzer()

    # -- scikit-learn API ----------------------------------------------------
    def _fit_items(self, items: Any, column: str | None, labels: Any = None) -> None:
        """Learn the vocabulary of the training texts (missing ones are skipped)."""
        analyze = self._analyzer()
        doc_freq: Counter = Counter()
        counts: Counter = Counter()
        n_docs = 0
        for row, item in enumerate(items):
            tokens = self._tokens(analyze, item, row, column, [], labels)
            if tokens is None:
                continue
            n_docs += 1
            counts.update(tokens)
            doc_freq.update(set(tokens))
        threshold = self.min_df if _is_int(self.min_df) else self.min_df * n_docs
        kept = sorted(
            (token for token, df in doc_freq.items() if df >= threshold),
            key=lambda token: (-counts[token], token),
        )
        if not kept:
            raise ValueError(
                "empty vocabulary: no token of the training texts is kept "
                + (f"(min_df={self.min_df!r} is too high)" if doc_freq else "(no tokens found)")
            )
        if self.max_tokens is not None:
            kept = kept[: self.max_tokens - 2]
        self.vocabulary_ = {token: i for i, token in enumerate(kept, start=2)}
        self.vocab_size_ = len(kept) + 2
        self.output_shape_ = (int(self.max_len),)

    def transform(self, X: Any) -> np.ndarray:
        """Turn every text into ``max_len`` token ids.

        Parameters
        ----------
        X : sequence of str or one-column 2-D input
            The texts.

        Returns
        -------
        ndarray of int64, shape (n_texts, max_len)
            One row per text: vocabulary ids, 1 for out-of-vocabulary
            tokens, 0 for padding; all zeros for a missing text.
        """
        return super().transform(X)

    def decode(self, ids: Any, *, oov: str = "<oov>") -> list[list[str]]:
        """Turn rows of ids back into tokens, padding dropped.

        Parameters
        ----------
        ids : array-like of int, shape (n_texts, max_len)
            Output of :meth:`transform`.
        oov : str, default="<oov>"
            What to show for the out-of-vocabulary id.

        Returns
        -------
        list of list of str
            The tokens of each row.

        Examples
        --------
        >>> from mmsk import TokenSequences
        >>> tokens = TokenSequences(max_len=3).fit(["a bb cc", "bb"])
        >>> tokens.decode(tokens.transform(["cc bb dd"]))
        [['cc', 'bb', '<oov>']]
        """
        check_is_fitted(self)
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.dtype.kind not in "ui":
            raise ValueError(
                f"ids must be a 2-D array of ints, got {ids.dtype} of shape {ids.shape}"
            )
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size_):
            raise ValueError(f"ids must lie in [0, {self.vocab_size_}), the vocabulary's ids")
        words = [""] * self.vocab_size_
        words[OOV_ID] = oov
        for token, i in self.vocabulary_.items():
            words[i] = token
        return [[words[i] for i in row if i != PAD_ID] for row in ids.tolist()]

    def __sklearn_tags__(self):
        """Declare text input and integer output."""
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []
        return tags

    # -- the work ------------------------------------------------------------
    def _feature_names(self) -> list[str]:
        width = max(3, len(str(self.max_len - 1)))
        return [f"tok_{i:0{width}d}" for i in range(self.max_len)]

    def _tokens(
        self,
        analyze: Callable[[Any], list[str]],
        item: Any,
        row: int,
        column: str | None,
        failures: list[tuple[str, str, str]],
        labels: Sequence[Any] | None,
    ) -> list[str] | None:
        """Tokens of one item; None for a missing or (with on_error="nan") bad one."""
        if is_missing(item, text=True):
            return None
        try:
            if isinstance(item, (bytearray, memoryview)):
                item = bytes(item)
            if isinstance(item, bytes):
                try:
                    item = item.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise BadItem(
                        f"bytes are not valid UTF-8 ({exc.reason} at byte {exc.start})"
                    ) from exc
            if not isinstance(item, str):
                raise BadItem(
                    f"unsupported item type {type(item).__name__}; expected a str (or UTF-8 bytes)"
                )
            return list(analyze(valid_text(item)))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - every item failure gets the same policy
            reason = _reason(exc)
            label = _label(labels, row)
            if self.on_error == "raise":
                raise ItemError(column, row, describe_item(item), reason, label) from exc
            failures.append((row_name(row, label), describe_item(item), reason))
            return None

    def _extract_all(
        self, items: Sequence[Any], column: str | None, labels: Sequence[Any] | None = None
    ) -> np.ndarray:
        n, max_len = len(items), self.max_len
        out = np.full((n, max_len), PAD_ID, dtype=np.int64)
        analyze = self._analyzer()
        vocabulary = self.vocabulary_
        failures: list[tuple[str, str, str]] = []
        for row, item in enumerate(items):
            tokens = self._tokens(analyze, item, row, column, failures, labels)
            if not tokens:
                continue
            ids = [vocabulary.get(token, OOV_ID) for token in tokens]
            if len(ids) > max_len:
                ids = ids[:max_len] if self.truncating == "post" else ids[-max_len:]
            if self.padding == "post":
                out[row, : len(ids)] = ids
            else:
                out[row, max_len - len(ids) :] = ids
        self._warn_failures(failures, n, column, became="all-padding rows")
        return out


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))
