"""The simulated world's step: move it forward in time, playing the published campaign plans, so
the whole loop (plan, sale, outcomes, evaluation, retraining) runs without a real shop.

See :mod:`flashsale_ml.simulation.advance` and ``docs/simulation-world.md``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from flashsale_ml.config import Settings, get_settings
from flashsale_ml.tracking import TAG_PREFIX

log = logging.getLogger(__name__)

RAW_DATASET = "raw"


def newest_simulated_raw(settings: Settings | None = None) -> str:
    """The newest committed raw snapshot the simulator wrote (the world's present).

    Raises:
        DataError: the lake holds no simulated raw snapshot.
    """
    from flashsale_ml.datasets import Snapshot, list_snapshots
    from flashsale_ml.errors import DataError
    from flashsale_ml.simulation.advance import is_simulated
    from flashsale_ml.storage import open_store

    settings = settings or get_settings()
    snapshots = list_snapshots(open_store(settings.lake_uri), RAW_DATASET)
    for uri in reversed(snapshots):
        with Snapshot(uri) as snapshot:
            if is_simulated(snapshot.manifest.metadata):
                if uri != snapshots[-1]:
                    log.warning(
                        "the newest raw snapshot %s is not simulated; advancing the newest "
                        "simulated one, %s",
                        snapshots[-1],
                        uri,
                    )
                return uri
    raise DataError(
        f"{settings.lake_uri} holds no simulated raw snapshot to advance; run "
        "`flashsale simulate` first"
    )


def evaluable_campaigns(raw_uri: str, outcome_window_hours: float) -> list[str]:
    """The played plans whose outcome window (end + ``outcome_window_hours``) closed with this
    snapshot: after its parent's ``data_as_of``, by its own. The same list for the same
    snapshot, so a re-run announces the same outcomes."""
    from datetime import timedelta

    from flashsale_ml.datasets import Snapshot

    with Snapshot(raw_uri) as raw:
        world = raw.manifest.metadata.get("world") or {}
        as_of = datetime.fromisoformat(raw.manifest.metadata["data_as_of"])
        played = set(world.get("played_total") or [])
        if not played:
            return []
        before = datetime.fromisoformat(world["advanced_from_as_of"])
        campaigns = raw.read_pandas("campaigns", ["campaign_id", "end_ts"])
    window = timedelta(hours=outcome_window_hours)
    return sorted(
        str(row.campaign_id)
        for row in campaigns.itertuples()
        if row.campaign_id in played and before < row.end_ts.to_pydatetime() + window <= as_of
    )


def advance_world(
    to: datetime, settings: Settings | None = None, parent_run_id: str | None = None
) -> dict[str, Any]:
    """Advance the simulated world to ``to``: ordinary activity, and every published plan
    (``<lake>/plans/<campaign_id>/``) whose window has ended played with the users' true
    responses. Idempotent: when the newest simulated snapshot already reaches ``to`` with every
    due plan, nothing is written.

    Returns:
        ``raw_uri`` (the newest simulated raw snapshot after the call), ``truth_uri``,
        ``previous_raw_uri``, ``changed``, ``data_as_of``, the campaigns ``played``, those
        ``pending`` (window not over) and ``missed`` (start already past when the plan came),
        ``evaluable_campaigns`` (played plans whose outcome window closed with this snapshot,
        see :func:`evaluable_campaigns`), the rows added per table, and the MLflow run id.

    Raises:
        DataError: no simulated snapshot, a plan that does not fit the world, or ``to``
            inside the window of a plan not yet played.
    """
    from flashsale_ml.config import check_pseudonym_key
    from flashsale_ml.datasets import Snapshot
    from flashsale_ml.simulation.advance import advance, load_plans
    from flashsale_ml.storage import open_store
    from flashsale_ml.tracking import log_json, log_metrics, set_tags, step_run

    settings = settings or get_settings()
    lake = open_store(settings.lake_uri)
    key = check_pseudonym_key(settings, purpose="simulation", lake_uri=settings.lake_uri)
    previous = newest_simulated_raw(settings)
    with Snapshot(previous) as raw:
        played_before = set(raw.read_table("campaigns", ["campaign_id"]).column(0).to_pylist())
    plans = load_plans(lake, exclude=played_before)
    result = advance(previous, to, plans, lake, pseudonym_key=key)
    summary: dict[str, Any] = {
        "raw_uri": result.raw_uri,
        "truth_uri": result.truth_uri,
        "previous_raw_uri": previous,
        "changed": result.changed,
        "data_as_of": result.data_as_of.isoformat(),
        "played": list(result.played),
        "pending": list(result.pending),
        "missed": list(result.missed),
        "evaluable_campaigns": evaluable_campaigns(
            result.raw_uri, settings.evaluation.outcome_window_hours
        ),
        "new_users": result.new_users,
        "rows_added": result.rows_added,
        "seconds": round(result.seconds, 3),
    }
    tags = {
        f"{TAG_PREFIX}raw_uri": result.raw_uri,
        f"{TAG_PREFIX}previous_raw_uri": previous,
        f"{TAG_PREFIX}data_snapshot_id": result.snapshot_id,
    }
    with step_run(settings, "advance_world", parent_run_id, tags) as run:
        set_tags(
            {
                f"{TAG_PREFIX}world.changed": str(result.changed).lower(),
                f"{TAG_PREFIX}world.played": ",".join(result.played) or "-",
                f"{TAG_PREFIX}world.data_as_of": result.data_as_of.isoformat(),
            }
        )
        log_metrics(
            {
                "changed": float(result.changed),
                "played_campaigns": float(len(result.played)),
                "pending_campaigns": float(len(result.pending)),
                "missed_campaigns": float(len(result.missed)),
                "new_users": float(result.new_users),
                "seconds": result.seconds,
                **{f"rows_added_{k}": float(v) for k, v in result.rows_added.items()},
            }
        )
        log_json(summary, "world/advance.json")
        summary["mlflow_run_id"] = run.info.run_id
    return summary
