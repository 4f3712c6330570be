"""One call from a table's column roles to a fitted-ready multimodal pipeline.

:func:`make_multimodal_pipeline` builds what the README builds by hand: a
:class:`~sklearn.compose.ColumnTransformer` with one extractor per image,
audio and text column and one block each for the numeric and the
categorical columns, then a fusion network, in one
:class:`~sklearn.pipeline.Pipeline`. :class:`TfidfSVD` is the glue that
scikit-learn lacks for text in such a pipeline: its vectorizers have no
``set_output``, so a ``make_pipeline(TfidfVectorizer(), TruncatedSVD())``
branch makes ``ColumnTransformer(...).set_output(transform="pandas")`` raise,
and the fusion net would lose the ``name__`` prefixes that give it one tower
per block.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, PowerTransformer, RobustScaler, StandardScaler
from sklearn.utils.validation import check_is_fitted

from ._base import ItemWarning
from ._columns import MultimodalColumnTransformer
from ._items import (
    ON_ERROR_CHOICES,
    BadItem,
    ItemError,
    as_items,
    describe_item,
    index_labels,
    is_missing,
    row_name,
    valid_text,
)
from .audio import AudioFeatures
from .fusion import FusionClassifier, FusionRegressor
from .fusion.modules import FUSIONS
from .image import ImagePixels

__all__ = ["ROLES", "MultimodalColumnTransformer", "TfidfSVD", "make_multimodal_pipeline"]

#: The column roles of :func:`make_multimodal_pipeline`, in block order.
ROLES = ("image", "audio", "text", "numeric", "categorical")
_TASKS = {"classification": FusionClassifier, "regression": FusionRegressor}


class TfidfSVD(TransformerMixin, BaseEstimator):
    """TF-IDF then truncated SVD of one text column: a dense, named text block.

    The latent semantic analysis of
    ``make_pipeline(TfidfVectorizer(), TruncatedSVD(n_components))``, made
    fit for a multimodal ``ColumnTransformer``:

    - it supports ``set_output(transform="pandas")`` (scikit-learn's
      vectorizers do not), with output names ``svd_00``, ``svd_01``, ...;
    - it takes a 1-D sequence of texts or a one-column 2-D input, like the
      mmsk extractors;
    - a missing text (``None``, ``NaN``, ``pd.NA``, ``""``) gives a row of
      NaN, which the fusion estimators read as a missing modality; other
      non-text values (numbers read from a CSV file) are used as their
      ``str``; bytes are decoded as UTF-8;
    - a text it cannot use (bytes that are not UTF-8, a ``str`` with lone
      surrogates) is an :class:`~mmsk._items.ItemError` naming the column,
      the row and the item, or with ``on_error="nan"`` a NaN row (left out
      of the fit) and one warning with the count;
    - the width is ``min(n_components, vocabulary size, n_texts)``, so a
      small corpus gives a narrower block instead of an error.

    Parameters
    ----------
    n_components : int, default=64
        Largest number of SVD components (output columns).
    ngram_range : tuple of (int, int), default=(1, 1)
        Word n-grams of :class:`~sklearn.feature_extraction.text.TfidfVectorizer`.
    min_df : int or float, default=1
        As in :class:`~sklearn.feature_extraction.text.TfidfVectorizer`.
    max_df : int or float, default=1.0
        As in :class:`~sklearn.feature_extraction.text.TfidfVectorizer`.
    max_features : int or None, default=None
        Keep at most this many terms, the most frequent.
    sublinear_tf : bool, default=True
        Use ``1 + log(tf)`` instead of raw term counts.
    random_state : int, RandomState instance or None, default=None
        Seed of the randomized SVD.
    on_error : {"raise", "nan"}, default="raise"
        What to do with a text it cannot use: raise an
        :class:`~mmsk._items.ItemError`, or give its row NaN and warn once.

    Attributes
    ----------
    vectorizer_ : TfidfVectorizer
        The fitted vectorizer.
    svd_ : TruncatedSVD
        The fitted SVD.
    n_components_ : int
        Number of output columns.
    n_features_in_ : int
        Always 1.
    feature_names_in_ : ndarray of shape (1,)
        The column's name, when fitted on a one-column DataFrame.

    See Also
    --------
    mmsk.TokenSequences : Token ids for trainable text towers.
    make_multimodal_pipeline : Uses this transformer for text columns.

    Examples
    --------
    >>> from mmsk.compose import TfidfSVD
    >>> texts = ["a red car", "a blue car", None, "red roses", "blue sky"]
    >>> svd = TfidfSVD(n_components=3, random_state=0).set_output(transform="pandas")
    >>> out = svd.fit_transform(texts)
    >>> list(out.columns)
    ['svd_00', 'svd_01', 'svd_02']
    >>> bool(out.iloc[2].isna().all())
    True
    """

    def __init__(
        self,
        *,
        n_components=64,
        ngram_range=(1, 1),
        min_df=1,
        max_df=1.0,
        max_features=None,
        sublinear_tf=True,
        random_state=None,
        on_error="raise",
    ):
        self.n_components = n_components
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.max_df = max_df
        self.max_features = max_features
        self.sublinear_tf = sublinear_tf
        self.random_state = random_state
        self.on_error = on_error

    def _texts(self, X: Any) -> tuple[list[str], np.ndarray]:
        """Return the usable texts and which rows they are; apply the item policy."""
        items, column = as_items(X, what="texts")
        if column is None and hasattr(self, "feature_names_in_"):
            column = str(self.feature_names_in_[0])
        labels = index_labels(X)
        present = np.zeros(len(items), dtype=bool)
        texts: list[str] = []
        failures = []
        for row, item in enumerate(items):
            if is_missing(item, text=True):
                continue
            try:
                if isinstance(item, (bytes, bytearray, memoryview)):
                    try:
                        text = bytes(item).decode("utf-8")
                    except UnicodeDecodeError as exc:
                        raise BadItem(
                            f"bytes are not valid UTF-8 ({exc.reason} at byte {exc.start})"
                        ) from None
                else:
                    text = str(item)
                texts.append(valid_text(text))
                present[row] = True
            except BadItem as exc:
                label = None if labels is None else labels[row]
                if self.on_error == "raise":
                    raise ItemError(column, row, describe_item(item), str(exc), label) from None
                failures.append((row_name(row, label), describe_item(item), str(exc)))
        if failures:
            where = f"{column}: " if column is not None else ""
            row, item, reason = failures[0]
            warnings.warn(
                f"{where}{len(failures)} of {len(items)} texts could not be read and became "
                f"NaN rows (first: row {row} ({item}): {reason})",
                ItemWarning,
                stacklevel=3,
            )
        return texts, present

    def fit(self, X: Any, y: Any = None) -> TfidfSVD:
        """Learn the vocabulary, the IDF weights and the SVD components.

        Parameters
        ----------
        X : sequence of str or one-column 2-D input
            The training texts.
        y : None
            Ignored.

        Returns
        -------
        self : TfidfSVD
            The fitted transformer.
        """
        self.fit_transform(X)
        return self

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit to ``X`` and return its text block.

        Parameters
        ----------
        X : sequence of str or one-column 2-D input
            The training texts.
        y : None
            Ignored.

        Returns
        -------
        ndarray of shape (n_texts, n_components_)
            The SVD coordinates, NaN rows for missing texts.
        """
        if not isinstance(self.n_components, Integral) or self.n_components < 1:
            raise ValueError(f"n_components must be an int >= 1, got {self.n_components!r}")
        if self.on_error not in ON_ERROR_CHOICES:
            raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {self.on_error!r}")
        self.n_features_in_ = 1
        if hasattr(X, "columns"):
            self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        texts, present = self._texts(X)
        if not texts:
            raise ValueError("TfidfSVD: every text is missing; nothing to learn a vocabulary from")
        self.vectorizer_ = TfidfVectorizer(
            ngram_range=self.ngram_range,
            min_df=self.min_df,
            max_df=self.max_df,
            max_features=self.max_features,
            sublinear_tf=self.sublinear_tf,
        )
        tfidf = self.vectorizer_.fit_transform(texts)
        self.n_components_ = int(min(self.n_components, *tfidf.shape))
        self.svd_ = TruncatedSVD(self.n_components_, random_state=self.random_state)
        return self._fill(self.svd_.fit_transform(tfidf), present)

    def transform(self, X: Any) -> np.ndarray:
        """Project texts on the learned components.

        Parameters
        ----------
        X : sequence of str or one-column 2-D input
            The texts.

        Returns
        -------
        ndarray of shape (n_texts, n_components_)
            The SVD coordinates, NaN rows for missing texts.
        """
        check_is_fitted(self, "svd_")
        texts, present = self._texts(X)
        if not texts:
            return self._fill(np.empty((0, self.n_components_)), present)
        return self._fill(self.svd_.transform(self.vectorizer_.transform(texts)), present)

    def _fill(self, block: np.ndarray, present: np.ndarray) -> np.ndarray:
        out = np.full((len(present), self.n_components_), np.nan, dtype=np.float32)
        out[present] = block
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Return the names of the output columns, ``svd_00``, ``svd_01``, ...

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored; present for API compatibility.

        Returns
        -------
        ndarray of str objects
            One name per component.
        """
        check_is_fitted(self, "svd_")
        width = max(2, len(str(self.n_components_ - 1)))
        return np.asarray([f"svd_{i:0{width}d}" for i in range(self.n_components_)], dtype=object)

    def __sklearn_tags__(self):  # noqa: D105
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.input_tags.allow_nan = True
        return tags


def _columns(role: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    elif not isinstance(value, Iterable):
        raise ValueError(
            f"{role} must be a column name or a sequence of column names, got {value!r}"
        )
    columns = list(value)
    for col in columns:
        if not isinstance(col, str):
            raise ValueError(
                f"{role}: column names must be str, got {col!r} ({type(col).__name__}); "
                "ColumnTransformer would read an int as a position"
            )
    seen = set()
    for col in columns:
        if col in seen:
            raise ValueError(f"{role}: column {col!r} is listed twice")
        seen.add(col)
    return columns


def _check_roles(roles: dict[str, list[str]]) -> None:
    if not any(roles.values()):
        raise ValueError(
            "no feature columns: give at least one of " + ", ".join(ROLES) + " (column names)"
        )
    owner: dict[str, str] = {}
    for role, columns in roles.items():
        for col in columns:
            if col in owner:
                raise ValueError(
                    f"column {col!r} has two roles, {owner[col]} and {role}; give it one"
                )
            owner[col] = role


def _block_name(column: str, taken: set[str]) -> str:
    # ColumnTransformer reserves "__" (parameter paths) and its own parameter names;
    # the fusion net splits output names at the first "__" to find the blocks.
    base = re.sub(r"_+", "_", column).strip("_") or "block"
    name, k = base, 2
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


def _memories(memory: Any) -> tuple[Any, Any]:
    """Split ``memory`` into the extractors' content cache and the Pipeline's step cache."""
    if memory is None or not isinstance(memory, (str, Path)):
        return memory, memory
    return str(memory), str(Path(memory) / "pipeline")


def make_multimodal_pipeline(
    *,
    image: str | Iterable[str] = (),
    audio: str | Iterable[str] = (),
    text: str | Iterable[str] = (),
    numeric: str | Iterable[str] = (),
    categorical: str | Iterable[str] = (),
    task: str = "classification",
    fusion: str = "concat",
    memory: Any = None,
    n_jobs: int | None = None,
    random_state: Any = None,
    **fusion_params: Any,
) -> Pipeline:
    """Build a multimodal pipeline from the roles of a table's columns.

    The pipeline has two steps. ``"features"`` is a
    :class:`MultimodalColumnTransformer` (a
    :class:`~sklearn.compose.ColumnTransformer`) with pandas output, one
    transformer (one *block*) per

    ================  =========================================================
    role              block (named after the column, or as shown)
    ================  =========================================================
    image column      :class:`~mmsk.ImagePixels` ``(size=(32, 32), mode="RGB")``
    audio column      :class:`~mmsk.AudioFeatures` ``(sr=16000)``
    text column       :class:`TfidfSVD` ``(n_components=64)``
    numeric columns   ``"numeric"``: :class:`~sklearn.impute.SimpleImputer`
                      ``(strategy="median", add_indicator=True)``,
                      :class:`~sklearn.preprocessing.RobustScaler`,
                      :class:`~sklearn.preprocessing.PowerTransformer`
                      ``(standardize=False)`` (Yeo-Johnson), then
                      :class:`~sklearn.preprocessing.StandardScaler`
    categorical cols  ``"categorical"``: :class:`~sklearn.preprocessing.OneHotEncoder`
                      ``(handle_unknown="ignore")``
    ================  =========================================================

    and ``"fusion"`` is a :class:`~mmsk.FusionClassifier` or
    :class:`~mmsk.FusionRegressor`, which finds the blocks from the
    ``block__`` prefixes of the output columns and gives each its own tower.
    Other columns of the input (an id, the target) are dropped.

    The defaults are meant to work on any data, not to be best on yours:

    - 32 x 32 RGB pixels (3,072 values, CIFAR's size) keep colour and are
      small enough for a tower of fully connected layers; for grey images
      use ``mode="L"``, for photos where texture matters try
      :class:`~mmsk.ImageFeatures`.
    - 16 kHz is the usual rate of speech data; every clip is resampled to
      it, so clips of mixed rates give comparable features. Use 22050 or
      more for music.
    - Text goes through TF-IDF and a truncated SVD (latent semantic
      analysis) rather than a sparse TF-IDF block: the dense block carries
      names in pandas output, and 64 components keep its tower small.
      A missing text is a missing modality.
    - A missing number is imputed by the median and flagged by an indicator
      column; a missing category is a category of its own, and a category
      unseen in training gives an all-zero row.
    - Numbers go through a Yeo-Johnson power transform before they are
      standardised, so that a heavy-tailed column (counts, prices, votes)
      does not put most rows in a narrow band and a few far out. The
      transform is fitted on median-centred, IQR-scaled values: on raw
      values far from zero, such as years, its fitted exponent is extreme
      (-3.2 on the years 2000-2019) and squeezes the column into the last
      digits of a float. Against plain standardisation it lowered the
      default network's test log-loss on all five tasks of
      ``benchmarks/eval_tabular_text.py`` (``docs/fusion.md``). For plain
      z-scores set ``features__numeric__robustscaler`` and
      ``features__numeric__powertransformer`` to ``"passthrough"``.

    Change any of them on the result with ``set_params``, e.g.
    ``model.set_params(features__photo__mode="L")`` for a column ``photo``,
    or ``features__caption__n_components=16``; or replace a transformer with
    ``set_params(features__photo=ImageFeatures())``.

    Parameters
    ----------
    image : str or sequence of str, default=()
        Columns of image items (paths, bytes, arrays); one block each.
    audio : str or sequence of str, default=()
        Columns of audio items (paths, bytes, waveforms); one block each.
    text : str or sequence of str, default=()
        Columns of free text; one block each.
    numeric : str or sequence of str, default=()
        Numeric columns; one block, ``"numeric"``, together.
    categorical : str or sequence of str, default=()
        Categorical columns (strings or codes); one block, ``"categorical"``.
    task : {"classification", "regression"}, default="classification"
        Which fusion estimator ends the pipeline.
    fusion : {"concat", "late", "gated", "attention", "tensor"}, default="concat"
        The fusion layer; see ``docs/fusion.md``.
    memory : None, str, path-like or joblib.Memory, default=None
        Cache. The extractors cache per-item features by content there, and
        the pipeline caches its fitted ``"features"`` step (in the
        ``pipeline`` subfolder of a path), so refitting with other network
        parameters (e.g. in a grid search) extracts nothing again.
    n_jobs : int or None, default=None
        Joblib workers of the image and audio extractors, and CPU threads of
        the network (see the fusion estimators' ``n_jobs``).
    random_state : int, RandomState instance or None, default=None
        Seeds the network (weights, shuffling, splits) and the text SVD.
    **fusion_params
        Further parameters of the fusion estimator, e.g. ``max_epochs=50``,
        ``hidden_units=32``, ``early_stopping=True``.

    Returns
    -------
    sklearn.pipeline.Pipeline
        Steps ``"features"`` and ``"fusion"``, not fitted.

    Raises
    ------
    ValueError
        If no column is given, a column has two roles or is listed twice, a
        column name is not a ``str``, or ``task``, ``fusion`` or a name in
        ``fusion_params`` is unknown.

    See Also
    --------
    mmsk.FusionClassifier : The network, and how it finds the blocks.
    TfidfSVD : The text block.

    Notes
    -----
    Block names are the column names with runs of underscores collapsed and
    outer underscores stripped (``"my__col"`` -> ``"my_col"``), made unique
    with a suffix (``"numeric_2"``) where they would clash with
    ``"numeric"``, ``"categorical"``, each other, or a parameter name of
    ``ColumnTransformer``. ``model.named_steps["features"].transformers``
    shows the mapping.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from mmsk.compose import make_multimodal_pipeline
    >>> rng = np.random.RandomState(0)
    >>> df = pd.DataFrame({
    ...     "review": rng.choice(["great value", "awful, broke", "works fine"], 40),
    ...     "price": rng.uniform(5, 50, 40),
    ...     "shop": rng.choice(["north", "south"], 40),
    ... })
    >>> y = df["review"].str.contains("great|fine")
    >>> model = make_multimodal_pipeline(text="review", numeric="price",
    ...                                  categorical="shop", max_epochs=5, random_state=0)
    >>> [name for name, _, _ in model.named_steps["features"].transformers]
    ['review', 'numeric', 'categorical']
    >>> model.fit(df, y).named_steps["fusion"].modalities_
    ['review', 'numeric', 'categorical']
    >>> model.predict(df.head(3)).shape
    (3,)
    """
    roles = {
        "image": _columns("image", image),
        "audio": _columns("audio", audio),
        "text": _columns("text", text),
        "numeric": _columns("numeric", numeric),
        "categorical": _columns("categorical", categorical),
    }
    _check_roles(roles)
    if task not in _TASKS:
        raise ValueError(f"task must be one of {tuple(_TASKS)}, got {task!r}")
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    estimator_class = _TASKS[task]
    allowed = set(estimator_class().get_params(deep=False)) - {"fusion", "n_jobs", "random_state"}
    unknown = sorted(set(fusion_params) - allowed)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) of {estimator_class.__name__}: {', '.join(unknown)}; "
            f"valid ones are {', '.join(sorted(allowed))}"
        )

    item_memory, pipeline_memory = _memories(memory)
    taken = set(ColumnTransformer([]).get_params(deep=False))
    shared = [r for r in ("numeric", "categorical") if roles[r]]
    taken.update(shared)  # the shared blocks keep their plain names
    transformers = []
    for col in roles["image"]:
        extractor = ImagePixels(size=(32, 32), mode="RGB", memory=item_memory, n_jobs=n_jobs)
        transformers.append((_block_name(col, taken), extractor, col))
    for col in roles["audio"]:
        extractor = AudioFeatures(sr=16000, memory=item_memory, n_jobs=n_jobs)
        transformers.append((_block_name(col, taken), extractor, col))
    for col in roles["text"]:
        transformers.append((_block_name(col, taken), TfidfSVD(random_state=random_state), col))
    if roles["numeric"]:
        numbers = make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True),
            # Yeo-Johnson on raw values far from 0 (years) degenerates: shift and scale first
            RobustScaler(),
            PowerTransformer(standardize=False),  # a shape, not a scale
            StandardScaler(),  # apart, so that it takes sample_weight
        )
        transformers.append(("numeric", numbers, roles["numeric"]))
    if roles["categorical"]:
        codes = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        transformers.append(("categorical", codes, roles["categorical"]))

    features = MultimodalColumnTransformer(transformers, sparse_threshold=0.0)
    features.set_output(transform="pandas")
    network = estimator_class(
        fusion=fusion, n_jobs=n_jobs, random_state=random_state, **fusion_params
    )
    return Pipeline([("features", features), ("fusion", network)], memory=pipeline_memory)
