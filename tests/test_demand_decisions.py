"""Decisions from demand quantiles: the three-quantile distribution, expected sales, the
margin-maximising discount depth and the service-level stock plan."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

from flashsale_ml.errors import DataError
from flashsale_ml.models.demand.decisions import (
    DemandDecisionConfig,
    depth_margins,
    expected_sales,
    pick_depths,
    quantile_function,
    recommend_depth,
    stock_plan,
)

# (p10, p50, p90): a wide right skew, a floor hit at 0, all equal, zero demand, a tight one.
CASES = [
    (10.0, 20.0, 40.0),
    (1.0, 8.0, 30.0),
    (5.0, 5.0, 5.0),
    (0.0, 0.0, 0.0),
    (0.0, 0.0, 3.0),
    (12.0, 13.0, 13.5),
]


def _quad_expected(p10: float, p50: float, p90: float, stock: float) -> float:
    """``∫₀¹ min(Q(u), stock) du`` by adaptive quadrature, split at the knots."""

    def integrand(u: float) -> float:
        return min(float(quantile_function(u, p10, p50, p90)), stock)

    total = 0.0
    for low, high in ((0.0, 0.1), (0.1, 0.5), (0.5, 0.9)):
        total += integrate.quad(integrand, low, high, limit=200)[0]
    # The tail: substitute u = 1 - 0.1·exp(-t), du = 0.1·exp(-t) dt; t stops at 30, where u
    # still differs from 1 in floating point (the mass left out, 0.1·exp(-30), is ~1e-14).
    tail = integrate.quad(
        lambda t: integrand(1.0 - 0.1 * math.exp(-t)) * 0.1 * math.exp(-t),
        0.0,
        30.0,
        limit=200,
    )[0]
    return total + tail


# --- the distribution -------------------------------------------------------------------


@pytest.mark.parametrize(("p10", "p50", "p90"), CASES)
def test_quantile_function_passes_through_the_knots(p10, p50, p90):
    values = quantile_function([0.1, 0.5, 0.9], p10, p50, p90)
    assert values.tolist() == [p10, p50, p90]


def test_quantile_function_floor_and_tail_by_hand():
    # Q(0) = max(0, 10 - (20 - 10) / 4) = 7.5; tail scale s = 20 / ln 5.
    s = 20.0 / math.log(5.0)
    values = quantile_function([0.0, 0.05, 0.95, 0.99], 10.0, 20.0, 40.0)
    np.testing.assert_allclose(values, [7.5, 8.75, 40 + s * math.log(2), 40 + s * math.log(10)])
    # The extrapolated line would go negative: floored at 0.
    assert quantile_function(0.0, 1.0, 8.0, 30.0) == 0.0
    # P90 of an exponential of scale s sits ln 5 · s above its median: the tail reproduces it.
    assert quantile_function(0.5, 0.0, math.log(2), math.log(10)) == pytest.approx(math.log(2))


def test_quantile_function_is_monotone_and_vectorised():
    u = np.linspace(0.0, 0.999, 500)[:, None]
    p10, p50, p90 = np.array([10.0, 1.0, 5.0]), np.array([20.0, 8.0, 5.0]), np.array([40, 30, 5])
    grid = quantile_function(u, p10, p50, p90)
    assert grid.shape == (500, 3)
    assert (np.diff(grid, axis=0) >= 0).all()
    assert (grid >= 0).all() and np.isfinite(grid).all()


def test_quantile_function_refuses_levels_outside_0_1():
    for bad in (1.0, -0.1, np.nan):
        with pytest.raises(ValueError, match="levels_u"):
            quantile_function(bad, 1.0, 2.0, 3.0)


@pytest.mark.parametrize(
    ("p10", "p50", "p90", "match"),
    [
        (np.nan, 2.0, 3.0, "p10 must be finite"),
        (1.0, np.inf, 3.0, "p50 must be finite"),
        (-1.0, 2.0, 3.0, "p10 must be >= 0"),
        (3.0, 2.0, 4.0, "p10 must not exceed p50"),
        (1.0, 5.0, 4.0, "p50 must not exceed p90"),
    ],
)
def test_bad_quantiles_are_data_errors(p10, p50, p90, match):
    with pytest.raises(DataError, match=match):
        expected_sales(p10, p50, p90)
    with pytest.raises(DataError, match=match):
        quantile_function(0.5, p10, p50, p90)


# --- expected sales ---------------------------------------------------------------------


@pytest.mark.parametrize(("p10", "p50", "p90"), CASES)
def test_expected_sales_matches_quadrature(p10, p50, p90):
    stocks = [0.0, 0.5 * p10, p10, 0.5 * (p10 + p50), p50, p90, 1.3 * p90 + 1, 5 * p90 + 10]
    closed = expected_sales(p10, p50, p90, stocks)
    numeric = [_quad_expected(p10, p50, p90, s) for s in stocks]
    np.testing.assert_allclose(closed, numeric, rtol=1e-7, atol=1e-9)
    unlimited = _quad_expected(p10, p50, p90, math.inf)
    assert expected_sales(p10, p50, p90) == pytest.approx(unlimited, rel=1e-7, abs=1e-9)


def test_expected_demand_by_hand():
    # 0.1·(Q(0) + P10)/2 + 0.4·(P10 + P50)/2 + 0.4·(P50 + P90)/2 + 0.1·(P90 + s)
    s = 20.0 / math.log(5.0)
    by_hand = 0.05 * (7.5 + 10) + 0.2 * (10 + 20) + 0.2 * (20 + 40) + 0.1 * (40 + s)
    assert expected_sales(10.0, 20.0, 40.0) == pytest.approx(by_hand, rel=1e-12)


def test_expected_sales_matches_monte_carlo():
    rng = np.random.default_rng(20240611)
    u = rng.random(400_000)
    for p10, p50, p90 in CASES[:2]:
        draws = quantile_function(u, p10, p50, p90)
        for stock in (p10, p50, p90, 2 * p90):
            sample = np.minimum(draws, stock)
            closed = float(expected_sales(p10, p50, p90, stock))
            # 5 standard errors of the sample mean.
            assert abs(sample.mean() - closed) < 5 * sample.std() / math.sqrt(len(u)) + 1e-9


def test_expected_sales_monotone_in_stock_and_bounded():
    rng = np.random.default_rng(7)
    p10 = rng.uniform(0, 20, 50)
    p50 = p10 + rng.uniform(0, 20, 50)
    p90 = p50 + rng.uniform(0, 40, 50)
    stocks = np.linspace(0, 300, 301)[:, None]
    sales = expected_sales(p10, p50, p90, stocks)
    demand = expected_sales(p10, p50, p90)
    assert (np.diff(sales, axis=0) >= -1e-12).all()
    assert (sales <= demand + 1e-9).all()
    assert (sales <= stocks + 1e-12).all()
    np.testing.assert_allclose(expected_sales(p10, p50, p90, np.inf), demand)
    np.testing.assert_allclose(expected_sales(p10, p50, p90, np.nan), demand)


def test_expected_sales_refuses_negative_stock():
    with pytest.raises(DataError, match="stock must be >= 0"):
        expected_sales([1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [1.0, -1.0])


# --- the discount depth -----------------------------------------------------------------


def _flat_what_if(demand: dict) -> pd.DataFrame:
    """A what-if whose quantiles all equal the demand: a known, certain demand per depth."""
    rows = [(item, depth, q, q, q) for item, curve in demand.items() for depth, q in curve.items()]
    return pd.DataFrame(rows, columns=["item_id", "discount_depth", "p10", "p50", "p90"])


def test_recommend_depth_hand_example():
    # Certain demand 10, 14, 20, 25 at depths 0 .. 0.3; price 100, cost 40.
    # Unlimited stock: margins 60·10 = 600, 50·14 = 700, 40·20 = 800, 30·25 = 750 -> 0.2.
    # Stock 15: 600, 700, 40·15 = 600, 30·15 = 450 -> 0.1.
    curve = {0.0: 10.0, 0.1: 14.0, 0.2: 20.0, 0.3: 25.0}
    what_if = _flat_what_if({"a": curve, "b": curve})
    items = pd.DataFrame(
        {"item_id": ["a", "b"], "list_price": 100.0, "cost": 40.0, "stock": [None, 15.0]}
    )
    out = recommend_depth(what_if, items)
    assert list(out.columns) == [
        "item_id",
        "recommended_depth",
        "p10",
        "p50",
        "p90",
        "price",
        "unit_margin",
        "expected_units",
        "expected_revenue",
        "expected_margin",
        "margin_at_no_discount",
    ]
    assert out["item_id"].tolist() == ["a", "b"]
    assert out["recommended_depth"].tolist() == [0.2, 0.1]
    np.testing.assert_allclose(out["expected_margin"], [800.0, 700.0])
    np.testing.assert_allclose(out["expected_units"], [20.0, 14.0])
    np.testing.assert_allclose(out["expected_revenue"], [80.0 * 20, 90.0 * 14])
    np.testing.assert_allclose(out["margin_at_no_discount"], [600.0, 600.0])

    long = depth_margins(what_if, items)
    assert len(long) == 8
    np.testing.assert_allclose(
        long.loc[long["item_id"] == "b", "expected_margin"], [600.0, 700.0, 600.0, 450.0]
    )
    # Restricting the depths: without 0.2, item a's best is 0.3 (750).
    restricted = recommend_depth(what_if, items, allowed_depths=[0.3, 0.0, 0.1])
    assert restricted["recommended_depth"].tolist() == [0.3, 0.1]


def test_ties_go_to_the_smaller_depth():
    # 60·9 = 540 < 50·12 = 600 = 40·15: the same margin for less discount.
    what_if = _flat_what_if({"a": {0.0: 9.0, 0.1: 12.0, 0.2: 15.0}})
    items = pd.DataFrame({"item_id": ["a"], "list_price": 100.0, "cost": 40.0, "stock": None})
    assert recommend_depth(what_if, items)["recommended_depth"].item() == 0.1


def _random_what_if(rng: np.random.Generator, n_items: int, depths: list[float]) -> pd.DataFrame:
    rows = []
    for item in range(n_items):
        base = np.sort(rng.uniform(0, 30, 3))
        lift = np.maximum.accumulate(rng.uniform(0, 1.5, (len(depths), 3)), axis=0)
        quantiles = np.maximum.accumulate(base + np.cumsum(lift, axis=0) * base.max(), axis=1)
        for depth, (p10, p50, p90) in zip(depths, quantiles, strict=True):
            rows.append((f"sku{item}", depth, p10, p50, p90))
    return pd.DataFrame(rows, columns=["item_id", "discount_depth", "p10", "p50", "p90"])


def test_recommend_depth_is_the_brute_force_argmax():
    rng = np.random.default_rng(3)
    depths = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    what_if = _random_what_if(rng, 20, depths)
    items = pd.DataFrame(
        {
            "item_id": [f"sku{i}" for i in range(20)],
            "list_price": rng.uniform(10, 200, 20),
            "cost": rng.uniform(0, 150, 20),
            "stock": np.where(rng.random(20) < 0.3, np.nan, rng.uniform(0, 80, 20)),
        }
    )
    out = recommend_depth(what_if.sample(frac=1.0, random_state=1), items).set_index("item_id")
    for item in items.itertuples():
        part = what_if[what_if["item_id"] == item.item_id]
        stock = np.inf if np.isnan(item.stock) else item.stock
        margins = [
            (item.list_price * (1 - row.discount_depth) - item.cost)
            * _quad_expected(row.p10, row.p50, row.p90, stock)
            for row in part.itertuples()
        ]
        best = int(np.argmax(margins))
        assert out.loc[item.item_id, "recommended_depth"] == depths[best]
        assert out.loc[item.item_id, "expected_margin"] == pytest.approx(margins[best], rel=1e-6)
        assert out.loc[item.item_id, "margin_at_no_discount"] == pytest.approx(
            margins[0], rel=1e-6, abs=1e-9
        )


def test_higher_cost_never_recommends_a_deeper_discount():
    # Each depth multiplies all three quantiles by one non-decreasing factor, so Q(u) and the
    # expected units never fall with the depth; the margin (p·(1-d) - c)·E(d) then has
    # decreasing differences in (d, c) and the smallest best depth cannot grow with c.
    depths = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    lift = np.array([1.0, 1.3, 1.7, 2.2, 2.6, 2.8])
    base = (4.0, 10.0, 25.0)
    what_if = pd.DataFrame(
        [("a", d, *(m * q for q in base)) for d, m in zip(depths, lift, strict=True)],
        columns=["item_id", "discount_depth", "p10", "p50", "p90"],
    )
    for stock in (np.nan, 25.0, 40.0):
        units = depth_margins(
            what_if,
            pd.DataFrame({"item_id": ["a"], "list_price": 100.0, "cost": 0.0, "stock": [stock]}),
        )["expected_units"].to_numpy()
        assert (np.diff(units) >= 0).all()  # the premise
        chosen = []
        for cost in np.linspace(0.0, 99.0, 45):
            items = pd.DataFrame(
                {"item_id": ["a"], "list_price": 100.0, "cost": cost, "stock": [stock]}
            )
            chosen.append(recommend_depth(what_if, items)["recommended_depth"].item())
        assert (np.diff(chosen) <= 0).all()
        assert chosen[0] > chosen[-1]  # the example is not trivially constant


def test_pick_depths_on_depth_margins_equals_recommend_depth():
    rng = np.random.default_rng(11)
    what_if = _random_what_if(rng, 5, [0.0, 0.25, 0.5])
    items = pd.DataFrame(
        {
            "item_id": [f"sku{i}" for i in range(5)],
            "list_price": 50.0,
            "cost": 20.0,
            "stock": 30.0,
        }
    )
    pd.testing.assert_frame_equal(
        pick_depths(depth_margins(what_if, items)), recommend_depth(what_if, items)
    )


def _valid() -> tuple[pd.DataFrame, pd.DataFrame]:
    what_if = _flat_what_if(
        {"a": {0.0: 10.0, 0.1: 12.0, 0.2: 15.0}, "b": {0.0: 1.0, 0.1: 2.0, 0.2: 3.0}}
    )
    items = pd.DataFrame(
        {"item_id": ["a", "b"], "list_price": [100.0, 30.0], "cost": [40.0, 5.0], "stock": 20.0}
    )
    return what_if, items


def test_valid_fixture_passes():
    what_if, items = _valid()
    assert len(recommend_depth(what_if, items)) == 2


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda w, i: (w, i.assign(cost=[40.0, None])), r"items\.cost must not be null.*'b'"),
        (lambda w, i: (w, i.assign(cost=[-1.0, 5.0])), r"items\.cost must be a finite number"),
        (lambda w, i: (w, i.assign(list_price=[0.0, 30.0])), r"items\.list_price"),
        (lambda w, i: (w, i.assign(stock=[-1.0, 3.0])), r"items\.stock must be >= 0"),
        (lambda w, i: (w, i.drop(columns="stock")), r"items lacks column\(s\) \['stock'\]"),
        (lambda w, i: (w, pd.concat([i, i.head(1)])), r"items\.item_id must be unique"),
        (lambda w, i: (w, i.assign(item_id=["a", None])), r"items\.item_id must not be null"),
        (lambda w, i: (w.drop(columns="p50"), i), r"what_if lacks column\(s\) \['p50'\]"),
        (lambda w, i: (pd.concat([w, w.head(1)]), i), r"one row per \(item_id, discount_depth"),
        (lambda w, i: (w.iloc[1:], i), r"what_if lacks 1 \(item, allowed depth\).*'a', 0\.0"),
        (
            lambda w, i: (w.assign(discount_depth=w["discount_depth"].replace(0.2, 1.0)), i),
            r"what_if\.discount_depth must lie in \[0, 1\)",
        ),
        (lambda w, i: (w.assign(p90=w["p90"].replace(15.0, np.inf)), i), r"what_if\.p90.*'a'"),
        (lambda w, i: (w.assign(p10=w["p10"].replace(1.0, np.nan)), i), r"what_if\.p10.*'b'"),
        (lambda w, i: (w.assign(p10=-w["p10"]), i), r"what_if\.p10 must be >= 0"),
        (lambda w, i: (w.assign(p50=w["p50"] + 100), i), r"what_if\.p50 must not exceed"),
        (lambda w, i: (w, i.iloc[:1]), r"missing from items.*'b'"),
        (lambda w, i: (w.assign(item_id=None), i), r"what_if\.item_id must not be null"),
    ],
)
def test_recommend_depth_data_errors(change, match):
    what_if, items = change(*_valid())
    with pytest.raises(DataError, match=match):
        recommend_depth(what_if, items)


@pytest.mark.parametrize(
    ("depths", "match"),
    [([0.0, 1.0], r"allowed_depths must lie in \[0, 1\)"), ([-0.1], "allowed"), ([], "at least")],
)
def test_recommend_depth_refuses_bad_allowed_depths(depths, match):
    with pytest.raises(DataError, match=match):
        recommend_depth(*_valid(), allowed_depths=depths)


def test_allowed_depth_missing_from_what_if_is_refused():
    with pytest.raises(DataError, match=r"lacks 2 \(item, allowed depth\)"):
        recommend_depth(*_valid(), allowed_depths=[0.0, 0.3])


def test_allowed_depths_match_after_rounding():
    what_if, items = _valid()
    what_if["discount_depth"] = what_if["discount_depth"] * 3 / 3 + 1e-12
    out = recommend_depth(what_if, items, allowed_depths=[0.0, 0.1, 0.2])
    assert set(out["recommended_depth"]) <= {0.0, 0.1, 0.2}


# --- the stock plan ---------------------------------------------------------------------


def _quantile_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d"],
            "p10": [10.0, 1.0, 5.0, 0.0],
            "p50": [20.0, 8.0, 5.0, 0.0],
            "p90": [40.0, 29.3, 5.0, 0.0],
        }
    )


def test_stock_plan_at_0_9_is_ceil_p90():
    plan = stock_plan(_quantile_frame(), 0.9)
    assert plan["quantity"].tolist() == [40, 30, 5, 0]
    assert plan["quantity"].dtype == np.int64
    assert list(plan.columns) == [
        "item_id",
        "demand_at_level",
        "quantity",
        "expected_sales",
        "expected_demand",
        "fill_rate",
    ]
    frame = _quantile_frame()
    np.testing.assert_allclose(
        plan["expected_sales"],
        expected_sales(frame["p10"], frame["p50"], frame["p90"], plan["quantity"]),
    )
    np.testing.assert_allclose(
        plan["fill_rate"].iloc[:3],
        plan["expected_sales"].iloc[:3]
        / (expected_sales(frame["p10"], frame["p50"], frame["p90"])[:3]),
    )
    assert plan["fill_rate"].iloc[3] == 1.0  # no demand, nothing missed


def test_stock_plan_at_0_9_has_no_float_noise():
    # ln(0.1 / (1 - 0.9)) is 2.2e-16, not 0, in floating point: a tail written that way and
    # not pinned at the knot gives Q(0.9) = 2.0000000000000004 here, and a plan of 3 units.
    frame = pd.DataFrame({"item_id": ["e"], "p10": [0.0], "p50": [0.0], "p90": [2.0]})
    assert quantile_function(0.9, 0.0, 0.0, 2.0) == 2.0
    assert stock_plan(frame, 0.9)["quantity"].item() == 2


def test_stock_plan_monotone_in_service_level_and_covers_it():
    frame = _quantile_frame()
    levels = np.linspace(0.01, 0.999, 200)
    quantities = np.array([stock_plan(frame, level)["quantity"].to_numpy() for level in levels])
    assert (np.diff(quantities, axis=0) >= 0).all()
    # P(D <= quantity) >= level: the level's quantile never exceeds the quantity.
    for level, quantity in zip(levels, quantities, strict=True):
        assert (
            quantile_function(level, frame["p10"], frame["p50"], frame["p90"]) <= quantity
        ).all()
    # Above 0.9 the exponential tail: 0.95 is ceil(P90 + s·ln 2).
    s = 20.0 / math.log(5.0)
    assert stock_plan(frame, 0.95)["quantity"].iloc[0] == math.ceil(40 + s * math.log(2))


def test_stock_plan_shortfall():
    on_hand = pd.Series({"z": 100.0, "d": 0.0, "c": 7.0, "b": 12.5, "a": 0.0})
    plan = stock_plan(_quantile_frame(), 0.9, on_hand=on_hand)
    assert plan["on_hand"].tolist() == [0.0, 12.5, 7.0, 0.0]
    assert plan["shortfall"].tolist() == [40, 18, 0, 0]


def test_stock_plan_takes_recommend_depth_output():
    what_if, items = _valid()
    plan = stock_plan(recommend_depth(what_if, items), 0.9)
    assert plan["item_id"].tolist() == ["a", "b"]


@pytest.mark.parametrize("level", [0.0, 1.0, -0.5, 1.5, np.nan, True, "0.9"])
def test_stock_plan_refuses_service_levels_outside_0_1(level):
    with pytest.raises(ValueError, match="service_level"):
        stock_plan(_quantile_frame(), level)


@pytest.mark.parametrize(
    ("frame", "on_hand", "match"),
    [
        (_quantile_frame().drop(columns="p90"), None, r"quantiles lacks column"),
        (pd.concat([_quantile_frame()] * 2), None, r"quantiles\.item_id must be unique"),
        (_quantile_frame().assign(p10=[10.0, 1.0, 6.0, 0.0]), None, r"quantiles\.p10.*'c'"),
        (_quantile_frame().assign(p90=[40.0, np.nan, 5, 0]), None, r"quantiles\.p90.*'b'"),
        (_quantile_frame().assign(item_id=["a", None, "c", "d"]), None, r"must not be null"),
        (_quantile_frame(), pd.Series({"a": 1.0, "b": 1.0, "c": 1.0}), r"lacks 1.*'d'"),
        (_quantile_frame(), pd.Series([1.0] * 5, index=list("abcda")), r"repeated"),
        (_quantile_frame(), pd.Series({"a": -1, "b": 1, "c": 1, "d": 1}), r"on_hand must be a"),
        (_quantile_frame(), pd.Series({"a": None, "b": 1, "c": 1, "d": 1}), r"on_hand must be"),
    ],
)
def test_stock_plan_data_errors(frame, on_hand, match):
    with pytest.raises(DataError, match=match):
        stock_plan(frame, 0.9, on_hand=on_hand)


# --- the config -------------------------------------------------------------------------


def test_config_defaults_and_rules():
    config = DemandDecisionConfig()
    assert config.allowed_depths == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    assert config.service_level == 0.9
    assert DemandDecisionConfig(allowed_depths=(0.3, 0.0, 0.3)).allowed_depths == (0.0, 0.3)
    for bad in ({"service_level": 1.0}, {"allowed_depths": (0.0, 1.0)}, {"allowed_depths": ()}):
        with pytest.raises(ValueError):
            DemandDecisionConfig(**bad)
    with pytest.raises(ValueError):
        config.service_level = 0.5  # frozen
