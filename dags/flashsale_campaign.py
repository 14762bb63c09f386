"""
### Flash-sale campaign: plan, approve, publish

A campaign manager starts a campaign here with **Trigger**: the form asks for the campaign's
window, the SKUs on sale, which promotion types are allowed and what one redemption of each
costs, the budget, the holdout and who to exclude.

1. **check_form**: the form's cross-field rules (end after start, a holdout in (0, 0.5], known
   promotion types...) fail this task at once with a readable message, and nothing runs.
2. **find_data**, **validate_data**: the newest shop snapshot, validated as for training.
3. **build_features**, **score_with_champions**, **forecast_demand**, **plan_campaign**:
   every account's point-in-time features as of the start; the champions (by alias) score
   them; each user gets at most one promotion (or none) to maximise expected incremental
   margin within the budget, with a randomized holdout per value segment and an exploration
   share. The demand champion forecasts each SKU's P10/P50/P90 at every candidate depth: the
   plan recommends a depth per SKU and the stock to hold at the service level. The plan is
   written as a *draft* and logged to MLflow (the task's Details → Extra Links → "MLflow run",
   and its log).
4. **approve_plan**: a person reads the plan's summary and approves or rejects it under
   **Browse → Required Actions**. Reject skips publishing; no answer before the timeout
   (`FLASHSALE_APPROVAL_TIMEOUT_HOURS`, 24) counts as Reject. The form's *Approve
   automatically* skips this (for demos), and the log says so.
5. **publish_plan**: the approved draft becomes `<lake>/plans/<campaign>`, atomically, and an
   Asset event (`flashsale_campaign_published`) announces it.

Every task is idempotent: triggering the same campaign again replaces its draft and its
published plan with the same bytes, never a second copy. Data and form errors fail at once;
storage and tracking hiccups are retried with exponential back-off.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param, dag, get_current_context, task
from flashsale_dag_support import CAMPAIGN_PUBLISHED, DEFAULT_ARGS, link_mlflow_run, step

PROMOTION_LABELS = {
    "pct_discount": "Extra % discount",
    "gift_with_purchase": "Gift with purchase",
    "timed_coupon": "Time-limited coupon",
}
APPROVAL_TIMEOUT_HOURS = float(os.environ.get("FLASHSALE_APPROVAL_TIMEOUT_HOURS", "24"))
DEFAULT_START = "2026-02-14T19:00:00+00:00"
DEFAULT_END = "2026-02-14T21:00:00+00:00"


def _cost(promo: str, default: float) -> Param:
    return Param(
        default,
        type="number",
        minimum=0,
        title=f"{PROMOTION_LABELS[promo]}: cost per redemption",
        description="What one redemption costs the shop (coupon value, the gift's cost).",
        section="Promotions",
    )


@dag(
    dag_id="flashsale_campaign",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=4,
    default_args=DEFAULT_ARGS,
    tags=["flashsale", "campaign"],
    doc_md=__doc__,
    params={
        "campaign_id": Param(
            "fs-20260214-valentine",
            type="string",
            pattern=r"^[A-Za-z0-9_.\-]+$",
            minLength=1,
            maxLength=100,
            title="Campaign id",
            description="Letters, digits, '.', '_' and '-'. Triggering the same id again "
            "replaces its plan.",
            section="Campaign",
        ),
        "start": Param(
            DEFAULT_START,
            type="string",
            format="date-time",
            title="Start (UTC)",
            section="Campaign",
        ),
        "end": Param(
            DEFAULT_END, type="string", format="date-time", title="End (UTC)", section="Campaign"
        ),
        "skus": Param(
            [1000000, 1000001, 1000002, 1000003, 1000004, 1000005, 1000006, 1000007],
            type="array",
            items={"type": "integer"},
            minItems=1,
            title="SKUs on sale",
            description="item_ids of the catalogue, as a JSON list: [1000000, 1000001].",
            section="Campaign",
        ),
        "discount_depths": Param(
            [0.2, 0.3],
            type="array",
            items={"type": "number", "minimum": 0, "exclusiveMaximum": 1},
            minItems=1,
            title="Sale-wide discount depths to compare",
            description="The plan keeps the depth with the highest expected margin "
            "(0.3 = 30 % off).",
            section="Campaign",
        ),
        "promotion_types": Param(
            ["pct_discount", "gift_with_purchase", "timed_coupon"],
            type="array",
            items={"type": "string", "enum": list(PROMOTION_LABELS)},
            # `examples` makes the UI draw a multi-select with the labels below; `items.enum`
            # is what validates.
            examples=list(PROMOTION_LABELS),
            uniqueItems=True,
            minItems=1,
            values_display=PROMOTION_LABELS,
            title="Allowed promotion types",
            description="Each targeted user gets at most one of these, or none.",
            section="Promotions",
        ),
        "pct_discount_unit_cost": _cost("pct_discount", 4.0),
        "gift_with_purchase_unit_cost": _cost("gift_with_purchase", 6.0),
        "timed_coupon_unit_cost": _cost("timed_coupon", 3.0),
        "budget": Param(
            500.0,
            type="number",
            exclusiveMinimum=0,
            title="Incentive budget",
            description="The most the expected incentive spend may be.",
            section="Budget and measurement",
        ),
        "holdout_fraction": Param(
            0.1,
            type="number",
            exclusiveMinimum=0,
            maximum=0.5,
            title="Holdout fraction",
            description="Share of every value segment held out at random to measure the "
            "campaign, in (0, 0.5].",
            section="Budget and measurement",
        ),
        "exploration_share": Param(
            0.1,
            type="number",
            minimum=0,
            exclusiveMaximum=1,
            title="Exploration share",
            description="Share of targeted users given a random promotion type, so future "
            "models keep learning.",
            section="Budget and measurement",
        ),
        "exclude_bots": Param(
            True,
            type="boolean",
            title="Exclude suspected bots",
            description="Accounts on devices shared by more accounts than a household has.",
            section="Exclusions",
        ),
        "excluded_user_ids": Param(
            [],
            type="array",
            items={"type": "integer"},
            title="Excluded user ids",
            description="Pseudonymous ids never to target (staff, complaints, opt-outs).",
            section="Exclusions",
        ),
        "auto_approve": Param(
            False,
            type="boolean",
            title="Approve automatically",
            description="Skip the person's approval (for the demo). The run's log says so.",
            section="Approval",
        ),
    },
)
def flashsale_campaign() -> None:
    @task
    def check_form() -> dict[str, Any]:
        """The form's fields as one checked campaign spec; a bad value fails here, at once."""
        return step("spec_from_form", dict(get_current_context()["params"]))

    @task
    def find_data() -> str:
        return step("latest_raw")

    @task
    def validate_data(raw_uri: str) -> dict[str, Any]:
        return step("validate_data", raw_uri)

    @task
    def build_features(spec: dict[str, Any], raw_uri: str) -> str:
        """Every account's point-in-time features as of the campaign's start."""
        return step("campaign_features", spec, raw_uri, campaign_id=spec["campaign_id"])["work_uri"]

    @task
    def score_with_champions(spec: dict[str, Any], work_uri: str) -> dict[str, str]:
        """The purchase-probability and uplift champions, loaded by alias, score everyone."""
        result = step("score_campaign", spec, work_uri)
        print(f"champions used: {result['models']}")
        return {"work_uri": result["work_uri"], **result["models"]}

    @task
    def forecast_demand(spec: dict[str, Any], work_uri: str) -> dict[str, Any]:
        """The demand champion forecasts every sale SKU at each candidate depth: the plan's
        stock and discount sections (without a champion the plan says it has none)."""
        result = step("forecast_demand", spec, work_uri)
        print(f"demand forecast: {result}")
        return result

    @task
    def plan_campaign(spec: dict[str, Any], scored: dict[str, str]) -> dict[str, Any]:
        """Solve the budgeted assignment into the campaign's draft folder."""
        result = step("draft_from_scores", spec, scored["work_uri"])
        return {**result, "mlflow_run_url": link_mlflow_run(result["mlflow_run_id"])}

    @task.branch
    def route_approval() -> str:
        """A person approves, unless the trigger asked for automatic approval (the demo)."""
        if get_current_context()["params"]["auto_approve"]:
            return "auto_approve"
        return "approve_plan"

    @task
    def auto_approve(planned: dict[str, Any]) -> str:
        print(
            f"plan {planned['plan_uri']} APPROVED AUTOMATICALLY (the run's auto_approve flag); "
            "no person reviewed it"
        )
        return "auto-approved"

    approve_plan = ApprovalOperator(
        task_id="approve_plan",
        subject="Approve campaign {{ params.campaign_id }}?",
        body="{{ ti.xcom_pull(task_ids='plan_campaign')['summary_md'] }}",
        defaults="Reject",
        # Not a form field: Airflow fixes an operator's timeout when the DAG is parsed.
        response_timeout=timedelta(hours=APPROVAL_TIMEOUT_HOURS),
    )

    # Runs after a person's Approve or after the automatic approval; a Reject skips it.
    @task(outlets=[CAMPAIGN_PUBLISHED], trigger_rule="none_failed_min_one_success")
    def publish_plan(planned: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        """The approved draft becomes the published plan, and the Asset event says so."""
        result = step("publish_plan", planned["plan_uri"], spec["campaign_id"])
        get_current_context()["outlet_events"][CAMPAIGN_PUBLISHED].extra = {
            "campaign_id": result["campaign_id"],
            "plan_uri": result["plan_uri"],
        }
        return result

    spec = check_form()
    raw = find_data()
    spec >> raw
    validated = validate_data(raw)
    features = build_features(spec, raw)
    validated >> features
    planned = plan_campaign(spec, score_with_champions(spec, features))
    forecast_demand(spec, features) >> planned
    route = route_approval()
    automatic = auto_approve(planned)
    planned >> route >> [approve_plan, automatic]
    published = publish_plan(planned, spec)
    [approve_plan, automatic] >> published


flashsale_campaign()
