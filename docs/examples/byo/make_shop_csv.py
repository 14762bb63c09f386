"""Write a small shop's "warehouse export" as CSV files: the input of the README's
"Bring your own data" walk-through (``mapping.yaml`` next to this file maps it).

The shop's behaviour comes from the project's simulator (3,000 customers, 35 days, five weekly
flash sales with a randomized holdout, fixed seed), then every table is re-shaped the way a real
shop system exports it, so that the mapping has real work to do:

=================  ==========================================================================
customers.csv      raw customer numbers (``C-000123``), sign-up times as ISO text with the
                   Berlin offset, device as a one-letter code
products.csv       text SKUs (``FAS-00017``), unit cost empty where unknown
orders.csv         ``;``-separated; local Berlin times ``31.01.2026 20:15:07``; status codes
                   C/X/R; a few test orders (status T) the mapping filters out
events/*.csv       the clickstream, one file per month; Unix milliseconds; action and channel
                   codes; device and network fingerprints as hex text
campaigns.csv      sale codes, local start/end times, the sale's SKUs as ``a|b|c``
assignments.csv    each eligible customer's group under the shop's own arm names
sale_stock.csv     units allotted per sale SKU and when they sold out (empty: never)
=================  ==========================================================================

Deterministic (same files every run) and quick (about 5 s). Usage::

    python docs/examples/byo/make_shop_csv.py --out /tmp/my-shop
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from flashsale_ml.datasets import Snapshot
from flashsale_ml.simulation import SimulationConfig, simulate
from flashsale_ml.storage import open_store

ZONE = "Europe/Berlin"
EPOCH = pd.Timestamp(0, tz="UTC")
DEVICE_CODES = {"mobile": "M", "desktop": "D", "tablet": "T", "app": "A", "unknown": "U"}
STATUS_CODES = {"completed": "C", "cancelled": "X", "returned": "R"}
ACTION_CODES = {"view": "PV", "add_to_cart": "ATC", "purchase": "BUY"}
CHANNEL_CODES = {"web": "WEB", "app": "APP", "email": "NEWSLETTER", "push": "PUSH"}
ARM_NAMES = {
    "control": "holdout",
    "pct_discount": "percent_off",
    "gift_with_purchase": "free_gift",
    "timed_coupon": "countdown_coupon",
}


def local_text(ts: pd.Series, fmt: str) -> pd.Series:
    """UTC timestamps as the shop writes them: Berlin wall-clock text, whole seconds."""
    return ts.dt.tz_convert(ZONE).dt.strftime(fmt).where(ts.notna(), "")


def hex_text(values: pd.Series) -> pd.Series:
    return values.map(lambda v: f"{int(v) & 0xFFFFFFFFFFFFFFFF:016x}")


def export(raw: Snapshot, out: Path) -> dict[str, int]:
    users = raw.read_pandas("users")
    items = raw.read_pandas("items")
    orders = raw.read_pandas("orders")
    events = raw.read_pandas("events")
    campaigns = raw.read_pandas("campaigns")
    assignments = raw.read_pandas("assignments")
    stock = raw.read_pandas("sale_stock")

    # The shop's own keys: customer numbers in order of sign-up, SKUs per category.
    users = users.sort_values(["signup_ts", "user_id"], kind="stable").reset_index(drop=True)
    numbers = [f"C-{i:06d}" for i in range(1, len(users) + 1)]
    customer = dict(zip(users.user_id, numbers, strict=True))
    items = items.sort_values("item_id").reset_index(drop=True)
    sku = dict(
        zip(
            items.item_id,
            [f"{c[:3].upper()}-{i:05d}" for i, c in enumerate(items.category, start=1)],
            strict=True,
        )
    )

    files: dict[str, pd.DataFrame] = {}
    files["customers.csv"] = pd.DataFrame(
        {
            "customer_no": users.user_id.map(customer),
            "registered_at": [
                t.tz_convert(ZONE).isoformat(timespec="seconds") for t in users.signup_ts
            ],
            "sales_region": users.region,
            "device": users.device_type.map(DEVICE_CODES),
        }
    )
    files["products.csv"] = pd.DataFrame(
        {
            "sku": items.item_id.map(sku),
            "category": items.category,
            "brand": items.brand,
            "list_price": items.list_price,
            "unit_cost": items.cost,
            "on_hand": items.stock_on_hand,
            "title": items.title,
        }
    )
    order_rows = pd.DataFrame(
        {
            "order_line": orders.order_id,
            "customer_no": orders.user_id.map(customer),
            "sku": orders.item_id.map(sku),
            "quantity": orders.qty,
            "unit_price": orders.unit_price,
            "discount_per_unit": orders.discount,
            "ordered_at": local_text(orders.ts, "%d.%m.%Y %H:%M:%S"),
            "promo_code": orders.campaign_id.fillna(""),
            "status": orders.status.map(STATUS_CODES),
        }
    )
    # Test orders placed by the shop's QA account: not customers, dropped by the mapping's filter.
    tests = order_rows.head(3).assign(
        order_line=[900_000_001, 900_000_002, 900_000_003],
        customer_no="QA-TEST",
        promo_code="",
        status="T",
    )
    files["orders.csv"] = pd.concat([order_rows, tests], ignore_index=True)
    files["campaigns.csv"] = pd.DataFrame(
        {
            "sale_code": campaigns.campaign_id,
            "starts_at": local_text(campaigns.start_ts, "%d.%m.%Y %H:%M"),
            "ends_at": local_text(campaigns.end_ts, "%d.%m.%Y %H:%M"),
            "skus": ["|".join(sku[i] for i in ids) for ids in campaigns.item_ids],
            "promos": ["|".join(p) for p in campaigns.promo_types],
            "discount_depth": campaigns.discount_depth,
            "budget": campaigns.budget,
            "holdout_share": campaigns.holdout_share,
        }
    )
    files["assignments.csv"] = pd.DataFrame(
        {
            "sale_code": assignments.campaign_id,
            "customer_no": assignments.user_id.map(customer),
            "group": assignments.arm.map(ARM_NAMES),
            "assigned_at": local_text(assignments.assigned_ts, "%Y-%m-%d %H:%M:%S"),
        }
    )
    files["sale_stock.csv"] = pd.DataFrame(
        {
            "sale_code": stock.campaign_id,
            "sku": stock.item_id.map(sku),
            "allotted": stock.stock_qty,
            "sold_out_at": local_text(stock.sold_out_ts, "%d.%m.%Y %H:%M:%S"),
        }
    )
    clicks = pd.DataFrame(
        {
            "event_id": events.event_id,
            "customer_no": events.user_id.map(customer),
            "sku": events.item_id.map(sku),
            "session_no": events.session_id,
            "action": events.event_type.map(ACTION_CODES),
            "epoch_ms": (events.ts - EPOCH) // pd.Timedelta(milliseconds=1),  # Unix ms
            "price": events.price,
            "channel": events.channel.map(CHANNEL_CODES),
            "device_fp": hex_text(events.device_id),
            "net_fp": hex_text(events.ip_hash),
        }
    )
    month = events.ts.dt.tz_convert(ZONE).dt.strftime("%Y-%m")
    for name, part in clicks.groupby(month, sort=True):
        files[f"events/{name}.csv"] = part

    out.mkdir(parents=True, exist_ok=True)
    (out / "events").mkdir(exist_ok=True)
    for old in (out / "events").glob("*.csv"):  # a rerun must not leave stale months behind
        old.unlink()
    rows = {}
    for name, frame in files.items():
        sep = ";" if name == "orders.csv" else ","
        frame.to_csv(out / name, index=False, sep=sep, lineterminator="\n")
        rows[name] = len(frame)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="/tmp/my-shop", help="folder for the CSV files")
    parser.add_argument("--users", type=int, default=3_000)
    parser.add_argument("--days", type=int, default=35)
    parser.add_argument("--seed", type=int, default=21)
    args = parser.parse_args()
    config = SimulationConfig(users=args.users, days=args.days, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="flashsale-byo-") as lake:
        result = simulate(config, open_store(lake), snapshot_id="export")
        with Snapshot(result.raw_uri) as raw:
            rows = export(raw, Path(args.out))
    for name, n in rows.items():
        print(f"{args.out}/{name}: {n:,} rows")


if __name__ == "__main__":
    main()
