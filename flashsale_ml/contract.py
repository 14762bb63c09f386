"""The data contract: every table's columns, types, keys and allowed values, in one place.

``docs/data-contract.md`` explains it for people; this module is what code checks against.
All timestamps are UTC (``timestamp[us, tz=UTC]``). User ids are pseudonymous int64 values made
by :func:`pseudonymize` from the raw id with a secret key before data enters the lake.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from flashsale_ml.errors import DataError

TS = pa.timestamp("us", tz="UTC")

EVENT_TYPES = ("view", "add_to_cart", "purchase")
CHANNELS = ("web", "app", "email", "push")
DEVICE_TYPES = ("mobile", "desktop", "tablet", "app", "unknown")
# Regions of the simulated shop; real data keeps its own (e.g. a country), so the contract only
# requires a non-empty string.
REGIONS = ("north", "south", "east", "west", "central", "abroad")
PROMO_TYPES = ("pct_discount", "gift_with_purchase", "timed_coupon")
CONTROL_ARM = "control"
# Every arm an assignment can have, control first: the one vocabulary of arm codes.
ARMS: tuple[str, ...] = (CONTROL_ARM, *PROMO_TYPES)
ORDER_STATUSES = ("completed", "cancelled", "returned")
# How a campaign's arms were assigned: every eligible user drawn at random into the arms in
# the designed shares, or a plan's targeting with a randomized holdout (control) among the
# users it targets. Null means randomized (data from before the column existed).
RANDOMIZED = "randomized"
TARGETED = "targeted"
CAMPAIGN_DESIGNS = (RANDOMIZED, TARGETED)


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool = False
    allowed: tuple[str, ...] | None = None
    min_value: float | None = None
    description: str = ""


@dataclass(frozen=True)
class TableContract:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    foreign_keys: dict[str, str] = field(default_factory=dict)  # column -> "table.column"
    description: str = ""

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns])

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"table {self.name!r} has no column {name!r}")


class ContractViolationError(DataError):
    """A table does not have the contract's columns or types."""


def _cols(*columns: Column) -> tuple[Column, ...]:
    return columns


USERS = TableContract(
    name="users",
    description="One row per (pseudonymous) customer account.",
    primary_key=("user_id",),
    columns=_cols(
        Column("user_id", pa.int64(), description="keyed hash of the raw account id"),
        Column("signup_ts", TS),
        Column("region", pa.string(), description="sales region or country"),
        Column("device_type", pa.string(), allowed=DEVICE_TYPES),
    ),
)

ITEMS = TableContract(
    name="items",
    description="One row per SKU.",
    primary_key=("item_id",),
    columns=_cols(
        Column("item_id", pa.int64()),
        Column("category", pa.string()),
        Column("brand", pa.string()),
        Column("list_price", pa.float64(), min_value=0.01),
        Column(
            "cost",
            pa.float64(),
            nullable=True,
            min_value=0.0,
            description="unit cost; null where the source does not know it",
        ),
        Column("stock_on_hand", pa.int64(), nullable=True, min_value=0),
        Column("title", pa.string()),
    ),
)

EVENTS = TableContract(
    name="events",
    description="Clickstream: one row per view, add-to-cart or purchase.",
    primary_key=("event_id",),
    foreign_keys={"user_id": "users.user_id", "item_id": "items.item_id"},
    columns=_cols(
        Column("event_id", pa.int64()),
        Column("user_id", pa.int64()),
        Column("item_id", pa.int64()),
        Column("session_id", pa.int64()),
        Column("event_type", pa.string(), allowed=EVENT_TYPES),
        Column("ts", TS),
        Column("price", pa.float64(), min_value=0.01, description="price shown or paid"),
        Column("channel", pa.string(), allowed=CHANNELS),
        Column("device_id", pa.int64(), description="hashed device fingerprint"),
        Column("ip_hash", pa.int64(), description="hashed /24 of the client IP"),
    ),
)

ORDERS = TableContract(
    name="orders",
    description="One row per order line; cancellations and returns keep their row.",
    primary_key=("order_id",),
    foreign_keys={"user_id": "users.user_id", "item_id": "items.item_id"},
    columns=_cols(
        Column("order_id", pa.int64()),
        Column("user_id", pa.int64()),
        Column("item_id", pa.int64()),
        Column("qty", pa.int64(), min_value=1),
        Column("unit_price", pa.float64(), min_value=0.01, description="price paid per unit"),
        Column("discount", pa.float64(), min_value=0.0, description="per-unit discount"),
        Column("ts", TS),
        Column("campaign_id", pa.string(), nullable=True),
        Column("status", pa.string(), allowed=ORDER_STATUSES),
    ),
)

CAMPAIGNS = TableContract(
    name="campaigns",
    description="One row per flash sale.",
    primary_key=("campaign_id",),
    columns=_cols(
        Column("campaign_id", pa.string()),
        Column("start_ts", TS),
        Column("end_ts", TS),
        Column("item_ids", pa.list_(pa.int64())),
        Column("promo_types", pa.list_(pa.string())),
        Column("discount_depth", pa.float64(), min_value=0.0),
        Column("budget", pa.float64(), min_value=0.0),
        Column("holdout_share", pa.float64(), min_value=0.0),
        Column(
            "design",
            pa.string(),
            nullable=True,
            allowed=CAMPAIGN_DESIGNS,
            description="'randomized' (arms in their designed shares; null means this too) or "
            "'targeted' (a plan chose each user's promotion; control is the randomized "
            "holdout share of the targeted users)",
        ),
    ),
)

ASSIGNMENTS = TableContract(
    name="assignments",
    description="Randomized arm of every eligible user in a campaign (the holdout is 'control').",
    primary_key=("campaign_id", "user_id"),
    foreign_keys={"campaign_id": "campaigns.campaign_id", "user_id": "users.user_id"},
    columns=_cols(
        Column("campaign_id", pa.string()),
        Column("user_id", pa.int64()),
        Column(
            "arm",
            pa.string(),
            description="'control' or one of the campaign's promo_types (checked across tables)",
        ),
        Column("assigned_ts", TS),
        Column(
            "plan_arm",
            pa.string(),
            nullable=True,
            description="targeted campaigns: the promotion the plan's rule chose for the user "
            "(for a control user, the one it would have given), so each promotion's treated "
            "users are compared with the control users the rule meant for the same promotion; "
            "null where the arm was drawn at random (randomized campaigns, a targeted "
            "campaign's exploration users)",
        ),
    ),
)

SALE_STOCK = TableContract(
    name="sale_stock",
    description="What the inventory system recorded for each sale item: the units allotted to "
    "the sale and when they ran out. Sales during a sold-out stretch are censored, not demand; "
    "the demand model corrects for it (optional: without it demand is taken as observed).",
    primary_key=("campaign_id", "item_id"),
    foreign_keys={"campaign_id": "campaigns.campaign_id", "item_id": "items.item_id"},
    columns=_cols(
        Column("campaign_id", pa.string()),
        Column("item_id", pa.int64()),
        Column("stock_qty", pa.int64(), min_value=0, description="units allotted to the sale"),
        Column(
            "sold_out_ts",
            TS,
            nullable=True,
            description="when the last allotted unit sold; null: it did not sell out",
        ),
    ),
)

TRAFFIC = TableContract(
    name="traffic",
    description="Site load per minute, for capacity planning.",
    primary_key=("ts",),
    columns=_cols(
        Column("ts", TS, description="start of the minute"),
        Column("requests", pa.int64(), min_value=0),
        Column("sessions", pa.int64(), min_value=0),
        Column("orders", pa.int64(), min_value=0),
    ),
)

CAMPAIGN_OUTCOMES = TableContract(
    name="campaign_outcomes",
    description="Per-user outcomes of a campaign over its evaluation window (e.g. Hillstrom's "
    "two weeks); what effect evaluation compares between arms.",
    primary_key=("campaign_id", "user_id"),
    foreign_keys={"campaign_id": "campaigns.campaign_id", "user_id": "users.user_id"},
    columns=_cols(
        Column("campaign_id", pa.string()),
        Column("user_id", pa.int64()),
        Column("visit", pa.int64(), min_value=0),
        Column("conversion", pa.int64(), min_value=0),
        Column("spend", pa.float64(), min_value=0.0),
    ),
)

SHOPPER_SESSIONS = TableContract(
    name="shopper_sessions",
    description="One web session with page-type counts and durations (UCI Online Shoppers "
    "Purchasing Intention); label: did the session buy.",
    primary_key=("session_id",),
    columns=_cols(
        Column("session_id", pa.int64()),
        Column("month", pa.int64(), min_value=1, description="1-12; the source has no year"),
        Column("administrative", pa.int64(), min_value=0),
        Column("administrative_duration", pa.float64(), min_value=0.0),
        Column("informational", pa.int64(), min_value=0),
        Column("informational_duration", pa.float64(), min_value=0.0),
        Column("product_related", pa.int64(), min_value=0),
        Column("product_related_duration", pa.float64(), min_value=0.0),
        Column("bounce_rates", pa.float64(), min_value=0.0),
        Column("exit_rates", pa.float64(), min_value=0.0),
        Column("page_values", pa.float64(), min_value=0.0),
        Column("special_day", pa.float64(), min_value=0.0),
        Column("operating_systems", pa.int64()),
        Column("browser", pa.int64()),
        Column("region", pa.int64()),
        Column("traffic_type", pa.int64()),
        Column("visitor_type", pa.string(), allowed=("Returning_Visitor", "New_Visitor", "Other")),
        Column("weekend", pa.bool_()),
        Column("revenue", pa.bool_()),
    ),
)

CONTRACT: dict[str, TableContract] = {
    t.name: t
    for t in (
        USERS,
        ITEMS,
        EVENTS,
        ORDERS,
        CAMPAIGNS,
        ASSIGNMENTS,
        TRAFFIC,
        SALE_STOCK,
        CAMPAIGN_OUTCOMES,
        SHOPPER_SESSIONS,
    )
}


# The tables of a complete shop snapshot (what the simulator writes and the pipeline reads).
SHOP_TABLES = (
    "users",
    "items",
    "events",
    "orders",
    "campaigns",
    "assignments",
    "traffic",
    "sale_stock",
)


def require_tables(
    step: str, snapshot_uri: str, present: Iterable[str], needed: Iterable[str]
) -> None:
    """Fail at once, naming them, when a snapshot lacks tables a step needs (a shop's own
    data may map only some of the contract's tables).

    Raises:
        DataError: the missing tables, the step, the snapshot and what it has.
    """
    have = set(present)
    missing = [t for t in needed if t not in have]
    if missing:
        raise DataError(
            f"{step} needs table(s) {missing}, which the snapshot {snapshot_uri} lacks (it has "
            f"{sorted(have)}); map them in the ingest mapping (docs/ingest.md)"
        )


def contract_for(table: str) -> TableContract:
    try:
        return CONTRACT[table]
    except KeyError:
        raise KeyError(
            f"no contract for table {table!r}; known tables: {', '.join(sorted(CONTRACT))}"
        ) from None


def conform(table: str, data: pa.Table) -> pa.Table:
    """Return ``data`` with exactly the contract's columns, in order, cast to its types.

    A missing *nullable* column is added as nulls (a source that does not know it), a missing
    required one is an error.

    Raises:
        ContractViolationError: a column is missing, or a value cannot be cast losslessly.
    """
    contract = contract_for(table)
    for col in contract.columns:
        if col.nullable and col.name not in data.column_names:
            data = data.append_column(col.name, pa.nulls(data.num_rows, col.type))
    missing = [c for c in contract.column_names if c not in data.column_names]
    if missing:
        raise ContractViolationError(
            f"table {table!r}: missing column(s) {missing}; has {data.column_names}"
        )
    arrays = []
    for col in contract.columns:
        arr = data.column(col.name)
        if not arr.type.equals(col.type):
            try:
                arr = arr.cast(col.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ContractViolationError(
                    f"table {table!r}, column {col.name!r}: cannot cast {arr.type} to "
                    f"{col.type}: {exc}"
                ) from exc
        if not col.nullable and arr.null_count:
            raise ContractViolationError(
                f"table {table!r}, column {col.name!r}: {arr.null_count} null value(s) in a "
                "non-nullable column"
            )
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=contract.schema)


def _same_type(actual: pa.DataType, expected: pa.DataType) -> bool:
    """Equal, treating large_string / large_list (what pandas 3 produces) as their small forms."""
    if actual.equals(expected):
        return True
    if pa.types.is_large_string(actual) and pa.types.is_string(expected):
        return True
    if pa.types.is_large_list(actual) and pa.types.is_list(expected):
        return _same_type(actual.value_type, expected.value_type)
    if pa.types.is_list(actual) and pa.types.is_list(expected):
        return _same_type(actual.value_type, expected.value_type)
    return False


def schema_problems(table: str, schema: pa.Schema) -> list[tuple[str | None, str]]:
    """(column or None, problem) for every difference between ``schema`` and the contract."""
    contract = contract_for(table)
    problems: list[tuple[str | None, str]] = []
    have = {f.name: f.type for f in schema}
    for col in contract.columns:
        if col.name not in have:
            problems.append((col.name, "missing"))
        elif not _same_type(have[col.name], col.type):
            problems.append((col.name, f"type {have[col.name]} but the contract says {col.type}"))
    extra = sorted(set(have) - set(contract.column_names))
    if extra:
        problems.append((None, f"columns not in the contract: {extra}"))
    return problems


def check_schema(table: str, schema: pa.Schema) -> list[str]:
    """Differences between ``schema`` and the contract, as readable lines (empty if equal)."""
    return [
        f"table {table!r}, column {column!r}: {problem}"
        if column
        else f"table {table!r}: {problem}"
        for column, problem in schema_problems(table, schema)
    ]


def stable_ids(values: Iterable[str | int], namespace: str) -> np.ndarray:
    """Deterministic int64 ids for non-personal keys (e.g. a retailer's stock codes)."""
    return pseudonymize(values, key=f"flashsale-namespace:{namespace}")


def pseudonymize(raw_ids: Iterable[str | int], key: str) -> np.ndarray:
    """Keyed BLAKE2b-64 of each raw id, as int64.

    A keyed hash (not a plain one) so that nobody without the key can rebuild the mapping by
    hashing a list of known customer numbers. 64 bits keep joins cheap; at 10 million users the
    chance of any collision is about 3e-6.
    """
    key_bytes = key.encode()[:64]
    out = [
        int.from_bytes(
            hashlib.blake2b(str(raw).encode(), digest_size=8, key=key_bytes).digest(),
            "little",
            signed=True,
        )
        for raw in raw_ids
    ]
    return np.asarray(out, dtype=np.int64)
