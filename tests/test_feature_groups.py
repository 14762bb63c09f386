"""Item, user x category and traffic groups; determinism; real data; pandas cross-check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from flashsale_ml.datasets import Snapshot
from flashsale_ml.features import build_features
from flashsale_ml.features.build import Cutoff, connect, cutoffs_from_campaigns, propensity_features
from flashsale_ml.features.calendar import days_to_next_holiday
from flashsale_ml.features.groups import (
    DEMAND_LABEL,
    item_features,
    traffic_window,
    user_category_affinity,
)
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


def test_duckdb_agrees_with_the_pandas_reference(small_world) -> None:
    from flashsale_ml.features.pandas_reference import REFERENCE_COLUMNS, user_activity_features

    with Snapshot(small_world.raw_uri) as raw:
        con = connect({t: raw.local_files(t) for t in SOURCE})
        cutoff = cutoffs_from_campaigns(con)[-1]
        duck = propensity_features(con, cutoff).to_pandas().set_index("user_id")
        ref = user_activity_features(
            raw.local_files("events"), raw.read_pandas("items"), cutoff.as_of
        )
    common = duck.index.intersection(ref.index)
    assert len(common) > 500
    for column in REFERENCE_COLUMNS:
        a = duck.loc[common, column].astype(float).fillna(-1).to_numpy()
        b = ref.loc[common, column].astype(float).fillna(-1).to_numpy()
        assert np.allclose(a, b, rtol=1e-9, atol=1e-9), column


def test_online_retail_features_without_campaigns(tmp_path: Path) -> None:
    from flashsale_ml.loaders import ingest

    lake = open_store(tmp_path.as_uri())
    raw = ingest("online-retail", shared_data("online_retail.parquet"), lake)
    as_of = datetime(2011, 11, 1, tzinfo=UTC)
    uri = build_features(raw, lake, as_of=as_of, label_window=timedelta(days=7))
    with Snapshot(uri) as snap:
        users = snap.read_pandas("propensity")
        items = snap.read_pandas("items")
    assert users["campaign_id"].isna().all() and users["arm"].isna().all()
    assert len(users) > 3_000 and 0.05 < users["label_purchase"].mean() < 0.5
    assert users["purchases_all"].sum() > 0 and (users["views_7d"] == 0).all()
    assert items[DEMAND_LABEL].sum() > 10_000
    with pytest.raises(ValueError, match="has no campaigns: pass as_of"):
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
