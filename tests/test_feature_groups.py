"""Item, user x category and traffic groups; determinism; real data; pandas cross-check."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from flashsale_ml.datasets import Snapshot
from flashsale_ml.features import build_features
from flashsale_ml.features.calendar import days_to_next_holiday
from flashsale_ml.features.groups import (
    DEMAND_LABEL,
    item_features,
    traffic_window,
    user_category_affinity,
)
from flashsale_ml.features.sql import Cutoff, connect, cutoffs_from_campaigns, propensity_features
from flashsale_ml.storage import open_store
from tests.conftest import shared_data
from tests.test_features_point_in_time import AS_OF, BASE_EVENTS, END, _tiny_world

SOURCE = ("users", "items", "events", "orders", "campaigns", "assignments", "traffic")


def _tiny_con(tmp: Path, events: list[tuple], orders_extra: list[tuple] = ()):
    from tests.test_features_point_in_time import _events

    tmp.mkdir(parents=True, exist_ok=True)
    files = _tiny_world(tmp, _events(events))
    if orders_extra:
        import pyarrow.parquet as pq

        from flashsale_ml.contract import conform

        base = pq.read_table(files["orders"][0])
        extra = conform(
            "orders",
            pa.table(
                {
                    "order_id": pa.array([o[0] for o in orders_extra], pa.int64()),
                    "user_id": pa.array([o[1] for o in orders_extra], pa.int64()),
                    "item_id": pa.array([o[2] for o in orders_extra], pa.int64()),
                    "qty": pa.array([o[3] for o in orders_extra], pa.int64()),
                    "unit_price": [o[4] for o in orders_extra],
                    "discount": [0.0] * len(orders_extra),
                    "ts": pa.array([o[5] for o in orders_extra], pa.timestamp("us", tz="UTC")),
                    "campaign_id": [o[6] for o in orders_extra],
                    "status": [o[7] for o in orders_extra],
                }
            ),
        )
        pq.write_table(pa.concat_tables([base, extra]), files["orders"][0])
    return connect(files)


def test_item_features_hand_computed(tmp_path: Path) -> None:
    later_sale_orders = [  # in the label window: 2 + 3 units of item 10, one cancelled line
        (2, 2, 10, 2, 12.0, AS_OF + timedelta(minutes=5), "fs-now", "completed"),
        (3, 3, 10, 3, 12.0, AS_OF + timedelta(minutes=9), "fs-now", "completed"),
        (4, 3, 11, 7, 6.0, AS_OF + timedelta(minutes=9), "fs-now", "cancelled"),
    ]
    con = _tiny_con(tmp_path, BASE_EVENTS, later_sale_orders)
    rows = {r["item_id"]: r for r in item_features(con, Cutoff("fs-now", AS_OF, END)).to_pylist()}
    toy, book = rows[10], rows[11]
    assert (toy["views_30d"], toy["purchases_30d"], toy["buyers_30d"]) == (1, 1, 1)
    assert toy["conversion_30d"] == pytest.approx(1.0)
    assert toy["discount_purchase_share_30d"] == pytest.approx(1.0)  # paid 15 of 20
    assert toy["avg_paid_price_30d"] == pytest.approx(15.0)
    assert (toy["in_sale"], toy["sale_discount_depth"]) == (1, 0.4)
    # fs-old carried item 10 and sold one unit 5 days ago, an hour into a 2-hour window.
    assert (toy["past_sale_appearances"], toy["past_sale_units"]) == (1, 1)
    assert toy["past_sale_last_order_position"] == pytest.approx(0.5)
    assert toy[DEMAND_LABEL] == 5 and book[DEMAND_LABEL] == 0
    # book: two views in the last day (one at AS_OF - 1 us, one 30 min before)
    assert (book["views_24h"], book["views_7d"]) == (2, 2)
    assert book["view_velocity"] == pytest.approx(2 / (2 / 7))
    assert book["past_sale_appearances"] == 0 and book["conversion_30d"] == 0.0


def test_user_category_affinity_hand_computed(tmp_path: Path) -> None:
    con = _tiny_con(tmp_path, BASE_EVENTS)
    rows = {
        (r["user_id"], r["category"]): r
        for r in user_category_affinity(con, Cutoff("fs-now", AS_OF, END)).to_pylist()
    }
    assert rows[(1, "toys")]["views_30d"] == 1 and rows[(1, "toys")]["purchases_30d"] == 1
    assert rows[(1, "toys")]["category_share_30d"] == pytest.approx(3 / 5)
    assert rows[(1, "books")]["category_share_30d"] == pytest.approx(2 / 5)
    assert rows[(2, "books")]["category_share_30d"] == pytest.approx(1.0)
    assert (3, "toys") not in rows


def _without(table: pa.Table, prefix: str = "label_") -> pa.Table:
    return table.select([c for c in table.column_names if not c.startswith(prefix)])


def test_groups_ignore_events_after_the_cutoff(small_world, tmp_path: Path) -> None:
    with Snapshot(small_world.raw_uri) as raw:
        files = {t: raw.local_files(t) for t in SOURCE}
        con = connect(files)
        cutoff = cutoffs_from_campaigns(con)[1]
        before = [g(con, cutoff) for g in (item_features, user_category_affinity, traffic_window)]
        future = tmp_path / "future.parquet"
        con.execute(f"""
            COPY (SELECT * REPLACE (event_id + 10000000000 AS event_id,
                                    ts + INTERVAL 3 MINUTE AS ts)
                  FROM events WHERE ts >= TIMESTAMPTZ '{cutoff.as_of.isoformat()}')
            TO '{future}' (FORMAT parquet)""")
        after_con = connect({**files, "events": [*files["events"], future]})
        after = [
            g(after_con, cutoff) for g in (item_features, user_category_affinity, traffic_window)
        ]
    for b, a in zip(before, after, strict=True):
        assert b.num_rows > 0
        assert _without(b).equals(_without(a))


def test_feature_snapshot_is_deterministic_and_complete(small_world, tmp_path: Path) -> None:
    lake = open_store(tmp_path.as_uri())
    first, second = (build_features(small_world.raw_uri, lake) for _ in range(2))
    with Snapshot(first) as a, Snapshot(second) as b:
        assert a.tables == b.tables == ["items", "propensity", "traffic", "user_category"]
        for table in a.tables:
            assert a.read_table(table).equals(b.read_table(table)), table
        assert len(a.manifest.metadata["cutoffs"]) == 3
        assert a.manifest.metadata["input_snapshot_id"] == small_world.snapshot_id
        traffic = a.read_pandas("traffic")
        assert traffic.groupby("campaign_id").size().eq(120).all()  # 2-hour sales, per minute


def _assert_same_column(duck: pd.Series, ref: pd.Series, where: str) -> None:
    """Equal values and equal nulls; numbers to 1e-9 (money is rounded to cents, ratios to
    9 digits), everything else exactly."""
    assert duck.isna().equals(ref.isna()), f"{where}: nulls differ"
    a, b = duck[duck.notna()], ref[ref.notna()]
    if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
        a, b = a.astype(float).to_numpy(), b.astype(float).to_numpy()
        bad = ~np.isclose(a, b, rtol=1e-9, atol=1e-9)
        assert not bad.any(), f"{where}: {bad.sum()} rows differ, e.g. {a[bad][:3]} vs {b[bad][:3]}"
    else:
        assert a.tolist() == b.tolist(), f"{where}: values differ"


def test_duckdb_agrees_with_the_pandas_reference(small_world) -> None:
    """Every column of the propensity table (features, categoricals, sale context, labels)
    equals an independent pandas computation from the raw tables, at every campaign's cutoff
    and at a cutoff without a campaign: a window ending at the label end instead of the cutoff
    in any feature shows up here, and a column the SQL adds without a reference fails."""
    from flashsale_ml.features.pandas_reference import PROPENSITY_COLUMNS, propensity_reference

    with Snapshot(small_world.raw_uri) as raw:
        con = connect({t: raw.local_files(t) for t in SOURCE})
        frames = {t: raw.read_pandas(t) for t in SOURCE if t != "traffic"}
        campaign_cutoffs = cutoffs_from_campaigns(con)
        # no campaign: every account that exists at an arbitrary time (not on a minute), with
        # accounts created in the 2-day window and the first sale in the past
        as_of = campaign_cutoffs[0].as_of + timedelta(days=2, hours=3, seconds=7, microseconds=3)
        cutoffs = [*campaign_cutoffs, Cutoff(None, as_of, as_of + timedelta(days=2))]
        for cutoff in cutoffs:
            duck = propensity_features(con, cutoff).to_pandas().set_index("user_id")
            ref = propensity_reference(frames, cutoff.campaign_id, cutoff.as_of, cutoff.label_end)
            where = f"{cutoff.campaign_id or 'no campaign'} at {cutoff.as_of:%Y-%m-%d %H:%M}"
            uncovered = [c for c in duck.columns if c not in PROPENSITY_COLUMNS]
            assert not uncovered, f"columns without a pandas reference: {uncovered}"
            assert list(duck.columns) == list(PROPENSITY_COLUMNS)
            assert len(duck) > 500 and duck.index.equals(ref.index), where
            assert 0 < duck["label_purchase"].sum() < len(duck), where
            for column in PROPENSITY_COLUMNS:
                _assert_same_column(duck[column], ref[column], f"{where}: {column}")


def test_online_retail_features_without_campaigns(tmp_path: Path) -> None:
    from flashsale_ml.loaders import ingest

    lake = open_store(tmp_path.as_uri())
    raw = ingest(
        "online-retail",
        shared_data("online_retail.parquet"),
        lake,
        pseudonym_key=secrets.token_urlsafe(32),  # real data refuses the public dev key
    )
    as_of = datetime(2011, 11, 1, tzinfo=UTC)
    uri = build_features(raw, lake, as_of=as_of, label_window=timedelta(days=7))
    with Snapshot(uri) as snap:
        users = snap.read_pandas("propensity")
        items = snap.read_pandas("items")
    assert users["campaign_id"].isna().all() and users["arm"].isna().all()
    assert len(users) > 3_000 and 0.05 < users["label_purchase"].mean() < 0.5
    assert users["purchases_all"].sum() > 0 and (users["views_7d"] == 0).all()
    assert items[DEMAND_LABEL].sum() > 10_000
    with pytest.raises(
        ValueError,
        match="has no campaigns, so there is no sale to build features for",
    ):
        build_features(raw, lake)


def test_online_shoppers_session_features(tmp_path: Path) -> None:
    from flashsale_ml.loaders import ingest

    lake = open_store(tmp_path.as_uri())
    uri = build_features(
        ingest("online-shoppers", shared_data("online_shoppers_intention.csv"), lake), lake
    )
    sessions = Snapshot(uri).read_pandas("sessions")
    assert len(sessions) == 12_330
    assert {"total_pages", "product_duration_share", "is_returning", "revenue"} <= set(
        sessions.columns
    )


def test_days_to_next_holiday() -> None:
    assert days_to_next_holiday(datetime(2026, 12, 24, 12, tzinfo=UTC)) == pytest.approx(0.5)
    assert days_to_next_holiday(datetime(2026, 11, 27, tzinfo=UTC)) == 0.0  # Black Friday 2026
    assert days_to_next_holiday(datetime(2026, 12, 26, tzinfo=UTC)) == pytest.approx(6.0)


@pytest.mark.parametrize(
    ("year", "black_friday"),
    [(2019, 29), (2023, 24), (2024, 29), (2025, 28), (2026, 27), (2030, 29)],
)
def test_black_friday_is_the_day_after_the_fourth_thursday(year: int, black_friday: int) -> None:
    from datetime import date

    from flashsale_ml.features.calendar import shopping_holidays

    assert date(year, 11, black_friday) in shopping_holidays(year)


def test_features_do_not_depend_on_the_machines_time_zone(small_world, tmp_path) -> None:
    """DuckDB would read hours and weekdays in the machine's zone (sale_hour 14 for 19:00 UTC
    under TZ=America/New_York)."""
    import os
    import time

    from flashsale_ml.datasets import Snapshot
    from flashsale_ml.features import build_features
    from flashsale_ml.storage import open_store

    old = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        uri = build_features(small_world.raw_uri, open_store(tmp_path.as_uri()))
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()
    with Snapshot(uri) as snapshot:
        frame = snapshot.read_pandas("propensity")
    assert set(frame["sale_hour"]) == {19}
