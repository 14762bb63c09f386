"""
### Flash-sale pre-sale retraining

Keeps the champions fresh. It runs

* **daily** at `FLASHSALE_RETRAIN_HOUR_UTC` (3 by default),
* **before each scheduled campaign**, `FLASHSALE_RETRAIN_HOURS_BEFORE` hours (6) before every
  start on the campaign calendar (`FLASHSALE_CAMPAIGN_CALENDAR`: a JSON or YAML list of UTC
  start times, or of campaign specs; the `PresaleTimetable` of the flashsale plugin), and
* **when new labelled outcomes land** (the Asset `flashsale_labels_written`, emitted by the
  post-campaign evaluation).

On the newest shop data it validates, builds point-in-time features, and retrains every model
kind in parallel (dynamic task mapping over the kinds' branches; the deep flavor runs
DistributedDataParallel under torchrun). Each kind that promotes registers its challenger and
judges it against the champion: a rejected challenger is a decision recorded with its reasons,
not a failed task. One MLflow parent run groups the steps (its link is in the first task's log).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import AssetOrTimeSchedule, dag, get_current_context, task
from flashsale_dag_support import (
    DEFAULT_ARGS,
    LABELS_WRITTEN,
    deep_model_params,
    link_mlflow_run,
    step,
)
from flashsale_timetables import PresaleTimetable, load_calendar

# Light (no LightGBM, torch, DuckDB or MLflow): the kinds' retraining branches.
from flashsale_ml.models import retraining_branches

SCHEDULE = AssetOrTimeSchedule(
    timetable=PresaleTimetable(
        daily_hour=int(os.environ.get("FLASHSALE_RETRAIN_HOUR_UTC", "3")),
        campaign_starts=load_calendar(os.environ.get("FLASHSALE_CAMPAIGN_CALENDAR")),
        hours_before=float(os.environ.get("FLASHSALE_RETRAIN_HOURS_BEFORE", "6")),
    ),
    assets=[LABELS_WRITTEN],
)
BRANCHES = [
    {"task_id": b.task_id, "kind": b.kind, "params": dict(b.params)} for b in retraining_branches()
]


@dag(
    dag_id="flashsale_presale_retrain",
    schedule=SCHEDULE,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["flashsale", "training"],
    doc_md=__doc__,
    params=deep_model_params(epochs=4),
)
def flashsale_presale_retrain() -> None:
    @task
    def start_pipeline() -> str:
        dag_run = get_current_context()["dag_run"]
        run_id = step(
            "start_pipeline",
            name=f"{dag_run.dag_id}/{dag_run.run_id}",
            tags={"airflow.dag_id": dag_run.dag_id, "airflow.run_id": dag_run.run_id},
        )
        link_mlflow_run(run_id)
        return run_id

    @task
    def find_data() -> str:
        return step("latest_raw")

    @task
    def validate_data(raw_uri: str, parent_run_id: str) -> dict[str, Any]:
        return step("validate_data", raw_uri, parent_run_id)

    @task
    def build_features(raw_uri: str, parent_run_id: str) -> str:
        return step("build_features", raw_uri, parent_run_id)

    @task
    def retrain(branch: dict[str, Any], features_uri: str, parent_run_id: str) -> dict[str, Any]:
        """Train one kind's branch; register and judge it where the branch promotes."""
        form = get_current_context()["params"]
        options = {option: form[field] for option, field in branch["params"].items()}
        result = step("retrain_branch", branch["task_id"], features_uri, parent_run_id, **options)
        link_mlflow_run(result["run_id"])
        if result["judged"]:
            verdict = "promoted" if result["promoted"] else "kept the champion"
            print(f"{branch['kind']}: {verdict}; " + "; ".join(result["reasons"]))
        return result

    @task(retries=0)
    def finish_pipeline(parent_run_id: str, outcomes: list[dict[str, Any] | None]) -> str:
        """Close the MLflow parent run, FAILED unless every branch trained."""
        status = "FINISHED" if outcomes and all(outcomes) else "FAILED"
        step("finish_pipeline", parent_run_id, status)
        return status

    parent = start_pipeline()
    raw = find_data()
    validated = validate_data(raw, parent)
    features = build_features(raw, parent)
    validated >> features
    outcomes = retrain.partial(features_uri=features, parent_run_id=parent).expand(branch=BRANCHES)
    finish_pipeline(parent, outcomes).as_teardown(setups=parent)


flashsale_presale_retrain()
