"""Paired bootstrap of the difference between two models scored on the same rows.

The bootstrap is parameterised by a :class:`PairedStatistic`: anything that can validate a
model's scores against the labels and then evaluate itself under bootstrap weights (how many
times each row was drawn). Two kinds cover most needs:

* :class:`RowMean` — the weighted mean of a per-row value (log loss, Brier score, absolute
  error, pinball loss, revenue captured, ...). A replicate costs one dot product.
* :class:`RocAuc` — the area under the ROC curve, with the scores sorted once so a replicate
  costs O(n) rather than O(n log n).

:data:`STATISTICS` names the built-in ones (``auc``, ``log_loss``, ``brier``); a new model kind
passes its own statistic object to :func:`paired_bootstrap` without changing this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike

from flashsale_ml.evaluation.binary import auc_from_groups, check_binary_inputs

PrimaryMetric = str
RowValues = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(labels, scores) -> one value per row``, the body of a :class:`RowMean`."""
RowCheck = Callable[[np.ndarray, np.ndarray], None]
"""``(labels, scores) -> None``, raising ``ValueError`` when the inputs do not fit."""
WeightedStatistic = Callable[[np.ndarray], float]
"""``weights -> value``: a statistic of one model's scores, prepared for bootstrap weights."""


@dataclass(frozen=True)
class BootstrapInterval:
    """Paired bootstrap of the difference between two models on one statistic.

    The difference is oriented so that positive means the challenger is better:
    ``challenger - champion`` for a statistic where higher is better (AUC),
    ``champion - challenger`` for one where lower is better (a loss).
    """

    metric: str
    difference: float
    low: float
    high: float
    confidence: float
    samples: int
    distribution: np.ndarray = field(repr=False, compare=False)

    def excludes_zero(self) -> bool:
        """Whether the whole interval lies on the challenger-better side of zero."""
        return self.low > 0.0


@runtime_checkable
class PairedStatistic(Protocol):
    """A statistic of one model's scores that the paired bootstrap can resample.

    Attributes:
        name: the name reported in :attr:`BootstrapInterval.metric`.
        higher_is_better: orientation of the statistic; the bootstrap reports differences so
            that positive always means the challenger is better.
    """

    @property
    def name(self) -> str: ...

    @property
    def higher_is_better(self) -> bool: ...

    def validate(self, labels: np.ndarray, scores: np.ndarray) -> None:
        """Raise ``ValueError`` if the labels and one model's scores do not fit the statistic.

        Both are already float, 1-d and of equal, non-zero length.
        """
        ...

    def prepare(self, labels: np.ndarray, scores: np.ndarray) -> WeightedStatistic:
        """Precompute what does not depend on the resample (sorts, per-row values).

        Returns:
            A function of the bootstrap weights (non-negative multiplicities, one per row)
            returning the statistic on the resample, or NaN where it is undefined there.
        """
        ...


def check_finite_rows(labels: np.ndarray, scores: np.ndarray) -> None:
    """Validate generic per-row inputs: finite, 1-d and of equal, non-zero length.

    Args:
        labels: one target per row (any real value: a 0/1 outcome, revenue, a quantity).
        scores: one prediction per row.

    Raises:
        ValueError: shapes differ, an array is empty or not 1-d, or a value is NaN or infinite.
    """
    y, s = np.asarray(labels, dtype=float), np.asarray(scores, dtype=float)
    if y.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"labels and scores must be 1-d of equal length, got {y.shape}, {s.shape}")
    if len(y) == 0:
        raise ValueError("cannot evaluate an empty set")
    if not np.isfinite(y).all():
        raise ValueError("labels must be finite (no NaN or infinity)")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite (no NaN or infinity)")


def check_binary_rows(labels: np.ndarray, scores: np.ndarray) -> None:
    """Validate 0/1 labels with both classes present and probabilities in [0, 1].

    Raises:
        ValueError: as :func:`~flashsale_ml.evaluation.binary.check_binary_inputs` with
            ``both_classes=True``.
    """
    check_binary_inputs(labels, scores, both_classes=True)


@dataclass(frozen=True)
class RowMean:
    """A statistic that is the (weighted) mean of one value per row.

    Under bootstrap weights ``w`` it is ``w @ values / w.sum()``; the paired bootstrap takes
    the per-row difference between the two models once and then costs one dot product per
    replicate.

    Attributes:
        name: the statistic's name.
        per_row: ``(labels, scores) -> values``, one finite value per row.
        higher_is_better: ``False`` for a loss.
        check: validation of ``(labels, scores)``; by default :func:`check_finite_rows`, so
            labels need not be binary (revenue, a quantile target).
    """

    name: str
    per_row: RowValues
    higher_is_better: bool
    check: RowCheck = check_finite_rows

    def validate(self, labels: np.ndarray, scores: np.ndarray) -> None:
        """Raise ``ValueError`` if the inputs do not fit (see :attr:`check`)."""
        self.check(labels, scores)

    def values(self, labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """The per-row values as a float array.

        Raises:
            ValueError: ``per_row`` returned the wrong shape or a non-finite value.
        """
        values = np.asarray(self.per_row(labels, scores), dtype=float)
        if values.shape != np.shape(labels):
            raise ValueError(
                f"per_row of {self.name!r} returned shape {values.shape}, "
                f"expected one value per row {np.shape(labels)}"
            )
        if not np.isfinite(values).all():
            raise ValueError(f"per_row of {self.name!r} returned NaN or infinite values")
        return values

    def prepare(self, labels: np.ndarray, scores: np.ndarray) -> WeightedStatistic:
        """The weighted mean of the per-row values, as a function of the weights."""
        values = self.values(labels, scores)

        def weighted_mean(weights: np.ndarray) -> float:
            return float(weights @ values / weights.sum())

        return weighted_mean


class _RankedScores:
    """Scores sorted once, so a weighted AUC per bootstrap replicate costs O(n), not O(n log n)."""

    def __init__(self, labels: np.ndarray, scores: np.ndarray) -> None:
        self.order = np.argsort(scores, kind="mergesort")
        self.labels = labels[self.order]
        ordered = scores[self.order]
        new_group = np.r_[True, ordered[1:] != ordered[:-1]]
        self.group_starts = np.flatnonzero(new_group)
        self.has_ties = len(self.group_starts) < len(ordered)

    def auc(self, weights: np.ndarray) -> float:
        w = weights[self.order]
        positives = w * self.labels
        negatives = w - positives
        if self.has_ties:
            neg_per_group = np.add.reduceat(negatives, self.group_starts)
            pos_per_group = np.add.reduceat(positives, self.group_starts)
        else:  # every score distinct (the usual case): each row is its own group
            neg_per_group, pos_per_group = negatives, positives
        return auc_from_groups(pos_per_group, neg_per_group)


@dataclass(frozen=True)
class RocAuc:
    """Weighted area under the ROC curve of probabilities (ties count one half).

    NaN on a resample that lacks one of the classes; the bootstrap drops such replicates.
    """

    name: str = "auc"
    higher_is_better: bool = field(default=True, init=False)

    def validate(self, labels: np.ndarray, scores: np.ndarray) -> None:
        """Raise ``ValueError`` unless the labels are 0/1 with both classes and the scores are
        probabilities (see :func:`check_binary_rows`)."""
        check_binary_rows(labels, scores)

    def prepare(self, labels: np.ndarray, scores: np.ndarray) -> WeightedStatistic:
        """Sort the scores once; the returned function is O(n) per set of weights."""
        return _RankedScores(labels, scores).auc


def _log_loss_rows(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    p = np.clip(scores, 1e-7, 1 - 1e-7)
    return -(labels * np.log(p) + (1 - labels) * np.log(1 - p))


def _brier_rows(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return (scores - labels) ** 2


def _row_losses(metric: PrimaryMetric, labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-row log loss (probabilities clipped to [1e-7, 1 - 1e-7]) or Brier score."""
    return _brier_rows(labels, scores) if metric == "brier" else _log_loss_rows(labels, scores)


STATISTICS: dict[str, PairedStatistic] = {
    "auc": RocAuc(),
    "log_loss": RowMean(
        "log_loss", _log_loss_rows, higher_is_better=False, check=check_binary_rows
    ),
    "brier": RowMean("brier", _brier_rows, higher_is_better=False, check=check_binary_rows),
}
"""The built-in statistics by name (the ``primary_metric`` of the promotion gates)."""


def statistic(metric: str | PairedStatistic) -> PairedStatistic:
    """Resolve a statistic from its name in :data:`STATISTICS`, or pass an object through.

    Args:
        metric: a name in :data:`STATISTICS` or a :class:`PairedStatistic`.

    Returns:
        The statistic.

    Raises:
        ValueError: an unknown name, or neither a name nor a statistic; the message lists the
            known names.
    """
    known = ", ".join(sorted(STATISTICS))
    if isinstance(metric, str):
        try:
            return STATISTICS[metric]
        except KeyError:
            raise ValueError(f"unknown statistic {metric!r}; known: {known}") from None
    if isinstance(metric, PairedStatistic):
        return metric
    raise ValueError(
        f"metric must be a statistic name ({known}) or a PairedStatistic, "
        f"got {type(metric).__name__}"
    )


def paired_bootstrap(
    labels: ArrayLike,
    challenger_scores: ArrayLike,
    champion_scores: ArrayLike,
    metric: str | PairedStatistic,
    samples: int,
    confidence: float,
    seed: int,
) -> BootstrapInterval:
    """Percentile interval of the paired difference of a statistic (challenger better > 0).

    Each replicate resamples holdout rows with replacement and scores *both* models on the
    same resample, so the interval reflects the uncertainty of the difference rather than of
    each statistic alone (the two are strongly correlated on shared rows). Resample ``i`` uses
    the rows ``default_rng(seed).integers(0, n, n)`` of the ``i``-th draw, as multiplicities.

    The difference is ``challenger - champion`` when the statistic's ``higher_is_better`` is
    true (AUC) and ``champion - challenger`` otherwise (log loss, Brier score, any loss).

    Args:
        labels: one target per row: 0/1 outcomes for ``auc``, ``log_loss`` and ``brier``; any
            finite values for a generic :class:`RowMean` (revenue, a quantile target).
        challenger_scores: the challenger's predictions for the same rows.
        champion_scores: the champion's predictions for the same rows.
        metric: a name in :data:`STATISTICS` (``auc``, ``log_loss``, ``brier``) or a
            :class:`PairedStatistic` object.
        samples: number of bootstrap replicates, at least 1.
        confidence: two-sided level of the interval, strictly between 0 and 1, e.g. 0.95.
        seed: seed of the resampling.

    Returns:
        The point difference on all rows, its percentile interval, and the replicate
        differences (replicates where the statistic is undefined, e.g. an AUC on a resample
        with one class, are dropped and not counted in ``samples``).

    Raises:
        ValueError: an unknown statistic; ``samples`` or ``confidence`` out of range; the
            three arrays not 1-d of equal, non-zero length; inputs the statistic rejects (for
            the built-ins: labels not 0/1, a single class, scores outside [0, 1] or NaN; for a
            generic :class:`RowMean`: NaN or infinite values); or no replicate defined.

    References:
        Efron & Tibshirani (1993), *An Introduction to the Bootstrap*, Chapman & Hall, ch. 13
        (percentile intervals); DeLong, DeLong & Clarke-Pearson (1988), "Comparing the areas
        under two or more correlated ROC curves", Biometrics 44(3) — the analytic counterpart
        for AUC.
    """
    stat = statistic(metric)
    if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    y = np.asarray(labels, dtype=float)
    a = np.asarray(challenger_scores, dtype=float)
    b = np.asarray(champion_scores, dtype=float)
    if not (y.shape == a.shape == b.shape) or y.ndim != 1:
        raise ValueError(
            f"labels and both score arrays must align, got {y.shape}, {a.shape}, {b.shape}"
        )
    if len(y) == 0:
        raise ValueError("cannot bootstrap an empty set of rows")
    stat.validate(y, a)
    stat.validate(y, b)

    n = len(y)
    rng = np.random.default_rng(seed)
    replicate: WeightedStatistic
    if isinstance(stat, RowMean):  # fast path: one per-row difference, a dot product each
        challenger_rows, champion_rows = stat.values(y, a), stat.values(y, b)
        if stat.higher_is_better:
            gain = challenger_rows - champion_rows
        else:
            gain = champion_rows - challenger_rows
        point = float(gain.mean())

        def replicate(w: np.ndarray) -> float:
            return float(w @ gain / n)
    else:
        better, worse = stat.prepare(y, a), stat.prepare(y, b)
        if not stat.higher_is_better:
            better, worse = worse, better

        def replicate(w: np.ndarray) -> float:
            return better(w) - worse(w)

        point = replicate(np.ones(n))

    draws = np.empty(samples)
    for i in range(samples):
        draws[i] = replicate(np.bincount(rng.integers(0, n, n), minlength=n).astype(float))
    draws = draws[~np.isnan(draws)]  # e.g. a replicate without both classes has no AUC
    if len(draws) == 0:
        raise ValueError(f"{stat.name} is undefined on every one of the {samples} resamples")
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha])
    return BootstrapInterval(
        stat.name, float(point), float(low), float(high), confidence, len(draws), draws
    )
