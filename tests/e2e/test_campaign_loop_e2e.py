"""The product as its users meet it, end to end: a real Airflow (scheduler, api-server,
dag-processor, triggerer; LocalExecutor on its own PostgreSQL database), a real ``mlflow server``
and the lake in S3 (moto's server), all over HTTP on loopback.

The test acts as the users would, only through the REST API: a campaign manager triggers
``flashsale_campaign`` with the form's payload, a person approves the plan in Required Actions,
the simulated world lets the sale happen; then evaluation and retraining must follow on their
own (Assets). It checks what a user checks: the plan and its budget, the evaluation report,
the retraining's decisions, that triggering again duplicates nothing, and that a bad form
value fails the first task with a readable message.
"""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from flashsale_ml.config import Settings
from flashsale_ml.devstack import AirflowStack, MlflowServer, S3Server
from tests.airflow_env import DAGS_FOLDER, PLUGINS_FOLDER
from tests.shop_helpers import PLANNING_SHOP, shop_with_champions

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CAMPAIGN = "flashsale_campaign"
WORLD = "flashsale_world"
EVALUATION = "flashsale_post_campaign_eval"
RETRAIN = "flashsale_presale_retrain"
# The shop of tests/shop_helpers.py (4,000 users x 35 days): small enough for CI, large
# enough that the S-learner passes the uplift gates.
START = datetime(2026, 2, 14, 19, tzinfo=UTC)  # the data ends 2026-02-09
END = START + timedelta(hours=2)
# Campaigns of the other tests start after whatever time the loop test moves the world to
# (a plan for a start before the data's as-of time is refused, rightly).
LATER = {
    "start": datetime(2026, 3, 7, 19, tzinfo=UTC).isoformat(),
    "end": datetime(2026, 3, 7, 21, tzinfo=UTC).isoformat(),
}


def form(campaign_id: str, **changes) -> dict:
    """The trigger form's payload, as the UI posts it (every field, typed)."""
    from flashsale_ml.steps import form_from_spec

    spec = {
        "campaign_id": campaign_id,
        "start": START.isoformat(),
        "end": END.isoformat(),
        "skus": [1000000 + i for i in range(8)],
        "promotions": {"pct_discount": 4.0, "gift_with_purchase": 6.0, "timed_coupon": 3.0},
        "discount_depths": [0.2, 0.3],
        "budget": 300.0,
    }
    # The changes go into the form as sent, unchecked (a bad form must reach the DAG).
    return {**form_from_spec(spec), **changes}


@pytest.fixture(scope="module")
def loop(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory):
    """Champions trained on a simulated shop in S3, then a real Airflow over the four DAGs."""
    work = tmp_path_factory.mktemp("loop")
    bucket = f"loop-{uuid.uuid4().hex[:8]}"
    s3_server.create_bucket(bucket)
    s3_env = s3_server.client_env()
    key = secrets.token_urlsafe(32)
    with MlflowServer(work, work / "mlflow.db", f"s3://{bucket}/mlflow", env=s3_env) as server:
        env = {
            **s3_env,
            "FLASHSALE_STORAGE_ROOT": f"s3://{bucket}/lake",
            "FLASHSALE_PSEUDONYM_KEY": key,
            "FLASHSALE_MLFLOW_TRACKING_URI": server.url,
            "FLASHSALE_HOME": str(work / "home"),
            "FLASHSALE_TASK_RETRY_DELAY_S": "1",
            "FLASHSALE_THREADS": "2",
        }
        settings = Settings(
            home=work / "home",
            storage_root=env["FLASHSALE_STORAGE_ROOT"],
            mlflow_tracking_uri=server.url,
            pseudonym_key=key,
            threads=2,
        )
        with pytest.MonkeyPatch.context() as patch:
            for name, value in s3_env.items():
                patch.setenv(name, value)
            shop = shop_with_champions(
                settings, PLANNING_SHOP.model_copy(update={"pseudonym_key": key})
            )
            champions = shop["versions"]
            with AirflowStack(work, DAGS_FOLDER, PLUGINS_FOLDER, env=env, parallelism=4) as stack:
                api = stack.client()
                for dag_id in (CAMPAIGN, WORLD, EVALUATION, RETRAIN):
                    api.wait_for_dag(dag_id, timeout=120)
                yield {
                    "api": api,
                    "stack": stack,
                    "settings": settings,
                    "champions": champions,
                    "raw_uri": shop["raw_uri"],
                    "s3_env": s3_env,
                    "patch": patch,
                }


def run_campaign(api, campaign_id: str, approve: bool = True, **changes) -> tuple[str, dict]:
    run_id = api.trigger(CAMPAIGN, form(campaign_id, **changes))["dag_run_id"]
    action = api.wait_for_action(CAMPAIGN, run_id, "approve_plan", timeout=300)
    if approve:
        api.approve(CAMPAIGN, run_id, "approve_plan")
    else:
        api.reject(CAMPAIGN, run_id, "approve_plan")
    run = api.wait_for_run(CAMPAIGN, run_id, timeout=300)
    assert run["state"] == "success", api.explain(CAMPAIGN, run_id)
    return run_id, action


def lake_files(settings: Settings, prefix: str) -> dict[str, bytes]:
    from flashsale_ml.storage import open_store

    store = open_store(settings.lake_uri)
    return {key: store.read_bytes(key) for key in store.list(prefix)}


def new_run(api, dag_id: str, known: set[str], timeout: float = 600) -> dict:
    """Wait for a run of ``dag_id`` that is not in ``known`` (started by an Asset) to end."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fresh = [r for r in api.list_runs(dag_id) if r["dag_run_id"] not in known]
        if fresh:
            return api.wait_for_run(dag_id, fresh[0]["dag_run_id"], timeout=timeout)
        time.sleep(3)
    raise AssertionError(f"no new run of {dag_id} within {timeout} s")


def test_the_loop_closes(loop: dict) -> None:
    """Campaign with a person's approval -> the sale -> evaluation -> retraining."""
    from flashsale_ml.planning.output import read_plan, read_plan_table

    api, settings = loop["api"], loop["settings"]

    # 1. The campaign manager triggers the campaign; a person reads the summary and approves.
    run_id, action = run_campaign(api, "fs-e2e-1")
    assert "Campaign plan `fs-e2e-1`" in action["body"]
    assert "incremental margin" in action["body"] and "of the LP bound" in action["body"]
    states = api.task_states(CAMPAIGN, run_id)
    assert states["publish_plan"] == "success" and states["auto_approve"] == "skipped", states
    plan_uri = f"{settings.lake_uri}/plans/fs-e2e-1"
    plan = read_plan(plan_uri)
    summary = plan["summary"]
    assert 0 < summary["expected_spend"] <= summary["budget"] == 300.0
    assert plan["models"] == {
        kind: f"flashsale-{kind}/{version}" for kind, version in loop["champions"].items()
    }
    assignments = read_plan_table(plan_uri, "assignments").to_pandas()
    assert {"control", "pct_discount"} <= set(assignments["arm"])
    published = api.asset_events(name="flashsale_campaign_published", source_run_id=run_id)
    assert [e["extra"]["campaign_id"] for e in published] == ["fs-e2e-1"]
    # The plan's task links to its MLflow run.
    planned = api.xcom(CAMPAIGN, run_id, "plan_campaign")
    assert planned["mlflow_run_url"].startswith(settings.tracking_uri)
    assert planned["mlflow_run_id"] in planned["mlflow_run_url"]

    # 2. Time passes in the simulated shop: the sale happens, its outcomes land.
    known_eval = {r["dag_run_id"] for r in api.list_runs(EVALUATION)}
    known_retrain = {r["dag_run_id"] for r in api.list_runs(RETRAIN)}
    world = api.trigger(WORLD, {"to": (END + timedelta(hours=25)).isoformat()})["dag_run_id"]
    run = api.wait_for_run(WORLD, world, timeout=300)
    assert run["state"] == "success", api.explain(WORLD, world)
    advanced = api.xcom(WORLD, world, "advance_world")
    assert advanced["played"] == ["fs-e2e-1"]

    # 3. Evaluation runs by itself on the outcomes Asset.
    evaluation = new_run(api, EVALUATION, known_eval)
    assert evaluation["state"] == "success", api.explain(EVALUATION, evaluation["dag_run_id"])
    result = api.get(
        f"/api/v2/dags/{EVALUATION}/dagRuns/{evaluation['dag_run_id']}/taskInstances/"
        "evaluate_campaign/xcomEntries/return_value",
        map_index=0,
    )["value"]
    result = json.loads(result) if isinstance(result, str) else result
    assert result["campaign_id"] == "fs-e2e-1"
    report = lake_files(settings, result["report_uri"].split("/lake/", 1)[1])
    html = next(v for k, v in report.items() if k.endswith("report.html")).decode()
    assert "fs-e2e-1" in html and "pct_discount" in html

    # 4. Retraining runs by itself on the labels Asset and records a decision per kind.
    retrain = new_run(api, RETRAIN, known_retrain, timeout=900)
    assert retrain["state"] == "success", api.explain(RETRAIN, retrain["dag_run_id"])
    states = api.task_states(RETRAIN, retrain["dag_run_id"])
    judged = [t for t in states if t.startswith("retrain")]
    assert len(judged) >= 3 and all(states[t] == "success" for t in judged), states


def test_triggering_again_duplicates_nothing(loop: dict) -> None:
    api, settings = loop["api"], loop["settings"]
    run_campaign(api, "fs-e2e-2", **LATER)
    first = lake_files(settings, "plans/fs-e2e-2/")
    drafts = lake_files(settings, "plan-drafts/fs-e2e-2/")
    run_campaign(api, "fs-e2e-2", **LATER)
    again = lake_files(settings, "plans/fs-e2e-2/")
    assert sorted(again) == sorted(first)
    for key, data in first.items():
        if not key.endswith("lineage.json"):
            assert again[key] == data, key
    assert sorted(lake_files(settings, "plan-drafts/fs-e2e-2/")) == sorted(drafts)


def test_a_rejected_plan_is_not_published(loop: dict) -> None:
    api, settings = loop["api"], loop["settings"]
    run_id, _ = run_campaign(api, "fs-e2e-3", approve=False, **LATER)
    states = api.task_states(CAMPAIGN, run_id)
    assert states["publish_plan"] == "skipped", states
    assert lake_files(settings, "plans/fs-e2e-3/") == {}


def test_a_bad_form_value_fails_the_first_task_readably(loop: dict) -> None:
    api = loop["api"]
    bad = form("fs-e2e-bad", start=LATER["start"], end=(START - timedelta(hours=1)).isoformat())
    run_id = api.trigger(CAMPAIGN, bad)["dag_run_id"]
    run = api.wait_for_run(CAMPAIGN, run_id, timeout=180)
    assert run["state"] == "failed"
    states = api.task_states(CAMPAIGN, run_id)
    assert states["check_form"] == "failed", states
    assert all(s in (None, "upstream_failed") for t, s in states.items() if t != "check_form")
    log = api.task_log(CAMPAIGN, run_id, "check_form")
    assert "the campaign form is invalid" in log and "is not after start" in log, log[-2000:]
    # A form (data) error is not retried.
    tries = {t["task_id"]: t["try_number"] for t in api.task_instances(CAMPAIGN, run_id)}
    assert tries["check_form"] == 1, tries
