"""Uplift metrics (flashsale_ml.evaluation.uplift): Qini, AUUC, uplift@k, calibration by bin,
the cost-aware multi-arm curve and the Qini as a paired-bootstrap statistic.

Every metric is checked three ways: small examples computed by hand, an independent
brute-force implementation below (a boolean mask per threshold, Python loops, no shared
code with the module), and, where scikit-uplift is installed, scikit-uplift itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from flashsale_ml.errors import DataError
from flashsale_ml.evaluation.bootstrap import PairedStatistic, paired_bootstrap, statistic
from flashsale_ml.evaluation.uplift import (
    QiniStatistic,
    auuc,
    cost_aware_multi_arm_qini,
    encode_qini_labels,
    qini_coefficient,
    qini_curve,
    true_effect_qini,
    uplift_at_k,
    uplift_curve,
    uplift_decile_calibration,
)

# --------------------------------------------------------------------------- brute force


def brute_curve(y, t, s, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(fraction, curve) with one point per distinct score, from a mask per threshold."""
    y, t, s = (np.asarray(a, dtype=float) for a in (y, t, s))
    fractions, values = [0.0], [0.0]
    for threshold in sorted(set(s.tolist()), reverse=True):
        top = s >= threshold
        n_t = float((top & (t == 1)).sum())
        n_c = float((top & (t == 0)).sum())
        y_t = float(y[top & (t == 1)].sum())
        y_c = float(y[top & (t == 0)].sum())
        if kind == "qini":
            value = y_t - (y_c * n_t / n_c if n_c else 0.0)
        else:
            rate_t = y_t / n_t if n_t else 0.0
            rate_c = y_c / n_c if n_c else 0.0
            value = (rate_t - rate_c) * top.sum()
        fractions.append(top.mean())
        values.append(value)
    return np.array(fractions), np.array(values)


def brute_area(fractions: np.ndarray, values: np.ndarray, n: int) -> float:
    """Trapezoids between the curve (per row of the population) and the chord to its end."""
    area = 0.0
    end = values[-1] / n
    for i in range(1, len(fractions)):
        width = fractions[i] - fractions[i - 1]
        curve = (values[i] + values[i - 1]) / (2 * n)
        chord = end * (fractions[i] + fractions[i - 1]) / 2
        area += width * (curve - chord)
    return area


def brute_qini(y, t, s, normalized: bool = True) -> float:
    y, t = np.asarray(y, dtype=float), np.asarray(t, dtype=float)
    area = brute_area(*brute_curve(y, t, s, "qini"), len(y))
    if not normalized:
        return area
    ideal = np.where(t == 1, y, -y)  # treated buyers first, control buyers last
    return area / brute_area(*brute_curve(y, t, ideal, "qini"), len(y))


def brute_uplift_at_k(y, t, s, k: float) -> float:
    rows = sorted(range(len(y)), key=lambda i: (-s[i], -i))  # scikit-uplift's order on ties
    top = rows[: int(len(y) * k)]
    treated = [y[i] for i in top if t[i] == 1]
    control = [y[i] for i in top if t[i] == 0]
    return sum(treated) / len(treated) - sum(control) / len(control)


def brute_cost_curve(y, arms, predicted, costs, control=0):
    """(spend, value) with one point per distinct ratio, from Python loops per user."""
    n, k = predicted.shape
    codes = [c for c in range(k + 1) if c != control]
    ratio, best = [], []
    for i in range(n):
        per_arm = [(predicted[i][j] / costs[j], -costs[j], j) for j in range(k)]
        top = max(per_arm)  # best ratio, then the cheaper arm
        ratio.append(top[0])
        best.append(top[2])
    spend, value = [0.0], [0.0]
    positive = sorted({r for r in ratio if r > 0}, reverse=True)
    for threshold in positive:
        total_value = total_spend = 0.0
        for j in range(k):
            mine = [i for i in range(n) if ratio[i] >= threshold and best[i] == j]
            treated = [y[i] for i in mine if arms[i] == codes[j]]
            held_out = [y[i] for i in mine if arms[i] == control]
            scaled = sum(held_out) * len(treated) / len(held_out) if held_out else 0.0
            total_value += sum(treated) - scaled
            total_spend += len(treated) * costs[j]
        spend.append(total_spend)
        value.append(total_value)
    return np.array(spend), np.array(value)


# --------------------------------------------------------------------------- data


def campaign(n: int, seed: int, base: float = 0.2) -> dict[str, np.ndarray]:
    """A randomized campaign with a known uplift ``tau`` per user, from -0.05 to 0.25."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=n)
    tau = 0.3 * x - 0.05
    t = rng.integers(0, 2, n).astype(float)
    y = (rng.uniform(size=n) < base + t * tau).astype(float)
    return {"y": y, "t": t, "tau": tau}


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return campaign(20_000, seed=7)


# Hand example: rows ranked as given; treated buyer, control non-buyer, treated non-buyer,
# control buyer.
HAND_Y = [1, 0, 0, 1]
HAND_T = [1, 0, 1, 0]
HAND_S = [0.9, 0.8, 0.7, 0.6]


def small_random(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 120))
    y = rng.integers(0, 2, n).astype(float)
    t = rng.integers(0, 2, n).astype(float)
    t[:2] = [0.0, 1.0]  # both groups
    y[0] = 1.0  # a responder, so the normalized Qini is defined
    # Odd seeds: few distinct scores, so most rows are tied.
    s = rng.integers(0, 4, n).astype(float) if seed % 2 else rng.normal(size=n)
    return y, t, s


# --------------------------------------------------------------------------- Qini


def test_qini_curve_by_hand() -> None:
    curve = qini_curve(HAND_Y, HAND_T, HAND_S)
    np.testing.assert_allclose(curve.fraction, [0, 0.25, 0.5, 0.75, 1])
    # 1 treated buyer, no control yet; then the control non-buyer; finally the control
    # buyer cancels the treated buyer: 1 - 1 * 2 / 2 = 0.
    np.testing.assert_allclose(curve.qini, [0, 1, 1, 1, 0])
    np.testing.assert_allclose(curve.random, 0.0)
    assert curve.rows == 4


def test_qini_coefficient_by_hand() -> None:
    # Per-row curve 0, .25, .25, .25, 0 on steps of .25: area .1875, the random line is 0.
    assert qini_coefficient(HAND_Y, HAND_T, HAND_S, normalized=False) == pytest.approx(0.1875)
    # This ranking is the perfect one, so the normalized Qini is 1.
    assert qini_coefficient(HAND_Y, HAND_T, HAND_S) == pytest.approx(1.0)
    # Inverted: curve 0, 0, -1, -.5, 0 → area -.09375, half the perfect area below zero.
    inverted = [-s for s in HAND_S]
    assert qini_coefficient(HAND_Y, HAND_T, inverted, normalized=False) == pytest.approx(-0.09375)
    assert qini_coefficient(HAND_Y, HAND_T, inverted) == pytest.approx(-0.5)


def test_constant_scores_are_exactly_random() -> None:
    y, t, _ = small_random(3)
    assert qini_coefficient(y, t, np.full(len(y), 0.4)) == 0.0
    assert auuc(y, t, np.zeros(len(y))) == 0.0


def test_ties_form_one_group_whatever_the_row_order() -> None:
    y, t, s = small_random(5)  # few distinct scores
    curve = qini_curve(y, t, s)
    assert len(curve.fraction) == len(np.unique(s)) + 1
    shuffled = np.random.default_rng(0).permutation(len(y))
    again = qini_curve(y[shuffled], t[shuffled], s[shuffled])
    np.testing.assert_allclose(again.qini, curve.qini, rtol=0, atol=1e-12)
    np.testing.assert_allclose(again.fraction, curve.fraction)
    assert qini_coefficient(y[shuffled], t[shuffled], s[shuffled]) == pytest.approx(
        qini_coefficient(y, t, s), abs=1e-12
    )


@pytest.mark.parametrize("seed", range(12))
def test_qini_and_uplift_curves_match_brute_force(seed: int) -> None:
    y, t, s = small_random(seed)
    for kind, curve in (("qini", qini_curve(y, t, s)), ("uplift", uplift_curve(y, t, s))):
        fractions, values = brute_curve(y, t, s, kind)
        np.testing.assert_allclose(curve.fraction, fractions, atol=1e-12)
        np.testing.assert_allclose(getattr(curve, kind), values, atol=1e-9)
        np.testing.assert_allclose(curve.random, fractions * values[-1], atol=1e-9)
    assert qini_coefficient(y, t, s) == pytest.approx(brute_qini(y, t, s), abs=1e-10)
    assert qini_coefficient(y, t, s, normalized=False) == pytest.approx(
        brute_qini(y, t, s, normalized=False), abs=1e-12
    )
    assert auuc(y, t, s, normalized=False) == pytest.approx(
        brute_area(*brute_curve(y, t, s, "uplift"), len(y)), abs=1e-12
    )


def test_uplift_curve_by_hand() -> None:
    curve = uplift_curve(HAND_Y, HAND_T, HAND_S)
    # (rate_T − rate_C) × rows: (1 − 0)·1, (1 − 0)·2, (1/2 − 0)·3, (1/2 − 1/2)·4.
    np.testing.assert_allclose(curve.uplift, [0, 1, 2, 1.5, 0])


def test_n_points_interpolates_the_exact_curve(data: dict[str, np.ndarray]) -> None:
    exact = qini_curve(data["y"], data["t"], data["tau"])
    coarse = qini_curve(data["y"], data["t"], data["tau"], n_points=11)
    np.testing.assert_allclose(coarse.fraction, np.linspace(0, 1, 11))
    np.testing.assert_allclose(coarse.qini, np.interp(coarse.fraction, exact.fraction, exact.qini))
    assert coarse.qini[0] == 0.0 and coarse.qini[-1] == pytest.approx(exact.qini[-1])
    assert len(uplift_curve(data["y"], data["t"], data["tau"], n_points=5).uplift) == 5
    with pytest.raises(ValueError, match="n_points"):
        qini_curve(data["y"], data["t"], data["tau"], n_points=1)


def test_perfect_beats_random_beats_inverted(data: dict[str, np.ndarray]) -> None:
    y, t, tau = data["y"], data["t"], data["tau"]
    noise = np.random.default_rng(1).normal(size=len(y))
    for metric in (qini_coefficient, auuc):
        oracle, random, inverted = (metric(y, t, s) for s in (tau, noise, -tau))
        # Normalized by the ideal ranking of realized outcomes, which no model of a
        # 0.2 purchase rate comes near: the oracle scores about 0.1, random noise about 0.
        assert oracle > random + 0.05
        assert random > inverted + 0.05
        assert oracle > 0.05 and inverted < -0.05
    # The oracle's top 30% have the largest true uplift: about 0.3 · 0.85 − 0.05 = 0.2.
    assert uplift_at_k(y, t, tau, 0.3) > uplift_at_k(y, t, noise, 0.3) + 0.05


def test_random_scores_average_to_zero_qini() -> None:
    d = campaign(2_000, seed=11)
    rng = np.random.default_rng(2)
    draws = np.array([qini_coefficient(d["y"], d["t"], rng.normal(size=2_000)) for _ in range(300)])
    # Random rankings scatter around the random line; their mean is 0 within sampling error.
    assert abs(draws.mean()) < 3 * draws.std(ddof=1) / np.sqrt(len(draws))
    assert draws.std() > 0.01  # and they do scatter


def test_normalized_qini_undefined_without_responders() -> None:
    t = [0, 1, 0, 1]
    with pytest.raises(ValueError, match="normalized Qini is undefined"):
        qini_coefficient([0, 0, 0, 0], t, [1, 2, 3, 4])
    assert qini_coefficient([0, 0, 0, 0], t, [1, 2, 3, 4], normalized=False) == 0.0


def test_an_undefined_normalized_qini_is_a_data_error_that_says_why() -> None:
    """A pipeline must fail on such a holdout as bad data (no retry), not as a crash."""
    t = [0, 1, 0, 1, 1]
    with pytest.raises(DataError, match="no buyers in control and treated") as raised:
        qini_coefficient([0, 0, 0, 0, 0], t, [1, 2, 3, 4, 5])
    assert "5 rows" in str(raised.value) and "0 buyers among 3 treated rows" in str(raised.value)
    with pytest.raises(DataError, match="normalized AUUC is undefined"):
        auuc([0, 0, 0, 0, 0], t, [1, 2, 3, 4, 5])
    with pytest.raises(DataError, match="no control rows"):
        qini_coefficient([0, 1, 1], [1, 1, 1], [1, 2, 3])
    with pytest.raises(DataError, match="no buyers in control and treated"):
        QiniStatistic().validate(encode_qini_labels([0, 0, 0, 0], [0, 1, 0, 1]), np.arange(4.0))


# --------------------------------------------------------------------------- uplift@k


def test_uplift_at_k_by_hand() -> None:
    # Top 2 rows: a treated buyer and a control non-buyer → 1 − 0.
    assert uplift_at_k(HAND_Y, HAND_T, HAND_S, k=2) == 1.0
    assert uplift_at_k(HAND_Y, HAND_T, HAND_S, k=0.5) == 1.0
    # by_group, half of each group: the treated buyer against the control non-buyer.
    assert uplift_at_k(HAND_Y, HAND_T, HAND_S, k=0.5, strategy="by_group") == 1.0
    # by_group, all of each group... only k < 1 is allowed; 0.99 → int(2 · .99) = 1 each.
    assert uplift_at_k(HAND_Y, HAND_T, HAND_S, k=0.99, strategy="by_group") == 1.0
    with pytest.raises(ValueError, match="has no control rows"):
        uplift_at_k(HAND_Y, HAND_T, HAND_S, k=1)  # the top row is treated only
    with pytest.raises(ValueError, match="share in"):
        uplift_at_k(HAND_Y, HAND_T, HAND_S, k=1.5)
    with pytest.raises(ValueError, match="k="):
        uplift_at_k(HAND_Y, HAND_T, HAND_S, k=4)
    with pytest.raises(ValueError, match="strategy"):
        uplift_at_k(HAND_Y, HAND_T, HAND_S, strategy="top")  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(0, 12, 3))
def test_uplift_at_k_matches_brute_force(seed: int) -> None:
    y, t, s = small_random(seed)
    y, t, s = np.r_[y, y], np.r_[t, t], np.r_[s, s + 0.5]  # enough rows in the top k
    assert uplift_at_k(y, t, s, k=0.5) == pytest.approx(brute_uplift_at_k(y, t, s, 0.5))


# --------------------------------------------------------------------------- calibration


def test_decile_calibration_lands_on_the_diagonal() -> None:
    d = campaign(200_000, seed=3, base=0.3)
    calibration = uplift_decile_calibration(d["y"], d["t"], d["tau"])
    assert len(calibration.rows) == 10 and calibration.rows.sum() == 200_000
    np.testing.assert_array_equal(calibration.rows, 20_000)
    np.testing.assert_array_equal(
        calibration.treated_rows + calibration.control_rows, calibration.rows
    )
    assert np.all(np.diff(calibration.mean_predicted) > 0)
    # Each bin's realized uplift has a standard error of about 0.0065.
    np.testing.assert_allclose(calibration.realized_uplift, calibration.mean_predicted, atol=0.03)
    assert calibration.calibration_error() < 0.015
    # Predictions twice as large and shifted are visibly off the diagonal.
    off = uplift_decile_calibration(d["y"], d["t"], 2 * d["tau"] + 0.1)
    assert off.calibration_error() > 0.1


def test_decile_calibration_by_hand() -> None:
    y = [1, 0, 0, 0, 1, 1]
    t = [1, 0, 1, 0, 1, 1]
    p = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    calibration = uplift_decile_calibration(y, t, p, bins=3)
    np.testing.assert_allclose(calibration.mean_predicted, [0.15, 0.35, 0.55])
    np.testing.assert_allclose(calibration.rows, [2, 2, 2])
    np.testing.assert_allclose(calibration.treated_rows, [1, 1, 2])
    # Bin 1: 1/1 − 0/1; bin 2: 0/1 − 0/1; bin 3 has no control row.
    np.testing.assert_allclose(calibration.realized_uplift[:2], [1.0, 0.0])
    assert np.isnan(calibration.realized_uplift[2])
    # Weighted gap over the two defined bins: (2 · 0.85 + 2 · 0.35) / 4.
    assert calibration.calibration_error() == pytest.approx(0.6)
    # More bins than rows: one row per bin, none empty.
    assert len(uplift_decile_calibration(y, t, p, bins=50).rows) == 6
    with pytest.raises(ValueError, match="bins"):
        uplift_decile_calibration(y, t, p, bins=0)


# --------------------------------------------------------------------------- validation

METRICS = {
    "qini_curve": qini_curve,
    "qini_coefficient": qini_coefficient,
    "uplift_curve": uplift_curve,
    "auuc": auuc,
    "uplift_at_k": uplift_at_k,
    "uplift_decile_calibration": uplift_decile_calibration,
}
BAD_INPUTS = {
    "misaligned": (([1, 0, 1], [1, 0], [0.1, 0.2, 0.3]), "equal length"),
    "empty": (([], [], []), "empty"),
    "non-binary y": (([1, 2, 0], [1, 0, 1], [0.1, 0.2, 0.3]), "y must contain only 0 and 1"),
    "NaN y": (([1, np.nan, 0], [1, 0, 1], [0.1, 0.2, 0.3]), "y must contain only 0 and 1"),
    "non-binary group": (([1, 0, 0], [1, 0, 2], [0.1, 0.2, 0.3]), "treated must contain only"),
    "no treated rows": (([1, 0, 1], [0, 0, 0], [0.1, 0.2, 0.3]), "no treated rows"),
    "no control rows": (([1, 0, 1], [1, 1, 1], [0.1, 0.2, 0.3]), "no control rows"),
    "NaN score": (([1, 0, 1], [1, 0, 1], [0.1, np.nan, 0.3]), "finite"),
    "2-d scores": (([1, 0], [1, 0], [[0.1, 0.2], [0.3, 0.4]]), "1-d of equal length"),
}


@pytest.mark.parametrize("bad", sorted(BAD_INPUTS))
@pytest.mark.parametrize("metric", sorted(METRICS))
def test_bad_inputs_raise_naming_the_problem(metric: str, bad: str) -> None:
    args, message = BAD_INPUTS[bad]
    with pytest.raises(ValueError, match=message):
        METRICS[metric](*args)


# --------------------------------------------------------------------------- scikit-uplift


@pytest.mark.parametrize("seed", range(16))
def test_matches_scikit_uplift(seed: int) -> None:
    metrics = pytest.importorskip("sklift.metrics")
    y, t, s = small_random(seed)
    assert qini_coefficient(y, t, s) == pytest.approx(
        metrics.qini_auc_score(y, s, t, negative_effect=True), abs=1e-10
    )
    assert auuc(y, t, s) == pytest.approx(metrics.uplift_auc_score(y, s, t), abs=1e-10)
    for ours, theirs in (
        (qini_curve(y, t, s), metrics.qini_curve(y, s, t)),
        (uplift_curve(y, t, s), metrics.uplift_curve(y, s, t)),
    ):
        np.testing.assert_allclose(ours.fraction * len(y), theirs[0], atol=1e-9)
        values = ours.qini if hasattr(ours, "qini") else ours.uplift
        np.testing.assert_allclose(values, theirs[1], atol=1e-9)


def test_uplift_at_k_matches_scikit_uplift(data: dict[str, np.ndarray]) -> None:
    metrics = pytest.importorskip("sklift.metrics")
    y, t = data["y"], data["t"]
    coarse = np.round(data["tau"], 2)  # many ties, so the cut runs through tied rows
    for s in (data["tau"], coarse):
        for strategy in ("overall", "by_group"):
            for k in (0.1, 0.3, 500):
                assert uplift_at_k(y, t, s, k=k, strategy=strategy) == pytest.approx(
                    metrics.uplift_at_k(y, s, t, strategy=strategy, k=k), abs=1e-12
                )


def test_qini_on_campaign_matches_scikit_uplift(data: dict[str, np.ndarray]) -> None:
    metrics = pytest.importorskip("sklift.metrics")
    y, t = data["y"], data["t"]
    for s in (data["tau"], np.round(data["tau"], 1), -data["tau"]):
        assert qini_coefficient(y, t, s) == pytest.approx(
            metrics.qini_auc_score(y, s, t), abs=1e-10
        )


# --------------------------------------------------------------------------- cost-aware


def test_cost_curve_by_hand() -> None:
    # Arms: 0 control, 1 costs 1, 2 costs 2. Ratios: u0 3 (arm 1), u1 2 (arm 2: 4/2 beats 1/1),
    # u2 3 (arm 1, tied with u0), u3 1 (arm 1), u4 -1 (not targeted).
    predicted = np.array([[3.0, 2.0], [1.0, 4.0], [3.0, 0.0], [1.0, 1.0], [-1.0, -2.0]])
    arms = [1, 2, 0, 0, 1]
    y = [10.0, 7.0, 4.0, 2.0, 9.0]
    curve = cost_aware_multi_arm_qini(y, arms, predicted, [1.0, 2.0])
    np.testing.assert_array_equal(curve.recommended_arm, [1, 2, 1, 1, 0])
    np.testing.assert_allclose(curve.value_per_cost, [3, 2, 3, 1, -1])
    # Group {u0, u2}: arm 1 has treated u0 (10) and control u2 (4): 10 − 4·1/1 = 6, spend 1.
    # Then u1: arm 2 matched (7), no control yet → counts 7 (the Qini convention), spend 3.
    # Then u3 (control, arm 1): 10 − (4 + 2)·1/2 = 7, plus 7 → 14.
    np.testing.assert_allclose(curve.spend, [0, 1, 3, 3])
    np.testing.assert_allclose(curve.value, [0, 6, 13, 14])
    np.testing.assert_allclose(curve.targeted, [0, 2, 3, 4])
    np.testing.assert_allclose(curve.random_value, 14 * curve.spend / 3)


@pytest.mark.parametrize("seed", range(6))
def test_cost_curve_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = 60, 3
    arms = rng.integers(0, k + 1, n)
    arms[: k + 1] = np.arange(k + 1)  # every arm present
    control = int(seed % (k + 1))
    predicted = rng.integers(-2, 4, (n, k)).astype(float)  # many tied ratios
    costs = np.array([1.0, 2.0, 0.5])
    y = rng.normal(5, 2, n)
    curve = cost_aware_multi_arm_qini(y, arms, predicted, costs, control_code=control)
    spend, value = brute_cost_curve(y, arms, predicted, costs, control)
    np.testing.assert_allclose(curve.spend, spend, atol=1e-9)
    np.testing.assert_allclose(curve.value, value, atol=1e-9)


def two_arm_campaign(
    n: int, effect_1: float, effect_2: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Control (0) and two arms; arm j adds ``effect_j · h(x)`` where h spans −0.5..1.5."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=n)
    h = 2.0 * x - 0.5
    effects = np.column_stack([effect_1 * h, effect_2 * h])
    arms = rng.integers(0, 3, n)
    received = np.where(arms == 0, 0.0, effects[np.arange(n), np.maximum(arms, 1) - 1])
    y = 10.0 + 2.0 * x + received + rng.normal(0.0, 0.5, n)
    return y, arms, effects


def test_cost_curve_prefers_the_cheaper_arm_at_equal_effects() -> None:
    y, arms, effects = two_arm_campaign(30_000, 1.0, 1.0, seed=4)
    costs = np.array([1.0, 3.0])
    curve = cost_aware_multi_arm_qini(y, arms, effects, costs)
    positive = effects[:, 0] > 0
    np.testing.assert_array_equal(curve.recommended_arm[positive], 1)
    np.testing.assert_array_equal(curve.recommended_arm[~positive], 0)
    # The same users on the expensive arm: about the same value for three times the spend.
    expensive = cost_aware_multi_arm_qini(
        y, arms, np.column_stack([-effects[:, 0], effects[:, 1]]), costs
    )
    np.testing.assert_array_equal(expensive.recommended_arm[positive], 2)
    assert curve.value[-1] / curve.spend[-1] > 2.0 * expensive.value[-1] / expensive.spend[-1]
    # Higher ratio first: the curve is concave, above its random reference.
    assert np.all(curve.value[1:-1] >= curve.random_value[1:-1] - 0.05 * curve.value[-1])


def test_cost_curve_ends_at_the_value_of_everyone_on_their_best_arm() -> None:
    y, arms, effects = two_arm_campaign(30_000, 1.0, 3.0, seed=5)
    costs = np.array([1.0, 2.0])  # arm 2: three times the effect at twice the cost
    curve = cost_aware_multi_arm_qini(y, arms, effects, costs)
    positive = effects[:, 1] > 0
    np.testing.assert_array_equal(curve.recommended_arm[positive], 2)
    assert curve.targeted[-1] == positive.sum()
    # Matched users (recommended arm 2 and randomized to it) carry the whole estimate.
    matched = positive & (arms == 2)
    truth = effects[matched, 1].sum()
    assert curve.spend[-1] == pytest.approx(2.0 * matched.sum())
    # Standard error of Y_T − Y_C·N_T/N_C is about N_T · sd · sqrt(1/N_T + 1/N_C) ≈ 110 here.
    assert curve.value[-1] == pytest.approx(truth, abs=450)
    assert curve.random_value[-1] == curve.value[-1]
    assert curve.value[0] == curve.spend[0] == 0.0


def test_cost_curve_with_nobody_to_target() -> None:
    curve = cost_aware_multi_arm_qini([1.0, 2.0, 3.0], [0, 1, 2], -np.ones((3, 2)), [1.0, 1.0])
    np.testing.assert_array_equal(curve.spend, [0.0])
    np.testing.assert_array_equal(curve.value, [0.0])
    np.testing.assert_array_equal(curve.recommended_arm, [0, 0, 0])


COST_BAD = {
    "misaligned": (([1.0, 2.0], [0, 1, 2], np.ones((3, 2)), [1.0, 1.0]), "equal length"),
    "predictions not n × K": (([1.0, 2.0, 3.0], [0, 1, 2], np.ones(3), [1.0, 1.0]), "n × K"),
    "costs shape": (([1.0, 2.0, 3.0], [0, 1, 2], np.ones((3, 2)), [1.0]), "one cost per arm"),
    "zero cost": (([1.0, 2.0, 3.0], [0, 1, 2], np.ones((3, 2)), [0.0, 1.0]), "positive"),
    "arm out of range": (([1.0, 2.0, 3.0], [0, 1, 3], np.ones((3, 2)), [1.0, 1.0]), "arm_codes"),
    "fractional arm": (([1.0, 2.0, 3.0], [0, 1, 1.5], np.ones((3, 2)), [1.0, 1.0]), "arm_codes"),
    "no control": (([1.0, 2.0, 3.0], [1, 1, 2], np.ones((3, 2)), [1.0, 1.0]), "no control"),
    "arm missing": (([1.0, 2.0, 3.0], [0, 1, 1], np.ones((3, 2)), [1.0, 1.0]), "arm 2"),
    "NaN value": (([1.0, np.nan, 3.0], [0, 1, 2], np.ones((3, 2)), [1.0, 1.0]), "y_value"),
    "NaN prediction": (
        ([1.0, 2.0, 3.0], [0, 1, 2], [[1, 1], [np.nan, 1], [1, 1]], [1.0, 1.0]),
        "predicted_value_uplift must be finite",
    ),
}


@pytest.mark.parametrize("bad", sorted(COST_BAD))
def test_cost_curve_bad_inputs(bad: str) -> None:
    args, message = COST_BAD[bad]
    with pytest.raises(ValueError, match=message):
        cost_aware_multi_arm_qini(*args)


def test_cost_curve_bad_control_code() -> None:
    for code in (5, -1, True):
        with pytest.raises(ValueError, match="control_code"):
            cost_aware_multi_arm_qini([1.0, 2.0, 3.0], [0, 1, 2], np.ones((3, 2)), [1, 1], code)


# --------------------------------------------------------------------------- QiniStatistic


def test_qini_statistic_is_a_paired_statistic() -> None:
    stat = QiniStatistic()
    assert isinstance(stat, PairedStatistic)
    assert statistic(stat) is stat
    assert (stat.name, stat.higher_is_better) == ("qini", True)
    np.testing.assert_array_equal(encode_qini_labels([0, 1, 0, 1], [0, 0, 1, 1]), [0, 1, 2, 3])


@pytest.mark.parametrize("seed", range(8))
def test_qini_statistic_weighted_equals_repeated(seed: int) -> None:
    y, t, s = small_random(seed)
    labels = encode_qini_labels(y, t)
    weighted = QiniStatistic().prepare(labels, s)
    assert weighted(np.ones(len(y))) == pytest.approx(qini_coefficient(y, t, s), abs=1e-12)
    rng = np.random.default_rng(100 + seed)
    for _ in range(5):
        counts = np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y))
        rows = np.repeat(np.arange(len(y)), counts)
        if np.unique(t[rows]).size < 2:
            assert np.isnan(weighted(counts.astype(float)))
            continue
        try:
            repeated = qini_coefficient(y[rows], t[rows], s[rows])
        except ValueError:  # no responders in the resample: undefined both ways
            assert np.isnan(weighted(counts.astype(float)))
            continue
        assert weighted(counts.astype(float)) == pytest.approx(repeated, abs=1e-10)


def test_qini_statistic_resample_without_a_group_is_nan() -> None:
    y, t, s = small_random(1)
    weighted = QiniStatistic().prepare(encode_qini_labels(y, t), s)
    assert np.isnan(weighted(np.where(t == 1, 0.0, 1.0)))
    assert np.isnan(weighted(np.zeros(len(y))))


def test_paired_bootstrap_with_qini(data: dict[str, np.ndarray]) -> None:
    labels = encode_qini_labels(data["y"], data["t"])
    noise = np.random.default_rng(8).normal(size=len(labels))
    better = paired_bootstrap(labels, data["tau"], noise, QiniStatistic(), 200, 0.95, seed=1)
    assert better.metric == "qini"
    assert better.difference == pytest.approx(
        qini_coefficient(data["y"], data["t"], data["tau"])
        - qini_coefficient(data["y"], data["t"], noise)
    )
    assert better.excludes_zero()
    worse = paired_bootstrap(labels, -data["tau"], data["tau"], QiniStatistic(), 200, 0.95, 1)
    assert worse.high < 0
    same = paired_bootstrap(labels, data["tau"], data["tau"], QiniStatistic(), 50, 0.95, 1)
    assert same.difference == 0.0 and same.low == same.high == 0.0


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([0, 1, 4, 3], "group \\* 2 \\+ y"),
        ([0, 1, 2.5, 3], "group \\* 2 \\+ y"),
        ([0, 1, 0, 1], "no treated rows"),
        ([2, 3, 3, 2], "no control rows"),
        ([0, 0, 2, 2], "normalized Qini is undefined"),
    ],
)
def test_paired_bootstrap_with_qini_rejects_bad_labels(labels: list[float], message: str) -> None:
    scores = [0.1, 0.2, 0.3, 0.4]
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(labels, scores, scores[::-1], QiniStatistic(), 10, 0.9, 0)
    with pytest.raises(ValueError, match="finite"):
        paired_bootstrap([0, 1, 2, 3], [0.1, np.nan, 0.3, 0.4], scores, QiniStatistic(), 10, 0.9, 0)


# ------------------------------------------------------------------ Qini of known effects


def rank_formula_area(effects, scores) -> float:
    """The unnormalized true-effect area in closed form: with descending average ranks r
    (scipy's, ties averaged), the trapezoid sums to Σ τ_i (n − r_i + ½) / n² − Σ τ / (2n)."""
    from scipy.stats import rankdata

    effects = np.asarray(effects, dtype=float)
    n = len(effects)
    ranks = rankdata(-np.asarray(scores, dtype=float), method="average")
    return float((effects * (n - ranks + 0.5)).sum() / n**2 - effects.sum() / (2 * n))


@pytest.mark.parametrize("ties", [False, True])
def test_true_effect_qini_equals_the_closed_form_of_scipy_ranks(ties: bool) -> None:
    rng = np.random.default_rng(5)
    effects = rng.normal(0.02, 0.05, 3_000)
    scores = effects + rng.normal(0, 0.05, 3_000)
    if ties:
        scores = np.round(scores, 2)  # ~30 distinct values
    assert true_effect_qini(effects, scores, normalized=False) == pytest.approx(
        rank_formula_area(effects, scores), abs=1e-12
    )


def test_true_effect_qini_by_hand() -> None:
    # Ranked c, then a and b tied: the curve is 0 -> 3/3 at x = 1/3 -> (3 - 1 + 1)/3 at x = 1;
    # gains per user (divided by n = 3): 1, then 1 over the last two thirds.
    effects, scores = [-1.0, 1.0, 3.0], [0.0, 0.0, 1.0]
    area = (0.5 * (1 / 3) * 1.0) + (2 / 3) * (1.0 + 1.0) / 2 - 0.5 * 1.0
    assert true_effect_qini(effects, scores, normalized=False) == pytest.approx(area)


def test_true_effect_qini_is_one_for_the_oracle_zero_for_constant_and_flips_when_reversed() -> None:
    rng = np.random.default_rng(1)
    effects = rng.normal(0.01, 0.04, 500)
    assert true_effect_qini(effects, effects) == pytest.approx(1.0)
    assert true_effect_qini(effects, np.zeros(500)) == pytest.approx(0.0, abs=1e-15)
    scores = effects + rng.normal(0, 0.04, 500)
    assert true_effect_qini(effects, -scores) == pytest.approx(-true_effect_qini(effects, scores))
    assert 0 < true_effect_qini(effects, scores) < 1


def test_true_effect_qini_is_what_the_auuc_of_one_noisy_campaign_estimates() -> None:
    """The expected uplift curve is the gain of the true effects: on a large randomized
    campaign the unnormalized AUUC of realized outcomes lands on it."""
    rng = np.random.default_rng(11)
    n = 400_000
    base = rng.uniform(0.05, 0.3, n)
    effects = rng.uniform(-0.05, 0.15, n)
    treated = rng.random(n) < 0.5
    y = (rng.random(n) < base + effects * treated).astype(float)
    scores = effects + rng.normal(0, 0.05, n)
    expected = true_effect_qini(effects, scores, normalized=False)
    realized = auuc(y, treated.astype(float), scores, normalized=False)
    assert expected > 0.005
    assert realized == pytest.approx(expected, rel=0.1)
    # ...while a ranking that ignores the effects has neither.
    assert abs(true_effect_qini(effects, base, normalized=False)) < 0.1 * expected


def test_true_effect_qini_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="1-d of equal length, got \\(3,\\), \\(2,\\)"):
        true_effect_qini([0.1, 0.2, 0.3], [1.0, 2.0])
    with pytest.raises(ValueError, match="scores must be finite"):
        true_effect_qini([0.1, 0.2], [1.0, np.nan])
    with pytest.raises(ValueError, match="empty"):
        true_effect_qini([], [])
    with pytest.raises(DataError, match="all 3 users have the same true effect"):
        true_effect_qini([0.1, 0.1, 0.1], [1.0, 2.0, 3.0])
    assert true_effect_qini([0.1, 0.1, 0.1], [1.0, 2.0, 3.0], normalized=False) == pytest.approx(0)
