"""
### Simulated world: let time pass in the simulated shop

Only for the simulator (the demo and the end-to-end test): there is no real shop to run the
published campaigns. Trigger it with a time; the world plays every published plan whose sale has
ended by then (each assigned user responds to their promotion with the simulator's true
response), adds ordinary shopping up to that time, and commits a new raw snapshot. When a played
campaign's outcome window has closed, the Asset `flashsale_outcomes_landed` says so, and
evaluation follows on its own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from flashsale_dag_support import DEFAULT_ARGS, OUTCOMES_LANDED, step


@dag(
    dag_id="flashsale_world",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["flashsale", "simulation"],
    doc_md=__doc__,
    params={
        "to": Param(
            "2026-02-16T00:00:00+00:00",
            type="string",
            format="date-time",
            title="Advance the world to (UTC)",
            description="Published plans whose sale ends by then are played out.",
        )
    },
)
def flashsale_world() -> None:
    @task(outlets=[OUTCOMES_LANDED])
    def advance_world() -> dict[str, Any]:
        context = get_current_context()
        to = datetime.fromisoformat(context["params"]["to"].replace("Z", "+00:00"))
        result = step("advance_world", to)
        evaluable = result.get("evaluable_campaigns", result.get("campaigns_played", []))
        context["outlet_events"][OUTCOMES_LANDED].extra = {
            "campaign_ids": list(evaluable),
            "raw_uri": result["raw_uri"],
        }
        return result

    advance_world()


flashsale_world()
