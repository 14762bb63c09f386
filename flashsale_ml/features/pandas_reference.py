"""An idiomatic pandas implementation of the propensity features, for cross-checks only.

The pipeline computes features in DuckDB (:mod:`flashsale_ml.features.sql`). This module
computes the same columns the way a pandas user would, from the raw tables and the definitions
in ``docs/features.md`` (nothing here reads the feature SQL), so that a test can prove both
agree and ``benchmarks/bench_features.py`` can measure the speed-up on the same data:

* :func:`user_activity_features`: the 18 user activity columns (``REFERENCE_COLUMNS``), the
  benchmark's equal-work comparison.
* :func:`propensity_reference`: every column of the ``propensity`` table
  (``PROPENSITY_COLUMNS``: features, categoricals, sale context and labels), so that a
  point-in-time bug in any of them (e.g. a window that ends at the label end instead of the
  cutoff) shows up as a difference.

It loads whole tables into memory: do not use it on large data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd

REFERENCE_COLUMNS = (
    "events_1h", "events_24h", "events_7d", "events_30d", "views_7d", "carts_30d",
    "purchases_30d", "purchases_all", "revenue_all", "sessions_30d", "distinct_items_30d",
    "distinct_categories_30d", "cart_to_purchase_30d", "discount_purchase_share",
    "days_since_last_event", "days_since_last_purchase", "preferred_hour",
    "accounts_per_device",
)  # fmt: skip


def user_activity_features(
    event_files: Sequence[Path], items: pd.DataFrame, as_of: datetime
) -> pd.DataFrame:
    """User activity features as of ``as_of``, indexed by user_id (users with history only)."""
    events = pd.concat(
        [
            pd.read_parquet(
                f,
                columns=[
                    "user_id",
                    "item_id",
                    "session_id",
                    "event_type",
                    "ts",
                    "price",
                    "device_id",
                ],
            )
            for f in event_files
        ],
        ignore_index=True,
    )
    return _activity(events, items, as_of)[list(REFERENCE_COLUMNS)]


def _activity(events: pd.DataFrame, items: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """The activity columns of every user with an event before ``as_of``."""
    as_of_ts = pd.Timestamp(as_of)
    device_accounts = events[events["ts"] < as_of_ts].groupby("device_id")["user_id"].nunique()
    hist = events[events["ts"] < as_of_ts].merge(
        items[["item_id", "category", "list_price"]], on="item_id", how="left"
    )
    age = as_of_ts - hist["ts"]
    is_view = hist["event_type"] == "view"
    is_cart = hist["event_type"] == "add_to_cart"
    is_buy = hist["event_type"] == "purchase"
    last30 = age < pd.Timedelta(days=30)
    hist = hist.assign(
        in_1h=age < pd.Timedelta(hours=1),
        in_24h=age < pd.Timedelta(days=1),
        in_7d=age < pd.Timedelta(days=7),
        in_30d=last30,
        view_7d=is_view & (age < pd.Timedelta(days=7)),
        cart_30d=is_cart & last30,
        buy_30d=is_buy & last30,
        buy=is_buy,
        paid=hist["price"].where(is_buy, 0.0),
        discounted_buy=is_buy & (hist["price"] < hist["list_price"]),
        buy_ts=hist["ts"].where(is_buy),
        hour=hist["ts"].dt.hour,
    )
    g = hist.groupby("user_id")
    out = pd.DataFrame(
        {
            "events_1h": g["in_1h"].sum(),
            "events_24h": g["in_24h"].sum(),
            "events_7d": g["in_7d"].sum(),
            "events_30d": g["in_30d"].sum(),
            "views_7d": g["view_7d"].sum(),
            "carts_30d": g["cart_30d"].sum(),
            "purchases_30d": g["buy_30d"].sum(),
            "purchases_all": g["buy"].sum(),
            "revenue_all": g["paid"].sum().round(2),
            "sessions_30d": hist[last30].groupby("user_id")["session_id"].nunique(),
            "distinct_items_30d": hist[last30].groupby("user_id")["item_id"].nunique(),
            "distinct_categories_30d": hist[last30].groupby("user_id")["category"].nunique(),
            "discounted": g["discounted_buy"].sum(),
            "last_ts": g["ts"].max(),
            "last_buy_ts": g["buy_ts"].max(),
        }
    )
    out[["sessions_30d", "distinct_items_30d", "distinct_categories_30d"]] = out[
        ["sessions_30d", "distinct_items_30d", "distinct_categories_30d"]
    ].fillna(0)
    out["cart_to_purchase_30d"] = (out["purchases_30d"] / out["carts_30d"]).where(
        out["carts_30d"] > 0
    )
    out["discount_purchase_share"] = (out["discounted"] / out["purchases_all"]).where(
        out["purchases_all"] > 0
    )
    day = pd.Timedelta(days=1)
    out["days_since_last_event"] = (as_of_ts - out["last_ts"]) / day
    out["days_since_last_purchase"] = (as_of_ts - out["last_buy_ts"]) / day
    hours = hist.groupby(["user_id", "hour"]).size().rename("n").reset_index()
    hours = hours.sort_values(["user_id", "n", "hour"], ascending=[True, False, True])
    out["preferred_hour"] = hours.drop_duplicates("user_id").set_index("user_id")["hour"]
    user_devices = hist[["user_id", "device_id"]].drop_duplicates()
    user_devices["n"] = user_devices["device_id"].map(device_accounts)
    out["accounts_per_device"] = user_devices.groupby("user_id")["n"].max()
    return out


# Every column of the propensity table, in the pipeline's output order (checked by a test: a
# column the SQL adds and this list lacks fails it).
PROPENSITY_COLUMNS = (
    "campaign_id", "as_of",
    *REFERENCE_COLUMNS[:16],  # the activity counts, ratios and recencies
    "account_age_days", "accounts_per_device", "accounts_per_ip",
    "past_sale_purchases", "past_sale_treated_purchases", "past_sale_control_purchases",
    "preferred_hour", "sale_category_affinity",
    "history_days", "events_per_day", "purchases_per_day", "sessions_per_day",
    "region", "device_type", "arm", "plan_arm",
    "sale_hour", "sale_weekday", "days_to_payday", "days_to_holiday", "discount_depth",
    "label_purchase", "label_revenue",
)  # fmt: skip
PAYDAY = 25
HISTORY_CAP_DAYS = 30.0
DAY = pd.Timedelta(days=1)


def propensity_reference(
    tables: Mapping[str, pd.DataFrame],
    campaign_id: str | None,
    as_of: datetime,
    label_end: datetime,
) -> pd.DataFrame:
    """Every propensity column as of ``as_of``, indexed by user_id, in plain pandas.

    Args:
        tables: ``users, items, events, orders, campaigns, assignments`` as DataFrames.
        campaign_id: the sale (population = its assignments), or None for a shop without one
            (population = every account that exists at ``as_of``).
        as_of: the cutoff; every feature reads only rows with a time strictly before it.
        label_end: the end of the label window ``[as_of, label_end)``.
    """
    users, items, events = tables["users"], tables["items"], tables["events"]
    orders, campaigns, assignments = tables["orders"], tables["campaigns"], tables["assignments"]
    as_of_ts, end_ts = pd.Timestamp(as_of), pd.Timestamp(label_end)
    hist = events[events["ts"] < as_of_ts]

    # Population: the campaign's randomized assignments, or the accounts that exist.
    if campaign_id is None:
        pop = users.loc[users["signup_ts"] < as_of_ts, ["user_id"]].assign(arm=None, plan_arm=None)
    else:
        if "plan_arm" not in assignments.columns:  # recorded since targeted campaigns
            assignments = assignments.assign(plan_arm=None)
        pop = assignments.loc[
            assignments["campaign_id"] == campaign_id, ["user_id", "arm", "plan_arm"]
        ]
    out = pop.merge(users[["user_id", "signup_ts", "region", "device_type"]], on="user_id")
    out = out.set_index("user_id").sort_index()
    out.insert(0, "campaign_id", campaign_id)
    out.insert(1, "as_of", as_of_ts)

    activity = _activity(events, items, as_of).reindex(out.index)
    for column in REFERENCE_COLUMNS[:16]:
        out[column] = activity[column]
    counts = [c for c in REFERENCE_COLUMNS[:12] if c != "revenue_all"]
    out[counts] = out[counts].fillna(0).astype("int64")
    out["revenue_all"] = out["revenue_all"].fillna(0.0)
    out["preferred_hour"] = activity["preferred_hour"]

    out["account_age_days"] = (as_of_ts - out["signup_ts"]) / DAY
    out["accounts_per_device"] = _most_shared(hist, "device_id").reindex(out.index).fillna(1)
    out["accounts_per_ip"] = _most_shared(hist, "ip_hash").reindex(out.index).fillna(1)

    past = _past_sale_purchases(orders, assignments, as_of_ts).reindex(out.index).fillna(0)
    for column in past.columns:
        out[column] = past[column].astype("int64")

    out["sale_category_affinity"] = (
        _sale_category_affinity(hist, items, campaigns, campaign_id).reindex(out.index).fillna(0.0)
    )

    # How much history exists at all (any user), capped at the 30-day window; rates divide
    # by it, at least one day.
    if hist.empty:
        history_days = float("nan")
    else:
        history_days = min(HISTORY_CAP_DAYS, (as_of_ts - hist["ts"].min()) / DAY)
    out["history_days"] = history_days
    per_day = max(history_days, 1.0) if history_days == history_days else 1.0
    out["events_per_day"] = out["events_30d"] / per_day
    out["purchases_per_day"] = out["purchases_30d"] / per_day
    out["sessions_per_day"] = out["sessions_30d"] / per_day

    as_of_utc = as_of_ts.tz_convert(UTC)
    out["sale_hour"] = as_of_utc.hour
    out["sale_weekday"] = as_of_utc.isoweekday()
    out["days_to_payday"] = _days_to_payday(as_of_utc.date())
    out["days_to_holiday"] = _days_to_holiday(as_of_utc.to_pydatetime())
    sale = campaigns[campaigns["campaign_id"] == campaign_id]
    out["discount_depth"] = sale["discount_depth"].iloc[0] if len(sale) else None

    in_window = events[(events["ts"] >= as_of_ts) & (events["ts"] < end_ts)]
    buyers = set(in_window.loc[in_window["event_type"] == "purchase", "user_id"])
    out["label_purchase"] = out.index.isin(buyers).astype("int32")
    window_orders = orders[
        (orders["ts"] >= as_of_ts) & (orders["ts"] < end_ts) & (orders["status"] != "cancelled")
    ]
    # each line's amount in cents, as the pipeline stores money
    line = (window_orders["unit_price"] * window_orders["qty"]).round(2)
    revenue = line.groupby(window_orders["user_id"]).sum().round(2)
    out["label_revenue"] = revenue.reindex(out.index).fillna(0.0)
    return out[list(PROPENSITY_COLUMNS)]


def _most_shared(hist: pd.DataFrame, key: str) -> pd.Series:
    """Per user: the most accounts seen (before the cutoff) on any of the user's ``key``s."""
    accounts = hist.groupby(key)["user_id"].nunique()
    pairs = hist[["user_id", key]].drop_duplicates()
    return pairs.assign(n=pairs[key].map(accounts)).groupby("user_id")["n"].max()


def _past_sale_purchases(
    orders: pd.DataFrame, assignments: pd.DataFrame, as_of_ts: pd.Timestamp
) -> pd.DataFrame:
    """Flash-sale order lines before the cutoff, in all and by the arm the user was in."""
    past = orders[(orders["ts"] < as_of_ts) & orders["campaign_id"].notna()]
    past = past.merge(
        assignments[["campaign_id", "user_id", "arm"]], on=["campaign_id", "user_id"], how="left"
    )
    treated = past["arm"].notna() & (past["arm"] != "control")
    return pd.DataFrame(
        {
            "past_sale_purchases": past.groupby("user_id").size(),
            "past_sale_treated_purchases": treated.groupby(past["user_id"]).sum(),
            "past_sale_control_purchases": (past["arm"] == "control")
            .groupby(past["user_id"])
            .sum(),
        }
    )


def _sale_category_affinity(
    hist: pd.DataFrame, items: pd.DataFrame, campaigns: pd.DataFrame, campaign_id: str | None
) -> pd.Series:
    """The user's events (all history before the cutoff) weighted by the sale's category mix,
    times the number of sale categories: 1 is neutral. Empty without a sale."""
    sale = campaigns[campaigns["campaign_id"] == campaign_id]
    if campaign_id is None or sale.empty:
        return pd.Series(dtype=float)
    sale_items = pd.DataFrame({"item_id": sale["item_ids"].iloc[0]})
    mix = sale_items.merge(items[["item_id", "category"]], on="item_id")["category"].value_counts()
    if mix.empty:
        return pd.Series(dtype=float)
    per_category = (
        hist.merge(items[["item_id", "category"]], on="item_id")
        .groupby(["user_id", "category"])
        .size()
        .rename("events")
        .reset_index()
    )
    per_category["weight"] = per_category["category"].map(mix).fillna(0)
    weighted = (
        (per_category["events"] * per_category["weight"]).groupby(per_category["user_id"]).sum()
    )
    total = per_category.groupby("user_id")["events"].sum()
    return (weighted / total / mix.sum() * len(mix)).round(9)


def _days_to_payday(day: date) -> int:
    """Days from ``day`` to the next 25th (0 on the 25th), with every month counted as 31 days:
    ``(25 - day + 31) mod 31``, exact up to the 25th."""
    return (PAYDAY - day.day) % 31


def _holidays(year: int) -> list[date]:
    """New Year, Valentine's, Singles' Day, Black Friday (the day after the fourth Thursday of
    November: Thanksgiving), Cyber Monday, Christmas."""
    thursdays = [date(year, 11, d) for d in range(1, 31) if date(year, 11, d).weekday() == 3]
    black_friday = thursdays[3] + timedelta(days=1)
    return [
        date(year, 1, 1),
        date(year, 2, 14),
        date(year, 11, 11),
        black_friday,
        black_friday + timedelta(days=3),
        date(year, 12, 25),
    ]


def _days_to_holiday(ts: datetime) -> float:
    """Days from ``ts`` to the start (00:00 UTC) of the next holiday; 0 on the day itself."""
    upcoming = min(h for h in _holidays(ts.year) + _holidays(ts.year + 1) if h >= ts.date())
    start = datetime(upcoming.year, upcoming.month, upcoming.day, tzinfo=UTC)
    return max(0.0, (start - ts).total_seconds() / 86_400)
