"""Checks that span tables or need context, run in DuckDB over a snapshot's Parquet files.

Flash-sale data breaks in ways no single-column rule sees: orders for users that do not exist,
sale orders outside the sale window, discounts larger than the list price, a stale feed, and a
broken experiment (sample-ratio mismatch, a user in two arms, assignment after exposure).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb

from flashsale_ml.contract import CONTRACT, CONTROL_ARM, TARGETED, TS
from flashsale_ml.validation.gx_suites import SAMPLE_ROWS, ExpectationFailure, _jsonable


@dataclass(frozen=True)
class IntegrityConfig:
    """Thresholds of the cross-table checks (from settings)."""

    freshness_max_lag: timedelta = timedelta(hours=24)
    future_tolerance: timedelta = timedelta(minutes=5)
    srm_alpha: float = 0.001
    now: datetime | None = None  # reference "now" for future timestamps (default: wall clock)


def _sample(con: duckdb.DuckDBPyConnection, sql: str) -> list:
    rows = con.execute(f"{sql} LIMIT {SAMPLE_ROWS}").fetchall()
    return [_jsonable(r[0] if len(r) == 1 else tuple(r)) for r in rows]


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM ({sql})").fetchall()[0][0])


def referential_integrity(
    con: duckdb.DuckDBPyConnection, tables: set[str]
) -> list[ExpectationFailure]:
    failures = []
    for child in sorted(tables):
        contract = CONTRACT.get(child)
        if contract is None:
            continue
        for column, target in contract.foreign_keys.items():
            parent, parent_col = target.split(".")
            if parent not in tables:
                continue
            orphans = (
                f"SELECT c.{column} FROM {child} c ANTI JOIN {parent} p "
                f"ON c.{column} = p.{parent_col} WHERE c.{column} IS NOT NULL"
            )
            n = _count(con, orphans)
            if n:
                failures.append(
                    ExpectationFailure(
                        child,
                        "referential_integrity",
                        column,
                        f"references {target}",
                        n,
                        _sample(con, f"SELECT DISTINCT {column} FROM ({orphans})"),
                        f"every {child}.{column} must exist in {target}",
                    )
                )
    return failures


def timestamps_not_in_future(
    con: duckdb.DuckDBPyConnection, tables: set[str], config: IntegrityConfig
) -> list[ExpectationFailure]:
    limit = (config.now or datetime.now(UTC)) + config.future_tolerance
    failures = []
    for table in sorted(tables & set(CONTRACT)):
        for col in CONTRACT[table].columns:
            if not col.type.equals(TS):
                continue
            bad = f"SELECT {col.name} FROM {table} WHERE {col.name} > $limit"
            n = int(con.execute(f"SELECT count(*) FROM ({bad})", {"limit": limit}).fetchall()[0][0])
            if n:
                sample = con.execute(f"{bad} LIMIT {SAMPLE_ROWS}", {"limit": limit}).fetchall()
                failures.append(
                    ExpectationFailure(
                        table,
                        "timestamps_not_in_future",
                        col.name,
                        f"later than {limit.isoformat()}",
                        n,
                        [_jsonable(r[0]) for r in sample],
                        "no event can happen after the data was extracted",
                    )
                )
    return failures


def orders_within_campaign_window(
    con: duckdb.DuckDBPyConnection, tables: set[str]
) -> list[ExpectationFailure]:
    if not {"orders", "campaigns"} <= tables:
        return []
    bad = (
        "SELECT o.order_id, o.campaign_id, o.ts FROM orders o JOIN campaigns c "
        "USING (campaign_id) WHERE o.ts < c.start_ts OR o.ts >= c.end_ts"
    )
    unknown = (
        "SELECT o.order_id, o.campaign_id FROM orders o ANTI JOIN campaigns c "
        "USING (campaign_id) WHERE o.campaign_id IS NOT NULL"
    )
    failures = []
    if n := _count(con, bad):
        failures.append(
            ExpectationFailure(
                "orders",
                "orders_within_campaign_window",
                "ts",
                None,
                n,
                _sample(con, bad),
                "an order attributed to a campaign happens between its start_ts and end_ts",
            )
        )
    if n := _count(con, unknown):
        failures.append(
            ExpectationFailure(
                "orders",
                "referential_integrity",
                "campaign_id",
                "references campaigns",
                n,
                _sample(con, unknown),
                "every orders.campaign_id must exist in campaigns",
            )
        )
    return failures


def discount_not_above_list_price(
    con: duckdb.DuckDBPyConnection, tables: set[str]
) -> list[ExpectationFailure]:
    if not {"orders", "items"} <= tables:
        return []
    bad = (
        "SELECT o.order_id, o.discount, i.list_price FROM orders o JOIN items i "
        "USING (item_id) WHERE o.discount > i.list_price"
    )
    if n := _count(con, bad):
        return [
            ExpectationFailure(
                "orders",
                "discount_not_above_list_price",
                "discount",
                None,
                n,
                _sample(con, bad),
                "a per-unit discount cannot exceed the item's list price",
            )
        ]
    return []


def freshness(
    con: duckdb.DuckDBPyConnection,
    tables: set[str],
    data_as_of: datetime | None,
    config: IntegrityConfig,
) -> list[ExpectationFailure]:
    """The newest event (or order) must be within ``freshness_max_lag`` of ``data_as_of``."""
    table = "events" if "events" in tables else "orders" if "orders" in tables else None
    if table is None or data_as_of is None:
        return []
    newest = con.execute(f"SELECT max(ts) FROM {table}").fetchall()[0][0]
    if newest is None or newest < data_as_of - config.freshness_max_lag:
        return [
            ExpectationFailure(
                table,
                "freshness",
                "ts",
                f"newest {newest} vs data_as_of {data_as_of.isoformat()}",
                None,
                [],
                f"newest {table}.ts must be within {config.freshness_max_lag} of the "
                "extraction time",
            )
        ]
    return []


def experiment_integrity(
    con: duckdb.DuckDBPyConnection, tables: set[str], config: IntegrityConfig
) -> list[ExpectationFailure]:
    """Sample-ratio mismatch, arms outside the campaign, a user in two arms, late assignment."""
    if not {"assignments", "campaigns"} <= tables:
        return []
    from scipy.stats import chisquare

    failures = []
    outside = (
        "SELECT a.campaign_id, a.arm FROM assignments a JOIN campaigns c USING "
        f"(campaign_id) WHERE a.arm <> '{CONTROL_ARM}' AND "
        "NOT list_contains(c.promo_types, a.arm)"
    )
    if n := _count(con, outside):
        failures.append(
            ExpectationFailure(
                "assignments",
                "arm_in_campaign_promo_types",
                "arm",
                None,
                n,
                _sample(con, f"SELECT DISTINCT campaign_id, arm FROM ({outside})"),
                "an arm is 'control' or one of the campaign's promo_types",
            )
        )
    two_arms = (
        "SELECT campaign_id, user_id FROM assignments GROUP BY ALL HAVING count(DISTINCT arm) > 1"
    )
    if n := _count(con, two_arms):
        failures.append(
            ExpectationFailure(
                "assignments",
                "user_in_one_arm",
                "user_id",
                None,
                n,
                _sample(con, two_arms),
                "a user is in exactly one arm of a campaign",
            )
        )

    has_design = "design" in {r[0] for r in con.execute("DESCRIBE campaigns").fetchall()}
    if has_design and "plan_arm" in {r[0] for r in con.execute("DESCRIBE assignments").fetchall()}:
        # Per-promotion comparisons of a targeted campaign pair treated and control users by
        # the plan's arm: a treated user's must be the promotion received, and only a plan
        # (a targeted campaign) has one.
        plan_arm = f"""
            SELECT a.campaign_id, a.user_id, a.arm, a.plan_arm, c.design
            FROM assignments a JOIN campaigns c USING (campaign_id)
            WHERE a.plan_arm IS NOT NULL AND (
                coalesce(c.design, '') <> '{TARGETED}'
                OR NOT list_contains(c.promo_types, a.plan_arm)
                OR (a.arm <> '{CONTROL_ARM}' AND a.arm <> a.plan_arm))
        """
        if n := _count(con, plan_arm):
            failures.append(
                ExpectationFailure(
                    "assignments",
                    "plan_arm_consistent",
                    "plan_arm",
                    None,
                    n,
                    _sample(con, plan_arm),
                    "plan_arm is set only in a targeted campaign, is one of its promo_types, "
                    "and is the promotion a treated user received",
                )
            )

    rows = con.execute(f"""
        SELECT c.campaign_id, c.holdout_share, c.promo_types,
            {"c.design" if has_design else "NULL"} AS design, a.arm, count(*) AS n
        FROM assignments a JOIN campaigns c USING (campaign_id)
        GROUP BY ALL ORDER BY ALL
    """).fetchall()
    by_campaign: dict[str, tuple[float, list[str], str | None, dict[str, int]]] = {}
    for campaign_id, holdout, promos, design, arm, n in rows:
        by_campaign.setdefault(campaign_id, (holdout, list(promos), design, {}))[3][arm] = int(n)
    for campaign_id, (holdout, promos, design, counts) in by_campaign.items():
        arms = [CONTROL_ARM, *promos]
        if any(a not in arms for a in counts):
            continue  # arms outside the plan are reported above
        if design == TARGETED:
            # A plan chose the promotions; only the holdout among its targets was randomized.
            arms = [CONTROL_ARM, "treated (pooled)"]
            planned = [holdout, 1.0 - holdout]
            treated = sum(n for a, n in counts.items() if a != CONTROL_ARM)
            observed = [counts.get(CONTROL_ARM, 0), treated]
        else:
            planned = [holdout] + [(1.0 - holdout) / len(promos)] * len(promos)
            observed = [counts.get(a, 0) for a in arms]
        total = sum(observed)
        if total == 0:
            continue
        _, p_value = chisquare(observed, [total * p for p in planned])
        if p_value < config.srm_alpha:
            failures.append(
                ExpectationFailure(
                    "assignments",
                    "sample_ratio_mismatch",
                    "arm",
                    {
                        "campaign_id": campaign_id,
                        "observed": dict(zip(arms, observed, strict=True)),
                        "planned_share": dict(zip(arms, planned, strict=True)),
                        "p_value": float(p_value),
                    },
                    None,
                    [],
                    f"chi-square test against the planned split: p < {config.srm_alpha}",
                )
            )

    if "events" in tables:
        late = """
            SELECT a.campaign_id, a.user_id, a.assigned_ts, min(e.ts) AS first_exposure
            FROM assignments a
            JOIN campaigns c USING (campaign_id)
            JOIN events e ON e.user_id = a.user_id AND e.ts >= c.start_ts AND e.ts < c.end_ts
            GROUP BY ALL HAVING a.assigned_ts > min(e.ts)
        """
        if n := _count(con, late):
            failures.append(
                ExpectationFailure(
                    "assignments",
                    "assigned_before_exposure",
                    "assigned_ts",
                    None,
                    n,
                    _sample(con, late),
                    "a user is assigned before their first sale exposure",
                )
            )
    return failures


def run_integrity_checks(
    con: duckdb.DuckDBPyConnection,
    tables: set[str],
    data_as_of: datetime | None,
    config: IntegrityConfig,
) -> list[ExpectationFailure]:
    return [
        *referential_integrity(con, tables),
        *timestamps_not_in_future(con, tables, config),
        *orders_within_campaign_window(con, tables),
        *discount_not_above_list_price(con, tables),
        *freshness(con, tables, data_as_of, config),
        *experiment_integrity(con, tables, config),
    ]
