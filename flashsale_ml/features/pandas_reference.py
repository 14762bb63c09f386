"""An idiomatic pandas implementation of the user activity features, for cross-checks only.

The pipeline computes features in DuckDB (:mod:`flashsale_ml.features.build`). This module
computes the same user activity columns the way a pandas user would, so that a test can prove
both agree and ``benchmarks/bench_features.py`` can measure the speed-up on the same data.
It loads the events before the cutoff into memory: do not use it on large data.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
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
    return out[list(REFERENCE_COLUMNS)]
