"""CrossModalRetriever: one shared embedding space for two modalities, learned from pairs.

The estimator finds the modality blocks as the fusion estimators do
(:mod:`mmsk.fusion.blocks`), puts a tower on each of the two named
modalities (:mod:`mmsk.fusion.contrastive`), and trains them with CLIP's
symmetric InfoNCE loss through a skorch net (``net_``), seeded, with early
stopping on held-out pairs (input and plumbing in :mod:`mmsk.fusion._pairs`).
:func:`recall_at_k` and :func:`mean_reciprocal_rank` (from
:mod:`mmsk.fusion.scoring`) are scorers for ``GridSearchCV(scoring=...)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import Tags, check_random_state
from sklearn.utils.validation import (
    _check_feature_names_in,
    check_is_fitted,
)
from skorch import NeuralNet
from skorch.dataset import ValidSplit

from mmsk import _portable
from mmsk._torch import draw_seed, resolve_device, torch_seeded, torch_threads
from mmsk.fusion._core import (
    PREDICT_BATCH_SIZE,
    _check_fraction,
    _check_int,
)
from mmsk.fusion._data import (
    BatchIterator,
    FusionDataset,
    mask_blocks,
)
from mmsk.fusion._pairs import PairsMixin
from mmsk.fusion._retrieval_state import retriever_from_portable, retriever_to_portable
from mmsk.fusion.blocks import resolve_towers
from mmsk.fusion.contrastive import DualEncoder, InfoNCELoss, top_k
from mmsk.fusion.encoders import SEQUENCE_KINDS
from mmsk.fusion.scoring import _ranks, mean_reciprocal_rank, recall_at_k

__all__ = ["CrossModalRetriever", "mean_reciprocal_rank", "recall_at_k"]


class CrossModalRetriever(TransformerMixin, PairsMixin, BaseEstimator):
    """Learn one embedding space for two modalities from paired rows (CLIP-style).

    Each row of ``X`` is a pair: the ``query`` modality's block and the
    ``target`` modality's block of the same item (a spoken digit and an
    image of it, a caption and its photo). One tower per modality (any
    tower of the fusion estimators, over any numeric block: pixels,
    spectrograms, token ids, pretrained embeddings) and a linear projection
    map each block onto the unit sphere of a shared ``embed_dim``-space,
    trained with CLIP's symmetric InfoNCE loss and a learned temperature.
    The blocks are found as in :class:`~mmsk.FusionClassifier`: a dict of
    2-D arrays, a DataFrame with ``name__`` column prefixes (a
    ``ColumnTransformer`` with pandas output), or ``modalities=``; other
    blocks are ignored (with ``modalities=``, every column must still be
    in one of its modalities, as for the fusion estimators).

    Parameters
    ----------
    query, target : str or None, default=None
        The two modalities: ``query`` is what one searches with, ``target``
        what is searched (the gallery); the space is shared, so both
        directions work. None: with exactly two blocks in ``X``, the first
        (resp. the other) one.
    modalities : dict or None, default=None
        Explicit blocks for a 2-D input, as for the fusion estimators:
        name -> column names, a prefix, a slice, positions or a mask.
    towers : None, str, (str, dict) or dict, default=None
        The tower of each modality, as for the fusion estimators (``"mlp"``,
        ``"conv"``, ``"gru"``, ``"lstm"``, ``"transformer"``, with
        options); None: an MLP on both.
    hidden_units : int, default=256
        Width of the towers' hidden layers and outputs.
    n_layers : int, default=2
        Layers per MLP tower.
    embed_dim : int, default=64
        Width of the shared space.
    dropout : float, default=0.1
        Dropout in the towers.
    norm : {"batch", "layer"} or None, default="batch"
        Normalisation in the towers.
    standardize : bool, str or dict, default="auto"
        Input scaling per block, as for the fusion estimators (``"auto"``:
        dense non-binary columns standardised).
    temperature : float, default=0.07
        Initial softmax temperature (CLIP's).
    learn_temperature : bool, default=True
        Train the temperature with the towers (clipped at 0.01, as CLIP).
    lr : float, default=1e-3
        Learning rate.
    weight_decay : float, default=0.01
        Weight decay of the optimizer.
    lr_schedule : {"plateau", "cosine"} or None, default="plateau"
        Learning-rate schedule, as for the fusion estimators.
    max_epochs : int, default=100
        Most training epochs.
    batch_size : int, default=256
        Pairs per batch: the negatives of each pair are the other pairs of
        its batch, so larger batches make a harder task.
    optimizer : torch optimizer class, default=torch.optim.AdamW
        The optimizer.
    early_stopping : bool or "auto", default="auto"
        Hold out ``validation_fraction`` of the pairs and stop when their
        loss (the whole held-out set as one batch) has not improved by
        ``tol`` for ``n_iter_no_change`` epochs, keeping the best weights.
        ``"auto"``: on when at least 20 pairs would be held out.
    validation_fraction : float or None, default=None
        Fraction of pairs held out; None: 0.1 when stopping early, else none.
    n_iter_no_change : int, default=10
        Patience of early stopping.
    tol : float, default=1e-4
        Smallest improvement of the validation loss that counts.
    device : "auto", str or torch.device, default="auto"
        Where to train: ``"auto"`` picks CUDA when available.
    n_jobs : int or None, default=None
        torch CPU threads (None: torch's setting).
    random_state : int, RandomState instance or None, default=None
        Seeds the weights, the shuffling and the validation split.
    verbose : int, default=0
        skorch's per-epoch table when > 0.

    Attributes
    ----------
    query_, target_ : str
        The two modalities.
    modalities_ : list of str
        ``[query_, target_]``.
    modality_dims_ : dict of str to int
        Width of each block.
    towers_ : dict of str to (str, dict)
        Tower kind and options of each modality.
    temperature_ : float
        The temperature at the end of training.
    early_stopping_ : bool
        Whether early stopping was on.
    net_ : skorch.NeuralNet
        The trained net (module :class:`~mmsk.fusion.contrastive.DualEncoder`,
        criterion :class:`~mmsk.fusion.contrastive.InfoNCELoss`), with its
        ``history``.
    device_ : str or torch.device
        The device of the net.
    n_features_in_ : int
        Number of input features (all blocks).
    feature_names_in_ : ndarray of str
        Column names of a DataFrame ``X``.

    See Also
    --------
    recall_at_k : Scorer: share of queries with a relevant match in the top k.
    mean_reciprocal_rank : Scorer: mean of 1 / rank of the first relevant match.
    mmsk.FusionClassifier.transform : A fused embedding of all modalities.

    Notes
    -----
    With ``y`` given to ``fit``, pairs with equal labels are all positives
    of each other (within a batch): the space then gathers same-label items
    of both modalities, so a query retrieves any item of its class, not only
    its own partner. Without ``y`` only a row's own partner is positive.
    The scorers follow the same rule: relevant means same label when ``y``
    is given to the scorer, else the same row.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk import CrossModalRetriever
    >>> rng = np.random.RandomState(0)
    >>> z = rng.normal(size=(200, 4))
    >>> X = {"audio": z @ rng.normal(size=(4, 12)), "image": np.tanh(z @ rng.normal(size=(4, 20)))}
    >>> ret = CrossModalRetriever(hidden_units=32, embed_dim=8, batch_size=32, max_epochs=10,
    ...                           n_jobs=1, random_state=0)  # one torch thread: small net
    >>> ret.fit(X).modalities_
    ['audio', 'image']
    >>> ret.transform(X, modality="image").shape
    (200, 8)
    >>> indices, scores = ret.rank({"audio": X["audio"][:3]}, {"image": X["image"]}, k=5)
    >>> indices.shape, bool((np.diff(scores, axis=1) <= 0).all())
    ((3, 5), True)
    >>> bool(ret.score(X) > 0.2)  # recall@1 of the pairs; chance is 1 / 200
    True
    """

    #: What the scorers of :mod:`mmsk.fusion.scoring` look for.
    _retrieval_space = True

    def __init__(
        self,
        *,
        query: str | None = None,
        target: str | None = None,
        modalities: Mapping[str, Any] | None = None,
        towers: Any = None,
        hidden_units: int = 256,
        n_layers: int = 2,
        embed_dim: int = 64,
        dropout: float = 0.1,
        norm: str | None = "batch",
        standardize: bool | str | Mapping[str, Any] = "auto",
        temperature: float = 0.07,
        learn_temperature: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        lr_schedule: str | None = "plateau",
        max_epochs: int = 100,
        batch_size: int = 256,
        optimizer: type = torch.optim.AdamW,
        early_stopping: bool | str = "auto",
        validation_fraction: float | None = None,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
        device: Any = "auto",
        n_jobs: int | None = None,
        random_state: Any = None,
        verbose: int = 0,
    ) -> None:
        self.query = query
        self.target = target
        self.modalities = modalities
        self.towers = towers
        self.hidden_units = hidden_units
        self.n_layers = n_layers
        self.embed_dim = embed_dim
        self.dropout = dropout
        self.norm = norm
        self.standardize = standardize
        self.temperature = temperature
        self.learn_temperature = learn_temperature
        self.lr = lr
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # -- parameters and input ----------------------------------------------------------------

    def _check_params(self) -> None:
        for name in ("hidden_units", "n_layers", "embed_dim", "max_epochs", "n_iter_no_change"):
            _check_int(name, getattr(self, name), 1)
        if self.batch_size != -1:
            _check_int("batch_size", self.batch_size, 2)
        if self.n_jobs is not None and self.n_jobs != -1:
            _check_int("n_jobs", self.n_jobs, 1)
        _check_fraction("dropout", self.dropout)
        if self.validation_fraction is not None:
            _check_fraction("validation_fraction", self.validation_fraction, open_low=True)
        for name in ("lr", "temperature"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real) or not value > 0:
                raise ValueError(f"{name} must be a float > 0, got {value!r}")
        for name in ("weight_decay", "tol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real) or not value >= 0:
                raise ValueError(f"{name} must be a float >= 0, got {value!r}")
        if not (isinstance(self.early_stopping, bool) or self.early_stopping == "auto"):
            raise ValueError(
                f"early_stopping must be True, False or 'auto', got {self.early_stopping!r}"
            )
        if self.lr_schedule not in (None, "plateau", "cosine"):
            raise ValueError(
                f"lr_schedule must be 'plateau', 'cosine' or None, got {self.lr_schedule!r}"
            )
        if self.norm not in ("batch", "layer", None):
            raise ValueError(f"norm must be 'batch', 'layer' or None, got {self.norm!r}")
        for name in ("query", "target"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a modality name (str) or None, got {value!r}")

    def fit(self, X: Any, y: Any = None) -> CrossModalRetriever:
        """Learn the shared space from paired rows.

        Parameters
        ----------
        X : dict of 2-D arrays, DataFrame, array-like or sparse matrix
            Paired rows: both modalities of every row (a row missing one,
            all-NaN, is an error), numeric.
        y : array-like of shape (n_samples,) or None, default=None
            Optional labels: rows with equal labels are positives of each
            other (e.g. the digit), beyond each row's own partner.

        Returns
        -------
        self : CrossModalRetriever
            The fitted estimator.

        Examples
        --------
        >>> import numpy as np
        >>> from mmsk import CrossModalRetriever
        >>> X = np.random.RandomState(0).normal(size=(40, 5))
        >>> ret = CrossModalRetriever(modalities={"a": slice(0, 2), "b": slice(2, 5)},
        ...                           hidden_units=8, embed_dim=4, max_epochs=2)
        >>> ret.fit(X).query_, ret.target_
        ('a', 'b')
        """
        self._check_params()
        parts, y = self._validate_fit(X, y)
        query, target = self._pair(self._layout.names)
        positions = [self._layout.names.index(query), self._layout.names.index(target)]
        labels = self._labels(positions)
        self._towers = resolve_towers(
            self.towers,
            [query, target],
            [self._layout.dims[p] for p in positions],
            labels,
            hidden_units=self.hidden_units,
            n_layers=self.n_layers,
        )
        tokens = [kind in SEQUENCE_KINDS for kind, _ in self._towers]
        prepared = mask_blocks([parts[p] for p in positions], [query, target], labels, tokens)
        for i, name in enumerate((query, target)):
            missing = np.flatnonzero(~prepared["mask"][:, i])
            if missing.size:
                raise ValueError(
                    f"row {missing[0]} lacks modality {name!r} (all-NaN); fit needs both "
                    f"modalities of every pair ({missing.size} row(s) lack it)"
                )
        n_samples = prepared["mask"].shape[0]
        if n_samples < 2:
            raise ValueError(f"CrossModalRetriever needs at least 2 pairs, got {n_samples}")
        self.query_, self.target_ = query, target
        self.modalities_ = [query, target]
        self.modality_dims_ = {
            m: self._layout.dims[p] for m, p in zip(self.modalities_, positions, strict=True)
        }
        means, scales = self._tower_inputs(prepared)
        self.towers_ = {
            m: (k, dict(o)) for m, (k, o) in zip(self.modalities_, self._towers, strict=True)
        }
        codes = np.arange(n_samples) if y is None else np.unique(y, return_inverse=True)[1].ravel()
        fraction, stop_early = self._validation_plan(n_samples)
        self.early_stopping_ = stop_early
        rng = check_random_state(self.random_state)
        seed, shuffle_seed, split_seed = draw_seed(rng), draw_seed(rng), draw_seed(rng)
        self.device_ = resolve_device(self.device)
        # plain data (no torch object): what builds the net again, in fit and on loading
        self._net_spec = {
            "module": {
                "dims": [self.modality_dims_[m] for m in self.modalities_],
                "towers": [(k, dict(o)) for k, o in self._towers],
                "hidden_units": self.hidden_units,
                "embed_dim": self.embed_dim,
                "n_layers": self.n_layers,
                "dropout": self.dropout,
                "norm": self.norm,
                "means": means,
                "scales": scales,
                "temperature": self.temperature,
                "learn_temperature": self.learn_temperature,
            },
            "batch_size": n_samples if self.batch_size == -1 else self.batch_size,
            "fraction": fraction,
            "stop_early": stop_early,
            "seeds": (shuffle_seed, split_seed),
            "valid_batch_size": max(n_samples, 1),
        }
        net = self._build_net(self._net_spec, self.device_)
        with torch_threads(self.n_jobs), torch_seeded(seed, self.device_):
            net.fit(prepared, codes.astype(np.int64))
        self.net_ = net
        self.temperature_ = float(1.0 / net.module_.logit_scale().detach().cpu())
        return self

    def _build_net(self, spec: Mapping[str, Any], device: Any) -> NeuralNet:
        """Return the skorch net of ``spec`` (recorded by ``fit``) on ``device``, uninitialized."""
        shuffle_seed, split_seed = spec["seeds"]
        fraction = spec["fraction"]
        return NeuralNet(
            module=DualEncoder,
            **{f"module__{key}": value for key, value in spec["module"].items()},
            criterion=InfoNCELoss,
            optimizer=self.optimizer,
            optimizer__weight_decay=self.weight_decay,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=spec["batch_size"],
            train_split=None
            if fraction is None
            else ValidSplit(fraction, stratified=False, random_state=split_seed),
            callbacks=self._callbacks(fraction is not None, spec["stop_early"]),
            dataset=FusionDataset,
            dataset__device=device,
            iterator_train=BatchIterator,
            iterator_train__shuffle=True,
            iterator_train__seed=shuffle_seed,
            iterator_valid=BatchIterator,
            iterator_valid__batch_size=spec["valid_batch_size"],
            device=device,
            verbose=self.verbose,
        )

    # -- the space ---------------------------------------------------------------------------

    def transform(self, X: Any, modality: str | None = None) -> np.ndarray:
        """Map one modality of ``X`` into the shared space.

        Parameters
        ----------
        X : dict, DataFrame, array-like or sparse matrix
            Input that holds the modality: the full input (as in ``fit``),
            a dict with that key, a DataFrame with that modality's columns
            (when fitted on a DataFrame), or a 2-D array of that block alone
            (when fitted on a dict).
        modality : str or None, default=None
            ``query_`` or ``target_``. None: the one modality ``X`` holds
            (a dict with one of the keys, a DataFrame with one modality's
            columns), else ``query_``.

        Returns
        -------
        embedding : ndarray of shape (n_samples, embed_dim)
            Unit vectors (float64): the dot product of two rows is their
            cosine similarity.

        Examples
        --------
        >>> import numpy as np
        >>> from mmsk import CrossModalRetriever
        >>> X = {"a": np.random.RandomState(0).normal(size=(40, 3)), "b": np.ones((40, 2))}
        >>> ret = CrossModalRetriever(hidden_units=8, embed_dim=4, max_epochs=2).fit(X)
        >>> ret.transform({"b": X["b"][:5]}).shape
        (5, 4)
        >>> ret.transform(X["a"], modality="a").shape
        (40, 4)
        """
        block, i = self._block(X, modality)
        return self._encode(block, i)

    def _encode(self, block: np.ndarray, i: int) -> np.ndarray:
        net = self.net_
        module = net.module_
        was_training = module.training
        module.eval()
        chunks = []
        with torch_threads(self.n_jobs), torch.no_grad():
            for start in range(0, block.shape[0], PREDICT_BATCH_SIZE):
                rows = block[start : start + PREDICT_BATCH_SIZE]
                x = torch.as_tensor(rows.toarray() if sparse.issparse(rows) else np.asarray(rows))
                chunks.append(module.encode(i, x.to(net.device)).cpu().numpy())
        module.train(was_training)
        if not chunks:
            return np.empty((0, self.embed_dim))
        return np.concatenate(chunks).astype(np.float64)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Return the names of the shared space's dimensions: ``shared0``, ``shared1``, ...

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored (checked against ``feature_names_in_`` if given).

        Returns
        -------
        names : ndarray of str
            ``embed_dim`` names.

        Examples
        --------
        >>> import numpy as np
        >>> from mmsk import CrossModalRetriever
        >>> X = {"a": np.random.RandomState(0).normal(size=(40, 3)), "b": np.ones((40, 2))}
        >>> ret = CrossModalRetriever(hidden_units=8, embed_dim=3, max_epochs=1).fit(X)
        >>> ret.get_feature_names_out().tolist()
        ['shared0', 'shared1', 'shared2']
        """
        check_is_fitted(self)
        _check_feature_names_in(self, input_features, generate_names=False)
        return np.asarray([f"shared{i}" for i in range(self.embed_dim)], dtype=object)

    def rank(
        self,
        X_query: Any,
        X_gallery: Any,
        *,
        k: int = 5,
        query_modality: str | None = None,
        gallery_modality: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the ``k`` best gallery matches of each query, by cosine similarity.

        Parameters
        ----------
        X_query : dict, DataFrame, array-like or sparse matrix
            The queries (input that holds ``query_modality``, see
            :meth:`transform`).
        X_gallery : dict, DataFrame, array-like or sparse matrix
            The gallery (input that holds ``gallery_modality``).
        k : int, default=5
            Matches per query, at most the gallery's size.
        query_modality, gallery_modality : str or None, default=None
            The modalities of the queries and of the gallery; None:
            ``query_`` and ``target_``. Swap them to search the other way.

        Returns
        -------
        indices : ndarray of shape (n_queries, k)
            Row positions in the gallery, best match first.
        scores : ndarray of shape (n_queries, k)
            Their cosine similarities, non-increasing along each row.

        Examples
        --------
        >>> import numpy as np
        >>> from mmsk import CrossModalRetriever
        >>> X = {"a": np.random.RandomState(0).normal(size=(40, 3)), "b": np.ones((40, 2))}
        >>> ret = CrossModalRetriever(hidden_units=8, embed_dim=4, max_epochs=2).fit(X)
        >>> indices, scores = ret.rank({"a": X["a"][:2]}, X, k=3)
        >>> indices.shape, scores.shape
        ((2, 3), (2, 3))
        """
        query_modality = self.query_ if query_modality is None else query_modality
        gallery_modality = self.target_ if gallery_modality is None else gallery_modality
        gallery = self.transform(X_gallery, modality=gallery_modality)
        if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        if k > len(gallery):
            raise ValueError(f"k={k} is larger than the gallery, which has {len(gallery)} rows")
        queries = self.transform(X_query, modality=query_modality)
        return top_k(queries, gallery, int(k))

    def score(self, X: Any, y: Any = None) -> float:
        """Return recall@1 of the pairs in ``X`` (see :func:`recall_at_k`).

        Parameters
        ----------
        X : dict, DataFrame, array-like or sparse matrix
            Paired rows: the queries are the ``query_`` blocks, the gallery
            the ``target_`` blocks of all rows.
        y : array-like of shape (n_samples,) or None, default=None
            Labels: relevant means the same label; None: the same row.

        Returns
        -------
        score : float
            Share of queries whose best match is relevant.

        Examples
        --------
        >>> import numpy as np
        >>> from mmsk import CrossModalRetriever
        >>> X = {"a": np.random.RandomState(0).normal(size=(40, 3)), "b": np.ones((40, 2))}
        >>> ret = CrossModalRetriever(hidden_units=8, embed_dim=4, max_epochs=2).fit(X)
        >>> 0.0 <= ret.score(X) <= 1.0
        True
        """
        return float(np.mean(_ranks(self, X, y) <= 1))

    def __getstate__(self) -> dict[str, Any]:
        """Return the state to pickle; the portable state inside :func:`mmsk._portable.saving`."""
        state = super().__getstate__()
        memo = _portable.saving_memo()
        if memo is None:
            return state
        if id(self) not in memo:
            memo[id(self)] = retriever_to_portable(self, state)
        return memo[id(self)]

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled or portable estimator; ``device_`` follows skorch's device mapping."""
        if _portable.PORTABLE_KEY in state:
            state = retriever_from_portable(self, state)
            super().__setstate__(state)
            return
        super().__setstate__(state)
        if "net_" in self.__dict__:
            device = self.net_.device
            self.device_ = str(device) if isinstance(device, torch.device) else device
            self.net_.dataset__device = self.net_.device

    def __sklearn_tags__(self) -> Tags:
        """Declare sparse and dict input; ``y`` is optional."""
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.dict = True
        tags.input_tags.allow_nan = False
        tags.target_tags.required = False
        return tags
