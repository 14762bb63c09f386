"""Metrics of uplift models on randomized campaign data (a control arm and promotion arms).

An uplift model ranks users by the predicted effect of a promotion, not by their chance to
buy. Its quality can only be read from a randomized holdout: the outcome of a user is seen
under one arm only, so every metric here compares treated and control users *among the
users the model ranks highest*. All are pure numpy and handle tied scores as one group (a
threshold cannot separate rows with equal scores, so the curves have a point per distinct
score, not per row).

One treatment against control (``y`` 0/1, ``treated`` 0/1):

* :func:`qini_curve` and :func:`qini_coefficient`: incremental responders among the treated
  users of the top-ranked share, Radcliffe's Qini, normalized as scikit-uplift's
  ``qini_auc_score``;
* :func:`uplift_curve` and :func:`auuc`: the uplift curve of Rzepakowski & Jaroszewicz and its
  area, normalized as scikit-uplift's ``uplift_auc_score``;
* :func:`uplift_at_k`: treated minus control response rate in the top k, as scikit-uplift;
* :func:`true_effect_qini`: where the true effects are known (the simulator), the area of
  their gain curve by predicted ranking, free of outcome noise;
* :func:`uplift_decile_calibration`: predicted against realized uplift per bin of prediction;
* :class:`QiniStatistic`: the normalized Qini as a
  :class:`~flashsale_ml.evaluation.bootstrap.PairedStatistic`, so promotion gates can run
  :func:`~flashsale_ml.evaluation.bootstrap.paired_bootstrap` on uplift models.

Several promotion arms with different costs:

* :func:`cost_aware_multi_arm_qini`: the cumulative spend against the incremental value of
  giving each user the arm with the best predicted value per unit of cost.

Conventions follow scikit-uplift 0.5 (tests compare against it where it is installed): a term
``Y_C · N_T / N_C`` whose control count is still 0 counts as 0, and the same for the rates
of the uplift curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from flashsale_ml.errors import DataError
from flashsale_ml.evaluation.bootstrap import WeightedStatistic, check_finite_rows

Strategy = Literal["overall", "by_group"]


def _check_uplift_inputs(
    y: ArrayLike, treated: ArrayLike, scores: ArrayLike, score_name: str = "scores"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """0/1 outcomes, 0/1 group and finite scores of one length with both groups, as floats.

    Raises:
        ValueError: not 1-d of equal length, empty, ``y`` or ``treated`` not 0/1, a score NaN
            or infinite, or no treated or no control rows.
    """
    y_arr = np.asarray(y, dtype=float)
    t_arr = np.asarray(treated, dtype=float)
    s_arr = np.asarray(scores, dtype=float)
    if y_arr.ndim != 1 or t_arr.shape != y_arr.shape or s_arr.shape != y_arr.shape:
        raise ValueError(
            f"y, treated and {score_name} must be 1-d of equal length (aligned rows), "
            f"got {y_arr.shape}, {t_arr.shape}, {s_arr.shape}"
        )
    if len(y_arr) == 0:
        raise ValueError("cannot evaluate an empty set")
    if not np.isin(y_arr, (0.0, 1.0)).all():
        raise ValueError("y must contain only 0 and 1 (a binary outcome)")
    if not np.isin(t_arr, (0.0, 1.0)).all():
        raise ValueError("treated must contain only 0 (control) and 1 (treated)")
    if not np.isfinite(s_arr).all():
        raise ValueError(f"{score_name} must be finite (no NaN or infinity)")
    _check_both_groups(t_arr)
    return y_arr, t_arr, s_arr


def _check_both_groups(t: np.ndarray) -> None:
    """Raise :class:`~flashsale_ml.errors.DataError` unless both groups have rows: the data
    cannot measure an uplift, and no retry will change that."""
    treated_rows = int(t.sum())
    if treated_rows == 0:
        raise DataError(
            f"no treated rows (treated is all 0 on {len(t)} rows): uplift needs both groups"
        )
    if treated_rows == len(t):
        raise DataError(
            f"no control rows (treated is all 1 on {len(t)} rows): uplift needs both groups"
        )


def _undefined_qini(y: np.ndarray, t: np.ndarray, name: str = "Qini", hint: str = "") -> DataError:
    """The error of a normalized Qini (or AUUC) that the rows cannot define: it names the rows
    and the buyers of each group, so the message says what is wrong with the data."""
    treated = t == 1
    buyers_control = int(y[~treated].sum())
    buyers_treated = int(y[treated].sum())
    if buyers_control == 0 and buyers_treated == 0:
        why = "no buyers in control and treated"
    else:
        why = "the perfect ranking's curve does not rise above the random line"
    return DataError(
        f"the normalized {name} is undefined on these {len(y)} rows: {why} "
        f"({buyers_treated} buyers among {int(treated.sum())} treated rows, "
        f"{buyers_control} among {int((~treated).sum())} control rows){hint}"
    )


def _check_n_points(n_points: int | None) -> None:
    if n_points is None:
        return
    if isinstance(n_points, bool) or not isinstance(n_points, int | np.integer) or n_points < 2:
        raise ValueError(f"n_points must be None or an integer of at least 2, got {n_points!r}")


def _ratio_or_zero(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, 0 where the denominator is 0 (scikit-uplift's convention)."""
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator != 0)


class _RankedUplift:
    """Rows sorted once by descending score, in groups of tied scores.

    Every curve here is evaluated at the end of each group; weights (bootstrap multiplicities)
    only change the sums per group, so a weighted curve costs O(n) after the one sort.
    """

    def __init__(self, y: np.ndarray, t: np.ndarray, scores: np.ndarray) -> None:
        # Within a group the order does not matter: only the group's sums reach a curve.
        self.order = np.argsort(-scores, kind="stable")
        ordered = scores[self.order]
        self.starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        self.has_ties = len(self.starts) < len(ordered)
        self.y = y[self.order]
        self.t = t[self.order]

    def cumulative(self, weights: np.ndarray | None) -> tuple[np.ndarray, ...]:
        """``(n_all, n_t, y_t, n_c, y_c)``: weighted counts and responders down to each group."""
        w = np.ones(len(self.y)) if weights is None else weights[self.order]
        w_t = w * self.t
        w_c = w - w_t
        sums = (w, w_t, w_t * self.y, w_c, w_c * self.y)
        if not self.has_ties:  # every row its own group (continuous scores): skip reduceat
            return tuple(np.cumsum(s) for s in sums)
        return tuple(np.cumsum(np.add.reduceat(s, self.starts)) for s in sums)

    def qini(self, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Targeted weight and Qini ``Y_T − Y_C · N_T / N_C`` at the end of each group."""
        n_all, n_t, y_t, n_c, y_c = self.cumulative(weights)
        return n_all, y_t - y_c * _ratio_or_zero(n_t, n_c)

    def uplift(self, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Targeted weight and ``(Y_T / N_T − Y_C / N_C) · N`` at the end of each group."""
        n_all, n_t, y_t, n_c, y_c = self.cumulative(weights)
        return n_all, (_ratio_or_zero(y_t, n_t) - _ratio_or_zero(y_c, n_c)) * n_all


def _area_above_random(targeted: np.ndarray, gains: np.ndarray) -> float:
    """Area between a gain curve and its random line, both axes as shares of the population.

    Args:
        targeted: (weighted) rows targeted at the end of each group, ascending.
        gains: the curve there (incremental responders).

    Returns:
        ``∫ (curve − random) dx`` over x in [0, 1] with the curve divided by the population,
        by the trapezoid rule from the origin; NaN when the population has no weight.
    """
    total = targeted[-1]
    if total <= 0:
        return math.nan
    x = np.r_[0.0, targeted / total]
    v = np.r_[0.0, gains / total]
    # The random line runs from (0, 0) to (1, v[-1]): its area is v[-1] / 2.
    return float(np.trapezoid(v, x) - 0.5 * v[-1])


def _perfect_qini_scores(y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The ideal Qini ranking with negative effects (scikit-uplift's ``perfect_qini_curve``):
    treated responders first, control responders last, every non-responder in between."""
    return y * t - y * (1.0 - t)


def _perfect_uplift_scores(y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The ideal uplift ranking of scikit-uplift's ``perfect_uplift_curve``."""
    control_responders = float(((y == 1) & (t == 0)).sum())
    treated_non_responders = float(((y == 0) & (t == 1)).sum())
    summand = y if control_responders > treated_non_responders else t
    return 2.0 * (y == t) + summand


def _interpolated(
    fraction: np.ndarray, values: np.ndarray, n_points: int | None
) -> tuple[np.ndarray, np.ndarray]:
    if n_points is None:
        return fraction, values
    grid = np.linspace(0.0, 1.0, n_points)
    return grid, np.interp(grid, fraction, values)


@dataclass(frozen=True)
class QiniCurve:
    """Incremental responders among the treated users of each top-ranked share.

    Attributes:
        fraction: share of the rows targeted, ascending from 0 to 1 (one point per group of
            tied scores, or ``n_points`` evenly spaced ones).
        qini: Qini value ``Y_T − Y_C · N_T / N_C`` there, in responders (0 at fraction 0).
        random: the line of random targeting, ``fraction · qini[-1]``.
        rows: number of rows evaluated (``fraction · rows`` gives scikit-uplift's x axis).
    """

    fraction: np.ndarray
    qini: np.ndarray
    random: np.ndarray
    rows: int


@dataclass(frozen=True)
class UpliftCurve:
    """Cumulative uplift ``(Y_T / N_T − Y_C / N_C) · N`` of each top-ranked share.

    Attributes:
        fraction: share of the rows targeted, ascending from 0 to 1.
        uplift: response-rate difference among the targeted rows times their number.
        random: the line of random targeting, ``fraction · uplift[-1]``.
        rows: number of rows evaluated.
    """

    fraction: np.ndarray
    uplift: np.ndarray
    random: np.ndarray
    rows: int


def qini_curve(
    y: ArrayLike, treated: ArrayLike, uplift_scores: ArrayLike, n_points: int | None = None
) -> QiniCurve:
    """Qini curve of one treatment against control: incremental responders by share targeted.

    Rows are ranked by descending predicted uplift; for the top t rows, with ``N_T(t)``,
    ``N_C(t)`` treated and control rows and ``Y_T(t)``, ``Y_C(t)`` responders among them,
    ``Qini(t) = Y_T(t) − Y_C(t) · N_T(t) / N_C(t)``: the treated responders minus those the
    control rate says would have bought anyway. Tied scores form one group (one point at its
    end), so the curve does not depend on the order of tied rows. Equals scikit-uplift's
    ``qini_curve`` with the x axis divided by the number of rows.

    Args:
        y: 0/1 outcomes.
        treated: 1 for rows of the treatment arm, 0 for the control arm.
        uplift_scores: predicted uplift (any real scores; only their order matters).
        n_points: ``None`` for the exact curve (one point per distinct score), or the number
            of evenly spaced fractions in [0, 1] to interpolate it at (plots, storage).

    Returns:
        The curve, starting at (0, 0), and its random line.

    Raises:
        ValueError: misaligned or empty inputs, ``y`` or ``treated`` not 0/1, scores NaN or
            infinite, no treated or no control rows, or ``n_points`` below 2.

    References:
        Radcliffe (2007), "Using control groups to target on predicted lift: Building and
        assessing uplift models", Direct Marketing Analytics Journal (1); scikit-uplift 0.5,
        ``sklift.metrics.qini_curve``.
    """
    y_arr, t_arr, s_arr = _check_uplift_inputs(y, treated, uplift_scores, "uplift_scores")
    _check_n_points(n_points)
    targeted, gains = _RankedUplift(y_arr, t_arr, s_arr).qini()
    fraction, values = _interpolated(np.r_[0.0, targeted / len(y_arr)], np.r_[0.0, gains], n_points)
    return QiniCurve(fraction, values, fraction * values[-1], len(y_arr))


def _area(
    y: ArrayLike,
    treated: ArrayLike,
    scores: ArrayLike,
    normalized: bool,
    curve,
    perfect_scores,
    name: str,
) -> float:
    """Area of ``curve`` (:meth:`_RankedUplift.qini` or :meth:`_RankedUplift.uplift`) above
    random targeting, normalized by the area of the ranking ``perfect_scores`` gives."""
    y_arr, t_arr, s_arr = _check_uplift_inputs(y, treated, scores)
    area = _area_above_random(*curve(_RankedUplift(y_arr, t_arr, s_arr)))
    if not normalized:
        return area
    perfect = _area_above_random(*curve(_RankedUplift(y_arr, t_arr, perfect_scores(y_arr, t_arr))))
    if not perfect > 0:
        raise _undefined_qini(y_arr, t_arr, name, "; use normalized=False")
    return area / perfect


def qini_coefficient(
    y: ArrayLike, treated: ArrayLike, scores: ArrayLike, normalized: bool = True
) -> float:
    """Area between the Qini curve and the random line, optionally as a share of the perfect.

    Unnormalized, the area is taken with both axes as shares of the population (x the share
    targeted, y the incremental responders per row of the population), so it does not grow
    with the number of rows: 0 for random targeting, negative when the model ranks the users
    the promotion hurts first. Normalized, it is divided by the same area of the perfect
    ranking with negative effects allowed (treated responders first, control responders last),
    which is scikit-uplift's ``qini_auc_score(..., negative_effect=True)``. Constant scores
    give exactly 0 (one group: the curve is the random line).

    Args:
        y: 0/1 outcomes.
        treated: 1 for treated rows, 0 for control rows.
        scores: predicted uplift.
        normalized: divide by the perfect ranking's area.

    Returns:
        The (normalized) Qini coefficient. The perfect ranking is scikit-uplift's convention,
        not a proven optimum of the ratio estimator, so a normalized value can exceed 1 on
        small samples.

    Raises:
        ValueError: as :func:`qini_curve`.
        DataError: (a ``ValueError``) no treated or no control rows; or, normalized, when the
            perfect ranking's area is not positive (e.g. no buyers in control and treated), so
            the ratio is undefined; the message counts each group's rows and buyers.

    References:
        Radcliffe (2007), "Using control groups to target on predicted lift: Building and
        assessing uplift models", Direct Marketing Analytics Journal (1); scikit-uplift 0.5,
        ``sklift.metrics.qini_auc_score``.
    """
    return _area(y, treated, scores, normalized, _RankedUplift.qini, _perfect_qini_scores, "Qini")


def uplift_curve(
    y: ArrayLike, treated: ArrayLike, uplift_scores: ArrayLike, n_points: int | None = None
) -> UpliftCurve:
    """Uplift curve: the response-rate difference among the top-ranked rows times their number.

    For the top t rows, ``U(t) = (Y_T(t) / N_T(t) − Y_C(t) / N_C(t)) · t`` (a rate whose group
    is still empty counts as 0). Unlike the Qini curve it scales the difference of *rates* by
    all targeted rows, so it is the incremental responders had every targeted user been
    treated. Tied scores form one group. Equals scikit-uplift's ``uplift_curve`` with the x
    axis divided by the number of rows.

    Args:
        y: 0/1 outcomes.
        treated: 1 for treated rows, 0 for control rows.
        uplift_scores: predicted uplift.
        n_points: ``None`` for one point per distinct score, or the number of evenly spaced
            fractions in [0, 1] to interpolate the curve at.

    Returns:
        The curve, starting at (0, 0), and its random line.

    Raises:
        ValueError: as :func:`qini_curve`.

    References:
        Rzepakowski & Jaroszewicz (2012), "Decision trees for uplift modeling with single and
        multiple treatments", Knowledge and Information Systems 32(2); scikit-uplift 0.5,
        ``sklift.metrics.uplift_curve``.
    """
    y_arr, t_arr, s_arr = _check_uplift_inputs(y, treated, uplift_scores, "uplift_scores")
    _check_n_points(n_points)
    targeted, gains = _RankedUplift(y_arr, t_arr, s_arr).uplift()
    fraction, values = _interpolated(np.r_[0.0, targeted / len(y_arr)], np.r_[0.0, gains], n_points)
    return UpliftCurve(fraction, values, fraction * values[-1], len(y_arr))


def auuc(y: ArrayLike, treated: ArrayLike, scores: ArrayLike, normalized: bool = True) -> float:
    """Area between the uplift curve and its random line, optionally as a share of the perfect.

    Unnormalized, both axes are shares of the population, as in :func:`qini_coefficient`.
    Normalized, the area is divided by that of scikit-uplift's perfect uplift ranking, which
    is ``uplift_auc_score``.

    Args:
        y: 0/1 outcomes.
        treated: 1 for treated rows, 0 for control rows.
        scores: predicted uplift.
        normalized: divide by the perfect ranking's area.

    Returns:
        The (normalized) area under the uplift curve above random targeting.

    Raises:
        ValueError: as :func:`qini_curve`; or, normalized, when the perfect ranking's area is
            not positive, so the ratio is undefined.

    References:
        Rzepakowski & Jaroszewicz (2012), "Decision trees for uplift modeling with single and
        multiple treatments", Knowledge and Information Systems 32(2); scikit-uplift 0.5,
        ``sklift.metrics.uplift_auc_score``.
    """
    return _area(
        y, treated, scores, normalized, _RankedUplift.uplift, _perfect_uplift_scores, "AUUC"
    )


def true_effect_qini(true_effects: ArrayLike, scores: ArrayLike, normalized: bool = True) -> float:
    """Area of the gain curve of the users' *true* effects above random, by predicted ranking.

    Where each user's effect is known (a simulator's ground truth), the ranking can be scored
    without outcome noise: targeting the top share ``x`` by ``scores`` gains the sum of the
    targeted users' true effects, ``G(x)``. This is the expectation of the uplift curve
    (:func:`uplift_curve`) over the randomization and the outcomes, so the unnormalized area
    is what :func:`auuc` with ``normalized=False`` estimates from one noisy campaign (the
    tests check the two agree on a large sample); the expected Qini curve is the same gain
    times the treated share. Normalized, it is divided by the area of the oracle ranking
    (by the true effects), so that factor cancels: 1 for a perfect ranking, 0 for random or
    constant scores, negative when the users with the lowest effects come first. Tied scores
    form one group (the curve has a point per distinct score).

    Args:
        true_effects: each user's true effect (e.g. incremental purchase probability).
        scores: predicted effect, one per user.
        normalized: divide by the oracle ranking's area.

    Returns:
        The (normalized) area, with both axes as shares of the users.

    Raises:
        ValueError: as :func:`~flashsale_ml.evaluation.bootstrap.check_finite_rows` (inputs
            of different lengths, empty, not one-dimensional or not finite).
        DataError: (a ``ValueError``) normalized, when every user has the same true effect,
            so no ranking beats random and the ratio is undefined.

    References:
        Rzepakowski & Jaroszewicz (2012), "Decision trees for uplift modeling with single and
        multiple treatments", Knowledge and Information Systems 32; Devriendt, Moldovan &
        Verbeke (2018), "A literature survey and experimental evaluation of the state-of-the-art
        in uplift modeling", Big Data 6(1) (uplift curves on data with known effects).
    """
    effects = np.asarray(true_effects, dtype=float)
    predicted = np.asarray(scores, dtype=float)
    check_finite_rows(effects, predicted)
    everyone = np.ones_like(effects)  # every user counts as targeted: the gains sum effects

    def area_of(ranking: np.ndarray) -> float:
        targeted, _, gains, _, _ = _RankedUplift(effects, everyone, ranking).cumulative(None)
        return _area_above_random(targeted, gains)

    area = area_of(predicted)
    if not normalized:
        return area
    oracle = area_of(effects)
    if not oracle > 0:
        raise DataError(
            f"true_effect_qini: all {len(effects)} users have the same true effect "
            f"({effects[0]:g}), so no ranking beats random; use normalized=False"
        )
    return area / oracle


def uplift_at_k(
    y: ArrayLike,
    treated: ArrayLike,
    scores: ArrayLike,
    k: float | int = 0.3,
    strategy: Strategy = "overall",
) -> float:
    """Treated minus control response rate among the rows with the top k predicted uplift.

    ``"overall"`` takes the top k of all rows and compares the treated and the control rows
    among them; ``"by_group"`` takes the top k of the treated rows and the top k of the
    control rows separately (k as a share of each group's size). Rows are ordered as
    scikit-uplift orders them (descending score, tied rows later in the input first), so the
    cut through a group of tied scores is deterministic and the value equals scikit-uplift's
    ``uplift_at_k``.

    Args:
        y: 0/1 outcomes.
        treated: 1 for treated rows, 0 for control rows.
        scores: predicted uplift.
        k: a share in (0, 1) (the top ``int(k · n)`` rows) or a row count in [1, n).
        strategy: ``"overall"`` or ``"by_group"``.

    Returns:
        The difference of response rates in the top k.

    Raises:
        ValueError: as :func:`qini_curve`; an unknown strategy; k out of range; or a top k
            with no treated or no control row (scikit-uplift returns NaN there), or larger
            than a group (``"by_group"`` with an integer k).

    References:
        scikit-uplift 0.5, ``sklift.metrics.uplift_at_k``; Gutierrez & Gérardy (2017), "Causal
        Inference and Uplift Modelling: A Review of the Literature", PMLR 67.
    """
    y_arr, t_arr, s_arr = _check_uplift_inputs(y, treated, scores)
    if strategy not in ("overall", "by_group"):
        raise ValueError(f"strategy must be 'overall' or 'by_group', got {strategy!r}")
    n = len(y_arr)
    is_count = isinstance(k, int | np.integer) and not isinstance(k, bool)
    if is_count:
        if not 0 < k < n:
            raise ValueError(f"k={k} as a row count must lie in [1, {n - 1}]")
    elif isinstance(k, bool) or not isinstance(k, float | np.floating) or not 0.0 < k < 1.0:
        raise ValueError(f"k must be a share in (0, 1) or a positive row count, got {k!r}")

    order = np.argsort(s_arr, kind="mergesort")[::-1]
    y_sorted, t_sorted = y_arr[order], t_arr[order]
    if strategy == "overall":
        size = int(k) if is_count else int(n * k)
        top_y, top_t = y_sorted[:size], t_sorted[:size]
        treated_top, control_top = top_y[top_t == 1], top_y[top_t == 0]
    else:
        treated_y, control_y = y_sorted[t_sorted == 1], y_sorted[t_sorted == 0]
        if is_count:
            n_treated = n_control = int(k)
            for name, group in (("treated", treated_y), ("control", control_y)):
                if k > len(group):
                    raise ValueError(f"k={k} exceeds the {len(group)} rows of the {name} group")
        else:
            n_treated, n_control = int(len(treated_y) * k), int(len(control_y) * k)
        treated_top, control_top = treated_y[:n_treated], control_y[:n_control]
    for name, group in (("treated", treated_top), ("control", control_top)):
        if len(group) == 0:
            raise ValueError(
                f"the top k={k} ({strategy}) has no {name} rows; uplift@k is undefined"
            )
    return float(treated_top.mean() - control_top.mean())


@dataclass(frozen=True)
class UpliftCalibration:
    """Mean predicted against realized uplift in equal-count bins of ascending prediction.

    Attributes:
        mean_predicted: mean predicted uplift of the rows in each bin.
        realized_uplift: treated response rate minus control response rate in the bin; NaN
            where the bin has no treated or no control row.
        rows: rows per bin.
        treated_rows: treated rows per bin.
        control_rows: control rows per bin.
    """

    mean_predicted: np.ndarray
    realized_uplift: np.ndarray
    rows: np.ndarray
    treated_rows: np.ndarray
    control_rows: np.ndarray

    def calibration_error(self) -> float:
        """``Σ_b n_b · |realized_b − predicted_b| / Σ_b n_b`` over bins with both groups.

        NaN when no bin has both groups.
        """
        defined = ~np.isnan(self.realized_uplift)
        if not defined.any():
            return math.nan
        gaps = np.abs(self.realized_uplift[defined] - self.mean_predicted[defined])
        weights = self.rows[defined]
        return float(weights @ gaps / weights.sum())


def uplift_decile_calibration(
    y: ArrayLike, treated: ArrayLike, predicted_uplift: ArrayLike, bins: int = 10
) -> UpliftCalibration:
    """Predicted against realized uplift per equal-count bin of predicted uplift.

    Rows are sorted by ascending prediction and split into ``min(bins, n)`` bins of equal size
    (sizes differ by at most one row); randomization makes the treated and control rows of a
    bin comparable, so the difference of their response rates estimates the bin's true
    uplift. A calibrated model's bins lie on the diagonal; their sampling noise is about
    ``sqrt(p(1−p) (1/n_t + 1/n_c))`` per bin.

    Args:
        y: 0/1 outcomes.
        treated: 1 for treated rows, 0 for control rows.
        predicted_uplift: predicted difference of purchase probability (treated − control).
        bins: number of bins, a positive integer (10 for deciles).

    Returns:
        Per bin the mean prediction, the realized uplift and the counts;
        :meth:`UpliftCalibration.calibration_error` summarizes the gaps.

    Raises:
        ValueError: as :func:`qini_curve` (``predicted_uplift`` for the scores), or ``bins``
            not a positive integer.

    References:
        Naeini, Cooper & Hauskrecht (2015), "Obtaining Well Calibrated Probabilities Using
        Bayesian Binning", AAAI (equal-mass bins, the weighted absolute gap); Radcliffe &
        Surry (2011), "Real-World Uplift Modelling with Significance-Based Uplift Trees",
        Stochastic Solutions white paper (uplift by predicted-uplift segment).
    """
    y_arr, t_arr, p_arr = _check_uplift_inputs(y, treated, predicted_uplift, "predicted_uplift")
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    order = np.argsort(p_arr, kind="stable")
    parts = min(int(bins), len(p_arr))  # so that no bin is empty
    bounds = np.array_split(np.arange(len(p_arr)), parts)
    starts = np.array([b[0] for b in bounds])
    y_s, t_s, p_s = y_arr[order], t_arr[order], p_arr[order]
    rows = np.add.reduceat(np.ones_like(p_s), starts)
    treated_rows = np.add.reduceat(t_s, starts)
    control_rows = rows - treated_rows
    treated_hits = np.add.reduceat(y_s * t_s, starts)
    control_hits = np.add.reduceat(y_s * (1.0 - t_s), starts)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0: a bin without one group
        realized = treated_hits / treated_rows - control_hits / control_rows
    realized[(treated_rows == 0) | (control_rows == 0)] = math.nan
    return UpliftCalibration(
        mean_predicted=np.add.reduceat(p_s, starts) / rows,
        realized_uplift=realized,
        rows=rows,
        treated_rows=treated_rows,
        control_rows=control_rows,
    )


@dataclass(frozen=True)
class CostValueCurve:
    """Cumulative spend against estimated incremental value down a cost-aware ranking.

    Attributes:
        spend: cost of the arms given to the matched treated rows targeted so far (see
            :func:`cost_aware_multi_arm_qini`), from 0.
        value: estimated incremental value of those rows, from 0.
        random_value: the reference of targeting the same users, each with the same arm, in
            random order: ``value[-1] · spend / spend[-1]`` (0 when nothing is spent).
        targeted: users ranked so far (any observed arm), from 0.
        recommended_arm: per input row, the arm code chosen for the user, or the control code
            where no arm has a positive predicted value (the user is not targeted).
        value_per_cost: per input row, the best predicted value per unit of cost (the ranking
            key).
    """

    spend: np.ndarray
    value: np.ndarray
    random_value: np.ndarray
    targeted: np.ndarray
    recommended_arm: np.ndarray
    value_per_cost: np.ndarray


def _check_multi_arm_inputs(
    y_value: ArrayLike,
    arm_codes: ArrayLike,
    predicted_value_uplift: ArrayLike,
    costs: ArrayLike,
    control_code: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validated arrays and the arm code of each column of the predictions."""
    y = np.asarray(y_value, dtype=float)
    arms = np.asarray(arm_codes, dtype=float)
    predicted = np.asarray(predicted_value_uplift, dtype=float)
    cost = np.asarray(costs, dtype=float)
    if y.ndim != 1 or arms.shape != y.shape:
        raise ValueError(
            f"y_value and arm_codes must be 1-d of equal length, got {y.shape}, {arms.shape}"
        )
    if len(y) == 0:
        raise ValueError("cannot evaluate an empty set")
    if predicted.ndim != 2 or predicted.shape[0] != len(y) or predicted.shape[1] < 1:
        raise ValueError(
            "predicted_value_uplift must be n × K (one column per promotion arm) with n = "
            f"{len(y)} rows, got shape {predicted.shape}"
        )
    n_arms = predicted.shape[1]
    if cost.shape != (n_arms,):
        raise ValueError(f"costs must hold one cost per arm, shape ({n_arms},), got {cost.shape}")
    if not np.isfinite(y).all():
        raise ValueError("y_value must be finite (no NaN or infinity)")
    if not np.isfinite(predicted).all():
        raise ValueError("predicted_value_uplift must be finite (no NaN or infinity)")
    if not np.isfinite(cost).all() or (cost <= 0).any():
        raise ValueError(f"costs must be finite and positive, got {cost.tolist()}")
    if isinstance(control_code, bool) or not isinstance(control_code, int | np.integer):
        raise ValueError(f"control_code must be an integer, got {control_code!r}")
    if not 0 <= control_code <= n_arms:
        raise ValueError(f"control_code must be one of the codes 0..{n_arms}, got {control_code}")
    if not np.isin(arms, np.arange(n_arms + 1)).all():
        raise ValueError(
            f"arm_codes must be integers in 0..{n_arms} (control and {n_arms} promotion arms)"
        )
    columns = np.array([code for code in range(n_arms + 1) if code != control_code])
    if not (arms == control_code).any():
        raise ValueError(f"no control rows (no arm code {control_code}): uplift needs control")
    for code in columns:
        if not (arms == code).any():
            raise ValueError(f"no rows of promotion arm {code}: its uplift cannot be estimated")
    return y, arms, predicted, cost, columns


def cost_aware_multi_arm_qini(
    y_value: ArrayLike,
    arm_codes: ArrayLike,
    predicted_value_uplift: ArrayLike,
    costs: ArrayLike,
    control_code: int = 0,
) -> CostValueCurve:
    """Spend against incremental value when each user gets the arm of best value per cost.

    Policy. Arm codes are 0..K; the K codes other than ``control_code``, ascending, are the
    promotion arms, column j of ``predicted_value_uplift`` and ``costs[j]`` belonging to the
    j-th. Each user is recommended the arm with the largest ``predicted[i, j] / costs[j]``
    (ties between arms go to the cheaper one); users whose best ratio is ≤ 0 are not targeted.
    Targeted users are ranked by that ratio, descending — the greedy order for a budget, since
    it buys the most predicted value per unit spent first. Tied ratios form one group.

    Estimator. A user's outcome is observed under one randomized arm, so the policy's effect
    is estimated from the users whose observed arm *matches* the recommendation, against the
    control users recommended the same arm. Among the top t ranked users, for each arm j let
    ``N_Tj, Y_Tj`` be the count and summed value of users recommended j who received j, and
    ``N_Cj, Y_Cj`` those of users recommended j who were in control; then

        value(t) = Σ_j [Y_Tj − Y_Cj · N_Tj / N_Cj]      spend(t) = Σ_j N_Tj · costs[j]

    (the Qini of each arm's recommended users, summed; a term with ``N_Cj = 0`` counts as 0,
    as in :func:`qini_curve`). Both refer to the same matched treated rows, so
    ``value / spend`` is the estimated return per unit of promotion cost. Users recommended j
    but randomized to another promotion arm carry no information about j and are skipped.
    The last point is the value of treating every targeted user with their best arm.

    Args:
        y_value: realized value per user (revenue, margin, a 0/1 purchase), any finite number.
        arm_codes: the randomized arm of each user, an integer code in 0..K.
        predicted_value_uplift: n × K predicted incremental value of each promotion arm over
            control, per user.
        costs: K per-user costs of the promotion arms, finite and positive.
        control_code: the code of the control arm.

    Returns:
        The curve (starting at zero spend and value), its random-order reference, and the
        recommendation and ratio per user. With no user of positive ratio the curve is the
        single point (0, 0).

    Raises:
        ValueError: misaligned or empty inputs, a value or prediction NaN or infinite, a cost
            not positive, an arm code outside 0..K or not an integer, a bad control code, or an
            arm (control included) without rows.

    References:
        Zhao & Harinen (2019), "Uplift Modeling for Multiple Treatments with Cost
        Optimization", arXiv:1908.05372 (value of each treatment weighed against its cost;
        causalml's ``optimize`` module follows it); Radcliffe (2007), "Using control groups
        to target on predicted lift", Direct Marketing Analytics Journal (1) (the Qini);
        Zhao, Fang & Simchi-Levi (2017), "Uplift Modeling with Multiple Treatments and General
        Response Types", SIAM SDM (evaluation on users whose treatment matches the
        recommendation).
    """
    y, arms, predicted, cost, columns = _check_multi_arm_inputs(
        y_value, arm_codes, predicted_value_uplift, costs, control_code
    )
    n, n_arms = predicted.shape
    ratios = predicted / cost
    # argmax takes the first maximum: scan the columns cheapest first so ties go to the cheaper.
    by_cost = np.argsort(cost, kind="stable")
    best_column = by_cost[np.argmax(ratios[:, by_cost], axis=1)]
    best_ratio = ratios[np.arange(n), best_column]
    recommended = np.where(best_ratio > 0, columns[best_column], control_code)

    chosen = np.flatnonzero(best_ratio > 0)
    order = chosen[np.argsort(-best_ratio[chosen], kind="stable")]
    if len(order) == 0:
        zero = np.zeros(1)
        return CostValueCurve(zero, zero.copy(), zero.copy(), zero.copy(), recommended, best_ratio)
    ordered = best_ratio[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])

    def cumulative(values: np.ndarray) -> np.ndarray:
        return np.cumsum(np.add.reduceat(values, starts))

    rec_column, observed, y_ranked = best_column[order], arms[order], y[order]
    value = np.zeros(len(starts))
    spend = np.zeros(len(starts))
    for j in range(n_arms):
        for_j = rec_column == j
        matched = (for_j & (observed == columns[j])).astype(float)
        control = (for_j & (observed == control_code)).astype(float)
        n_t, n_c = cumulative(matched), cumulative(control)
        y_t, y_c = cumulative(matched * y_ranked), cumulative(control * y_ranked)
        value += y_t - y_c * _ratio_or_zero(n_t, n_c)
        spend += n_t * cost[j]
    targeted = np.r_[0.0, cumulative(np.ones(len(order)))]
    spend, value = np.r_[0.0, spend], np.r_[0.0, value]
    random_value = value[-1] * spend / spend[-1] if spend[-1] > 0 else np.zeros_like(spend)
    return CostValueCurve(spend, value, random_value, targeted, recommended, best_ratio)


def encode_qini_labels(y: ArrayLike, treated: ArrayLike) -> np.ndarray:
    """The ``labels`` of :class:`QiniStatistic`: ``treated · 2 + y`` as floats.

    Raises:
        ValueError: misaligned or empty inputs, or ``y`` or ``treated`` not 0/1.
    """
    y_arr = np.asarray(y, dtype=float)
    t_arr = np.asarray(treated, dtype=float)
    if y_arr.ndim != 1 or t_arr.shape != y_arr.shape or len(y_arr) == 0:
        raise ValueError(
            f"y and treated must be 1-d of equal, non-zero length, got {y_arr.shape}, {t_arr.shape}"
        )
    if not np.isin(y_arr, (0.0, 1.0)).all():
        raise ValueError("y must contain only 0 and 1 (a binary outcome)")
    if not np.isin(t_arr, (0.0, 1.0)).all():
        raise ValueError("treated must contain only 0 (control) and 1 (treated)")
    return t_arr * 2.0 + y_arr


def _decode_qini_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes = np.asarray(labels, dtype=float)
    if not np.isin(codes, (0.0, 1.0, 2.0, 3.0)).all():
        raise ValueError(
            "qini labels must be group * 2 + y with group and y in {0, 1}, i.e. 0 (control, "
            "no purchase), 1 (control, purchase), 2 (treated, no purchase) or 3 (treated, "
            "purchase)"
        )
    treated = (codes >= 2.0).astype(float)
    return codes - 2.0 * treated, treated


def _weighted_normalized_qini(
    model: _RankedUplift, perfect: _RankedUplift, treated: np.ndarray, weights: np.ndarray
) -> float:
    """Normalized Qini under weights; NaN where a resample lacks a group or the ratio is
    undefined (the bootstrap drops such replicates)."""
    treated_weight = float(weights @ treated)
    if not (treated_weight > 0 and weights.sum() - treated_weight > 0):
        return math.nan
    ideal = _area_above_random(*perfect.qini(weights))
    if not ideal > 0:
        return math.nan
    return _area_above_random(*model.qini(weights)) / ideal


@dataclass(frozen=True)
class QiniStatistic:
    """The normalized Qini coefficient as a paired-bootstrap statistic for uplift models.

    ``labels`` carry the randomized group and the outcome in one float per row,
    ``group * 2 + y`` (:func:`encode_qini_labels`): 0 control non-buyer, 1 control buyer,
    2 treated non-buyer, 3 treated buyer, where "treated" is the arm being judged. Bootstrap
    weights enter as row multiplicities, so the statistic under weights w equals
    :func:`qini_coefficient` of the rows repeated w times (zero-weight rows dropped), and
    under all-ones weights the plain normalized Qini. Both rankings (the model's and the
    perfect one) are sorted once in :meth:`prepare`; a replicate then costs O(n).

    Attributes:
        name: ``"qini"``.
        higher_is_better: ``True``.
    """

    name: str = "qini"
    higher_is_better: bool = field(default=True, init=False)

    def validate(self, labels: np.ndarray, scores: np.ndarray) -> None:
        """Raise ``ValueError`` unless the labels encode group and outcome and the scores are
        finite; :class:`~flashsale_ml.errors.DataError` (a ``ValueError``) unless both groups
        are present and the normalized Qini is defined on all rows (e.g. some buyer)."""
        check_finite_rows(labels, scores)
        y, t = _decode_qini_labels(labels)
        _check_both_groups(t)
        perfect = _RankedUplift(y, t, _perfect_qini_scores(y, t))
        if not _area_above_random(*perfect.qini()) > 0:
            raise _undefined_qini(y, t)

    def prepare(self, labels: np.ndarray, scores: np.ndarray) -> WeightedStatistic:
        """Sort the model's and the perfect ranking once; return ``weights -> Qini``."""
        y, t = _decode_qini_labels(labels)
        model = _RankedUplift(y, t, np.asarray(scores, dtype=float))
        perfect = _RankedUplift(y, t, _perfect_qini_scores(y, t))

        def qini(weights: np.ndarray) -> float:
            return _weighted_normalized_qini(model, perfect, t, np.asarray(weights, dtype=float))

        return qini
