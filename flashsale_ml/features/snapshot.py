"""Build a feature snapshot from a raw snapshot: the I/O edge around the feature SQL.

One ``features`` snapshot holds, per cutoff, the tables ``propensity`` (user rows + purchase
and revenue labels), ``items`` (SKU rows + demand label), ``user_category`` and ``traffic``
(per-minute load of the label window). A shop without campaigns (e.g. Online Retail) gets one
cutoff at ``as_of`` with a ``label_window``; a session table (Online Shoppers) gets ``sessions``.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

import pyarrow as pa

from flashsale_ml.contract import SHOP_TABLES, require_tables
from flashsale_ml.datasets import Snapshot, SnapshotWriter
from flashsale_ml.errors import DataError
from flashsale_ml.features.columns import (
    ITEMS_TABLE,
    LABEL,
    PROPENSITY_TABLE,
    SESSIONS_TABLE,
    TRAFFIC_TABLE,
    USER_CATEGORY_TABLE,
)
from flashsale_ml.features.groups import item_features, traffic_window, user_category_affinity
from flashsale_ml.features.sql import (
    Cutoff,
    connect,
    cutoffs_from_campaigns,
    propensity_features,
)
from flashsale_ml.storage import ObjectStore

log = logging.getLogger(__name__)

FEATURE_DATASET = "features"
FEATURE_ROW_GROUP = 1 << 17


def build_features(
    raw_uri: str,
    lake: ObjectStore,
    as_of: datetime | None = None,
    label_window: timedelta = timedelta(hours=2),
    memory_limit: str = "4GB",
    threads: int | None = None,
) -> str:
    """Compute every feature group as of each cutoff and commit one feature snapshot.

    Args:
        raw_uri: the (validated) raw snapshot.
        lake: where to write.
        as_of: only this cutoff. With campaigns it must be a campaign start (the label window
            is the campaign); without campaigns it is any time, with ``label_window``.
        label_window: label window length when there is no campaign to define it.
        memory_limit: DuckDB's memory cap.
        threads: DuckDB's thread count (default: DuckDB's, every core).

    Returns:
        The URI of the committed ``features`` snapshot.
    """
    with Snapshot(raw_uri) as raw:
        if "shopper_sessions" in raw.tables:
            return _build_session_features(raw, lake)
        # Orders stand in for a missing clickstream; users and the catalogue cannot be made up.
        require_tables("building features", raw_uri, raw.tables, ("users", "items", "orders"))
        present = [t for t in SHOP_TABLES if t in raw.tables]
        con = connect(
            {t: raw.local_files(t) for t in present}, memory_limit=memory_limit, threads=threads
        )
        cutoffs = _cutoffs(con, raw_uri, as_of, label_window, has_campaigns="campaigns" in present)
        metadata = {
            "input_snapshot": raw_uri,
            "input_snapshot_id": raw.snapshot_id,
            "cutoffs": [
                {
                    "campaign_id": c.campaign_id,
                    "as_of": c.as_of.isoformat(),
                    "label_end": c.label_end.isoformat(),
                }
                for c in cutoffs
            ],
        }
        groups = [
            (PROPENSITY_TABLE, propensity_features),
            (ITEMS_TABLE, item_features),
            (USER_CATEGORY_TABLE, user_category_affinity),
        ]
        if "traffic" in present:  # the raw table: a shop without traffic gets no such group
            groups.append((TRAFFIC_TABLE, traffic_window))
        # Small row groups let distributed training shard the table by row group.
        with SnapshotWriter(
            lake, FEATURE_DATASET, metadata=metadata, row_group_size=FEATURE_ROW_GROUP
        ) as writer:
            for n, cutoff in enumerate(cutoffs, start=1):
                for name, build in groups:
                    started = time.perf_counter()
                    table = build(con, cutoff)
                    writer.append(name, table)
                    log.info(
                        "cutoff %d/%d %s (%s): %s %s rows in %.1f s%s",
                        n,
                        len(cutoffs),
                        cutoff.as_of.isoformat(),
                        cutoff.campaign_id or "no campaign",
                        f"{table.num_rows:,}",
                        name,
                        time.perf_counter() - started,
                        f", positive rate {_mean(table, LABEL):.4f}"
                        if name == PROPENSITY_TABLE
                        else "",
                    )
        con.close()
    return writer.uri


def _cutoffs(
    con,
    raw_uri: str,
    as_of: datetime | None,
    label_window: timedelta,
    has_campaigns: bool,
) -> list[Cutoff]:
    if has_campaigns:
        all_cutoffs = cutoffs_from_campaigns(con)
        if as_of is None:
            return all_cutoffs
        cutoffs = [c for c in all_cutoffs if c.as_of == as_of]
        if not cutoffs:
            starts = ", ".join(f"{c.as_of:%Y-%m-%dT%H:%M:%SZ}" for c in all_cutoffs)
            raise DataError(
                f"no campaign of {raw_uri} starts at {as_of:%Y-%m-%dT%H:%M:%SZ}; "
                f"--as-of must be one of the campaign starts: {starts or 'none'}"
            )
        return cutoffs
    if as_of is None:
        raise DataError(
            f"{raw_uri} has no campaigns, so there is no sale to build features for: pass "
            "--as-of (a UTC time such as 2026-02-01T19:00:00Z) and --label-window-hours"
        )
    return [Cutoff(None, as_of, as_of + label_window)]


def _build_session_features(raw: Snapshot, lake: ObjectStore) -> str:
    """Online-Shoppers-style sessions: the source columns plus a few ratios."""
    con = connect({"shopper_sessions": raw.local_files("shopper_sessions")})
    table = con.sql("""
        SELECT *,
            administrative + informational + product_related AS total_pages,
            administrative_duration + informational_duration + product_related_duration
                AS total_duration,
            product_related_duration / nullif(administrative_duration + informational_duration
                + product_related_duration, 0) AS product_duration_share,
            (administrative + informational + product_related)
                / nullif((administrative_duration + informational_duration
                          + product_related_duration) / 60.0, 0) AS pages_per_minute,
            (visitor_type = 'Returning_Visitor')::INTEGER AS is_returning
        FROM shopper_sessions ORDER BY session_id
    """).to_arrow_table()
    metadata = {"input_snapshot": raw.uri, "input_snapshot_id": raw.snapshot_id, "cutoffs": []}
    with SnapshotWriter(lake, FEATURE_DATASET, metadata=metadata) as writer:
        writer.append(SESSIONS_TABLE, table)
    con.close()
    return writer.uri


def _mean(table: pa.Table, column: str) -> float:
    import pyarrow.compute as pc

    value = pc.mean(table.column(column)).as_py()
    return float(value) if value is not None else float("nan")
