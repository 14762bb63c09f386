"""Daily demand panels (flashsale_ml.models.demand.daily): point-in-time features, the
discount effect at every horizon of a multi-day forecast, quantiles that never cross."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flashsale_ml.models.demand.daily import (
    DEPTH,
    TARGET,
    daily_panel,
    feature_columns,
    fit_daily,
    forecast_daily,
    training_panel,
    what_if_daily,
)
from flashsale_ml.models.demand.quantile import QuantileConfig

START = pd.Timestamp("2024-01-01")  # a Monday
DEPTHS = (0.0, 0.1, 0.2, 0.3, 0.5)
FAST = QuantileConfig(n_estimators=60, num_leaves=15, learning_rate=0.1, num_threads=1, seed=0)


def synthetic_history(
    n_items: int = 60, n_days: int = 140, seed: int = 0, closed_weekday: int | None = 5
) -> pd.DataFrame:
    """Daily sales whose rate rises steeply with the discount: each item's price regime (list
    price or a 10-50 % discount) holds for 12-week blocks, so the depth known at an origin is
    a noiseless signal of the next week's, while the items' base rates are alike and their
    lags noisy; ``closed_weekday`` never trades."""
    rng = np.random.default_rng(seed)
    days = pd.date_range(START, periods=n_days, freq="D")
    base = rng.lognormal(0.3, 0.2, n_items)
    weekday_factor = np.array([1.2, 1.0, 1.0, 1.1, 1.3, 0.7, 0.8])
    blocks = n_days // 84 + 1
    regime = rng.choice([0.0, 0.0, 0.1, 0.2, 0.3, 0.5], size=(n_items, blocks))
    depth = np.repeat(regime, 84, axis=1)[:, :n_days]
    rate = base[:, None] * weekday_factor[days.day_of_week][None, :] * np.exp(3.0 * depth)
    qty = rng.poisson(rate).astype(float)
    if closed_weekday is not None:
        qty[:, days.day_of_week == closed_weekday] = 0.0
    list_price = np.round(rng.uniform(2, 20, n_items), 2)
    item, day = np.nonzero(qty)
    return pd.DataFrame(
        {
            "item_id": [f"sku{i:03d}" for i in item],
            "day": days[day],
            "qty": qty[item, day],
            "price": list_price[item] * (1 - depth[item, day]),
        }
    )


def catalogue(history: pd.DataFrame) -> pd.DataFrame:
    ids = sorted(history["item_id"].unique())
    return pd.DataFrame(
        {
            "item_id": ids,
            "category": [f"c{int(i[3:]) % 3}" for i in ids],
            "title": [f"RED HEART BOX {int(i[3:]) % 5}" for i in ids],
        }
    )


def reference_of(history: pd.DataFrame) -> pd.Series:
    return history.groupby("item_id")["price"].max()


def test_features_never_read_history_after_the_origin():
    history = synthetic_history(seed=1)
    origin = START + pd.Timedelta(days=90)
    ref, items = reference_of(history), catalogue(history)
    past = history[history["day"] <= origin]
    before = daily_panel(past, origin, 7, ref, items)

    # Wild future: huge orders and deep discounts on every later day, and a new item.
    rng = np.random.default_rng(7)
    future_days = pd.date_range(origin + pd.Timedelta(days=1), periods=40, freq="D")
    future_days = future_days[future_days.day_of_week != 5]  # the shop stays closed on Saturdays
    ids = history["item_id"].unique()
    future = pd.DataFrame(
        {
            "item_id": rng.choice(ids, 2000),
            "day": rng.choice(future_days, 2000),
            "qty": rng.integers(100, 5000, 2000).astype(float),
            "price": 0.01,
        }
    )
    new_item = pd.DataFrame(
        {"item_id": ["late"], "day": [future_days[0]], "qty": [9.0], "price": [1.0]}
    )
    full = pd.concat([history, future, new_item], ignore_index=True)
    after = daily_panel(full, origin, 7, ref, items)
    pd.testing.assert_frame_equal(before, after)

    # The stacked training panel reads the same features (only its targets see the future),
    # with the realized calendar: the closed Saturday is neither a target nor a lag.
    stacked = training_panel(full, [origin], 7, ref, items)
    features, _ = feature_columns(before)
    merged = before.merge(stacked, on=["item_id", "day"], suffixes=("", "_t"))
    assert len(merged) == len(before) == len(stacked)
    for column in features:
        pd.testing.assert_series_equal(
            merged[column], merged[f"{column}_t"], check_names=False, check_dtype=False
        )
    assert (before["day"].dt.day_of_week != 5).all()
    assert sorted(before["horizon"].unique()) == [1, 2, 3, 4, 5, 7]  # origin is a Sunday
    # The discount known at the origin, never a target day's realized price.
    assert before[DEPTH].between(0, 0.95).all() and before[DEPTH].gt(0).any()


def test_features_match_a_hand_computation():
    history = synthetic_history(n_items=3, n_days=70, seed=2, closed_weekday=None)
    origin = START + pd.Timedelta(days=60)
    panel = daily_panel(history, origin, 3)
    days = pd.date_range(START, origin, freq="D")
    wide = (
        history.pivot_table(index="item_id", columns="day", values="qty", aggfunc="sum")
        .reindex(columns=days)
        .fillna(0.0)
    )
    first = panel[panel["horizon"] == 1].set_index("item_id")
    for item, row in wide.iterrows():
        values = row.to_numpy()
        assert first.loc[item, "lag_1"] == values[-1]
        assert first.loc[item, "lag_7"] == values[-7]
        assert first.loc[item, "mean_28"] == pytest.approx(values[-28:].mean())
        target_day = origin + pd.Timedelta(days=1)
        same = row[[d for d in days if d.weekday() == target_day.weekday()]].to_numpy()[-4:]
        assert first.loc[item, "same_weekday_mean_4"] == pytest.approx(same.mean())


@pytest.fixture(scope="module")
def fitted():
    history = synthetic_history(n_items=80, n_days=168, seed=3, closed_weekday=None)
    ref, items = reference_of(history), catalogue(history)
    origins = [START + pd.Timedelta(days=d) for d in range(56, 154, 7)]
    model = fit_daily(history, origins, 7, ref, items, config=FAST)
    origin = START + pd.Timedelta(days=160)
    panel = daily_panel(history, origin, 7, ref, items)
    return model, panel, history, ref, items, origin


def test_discount_effect_holds_at_every_horizon(fitted):
    model, panel, *_ = fitted
    assert sorted(panel["horizon"].unique()) == list(range(1, 8))
    for h in range(1, 8):
        rows = panel[panel["horizon"] == h].reset_index(drop=True)
        grid = what_if_daily(model, rows, DEPTHS).sort_values(["row", DEPTH])
        for column in ("p10", "p50", "p90"):
            steps = grid.groupby("row")[column].diff().dropna()
            assert (steps >= 0).all(), (h, column)
        # The boosters alone already respect the discount (the running max repairs nothing).
        assert model.model.raw_depth_violations(rows, DEPTHS) == 0.0
        # And the effect is there, not merely flat.
        mean_p50 = grid.groupby(DEPTH)["p50"].mean()
        assert mean_p50.loc[0.5] > mean_p50.loc[0.0], h


def test_quantiles_never_cross_on_the_forecast(fitted):
    model, _, history, ref, items, origin = fitted
    forecast = forecast_daily(model, history, origin, ref, items)
    assert list(forecast.columns) == ["item_id", "day", "horizon", "p10", "p50", "p90"]
    assert len(forecast) == 80 * 7
    q = forecast[["p10", "p50", "p90"]].to_numpy()
    assert (q >= 0).all() and (np.diff(q, axis=1) >= 0).all()
    deep = forecast_daily(model, history, origin, ref, items, depth=0.5)
    assert (deep["p50"].to_numpy() >= forecast["p50"].to_numpy() - 1e-9).mean() > 0.99


def test_training_panel_targets_are_realized_units():
    history = synthetic_history(n_items=5, n_days=60, seed=4)
    origin = START + pd.Timedelta(days=40)
    panel = training_panel(history, [origin], 7)
    totals = history.groupby(["item_id", "day"])["qty"].sum()
    for row in panel.itertuples():
        assert getattr(row, TARGET) == totals.get((row.item_id, row.day), 0.0)
    assert (panel["day"] > origin).all() and (panel["day"] <= origin + pd.Timedelta(days=7)).all()
    assert (panel["day"].dt.day_of_week != 5).all()
