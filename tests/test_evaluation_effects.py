"""Campaign effect statistics from sufficient statistics (flashsale_ml.evaluation.effects).

Every estimate is cross-checked against an independent computation on the per-unit values:
scipy's Welch t-test, an OLS fit for CUPED, seeded bootstraps for the delta-method errors.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from flashsale_ml.evaluation.effects import (
    CupedResult,
    Interval,
    Moments,
    adjust_p_values,
    bucket_bootstrap_difference,
    cuped_difference,
    ratio_difference,
    relative_lift,
    sample_ratio_mismatch,
    welch_difference,
)


def revenue(rng: np.random.Generator, n: int, mean: float) -> np.ndarray:
    """Skewed per-user revenue: most users buy nothing, buyers spend a gamma amount."""
    buys = rng.random(n) < 0.3
    return np.where(buys, rng.gamma(2.0, mean / 0.6, n), 0.0)


def pre_period(rng: np.random.Generator, n: int, correlation: float):
    """``(x, y)`` with Corr(x, y) = ``correlation``, y of mean 10 and x of mean 50."""
    x = rng.normal(0.0, 1.0, n)
    y = correlation * x + math.sqrt(1.0 - correlation**2) * rng.normal(0.0, 1.0, n)
    return 50.0 + 8.0 * x, 10.0 + 3.0 * y


def within_arm_centred(*arrays: np.ndarray, arm: np.ndarray) -> list[np.ndarray]:
    """Each array minus its own arm's mean (an independent numpy computation)."""
    out = []
    for values in arrays:
        centred = values.astype(float).copy()
        for label in (0, 1):
            centred[arm == label] -= values[arm == label].mean()
        out.append(centred)
    return out


# --- Moments ---------------------------------------------------------------------------------


def test_moments_from_arrays_equal_numpy_sums_and_statistics():
    rng = np.random.default_rng(0)
    x, y = rng.normal(3.0, 2.0, 1_000), rng.gamma(2.0, 5.0, 1_000)
    m = Moments.from_arrays(y, x)
    assert m.n == 1_000
    np.testing.assert_allclose(
        [m.sum_y, m.sum_y2, m.sum_x, m.sum_x2, m.sum_xy],
        [y.sum(), (y**2).sum(), x.sum(), (x**2).sum(), (x * y).sum()],
        rtol=1e-12,
    )
    assert m.mean_y == pytest.approx(y.mean(), rel=1e-12)
    assert m.mean_x == pytest.approx(x.mean(), rel=1e-12)
    assert m.var_y == pytest.approx(y.var(ddof=1), rel=1e-10)
    assert m.var_x == pytest.approx(x.var(ddof=1), rel=1e-10)
    assert m.cov_xy == pytest.approx(np.cov(x, y, ddof=1)[0, 1], rel=1e-9)

    no_covariate = Moments.from_arrays(y)
    assert (no_covariate.sum_x, no_covariate.sum_x2, no_covariate.sum_xy) == (0.0, 0.0, 0.0)


def test_moments_of_two_halves_add_up_to_the_whole():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=777), rng.normal(size=777)
    whole = Moments.from_arrays(y, x)
    halves = Moments.from_arrays(y[:300], x[:300]) + Moments.from_arrays(y[300:], x[300:])
    for name in ("n", "sum_y", "sum_y2", "sum_x", "sum_x2", "sum_xy"):
        assert getattr(halves, name) == pytest.approx(getattr(whole, name), rel=1e-12, abs=1e-12)
    # builtins.sum starts from 0; segments sum into an arm.
    segments = [Moments.from_arrays(y[i : i + 100], x[i : i + 100]) for i in range(0, 777, 100)]
    assert sum(segments).var_y == pytest.approx(whole.var_y, rel=1e-12)
    assert (Moments(0, 0, 0) + whole).n == whole.n


def test_moments_accept_sql_types_and_reject_bad_sums():
    from decimal import Decimal

    m = Moments(np.int64(3), Decimal("6"), 14)  # y = 1, 2, 3
    assert isinstance(m.n, float) and isinstance(m.sum_y, float)
    assert m.var_y == pytest.approx(1.0)

    with pytest.raises(ValueError, match="finite"):
        Moments(10, float("nan"), 1.0)
    with pytest.raises(ValueError, match="must be a number"):
        Moments(10, "many", 1.0)
    with pytest.raises(ValueError, match="at least 0"):
        Moments(-1, 0, 0)
    with pytest.raises(ValueError, match="n = 0"):
        Moments(0, 1.0, 1.0)
    with pytest.raises(ValueError, match="sum_y2 is below"):
        Moments(3, 6.0, 6.0)  # Σy² < (Σy)²/n: sum(y) where sum(y*y) was meant
    with pytest.raises(ValueError, match="sum_x2 is below"):
        Moments(3, 6.0, 14.0, 6.0, 6.0, 0.0)
    with pytest.raises(ValueError, match="covariance larger"):
        Moments(3, 6.0, 14.0, 6.0, 14.0, 100.0)
    with pytest.raises(ValueError, match="needs n ≥ 2"):
        _ = Moments(1, 2.0, 4.0).var_y
    with pytest.raises(ValueError, match="needs n ≥ 1"):
        _ = Moments(0, 0, 0).mean_y
    with pytest.raises(ValueError, match="x must have the shape"):
        Moments.from_arrays([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="y must be finite"):
        Moments.from_arrays([1.0, np.inf])
    with pytest.raises(TypeError):
        _ = Moments(2, 1, 1) + 1.0


# --- Welch -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n_treated, n_control, kind",
    [
        (5, 7, "continuous"),
        (40, 25, "continuous"),
        (1_000, 3_000, "continuous"),
        (30, 50, "binary"),
        (2_000, 500, "binary"),
        (20_000, 20_000, "revenue"),
    ],
)
def test_welch_equals_scipy_ttest_ind(n_treated, n_control, kind):
    rng = np.random.default_rng(n_treated * 7 + n_control)
    if kind == "continuous":
        t, c = rng.normal(10.5, 3.0, n_treated), rng.normal(10.0, 1.5, n_control)
    elif kind == "binary":
        t = (rng.random(n_treated) < 0.12).astype(float)
        c = (rng.random(n_control) < 0.10).astype(float)
    else:
        t, c = revenue(rng, n_treated, 21.0), revenue(rng, n_control, 20.0)
    reference = stats.ttest_ind(t, c, equal_var=False)
    for confidence in (0.95, 0.8):
        got = welch_difference(Moments.from_arrays(t), Moments.from_arrays(c), confidence)
        low, high = reference.confidence_interval(confidence)
        assert got.estimate == pytest.approx(t.mean() - c.mean(), rel=1e-9, abs=1e-12)
        assert got.low == pytest.approx(low, rel=1e-9, abs=1e-12)
        assert got.high == pytest.approx(high, rel=1e-9, abs=1e-12)
        assert got.p_value == pytest.approx(reference.pvalue, rel=1e-9, abs=1e-15)
        assert got.estimate / got.std_error == pytest.approx(reference.statistic, rel=1e-9)
        assert got.confidence == confidence


def test_welch_with_zero_variance_in_both_arms_gives_zero_width_and_nan_p():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division warnings either
        differ = welch_difference(Moments.from_arrays([1.0] * 5), Moments.from_arrays([0.0] * 8))
        same = welch_difference(Moments.from_arrays([0.1] * 50), Moments.from_arrays([0.1] * 9))
    assert (differ.estimate, differ.low, differ.high, differ.std_error) == (1.0, 1.0, 1.0, 0.0)
    assert math.isnan(differ.p_value)
    assert differ.excludes_zero()
    # 0.1 is not exact in binary: the centred sums are rounding noise and count as zero.
    assert same.low == same.high == same.estimate == pytest.approx(0.0, abs=1e-15)
    assert math.isnan(same.p_value)
    # One constant arm is no degenerate case: the df fall back to the other arm's n - 1.
    one = welch_difference(Moments.from_arrays([0.0] * 10), Moments.from_arrays([1.0, 2, 4, 3]))
    reference = stats.ttest_ind([0.0] * 10, [1.0, 2, 4, 3], equal_var=False)
    assert one.p_value == pytest.approx(reference.pvalue, rel=1e-9)


def test_welch_interval_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(2024)
    true_difference = 0.4
    covered = 0
    for _ in range(200):
        # Skewed, unequal sizes and variances; means 2 + 0.4 and 1 + 1.
        t = rng.exponential(2.0, 80) + true_difference
        c = rng.exponential(1.0, 60) + 1.0
        interval = welch_difference(Moments.from_arrays(t), Moments.from_arrays(c))
        covered += interval.low <= true_difference <= interval.high
    assert 184 <= covered <= 196, covered  # 92–98 % of 200


@pytest.mark.parametrize(
    "call",
    [
        lambda t, c: welch_difference(t, c),
        lambda t, c: relative_lift(t, c),
        lambda t, c: cuped_difference(t, c),
        lambda t, c: ratio_difference(t, c),
    ],
)
def test_interval_functions_validate_their_inputs(call):
    good = Moments.from_arrays([1.0, 2.0, 4.0], [1.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="treated needs n ≥ 2"):
        call(Moments.from_arrays([1.0], [1.0]), good)
    with pytest.raises(ValueError, match="control needs n ≥ 2"):
        call(good, Moments(0, 0, 0))
    with pytest.raises(ValueError, match="treated must be Moments"):
        call([1.0, 2.0], good)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5, -0.1, float("nan"), True, "0.95"])
def test_confidence_must_lie_strictly_between_0_and_1(confidence):
    good = Moments.from_arrays([1.0, 2.0, 4.0], [1.0, 1.0, 2.0])
    for call in (welch_difference, relative_lift, cuped_difference, ratio_difference):
        with pytest.raises(ValueError, match="confidence"):
            call(good, good, confidence)
    with pytest.raises(ValueError, match="confidence"):
        bucket_bootstrap_difference([1, 1], [1, 2], [1, 1], [1, 2], 10, confidence, 0)


def test_interval_excludes_zero_on_either_side():
    assert Interval(1.0, 0.5, 1.5, 0.95).excludes_zero()
    assert Interval(-1.0, -1.5, -0.5, 0.95).excludes_zero()
    assert not Interval(0.2, -0.1, 0.5, 0.95).excludes_zero()


# --- relative lift ---------------------------------------------------------------------------


def bootstrap_std(rng: np.random.Generator, statistic, *arms: np.ndarray, samples: int) -> float:
    """Standard deviation of ``statistic(resample of each arm, ...)`` over ``samples`` draws,
    resampling each arm's rows independently with replacement (per-user bootstrap)."""
    draws = []
    for _ in range(samples):
        draws.append(statistic(*(arm[rng.integers(0, len(arm), len(arm))] for arm in arms)))
    return float(np.std(draws, ddof=1))


def test_relative_lift_delta_method_agrees_with_a_bootstrap():
    rng = np.random.default_rng(7)
    t, c = revenue(rng, 4_000, 23.0), revenue(rng, 5_000, 20.0)
    lift = relative_lift(Moments.from_arrays(t), Moments.from_arrays(c))
    assert lift.estimate == pytest.approx(t.mean() / c.mean() - 1.0, rel=1e-12)
    spread = bootstrap_std(
        np.random.default_rng(8), lambda a, b: a.mean() / b.mean() - 1.0, t, c, samples=2_000
    )
    assert lift.std_error == pytest.approx(spread, rel=0.05)
    z = stats.norm.ppf(0.975)
    assert lift.low == pytest.approx(lift.estimate - z * lift.std_error, rel=1e-12)
    assert lift.high == pytest.approx(lift.estimate + z * lift.std_error, rel=1e-12)
    assert lift.p_value == pytest.approx(2 * stats.norm.sf(abs(lift.estimate) / lift.std_error))


def test_relative_lift_rejects_a_zero_control_mean():
    with pytest.raises(ValueError, match="control mean is 0"):
        relative_lift(Moments.from_arrays([1.0, 0.0, 1.0]), Moments.from_arrays([0.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="control mean is 0"):
        relative_lift(Moments.from_arrays([1.0, 2.0]), Moments.from_arrays([-1.0, 1.0]))


def test_relative_lift_with_zero_variance_is_zero_width():
    lift = relative_lift(Moments.from_arrays([3.0] * 4), Moments.from_arrays([2.0] * 6))
    assert (lift.estimate, lift.low, lift.high, lift.std_error) == (0.5, 0.5, 0.5, 0.0)
    assert math.isnan(lift.p_value)


# --- CUPED -----------------------------------------------------------------------------------


def cuped_data(seed: int, correlation: float, effect: float = 0.7):
    """Treated and control (x, y) with unequal sizes and an imbalance in x across the arms."""
    rng = np.random.default_rng(seed)
    x_t, y_t = pre_period(rng, 1_500, correlation)
    x_c, y_c = pre_period(rng, 2_500, correlation)
    # A chance imbalance of the pre-period covariate, exaggerated; y follows x (slope
    # 3 · correlation / 8), and the promotion adds ``effect`` on top.
    shift = 0.5
    x_t = x_t + shift
    y_t = y_t + 3.0 * correlation / 8.0 * shift + effect
    return x_t, y_t, x_c, y_c


def test_cuped_equals_the_treatment_coefficient_of_an_ols_fit():
    x_t, y_t, x_c, y_c = cuped_data(seed=11, correlation=0.8, effect=3.0)
    result = cuped_difference(Moments.from_arrays(y_t, x_t), Moments.from_arrays(y_c, x_c))
    assert isinstance(result, CupedResult)

    x, y = np.r_[x_t, x_c], np.r_[y_t, y_c]
    arm = np.r_[np.ones(len(x_t)), np.zeros(len(x_c))]
    design = np.column_stack([np.ones_like(x), arm, x - x.mean()])
    (_, treatment, slope), *_ = np.linalg.lstsq(design, y, rcond=None)
    assert result.interval.estimate == pytest.approx(treatment, rel=1e-9, abs=1e-12)
    assert result.theta == pytest.approx(slope, rel=1e-9)
    # theta is the within-arm covariance over the within-arm variance...
    x_w, y_w = within_arm_centred(x, y, arm=arm)
    assert result.theta == pytest.approx((x_w @ y_w) / (x_w @ x_w), rel=1e-9)
    # ...not cov/var of both arms lumped together, which the treatment effect would distort.
    lumped = np.cov(x, y)[0, 1] / np.var(x, ddof=1)
    assert abs(result.theta - lumped) > 1e-4


def test_cuped_interval_is_welch_on_the_adjusted_values():
    x_t, y_t, x_c, y_c = cuped_data(seed=12, correlation=0.6)
    result = cuped_difference(
        Moments.from_arrays(y_t, x_t), Moments.from_arrays(y_c, x_c), confidence=0.9
    )
    mean_x = np.r_[x_t, x_c].mean()
    adjusted_t = y_t - result.theta * (x_t - mean_x)
    adjusted_c = y_c - result.theta * (x_c - mean_x)
    reference = stats.ttest_ind(adjusted_t, adjusted_c, equal_var=False)
    low, high = reference.confidence_interval(0.9)
    assert result.interval.low == pytest.approx(low, rel=1e-9)
    assert result.interval.high == pytest.approx(high, rel=1e-9)
    assert result.interval.p_value == pytest.approx(reference.pvalue, rel=1e-6, abs=1e-300)
    assert result.unadjusted == welch_difference(
        Moments.from_arrays(y_t), Moments.from_arrays(y_c), 0.9
    )


def test_cuped_variance_reduction_is_about_the_squared_correlation():
    x_t, y_t, x_c, y_c = cuped_data(seed=13, correlation=0.9)
    result = cuped_difference(Moments.from_arrays(y_t, x_t), Moments.from_arrays(y_c, x_c))
    arm = np.r_[np.ones(len(x_t)), np.zeros(len(x_c))]
    x_w, y_w = within_arm_centred(np.r_[x_t, x_c], np.r_[y_t, y_c], arm=arm)
    correlation = np.corrcoef(x_w, y_w)[0, 1]
    assert result.interval.std_error < 0.5 * result.unadjusted.std_error
    assert result.variance_reduction == pytest.approx(correlation**2, abs=0.02)
    assert result.variance_reduction == pytest.approx(0.81, abs=0.03)


def test_cuped_with_an_independent_covariate_reduces_almost_nothing():
    x_t, y_t, x_c, y_c = cuped_data(seed=14, correlation=0.0)
    result = cuped_difference(Moments.from_arrays(y_t, x_t), Moments.from_arrays(y_c, x_c))
    assert abs(result.variance_reduction) < 0.01
    assert result.interval.std_error == pytest.approx(result.unadjusted.std_error, rel=0.01)


def test_cuped_degenerate_covariate_and_metric():
    rng = np.random.default_rng(15)
    y_t, y_c = rng.normal(size=50), rng.normal(size=40)
    without_x = cuped_difference(Moments.from_arrays(y_t), Moments.from_arrays(y_c))
    assert without_x.theta == 0.0
    assert without_x.interval == without_x.unadjusted
    assert without_x.variance_reduction == 0.0

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        constant_y = cuped_difference(
            Moments.from_arrays([2.0] * 5, rng.normal(size=5)),
            Moments.from_arrays([1.0] * 6, rng.normal(size=6)),
        )
    assert constant_y.theta == 0.0
    assert math.isnan(constant_y.variance_reduction)
    assert constant_y.interval.low == constant_y.interval.high == 1.0

    # y exactly linear in x: the adjustment removes all variance.
    x_t, x_c = rng.normal(size=30), rng.normal(size=20)
    exact = cuped_difference(
        Moments.from_arrays(3.0 * x_t + 1.0, x_t), Moments.from_arrays(3.0 * x_c, x_c)
    )
    assert exact.theta == pytest.approx(3.0)
    assert exact.interval.std_error == 0.0 and exact.variance_reduction == 1.0
    assert exact.interval.estimate == pytest.approx(1.0)


# --- ratio metrics ---------------------------------------------------------------------------


def orders_and_revenue(rng: np.random.Generator, n: int, order_value: float):
    """Orders per user (many zeros) and the user's revenue, a gamma amount per order."""
    orders = rng.poisson(rng.gamma(0.8, 1.5, n))
    revenue = rng.gamma(np.maximum(2.0 * orders, 1e-9), order_value / 2.0) * (orders > 0)
    return orders.astype(float), revenue


def test_ratio_difference_agrees_with_a_per_user_bootstrap():
    rng = np.random.default_rng(21)
    x_t, y_t = orders_and_revenue(rng, 3_000, 42.0)
    x_c, y_c = orders_and_revenue(rng, 3_500, 40.0)
    got = ratio_difference(Moments.from_arrays(y_t, x_t), Moments.from_arrays(y_c, x_c))
    assert got.estimate == pytest.approx(y_t.sum() / x_t.sum() - y_c.sum() / x_c.sum())

    def difference(users_t: np.ndarray, users_c: np.ndarray) -> float:
        # Columns (orders, revenue); resampled rows keep a user's orders and revenue together.
        ratio_t = users_t[:, 1].sum() / users_t[:, 0].sum()
        return ratio_t - users_c[:, 1].sum() / users_c[:, 0].sum()

    spread = bootstrap_std(
        np.random.default_rng(22),
        difference,
        np.column_stack([x_t, y_t]),
        np.column_stack([x_c, y_c]),
        samples=2_000,
    )
    assert got.std_error == pytest.approx(spread, rel=0.05)
    # An order-level standard error (orders as independent units) would be a different,
    # smaller number: the delta method is not it.
    assert got.low < got.estimate < got.high


def test_ratio_difference_rejects_an_arm_without_denominator():
    with pytest.raises(ValueError, match="control has sum_x == 0"):
        ratio_difference(
            Moments.from_arrays([5.0, 1.0], [1.0, 1.0]), Moments.from_arrays([0.0, 0.0], [0, 0])
        )


def test_ratio_difference_is_zero_width_when_every_user_has_the_same_order_value():
    got = ratio_difference(
        Moments.from_arrays([20.0, 40.0, 0.0], [1.0, 2.0, 0.0]),
        Moments.from_arrays([10.0, 30.0], [1.0, 3.0]),
    )
    assert (got.estimate, got.low, got.high, got.std_error) == (10.0, 10.0, 10.0, 0.0)
    assert math.isnan(got.p_value)


# --- bucket bootstrap ------------------------------------------------------------------------


def bucketed(rng: np.random.Generator, values: np.ndarray, buckets: int):
    """Per-bucket counts and sums, users hashed to buckets uniformly at random."""
    bucket = rng.integers(0, buckets, len(values))
    return (
        np.bincount(bucket, minlength=buckets).astype(float),
        np.bincount(bucket, weights=values, minlength=buckets),
    )


def test_bucket_bootstrap_covers_a_known_difference_with_welchs_width():
    rng = np.random.default_rng(31)
    t = rng.exponential(5.0, 40_000) + 0.5
    c = rng.exponential(5.0, 30_000)
    t_n, t_sum = bucketed(rng, t, 512)
    c_n, c_sum = bucketed(rng, c, 512)
    got = bucket_bootstrap_difference(t_n, t_sum, c_n, c_sum, 2_000, 0.95, seed=3)
    welch = welch_difference(Moments.from_arrays(t), Moments.from_arrays(c))
    assert got.estimate == pytest.approx(t.mean() - c.mean(), rel=1e-12)
    assert got.low <= 0.5 <= got.high
    assert got.high - got.low == pytest.approx(welch.high - welch.low, rel=0.15)
    assert got.std_error == pytest.approx(welch.std_error, rel=0.15)
    assert got.p_value is None

    again = bucket_bootstrap_difference(t_n, t_sum, c_n, c_sum, 2_000, 0.95, seed=3)
    other = bucket_bootstrap_difference(t_n, t_sum, c_n, c_sum, 2_000, 0.95, seed=4)
    assert again == got
    assert (other.low, other.high) != (got.low, got.high)


def test_bucket_bootstrap_weights_the_arms_independently():
    rng = np.random.default_rng(32)
    n, total = bucketed(rng, rng.normal(1.0, 1.0, 5_000), 64)
    # Same buckets in both arms: shared weights would make every replicate exactly 0.
    got = bucket_bootstrap_difference(n, total, n, total, 500, 0.9, seed=0)
    assert got.estimate == 0.0
    assert got.low < 0.0 < got.high


def test_bucket_bootstrap_drops_replicates_without_units_and_validates():
    # One non-empty bucket per arm of two: about a third of replicates miss it.
    got = bucket_bootstrap_difference([0, 5], [0, 10], [4, 0], [4, 0], 300, 0.9, seed=1)
    assert got.estimate == 1.0 and got.low == got.high == 1.0

    good_n, good_sum = [3, 4, 5], [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="samples must be a positive integer"):
        bucket_bootstrap_difference(good_n, good_sum, good_n, good_sum, 0, 0.95, 0)
    with pytest.raises(ValueError, match="samples must be a positive integer"):
        bucket_bootstrap_difference(good_n, good_sum, good_n, good_sum, 10.0, 0.95, 0)
    with pytest.raises(ValueError, match="treated_n and treated_sum must be 1-d"):
        bucket_bootstrap_difference([1, 2], good_sum, good_n, good_sum, 10, 0.95, 0)
    with pytest.raises(ValueError, match="control needs at least 2 buckets"):
        bucket_bootstrap_difference(good_n, good_sum, [3], [1.0], 10, 0.95, 0)
    with pytest.raises(ValueError, match="finite"):
        bucket_bootstrap_difference(good_n, [1.0, np.nan, 3.0], good_n, good_sum, 10, 0.95, 0)
    with pytest.raises(ValueError, match="non-negative"):
        bucket_bootstrap_difference([3, -4, 5], good_sum, good_n, good_sum, 10, 0.95, 0)
    with pytest.raises(ValueError, match="must be 0 in buckets"):
        bucket_bootstrap_difference([3, 0, 5], good_sum, good_n, good_sum, 10, 0.95, 0)
    with pytest.raises(ValueError, match="control has no units"):
        bucket_bootstrap_difference(good_n, good_sum, [0, 0], [0, 0], 10, 0.95, 0)
    # Treated weights come first from default_rng(2): its first Poisson draw is 0, so the one
    # replicate misses the only non-empty treated bucket.
    assert np.random.default_rng(2).poisson(1.0) == 0
    with pytest.raises(ValueError, match="no replicate"):
        bucket_bootstrap_difference([5, 0, 0, 0], [1, 0, 0, 0], good_n, good_sum, 1, 0.95, 2)


# --- multiple testing ------------------------------------------------------------------------


def test_holm_matches_a_hand_checked_example():
    # Sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → max so far 0.06.
    got = adjust_p_values([0.01, 0.04, 0.03, 0.005], "holm")
    np.testing.assert_allclose(got, [0.03, 0.06, 0.06, 0.02], rtol=1e-12)
    np.testing.assert_allclose(adjust_p_values([0.3, 0.5], "holm"), [0.6, 0.6], rtol=1e-12)
    # Capped at 1: 0.6·2 = 1.2 and 0.9·1 → 1.
    np.testing.assert_allclose(
        adjust_p_values([0.9, 0.2, 0.6], "holm"), [1.0, 0.6, 1.0], rtol=1e-12
    )


def test_holm_is_monotone_capped_and_at_least_the_raw_p_values():
    p = np.random.default_rng(41).random(50) ** 3
    adjusted = adjust_p_values(p, "holm")
    order = np.argsort(p)
    assert (np.diff(adjusted[order]) >= 0).all()
    assert (adjusted >= p).all() and (adjusted <= 1.0).all()
    assert adjusted[order[0]] == pytest.approx(min(1.0, 50 * p.min()))


def test_bh_equals_scipy():
    p = np.random.default_rng(42).random(40) ** 2
    np.testing.assert_array_equal(
        adjust_p_values(p, "bh"), stats.false_discovery_control(p, method="bh")
    )
    np.testing.assert_allclose(
        adjust_p_values([0.01, 0.04, 0.03, 0.005], "bh"), [0.02, 0.04, 0.04, 0.02]
    )


def test_adjust_p_values_validates():
    assert adjust_p_values([], "holm").shape == (0,)
    with pytest.raises(ValueError, match="method must be"):
        adjust_p_values([0.1], "bonferroni")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        adjust_p_values([0.1, 1.2], "holm")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        adjust_p_values([0.1, np.nan], "bh")
    with pytest.raises(ValueError, match="1-d"):
        adjust_p_values([[0.1, 0.2]], "bh")


# --- sample ratio mismatch -------------------------------------------------------------------


def test_sample_ratio_mismatch_equals_scipy_chisquare():
    observed = {"holdout": 10_321, "promo_a": 44_870, "promo_b": 45_102}
    shares = {"promo_b": 0.45, "holdout": 0.10, "promo_a": 0.45}
    statistic, p_value = sample_ratio_mismatch(observed, shares)
    total = sum(observed.values())
    reference = stats.chisquare(
        [10_321, 44_870, 45_102], [0.10 * total, 0.45 * total, 0.45 * total]
    )
    assert statistic == pytest.approx(reference.statistic, rel=1e-12)
    assert p_value == pytest.approx(reference.pvalue, rel=1e-9)
    # Shares need not sum to 1.
    assert sample_ratio_mismatch(observed, {"holdout": 2, "promo_a": 9, "promo_b": 9}) == (
        pytest.approx(statistic),
        pytest.approx(p_value),
    )


def test_sample_ratio_mismatch_flags_an_unbalanced_split():
    # Hand computation: expected 5,150 each, chi² = 2 · 150² / 5,150 = 8.7379, 1 df.
    statistic, p_value = sample_ratio_mismatch({"a": 5_000, "b": 5_300}, {"a": 0.5, "b": 0.5})
    assert statistic == pytest.approx(2 * 150**2 / 5_150)
    assert p_value == pytest.approx(stats.chi2.sf(2 * 150**2 / 5_150, 1))
    assert 0.001 < p_value < 0.01  # suspicious, not yet past the usual 0.001 alarm
    _, p_large = sample_ratio_mismatch({"a": 50_000, "b": 53_000}, {"a": 0.5, "b": 0.5})
    assert p_large < 1e-6
    _, p_fine = sample_ratio_mismatch({"a": 5_000, "b": 5_030}, {"a": 0.5, "b": 0.5})
    assert p_fine > 0.5


def test_sample_ratio_mismatch_validates():
    with pytest.raises(ValueError, match=r"missing from observed: \['c'\]"):
        sample_ratio_mismatch({"a": 10, "b": 10}, {"a": 0.5, "b": 0.25, "c": 0.25})
    with pytest.raises(ValueError, match=r"missing from expected_shares: \['b'\]"):
        sample_ratio_mismatch({"a": 10, "b": 10}, {"a": 1.0})
    with pytest.raises(ValueError, match="at least 2 arms"):
        sample_ratio_mismatch({"a": 10}, {"a": 1.0})
    with pytest.raises(ValueError, match="non-negative integers"):
        sample_ratio_mismatch({"a": 10, "b": -1}, {"a": 0.5, "b": 0.5})
    with pytest.raises(ValueError, match="non-negative integers"):
        sample_ratio_mismatch({"a": 10.5, "b": 3}, {"a": 0.5, "b": 0.5})
    with pytest.raises(ValueError, match="all 0"):
        sample_ratio_mismatch({"a": 0, "b": 0}, {"a": 0.5, "b": 0.5})
    with pytest.raises(ValueError, match="finite and positive"):
        sample_ratio_mismatch({"a": 10, "b": 10}, {"a": 1.0, "b": 0.0})
