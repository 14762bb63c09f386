"""What the flashsale DAG files share: the thin call into ``flashsale_ml.steps``, retries, and
the Assets that connect the campaign, evaluation and retraining DAGs.

A plain module in the plugins folder, which Airflow puts on ``sys.path`` of every component
(Airflow 3 no longer puts the dags folder there); ``flashsale_ml`` itself never imports
Airflow, so this glue cannot live in the package.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.sdk import Asset

# A plan was approved and published: the sale can run (extra: campaign_id, plan_uri).
CAMPAIGN_PUBLISHED = Asset(
    name="flashsale_campaign_published", uri="flashsale://campaigns/published"
)
# A campaign's outcomes landed in the data (extra: campaign_ids, raw_uri).
OUTCOMES_LANDED = Asset(name="flashsale_outcomes_landed", uri="flashsale://campaigns/outcomes")
# Evaluation wrote a campaign's labels (extra: campaign_id, labels_uri): retraining listens.
LABELS_WRITTEN = Asset(name="flashsale_labels_written", uri="flashsale://campaigns/labels")


def step(step_name: str, /, *args: Any, **kwargs: Any) -> Any:
    """Call ``flashsale_ml.steps.<step_name>``; a data error fails the task at once, no retries.

    Transient faults (storage, the tracking server) keep the task's retries with exponential
    back-off; retrying bad data or a bad form only delays the red light.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from flashsale_ml import steps
    from flashsale_ml.errors import DataError

    try:
        return getattr(steps, step_name)(*args, **kwargs)
    except DataError as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


# The XCom key of a task's MLflow run URL; the plugin's "MLflow run" button reads it.
MLFLOW_LINK_KEY = "_link_MlflowRunLink"


def link_mlflow_run(run_id: str | None) -> str | None:
    """Print the MLflow UI's page of a run into the task log and store it for the task's
    "MLflow run" button; returns the URL (None where the tracking store is not a server)."""
    if not run_id:
        return None
    from airflow.sdk import get_current_context

    from flashsale_ml.tracking import run_url

    url = run_url(run_id)
    if url is None:
        print(f"MLflow run {run_id} (start the UI with `make mlflow-ui` to browse it)")
        return None
    print(f"MLflow run: {url}")
    get_current_context()["ti"].xcom_push(key=MLFLOW_LINK_KEY, value=url)
    return url


def deep_model_params(epochs: int) -> dict[str, Any]:
    """The form fields of the deep flavor (DCN-v2 under torchrun) that the training branches'
    ``params`` name: the same fields in every DAG that trains it."""
    from airflow.sdk import Param

    section = "Deep model (DCN-v2, DDP)"
    return {
        "deep_nproc_per_node": Param(
            2,
            type="integer",
            minimum=1,
            maximum=64,
            title="Processes per node",
            description="torchrun workers; gloo on CPU, NCCL (one per GPU) on GPU machines.",
            section=section,
        ),
        "deep_epochs": Param(
            epochs,
            type="integer",
            minimum=1,
            maximum=200,
            title="Epochs",
            description="Upper bound; training stops early when validation loss stops "
            "improving and keeps the best epoch.",
            section=section,
        ),
    }


DEFAULT_ARGS = {
    "owner": "flashsale-ml",
    "retries": 2,
    # Overridable so end-to-end tests do not sit out minutes of back-off on a failure.
    "retry_delay": timedelta(seconds=int(os.environ.get("FLASHSALE_TASK_RETRY_DELAY_S", "60"))),
    "retry_exponential_backoff": True,
    "execution_timeout": timedelta(hours=2),
}
