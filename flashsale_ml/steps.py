"""One function per pipeline step, each returning a small JSON-able value (URIs, ids, metrics).

These are what Airflow tasks and the ``flashsale`` CLI call. Each step reads settings from the
environment, records what it did on a run nested under the pipeline's MLflow run, and hands the
next step a URI instead of data.
"""

from __future__ import annotations

import logging
from typing import Any

from flashsale_ml.config import Settings, get_settings
from flashsale_ml.tracking import TAG_PREFIX

log = logging.getLogger(__name__)


def start_pipeline(
    name: str, tags: dict[str, str] | None = None, settings: Settings | None = None
) -> str:
    """Open the MLflow parent run of one pipeline execution; returns its run id."""
    from flashsale_ml.tracking import start_pipeline_run

    return start_pipeline_run(settings or get_settings(), name, tags)


def finish_pipeline(
    parent_run_id: str, status: str = "FINISHED", settings: Settings | None = None
) -> None:
    from flashsale_ml.tracking import finish_pipeline_run

    finish_pipeline_run(settings or get_settings(), parent_run_id, status)


def generate_data(
    parent_run_id: str | None = None,
    settings: Settings | None = None,
    users: int | None = None,
    days: int | None = None,
) -> str:
    """Simulate a flash-sale dataset into the lake; returns the raw snapshot URI."""
    import mlflow

    from flashsale_ml.config import check_pseudonym_key
    from flashsale_ml.simulation import SimulationConfig, simulate
    from flashsale_ml.storage import open_store
    from flashsale_ml.tracking import log_params_flat, step_run

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
        mlflow.log_metrics(
            {f"rows_{k}": float(v) for k, v in result.rows.items()} | {"seconds": result.seconds}
        )
        mlflow.set_tag(f"{TAG_PREFIX}raw_uri", result.raw_uri)
    return result.raw_uri


def validate_data(
    raw_uri: str, parent_run_id: str | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """Validate every table of a raw snapshot; raises on any failed expectation or check.

    The report (JSON + HTML) and the GX Data Docs are stored next to the data and logged as
    artifacts of the step's MLflow run, with their lake URIs as tags.
    """
    import mlflow

    from flashsale_ml.storage import temporary_scratch
    from flashsale_ml.tracking import step_run
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
            mlflow.set_tag(f"{TAG_PREFIX}validation", "failed")
            mlflow.set_tag(f"{TAG_PREFIX}validation_report_uri", str(exc.report_uri))
            mlflow.log_text(str(exc), "validation/failures.txt")
            if exc.local_dir:
                mlflow.log_artifacts(str(exc.local_dir), "validation")
            raise
        mlflow.set_tag(f"{TAG_PREFIX}validation", "passed")
        mlflow.set_tag(f"{TAG_PREFIX}validation_report_uri", report.report_uri)
        if report.docs_uri:
            mlflow.set_tag(f"{TAG_PREFIX}data_docs_uri", report.docs_uri)
        if report.local_dir:
            mlflow.log_artifacts(str(report.local_dir), "validation")
        if report.drift:
            mlflow.log_metrics({f"psi.{d.feature}": d.psi for d in report.drift})
        summary = report.summary()
        summary["mlflow_run_id"] = run.info.run_id
    return summary


def build_features(
    raw_uri: str, parent_run_id: str | None = None, settings: Settings | None = None
) -> str:
    """Point-in-time features for every campaign; returns the feature snapshot URI."""
    import mlflow

    from flashsale_ml.datasets import Snapshot
    from flashsale_ml.features import build_features as build_feature_snapshot
    from flashsale_ml.storage import open_store
    from flashsale_ml.tracking import step_run

    settings = settings or get_settings()
    with step_run(settings, "build_features", parent_run_id, {f"{TAG_PREFIX}raw_uri": raw_uri}):
        uri = build_feature_snapshot(
            raw_uri,
            open_store(settings.lake_uri),
            memory_limit=settings.duckdb_memory_limit,
            threads=settings.compute_threads,
        )
        with Snapshot(uri) as snapshot:
            mlflow.log_dict(snapshot.manifest.metadata, "features/manifest_metadata.json")
            mlflow.log_metrics(
                {
                    f"rows_{name}": float(entry.rows)
                    for name, entry in snapshot.manifest.tables.items()
                }
            )
        mlflow.set_tag(f"{TAG_PREFIX}feature_snapshot_uri", uri)
    return uri


def train_propensity(
    features_uri: str, parent_run_id: str | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """Train the LightGBM propensity model; returns its run id, model URI and test metrics."""
    from flashsale_ml.training.pipeline import train_propensity_lgbm_step

    return train_propensity_lgbm_step(
        features_uri, settings or get_settings(), parent_run_id
    ).summary()


def train_propensity_deep(
    features_uri: str,
    parent_run_id: str | None = None,
    settings: Settings | None = None,
    nproc_per_node: int = 2,
    nnodes: int = 1,
    epochs: int | None = None,
    max_restarts: int = 3,
) -> dict[str, Any]:
    """Train the DCN-v2 propensity model with DDP under torchrun (gloo on CPU, NCCL on GPU)."""
    from flashsale_ml.training.deep.launch import Launch
    from flashsale_ml.training.deep.launch import train_propensity_deep as launch
    from flashsale_ml.training.deep.model import DeepConfig

    config = DeepConfig(epochs=epochs) if epochs else DeepConfig()
    return launch(
        features_uri,
        settings or get_settings(),
        parent_run_id,
        config,
        Launch(nproc_per_node=nproc_per_node, nnodes=nnodes, max_restarts=max_restarts),
    )


def register_model(
    run_id: str, model_kind: str = "propensity", settings: Settings | None = None
) -> dict[str, Any]:
    """Register the run's model as a new version with the ``challenger`` alias."""
    from flashsale_ml.registry import register_from_run

    return register_from_run(run_id, model_kind, settings or get_settings()).summary()


def promote_model(
    version: str,
    model_kind: str = "propensity",
    parent_run_id: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Judge a registered version against the champion on the newest holdout; apply the result.

    The decision (promote or not, with every gate's reason) is logged as a ``promote_model``
    run and as tags on the version; only a passing challenger moves ``champion``.
    """
    from flashsale_ml.promote import promote_version

    return promote_version(
        settings or get_settings(), model_kind, version, parent_run_id=parent_run_id
    )
