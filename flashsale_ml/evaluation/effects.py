"""Effects of a randomized campaign (promotion vs holdout) from per-group sufficient statistics.

A 10-million-user flash sale is evaluated from a handful of sums per arm (per segment, per hash
bucket) that DuckDB computes in one pass, so no per-user array ever reaches Python::

    SELECT arm, count(*) AS n,
           sum(revenue) AS sum_y, sum(revenue * revenue) AS sum_y2,
           sum(pre_revenue) AS sum_x, sum(pre_revenue * pre_revenue) AS sum_x2,
           sum(revenue * pre_revenue) AS sum_xy
    FROM outcomes GROUP BY arm

Each row becomes a :class:`Moments`; the moments of disjoint groups add up (segments into
arms), and on top of them:

* :func:`welch_difference`: difference of means, Welch t interval;
* :func:`relative_lift`: ``mean_t / mean_c - 1``, delta-method interval;
* :func:`cuped_difference`: the difference adjusted by a pre-period covariate (CUPED);
* :func:`ratio_difference`: difference of ratio metrics (revenue per order), delta method;
* :func:`bucket_bootstrap_difference`: Poisson bootstrap over hash buckets, a check that does
  not lean on the normal approximation;
* :func:`adjust_p_values`: Holm or Benjamini–Hochberg across segments or metrics;
* :func:`sample_ratio_mismatch`: chi-square test that the arms got their designed shares.

Numerics: variances come from raw sums (``sum_y2 - sum_y**2 / n``), which loses digits when a
metric's mean is large against its spread (relative error about machine epsilon times
``mean**2 / variance``). Revenue, counts and conversions are far from trouble; for a metric
such as a timestamp subtract a constant in SQL first (differences, CUPED and the Welch test do
not change under a shift; a lift or a ratio does). Centred sums within ``1e-12`` of the size of
the raw sums they come from are rounding noise and count as exactly zero, so a constant metric
has variance 0, not ±1e-19.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

_FIELDS = ("n", "sum_y", "sum_y2", "sum_x", "sum_x2", "sum_xy")
_ROUNDING = 1e-12
"""Centred sums this small relative to the raw sums they come from are rounding noise."""
_INCONSISTENT = 1e-8
"""A centred sum of squares below ``-_INCONSISTENT`` times its raw sums is no rounding error:
the sums do not come from one set of values (e.g. ``sum(y) * sum(y)`` for ``sum(y * y)``)."""


def _centred(total_a: float, total_b: float, total_ab: float, n: float) -> tuple[float, float]:
    """``Σ(a - ā)(b - b̄)`` from raw sums, and the size of the terms it is the difference of.

    Returns:
        ``(centred, scale)``; ``centred`` is 0.0 when it is within rounding noise of ``scale``.
    """
    uncentred = total_a * total_b / n
    centred = total_ab - uncentred
    scale = abs(total_ab) + abs(uncentred)
    if abs(centred) <= _ROUNDING * scale:
        centred = 0.0
    return centred, scale


@dataclass(frozen=True)
class Moments:
    """Sufficient statistics of a metric y (and optionally a pre-period covariate x) over n units.

    Build one per arm (or per arm and segment) from SQL aggregates, or with :meth:`from_arrays`;
    ``a + b`` gives the moments of the union of two disjoint groups, and ``sum(parts)`` works.
    Without a covariate the ``x`` sums stay 0. Fields are converted to ``float`` (DuckDB returns
    ``int`` or ``Decimal`` sums).

    Attributes:
        n: number of units (users), at least 0.
        sum_y: Σ y.
        sum_y2: Σ y².
        sum_x: Σ x of the covariate (0 without one).
        sum_x2: Σ x².
        sum_xy: Σ x·y.

    Raises:
        ValueError: on construction, a field that is not a finite number, ``n < 0``, non-zero
            sums with ``n == 0``, or sums that cannot come from one set of values (``sum_y2``
            below ``sum_y**2 / n``, likewise for x, or a covariance larger than the two
            variances allow).
    """

    n: float
    sum_y: float
    sum_y2: float
    sum_x: float = 0.0
    sum_x2: float = 0.0
    sum_xy: float = 0.0

    def __post_init__(self) -> None:
        for name in _FIELDS:
            value = getattr(self, name)
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"Moments.{name} must be a number, got {value!r}") from None
            if not math.isfinite(number):
                raise ValueError(f"Moments.{name} must be finite, got {number}")
            object.__setattr__(self, name, number)
        if self.n < 0:
            raise ValueError(f"Moments.n must be at least 0, got {self.n:g}")
        if self.n == 0:
            if any(getattr(self, name) != 0.0 for name in _FIELDS[1:]):
                raise ValueError("Moments with n = 0 must have every sum equal to 0")
            return
        syy, scale_y = _centred(self.sum_y, self.sum_y, self.sum_y2, self.n)
        sxx, scale_x = _centred(self.sum_x, self.sum_x, self.sum_x2, self.n)
        sxy, scale_xy = _centred(self.sum_x, self.sum_y, self.sum_xy, self.n)
        for what, centred, scale in (("y", syy, scale_y), ("x", sxx, scale_x)):
            if centred < -_INCONSISTENT * scale:
                raise ValueError(
                    f"Moments.sum_{what}2 is below sum_{what}**2 / n: the sums are not those of "
                    f"one set of values (negative variance {centred / self.n:g})"
                )
        # Cauchy–Schwarz, with room for the rounding of all three centred sums.
        bound = math.sqrt(
            (max(sxx, 0.0) + _INCONSISTENT * scale_x) * (max(syy, 0.0) + _INCONSISTENT * scale_y)
        )
        if abs(sxy) > bound + _INCONSISTENT * scale_xy:
            raise ValueError(
                "Moments.sum_xy implies a covariance larger than the variances of x and y allow: "
                "the sums are not those of one set of (x, y) pairs"
            )

    @classmethod
    def from_arrays(cls, y: ArrayLike, x: ArrayLike | None = None) -> Moments:
        """The moments of per-unit values (tests, small segments, a local sample).

        Args:
            y: the metric, one finite value per unit; may be empty (all moments 0).
            x: the covariate for the same units, or ``None`` for none (x sums 0).

        Returns:
            The moments, in float64.

        Raises:
            ValueError: ``y`` or ``x`` not 1-d, of different lengths, or not finite.
        """
        values = np.asarray(y, dtype=float)
        if values.ndim != 1:
            raise ValueError(f"y must be 1-d, got shape {values.shape}")
        if not np.isfinite(values).all():
            raise ValueError("y must be finite (no NaN or infinity)")
        if x is None:
            return cls(len(values), values.sum(), values @ values)
        covariate = np.asarray(x, dtype=float)
        if covariate.shape != values.shape:
            raise ValueError(f"x must have the shape of y {values.shape}, got {covariate.shape}")
        if not np.isfinite(covariate).all():
            raise ValueError("x must be finite (no NaN or infinity)")
        return cls(
            len(values),
            values.sum(),
            values @ values,
            covariate.sum(),
            covariate @ covariate,
            covariate @ values,
        )

    def __add__(self, other: object) -> Moments:
        if not isinstance(other, Moments):
            return NotImplemented
        return Moments(*(getattr(self, name) + getattr(other, name) for name in _FIELDS))

    def __radd__(self, other: object) -> Moments:
        # builtins.sum starts from the integer 0.
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self
        return NotImplemented

    def _require(self, minimum: int, what: str) -> None:
        if self.n < minimum:
            raise ValueError(f"{what} needs n ≥ {minimum}, got n = {self.n:g}")

    @property
    def mean_y(self) -> float:
        """Σy / n. Raises ``ValueError`` when n = 0."""
        self._require(1, "mean_y")
        return self.sum_y / self.n

    @property
    def mean_x(self) -> float:
        """Σx / n. Raises ``ValueError`` when n = 0."""
        self._require(1, "mean_x")
        return self.sum_x / self.n

    @property
    def var_y(self) -> float:
        """Sample variance of y (ddof=1). Raises ``ValueError`` when n < 2."""
        return self._co_moment(self.sum_y, self.sum_y, self.sum_y2, "var_y")

    @property
    def var_x(self) -> float:
        """Sample variance of x (ddof=1). Raises ``ValueError`` when n < 2."""
        return self._co_moment(self.sum_x, self.sum_x, self.sum_x2, "var_x")

    @property
    def cov_xy(self) -> float:
        """Sample covariance of x and y (ddof=1). Raises ``ValueError`` when n < 2."""
        return self._co_moment(self.sum_x, self.sum_y, self.sum_xy, "cov_xy")

    def _centred_sums(self) -> tuple[float, float, float]:
        """``(Syy, Sxx, Sxy)``: centred sums of squares and products, squares at least 0."""
        syy = max(_centred(self.sum_y, self.sum_y, self.sum_y2, self.n)[0], 0.0)
        sxx = max(_centred(self.sum_x, self.sum_x, self.sum_x2, self.n)[0], 0.0)
        sxy = _centred(self.sum_x, self.sum_y, self.sum_xy, self.n)[0]
        return syy, sxx, sxy

    def _co_moment(self, total_a: float, total_b: float, total_ab: float, what: str) -> float:
        self._require(2, what)
        centred = _centred(total_a, total_b, total_ab, self.n)[0]
        if total_a is total_b:  # a variance: negative only by rounding (checked on construction)
            centred = max(centred, 0.0)
        return centred / (self.n - 1.0)


@dataclass(frozen=True)
class Interval:
    """A two-sided interval around an effect estimate (treated minus control, or a lift).

    Attributes:
        estimate: the point estimate.
        low: lower end of the interval.
        high: upper end.
        confidence: two-sided level, e.g. 0.95.
        p_value: two-sided p-value of H0: effect = 0; ``None`` where the method gives none (the
            percentile bootstrap), NaN where it is undefined (zero standard error).
        std_error: standard error of the estimate (for the bootstrap, the standard deviation
            of the replicates).
    """

    estimate: float
    low: float
    high: float
    confidence: float
    p_value: float | None = None
    std_error: float | None = None

    def excludes_zero(self) -> bool:
        """Whether the whole interval lies on one side of zero (either side)."""
        return self.low > 0.0 or self.high < 0.0


@dataclass(frozen=True)
class CupedResult:
    """A CUPED-adjusted difference of means and the unadjusted one it improves on.

    Attributes:
        theta: the regression coefficient of y on the covariate (0 when x does not vary).
        interval: Welch interval of the adjusted difference.
        unadjusted: Welch interval of the raw difference (:func:`welch_difference`).
        variance_reduction: ``1 - se_adjusted² / se_unadjusted²``, about the squared
            correlation of x and y; NaN when the unadjusted standard error is 0.
    """

    theta: float
    interval: Interval
    unadjusted: Interval
    variance_reduction: float


def _check_confidence(confidence: float) -> None:
    if isinstance(confidence, bool) or not isinstance(confidence, int | float | np.floating):
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def _check_group(moments: object, name: str, minimum: int = 2) -> Moments:
    if not isinstance(moments, Moments):
        raise ValueError(f"{name} must be Moments, got {type(moments).__name__}")
    if moments.n < minimum:
        raise ValueError(f"{name} needs n ≥ {minimum} for a variance, got n = {moments.n:g}")
    return moments


def _normal_interval(estimate: float, std_error: float, confidence: float) -> Interval:
    """Normal-approximation interval and two-sided p-value; zero width and NaN p at se = 0."""
    if std_error == 0.0:
        return Interval(estimate, estimate, estimate, confidence, math.nan, 0.0)
    low, high = stats.norm.interval(confidence, loc=estimate, scale=std_error)
    p_value = 2.0 * stats.norm.sf(abs(estimate) / std_error)
    return Interval(estimate, float(low), float(high), confidence, float(p_value), std_error)


def welch_difference(treated: Moments, control: Moments, confidence: float = 0.95) -> Interval:
    """Difference of means ``mean_t - mean_c`` with a Welch t interval and p-value.

    The standard error is ``sqrt(var_t / n_t + var_c / n_c)`` and the degrees of freedom the
    Welch–Satterthwaite approximation, so unequal arm sizes and variances (a 90/10 holdout
    split, a promotion that raises the spread of revenue) are handled; equals
    ``scipy.stats.ttest_ind(t, c, equal_var=False)`` on the per-unit values.

    Args:
        treated: moments of y in the promotion arm.
        control: moments of y in the holdout arm.
        confidence: two-sided level, strictly between 0 and 1.

    Returns:
        The interval with ``p_value`` (H0: equal means) and ``std_error``. When y is constant
        within both arms the standard error is 0: the interval has zero width at the estimate
        and the p-value is NaN (the t statistic is undefined).

    Raises:
        ValueError: ``confidence`` out of range, or an arm that is not :class:`Moments` or has
            n < 2.

    References:
        Welch (1947), "The generalization of 'Student's' problem when several different
        population variances are involved", Biometrika 34; Satterthwaite (1946), "An
        approximate distribution of estimates of variance components", Biometrics Bulletin 2.
    """
    _check_confidence(confidence)
    _check_group(treated, "treated")
    _check_group(control, "control")
    estimate = treated.mean_y - control.mean_y
    share_t = treated.var_y / treated.n
    share_c = control.var_y / control.n
    variance = share_t + share_c
    if variance == 0.0:
        return Interval(estimate, estimate, estimate, confidence, math.nan, 0.0)
    std_error = math.sqrt(variance)
    df = variance**2 / (share_t**2 / (treated.n - 1.0) + share_c**2 / (control.n - 1.0))
    low, high = stats.t.interval(confidence, df, loc=estimate, scale=std_error)
    p_value = 2.0 * stats.t.sf(abs(estimate) / std_error, df)
    return Interval(estimate, float(low), float(high), confidence, float(p_value), std_error)


def relative_lift(treated: Moments, control: Moments, confidence: float = 0.95) -> Interval:
    """Relative lift ``mean_t / mean_c - 1`` with a delta-method (normal) interval.

    The arms are independent, so the first-order variance of the ratio of means is
    ``var_t / (n_t mean_c²) + mean_t² var_c / (n_c mean_c⁴)``. It ignores the skew of the
    ratio, which matters only when the control mean is poorly determined (few units, or a
    mean near zero); a negative control mean makes the sign of the lift hard to read.

    Args:
        treated: moments of y in the promotion arm.
        control: moments of y in the holdout arm.
        confidence: two-sided level, strictly between 0 and 1.

    Returns:
        The interval with the two-sided normal p-value of H0: lift = 0 and the standard
        error; zero width and a NaN p-value when both arms have zero variance.

    Raises:
        ValueError: ``confidence`` out of range, an arm that is not :class:`Moments` or has
            n < 2, or a control mean of 0 (the lift is undefined).

    References:
        Deng, Knoblich & Lu (2018), "Applying the Delta Method in Metric Analytics: A
        Practical Guide with Novel Ideas", KDD; Kohavi, Tang & Xu (2020), *Trustworthy Online
        Controlled Experiments*, Cambridge University Press, ch. 18.
    """
    _check_confidence(confidence)
    _check_group(treated, "treated")
    _check_group(control, "control")
    mean_t, mean_c = treated.mean_y, control.mean_y
    if mean_c == 0.0:
        raise ValueError("control mean is 0: the relative lift is undefined")
    ratio = mean_t / mean_c
    variance = (treated.var_y / treated.n + ratio**2 * control.var_y / control.n) / mean_c**2
    return _normal_interval(ratio - 1.0, math.sqrt(variance), confidence)


def cuped_difference(treated: Moments, control: Moments, confidence: float = 0.95) -> CupedResult:
    """Difference of means adjusted by a pre-period covariate x (CUPED).

    Each unit's metric becomes ``y' = y - theta (x - mean_x)`` with one ``theta`` for both arms
    and ``mean_x`` the mean of x over both arms; x was fixed before randomization, so the
    adjustment keeps the estimate unbiased and removes the part of the variance that x
    explains. ``theta`` is the pooled within-arm regression slope::

        theta = (Sxy_t + Sxy_c) / (Sxx_t + Sxx_c),  S = sums of centred squares / products

    i.e. the slope of the OLS fit ``y ~ 1 + treated + x``, whose treatment coefficient the
    adjusted difference equals. The covariance of the two arms pooled *without* centring each
    arm would add a term ``n_t n_c / n (x̄_t - x̄_c)(ȳ_t - ȳ_c)`` driven by the treatment effect
    itself; separate slopes per arm would no longer cancel the shift of the x means.

    The moments of ``y'`` per arm follow from the raw sums (``n`` unchanged, sum
    ``n (ȳ - theta (x̄ - mean_x))``, centred sum of squares ``Syy - 2 theta Sxy + theta² Sxx``),
    and :func:`welch_difference` runs on them. The interval treats ``theta`` as known; its
    estimation error is of order 1/n and negligible for campaign-sized arms.

    Args:
        treated: moments of y and x in the promotion arm.
        control: moments of y and x in the holdout arm.
        confidence: two-sided level, strictly between 0 and 1.

    Returns:
        ``theta``, the adjusted and unadjusted Welch intervals, and the variance reduction.
        When x is constant within both arms (or was not given) ``theta`` is 0 and the adjusted
        interval equals the unadjusted one; when y is constant within both arms both intervals
        have zero width, NaN p-values, and the variance reduction is NaN.

    Raises:
        ValueError: ``confidence`` out of range, or an arm that is not :class:`Moments` or has
            n < 2.

    References:
        Deng, Xu, Kohavi & Walker (2013), "Improving the Sensitivity of Online Controlled
        Experiments by Utilizing Pre-Experiment Data", WSDM; Lin (2013), "Agnostic notes on
        regression adjustments to experimental data", Annals of Applied Statistics 7(1).
    """
    _check_confidence(confidence)
    _check_group(treated, "treated")
    _check_group(control, "control")
    sums_t, sums_c = treated._centred_sums(), control._centred_sums()
    sxx_within = sums_t[1] + sums_c[1]
    sxy_within = sums_t[2] + sums_c[2]
    theta = sxy_within / sxx_within if sxx_within > 0.0 else 0.0
    mean_x = (treated.sum_x + control.sum_x) / (treated.n + control.n)

    def adjusted(arm: Moments, sums: tuple[float, float, float]) -> Moments:
        syy, sxx, sxy = sums
        raw = syy + theta**2 * sxx
        # y = a + theta x exactly leaves pure rounding noise, which counts as 0.
        syy_adjusted = raw - 2.0 * theta * sxy
        if syy_adjusted <= _ROUNDING * raw:
            syy_adjusted = 0.0
        mean = arm.mean_y - theta * (arm.mean_x - mean_x)
        return Moments(arm.n, arm.n * mean, arm.n * mean**2 + syy_adjusted)

    interval = welch_difference(adjusted(treated, sums_t), adjusted(control, sums_c), confidence)
    unadjusted = welch_difference(treated, control, confidence)
    se_adjusted, se_unadjusted = interval.std_error, unadjusted.std_error
    if not se_unadjusted:  # 0.0: y constant within both arms (welch_difference sets it)
        reduction = math.nan
    else:
        reduction = 1.0 - (float(se_adjusted or 0.0) / se_unadjusted) ** 2
    return CupedResult(theta, interval, unadjusted, reduction)


def ratio_difference(treated: Moments, control: Moments, confidence: float = 0.95) -> Interval:
    """Difference ``R_t - R_c`` of ratio metrics ``R = Σy / Σx`` with delta-method errors.

    For a metric whose unit of analysis (an order) is not the unit of randomization (a user),
    e.g. revenue per order with y = a user's revenue and x = their number of orders. Orders of
    one user are correlated, so an order-level variance would be too small; the delta method
    over users gives::

        Var(R) ≈ (Var(y) - 2 R Cov(x, y) + R² Var(x)) / (n mean_x²)

    per arm (sample variances, ddof=1); the arms are independent, and the interval is normal.

    Args:
        treated: moments of y (numerator) and x (denominator) per user in the promotion arm.
        control: the same in the holdout arm.
        confidence: two-sided level, strictly between 0 and 1.

    Returns:
        The interval of ``R_t - R_c`` with the two-sided normal p-value and the standard
        error; zero width and a NaN p-value when ``y = R x`` for every user of both arms.

    Raises:
        ValueError: ``confidence`` out of range, an arm that is not :class:`Moments` or has
            n < 2, or an arm with ``sum_x == 0`` (its ratio is undefined).

    References:
        Deng, Knoblich & Lu (2018), "Applying the Delta Method in Metric Analytics: A
        Practical Guide with Novel Ideas", KDD.
    """
    _check_confidence(confidence)
    _check_group(treated, "treated")
    _check_group(control, "control")
    ratios, variances = [], []
    for name, arm in (("treated", treated), ("control", control)):
        if arm.sum_x == 0.0:
            raise ValueError(f"{name} has sum_x == 0: the ratio sum_y / sum_x is undefined")
        ratio = arm.sum_y / arm.sum_x
        syy, sxx, sxy = arm._centred_sums()
        raw = syy + ratio**2 * sxx
        # Var(y - R x): non-negative, so anything below is rounding.
        spread = raw - 2.0 * ratio * sxy
        if spread <= _ROUNDING * raw:
            spread = 0.0
        ratios.append(ratio)
        variances.append(spread / (arm.n - 1.0) / (arm.n * arm.mean_x**2))
    return _normal_interval(ratios[0] - ratios[1], math.sqrt(sum(variances)), confidence)


def _check_buckets(counts: ArrayLike, sums: ArrayLike, name: str) -> tuple[np.ndarray, np.ndarray]:
    n = np.asarray(counts, dtype=float)
    total = np.asarray(sums, dtype=float)
    if n.ndim != 1 or total.shape != n.shape:
        raise ValueError(
            f"{name}_n and {name}_sum must be 1-d of equal length, got {n.shape}, {total.shape}"
        )
    if len(n) < 2:
        raise ValueError(f"{name} needs at least 2 buckets to resample, got {len(n)}")
    if not (np.isfinite(n).all() and np.isfinite(total).all()):
        raise ValueError(f"{name}_n and {name}_sum must be finite (no NaN or infinity)")
    if (n < 0).any():
        raise ValueError(f"{name}_n must be non-negative counts")
    if (total[n == 0] != 0).any():
        raise ValueError(f"{name}_sum must be 0 in buckets where {name}_n is 0")
    if n.sum() == 0:
        raise ValueError(f"{name} has no units (every bucket count is 0)")
    return n, total


def bucket_bootstrap_difference(
    treated_n: ArrayLike,
    treated_sum: ArrayLike,
    control_n: ArrayLike,
    control_sum: ArrayLike,
    samples: int,
    confidence: float,
    seed: int,
) -> Interval:
    """Percentile interval of ``mean_t - mean_c`` by a Poisson bootstrap over hash buckets.

    Users are hashed into B buckets per arm (``hash(user_id) % 512`` in SQL) and only the
    count and the sum of y per bucket reach Python. Buckets hold independent users, so
    resampling buckets resamples users in blocks; each replicate gives every bucket a
    Poisson(1) weight, and an arm's mean is ``Σ w·sum / Σ w·n``. Treated and control buckets
    get independent weights: the arms are independent samples, and shared weights on the
    same bucket ids would cancel part of the variance of the difference.

    All replicates come from one ``(samples × B)`` weight matrix per arm (treated first, then
    control, from ``default_rng(seed)``), so memory is ``16 · samples · B`` bytes, e.g. 16 MB
    for 2,000 replicates of 512 buckets. A replicate whose weights miss every non-empty
    bucket of an arm has no mean and is dropped.

    Args:
        treated_n: units per bucket in the promotion arm.
        treated_sum: Σ y per bucket in the promotion arm, aligned with ``treated_n``.
        control_n: units per bucket in the holdout arm (its bucket count may differ).
        control_sum: Σ y per bucket in the holdout arm.
        samples: number of bootstrap replicates, at least 1.
        confidence: two-sided level, strictly between 0 and 1.
        seed: seed of the Poisson weights; equal seeds give equal intervals.

    Returns:
        The full-data difference, its percentile interval, ``p_value=None`` (use
        :func:`welch_difference` for a test) and ``std_error`` = the standard deviation of the
        replicates (NaN with a single one).

    Raises:
        ValueError: ``samples`` or ``confidence`` out of range; an arm's arrays not 1-d and
            aligned, fewer than 2 buckets, non-finite values, negative counts, a non-zero sum
            in an empty bucket, or no units at all; or no replicate defined.

    References:
        Chamandy, Muralidharan, Najmi & Naidu (2012), "Estimating Uncertainty for Massive
        Data Streams", Google technical report (Poisson bootstrap); Efron & Tibshirani (1993),
        *An Introduction to the Bootstrap*, Chapman & Hall, ch. 13 (percentile intervals).
    """
    if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    _check_confidence(confidence)
    t_n, t_sum = _check_buckets(treated_n, treated_sum, "treated")
    c_n, c_sum = _check_buckets(control_n, control_sum, "control")

    rng = np.random.default_rng(seed)
    weights_t = rng.poisson(1.0, size=(samples, len(t_n))).astype(float)
    weights_c = rng.poisson(1.0, size=(samples, len(c_n))).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0: a replicate with no units
        draws = (weights_t @ t_sum) / (weights_t @ t_n) - (weights_c @ c_sum) / (weights_c @ c_n)
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        raise ValueError(f"no replicate of the {samples} had units in both arms")
    estimate = float(t_sum.sum() / t_n.sum() - c_sum.sum() / c_n.sum())
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha])
    spread = float(draws.std(ddof=1)) if len(draws) > 1 else math.nan
    return Interval(estimate, float(low), float(high), confidence, None, spread)


def adjust_p_values(p_values: ArrayLike, method: Literal["holm", "bh"]) -> np.ndarray:
    """p-values adjusted for testing many segments or metrics at once, in the input order.

    ``"holm"`` controls the family-wise error rate (the chance of any false positive) under
    any dependence: sorted ascending, the i-th of m (from 0) becomes
    ``max_{j ≤ i} (m - j) p_(j)``, capped at 1. ``"bh"`` controls the false discovery rate
    (the expected share of false positives among the rejections) for independent or positively
    dependent tests, via ``scipy.stats.false_discovery_control``.

    Args:
        p_values: 1-d p-values in [0, 1]; may be empty.
        method: ``"holm"`` or ``"bh"``.

    Returns:
        The adjusted p-values, float, same length and order as the input; reject where the
        adjusted value is at most the level.

    Raises:
        ValueError: an unknown method, input not 1-d, or a p-value NaN or outside [0, 1].

    References:
        Holm (1979), "A simple sequentially rejective multiple test procedure", Scandinavian
        Journal of Statistics 6(2); Benjamini & Hochberg (1995), "Controlling the false
        discovery rate", JRSS B 57(1).
    """
    if method not in ("holm", "bh"):
        raise ValueError(f"method must be 'holm' or 'bh', got {method!r}")
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"p_values must be 1-d, got shape {p.shape}")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("p_values must lie in [0, 1] without NaN")
    if len(p) == 0:
        return p.copy()
    if method == "bh":
        return np.asarray(stats.false_discovery_control(p, method="bh"), dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    scaled = (m - np.arange(m)) * p[order]
    # The running maximum keeps the step-down monotone: a smaller p never gets a larger value.
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def sample_ratio_mismatch(
    observed: Mapping[str, int], expected_shares: Mapping[str, float]
) -> tuple[float, float]:
    """Chi-square goodness-of-fit test of the arms' sizes against their designed shares.

    A mismatch (more users in one arm than the design gives) means assignment or logging is
    broken, and every effect estimate of the campaign is suspect; a p-value below about 0.001
    is the usual alarm. E.g. a 50/50 split observed at 50,000 / 53,000 has p ≈ 1e-20, while
    5,000 / 5,300 has p ≈ 0.003.

    Args:
        observed: units per arm, non-negative integers.
        expected_shares: designed share per arm, positive; normalised to sum to 1, so
            ``{"holdout": 1, "promo": 9}`` means a 10/90 split.

    Returns:
        ``(statistic, p_value)`` of ``scipy.stats.chisquare`` with ``len(arms) - 1`` degrees
        of freedom.

    Raises:
        ValueError: the two mappings name different arms, fewer than 2 arms, a count that is
            not a non-negative integer, no units at all, or a share that is not finite and
            positive.

    References:
        Fabijan et al. (2019), "Diagnosing Sample Ratio Mismatch in Online Controlled
        Experiments", KDD.
    """
    missing = sorted(set(expected_shares) - set(observed))
    extra = sorted(set(observed) - set(expected_shares))
    if missing or extra:
        raise ValueError(
            "observed and expected_shares must name the same arms; "
            f"missing from observed: {missing}, missing from expected_shares: {extra}"
        )
    arms = list(observed)
    if len(arms) < 2:
        raise ValueError(f"need at least 2 arms, got {arms}")
    counts = np.array([observed[arm] for arm in arms], dtype=float)
    if not np.isfinite(counts).all() or (counts < 0).any() or (counts != np.round(counts)).any():
        raise ValueError(f"observed counts must be non-negative integers, got {dict(observed)}")
    if counts.sum() == 0:
        raise ValueError("observed counts are all 0")
    shares = np.array([expected_shares[arm] for arm in arms], dtype=float)
    if not np.isfinite(shares).all() or (shares <= 0).any():
        raise ValueError(
            f"expected_shares must be finite and positive, got {dict(expected_shares)}"
        )
    expected = shares / shares.sum() * counts.sum()
    result = stats.chisquare(counts, expected)
    return float(result.statistic), float(result.pvalue)
