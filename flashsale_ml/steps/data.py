"""Data steps: simulate (or later ingest) a shop, validate it, build point-in-time features.

Each returns a URI or a small summary and records what it did on a run nested under the
pipeline's MLflow run.
"""

from __future__ import annotations

import logging
from typing import Any

from flashsale_ml.config import Settings, get_settings
from flashsale_ml.tracking import TAG_PREFIX

log = logging.getLogger(__name__)


def generate_data(
    parent_run_id: str | None = None,
    settings: Settings | None = None,
    users: int | None = None,
    days: int | None = None,
) -> str:
    """Simulate a flash-sale dataset into the lake; returns the raw snapshot URI."""
    from flashsale_ml.config import check_pseudonym_key
    from flashsale_ml.simulation import SimulationConfig, simulate
    from flashsale_ml.storage import open_store
    from flashsale_ml.tracking import log_metrics, log_params_flat, set_tags, step_run

    settings = settings or get_settings()
    check_pseudonym_key(settings, purpose="simulation", lake_uri=settings.lake_uri)
    config = SimulationConfig(
        # An explicit 0 is a request for nothing and must fail validation, never mean "default".
        users=settings.sim_users if users is None else users,
        days=settings.sim_days if days is None else days,
        items=settings.sim_items,
        seed=settings.seed,
        pseudonym_key=settings.pseudonym_key,
    )
    result = simulate(config, open_store(settings.lake_uri))
    with step_run(
        settings,
        "generate_data",
        parent_run_id,
        {f"{TAG_PREFIX}data_snapshot_id": result.snapshot_id},
    ) as run:
        log_params_flat(
            run.info.run_id,
            {"simulation": config.model_dump(mode="json", exclude={"pseudonym_key"})},
        )
        log_metrics(
            {f"rows_{k}": float(v) for k, v in result.rows.items()} | {"seconds": result.seconds}
        )
        set_tags({f"{TAG_PREFIX}raw_uri": result.raw_uri})
    return result.raw_uri


def validate_data(
    raw_uri: str, parent_run_id: str | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """Validate every table of a raw snapshot; raises on any failed expectation or check.

    The report (JSON + HTML) and the GX Data Docs are stored next to the data and logged as
    artifacts of the step's MLflow run, with their lake URIs as tags.
    """
    from flashsale_ml.storage import temporary_scratch
    from flashsale_ml.tracking import log_artifacts, log_metrics, log_text, set_tags, step_run
    from flashsale_ml.validation import DataValidationError, validate_snapshot

    settings = settings or get_settings()
    with (
        step_run(
            settings, "validate_data", parent_run_id, {f"{TAG_PREFIX}raw_uri": raw_uri}
        ) as run,
        # The report's local copy lives until it is logged, then goes (27 validations used to
        # leave 48 folders behind).
        temporary_scratch("flashsale-validation-") as local_dir,
    ):
        try:
            report = validate_snapshot(raw_uri, settings=settings, local_dir=local_dir)
        except DataValidationError as exc:
            set_tags(
                {
                    f"{TAG_PREFIX}validation": "failed",
                    f"{TAG_PREFIX}validation_report_uri": str(exc.report_uri),
                }
            )
            log_text(str(exc), "validation/failures.txt")
            if exc.local_dir:
                log_artifacts(exc.local_dir, "validation")
            raise
        tags = {
            f"{TAG_PREFIX}validation": "passed",
            f"{TAG_PREFIX}validation_report_uri": report.report_uri,
        }
        if report.docs_uri:
            tags[f"{TAG_PREFIX}data_docs_uri"] = report.docs_uri
        set_tags(tags)
        if report.local_dir:
            log_artifacts(report.local_dir, "validation")
        if report.drift:
            log_metrics({f"psi.{d.feature}": d.psi for d in report.drift})
        summary = report.summary()
        summary["mlflow_run_id"] = run.info.run_id
    return summary


def build_features(
    raw_uri: str, parent_run_id: str | None = None, settings: Settings | None = None
) -> str:
    """Point-in-time features for every campaign; returns the feature snapshot URI."""
    from flashsale_ml.datasets import Snapshot
    from flashsale_ml.features import build_features as build_feature_snapshot
    from flashsale_ml.storage import open_store
    from flashsale_ml.tracking import log_json, log_metrics, set_tags, step_run

    settings = settings or get_settings()
    with step_run(settings, "build_features", parent_run_id, {f"{TAG_PREFIX}raw_uri": raw_uri}):
        uri = build_feature_snapshot(
            raw_uri,
            open_store(settings.lake_uri),
            memory_limit=settings.duckdb_memory_limit,
            threads=settings.compute_threads,
        )
        with Snapshot(uri) as snapshot:
            log_json(snapshot.manifest.metadata, "features/manifest_metadata.json")
            log_metrics(
                {
                    f"rows_{name}": float(entry.rows)
                    for name, entry in snapshot.manifest.tables.items()
                }
            )
        set_tags({f"{TAG_PREFIX}feature_snapshot_uri": uri})
    return uri
