"""The machinery the two fusion estimators share: input, skorch net, training.

:class:`FusionBase` validates the input, finds the modality blocks, masks
missing modalities, builds the skorch net from the estimator's own
parameters and trains it under a seeded torch generator. Its parameter
checks and validation plan live in :mod:`mmsk.fusion._params`, its pickled
and portable state in :mod:`mmsk.fusion._state` (mixins). The public classes
in :mod:`mmsk.fusion.estimators` add the target handling and the docs.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import Tags, TransformerTags, check_random_state
from sklearn.utils.validation import (
    _check_feature_names_in,
    check_consistent_length,
    check_is_fitted,
    validate_data,
)
from skorch import NeuralNetClassifier, NeuralNetRegressor
from skorch.callbacks import Callback
from skorch.dataset import ValidSplit
from skorch.utils import to_tensor

from mmsk._items import index_labels
from mmsk._torch import draw_seed, resolve_device, torch_seeded, torch_threads
from mmsk.fusion._criterion import check_criterion
from mmsk.fusion._data import (
    BatchIterator,
    FusionDataset,
    block_key,
    block_stats,
    channel_stats,
    check_block,
    mask_blocks,
    scaling_rule,
)
from mmsk.fusion._params import (  # noqa: F401 (re-exported: _pairs, retrieval)
    DEFAULT_VALIDATION_FRACTION,
    MIN_AUTO_VALIDATION_ROWS,
    FusionParams,
    _accepts,
    _check_fraction,
    _check_int,
)
from mmsk.fusion._precision import (
    check_precision,
    float32_outputs,
    module_autocast,
    precision_net_class,
)
from mmsk.fusion._predict import frame_values, net_output
from mmsk.fusion._state import FusionState
from mmsk.fusion._training import training_callbacks
from mmsk.fusion._weights import (
    SAMPLE_WEIGHT,
    GroupValidSplit,
    WeightedNetClassifier,
    WeightedNetRegressor,
    check_fit_groups,
    check_fit_sample_weight,
)
from mmsk.fusion.blocks import BlockLayout, find_layout, is_dict, resolve_towers
from mmsk.fusion.encoders import SEQUENCE_KINDS
from mmsk.fusion.modules import FusionModule
from mmsk.fusion.pretrained import load_config
from mmsk.fusion.pretrained_image import probe_backbone

__all__ = ["PREDICT_BATCH_SIZE", "FusionBase", "RefreshBatchNorm"]

#: Rows per batch when predicting (at least ``batch_size``).
PREDICT_BATCH_SIZE = 1024

#: Scorer names that need a binary target (their multiclass forms have other names).
BINARY_SCORERS = ("roc_auc", "average_precision", "f1", "precision", "recall", "jaccard")


class RefreshBatchNorm(Callback):
    """At the end of training, recompute the encoders' batch-norm statistics.

    One pass over the training rows (shuffled as in training, no gradients)
    with the final weights; see :meth:`FusionModule.refresh_batch_norm`. The
    estimators add it when a conv or sequence tower has batch norm. It runs
    after :class:`~skorch.callbacks.EarlyStopping` has restored the best
    weights.
    """

    def on_train_end(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        """Refresh the statistics from the training split of ``X``."""
        dataset, _ = net.get_split_datasets(X, y)
        batches = (to_tensor(xb, net.device) for xb, _ in net.get_iterator(dataset, training=True))
        with module_autocast(net):  # the statistics of what the module sees in training
            net.module_.refresh_batch_norm(batches)


class _Names:
    """The names of a block's columns, looked up one by one (for error messages)."""

    def __init__(self, names: np.ndarray, columns: np.ndarray) -> None:
        self.names, self.columns = names, columns

    def __getitem__(self, j: int) -> Any:
        return self.names[self.columns[j]]


class FusionBase(FusionParams, FusionState, BaseEstimator):
    """What the classifier and the regressor share: input, net, training."""

    _net_class: type = NeuralNetRegressor

    # Metadata routing: ``sample_weight`` is unrequested (scikit-learn's
    # default: set_fit_request(sample_weight=True) to route it), ``groups``
    # is not requested, so that routing ``groups`` to a CV splitter or a
    # GroupStandardScaler goes on working unchanged; set_fit_request(
    # groups=True) asks for a grouped validation split.
    __metadata_request__fit = {"groups": False}

    # -- input -----------------------------------------------------------------------------

    def _prepare(self, X: Any, y: Any = None, *, fit: bool) -> tuple[dict[str, Any], Any]:
        """Validate ``X`` (and ``y`` in fit), cut it into blocks, mask missing modalities.

        In ``fit`` this also learns the layout of the blocks and the tower of
        each (``_towers``), which tells which blocks hold token ids.
        """
        y_kwargs = {"multi_output": not self._is_clf(), "y_numeric": not self._is_clf()}
        rows = index_labels(next(iter(X.values()), None) if is_dict(X) else X)
        if is_dict(X):
            if not X:
                raise ValueError("X is an empty dict; it needs at least one block")
            keys = [key for key in X if not isinstance(key, str)]
            if keys:
                raise ValueError(
                    f"a dict X's keys are modality names and must be str, got {keys[0]!r}"
                )
            if fit:
                y = validate_data(self, X="no_validation", y=y, reset=True, **y_kwargs)
            blocks = {name: check_block(block, f"X[{name!r}]") for name, block in X.items()}
            labels = {
                name: list(map(str, block.columns)) if hasattr(block, "columns") else None
                for name, block in X.items()
            }
            check_consistent_length(*blocks.values(), *([y] if fit else []))
            if fit:
                self.n_features_in_ = sum(block.shape[1] for block in blocks.values())
                self._layout = find_layout(blocks, None, self.modalities)
            layout = self._layout
            parts = layout.split(blocks)
            labels = [labels[name] for name in layout.names]
            names = labels
        else:
            params = {"accept_sparse": "csr", "dtype": np.float32, "ensure_all_finite": "allow-nan"}
            if fit:
                X, y = validate_data(self, X, y, reset=True, **params, **y_kwargs)
                names = getattr(self, "feature_names_in_", None)
                self._layout = find_layout(X, names, self.modalities)
            else:
                values = frame_values(self, X)
                X = validate_data(self, X, reset=False, **params) if values is None else values
            layout = self._layout
            parts = layout.split(X)
            feature_names = getattr(self, "feature_names_in_", None)
            if fit:
                labels = [c if feature_names is None else feature_names[c] for c in layout.columns]
                names = [None if feature_names is None else label for label in labels]
            else:  # column names only for error messages: looked up when one is raised
                labels = [
                    c if feature_names is None else _Names(feature_names, c) for c in layout.columns
                ]
        if fit:
            self._towers = resolve_towers(
                self.towers,
                layout.names,
                layout.dims,
                names,
                hidden_units=self.hidden_units,
                n_layers=self.n_layers,
            )
        # (an estimator pickled before towers existed has MLP towers only)
        tokens = [kind in SEQUENCE_KINDS for kind, _ in getattr(self, "_towers", [])] or None
        return mask_blocks(parts, layout.names, labels, tokens, rows), y

    def _set_layout_attributes(self, layout: BlockLayout) -> None:
        self.modalities_ = list(layout.names)
        self.modality_dims_ = dict(zip(layout.names, layout.dims, strict=True))
        self.modality_columns_ = {
            name: (None if layout.columns is None else layout.columns[i])
            for i, name in enumerate(layout.names)
        }
        self.towers_ = {
            name: (kind, dict(options))
            for name, (kind, options) in zip(layout.names, self._towers, strict=True)
        }

    def _scaling_rules(self) -> list[str]:
        """Return the input scaling rule of each block, from ``standardize``."""
        names = self._layout.names
        if not isinstance(self.standardize, Mapping):
            return [scaling_rule(self.standardize, "standardize")] * len(names)
        unknown = [key for key in self.standardize if key not in names]
        if unknown:
            raise ValueError(
                f"standardize has an entry for {unknown[0]!r}, which is not a block of X; "
                f"the blocks are {list(names)}"
            )
        return [
            scaling_rule(self.standardize.get(name, "auto"), f"standardize[{name!r}]")
            for name in names
        ]

    def _wide_blocks(self) -> list[bool]:
        """Return which blocks feed the wide (linear) part, from ``wide``."""
        names = self._layout.names
        numeric = [kind not in SEQUENCE_KINDS for kind, _ in self._towers]
        if isinstance(self.wide, bool) or self.wide == "auto":
            on = self.wide == "auto" or bool(self.wide)
            return [on and usable for usable in numeric]
        if not isinstance(self.wide, list | tuple | set | frozenset) or not all(
            isinstance(name, str) for name in self.wide
        ):
            raise ValueError(
                f"wide must be True, False, 'auto' or a list of block names, got {self.wide!r}"
            )
        for name in self.wide:
            if name not in names:
                raise ValueError(
                    f"wide names {name!r}, which is not a block of X; the blocks are {list(names)}"
                )
            if not numeric[names.index(name)]:
                raise ValueError(
                    f"wide names {name!r}, a block of token ids (a sequence tower); the wide "
                    "part is linear in the values, so it takes numeric blocks only"
                )
        return [name in self.wide for name in names]

    def _tower_inputs(
        self, prepared: dict[str, Any], sample_weight: np.ndarray | None = None
    ) -> tuple[list[Any] | None, list[Any] | None]:
        """Fill in the vocabulary sizes and pretrained configs; return each block's input scaling.

        MLP towers scale each feature by the block's rule (see
        ``standardize``), conv towers standardise each channel, and sequence
        towers take their token ids as they are. With ``sample_weight`` the
        statistics are weighted.
        """
        for i, (kind, options) in enumerate(self._towers):
            if kind == "pretrained" and options["config"] is None:
                options["config"] = load_config(options["model"])
            elif kind == "pretrained_image" and options["features"] is None:
                where = f"towers[{self._layout.names[i]!r}]"
                options["features"] = probe_backbone(options, where)
            elif kind in SEQUENCE_KINDS and options["vocab_size"] is None:
                block = prepared[block_key(i)]
                options["vocab_size"] = max(int(block.max(initial=0)) + 1, 2)
        rules = self._scaling_rules()
        if all(rule == "none" for rule in rules):
            return None, None
        means, scales = block_stats(
            prepared, len(self._towers), rules, sample_weight, names=self._layout.names
        )
        for i, (kind, options) in enumerate(self._towers):
            if kind in SEQUENCE_KINDS or kind == "pretrained_image":  # (its own mean/std)
                means[i] = scales[i] = None
            elif kind == "conv" and rules[i] != "none":
                means[i], scales[i] = channel_stats(prepared, i, options["shape"], sample_weight)
        return means, scales

    # -- training --------------------------------------------------------------------------

    def _is_clf(self) -> bool:
        return self._net_class is NeuralNetClassifier

    def _module_kwargs(self, n_outputs: int, means: Any, scales: Any) -> dict[str, Any]:
        return {
            "dims": list(self._layout.dims),
            "n_outputs": n_outputs,
            "fusion": self.fusion,
            "hidden_units": self.hidden_units,
            "embed_dim": self.embed_dim,
            "n_layers": self.n_layers,
            "dropout": self.dropout,
            "norm": self.norm,
            "n_heads": self.n_heads,
            "rank": self.rank,
            "modality_dropout": self.modality_dropout,
            "means": means,
            "scales": scales,
            "towers": [(kind, dict(options)) for kind, options in self._towers],
            "wide": self._wide_blocks(),
        }

    def _fit(self, X: Any, y: Any, sample_weight: Any = None, groups: Any = None) -> FusionBase:
        self._check_params()
        n_iter_no_change = self.n_iter_no_change
        if self.patience != "deprecated":
            warnings.warn(
                "patience was renamed n_iter_no_change (scikit-learn's name) in mmsk 0.2 and "
                "will be removed in 0.4; set n_iter_no_change instead",
                FutureWarning,
                stacklevel=3,
            )
            n_iter_no_change = self.patience
        prepared, y = self._prepare(X, y, fit=True)
        n_samples = prepared["mask"].shape[0]
        weight = check_fit_sample_weight(sample_weight, n_samples)
        groups = check_fit_groups(groups, n_samples)
        y_train, n_outputs, net_kwargs = self._encode_target(y, weight)
        if n_samples < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 samples to train, got n_samples=1"
            )
        means, scales = self._tower_inputs(prepared, weight)
        self._set_layout_attributes(self._layout)
        module_kwargs = self._module_kwargs(n_outputs, means, scales)
        fraction, stop_early = self._validation_plan(y_train, n_samples, groups)
        self._check_training_rows(n_samples, fraction)
        if fraction is not None and self._is_clf() and self.scoring in BINARY_SCORERS:
            if n_outputs > 2:
                raise ValueError(
                    f"scoring={self.scoring!r} needs a binary target, but y has {n_outputs} "
                    f"classes; use a multiclass scorer, e.g. 'f1_macro' or 'roc_auc_ovr'"
                )
        self.early_stopping_ = stop_early
        self.n_estimators_ = self._resolve_n_estimators(n_samples)
        rng = check_random_state(self.random_state)
        self.device_ = resolve_device(self.device)
        check_precision(self._precision(), self.device_)
        weighted = weight is not None
        data = prepared
        if weighted:
            data, net_kwargs = self._weighted(prepared, weight, net_kwargs)
        # what _build_net needs besides the parameters; kept to rebuild the nets on load
        self._net_spec = {
            "module": module_kwargs,
            "net": net_kwargs,
            "validation_fraction": fraction,
            "n_iter_no_change": n_iter_no_change,
            "weighted": weighted,
            "seeds": [],
        }
        # a criterion that mismatches the task fails here, not inside torch (a trial net)
        check_criterion(self, self._build_net(0, 0, self.device_, groups=groups), n_outputs)
        nets = []
        for i in range(self.n_estimators_):
            if self.verbose and self.n_estimators_ > 1:  # which epoch table is which
                print(f"network {i + 1} of {self.n_estimators_}", flush=True)
            seed, shuffle_seed, split_seed = draw_seed(rng), draw_seed(rng), draw_seed(rng)
            self._net_spec["seeds"].append([shuffle_seed, split_seed])
            net = self._build_net(shuffle_seed, split_seed, self.device_, groups=groups)
            with torch_threads(self.n_jobs), torch_seeded(seed, self.device_):
                net.fit(data, y_train)
            nets.append(net)
        self.nets_ = nets
        self.net_ = nets[0]
        self.history_ = self.net_.history
        return self

    def _build_net(
        self, shuffle_seed: int, split_seed: int, device: Any, *, groups: Any = None
    ) -> Any:
        """Return a new skorch net from the parameters and ``_net_spec`` (set in ``fit``).

        ``groups`` (in ``fit`` only) makes the validation split hold out whole groups.
        """
        spec = self._net_spec
        fraction = spec["validation_fraction"]
        criterion = self._default_criterion if self.criterion is None else self.criterion
        optimizer_kwargs = dict(self.optimizer_kwargs or {})
        if _accepts(self.optimizer, "weight_decay"):
            optimizer_kwargs.setdefault("weight_decay", self.weight_decay)
        own_lr = [  # a pretrained encoder trains at its own learning rate
            (f"towers.{i}.model.*", {"lr": options["lr"]})
            for i, (kind, options) in enumerate(self._towers)
            if kind in ("pretrained", "pretrained_image") and options.get("lr") is not None
        ]
        if own_lr:
            optimizer_kwargs["param_groups"] = [
                *optimizer_kwargs.get("param_groups", []),
                *own_lr,
            ]
        callbacks = list(copy.deepcopy(self.callbacks)) if self.callbacks else []
        added, _, _ = training_callbacks(
            self,
            validating=fraction is not None,
            early_stopping=self.early_stopping_,
            n_iter_no_change=spec["n_iter_no_change"],
            class_weight=spec["net"].get("criterion__weight"),
        )
        callbacks += added
        # (not for a pretrained tower alone: the refresh would cost one more pass
        # of the big encoder over the training rows)
        if self.norm == "batch" and any(
            kind not in ("mlp", "pretrained", "pretrained_image") for kind, _ in self._towers
        ):
            callbacks.append(("refresh_batch_norm", RefreshBatchNorm()))
        train_split = None
        if fraction is not None and groups is not None:
            train_split = GroupValidSplit(fraction, groups, random_state=split_seed)
        elif fraction is not None:
            train_split = ValidSplit(fraction, stratified=self._is_clf(), random_state=split_seed)
        net_kwargs = {  # e.g. criterion__weight, kept as an array
            key: torch.as_tensor(value) if isinstance(value, np.ndarray) else value
            for key, value in spec["net"].items()
        }
        net_class = self._net_class
        if spec.get("weighted"):
            net_class = WeightedNetClassifier if self._is_clf() else WeightedNetRegressor
        if self._precision() != "32":  # ("32": skorch's own nets, as before precision existed)
            net_class = precision_net_class(self._is_clf(), bool(spec.get("weighted")))
            net_kwargs["precision"] = self._precision()
        return net_class(
            module=FusionModule,
            criterion=criterion,
            optimizer=self.optimizer,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            train_split=train_split,
            callbacks=callbacks,
            dataset=FusionDataset,
            dataset__device=device,
            iterator_train=BatchIterator,
            iterator_train__shuffle=True,
            iterator_train__seed=shuffle_seed,
            iterator_valid=BatchIterator,
            iterator_valid__batch_size=max(self.batch_size, PREDICT_BATCH_SIZE),
            device=device,
            verbose=self.verbose,
            **{f"module__{key}": value for key, value in spec["module"].items()},
            **{f"optimizer__{key}": value for key, value in optimizer_kwargs.items()},
            **net_kwargs,
        )

    def _weighted(
        self, prepared: dict[str, Any], weight: np.ndarray, net_kwargs: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return the data and the net arguments of a weighted fit."""
        criterion = self._default_criterion if self.criterion is None else self.criterion
        if not _accepts(criterion, "reduction"):
            raise ValueError(
                f"sample_weight needs a criterion that takes reduction='none' (per-row "
                f"losses, weighted by mmsk); {getattr(criterion, '__name__', criterion)!r} "
                "does not"
            )
        if callable(self.scoring) and not _accepts(self.scoring, "sample_weight"):
            raise ValueError(
                "with sample_weight, a callable scoring must take sample_weight= (the "
                "held-out rows' weights), as scikit-learn's scorers do"
            )
        data = {**prepared, SAMPLE_WEIGHT: weight.astype(np.float32)}
        return data, {**net_kwargs, "criterion__reduction": "none"}

    def _net_output(self, X: Any) -> np.ndarray:
        if "net_" not in self.__dict__:  # set by fit (and by loading): fitted
            check_is_fitted(self)
        prepared, _ = self._prepare(X, fit=False)
        nets = self.__dict__.get("nets_") or [self.net_]  # (pickled before ensembles existed)
        with torch_threads(self.n_jobs):
            outputs = [np.asarray(net_output(net, prepared), dtype=np.float64) for net in nets]
        return outputs[0] if len(outputs) == 1 else np.mean(outputs, axis=0)

    def transform(self, X: Any) -> np.ndarray:
        """Return the fused embedding of each row, the representation the head reads.

        The fusion layer's output for ``X`` (towers, then fusion; no head,
        no wide part), in evaluation mode. With ``n_estimators > 1`` the
        member nets' embeddings are concatenated, in the order of
        ``nets_``. Usable as features for another estimator or as a
        retrieval space (e.g. with
        :class:`~sklearn.neighbors.NearestNeighbors`). ``predict`` does not
        go through this method.

        Parameters
        ----------
        X : dict of 2-D arrays, DataFrame, array-like or sparse matrix
            Input with the blocks seen in ``fit``.

        Returns
        -------
        embedding : ndarray of shape (n_samples, n_fused)
            float64; ``n_fused`` is ``len(get_feature_names_out())``: per net
            ``n_modalities * embed_dim`` for ``fusion="concat"``,
            ``embed_dim`` for gated, attention and tensor fusion, the number
            of outputs for ``"late"`` (the averaged per-modality heads).

        Examples
        --------
        >>> import numpy as np
        >>> from mmsk.fusion import FusionClassifier
        >>> X = {"image": np.random.RandomState(0).normal(size=(40, 6)), "audio": np.ones((40, 2))}
        >>> clf = FusionClassifier(hidden_units=8, max_epochs=2, n_estimators=1)
        >>> clf.fit(X, X["image"][:, 0] > 0).transform(X).shape
        (40, 16)
        >>> clf.set_params(n_estimators=3).fit(X, X["image"][:, 0] > 0).transform(X).shape
        (40, 48)
        >>> clf.get_feature_names_out()[:3].tolist()
        ['fused0', 'fused1', 'fused2']
        """
        check_is_fitted(self)
        prepared, _ = self._prepare(X, fit=False)
        nets = self.__dict__.get("nets_") or [self.net_]
        parts = []
        with torch_threads(self.n_jobs), torch.no_grad():
            for net in nets:
                autocast = module_autocast(net)
                module = net.module_
                was_training = module.training
                module.eval()
                dataset = FusionDataset(prepared, device=net.device)
                with autocast:
                    chunks = [
                        float32_outputs(module.embed(**to_tensor(xb, net.device))).cpu().numpy()
                        for xb, _ in BatchIterator(dataset, batch_size=PREDICT_BATCH_SIZE)
                    ]
                module.train(was_training)
                parts.append(np.concatenate(chunks).astype(np.float64))
        return np.concatenate(parts, axis=1)

    def fit_transform(self, X: Any, y: Any, **fit_params: Any) -> np.ndarray:
        """Fit on ``X`` and ``y``, then return the fused embedding of ``X``.

        Parameters
        ----------
        X : dict of 2-D arrays, DataFrame, array-like or sparse matrix
            Training input.
        y : array-like
            Targets.
        **fit_params
            Passed to ``fit`` (``sample_weight``, ``groups``).

        Returns
        -------
        embedding : ndarray of shape (n_samples, n_fused)
            ``fit(X, y).transform(X)``.

        Examples
        --------
        >>> import numpy as np
        >>> from mmsk.fusion import FusionClassifier
        >>> X = np.random.RandomState(0).normal(size=(40, 3))
        >>> clf = FusionClassifier(hidden_units=4, max_epochs=2, n_estimators=1)
        >>> clf.fit_transform(X, X[:, 0] > 0).shape
        (40, 4)
        """
        return self.fit(X, y, **fit_params).transform(X)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Return the names of the columns of :meth:`transform`: ``fused0``, ``fused1``, ...

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored (checked against ``feature_names_in_`` if given).

        Returns
        -------
        names : ndarray of str
            One name per column of the fused embedding.

        Examples
        --------
        >>> import numpy as np
        >>> from mmsk.fusion import FusionRegressor
        >>> X = np.random.RandomState(0).normal(size=(40, 3))
        >>> reg = FusionRegressor(fusion="gated", hidden_units=4, max_epochs=2, n_estimators=1)
        >>> reg.fit(X, X[:, 0]).get_feature_names_out().tolist()
        ['fused0', 'fused1', 'fused2', 'fused3']
        """
        check_is_fitted(self)
        _check_feature_names_in(self, input_features, generate_names=False)
        nets = self.__dict__.get("nets_") or [self.net_]
        width = sum(int(net.module_.fusion.out_dim) for net in nets)
        return np.asarray([f"fused{i}" for i in range(width)], dtype=object)

    def __sklearn_tags__(self) -> Tags:
        """Declare sparse and dict input; NaN only as a whole missing block."""
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.dict = True
        # NaN is accepted only where a whole block of a row is NaN (a missing
        # modality); scattered NaN raise, so the estimator does not claim allow_nan.
        tags.input_tags.allow_nan = False
        # transform returns the fused embedding (float64 whatever the input dtype)
        tags.transformer_tags = TransformerTags(preserves_dtype=["float64"])
        return tags
