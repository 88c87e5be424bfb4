"""Ranking backbones before training: LogME, the evidence that features explain the labels.

Choosing a backbone by fine-tuning each candidate costs a training run per
candidate. LogME (You, Liu, Wang and Long, "LogME: Practical Assessment of
Pre-trained Models for Transfer Learning", ICML 2021) scores a candidate from
one forward pass over the target data instead: for each class it fits a
Bayesian linear model from the features to that class's one-hot column, with
a Gaussian prior on the weights (precision `alpha`) and Gaussian noise
(precision `beta`), and measures how probable the labels are under that
model with `alpha` and `beta` set to maximize it (the marginal likelihood,
or evidence). Features that explain the labels with simple linear weights
score high; a score needs no training, no tuning and no validation split.

- `logme`: the score of a feature matrix and its labels.
- `logme_blocks`: the score after each block of one backbone (the
  training-free counterpart of `probe_blocks`).
- `rank_backbones`: candidate backbones ordered best first.

Data: `logme_blocks` takes model-ready data, as `probe_blocks` does (one
backbone, one preprocessing). `rank_backbones` compares backbones that may
expect different preprocessing, so it takes RAW images (float RGB in 0..255,
e.g. `kt.data.from_directory(..., preprocess=None)`) and gives each candidate
what it expects: a `kt.Backbone` (or a name) applies its own
`backbone.preprocess` to every batch; a plain `keras.Model` gets the batches
as they are.
"""

import math
import time

import keras
import numpy as np
import pandas as pd

from keras_transfer import _checks
from keras_transfer import _inputs as inputs
from keras_transfer.backbones import HUB_PREFIX, Backbone, _resolve, get_backbone
from keras_transfer.diagnostics import _block_features, _depths, _resolve_blocks

# The evidence fixed point runs until alpha / beta moves by less than this (relative),
# not the reference code's 11 steps: the evidence is then stationary to float precision,
# so the score is the maximum its name promises.
_TOLERANCE = 1e-10
_MAX_ITERATIONS = 10_000
# alpha / beta this far beyond the feature scale means "no weight on the features"
# (or, below it, "no noise"): the evidence has reached its limit there.
_T_LIMIT = 1e14


# --- the score ------------------------------------------------------------------------


def logme(features, labels):
    """LogME: the log maximum evidence of a linear model from `features` to the labels, per example.

    For each class c, a Bayesian linear regression of the one-hot column
    `y_c = (labels == c)` on the features, `y_c = F w + noise` with
    `w ~ N(0, I / alpha)` and `noise ~ N(0, I / beta)`, has the evidence
    `log N(y_c | 0, I / beta + F F^T / alpha)`. MacKay's fixed point (the
    paper's Algorithm 1) maximizes it over `alpha` and `beta` using one SVD
    of `F`; the score is the mean over the classes present of the maximized
    evidence divided by the number of examples. Higher is better; scores
    compare feature sets on the SAME examples and labels (they are
    log-likelihoods, typically between about -1 and 1 per example).

    Features are used as they are (no centering, no intercept, as in the
    paper). The score is unchanged by the order of the examples, by
    orthogonal transformations and positive rescaling of the features, and
    by appending all-zero feature columns. Labels that are exactly a linear
    function of fewer features than examples (the one-hot labels themselves)
    have unbounded evidence; their score is capped, large and finite.

    Args:
        features: a 2-D array `(examples, feature_dim)` of finite numbers.
        labels: integer class ids (>= 0), one per example; at least 2
            distinct classes.

    Returns:
        The LogME score, a Python float (computed in float64).

    Example:

    >>> import numpy as np, keras_transfer as kt
    >>> rng = np.random.default_rng(0)
    >>> labels = np.arange(60) % 3
    >>> informative = np.eye(3)[labels] + 0.3 * rng.normal(size=(60, 3))
    >>> noise = rng.normal(size=(60, 3))
    >>> kt.logme(informative, labels) > kt.logme(noise, labels)
    True
    >>> round(kt.logme(informative, labels) - kt.logme(10 * informative, labels), 9)
    0.0
    """
    features = _check_features(features)
    labels = _check_labels(labels, len(features))
    targets = (labels[:, None] == np.unique(labels)[None, :]).astype("float64")
    evidence, _, _ = _class_evidences(features, targets)
    return float(np.mean(evidence))


def _class_evidences(features, targets):
    """Maximized evidence per example, alpha and beta for each target column, from one SVD of `features`."""
    n = len(features)
    u, s, _ = np.linalg.svd(features, full_matrices=False)
    # Singular values at round-off level are zeros: their directions carry no features.
    rank = int(np.sum(s > s[0] * max(features.shape) * np.finfo("float64").eps)) if s.size and s[0] > 0 else 0
    # The score does not depend on the scale of the features; iterating on features scaled to a
    # largest singular value of 1 keeps the arithmetic O(1), and alpha scales back at the end.
    scale = s[0] ** 2 if rank else 1.0
    u, sigma = u[:, :rank], (s[:rank] / s[0]) ** 2 if rank else s[:0]
    projected = u.T @ targets
    # What the features cannot reach at all, whatever the weights.
    unreachable = np.sum((targets - u @ projected) ** 2, axis=0)
    evidences, alphas, betas = [], [], []
    for column in range(targets.shape[1]):
        evidence, alpha, beta = _max_evidence(sigma, projected[:, column] ** 2, unreachable[column],
                                              float(np.sum(targets[:, column] ** 2)), n)
        evidences.append(evidence)
        alphas.append(alpha * scale)
        betas.append(beta)
    return np.array(evidences), np.array(alphas), np.array(betas)


def _max_evidence(sigma, x2, unreachable, total, n):
    """MacKay's fixed point for one target in the SVD basis: (evidence / n, alpha, beta).

    `sigma` are the nonzero squared singular values of the features, `x2` the
    squared projections of the target on their left singular vectors,
    `unreachable` the target's squared norm outside their span, `total` its
    squared norm. A target exactly in the span of fewer than n features has
    unbounded evidence (beta -> inf); the iteration stops at the `_T_LIMIT`
    bounds of alpha / beta, so the score is large but finite.
    """
    if not sigma.size or not np.any(x2 > 0):
        # Nothing to fit with: the best model puts no weight on the features (alpha = inf).
        beta = n / total
        return (0.5 * n * math.log(beta) - 0.5 * n - 0.5 * n * math.log(2 * math.pi)) / n, math.inf, beta
    alpha, beta = 1.0, 1.0
    low, high = sigma[-1] / _T_LIMIT, sigma[0] * _T_LIMIT
    for _ in range(_MAX_ITERATIONS):
        t = alpha / beta
        # gamma: the number of well-determined weights; m2 = |m|^2, res2 = |y - F m|^2 at the posterior mean m.
        gamma = float(np.sum(sigma / (sigma + t)))
        m2 = float(np.sum(sigma * x2 / (sigma + t) ** 2))
        res2 = float(np.sum(x2 * (t / (sigma + t)) ** 2)) + unreachable
        alpha, beta = gamma / m2, (n - gamma) / res2
        new_t = alpha / beta
        if abs(new_t - t) <= _TOLERANCE * t or not low < new_t < high:
            break
    t = alpha / beta
    m2 = float(np.sum(sigma * x2 / (sigma + t) ** 2))
    res2 = float(np.sum(x2 * (t / (sigma + t)) ** 2)) + unreachable
    # D/2 log(alpha) - 1/2 log|alpha I + beta F^T F| = -1/2 sum log(1 + sigma / t): the D - rank zero
    # eigenvalues of F^T F cancel (the reference code's fixed-point variant drops them when D > N,
    # thuml/LogME#23), and log1p keeps it exact when alpha dwarfs beta * sigma.
    evidence = (0.5 * n * math.log(beta) - 0.5 * float(np.sum(np.log1p(sigma / t))) - 0.5 * beta * res2
                - 0.5 * alpha * m2 - 0.5 * n * math.log(2 * math.pi))
    return evidence / n, alpha, beta


def _check_features(features):
    try:
        array = np.asarray(features, dtype="float64")
    except (TypeError, ValueError):
        raise TypeError(
            f"`features` must be a 2-D array of numbers. Received: features={inputs.short(features)}"
        ) from None
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            "`features` must be a non-empty 2-D array (examples, feature_dim). "
            f"Received: features.shape={array.shape}"
        )
    if not np.all(np.isfinite(array)):
        bad = int(np.sum(~np.isfinite(array)))
        raise ValueError(f"`features` must be finite. Received: {bad} NaN or inf values in features")
    return array


def _check_labels(labels, n):
    array = np.asarray(labels)
    if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) and array.dtype != bool):
        raise ValueError(
            "`labels` must be a 1-D array of integer class ids. "
            f"Received: labels={inputs.short(labels)} with shape {array.shape} and dtype {array.dtype}"
        )
    if len(array) != n:
        raise ValueError(f"`labels` must hold one label per row of `features`. Received: {len(array)} labels "
                         f"for {n} rows")
    if array.min() < 0:
        raise ValueError(f"`labels` must be class ids >= 0. Received: min label {array.min()}")
    classes = np.unique(array)
    if len(classes) < 2:
        raise ValueError(f"`labels` must hold at least 2 classes. Received: classes {classes.tolist()}")
    return array.astype("int64")


# --- one backbone, block by block --------------------------------------------------------


def logme_blocks(backbone, train_ds, *, blocks=None, max_examples=None, batch_size=32, verbose=1):
    """Scores the pooled features after each block of a backbone with LogME.

    The training-free counterpart of `probe_blocks`: the same one-pass
    feature extraction (each block's last layer, pooled globally), scored by
    `logme` instead of a fitted probe.

    Args:
        backbone: a `keras.Model` (a backbone, or a classifier whose `head`
            block is skipped) or a `kt.Backbone`.
        train_ds: `(x, y)` arrays or a dataset of `(x, y)` batches, already
            preprocessed for the backbone (as for `probe_blocks`); integer
            labels (one-hot labels are argmax-ed).
        blocks: block names to score, in any order; default every backbone
            block.
        max_examples: use at most this many examples: a seeded sample with
            every class in proportion for `(x, y)` arrays and `kt.data`
            datasets (the first ones of any other dataset).
        batch_size: batch size of the feature pass for array inputs.
        verbose: 0 silent, 1 a progress bar for the feature pass.

    Returns:
        A `pandas.DataFrame`, one row per scored block from input to output:
        `block`, `depth` (index among the backbone blocks, 0 = first),
        `feature_dim` and `logme`.

    Example:

    >>> import numpy as np, keras, keras_transfer as kt
    >>> import keras_transfer.demo  # registers the block spec of models named demo_convnet
    >>> inputs = keras.Input((2,))
    >>> x = keras.layers.Dense(2, name="stem_dense", kernel_initializer="identity")(inputs)
    >>> x = keras.layers.Dense(2, name="block1_dense", kernel_initializer="zeros")(x)
    >>> backbone = keras.Model(inputs, x, name="demo_convnet")
    >>> x = np.random.default_rng(0).normal(size=(40, 2)).astype("float32")
    >>> table = kt.logme_blocks(backbone, (x, (x[:, 0] > 0).astype("int32")), verbose=0)
    >>> table.block.tolist(), bool(table.logme[0] > table.logme[1])
    (['stem', 'block1'], True)
    """
    model, chosen, names = _resolve_blocks(backbone, blocks)
    _checks.positive_int("batch_size", batch_size)
    if max_examples is not None:
        _checks.positive_int("max_examples", max_examples)
    verbose = _checks.verbose(verbose)
    train_ds = inputs.sample(train_ds, "train_ds", max_examples)
    features, labels = _block_features(model, chosen, train_ds, "train_ds", batch_size, max_examples, verbose)
    _check_classes(labels)
    rows = [
        {"block": block.name, "depth": depth, "feature_dim": x.shape[1], "logme": logme(x, labels)}
        for block, depth, x in zip(chosen, _depths(chosen, names), features)
    ]
    return pd.DataFrame(rows).sort_values("depth", ignore_index=True)


# --- several backbones --------------------------------------------------------------------


def rank_backbones(candidates, train_ds, *, max_examples=1000, batch_size=32, verbose=1):
    """Ranks candidate backbones for a target task by the LogME of their pooled output features.

    `max_examples` examples of `train_ds` are read once and held in memory
    as raw images, so every candidate is scored on the same examples even
    when the dataset reshuffles on each pass: a seeded sample with every
    class in proportion for `(x, y)` arrays and `kt.data` datasets, the
    first ones of any other dataset (shuffle it, so they cover the classes). Each candidate then runs one forward
    pass over them; its output, averaged over any spatial axes (global
    average pooling), is scored by `logme`.

    Args:
        candidates: a list of candidates, or a dict label -> candidate. A
            candidate is a backbone name for `kt.get_backbone` (built with
            its default weights at the size of the images in `train_ds`), a
            `kt.Backbone`, or a single-output `keras.Model`. Labels default
            to the name, the `Backbone.name` or the model's name, and must be
            unique.
        train_ds: RAW images with integer labels: `(x, y)` arrays or a
            dataset of `(x, y)` batches of float RGB images in 0..255, e.g.
            `kt.data.from_directory(..., preprocess=None, shuffle=True)`.
            A `kt.Backbone` or a name applies its own `preprocess` to every
            batch; a plain `keras.Model` gets the batches as they are.
        max_examples: score on at most this many examples (None: all; they
            are held in memory: 1000 images of 224 x 224 px take 600 MB).
        batch_size: batch size of the forward passes.
        verbose: 0 silent, 1 a progress bar and a result line per candidate.

    Returns:
        A `pandas.DataFrame` sorted best first, one row per candidate:
        `candidate` (its label), `logme`, `feature_dim`, `params` (the
        backbone's parameters), `seconds` (building a named candidate, its
        forward pass and the score) and `rank` (1 = best).

    Example:

    >>> import numpy as np, keras, keras_transfer as kt
    >>> def backbone(kernel):
    ...     inputs = keras.Input((2,))
    ...     outputs = keras.layers.Dense(2, use_bias=False, kernel_initializer=kernel)(inputs)
    ...     return keras.Model(inputs, outputs)
    >>> x = np.random.default_rng(0).normal(size=(40, 2)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int32")
    >>> table = kt.rank_backbones({"keeps": backbone("identity"), "loses": backbone("zeros")}, (x, y),
    ...                           verbose=0)
    >>> table[["candidate", "feature_dim", "params", "rank"]].values.tolist()
    [['keeps', 2, 4, 1], ['loses', 2, 4, 2]]
    """
    entries = _check_candidates(candidates)
    if max_examples is not None:
        _checks.positive_int("max_examples", max_examples)
    _checks.positive_int("batch_size", batch_size)
    verbose = _checks.verbose(verbose)
    images, labels = _read_examples(train_ds, max_examples)
    _check_classes(labels)
    rows = []
    for index, (label, candidate) in enumerate(entries, start=1):
        if verbose:
            print(f"Candidate {index}/{len(entries)}: {label}")
        start = time.perf_counter()
        model, preprocess = _candidate_model(candidate, images.shape[1:])
        features = _pooled_features(model, preprocess, images, batch_size, verbose)
        score = logme(features, labels)
        seconds = time.perf_counter() - start
        if verbose:
            print(f"{label}: LogME {score:.4f} on {len(labels)} examples, {features.shape[1]} features "
                  f"({seconds:.1f} s)")
        rows.append({"candidate": label, "logme": score, "feature_dim": features.shape[1],
                     "params": model.count_params(), "seconds": seconds})
    table = pd.DataFrame(rows).sort_values("logme", ascending=False, kind="stable", ignore_index=True)
    table["rank"] = np.arange(1, len(table) + 1)
    return table


def _check_candidates(candidates):
    """[(label, candidate)] in the given order; every candidate of an accepted type, labels unique."""
    if isinstance(candidates, dict):
        bad = [k for k in candidates if not isinstance(k, str) or not k]
        if bad:
            raise ValueError(f"The labels (keys) of `candidates` must be non-empty strings. Received: {bad!r}")
        entries = list(candidates.items())
    elif isinstance(candidates, (list, tuple)):
        entries = [(None, c) for c in candidates]
    else:
        raise TypeError(
            "`candidates` must be a list of candidates or a dict label -> candidate. "
            f"Received: candidates={inputs.short(candidates)} of type {type(candidates).__name__}"
        )
    if not entries:
        raise ValueError(f"`candidates` must hold at least one candidate. Received: candidates={candidates!r}")
    labelled = []
    for label, candidate in entries:
        if isinstance(candidate, str):
            if not candidate.startswith(HUB_PREFIX):
                try:
                    _resolve(candidate)
                except ValueError as e:
                    raise ValueError(f"`candidates` holds an unknown backbone name: {e}") from None
            default = candidate
        elif isinstance(candidate, Backbone):
            default = candidate.name
        elif isinstance(candidate, keras.Model):
            outputs = getattr(candidate, "outputs", None)  # None for a subclassed model
            if outputs is not None and len(outputs) != 1:
                raise ValueError(
                    f"A keras.Model in `candidates` must have one output. Received: {candidate.name!r} with "
                    f"{len(outputs)} outputs"
                )
            default = candidate.name
        else:
            raise TypeError(
                "Each of `candidates` must be a backbone name, a kt.Backbone or a keras.Model. "
                f"Received: {inputs.short(candidate)} of type {type(candidate).__name__}"
            )
        labelled.append((default if label is None else label, candidate))
    labels = [label for label, _ in labelled]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(
            f"`candidates` share the labels {repeated}; pass a dict label -> candidate to tell them apart. "
            f"Received labels: {labels}"
        )
    return labelled


def _candidate_model(candidate, image_shape):
    """(model, preprocessing or None) for one candidate; a name is built here."""
    if isinstance(candidate, str):
        candidate = get_backbone(candidate, input_shape=tuple(image_shape))
    if isinstance(candidate, Backbone):
        return candidate.model, candidate.preprocess
    return candidate, None


def _pooled_features(model, preprocess, images, batch_size, verbose):
    """Runs `model` over `images` in batches; outputs averaged over spatial axes, as float64."""
    steps = math.ceil(len(images) / batch_size)
    progbar = keras.utils.Progbar(steps, unit_name="batch") if verbose else None
    features = []
    for step in range(steps):
        batch = images[step * batch_size:(step + 1) * batch_size]
        if preprocess is not None:
            batch = preprocess(batch)
        output = keras.ops.convert_to_numpy(inputs.predict_batch(model, batch))
        if output.ndim > 2:
            output = output.mean(axis=tuple(range(1, output.ndim - 1)))
        features.append(output.reshape(len(output), -1).astype("float64"))
        if progbar is not None:
            progbar.update(step + 1)
    return np.concatenate(features)


def _read_examples(data, max_examples):
    """`max_examples` (images, integer labels) of `data` (`inputs.sample`), as numpy arrays."""
    images, labels = inputs.read_examples(inputs.sample(data, "train_ds", max_examples), "train_ds", max_examples)
    return images, inputs.class_ids(labels, "train_ds")


def _check_classes(labels):
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError(
            "`train_ds` must hold at least 2 classes for LogME to tell apart. "
            f"Received labels: {classes.tolist()}"
        )


