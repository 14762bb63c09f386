"""Metrics of quantile demand forecasts (flashsale_ml.evaluation.demand)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.stats import poisson
from sklearn.metrics import mean_pinball_loss as sklearn_pinball

from flashsale_ml.evaluation.bootstrap import RowMean, paired_bootstrap
from flashsale_ml.evaluation.demand import (
    PINBALL_STATISTIC,
    QUANTILE_LABEL_STRIDE,
    QUANTILE_LEVELS,
    bias,
    decode_quantile_labels,
    demand_metrics,
    encode_quantile_labels,
    expanded_demand_metrics,
    interval_coverage,
    mean_pinball_loss,
    pinball_loss,
    wape,
    weighted_scaled_pinball_loss,
)

# A small hand-computed holdout at the default levels (0.1, 0.5, 0.9); row 3 crosses.
ACTUAL = np.array([4.0, 0.0, 10.0, 6.0])
QUANTILES = np.array(
    [
        [2.0, 4.0, 7.0],
        [0.0, 1.0, 2.0],
        [5.0, 8.0, 9.0],
        [7.0, 6.0, 8.0],
    ]
)


# --- point and quantile metrics ---------------------------------------------------------------


def test_wape_and_bias_by_hand() -> None:
    actual, forecast = [2.0, 0.0, 4.0], [1.0, 1.0, 6.0]
    assert wape(actual, forecast) == pytest.approx(4.0 / 6.0)  # (1 + 1 + 2) / 6
    assert bias(actual, forecast) == pytest.approx(2.0 / 6.0)  # (8 - 6) / 6, over-forecast
    assert bias(actual, [1.0, 0.0, 2.0]) == pytest.approx(-0.5)  # under-forecast is negative
    assert wape(actual, actual) == 0.0
    assert wape(actual, np.zeros(3)) == pytest.approx(1.0)


def test_pinball_loss_by_hand() -> None:
    # a - f = 2 (under): 0.9 * 2 = 1.8; a - f = -3 (over): 0.1 * 3 = 0.3
    assert pinball_loss([10.0, 10.0], [8.0, 13.0], 0.9) == pytest.approx(1.05)
    # the same at 0.1: 0.1 * 2 = 0.2 and 0.9 * 3 = 2.7
    assert pinball_loss([10.0, 10.0], [8.0, 13.0], 0.1) == pytest.approx(1.45)


def test_pinball_matches_sklearn_and_half_mae() -> None:
    rng = np.random.default_rng(3)
    actual = rng.poisson(rng.gamma(2.0, 5.0, 400)).astype(float)
    quantiles = np.sort(actual[:, None] + rng.normal(0.0, 4.0, (400, 3)), axis=1)
    per_level = []
    for k, level in enumerate(QUANTILE_LEVELS):
        expected = sklearn_pinball(actual, quantiles[:, k], alpha=level)
        assert pinball_loss(actual, quantiles[:, k], level) == pytest.approx(expected, rel=1e-12)
        per_level.append(expected)
    assert mean_pinball_loss(actual, quantiles) == pytest.approx(np.mean(per_level), rel=1e-12)
    assert pinball_loss(actual, quantiles[:, 1], 0.5) == pytest.approx(
        0.5 * np.abs(actual - quantiles[:, 1]).mean()
    )


@pytest.mark.parametrize("level", [0.1, 0.5, 0.9, 0.27])
def test_constant_minimizing_pinball_is_the_sample_quantile(level: float) -> None:
    rng = np.random.default_rng(11)
    sample = rng.gamma(1.5, 8.0, 101)  # 101 · level is never an integer: a unique minimizer
    quantile = float(np.quantile(sample, level, method="inverted_cdf"))

    def loss(c: float) -> float:
        return pinball_loss(sample, np.full(len(sample), c), level)

    found = minimize_scalar(
        loss, bounds=(sample.min(), sample.max()), method="bounded", options={"xatol": 1e-10}
    )
    assert found.x == pytest.approx(quantile, abs=1e-6)
    grid = np.linspace(sample.min() - 1.0, sample.max() + 1.0, 2001)
    assert loss(quantile) <= min(loss(c) for c in grid) + 1e-12
    # and the mean or another order statistic does worse
    assert loss(quantile) < loss(float(sample.mean()))
    assert loss(quantile) < loss(float(np.sort(sample)[50 if level != 0.5 else 10]))


def test_interval_coverage_includes_bounds() -> None:
    actual = [1.0, 2.0, 3.0, 4.0]
    lower = [1.0, 0.0, 4.0, 0.0]
    upper = [1.0, 5.0, 5.0, 3.0]
    assert interval_coverage(actual, lower, upper) == 0.5
    # an inverted (crossing) interval covers nothing
    assert interval_coverage([2.0], [3.0], [1.0]) == 0.0


def test_demand_metrics_by_hand() -> None:
    metrics = demand_metrics(ACTUAL, QUANTILES)
    assert set(metrics) == {
        "wape_p50",
        "bias_p50",
        "pinball",
        "pinball_p10",
        "pinball_p50",
        "pinball_p90",
        "coverage_p10_p90",
        "crossing_share",
    }
    assert all(isinstance(v, float) for v in metrics.values())
    assert metrics["wape_p50"] == pytest.approx(3.0 / 20.0)
    assert metrics["bias_p50"] == pytest.approx(-1.0 / 20.0)
    assert metrics["pinball_p10"] == pytest.approx(0.4)  # (0.2 + 0 + 0.5 + 0.9) / 4
    assert metrics["pinball_p50"] == pytest.approx(0.375)  # (0 + 0.5 + 1 + 0) / 4
    assert metrics["pinball_p90"] == pytest.approx(0.4)  # (0.3 + 0.2 + 0.9 + 0.2) / 4
    assert metrics["pinball"] == pytest.approx(1.175 / 3.0)
    assert metrics["pinball"] == pytest.approx(mean_pinball_loss(ACTUAL, QUANTILES))
    assert metrics["coverage_p10_p90"] == 0.5  # rows 0 and 1 (0 on the P10 bound)
    assert metrics["crossing_share"] == 0.25  # row 3: P10 7 above P50 6


def test_demand_metrics_other_levels_and_no_crossing() -> None:
    quantiles = np.array([[1.0, 2.0, 2.0, 5.0], [0.0, 0.0, 1.0, 1.0]])  # ties do not cross
    metrics = demand_metrics([2.0, 3.0], quantiles, levels=(0.05, 0.25, 0.5, 0.95))
    assert metrics["crossing_share"] == 0.0
    assert metrics["coverage_p5_p95"] == 0.5
    assert {"pinball_p5", "pinball_p25", "pinball_p50", "pinball_p95"} <= set(metrics)
    assert metrics["wape_p50"] == pytest.approx((0.0 + 2.0) / 5.0)  # P50 column: 2 and 1


# --- WSPL -------------------------------------------------------------------------------------

# Series A: history [0, 2, 4, 2] -> from its first non-zero [2, 4, 2], scale 2, units 8.
# Series B: history [1, 1, 3], scale (0 + 2) / 2 = 1, units 5.
HISTORY = np.array([0.0, 2.0, 4.0, 2.0, 1.0, 1.0, 3.0])
HISTORY_IDS = np.array(["A", "A", "A", "A", "B", "B", "B"])
LEVELS = (0.5, 0.9)
FORECAST_IDS = np.array(["A", "B", "B"])
FORECAST_ACTUAL = np.array([3.0, 1.0, 4.0])
FORECAST_Q = np.array([[2.0, 5.0], [1.0, 2.0], [2.0, 6.0]])
# A: (0.5 · 1 + 0.1 · 2) / 2 = 0.35, SPL 0.175.  B: (0 + 0.1 + 1.0 + 0.2) / 4 = 0.325, SPL 0.325.


def wspl(**overrides):
    args = {
        "actual": FORECAST_ACTUAL,
        "quantiles": FORECAST_Q,
        "levels": LEVELS,
        "series_ids": FORECAST_IDS,
        "history_actual": HISTORY,
        "history_series_ids": HISTORY_IDS,
    }
    args.update(overrides)
    return weighted_scaled_pinball_loss(**args)


def test_wspl_two_series_by_hand() -> None:
    assert wspl() == pytest.approx((8.0 * 0.175 + 5.0 * 0.325) / 13.0)  # unit weights
    prices = np.array([1.0] * 4 + [2.0] * 3)  # dollar sales: A 8, B 10
    assert wspl(history_prices=prices) == pytest.approx((8.0 * 0.175 + 10.0 * 0.325) / 18.0)
    assert wspl(weights={"A": 1.0, "B": 3.0, "unused": 9.0}) == pytest.approx(
        (0.175 + 3.0 * 0.325) / 4.0
    )


def test_wspl_history_may_interleave_and_rows_may_shuffle() -> None:
    order = np.array([4, 0, 1, 5, 2, 6, 3])  # A and B interleaved, each still in time order
    rows = np.array([2, 0, 1])
    assert wspl(
        history_actual=HISTORY[order],
        history_series_ids=HISTORY_IDS[order],
        actual=FORECAST_ACTUAL[rows],
        quantiles=FORECAST_Q[rows],
        series_ids=FORECAST_IDS[rows],
    ) == pytest.approx(wspl())


def test_wspl_weights_use_the_last_28_points() -> None:
    # A's two big early sales fall outside the window: both series sell 42 units in it.
    a_history = np.r_[50.0, 50.0, np.tile([1.0, 2.0], 14)]
    b_history = np.tile([3.0, 0.0], 14)
    history = np.r_[a_history, b_history]
    ids = np.array(["A"] * 30 + ["B"] * 28)
    kwargs = {"history_actual": history, "history_series_ids": ids}
    assert wspl(**kwargs) == pytest.approx(wspl(**kwargs, weights={"A": 1.0, "B": 1.0}))
    assert wspl(**kwargs) != pytest.approx(wspl(**kwargs, weights={"A": 142.0, "B": 42.0}))


def test_wspl_is_scale_free_per_series_with_fixed_weights() -> None:
    rng = np.random.default_rng(5)
    history = rng.poisson(6.0, 120).astype(float)
    history_ids = np.repeat(["A", "B", "C"], 40)
    ids = np.repeat(["A", "B", "C"], 7)
    actual = rng.poisson(6.0, 21).astype(float)
    quantiles = np.sort(actual[:, None] + rng.normal(0.0, 3.0, (21, 3)), axis=1)
    weights = {"A": 0.2, "B": 0.5, "C": 0.3}
    base = weighted_scaled_pinball_loss(
        actual, quantiles, QUANTILE_LEVELS, ids, history, history_ids, weights=weights
    )
    factor = 7.5  # series B counted in packs instead of units, say
    rows, hist_rows = ids == "B", history_ids == "B"
    actual_b, quantiles_b, history_b = actual.copy(), quantiles.copy(), history.copy()
    actual_b[rows] *= factor
    quantiles_b[rows] *= factor
    history_b[hist_rows] *= factor
    scaled = weighted_scaled_pinball_loss(
        actual_b, quantiles_b, QUANTILE_LEVELS, ids, history_b, history_ids, weights=weights
    )
    assert scaled == pytest.approx(base, rel=1e-12)
    # the plain mean pinball loss is not scale-free, so the check above has teeth
    assert mean_pinball_loss(actual_b, quantiles_b) != pytest.approx(
        mean_pinball_loss(actual, quantiles)
    )


def test_wspl_perfect_forecast_is_zero() -> None:
    perfect = np.repeat(FORECAST_ACTUAL[:, None], 2, axis=1)
    assert wspl(quantiles=perfect) == 0.0


def test_wspl_leaves_out_series_of_zero_scale() -> None:
    # C is constant from its first non-zero value, D has one point from it: no scale.
    history = np.r_[HISTORY, 5.0, 5.0, 5.0, 0.0, 0.0, 3.0]
    history_ids = np.concatenate([HISTORY_IDS, ["C"] * 3, ["D"] * 3])
    with_bad = wspl(
        actual=np.r_[FORECAST_ACTUAL, 5.0, 3.0],
        quantiles=np.r_[FORECAST_Q, [[50.0, 90.0], [0.0, 0.0]]],
        series_ids=np.concatenate([FORECAST_IDS, ["C", "D"]]),
        history_actual=history,
        history_series_ids=history_ids,
    )
    assert with_bad == pytest.approx(wspl())


# --- expanded holdouts and the bootstrap statistic --------------------------------------------


def test_encode_decode_round_trip() -> None:
    demand = np.array([0.0, 3.0, 17.0, 999_999_999.0, 12.345678])
    level_index = np.array([0, 1, 2, 2, 1])
    labels = encode_quantile_labels(demand, level_index)
    assert labels[:4].tolist() == [0.0, 1e9 + 3.0, 2e9 + 17.0, 2e9 + 999_999_999.0]
    decoded, index = decode_quantile_labels(labels)
    assert index.tolist() == level_index.tolist()
    assert decoded[:4].tolist() == demand[:4].tolist()  # integers come back exactly
    assert decoded[4] == pytest.approx(demand[4], abs=1e-6)
    assert encode_quantile_labels([2.0, 5.0], 1).tolist() == [1e9 + 2.0, 1e9 + 5.0]
    assert QUANTILE_LABEL_STRIDE == 1e9


def expand(actual: np.ndarray, quantiles: np.ndarray, item_major: bool = False):
    """Labels and scores of the holdout with one row per (item, level)."""
    n, k = quantiles.shape
    if item_major:
        demand, index, scores = np.repeat(actual, k), np.tile(np.arange(k), n), quantiles.ravel()
    else:
        demand, index = np.tile(actual, k), np.repeat(np.arange(k), n)
        scores = quantiles.T.ravel()
    return encode_quantile_labels(demand, index), scores


@pytest.mark.parametrize("item_major", [False, True])
def test_expanded_demand_metrics_equal_demand_metrics(item_major: bool) -> None:
    labels, scores = expand(ACTUAL, QUANTILES, item_major)
    assert expanded_demand_metrics(labels, scores) == pytest.approx(
        demand_metrics(ACTUAL, QUANTILES)
    )
    fractional = ACTUAL + np.array([0.25, 0.0, 1.0 / 3.0, 0.7])
    labels, scores = expand(fractional, QUANTILES, item_major)
    assert expanded_demand_metrics(labels, scores) == pytest.approx(
        demand_metrics(fractional, QUANTILES), rel=1e-9
    )


def test_pinball_statistic_rows_and_mean() -> None:
    assert isinstance(PINBALL_STATISTIC, RowMean)
    assert PINBALL_STATISTIC.name == "pinball"
    assert PINBALL_STATISTIC.higher_is_better is False
    labels, scores = expand(ACTUAL, QUANTILES)
    values = PINBALL_STATISTIC.values(labels, scores)
    # level-major: the first four rows are P10, e.g. row 3: actual 6, P10 7 -> 0.9 · 1
    assert values[:4] == pytest.approx([0.2, 0.0, 0.5, 0.9])
    assert PINBALL_STATISTIC.prepare(labels, scores)(np.ones(len(labels))) == pytest.approx(
        demand_metrics(ACTUAL, QUANTILES)["pinball"]
    )


def test_better_forecaster_wins_the_paired_bootstrap() -> None:
    rng = np.random.default_rng(2024)
    rate = rng.gamma(2.0, 6.0, 600)
    actual = rng.poisson(rate).astype(float)
    levels = np.asarray(QUANTILE_LEVELS)
    good = poisson.ppf(levels[None, :], rate[:, None])
    poor = poisson.ppf(levels[None, :], 1.6 * rate[:, None])  # over-forecasts by 60 %
    labels, good_scores = expand(actual, good)
    _, poor_scores = expand(actual, poor)

    interval = paired_bootstrap(
        labels, good_scores, poor_scores, PINBALL_STATISTIC, samples=400, confidence=0.95, seed=7
    )
    assert interval.metric == "pinball"
    assert interval.excludes_zero()
    good_metrics = expanded_demand_metrics(labels, good_scores)
    poor_metrics = expanded_demand_metrics(labels, poor_scores)
    assert interval.difference == pytest.approx(poor_metrics["pinball"] - good_metrics["pinball"])
    assert good_metrics["crossing_share"] == 0.0
    assert 0.7 < good_metrics["coverage_p10_p90"] < 0.95
    assert poor_metrics["bias_p50"] > 0.4

    reverse = paired_bootstrap(
        labels, poor_scores, good_scores, PINBALL_STATISTIC, samples=400, confidence=0.95, seed=7
    )
    assert reverse.high < 0.0


# --- every ValueError rule --------------------------------------------------------------------

GOOD_Q = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 2.0]])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: wape([0.0, 0.0], [1.0, 2.0]), "actual sums to 0"),
        (lambda: bias([0.0], [1.0]), "actual sums to 0"),
        (lambda: wape([1.0, -1.0], [1.0, 1.0]), "actual must be non-negative"),
        (lambda: wape([1.0, np.nan], [1.0, 1.0]), "actual must be finite"),
        (lambda: wape([1.0, np.inf], [1.0, 1.0]), "actual must be finite"),
        (lambda: wape([1.0, 2.0], [1.0, np.nan]), "forecast must be finite"),
        (lambda: wape([1.0, 2.0], [1.0, 2.0, 3.0]), "forecast must be 1-d with one value"),
        (lambda: bias([1.0, 2.0], [[1.0, 2.0]]), "forecast must be 1-d with one value"),
        (lambda: wape([[1.0, 2.0]], [[1.0, 2.0]]), "actual must be 1-d"),
        (lambda: wape([], []), "empty"),
        (lambda: pinball_loss([1.0], [1.0], 0.0), "level must lie strictly between 0 and 1"),
        (lambda: pinball_loss([1.0], [1.0], 1.0), "level must lie strictly between 0 and 1"),
        (lambda: pinball_loss([1.0], [1.0], np.nan), "level must lie strictly between 0 and 1"),
        (lambda: pinball_loss([1.0], [1.0], True), "level must be a number"),
        (lambda: pinball_loss([1.0], [1.0], "0.5"), "level must be a number"),
        (lambda: pinball_loss([-1.0], [1.0], 0.5), "actual must be non-negative"),
        (lambda: pinball_loss([1.0], [1.0, 2.0], 0.5), "forecast must be 1-d"),
        (lambda: mean_pinball_loss([1.0, 2.0], GOOD_Q, ()), "levels must be a non-empty"),
        (lambda: mean_pinball_loss([1.0, 2.0], GOOD_Q, (0.1, 0.5, 1.0)), "strictly between"),
        (lambda: mean_pinball_loss([1.0, 2.0], GOOD_Q, (0.1, 0.9, 0.5)), "strictly increasing"),
        (lambda: mean_pinball_loss([1.0, 2.0], GOOD_Q, (0.5, 0.5, 0.9)), "strictly increasing"),
        (lambda: mean_pinball_loss([1.0, 2.0], GOOD_Q[:, :2]), "quantiles must be 2-d of shape"),
        (lambda: mean_pinball_loss([1.0, 2.0], GOOD_Q[0]), "quantiles must be 2-d of shape"),
        (lambda: mean_pinball_loss([1.0, 2.0], GOOD_Q * np.nan), "quantiles must be finite"),
        (lambda: interval_coverage([1.0, 2.0], [0.0], [3.0, 3.0]), "lower must be 1-d"),
        (lambda: interval_coverage([1.0, 2.0], [0.0, 0.0], [3.0, np.inf]), "upper must be finite"),
        (lambda: interval_coverage([np.nan], [0.0], [1.0]), "actual must be finite"),
        (lambda: demand_metrics([1.0, 2.0], GOOD_Q[:, :1], (0.5,)), "at least two levels"),
        (lambda: demand_metrics([1.0, 2.0], GOOD_Q, (0.1, 0.4, 0.9)), "must include 0.5"),
        (lambda: demand_metrics([0.0, 0.0], GOOD_Q), "actual sums to 0"),
        (lambda: demand_metrics([1.0, 2.0], GOOD_Q[:, :2]), "quantiles must be 2-d of shape"),
    ],
)
def test_metric_rules(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"series_ids": np.array(["A", "B"])}, "series_ids must be 1-d with one id per row"),
        ({"history_series_ids": HISTORY_IDS[:-1]}, "history_series_ids must be 1-d"),
        ({"history_actual": np.r_[HISTORY[:-1], -1.0]}, "history_actual must be non-negative"),
        ({"history_actual": np.r_[HISTORY[:-1], np.nan]}, "history_actual must be finite"),
        ({"history_prices": np.ones(3)}, "history_prices must be 1-d with one price"),
        ({"history_prices": np.r_[np.ones(6), -1.0]}, "history_prices must be finite and non-neg"),
        ({"series_ids": np.array(["A", "B", "Z"])}, r"series without history .*'Z'"),
        ({"weights": {"A": 1.0}}, r"weights lacks series \['B'\]"),
        ({"weights": {"A": 1.0, "B": -1.0}}, "weights must be finite and non-negative"),
        ({"weights": {"A": 1.0, "B": np.nan}}, "weights must be finite and non-negative"),
        ({"weights": {"A": 0.0, "B": 0.0}}, "weights of the series evaluated sum to 0"),
        ({"levels": (0.9, 0.5)}, "strictly increasing"),
        ({"quantiles": FORECAST_Q[:, :1]}, "quantiles must be 2-d of shape"),
        (
            {
                "history_actual": np.array([0.0, 0.0, 4.0, 4.0, 0.0, 0.0, 0.0]),
                "history_series_ids": HISTORY_IDS,
            },
            "every series has scale 0",
        ),
    ],
)
def test_wspl_rules(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        wspl(**overrides)


def test_wspl_rule_zero_sales_in_window() -> None:
    # B has the only positive scale but sold nothing in its last 28 points; A has scale 0.
    history = np.r_[np.full(5, 2.0), 1.0, 3.0, np.zeros(28)]
    ids = np.array(["A"] * 5 + ["B"] * 30)
    with pytest.raises(ValueError, match="weights of the series evaluated sum to 0"):
        wspl(history_actual=history, history_series_ids=ids, series_ids=np.array(["A", "B", "B"]))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: encode_quantile_labels([-1.0], 0), "demanded units must be non-negative"),
        (lambda: encode_quantile_labels([np.nan], 0), "demanded units must be finite"),
        (lambda: encode_quantile_labels([np.inf], 0), "demanded units must be finite"),
        (lambda: encode_quantile_labels([1e9], 0), "below QUANTILE_LABEL_STRIDE"),
        (lambda: encode_quantile_labels([np.nextafter(1e9, 0.0)], 1), "too close to"),
        (lambda: encode_quantile_labels([1.0], -1), "non-negative integers"),
        (lambda: encode_quantile_labels([1.0], 0.5), "non-negative integers"),
        (lambda: encode_quantile_labels([1.0], True), "non-negative integers"),
        (lambda: encode_quantile_labels([1.0], "1"), "non-negative integers"),
        (lambda: encode_quantile_labels([1.0, 2.0], [0, 1, 2]), "one per row of demand"),
        (lambda: encode_quantile_labels([[1.0]], 0), "demanded units must be 1-d"),
        (lambda: decode_quantile_labels([-1.0]), "labels must be non-negative"),
        (lambda: decode_quantile_labels([np.nan]), "labels must be finite"),
        (lambda: expanded_demand_metrics([1e9 + 1.0, 2e9 + 1.0], [1.0, 1.0]), "same number"),
        (lambda: expanded_demand_metrics([3e9 + 1.0], [1.0]), "level index of 3"),
        (lambda: expanded_demand_metrics([1.0, 1e9 + 1.0], [1.0]), "1-d of equal length"),
        (lambda: expanded_demand_metrics([1.0], [np.nan]), "scores must be finite"),
        (
            # level 1 lists the two items in the other order
            lambda: expanded_demand_metrics(
                [1.0, 2.0, 1e9 + 2.0, 1e9 + 1.0, 2e9 + 1.0, 2e9 + 2.0], np.ones(6)
            ),
            "same order",
        ),
    ],
)
def test_label_rules(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_pinball_statistic_rejects_bad_rows_in_the_bootstrap() -> None:
    labels = np.array([1.0, 3e9 + 1.0])
    with pytest.raises(ValueError, match="level index of 3"):
        paired_bootstrap(labels, [1.0, 1.0], [2.0, 2.0], PINBALL_STATISTIC, 10, 0.9, 0)
    with pytest.raises(ValueError, match="labels must be non-negative"):
        PINBALL_STATISTIC.validate(np.array([-1.0]), np.array([1.0]))
