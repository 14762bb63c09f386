"""Point-in-time correctness of features: nothing at or after the cutoff can change a feature."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flashsale_ml.contract import conform
from flashsale_ml.datasets import Snapshot
from flashsale_ml.features.sql import LABEL, Cutoff, connect, propensity_features

AS_OF = datetime(2026, 3, 1, 19, 0, tzinfo=UTC)
END = AS_OF + timedelta(hours=2)
ONE_US = timedelta(microseconds=1)


def _events(rows: list[tuple]) -> pa.Table:
    """rows: (event_id, user_id, item_id, session_id, type, ts, price, device_id)."""
    cols = list(zip(*rows, strict=True)) if rows else [[]] * 8
    return conform(
        "events",
        pa.table(
            {
                "event_id": pa.array(cols[0], pa.int64()),
                "user_id": pa.array(cols[1], pa.int64()),
                "item_id": pa.array(cols[2], pa.int64()),
                "session_id": pa.array(cols[3], pa.int64()),
                "event_type": pa.array(cols[4], pa.string()),
                "ts": pa.array(cols[5], pa.timestamp("us", tz="UTC")),
                "price": pa.array(cols[6], pa.float64()),
                "channel": pa.array(["web"] * len(rows)),
                "device_id": pa.array(cols[7], pa.int64()),
                "ip_hash": pa.array(cols[7], pa.int64()),
            }
        ),
    )


def _tiny_world(tmp: Path, events: pa.Table) -> dict[str, list[Path]]:
    tables = {
        "users": conform(
            "users",
            pa.table(
                {
                    "user_id": pa.array([1, 2, 3], pa.int64()),
                    "signup_ts": pa.array(
                        [AS_OF - timedelta(days=100)] * 3, pa.timestamp("us", tz="UTC")
                    ),
                    "region": ["north", "south", "east"],
                    "device_type": ["app", "mobile", "desktop"],
                }
            ),
        ),
        "items": conform(
            "items",
            pa.table(
                {
                    "item_id": pa.array([10, 11], pa.int64()),
                    "category": ["toys", "books"],
                    "brand": ["A", "B"],
                    "list_price": [20.0, 10.0],
                    "cost": [8.0, 4.0],
                    "stock_on_hand": pa.array([5, 5], pa.int64()),
                    "title": ["toy", "book"],
                }
            ),
        ),
        "events": events,
        "orders": conform(
            "orders",
            pa.table(
                {
                    "order_id": pa.array([1], pa.int64()),
                    "user_id": pa.array([1], pa.int64()),
                    "item_id": pa.array([10], pa.int64()),
                    "qty": pa.array([1], pa.int64()),
                    "unit_price": [15.0],
                    "discount": [5.0],
                    "ts": pa.array([AS_OF - timedelta(days=5)], pa.timestamp("us", tz="UTC")),
                    "campaign_id": ["fs-old"],
                    "status": ["completed"],
                }
            ),
        ),
        "campaigns": conform(
            "campaigns",
            pa.table(
                {
                    "campaign_id": ["fs-old", "fs-now"],
                    "start_ts": pa.array(
                        [AS_OF - timedelta(days=5, hours=1), AS_OF], pa.timestamp("us", tz="UTC")
                    ),
                    "end_ts": pa.array(
                        [AS_OF - timedelta(days=5) + timedelta(hours=1), END],
                        pa.timestamp("us", tz="UTC"),
                    ),
                    "item_ids": [[10], [10, 11]],
                    "promo_types": [["pct_discount"]] * 2,
                    "discount_depth": [0.3, 0.4],
                    "budget": [100.0, 100.0],
                    "holdout_share": [0.2, 0.2],
                }
            ),
        ),
        "assignments": conform(
            "assignments",
            pa.table(
                {
                    "campaign_id": ["fs-old", "fs-now", "fs-now", "fs-now"],
                    "user_id": pa.array([1, 1, 2, 3], pa.int64()),
                    "arm": ["pct_discount", "control", "pct_discount", "timed_coupon"],
                    "assigned_ts": pa.array(
                        [AS_OF - timedelta(days=6)] + [AS_OF - timedelta(hours=1)] * 3,
                        pa.timestamp("us", tz="UTC"),
                    ),
                }
            ),
        ),
    }
    paths = {}
    for name, table in tables.items():
        path = tmp / f"{name}.parquet"
        pq.write_table(table, path)
        paths[name] = [path]
    return paths


BASE_EVENTS = [
    # user 1: a purchase on discount 5 days ago, a cart 2 days ago, a view 30 minutes ago
    (1, 1, 10, 100, "view", AS_OF - timedelta(days=5, minutes=10), 15.0, 7),
    (2, 1, 10, 100, "add_to_cart", AS_OF - timedelta(days=5, minutes=8), 15.0, 7),
    (3, 1, 10, 100, "purchase", AS_OF - timedelta(days=5), 15.0, 7),
    (4, 1, 11, 101, "add_to_cart", AS_OF - timedelta(days=2), 10.0, 7),
    (5, 1, 11, 102, "view", AS_OF - timedelta(minutes=30), 10.0, 7),
    # user 2 shares user 1's device and viewed once, just before the cutoff
    (6, 2, 11, 103, "view", AS_OF - ONE_US, 10.0, 7),
    # user 3 has no history at all
]


def _features(tmp: Path, events: list[tuple]) -> dict[int, dict]:
    tmp.mkdir(parents=True, exist_ok=True)
    con = connect(_tiny_world(tmp, _events(events)))
    table = propensity_features(con, Cutoff("fs-now", AS_OF, END))
    return {row["user_id"]: row for row in table.to_pylist()}


def test_hand_computed_example(tmp_path: Path) -> None:
    f = _features(tmp_path, BASE_EVENTS)
    u1, u2, u3 = f[1], f[2], f[3]
    assert (u1["events_1h"], u1["events_24h"], u1["events_7d"]) == (1, 1, 5)
    assert (u1["carts_30d"], u1["purchases_30d"], u1["sessions_30d"]) == (2, 1, 3)
    assert u1["cart_to_purchase_30d"] == pytest.approx(0.5)
    assert u1["discount_purchase_share"] == pytest.approx(1.0)  # paid 15 for a 20 list price
    assert u1["revenue_all"] == pytest.approx(15.0)
    assert u1["days_since_last_event"] == pytest.approx(30 / 1440)
    assert u1["days_since_last_purchase"] == pytest.approx(5.0)
    assert u1["distinct_items_30d"] == 2 and u1["distinct_categories_30d"] == 2
    assert u1["accounts_per_device"] == 2 and u2["accounts_per_device"] == 2
    assert u1["past_sale_purchases"] == 1 and u1["past_sale_treated_purchases"] == 1
    assert u1["account_age_days"] == pytest.approx(100.0)
    assert u1["arm"] == "control" and u2["arm"] == "pct_discount"
    assert u2["events_1h"] == 1 and u2["days_since_last_event"] == pytest.approx(1e-6 / 86400)
    assert u3["events_30d"] == 0 and u3["days_since_last_event"] is None
    assert u3["accounts_per_device"] == 1
    assert (u1["sale_hour"], u1["sale_weekday"], u1["discount_depth"]) == (19, 7, 0.4)
    # user 1: three events at 18:xx and two at 19:00 UTC; user 2: one at 18:59:59
    assert (u1["preferred_hour"], u2["preferred_hour"], u3["preferred_hour"]) == (18, 18, None)
    assert [u[LABEL] for u in (u1, u2, u3)] == [0, 0, 0]
    # history: the first event before the cutoff, 5 days 10 minutes earlier (rates divide by it)
    history = 5 + 10 / 1440
    assert [u["history_days"] for u in (u1, u2, u3)] == pytest.approx([history] * 3)
    assert (u1["events_per_day"], u1["purchases_per_day"], u1["sessions_per_day"]) == (
        pytest.approx((5 / history, 1 / history, 3 / history))
    )
    assert (u3["events_per_day"], u3["purchases_per_day"], u3["sessions_per_day"]) == (0, 0, 0)
    assert (u1["accounts_per_ip"], u2["accounts_per_ip"], u3["accounts_per_ip"]) == (2, 2, 1)
    assert (u1["past_sale_control_purchases"], u2["past_sale_purchases"]) == (0, 0)
    # fs-now carries one toy and one book: any mix of the two is neutral; no events: 0
    assert [u["sale_category_affinity"] for u in (u1, u2, u3)] == pytest.approx([1, 1, 0])
    assert (u1["days_to_payday"], u1["account_age_days"]) == (24, pytest.approx(100.0))


@pytest.mark.parametrize("hours", [(23, 23, 0), (3, 7, 7, 3), (22, 21, 20, 19, 4)])
def test_preferred_hour_is_the_most_frequent_with_ties_to_the_earliest(
    tmp_path: Path, hours: tuple[int, ...]
) -> None:
    """The packed hour histogram (four hours per 128-bit sum) unpacks to the right hour,
    including the top 32 bits of the last sum (hour 23)."""
    day = AS_OF.replace(hour=0, minute=0) - timedelta(days=3)
    events = [
        (i + 1, 1, 10, 100 + i, "view", day + timedelta(hours=h, minutes=i), 10.0, 7)
        for i, h in enumerate(hours)
    ]
    counts = {h: hours.count(h) for h in hours}
    expected = min(h for h, n in counts.items() if n == max(counts.values()))
    assert _features(tmp_path, events)[1]["preferred_hour"] == expected


def test_cutoff_boundary_is_strict(tmp_path: Path) -> None:
    """An event exactly at the cutoff is in the label window, not in the features."""
    at_cutoff = (7, 3, 10, 104, "purchase", AS_OF, 12.0, 9)
    just_before = (8, 3, 10, 105, "view", AS_OF - ONE_US, 12.0, 9)
    with_at = _features(tmp_path / "a", [*BASE_EVENTS, at_cutoff])
    assert with_at[3]["events_1h"] == 0 and with_at[3]["purchases_all"] == 0
    assert with_at[3][LABEL] == 1
    with_before = _features(tmp_path / "b", [*BASE_EVENTS, just_before])
    assert with_before[3]["events_1h"] == 1 and with_before[3][LABEL] == 0


def _without_labels(rows: dict[int, dict]) -> dict[int, dict]:
    return {k: {c: v for c, v in r.items() if c != LABEL} for k, r in rows.items()}


def test_events_after_cutoff_change_no_feature(tmp_path: Path) -> None:
    future = [
        (100 + i, user, 10 + i % 2, 200 + i, kind, AS_OF + timedelta(minutes=i), 5.0, 7)
        for i, (user, kind) in enumerate(
            [(1, "view"), (2, "purchase"), (3, "add_to_cart"), (3, "purchase"), (1, "purchase")]
        )
    ]
    before = _features(tmp_path / "a", BASE_EVENTS)
    after = _features(tmp_path / "b", [*BASE_EVENTS, *future])
    assert _without_labels(after) == _without_labels(before)
    assert [after[u][LABEL] for u in (1, 2, 3)] == [1, 1, 1]


def _append(files: dict[str, list[Path]], table: str, columns: dict) -> None:
    path = files[table][0]
    extra = pa.table(columns)
    base = pq.read_table(path)
    pq.write_table(pa.concat_tables([base, conform(table, extra).select(base.column_names)]), path)


def test_orders_accounts_and_sales_after_cutoff_change_no_feature(tmp_path: Path) -> None:
    """Not only events: the current sale's orders (one at its first microsecond, a million
    units), a late line of the past sale, a later sale with everybody assigned, and an account
    created at the cutoff on the device and IP users 1 and 2 share. No feature of users 1-3
    moves (past sales, sharing, affinity), and the new account is not in the population."""
    ts = pa.timestamp("us", tz="UTC")
    before = _features(tmp_path / "a", BASE_EVENTS)
    tmp = tmp_path / "b"
    tmp.mkdir()
    files = _tiny_world(tmp, _events([
        *BASE_EVENTS,
        (7, 4, 10, 300, "view", AS_OF, 20.0, 7),  # the new account, on device / IP 7
        (8, 4, 11, 300, "purchase", AS_OF + timedelta(minutes=3), 1.0, 7),
        (9, 1, 10, 301, "purchase", AS_OF, 12.0, 7),
        (10, 3, 11, 302, "purchase", AS_OF + timedelta(hours=1), 6.0, 8),
    ]))  # fmt: skip
    _append(files, "users", {
        "user_id": pa.array([4], pa.int64()), "signup_ts": pa.array([AS_OF], ts),
        "region": ["north"], "device_type": ["app"],
    })  # fmt: skip
    later = AS_OF + timedelta(days=7)
    _append(files, "orders", {
        "order_id": pa.array([10, 11, 12, 13, 14], pa.int64()),
        "user_id": pa.array([1, 2, 3, 1, 4], pa.int64()),
        "item_id": pa.array([10, 11, 11, 10, 11], pa.int64()),
        "qty": pa.array([1_000_000, 5, 1, 2, 3], pa.int64()),
        "unit_price": [12.0, 6.0, 6.0, 15.0, 1.0],
        "discount": [8.0, 4.0, 4.0, 5.0, 0.0],
        "ts": pa.array([AS_OF, AS_OF + timedelta(minutes=30), AS_OF + timedelta(hours=1),
                        AS_OF + timedelta(hours=1), later], ts),
        "campaign_id": ["fs-now", "fs-now", "fs-now", "fs-old", "fs-next"],
        "status": ["completed", "completed", "cancelled", "returned", "completed"],
    })  # fmt: skip
    _append(files, "campaigns", {
        "campaign_id": ["fs-next"], "start_ts": pa.array([later], ts),
        "end_ts": pa.array([later + timedelta(hours=2)], ts), "item_ids": [[10, 11]],
        "promo_types": [["pct_discount"]], "discount_depth": [0.9], "budget": [1.0],
        "holdout_share": [0.5],
    })  # fmt: skip
    _append(files, "assignments", {
        "campaign_id": ["fs-next"] * 4, "user_id": pa.array([1, 2, 3, 4], pa.int64()),
        "arm": ["control", "pct_discount", "control", "pct_discount"],
        "assigned_ts": pa.array([later - timedelta(hours=1)] * 4, ts),
    })  # fmt: skip
    table = propensity_features(connect(files), Cutoff("fs-now", AS_OF, END))
    after = {row["user_id"]: row for row in table.to_pylist()}
    assert sorted(after) == [1, 2, 3]
    labels = (LABEL, "label_revenue")
    for user in (1, 2, 3):
        assert {c: v for c, v in after[user].items() if c not in labels} == {
            c: v for c, v in before[user].items() if c not in labels
        }, user
    assert [after[u][LABEL] for u in (1, 2, 3)] == [1, 0, 1]
    # the window's non-cancelled lines: the million units and the returned fs-old line; 5 x 6
    revenue = [12e6 + 2 * 15.0, 5 * 6.0, 0.0]
    assert [after[u]["label_revenue"] for u in (1, 2, 3)] == pytest.approx(revenue)


def test_simulated_world_features_ignore_future_events(small_world, tmp_path: Path) -> None:
    """On simulated data: duplicate every post-cutoff event with shifted ids; nothing moves."""
    with Snapshot(small_world.raw_uri) as raw:
        files = {
            t: raw.local_files(t)
            for t in ("users", "items", "events", "orders", "campaigns", "assignments")
        }
        con = connect(files)
        cutoff = Cutoff(
            *con.execute(
                "SELECT campaign_id, start_ts, end_ts FROM campaigns "
                "ORDER BY start_ts LIMIT 1 OFFSET 1"
            ).fetchall()[0]
        )
        before = propensity_features(con, cutoff)
        extra = tmp_path / "future.parquet"
        con.execute(f"""
            COPY (SELECT * REPLACE (event_id + 10000000000 AS event_id,
                                    ts + INTERVAL 1 MINUTE AS ts)
                  FROM events WHERE ts >= TIMESTAMPTZ '{cutoff.as_of.isoformat()}')
            TO '{extra}' (FORMAT parquet)
        """)
        files["events"] = [*files["events"], extra]
        after = propensity_features(connect(files), cutoff)
    feature_cols = [c for c in before.column_names if c != LABEL]
    assert before.num_rows > 100
    assert before.select(feature_cols).equals(after.select(feature_cols))
