"""
### Flash-sale post-campaign evaluation

Runs by itself when a campaign's outcomes land in the data (the Asset
`flashsale_outcomes_landed`, emitted when the shop's data, or the simulated world, moves past a
sale and its outcome window). Several events may be folded into one run: every campaign named
by any of them is evaluated, each in its own mapped task.

Per campaign: integrity checks first (sample ratio, one arm per user, nothing before the
assignment, a closed outcome window: a failure here fails that campaign's task at once, with the
table, column and rule), then effects per arm and value tier, the report, and the labels the
next retraining learns from. Each evaluation emits `flashsale_labels_written`, which the
pre-sale retraining listens to. Evaluating a campaign again on the same data returns the
earlier result instead of writing a second copy.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from flashsale_dag_support import (
    DEFAULT_ARGS,
    LABELS_WRITTEN,
    OUTCOMES_LANDED,
    link_mlflow_run,
    step,
)


@dag(
    dag_id="flashsale_post_campaign_eval",
    schedule=[OUTCOMES_LANDED],
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["flashsale", "evaluation"],
    doc_md=__doc__,
    params={
        "campaign_ids": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Campaigns (manual runs only)",
            description="Runs started by the outcomes Asset evaluate what its events name; a "
            "manual run evaluates these campaigns.",
        ),
        "raw_uri": Param(
            None,
            type=["null", "string"],
            title="Raw snapshot (manual runs only)",
            description="Default: the newest raw snapshot of the lake.",
        ),
    },
)
def flashsale_post_campaign_eval() -> None:
    @task
    def campaigns_to_evaluate() -> list[dict[str, str]]:
        """Every (campaign, data) pair the triggering Asset events name, once each."""
        context = get_current_context()
        events = context["triggering_asset_events"]
        pairs: dict[str, dict[str, str]] = {}
        if not events:  # a manual run: the form names the campaigns
            params = context["params"]
            raw_uri = params["raw_uri"] or step("latest_raw")
            return [{"campaign_id": c, "raw_uri": raw_uri} for c in sorted(params["campaign_ids"])]
        for event in events[OUTCOMES_LANDED]:
            extra = event.extra or {}
            for campaign_id in extra.get("campaign_ids", []):
                # A later event about the same campaign carries newer data: it wins.
                pairs[campaign_id] = {"campaign_id": campaign_id, "raw_uri": extra["raw_uri"]}
        print(f"campaigns to evaluate: {sorted(pairs)}")
        return [pairs[c] for c in sorted(pairs)]

    @task(outlets=[LABELS_WRITTEN])
    def evaluate_campaign(target: dict[str, str]) -> dict[str, Any]:
        result = step("evaluate_campaign", target["campaign_id"], target["raw_uri"])
        url = link_mlflow_run(result.get("mlflow_run_id"))
        print(f"report: {result['report_uri']}")
        get_current_context()["outlet_events"][LABELS_WRITTEN].extra = {
            "campaign_id": result["campaign_id"],
            "labels_uri": result["labels_uri"],
        }
        return {
            "campaign_id": result["campaign_id"],
            "labels_uri": result["labels_uri"],
            "report_uri": result["report_uri"],
            "mlflow_run_id": result.get("mlflow_run_id"),
            "mlflow_run_url": url,
        }

    evaluate_campaign.expand(target=campaigns_to_evaluate())


flashsale_post_campaign_eval()
