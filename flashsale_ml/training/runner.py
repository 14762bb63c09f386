"""The one training runner every model kind and flavor goes through.

It reads the snapshot's manifest, plans the shared campaign split, opens the step's MLflow
run with the same lineage tags for every flavor (kind, flavor, data and feature snapshots,
fitted and test campaigns, code version and config hash), lets the flavor fit, logs what
the flavor reports (params, per-part metrics, curves, plots, documents) and the model, and
returns a small summary. Flavors never open runs or name tags themselves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flashsale_ml.config import Settings
from flashsale_ml.datasets import Snapshot
from flashsale_ml.models import get_flavor, get_kind
from flashsale_ml.models.base import FitRequest
from flashsale_ml.tracking import (
    TAG_PREFIX,
    log_figures,
    log_json,
    log_metrics_batch,
    log_params_flat,
    log_snapshot_input,
    resumed_run,
    step_run,
)
from flashsale_ml.training.splits import campaign_order, plan_split

log = logging.getLogger(__name__)

MODEL_KIND_TAG = f"{TAG_PREFIX}model_kind"
MODEL_FLAVOR_TAG = f"{TAG_PREFIX}model_flavor"
FITTED_CAMPAIGNS_TAG = f"{TAG_PREFIX}fitted_campaigns"
TEST_CAMPAIGNS_TAG = f"{TAG_PREFIX}test_campaigns"


@dataclass(frozen=True)
class TrainingResult:
    run_id: str
    model_uri: str
    metrics: dict[str, float]
    # Wall seconds per phase (read, fit, evaluate, log): where a slow run spent its time.
    durations: dict[str, float] = field(default_factory=dict)
    # Flavor-specific small values (backend, restarts, ...).
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        return {"run_id": self.run_id, "model_uri": self.model_uri, **self.metrics, **self.extra}


def _require_tables(model_kind, metadata) -> None:
    """Fail at once, naming them, when the raw snapshot behind the features lacks a table the
    kind needs (a shop's own data may map only some tables)."""
    from flashsale_ml.errors import DataError

    raw_uri = metadata.get("input_snapshot")
    if not raw_uri:
        return
    with Snapshot(raw_uri) as raw:
        present = set(raw.tables)
    missing = [t for t in model_kind.required_tables if t not in present]
    if missing:
        raise DataError(
            f"model kind {model_kind.name!r} needs table(s) {missing}, which the snapshot "
            f"{raw_uri} lacks (it has {sorted(present)}); map them in the ingest mapping "
            "(docs/ingest.md) or train another kind"
        )


def train_model(
    kind: str,
    features_uri: str,
    settings: Settings,
    flavor: str | None = None,
    parent_run_id: str | None = None,
    options: Mapping[str, Any] | None = None,
    resume_run_id: str | None = None,
) -> TrainingResult:
    """Train one flavor of one kind on a feature snapshot and log it to MLflow.

    Args:
        kind: the model kind (``propensity``).
        features_uri: the feature snapshot.
        settings: runtime settings.
        flavor: the flavor (default: the kind's default flavor).
        parent_run_id: the pipeline run to nest the step's run under.
        options: flavor options (e.g. ``config``, ``launch``).
        resume_run_id: continue this failed run (same run, same checkpoints) instead of
            opening a new one.

    Returns:
        The run id, model URI, ``test_*`` metrics, phase durations and flavor extras.

    Raises:
        ValueError: unknown kind or flavor. DataError: fewer than two campaigns.
    """
    model_kind = get_kind(kind)
    model_flavor = get_flavor(kind, flavor)
    with Snapshot(features_uri) as snapshot:
        metadata = snapshot.manifest.metadata
        feature_snapshot_id = snapshot.snapshot_id
    _require_tables(model_kind, metadata)
    split = plan_split(campaign_order(metadata))
    tags = {
        MODEL_KIND_TAG: model_kind.name,
        MODEL_FLAVOR_TAG: model_flavor.name,
        f"{TAG_PREFIX}model_library": model_flavor.library,
        f"{TAG_PREFIX}data_snapshot_id": str(metadata.get("input_snapshot_id")),
        f"{TAG_PREFIX}feature_snapshot_uri": features_uri,
        f"{TAG_PREFIX}feature_snapshot_id": feature_snapshot_id,
        TEST_CAMPAIGNS_TAG: ",".join(split.test),
        # What the model was fitted or early-stopped on: promotion never evaluates there.
        FITTED_CAMPAIGNS_TAG: ",".join(split.fitted_campaigns),
    }
    run_context = (
        resumed_run(settings, resume_run_id)
        if resume_run_id
        else step_run(settings, model_flavor.step_name, parent_run_id, tags)
    )
    with run_context as run:
        run_id = run.info.run_id
        if not resume_run_id:
            log_snapshot_input(run_id, features_uri, model_kind.feature_table)
        request = FitRequest(
            kind=model_kind,
            features_uri=features_uri,
            settings=settings,
            split=split,
            run_id=run_id,
            options=dict(options or {}),
            resumed=resume_run_id is not None,
        )
        fitted = model_flavor.fit(request)
        started = time.perf_counter()
        model_uri = model_flavor.log_model(fitted, run_id)
        if not resume_run_id:
            log_params_flat(run_id, fitted.params)
        log_figures(fitted.figures)
        for path, document in fitted.documents.items():
            log_json(document, path)
        durations = dict(fitted.durations)
        durations["log_to_mlflow"] = round(time.perf_counter() - started, 3)
        flat = {
            f"{part}_{name}": value
            for part, values in fitted.metrics.items()
            for name, value in values.items()
        }
        flat |= fitted.extra_metrics
        flat |= {f"duration_{phase}_s": seconds for phase, seconds in durations.items()}
        log_metrics_batch(run_id, flat, history=fitted.history)
    test_metrics = {f"test_{k}": v for k, v in fitted.metrics.get("test", {}).items()}
    return TrainingResult(run_id, model_uri, test_metrics, durations, dict(fitted.summary))
