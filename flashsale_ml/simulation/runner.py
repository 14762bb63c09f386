"""Run the simulator and stream its tables into two snapshots: observable data and ground truth.

Memory stays bounded because everyday browsing is generated and written one chunk of users at a
time; only the flash sales (a few hours each) are generated for all users at once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pyarrow as pa

from flashsale_ml.contract import (
    ARMS,
    CHANNELS,
    CONTRACT,
    DEVICE_TYPES,
    EVENT_TYPES,
    ORDER_STATUSES,
    PROMO_TYPES,
    REGIONS,
    TS,
    conform,
)
from flashsale_ml.datasets import SnapshotWriter
from flashsale_ml.simulation.behaviour import (
    Events,
    Orders,
    SaleOutcome,
    baseline_sessions,
    flash_sale,
)
from flashsale_ml.simulation.world import (
    CATEGORIES,
    Campaign,
    Items,
    SimulationConfig,
    Users,
    make_campaigns,
    make_items,
    make_users,
    rng_for,
)
from flashsale_ml.storage import ObjectStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulationResult:
    raw_uri: str
    truth_uri: str
    snapshot_id: str
    rows: dict[str, int]
    seconds: float


class _Ids:
    """Global, gap-free id counters so ids do not depend on how tables are split into parts."""

    def __init__(self) -> None:
        self.event = 0
        self.order = 0
        self.session = 0

    def take(self, name: str, n: int) -> np.ndarray:
        start = getattr(self, name)
        setattr(self, name, start + n)
        return np.arange(start, start + n, dtype=np.int64) + 1


def _ts(config: SimulationConfig, seconds: np.ndarray) -> pa.Array:
    epoch_us = int(config.start.timestamp() * 1_000_000)
    return pa.array(epoch_us + np.round(seconds * 1_000_000).astype(np.int64), type=TS)


def _dict_strings(codes: np.ndarray, values: tuple[str, ...]) -> pa.Array:
    return pa.array(np.asarray(values, dtype=object)[codes], type=pa.string())


def users_table(config: SimulationConfig, users: Users) -> pa.Table:
    return conform(
        "users",
        pa.table(
            {
                "user_id": users.user_id,
                "signup_ts": _ts(config, users.signup_offset.astype(np.float64)),
                "region": _dict_strings(users.region, REGIONS),
                "device_type": _dict_strings(users.device_type, DEVICE_TYPES),
            }
        ),
    )


def items_table(items: Items) -> pa.Table:
    return conform(
        "items",
        pa.table(
            {
                "item_id": items.item_id,
                "category": _dict_strings(items.category, CATEGORIES),
                "brand": pa.array(items.brand, type=pa.string()),
                "list_price": items.list_price,
                "cost": items.cost,
                "stock_on_hand": items.stock_on_hand,
                "title": pa.array(items.title, type=pa.string()),
            }
        ),
    )


def campaigns_table(config: SimulationConfig, campaigns: list[Campaign], items: Items) -> pa.Table:
    return conform(
        "campaigns",
        pa.table(
            {
                "campaign_id": [c.campaign_id for c in campaigns],
                "start_ts": _ts(config, np.array([c.start_offset for c in campaigns], dtype=float)),
                "end_ts": _ts(config, np.array([c.end_offset for c in campaigns], dtype=float)),
                "item_ids": [items.item_id[c.item_index].tolist() for c in campaigns],
                "promo_types": [list(c.promo_types) for c in campaigns],
                "discount_depth": [c.discount_depth for c in campaigns],
                "budget": [c.budget for c in campaigns],
                "holdout_share": [c.holdout_share for c in campaigns],
                "design": [c.design for c in campaigns],
            }
        ),
    )


def events_table(
    config: SimulationConfig,
    users: Users,
    items: Items,
    ev: Events,
    session_offset: int,
    ids: _Ids,
) -> pa.Table:
    order = np.argsort(ev.t, kind="stable")  # time-sorted parts give Parquet useful ts stats
    return conform(
        "events",
        pa.table(
            {
                "event_id": ids.take("event", len(ev)),
                "user_id": users.user_id[ev.user[order]],
                "item_id": items.item_id[ev.item[order]],
                "session_id": ev.session[order] + session_offset + 1,
                "event_type": pa.DictionaryArray.from_arrays(
                    ev.kind[order], pa.array(EVENT_TYPES)
                ).cast(pa.string()),
                "ts": _ts(config, ev.t[order]),
                "price": ev.price[order],
                "channel": pa.DictionaryArray.from_arrays(
                    ev.channel[order], pa.array(CHANNELS)
                ).cast(pa.string()),
                "device_id": users.device_id[ev.user[order]],
                "ip_hash": users.ip_hash[ev.user[order]],
            }
        ),
    )


def orders_table(
    config: SimulationConfig,
    users: Users,
    items: Items,
    orders: Orders,
    campaigns: list[Campaign],
    ids: _Ids,
) -> pa.Table:
    campaign_ids = np.array([None, *[c.campaign_id for c in campaigns]], dtype=object)
    return conform(
        "orders",
        pa.table(
            {
                "order_id": ids.take("order", len(orders)),
                "user_id": users.user_id[orders.user],
                "item_id": items.item_id[orders.item],
                "qty": orders.qty,
                "unit_price": orders.unit_price,
                "discount": orders.discount,
                "ts": _ts(config, orders.t),
                "campaign_id": pa.array(campaign_ids[orders.campaign + 1], type=pa.string()),
                "status": _dict_strings(orders.status, ORDER_STATUSES),
            }
        ),
    )


def assignments_table(config: SimulationConfig, users: Users, sales: list[SaleOutcome]) -> pa.Table:
    parts = []
    for sale in sales:
        assigned = np.full(len(sale.eligible), sale.campaign.start_offset - 3_600, dtype=float)
        parts.append(
            pa.table(
                {
                    "campaign_id": pa.array([sale.campaign.campaign_id] * len(sale.eligible)),
                    "user_id": users.user_id[sale.eligible],
                    "arm": _dict_strings(sale.arm, ARMS),
                    "assigned_ts": _ts(config, assigned),
                }
            )
        )
    return conform("assignments", pa.concat_tables(parts))


def traffic_table(
    config: SimulationConfig, requests: np.ndarray, sessions: np.ndarray, orders: np.ndarray
) -> pa.Table:
    minutes = np.arange(len(requests), dtype=float) * 60.0
    return conform(
        "traffic",
        pa.table(
            {
                "ts": _ts(config, minutes),
                "requests": requests,
                "sessions": sessions,
                "orders": orders,
            }
        ),
    )


def _minute_counts(config: SimulationConfig, t: np.ndarray) -> np.ndarray:
    n_min = config.days * 1_440
    minute = np.clip((t // 60).astype(np.int64), 0, n_min - 1)
    return np.bincount(minute, minlength=n_min).astype(np.int64)


def sale_stock_table(config: SimulationConfig, items: Items, sales: list[SaleOutcome]) -> pa.Table:
    """What the shop's inventory system saw of each sale item: its allotment and when it ran
    out (observable, unlike the demand that went unmet, which stays in ``demand_truth``)."""
    parts = []
    for sale in sales:
        d = sale.demand
        sellout = np.asarray(d["sellout_offset"], dtype=float)
        parts.append(
            pa.table(
                {
                    "campaign_id": pa.array([sale.campaign.campaign_id] * len(d["item_index"])),
                    "item_id": items.item_id[d["item_index"]],
                    "stock_qty": np.asarray(d["sale_stock"], dtype=np.int64),
                    "sold_out_ts": pa.array(
                        _ts(config, np.nan_to_num(sellout)).to_numpy(zero_copy_only=False),
                        type=TS,
                        mask=np.isnan(sellout),
                    ),
                }
            )
        )
    if not parts:
        return conform("sale_stock", CONTRACT["sale_stock"].schema.empty_table())
    return conform("sale_stock", pa.concat_tables(parts))


def truth_tables(
    config: SimulationConfig, users: Users, items: Items, sales: list[SaleOutcome]
) -> dict[str, pa.Table]:
    churned = users.churn_offset <= config.horizon_seconds
    churn_s = np.where(churned, users.churn_offset, 0).astype(float)
    users_truth = pa.table(
        {
            "user_id": users.user_id,
            "is_bot": users.is_bot,
            "activity": users.activity,
            "price_sensitivity": users.price_sensitivity,
            "intent": users.intent,
            "annoyed": users.annoyed,
            "churn_ts": pa.array(
                _ts(config, churn_s).to_numpy(zero_copy_only=False), type=TS, mask=~churned
            ),
        }
    )
    sale_parts, demand_parts = [], []
    for sale in sales:
        n = len(sale.eligible)
        cols = {
            "campaign_id": pa.array([sale.campaign.campaign_id] * n),
            "user_id": users.user_id[sale.eligible],
            "arm": _dict_strings(sale.arm, ARMS),
            "is_bot": users.is_bot[sale.eligible],
            "p_control": sale.true_prob[:, 0],
        }
        for j, promo in enumerate(PROMO_TYPES, start=1):
            cols[f"p_{promo}"] = sale.true_prob[:, j]
            cols[f"uplift_{promo}"] = sale.true_prob[:, j] - sale.true_prob[:, 0]
        cols["p_assigned"] = sale.true_prob[np.arange(n), sale.arm]
        sale_parts.append(pa.table(cols))
        d = sale.demand
        sellout = d["sellout_offset"]
        demand_parts.append(
            pa.table(
                {
                    "campaign_id": pa.array([sale.campaign.campaign_id] * len(d["item_index"])),
                    "item_id": items.item_id[d["item_index"]],
                    "true_demand_qty": d["true_demand_qty"],
                    "sale_stock": d["sale_stock"],
                    "sold_qty": d["sold_qty"],
                    "sellout_ts": pa.array(
                        _ts(config, np.nan_to_num(sellout)).to_numpy(zero_copy_only=False),
                        type=TS,
                        mask=np.isnan(sellout),
                    ),
                }
            )
        )
    tables = {"users_truth": users_truth}
    if sales:
        tables["sale_truth"] = pa.concat_tables(sale_parts)
        tables["demand_truth"] = pa.concat_tables(demand_parts)
    return tables


def simulate(
    config: SimulationConfig,
    lake: ObjectStore,
    dataset: str = "raw",
    snapshot_id: str | None = None,
) -> SimulationResult:
    """Generate a complete flash-sale dataset and commit it (plus its ground truth) to ``lake``.

    Args:
        config: sizes, calendar and seed; the same config always yields identical tables.
        lake: where to write; the observable snapshot goes to ``datasets/<dataset>/`` and the
            ground truth to ``datasets/<dataset>-truth/`` under the same snapshot id.
        dataset: dataset name of the observable tables.
        snapshot_id: optional explicit id (default: time-based and unique).

    Returns:
        The URIs of both snapshots and the row count of every table.
    """
    started = time.perf_counter()
    users = make_users(config)
    items = make_items(config)
    campaigns = make_campaigns(config, items)
    log.info(
        "simulating %s users, %s items, %d days, %d flash sales (seed %d)",
        f"{users.n:,}",
        f"{items.n:,}",
        config.days,
        len(campaigns),
        config.seed,
    )
    sales = [
        flash_sale(config, users, items, c, i, rng_for(config, 4, i))
        for i, c in enumerate(campaigns)
    ]
    ids = _Ids()
    requests = np.zeros(config.days * 1_440, dtype=np.int64)
    sessions = np.zeros_like(requests)
    order_counts = np.zeros_like(requests)
    metadata = {
        "generator": "flashsale_ml.simulation",
        "config": config.model_dump(mode="json", exclude={"pseudonym_key"}),
        # The simulated extraction time: what freshness checks compare the newest event with.
        "data_as_of": (config.start + timedelta(days=config.days)).isoformat(),
    }

    raw = SnapshotWriter(lake, dataset, metadata=metadata, snapshot_id=snapshot_id)
    truth = SnapshotWriter(lake, f"{dataset}-truth", metadata=metadata, snapshot_id=raw.snapshot_id)
    with raw, truth:
        raw.write_table("users", users_table(config, users))
        raw.write_table("items", items_table(items))
        raw.write_table("campaigns", campaigns_table(config, campaigns, items))
        raw.write_table("assignments", assignments_table(config, users, sales))

        n_chunks = -(-users.n // config.chunk_users)
        for chunk in range(n_chunks):
            lo = chunk * config.chunk_users
            hi = min(users.n, lo + config.chunk_users)
            ev, orders, starts = baseline_sessions(
                config, users, items, lo, hi, rng_for(config, 5, chunk)
            )
            raw.append("events", events_table(config, users, items, ev, ids.session, ids))
            raw.append("orders", orders_table(config, users, items, orders, campaigns, ids))
            ids.session += len(starts)
            requests += _minute_counts(config, ev.t)
            sessions += _minute_counts(config, starts)
            order_counts += _minute_counts(config, orders.t)
            elapsed = time.perf_counter() - started
            log.info(
                "baseline chunk %d/%d: users %s/%s, events %s so far, %.0f s elapsed, ~%.0f s left",
                chunk + 1,
                n_chunks,
                f"{hi:,}",
                f"{users.n:,}",
                f"{ids.event:,}",
                elapsed,
                elapsed / (chunk + 1) * (n_chunks - chunk - 1),
            )
        for sale in sales:
            raw.append("events", events_table(config, users, items, sale.events, ids.session, ids))
            raw.append("orders", orders_table(config, users, items, sale.orders, campaigns, ids))
            ids.session += len(sale.session_starts)
            requests += _minute_counts(config, sale.events.t)
            sessions += _minute_counts(config, sale.session_starts)
            order_counts += _minute_counts(config, sale.orders.t)
        raw.write_table("traffic", traffic_table(config, requests, sessions, order_counts))
        if sales:  # an optional table: a shop without sales has no allotments to record
            raw.write_table("sale_stock", sale_stock_table(config, items, sales))
        for name, table in truth_tables(config, users, items, sales).items():
            truth.write_table(name, table)

    rows = {name: entry.rows for name, entry in raw.manifest.tables.items()}
    seconds = time.perf_counter() - started
    log.info("simulation done in %.1f s: %s", seconds, rows)
    return SimulationResult(raw.uri, truth.uri, raw.snapshot_id, rows, seconds)
