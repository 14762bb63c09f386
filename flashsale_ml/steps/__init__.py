"""One function per pipeline step, each returning a small JSON-able value (URIs, ids, metrics).

These are what Airflow tasks and the ``flashsale`` CLI call, organised by workflow:
:mod:`.data` (simulate or ingest, validate, build features), :mod:`.training` (train,
register, promote, and the whole pipeline in-process), :mod:`.planning` (a campaign's plan),
:mod:`.demand` (its stock and discount sections)
and :mod:`.evaluation` (what a campaign caused). Each step reads settings from the
environment unless given some, records what it did on an MLflow run nested under the
pipeline's run, and hands the next step a URI instead of data.
"""

from flashsale_ml.steps.data import build_features, generate_data, validate_data
from flashsale_ml.steps.demand import forecast_demand
from flashsale_ml.steps.evaluation import evaluate_campaign
from flashsale_ml.steps.planning import (
    campaign_features,
    draft_from_scores,
    draft_plan,
    form_from_spec,
    latest_raw,
    plan_campaign,
    plan_from_scores,
    publish_plan,
    score_campaign,
    spec_from_form,
)
from flashsale_ml.steps.training import (
    finish_pipeline,
    promote_model,
    register_model,
    retrain_branch,
    run_pipeline,
    start_pipeline,
    train_branch,
    train_model,
)
from flashsale_ml.steps.world import advance_world

__all__ = [
    "advance_world",
    "build_features",
    "campaign_features",
    "draft_from_scores",
    "draft_plan",
    "evaluate_campaign",
    "finish_pipeline",
    "forecast_demand",
    "form_from_spec",
    "generate_data",
    "latest_raw",
    "plan_campaign",
    "plan_from_scores",
    "promote_model",
    "publish_plan",
    "register_model",
    "retrain_branch",
    "run_pipeline",
    "score_campaign",
    "spec_from_form",
    "start_pipeline",
    "train_branch",
    "train_model",
    "validate_data",
]
