"""Parameter and attribute text shared by the two fusion estimators' docstrings."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

__all__ = ["fill", "filled"]

_NETWORK = """\
    fusion : {"concat", "late", "gated", "attention", "tensor"}, default="concat"
        How the modality embeddings are combined: ``"concat"``
        concatenates them (a learned vector stands in for a missing
        modality); ``"late"`` gives each modality its own head and averages
        the outputs with learned weights, renormalised over the present
        modalities; ``"gated"`` weights each modality per feature with gated
        multimodal units; ``"attention"`` runs multi-head self-attention over
        one token per modality and mean-pools the present ones;
        ``"tensor"`` is low-rank multimodal tensor fusion.
    modalities : dict or None, default=None
        Explicit blocks for a 2-D input: modality name -> a list of column
        names, a column-name prefix (str), a slice, integer positions or a
        boolean mask. Every column must be in exactly one modality; an
        empty slice is skipped, so a fitted ColumnTransformer's
        ``output_indices_`` works as it is. None: the keys of a dict input,
        else the ``name__`` prefixes of a DataFrame's columns (columns
        without ``__`` form one more block, ``"other"``), else one block.
    towers : None, str, (str, dict) or dict, default=None
        The tower of each block. None: an MLP on every block. A kind, or a
        ``(kind, options)`` pair: that tower on every block. A dict: block
        name -> kind, or ``(kind, options)``; the blocks not in it get an
        MLP. The kinds:
        ``"mlp"``; ``"conv"``, a small CNN over an image-like block
        (``ImagePixels``, ``LogMelSpectrogram``), whose ``(C, H, W)`` shape
        is read from the extractor's column names; ``"gru"``, ``"lstm"``
        and ``"transformer"``, over token ids (``TokenSequences``: 0 is
        padding, 1 out of vocabulary; a row of padding only is a missing
        modality; the vocabulary size is the largest id seen in ``fit``
        plus one, larger ids at predict time read as 1). Options: ``conv``:
        ``shape`` (needed when the names do not tell it), ``depth=2``,
        ``width=16``, ``kernel_size=3``; ``gru``/``lstm``:
        ``embedding_dim=32``, ``hidden_units`` (the estimator's),
        ``n_layers=1``, ``bidirectional=False``, ``vocab_size``;
        ``transformer``: ``embedding_dim=32``, ``n_layers=1``,
        ``n_heads=4``, ``vocab_size``; ``mlp``: ``hidden_units`` and
        ``n_layers`` (the estimator's). ``"pretrained"`` fine-tunes a
        local Hugging Face / sentence-transformers model over the ids and
        attention mask that ``PretrainedTokens`` makes from the same model;
        options ``model`` (the folder, required), ``trainable_layers="all"``
        (or an int: the top layers that train, 0 freezes the encoder),
        ``lr=3e-5`` (the encoder's own learning rate; None: ``lr``),
        ``pooling="mean"`` (or ``"cls"``); ``fit`` stores the model's
        ``config`` in ``towers_`` (see ``docs/finetune.md``).
        ``"pretrained_image"`` fine-tunes a torch image backbone over the
        pixels of ``ImagePixels``; options ``model`` (required: a module, a
        class or function that builds one, or a torchvision name),
        ``weights`` (a state dict file, or a torchvision weights name),
        ``layer="penultimate"`` (the head is removed), ``trainable_layers=
        "all"`` (or an int: the top layers that train, 0 freezes the
        backbone; or a list of parameter-name prefixes), ``lr=1e-4``,
        ``mean``/``std`` (ImageNet's; the normalisation applied inside the
        tower); ``fit`` stores ``shape`` and ``features`` in ``towers_``.
        E.g. ``{"image": "conv", "text": ("gru", {"bidirectional": True})}``.
    hidden_units : int, default=64
        Width of the hidden layers of the towers and the head.
    n_layers : int, default=1
        Layers per tower (``Linear -> norm -> ReLU -> Dropout``).
    embed_dim : int or None, default=None
        Width of each tower's output, the modality embedding. None means
        ``hidden_units``. Must be divisible by ``n_heads`` for
        ``fusion="attention"``.
    dropout : float, default=0.1
        Dropout rate in the towers, the attention and the head.
    norm : {"batch", "layer"} or None, default="batch"
        Normalisation after each linear layer of a tower.
    n_heads : int, default=4
        Attention heads for ``fusion="attention"``.
    rank : int, default=4
        Rank of the modality factors for ``fusion="tensor"``.
    modality_dropout : float, default=0.0
        While training, hide each present modality of a row with this
        probability, never all of a row's modalities, so that the network
        learns to predict from any subset.
    standardize : "auto", bool, str or dict, default="auto"
        How each block's features are scaled before its tower (inside the
        network, so sparse blocks stay sparse). ``"auto"``: continuous
        columns are standardised with the mean and standard deviation of
        their present training rows, while binary columns (one-hot codes,
        missing-value indicators: every value 0 or 1) and sparse blocks
        (TF-IDF, counts) keep their natural scale; a conv tower standardises
        each channel as a whole; token ids are never scaled. ``True`` (or
        ``"standard"``): standardise every column. ``False`` (or
        ``"none"``): no scaling. A dict sets the rule per block, e.g.
        ``{"tfidf": "none", "numeric": "standard"}``; blocks left out get
        ``"auto"``{target_scaling}.
    wide : "auto", bool or list of str, default="auto"
        The wide part (Wide & Deep): one linear layer from the scaled blocks
        straight to the outputs, added to the head's, so the network
        contains a linear model on the same features (a logistic regression
        for the classifier) and the deep part learns what it misses. Its
        weights start at zero. ``"auto"`` and ``True``: every numeric block
        (not token ids); ``False``: none; a list: those blocks.
    lr : float, default=1e-3
        Learning rate.
    weight_decay : float, default=0.01
        The optimizer's ``weight_decay`` (AdamW's decoupled weight decay, on
        every weight), when the optimizer takes one; ``optimizer_kwargs``
        wins if it sets it too.
    lr_schedule : {"plateau", "cosine"} or None, default="plateau"
        ``"plateau"``: divide the learning rate by 3 when the monitored
        value (``valid_loss``, ``valid_score`` with ``scoring``{cw_short}, or
        ``train_loss`` without validation) has not improved for about half
        of ``n_iter_no_change`` epochs. ``"cosine"``: cosine annealing to 0
        over ``max_epochs``. None: a constant learning rate.
    max_epochs : int, default=100
        Most passes over the training data; early stopping usually ends
        training long before.
    batch_size : int, default=128
        Rows per training batch (``-1``: the whole training set). Batches
        are shuffled at each epoch.
    optimizer : torch optimizer class, default=torch.optim.AdamW
        The optimizer, given ``lr`` and ``optimizer_kwargs``.
    optimizer_kwargs : dict or None, default=None
        More keyword arguments for the optimizer, e.g. ``{"weight_decay": 0.0}``.
    criterion : torch loss class or None, default=None
        The loss; None means {criterion}. ``fit`` first tries it, as
        training calls it, on a tiny batch of the task's shapes and dtypes,
        and refuses one that raises there, does not return one finite
        number or does not depend on the network's output (e.g. a
        regression loss for a classifier, a class-index loss for a
        regressor) with a ``ValueError``.
    callbacks : list or None, default=None
        Callbacks of skorch (instances or ``(name, callback)`` pairs), e.g.
        ``EpochScoring``, ``Checkpoint``, ``LRScheduler``, ``ProgressBar``.
        They are deep-copied in ``fit``; the fitted ones are in
        ``net_.callbacks_``.
    early_stopping : "auto" or bool, default="auto"
        Hold out ``validation_fraction`` of the training rows{split}, stop
        when the monitored value (``valid_loss``, or ``valid_score`` with
        ``scoring``{cw_short}) has not improved by ``tol`` for ``n_iter_no_change``
        epochs, and restore the weights of the best epoch. The held-out rows
        are not trained on: they choose the epoch. ``"auto"``: on when the
        split holds at least 20 rows (and, for a classifier, every class on
        both sides), off for smaller data; ``True`` raises when no such
        split exists. ``early_stopping_`` says what was done.
    validation_fraction : float or None, default=None
        Fraction of the training rows held out (seeded by ``random_state``).
        None: 0.1 when stopping early, else no hold-out. A float with
        ``early_stopping=False`` holds out the rows only to record
        ``valid_loss`` (and ``valid_score``) in ``net_.history``.
    n_iter_no_change : int, default=10
        Epochs without improvement before early stopping.
    tol : float, default=1e-4
        Least improvement of the monitored value that counts (absolute).
    scoring : str, callable or None, default=None
        What early stopping watches on the held-out rows: a scikit-learn
        scorer name (``"f1_macro"``, ``"roc_auc"``,
        ``"neg_mean_absolute_error"``, ...) or a callable ``scorer(estimator,
        X, y)``, evaluated on the estimator's own predictions (original
        labels, unscaled targets) and recorded as ``valid_score`` in
        ``net_.history`` (greater is better).
        None: the validation loss{cw_long}.
    n_estimators : int or "auto", default="auto"
        Networks trained with different seeds (weights, batches and
        validation split) and averaged: probabilities for the classifier,
        predictions for the regressor (bagging of the seeds; with early
        stopping each network holds out other rows, so the ensemble learns
        from every row). Costs ``n_estimators`` times the fit and predict
        time, and pays on small or noisy data. ``"auto"``: 5 networks when
        every tower is an MLP (networks on extracted features, cheap to
        train) and there are at most 10,000 training rows, else 1;
        ``n_estimators_`` says how many were trained.
    patience : int, optional
        Deprecated alias of ``n_iter_no_change``; will be removed in 0.4."""

_TAIL = """\
    device : str or torch.device, default="auto"
        Where to train and predict: ``"auto"`` picks ``"cuda"`` when a GPU
        is visible, else ``"cpu"``. A model fitted on a GPU is loaded on a
        machine without one on the CPU (skorch warns once).
    precision : {"32", "bf16", "16-mixed"}, default="32"
        Arithmetic of the network's forward pass, in ``fit``, ``predict``
        and ``transform``. ``"32"``: float32. ``"bf16"``: bfloat16 autocast
        (:func:`torch.autocast`), on a CPU or a GPU. ``"16-mixed"``:
        float16 autocast with a gradient scaler (:class:`torch.amp.GradScaler`),
        CUDA only: ``fit`` on a CPU raises a ``ValueError`` (a model fitted
        so and loaded on a CPU predicts in float32). The weights stay
        float32 and so do the outputs; ``to_onnx`` exports float32. See
        ``docs/gpu.md``.
    n_jobs : int or None, default=None
        CPU threads torch uses in ``fit`` and ``predict``
        (:func:`torch.set_num_threads`, restored afterwards); ``-1`` means
        all CPUs; None leaves torch's setting alone. Results change slightly
        with the thread count: fix it (e.g. 1) to get the same numbers
        whether or not ``GridSearchCV`` runs its fits in parallel.
    random_state : int, RandomState instance or None, default=None
        Seeds the weight initialisation, dropout, modality dropout, the
        batch shuffling and the validation split. Two fits with the same
        int give the same predictions (on the same device and threads).
    verbose : int, default=0
        Print skorch's per-epoch table when > 0."""

_ATTRIBUTES = """\
    n_features_in_ : int
        Number of features seen in ``fit`` (all blocks together).
    feature_names_in_ : ndarray of str of shape (n_features_in_,)
        Column names, when ``X`` was a DataFrame with string column names.
    modalities_ : list of str
        Names of the modality blocks, in tower order.
    modality_dims_ : dict of str to int
        Width of each block.
    modality_columns_ : dict of str to ndarray or None
        Column positions of each block in a 2-D input; None for a dict input.
    towers_ : dict of str to (str, dict)
        The tower of each block: its kind and all its options, as used
        (e.g. a conv tower's ``shape``, a sequence tower's ``vocab_size``).
    early_stopping_ : bool
        Whether early stopping was on (``early_stopping="auto"`` decides by
        the size of the data).
    n_estimators_ : int
        How many networks were trained (what ``n_estimators="auto"``
        chose).
    nets_ : list of skorch.NeuralNet
        The ``n_estimators`` trained nets; ``predict`` averages them.
    net_ : skorch.NeuralNet
        The first of ``nets_``, the trained skorch net: ``net_.history`` (per-epoch ``train_loss``,
        ``valid_loss``, ...), ``net_.module_`` (the :class:`torch.nn.Module`),
        ``net_.callbacks_``, ``net_.save_params``.
    history_ : skorch.History
        The training history, skorch's ``net_.history`` (the same object):
        one row per epoch with ``train_loss``, ``valid_loss`` (when rows are
        held out), ``valid_score`` (with ``scoring``), ``dur``, ...; e.g.
        ``history_[:, "valid_loss"]``. With ``n_estimators > 1`` it is the
        first net's; the others are ``nets_[i].history``.
    device_ : str or torch.device
        The device the net is on."""


_FIT_METADATA = """\
        sample_weight : array-like of shape (n_samples,) or None, default=None
            Weights of the rows. The loss is the weighted mean of the per-row
            losses.{class_weights} The input{weighted_target} standardisation
            is weighted; the validation loss and ``scoring`` use the held-out
            rows' weights (the split is the one without weights). Finite and
            non-negative; a zero weight makes a row count for nothing; uniform
            weights give the unweighted fit. Integer weights give the fit on
            repeated rows, up to float rounding with ``batch_size=-1``, no
            batch norm and no dropout (see ``docs/fusion.md``). Every member
            net of ``n_estimators`` gets them. Routed on request:
            ``set_fit_request(sample_weight=True)``.
        groups : array-like of shape (n_samples,) or None, default=None
            Group labels (speaker, patient, site, ...). When rows are held out
            (early stopping or ``validation_fraction``), whole groups are:
            ``ceil(validation_fraction * n_groups)`` of them (0.1 by default),
            so that early stopping measures how the net does on groups it has
            not seen; this split is not stratified. Unused without a hold-out.
            Routed on request only (``set_fit_request(groups=True)``), so that
            ``groups`` meant for a CV splitter or a
            :class:`~mmsk.GroupStandardScaler` do not change the net's split."""


def fill(doc: str, **extra: str) -> str:
    """Replace ``{network}``, ``{tail}``, ``{attributes}``, ``{fit_metadata}``, ``extra`` keys."""
    network = _NETWORK
    for key, value in extra.items():
        network = network.replace("{" + key + "}", value)
    fit_metadata = _FIT_METADATA
    for key, value in extra.items():
        fit_metadata = fit_metadata.replace("{" + key + "}", value)
    texts = {
        "network": network,
        "tail": _TAIL,
        "attributes": _ATTRIBUTES,
        "fit_metadata": fit_metadata,
    }
    for key, value in texts.items():
        # the placeholder sits indented like a parameter; the text brings its own indent
        doc = re.sub(r"^ *\{" + key + r"\}", lambda _, text=value: text, doc, flags=re.MULTILINE)
        doc = doc.replace("{" + key + "}", value)
    return doc


def filled(**extra: str) -> Callable[[T], T]:
    """Class decorator: :func:`fill` the docstrings of the class and of its ``fit``."""

    def decorate(cls: T) -> T:
        cls.__doc__ = fill(cls.__doc__ or "", **extra)
        fit = vars(cls).get("fit")
        if fit is not None and fit.__doc__:
            fit.__doc__ = fill(fit.__doc__, **extra)
        return cls

    return decorate
