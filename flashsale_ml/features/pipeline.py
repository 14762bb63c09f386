"""Build a feature snapshot from a raw snapshot: the I/O edge around :mod:`.build`."""

from __future__ import annotations

import logging
from datetime import datetime

from flashsale_ml.datasets import Snapshot, SnapshotWriter
from flashsale_ml.features.build import Cutoff, connect, cutoffs_from_campaigns, propensity_features
from flashsale_ml.storage import ObjectStore

log = logging.getLogger(__name__)

SOURCE_TABLES = ("users", "items", "events", "orders", "campaigns", "assignments")


def build_propensity_features(
    raw_uri: str,
    lake: ObjectStore,
    as_of: datetime | None = None,
    memory_limit: str = "4GB",
) -> str:
    """Compute propensity features for every campaign of a raw snapshot (or only the one that
    starts at ``as_of``) and commit them as one ``features-propensity`` snapshot.

    Returns:
        The URI of the committed feature snapshot; one part file per campaign.
    """
    with Snapshot(raw_uri) as raw:
        con = connect({t: raw.local_files(t) for t in SOURCE_TABLES}, memory_limit=memory_limit)
        cutoffs: list[Cutoff] = cutoffs_from_campaigns(con)
        if as_of is not None:
            cutoffs = [c for c in cutoffs if c.as_of == as_of]
            if not cutoffs:
                raise ValueError(f"no campaign of {raw_uri} starts at {as_of.isoformat()}")
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
        with SnapshotWriter(lake, "features-propensity", metadata=metadata) as writer:
            for cutoff in cutoffs:
                table = propensity_features(con, cutoff)
                log.info(
                    "features as of %s (%s): %s rows, positive rate %.4f",
                    cutoff.as_of.isoformat(),
                    cutoff.campaign_id,
                    f"{table.num_rows:,}",
                    _mean(table, "label_purchase"),
                )
                writer.append("propensity", table)
        con.close()
    return writer.uri


def _mean(table, column: str) -> float:
    import pyarrow.compute as pc

    value = pc.mean(table.column(column)).as_py()
    return float(value) if value is not None else float("nan")
