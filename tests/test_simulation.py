"""The simulator: deterministic, contract-conformant, with ground truth of the intended shape."""

from __future__ import annotations

import hashlib

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from flashsale_ml import duck
from flashsale_ml.contract import SHOP_TABLES, check_schema
from flashsale_ml.datasets import Snapshot
from flashsale_ml.simulation import SimulationConfig, simulate
from flashsale_ml.storage import open_store


def _content_hash(table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def _hashes(uri: str) -> dict[str, str]:
    with Snapshot(uri) as snap:
        return {t: _content_hash(snap.read_table(t)) for t in snap.tables}


def test_same_seed_same_tables_other_seed_other_tables(tmp_path) -> None:
    lake = open_store(tmp_path.as_uri())
    config = SimulationConfig(users=400, days=14, seed=3, chunk_users=1_000)
    first = simulate(config, lake)
    second = simulate(config, lake)
    other = simulate(config.model_copy(update={"seed": 4}), lake)
    assert first.snapshot_id != second.snapshot_id
    assert _hashes(first.raw_uri) == _hashes(second.raw_uri)
    assert _hashes(first.truth_uri) == _hashes(second.truth_uri)
    differing = {t for t, h in _hashes(other.raw_uri).items() if _hashes(first.raw_uri)[t] != h}
    assert {"users", "events", "orders", "assignments"} <= differing


def test_output_conforms_to_the_contract(small_world) -> None:
    from flashsale_ml.validation import validate_snapshot

    with Snapshot(small_world.raw_uri) as snap:
        assert set(snap.tables) == set(SHOP_TABLES)
        for table in snap.tables:
            actual = snap.read_table(table).schema
            assert check_schema(table, actual) == [], table
    report = validate_snapshot(small_world.raw_uri)
    assert report.success
    assert small_world.rows["events"] > 1_500 * 21  # roughly 3.5 events per user-day


@pytest.fixture(scope="module")
def db(small_world) -> duckdb.DuckDBPyConnection:
    con = duck.connect()
    for uri, tables in ((small_world.raw_uri, None), (small_world.truth_uri, None)):
        with Snapshot(uri) as snap:
            for table in tables or snap.tables:
                con.register(table, snap.read_table(table))
    return con


def test_true_uplift_is_heterogeneous_with_some_users_put_off(db) -> None:
    stats = db.execute("""
        SELECT stddev(uplift_pct_discount), stddev(uplift_gift_with_purchase),
               stddev(uplift_timed_coupon),
               avg((uplift_pct_discount < 0)::INT), avg((uplift_timed_coupon < 0)::INT),
               corr(uplift_pct_discount, uplift_gift_with_purchase)
        FROM sale_truth WHERE NOT is_bot
    """).fetchall()[0]
    assert all(s > 0.003 for s in stats[:3]), stats
    assert 0.01 < stats[3] < 0.6 and 0.01 < stats[4] < 0.6, stats
    # Different promotions suit different users: effects are far from perfectly correlated.
    assert stats[5] < 0.8, stats


def test_randomized_arms_match_the_planned_split(db) -> None:
    shares = dict(
        db.execute("""
        SELECT arm, count(*) / sum(count(*)) OVER () FROM assignments GROUP BY arm
    """).fetchall()
    )
    assert abs(shares["control"] - 0.2) < 0.03
    for promo in ("pct_discount", "gift_with_purchase", "timed_coupon"):
        assert abs(shares[promo] - 0.8 / 3) < 0.03


def test_bots_hit_the_first_minutes_of_a_sale(db) -> None:
    bot_share, human_share = db.execute("""
        WITH e AS (
            SELECT e.*, u.is_bot, c.start_ts
            FROM events e JOIN users_truth u USING (user_id)
            JOIN campaigns c ON e.ts >= c.start_ts AND e.ts < c.end_ts
        )
        SELECT avg((ts < start_ts + INTERVAL 2 MINUTE)::INT) FILTER (WHERE is_bot),
               avg((ts < start_ts + INTERVAL 2 MINUTE)::INT) FILTER (WHERE NOT is_bot)
        FROM e
    """).fetchall()[0]
    assert bot_share > 0.8 and human_share < 0.4, (bot_share, human_share)
    bots, accounts_per_device = db.execute("""
        SELECT avg(is_bot::INT), max(n) FROM users_truth
        JOIN (SELECT user_id, any_value(device_id) AS device_id FROM events GROUP BY user_id)
            USING (user_id)
        JOIN (SELECT device_id, count(DISTINCT user_id) AS n FROM events GROUP BY device_id)
            USING (device_id)
    """).fetchall()[0]
    assert 0.005 < bots < 0.05 and accounts_per_device >= 10


def test_traffic_spikes_at_sale_start(db) -> None:
    baseline, peak = db.execute("""
        SELECT median(sessions) FILTER (WHERE NOT in_sale), max(sessions) FILTER (WHERE in_sale)
        FROM (SELECT t.*, EXISTS (SELECT 1 FROM campaigns c WHERE t.ts >= c.start_ts
                                  AND t.ts < c.start_ts + INTERVAL 5 MINUTE) AS in_sale
              FROM traffic t)
    """).fetchall()[0]
    assert peak >= 10 * max(baseline, 1), (baseline, peak)


def test_limited_stock_sells_out_and_censors_demand(db) -> None:
    soldout, over_stock, censored = db.execute("""
        SELECT sum((sellout_ts IS NOT NULL)::INT), sum((sold_qty > sale_stock)::INT),
               sum((true_demand_qty > sold_qty)::INT)
        FROM demand_truth
    """).fetchall()[0]
    assert soldout > 0 and over_stock == 0 and censored > 0


def test_activity_is_heavy_tailed_and_seasonal(db) -> None:
    top_share = db.execute("""
        SELECT sum(n) FILTER (WHERE r <= 0.1) / sum(n)
        FROM (SELECT count(*) AS n, percent_rank() OVER (ORDER BY count(*) DESC) AS r
              FROM events GROUP BY user_id)
    """).fetchall()[0][0]
    assert top_share > 0.35, top_share
    evening, night = db.execute("""
        SELECT count(*) FILTER (WHERE hour(ts) BETWEEN 17 AND 22 AND NOT event_in_sale),
               count(*) FILTER (WHERE hour(ts) BETWEEN 2 AND 7)
        FROM (SELECT e.ts, EXISTS (SELECT 1 FROM campaigns c WHERE e.ts >= c.start_ts
              AND e.ts < c.end_ts) AS event_in_sale FROM events e)
    """).fetchall()[0]
    assert evening > 3 * night


def test_churned_users_go_quiet_and_orders_get_cancelled_or_returned(db) -> None:
    after_churn = db.execute("""
        SELECT count(*) FROM events e JOIN users_truth u USING (user_id)
        WHERE u.churn_ts IS NOT NULL AND e.ts >= u.churn_ts
    """).fetchall()[0][0]
    churned = db.execute("SELECT count(*) FROM users_truth WHERE churn_ts IS NOT NULL").fetchall()[
        0
    ][0]
    assert churned > 0 and after_churn == 0
    statuses = dict(db.execute("SELECT status, count(*) FROM orders GROUP BY 1").fetchall())
    assert statuses.get("cancelled", 0) > 0 and statuses.get("returned", 0) > 0


def test_user_ids_are_keyed_hashes() -> None:
    from flashsale_ml.contract import pseudonymize

    a = pseudonymize(["U000000001", "U000000002"], "key-one")
    b = pseudonymize(["U000000001", "U000000002"], "key-two")
    assert a.dtype == np.int64 and len(set(a)) == 2
    assert not np.array_equal(a, b)
    assert np.array_equal(a, pseudonymize(["U000000001", "U000000002"], "key-one"))
