"""Point-in-time, every source: rows at or after the cutoff change no feature of any row.

The older tests append post-cutoff *events* only, so a feature that reads another table up to
the label end (the current sale's orders in ``past_sale_*``, accounts created during the sale
in ``accounts_per_ip``) passed them. Here every table a feature reads gets post-cutoff rows
crafted to do the most damage if a filter were wrong: the same users, items, devices, IPs and
sessions as before the cutoff; order lines of up to a million units in the current sale (one
exactly at the cutoff), in a later sale and late lines of past sales; a sale starting at the
cutoff and one after it, with assignments of every user; accounts created at and after the
cutoff on the old devices and IPs; new SKUs (one in a category that sorts first); traffic
after the data.
Every group is rebuilt for the same cutoff and every feature of every earlier row must be
unchanged, with no new row (a new SKU row in ``items`` only). The same groups built from the
data cut at the cutoff (everything at or after it removed) must give the same features too.

``hypothesis`` is not installed in this project's environment (and is not added for this), so
the random variant loops over a seeded sample of cutoffs instead: every campaign start, and
arbitrary times with random label windows on the no-campaign path.
"""

from __future__ import annotations

import inspect
import random
import re
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flashsale_ml.contract import CONTRACT, DEVICE_TYPES, PROMO_TYPES, conform
from flashsale_ml.contract import SHOP_TABLES as SHOP_SOURCE_TABLES
from flashsale_ml.datasets import Snapshot
from flashsale_ml.features import groups as groups_module
from flashsale_ml.features import sql as build_module
from flashsale_ml.features.groups import item_features, traffic_window, user_category_affinity
from flashsale_ml.features.sql import Cutoff, connect, cutoffs_from_campaigns, propensity_features

# group -> (builder, key columns of a row)
GROUPS = {
    "propensity": (propensity_features, ("user_id",)),
    "items": (item_features, ("item_id",)),
    "user_category": (user_category_affinity, ("user_id", "category")),
    "traffic": (traffic_window, ("ts",)),
}
# Tables that get post-cutoff rows below (items have no time: new SKUs stand in).
DISRUPTED = (
    "users",
    "items",
    "events",
    "orders",
    "campaigns",
    "assignments",
    "traffic",
    "sale_stock",
)
ONE_US = timedelta(microseconds=1)
HUGE = 1_000_000


def test_every_table_a_feature_reads_gets_post_cutoff_rows() -> None:
    """A feature that starts reading a new table must get that table disrupted here too."""
    sql = inspect.getsource(build_module) + inspect.getsource(groups_module)
    read = set(re.findall(r"\b(?:FROM|JOIN)\s+([a-z_]+)", sql)) & set(CONTRACT)
    assert read == set(SHOP_SOURCE_TABLES), read
    assert read <= set(DISRUPTED), sorted(read - set(DISRUPTED))


def _build(files: dict[str, list[Path]], cutoff: Cutoff, groups=tuple(GROUPS)) -> dict:
    con = connect(files)
    try:
        return {g: GROUPS[g][0](con, cutoff) for g in groups}
    finally:
        con.close()


def _assert_unchanged(before: pa.Table, after: pa.Table, group: str, new_keys=frozenset()):
    """Every non-label column of every row of ``before`` is the same in ``after`` (numbers to
    1e-12, nulls where they were); ``after`` has no other rows except keys in ``new_keys``."""
    keys = list(GROUPS[group][1])
    features = [c for c in before.column_names if not c.startswith("label_")]
    assert after.column_names == before.column_names, group
    b = before.select(features).to_pandas().set_index(keys)
    a = after.select(features).to_pandas().set_index(keys)
    assert len(b) and b.index.is_unique and a.index.is_unique, group
    missing = b.index.difference(a.index)
    assert missing.empty, f"{group}: {len(missing)} rows disappeared, e.g. {list(missing[:3])}"
    added = {k if isinstance(k, tuple) else (k,) for k in a.index.difference(b.index)}
    added -= set(new_keys)
    assert not added, f"{group}: {len(added)} rows appeared, e.g. {sorted(added)[:3]}"
    a = a.loc[b.index]
    changed = {}
    for column in b.columns:
        x, y = b[column], a[column]
        differs = x.isna().to_numpy() != y.isna().to_numpy()
        both = (x.notna() & y.notna()).to_numpy()
        if pd.api.types.is_float_dtype(x) or pd.api.types.is_float_dtype(y):
            close = np.isclose(x.to_numpy(float)[both], y.to_numpy(float)[both], 1e-12, 1e-12)
            differs[both] = ~close
        else:
            differs[both] = (x[both] != y[both]).to_numpy()
        if differs.any():
            changed[column] = (int(differs.sum()), x[differs].iloc[0], y[differs].iloc[0])
    assert not changed, f"{group}: changed columns (rows, e.g. before, after): {changed}"


def _write(tmp: Path, name: str, table: pa.Table) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / f"{name}.parquet"
    pq.write_table(conform(name, table), path)
    return path


def _future_rows(con, cutoff: Cutoff, seed: int, tmp: Path) -> tuple[dict[str, Path], set]:
    """Post-cutoff rows for every source table; returns their files and the new item keys."""
    rng = np.random.default_rng(seed)
    t0, t1 = cutoff.as_of, cutoff.label_end
    span = (t1 - t0).total_seconds()

    def one(query: str, **params):
        return con.execute(query, params).fetchall()

    def col(query: str, **params) -> list:
        return [r[0] for r in one(query, **params)]

    def pick(values, n: int) -> list:
        return [values[i] for i in rng.integers(0, len(values), n)]

    def times(n: int) -> list[datetime]:
        """At the cutoff, 1 us after it, in the label window and in the 30 days after it."""
        kind = rng.choice(4, n, p=[0.1, 0.05, 0.45, 0.4])
        window = rng.uniform(0, span, n)
        later = span + rng.uniform(0, 30 * 86_400, n)
        seconds = np.select([kind == 0, kind == 1, kind == 2], [0.0, 1e-6, window], later)
        return [t0 + timedelta(microseconds=int(s * 1e6)) for s in seconds]

    users = col("SELECT user_id FROM users ORDER BY user_id")
    if cutoff.campaign_id is None:
        population = col("SELECT user_id FROM users WHERE signup_ts < $t ORDER BY 1", t=t0)
    else:
        population = col(
            "SELECT user_id FROM assignments WHERE campaign_id = $c ORDER BY 1",
            c=cutoff.campaign_id,
        )
    taken = set(users)
    new_users = []
    while len(new_users) < 200:
        uid = int(rng.integers(-(2**62), 2**62))
        if uid not in taken:
            taken.add(uid)
            new_users.append(uid)

    items = one("SELECT item_id, category FROM items ORDER BY item_id")
    item_ids = [i for i, _ in items]
    sale_items = (
        col("SELECT unnest(item_ids) FROM campaigns WHERE campaign_id = $c", c=cutoff.campaign_id)
        or item_ids[:5]
    )
    sale_categories = sorted({c for i, c in items if i in set(sale_items)})
    new_items = [max(item_ids) + 1 + k for k in range(4)]
    new_categories = ["aaa-new-category", *pick(sale_categories, 3)]

    # (device, IP) pairs and sessions seen before the cutoff: new rows reuse them
    pairs = one(
        "SELECT DISTINCT device_id, ip_hash FROM events WHERE ts < $t ORDER BY ALL", t=t0
    ) or [(1, 1)]
    sessions = col("SELECT DISTINCT session_id FROM events WHERE ts < $t ORDER BY 1", t=t0) or [1]
    max_event, max_session, max_order = one(
        "SELECT max(event_id), (SELECT max(session_id) FROM events), (SELECT max(order_id) "
        "FROM orders) FROM events"
    )[0]
    past_campaigns = col("SELECT campaign_id FROM campaigns WHERE end_ts <= $t ORDER BY 1", t=t0)

    def who(n: int) -> list[int]:
        """Mostly the population, then anybody, then accounts created after the cutoff."""
        source = rng.choice(3, n, p=[0.6, 0.2, 0.2])
        groups = [population or users, users, new_users]
        return [groups[s][int(rng.integers(0, len(groups[s])))] for s in source]

    def what(n: int) -> list[int]:
        source = rng.choice(3, n, p=[0.5, 0.2, 0.3])
        groups = [sale_items, new_items, item_ids]
        return [groups[s][int(rng.integers(0, len(groups[s])))] for s in source]

    out: dict[str, Path] = {}
    n_new = len(new_users)
    signup = times(n_new)
    signup[0] = t0  # created exactly at the cutoff: not an account that exists at the cutoff
    out["users"] = _write(
        tmp,
        "users",
        pa.table(
            {
                "user_id": pa.array(new_users, pa.int64()),
                "signup_ts": pa.array(signup, pa.timestamp("us", tz="UTC")),
                "region": ["north"] * n_new,
                "device_type": pick(list(DEVICE_TYPES), n_new),
            }
        ),
    )
    out["items"] = _write(
        tmp,
        "items",
        pa.table(
            {
                "item_id": pa.array(new_items, pa.int64()),
                "category": new_categories,
                "brand": ["new"] * 4,
                "list_price": [1.0] * 4,
                "cost": [0.5] * 4,
                "stock_on_hand": pa.array([10**9] * 4, pa.int64()),
                "title": ["new item"] * 4,
            }
        ),
    )

    n = 4_000
    ev_pairs = [
        pairs[int(rng.integers(0, len(pairs)))]
        if rng.random() < 0.7
        else (int(rng.integers(1, 2**40)), int(rng.integers(1, 2**40)))
        for _ in range(n)
    ]
    new_sessions = [int(max_session) + 1 + k for k in range(n)]
    out["events"] = _write(
        tmp,
        "events",
        pa.table(
            {
                "event_id": pa.array(range(max_event + 1, max_event + 1 + n), pa.int64()),
                "user_id": pa.array(who(n), pa.int64()),
                "item_id": pa.array(what(n), pa.int64()),
                "session_id": pa.array(
                    [
                        s if rng.random() < 0.5 else new_sessions[k]
                        for k, s in enumerate(pick(sessions, n))
                    ],
                    pa.int64(),
                ),
                "event_type": pick(["view", "add_to_cart", "purchase"], n),
                "ts": pa.array(times(n), pa.timestamp("us", tz="UTC")),
                "price": pick([0.01, float(HUGE)], n),
                "channel": ["web"] * n,
                "device_id": pa.array([d for d, _ in ev_pairs], pa.int64()),
                "ip_hash": pa.array([i for _, i in ev_pairs], pa.int64()),
            }
        ),
    )

    # Two sales that start at or after the cutoff, with everybody assigned.
    later_start = t1 + timedelta(days=1)
    later_end = later_start + timedelta(hours=2)
    future = [("fs-future-at-cutoff", t0, t1), ("fs-future-later", later_start, later_end)]
    out["campaigns"] = _write(
        tmp,
        "campaigns",
        pa.table(
            {
                "campaign_id": [c for c, _, _ in future],
                "start_ts": pa.array([s for _, s, _ in future], pa.timestamp("us", tz="UTC")),
                "end_ts": pa.array([e for _, _, e in future], pa.timestamp("us", tz="UTC")),
                "item_ids": [sale_items + new_items + item_ids[:20]] * 2,
                "promo_types": [list(PROMO_TYPES)] * 2,
                "discount_depth": [0.9, 0.9],
                "budget": [1e9, 1e9],
                "holdout_share": [0.5, 0.5],
            }
        ),
    )
    assigned = sorted(set(population) | set(users[::3]) | set(new_users))
    out["assignments"] = _write(
        tmp,
        "assignments",
        pa.table(
            {
                "campaign_id": [c for c, _, _ in future for _ in assigned],
                "user_id": pa.array(assigned * 2, pa.int64()),
                "arm": pick(["control", *PROMO_TYPES], 2 * len(assigned)),
                "assigned_ts": pa.array(
                    [s for _, s, _ in future for _ in assigned], pa.timestamp("us", tz="UTC")
                ),
            }
        ),
    )

    # Order lines: in the current sale's window (and exactly at its start), in the later sale,
    # late lines of past sales, and outside any sale; up to a million units, every status.
    m = 1_500
    kind = rng.choice(4, m, p=[0.5, 0.2, 0.1, 0.2])
    order_ts = times(m)
    order_ts[0] = t0
    current = cutoff.campaign_id or "fs-future-at-cutoff"  # a sale in the label window
    campaign = [current if k == 0 else "fs-future-later" if k == 1 else None for k in kind]
    for j in np.flatnonzero(kind == 0):  # the current sale: inside its window
        order_ts[j] = t0 + timedelta(microseconds=int(rng.uniform(0, span) * 1e6))
    for j in np.flatnonzero(kind == 1):
        order_ts[j] = later_start + timedelta(minutes=int(rng.integers(0, 120)))
    for j in np.flatnonzero(kind == 2):
        campaign[j] = pick(past_campaigns, 1)[0] if past_campaigns else current
    out["orders"] = _write(
        tmp,
        "orders",
        pa.table(
            {
                "order_id": pa.array(range(max_order + 1, max_order + 1 + m), pa.int64()),
                "user_id": pa.array(who(m), pa.int64()),
                "item_id": pa.array(what(m), pa.int64()),
                "qty": pa.array(pick([1, 3, HUGE], m), pa.int64()),
                "unit_price": pick([0.01, 9.99, float(HUGE)], m),
                "discount": [0.0] * m,
                "ts": pa.array(order_ts, pa.timestamp("us", tz="UTC")),
                "campaign_id": pa.array(campaign, pa.string()),
                "status": pick(["completed", "cancelled", "returned"], m),
            }
        ),
    )

    # The future sales' allotments, every SKU sold out a minute after it started.
    stocked = [(c, s, i) for c, s, _ in future for i in sale_items + new_items + item_ids[:20]]
    out["sale_stock"] = _write(
        tmp,
        "sale_stock",
        pa.table(
            {
                "campaign_id": [c for c, _, _ in stocked],
                "item_id": pa.array([i for _, _, i in stocked], pa.int64()),
                "stock_qty": pa.array([1] * len(stocked), pa.int64()),
                "sold_out_ts": pa.array(
                    [s + timedelta(minutes=1) for _, s, _ in stocked],
                    pa.timestamp("us", tz="UTC"),
                ),
            }
        ),
    )

    last_minute = one("SELECT max(ts) FROM traffic")[0][0]
    minutes = [last_minute + timedelta(minutes=k + 1) for k in range(3 * 1440)]
    out["traffic"] = _write(
        tmp,
        "traffic",
        pa.table(
            {
                "ts": pa.array(minutes, pa.timestamp("us", tz="UTC")),
                "requests": pa.array([10**9] * len(minutes), pa.int64()),
                "sessions": pa.array([10**8] * len(minutes), pa.int64()),
                "orders": pa.array([10**7] * len(minutes), pa.int64()),
            }
        ),
    )
    return out, {(i,) for i in new_items}


def _cut_at(con, cutoff: Cutoff, tmp: Path) -> dict[str, list[Path]]:
    """The data as it was at the cutoff: nothing at or after it (campaigns: those that have
    started by then, with their assignments; the catalogue whole)."""
    where = {
        "users": "signup_ts < $t",
        "items": "true",
        "events": "ts < $t",
        "orders": "ts < $t",
        "campaigns": "start_ts <= $t",
        "assignments": "campaign_id IN (SELECT campaign_id FROM campaigns WHERE start_ts <= $t)",
        "traffic": "ts < $t",
        "sale_stock": "sold_out_ts < $t OR (sold_out_ts IS NULL AND campaign_id IN "
        "(SELECT campaign_id FROM campaigns WHERE end_ts <= $t))",
    }
    tmp.mkdir(parents=True, exist_ok=True)
    files = {}
    for table, condition in where.items():
        path = tmp / f"{table}.parquet"
        con.execute(
            f"COPY (SELECT * FROM {table} WHERE {condition}) TO '{path}' (FORMAT parquet)",
            {"t": cutoff.as_of} if "$t" in condition else {},
        )
        files[table] = [path]
    return files


def _check_cutoff(files: dict[str, list[Path]], cutoff: Cutoff, seed: int, tmp: Path) -> None:
    con = connect(files)
    before = {g: GROUPS[g][0](con, cutoff) for g in GROUPS}
    # Nobody in the cutoff's rows was created at or after it.
    users = before["propensity"].column("user_id").to_pylist()
    con.register("_rows", pa.table({"user_id": pa.array(users, pa.int64())}))
    late = con.execute(
        "SELECT count(*) FROM _rows JOIN users USING (user_id) WHERE signup_ts >= $t",
        {"t": cutoff.as_of},
    ).fetchone()[0]
    assert late == 0, f"{late} accounts created at or after the cutoff are in its rows"
    extra, new_items = _future_rows(con, cutoff, seed, tmp / "future")
    past = _cut_at(con, cutoff, tmp / "past")
    con.close()

    after = _build({t: [*files[t], extra[t]] for t in files}, cutoff)
    for group in GROUPS:
        _assert_unchanged(
            before[group], after[group], group, new_items if group == "items" else frozenset()
        )
    # The traffic rows are the label window's minutes: without data from then there are none.
    cut = _build(past, cutoff, groups=("propensity", "items", "user_category"))
    for group, table in cut.items():
        _assert_unchanged(before[group], table, group)


@pytest.fixture(scope="module")
def world_files(small_world) -> dict[str, list[Path]]:
    with Snapshot(small_world.raw_uri) as raw:
        yield {t: raw.local_files(t) for t in SHOP_SOURCE_TABLES}


def test_post_cutoff_rows_in_every_table_change_no_feature(world_files, tmp_path: Path) -> None:
    """One fixed cutoff (the middle sale: history before it, sales after it)."""
    con = connect(world_files)
    cutoff = cutoffs_from_campaigns(con)[1]
    con.close()
    _check_cutoff(world_files, cutoff, seed=0, tmp=tmp_path)


def _sampled_cutoffs(files: dict[str, list[Path]], n_arbitrary: int, seed: int) -> list[Cutoff]:
    con = connect(files)
    campaign_cutoffs = cutoffs_from_campaigns(con)
    first, last = con.execute("SELECT min(ts), max(ts) FROM events").fetchone()
    con.close()
    rng = random.Random(seed)
    span_us = int((last - first).total_seconds() * 1e6)
    arbitrary = []
    for _ in range(n_arbitrary):
        as_of = first + timedelta(hours=1, microseconds=rng.randrange(span_us))
        window = rng.choice([timedelta(minutes=30), timedelta(hours=2), timedelta(days=7)])
        arbitrary.append(Cutoff(None, as_of, as_of + window))
    return [*campaign_cutoffs, *arbitrary]


def test_random_cutoffs_post_cutoff_rows_change_no_feature(world_files, tmp_path: Path) -> None:
    """Every campaign start and three arbitrary times (the no-campaign path: the population is
    every account that exists), each with its own random post-cutoff rows."""
    cutoffs = _sampled_cutoffs(world_files, n_arbitrary=3, seed=2311)
    assert sum(c.campaign_id is None for c in cutoffs) == 3 and len(cutoffs) == 6
    for n, cutoff in enumerate(cutoffs):
        _check_cutoff(world_files, cutoff, seed=100 + n, tmp=tmp_path / str(n))
