"""
### flashsale-ml training pipeline

Generates (or, later, ingests) a flash-sale dataset, validates it against the contract with
Great Expectations, builds point-in-time features as of each sale's start, trains the LightGBM
purchase-propensity model, registers it in the MLflow model registry as the `challenger` and
judges it against the `champion`; in parallel it trains the DCN-v2 deep model with
DistributedDataParallel under torchrun (logged for comparison).

* **Trigger** it from the UI with the *Trigger* button: the form asks for the simulated shop's
  size (users, days of history) and the deep model's processes per node and epochs.
* **Bad data fails at once**: a data-contract failure (validation, a missing snapshot) fails
  its task without retries, and nothing downstream runs; only transient faults (a server
  that does not answer) are retried.
* **Where to look**: every run opens one MLflow parent run (named after the Airflow run id) with
  one nested run per step; the trained model is registered as `flashsale-propensity` with the
  `challenger` alias.
* **Promotion** (`promote_model`): both models are scored on the newest sale, which neither was
  fitted on. The challenger becomes `champion` only if it passed validation and behavioural
  checks and beats the champion by the configured margin with a paired-bootstrap interval that
  excludes zero, without losing calibration or AUC in any value tier. The old champion keeps
  `previous-champion`; `flashsale registry rollback --model <kind>` undoes a promotion.
  The decision and its reasons are on the `promote_model` run and on the version's tags; a
  rejected challenger is not a failed task.
* **Storage**: `FLASHSALE_STORAGE_ROOT` (local folder or `s3://`); tasks pass URIs, never data.

Each task imports `flashsale_ml` inside its body and calls exactly one function of
`flashsale_ml.steps`, so parsing this file stays fast and the logic is testable without Airflow.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from flashsale_dag_support import DEFAULT_ARGS, deep_model_params, step

# Light (no LightGBM, torch, DuckDB or MLflow): the list of model kinds and their branches.
from flashsale_ml.models import training_branches

# The data-error-fails-at-once call and the retry defaults every flashsale DAG shares.
_step = step


@dag(
    dag_id="flashsale_training_pipeline",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["flashsale", "training"],
    doc_md=__doc__,
    params={
        "users": Param(
            5_000,
            type="integer",
            minimum=100,
            maximum=10_000_000,
            title="Simulated users",
            description="Accounts in the simulated shop (5,000 trains in about a minute).",
            section="Simulated shop",
        ),
        "days": Param(
            28,
            type="integer",
            minimum=14,
            maximum=365,
            title="Days of history",
            description="One flash sale per week; the newest sale is the holdout that "
            "decides promotion, so at least two weeks.",
            section="Simulated shop",
        ),
        **deep_model_params(epochs=6),
    },
)
def flashsale_training_pipeline() -> None:
    @task
    def start_pipeline() -> str:
        context = get_current_context()
        dag_run = context["dag_run"]
        return _step(
            "start_pipeline",
            name=f"{dag_run.dag_id}/{dag_run.run_id}",
            tags={"airflow.dag_id": dag_run.dag_id, "airflow.run_id": dag_run.run_id},
        )

    @task
    def generate_data(parent_run_id: str) -> str:
        params = get_current_context()["params"]
        return _step("generate_data", parent_run_id, users=params["users"], days=params["days"])

    @task
    def validate_data(raw_uri: str, parent_run_id: str) -> dict[str, Any]:
        return _step("validate_data", raw_uri, parent_run_id)

    @task
    def build_features(raw_uri: str, parent_run_id: str) -> str:
        return _step("build_features", raw_uri, parent_run_id)

    @task
    def train_branch(
        branch_task_id: str, features_uri: str, parent_run_id: str, form_fields: dict[str, str]
    ) -> dict[str, Any]:
        """Train one branch; ``form_fields`` maps flavor options to this run's form fields
        (``params`` is a name Airflow reserves for the run's params).

        The deep branch runs DCN-v2 with DistributedDataParallel, launched by torchrun from
        inside the task: single node here; multi-node runs use one such task per node (e.g.
        KubernetesPodOperator) with a shared c10d rendezvous endpoint.
        """
        form = get_current_context()["params"]
        options = {option: form[field] for option, field in form_fields.items()}
        return _step("train_branch", branch_task_id, features_uri, parent_run_id, **options)

    @task
    def register_model(training: dict[str, Any], kind: str) -> dict[str, Any]:
        return _step("register_model", training["run_id"], kind)

    @task
    def promote_model(registered: dict[str, Any], kind: str, parent_run_id: str) -> dict[str, Any]:
        """Champion/challenger gates on the newest holdout; moves aliases only on a pass."""
        return _step("promote_model", registered["version"], kind, parent_run_id)

    @task(retries=0)
    def finish_pipeline(parent_run_id: str, outcomes: list[dict[str, Any] | None]) -> str:
        """Close the MLflow parent run, FAILED unless every training branch succeeded.

        A teardown: it runs whatever happened upstream, and (unlike an ``all_done`` leaf) it
        does not turn a failed DAG run green.
        """
        status = "FINISHED" if all(outcomes) else "FAILED"
        _step("finish_pipeline", parent_run_id, status)
        return status

    parent = start_pipeline()
    raw = generate_data(parent)
    validated = validate_data(raw, parent)
    features = build_features(raw, parent)
    validated >> features  # never build features from data that failed validation
    # The training branches come from the model kinds (flashsale_ml.models): the same list
    # `flashsale pipeline` runs. A branch that promotes is registered and judged; the others
    # are trained and logged for comparison.
    outcomes = []
    promoting = [b for b in training_branches() if b.promote]
    for branch in training_branches():
        trained = train_branch.override(task_id=branch.task_id)(
            branch.task_id, features, parent, dict(branch.params)
        )
        if not branch.promote:
            outcomes.append(trained)
            continue
        suffix = "" if len(promoting) == 1 else f"_{branch.task_id}"
        registered = register_model.override(task_id=f"register_model{suffix}")(
            trained, branch.kind
        )
        outcomes.append(
            promote_model.override(task_id=f"promote_model{suffix}")(
                registered, branch.kind, parent
            )
        )
    finish_pipeline(parent, outcomes).as_teardown(setups=parent)


flashsale_training_pipeline()
