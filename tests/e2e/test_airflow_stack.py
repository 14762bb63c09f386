"""The real Airflow stack of the end-to-end tests, proven on a tiny DAG with an approval.

``AirflowStack`` runs scheduler, api-server, dag-processor and triggerer as separate processes
(LocalExecutor) on a fresh PostgreSQL database; the tests act only through the REST API, as a
person in the UI would: trigger with the form's payload, answer the Required Action.
"""

from __future__ import annotations

import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flashsale_ml.devstack import (
    AIRFLOW_COMPONENTS,
    HITL_WAITING_STATES,
    AirflowApiError,
    AirflowStack,
    postgres_database_exists,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAG_ID = "stack_probe"
APPROVAL = "approve_plan"
ASSET_NAME = "stack_probe_published"

PROBE_DAG = textwrap.dedent(
    '''
    """prepare -> approve_plan (a person decides) -> publish (writes a file, emits an Asset)."""

    import os
    import re
    from pathlib import Path

    from airflow.providers.standard.operators.hitl import ApprovalOperator
    from airflow.sdk import Asset, Param, dag, get_current_context, task

    PUBLISHED = Asset(name="stack_probe_published", uri="file:///stack-probe/published")


    @dag(
        dag_id="stack_probe",
        schedule=None,
        catchup=False,
        params={"n": Param(3, type="integer", minimum=1, title="How many")},
    )
    def stack_probe():
        @task
        def prepare() -> dict:
            n = get_current_context()["params"]["n"]
            return {"n": n, "double": 2 * n}

        plan = prepare()
        approval = ApprovalOperator(
            task_id="approve_plan",
            subject="Publish the plan of {{ run_id }}?",
            body="## Plan\\n\\n- **n**: {{ params.n }}\\n"
            "- **double**: {{ ti.xcom_pull(task_ids='prepare')['double'] }}",
        )

        @task(outlets=[PUBLISHED])
        def publish(plan: dict) -> str:
            context = get_current_context()
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", context["run_id"]) + ".txt"
            out = Path(os.environ["STACK_PROBE_OUT"]) / name
            out.write_text(str(plan["double"]))
            context["outlet_events"][PUBLISHED].extra = {"double": plan["double"]}
            return str(out)

        plan >> approval >> publish(plan)


    stack_probe()
    '''
)


def _process_group_alive(pgid: int) -> bool:
    """Whether ``ps`` lists a process of group ``pgid`` that is not a zombie (independent of
    ``devstack.live_group_members``, which ``AirflowStack.stop`` waits on)."""
    listed = subprocess.run(
        ["ps", "-e", "-o", "pgid=,stat="], capture_output=True, text=True, check=True
    ).stdout
    return any(
        int(group) == pgid and not state.startswith(("Z", "X"))
        for group, state in (line.split()[:2] for line in listed.splitlines() if line.strip())
    )


@pytest.fixture(scope="module")
def probe_dags(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("probe_dags")
    (folder / "stack_probe.py").write_text(PROBE_DAG)
    return folder


@pytest.fixture
def published(tmp_path: Path) -> Path:
    folder = tmp_path / "published"
    folder.mkdir()
    return folder


@pytest.fixture
def stack(probe_dags: Path, published: Path, tmp_path: Path) -> Iterator[AirflowStack]:
    """One Airflow, on its own database, per test; checked to be gone afterwards."""
    with AirflowStack(tmp_path, probe_dags, env={"STACK_PROBE_OUT": str(published)}) as stack:
        stack.client().wait_for_dag(DAG_ID, timeout=60)
        pgids = [p.pid for p in stack.processes.values()]
        yield stack
    assert not stack.database_exists(), f"database {stack.database_name} left behind"
    assert not [g for g in pgids if _process_group_alive(g)], "Airflow processes left running"


def test_each_stack_runs_on_its_own_database_and_drops_it_on_exit(
    probe_dags: Path, tmp_path: Path
) -> None:
    other = AirflowStack(tmp_path, probe_dags)
    with AirflowStack(tmp_path, probe_dags) as stack:
        assert stack.database_name != other.database_name
        assert stack.database_exists()
        assert stack.sql_alchemy_conn and stack.sql_alchemy_conn.endswith("/" + stack.database_name)
        assert stack.unhealthy(stack.health()) == []
        assert sorted(stack.processes) == sorted(AIRFLOW_COMPONENTS)
        assert all(stack.log_path(c).stat().st_size > 0 for c in AIRFLOW_COMPONENTS)
        # The admin logs in with the generated password; the DAG folder is served.
        assert stack.client().wait_for_dag(DAG_ID, timeout=60)["dag_id"] == DAG_ID
        pgids = [p.pid for p in stack.processes.values()]
        name, server = stack.database_name, stack.server_url
    assert not postgres_database_exists(server, name)
    assert not [g for g in pgids if _process_group_alive(g)]


def test_the_run_waits_for_approval_then_publishes_the_asset(
    stack: AirflowStack, published: Path
) -> None:
    api = stack.client()
    run_id = api.trigger(DAG_ID, {"n": 4})["dag_run_id"]

    action = api.wait_for_action(DAG_ID, run_id, APPROVAL, timeout=90)
    assert action["options"] == ["Approve", "Reject"]
    assert "**double**: 8" in action["body"], action["body"]
    assert api.xcom(DAG_ID, run_id, "prepare") == {"n": 4, "double": 8}

    # Nobody answered yet: the approval keeps waiting and nothing downstream runs.
    time.sleep(3)
    states = api.task_states(DAG_ID, run_id)
    assert states["prepare"] == "success"
    assert states[APPROVAL] in HITL_WAITING_STATES, states
    assert states["publish"] is None, states
    assert api.get_run(DAG_ID, run_id)["state"] == "running"
    assert api.asset_events(name=ASSET_NAME, source_run_id=run_id) == []

    answer = api.approve(DAG_ID, run_id, APPROVAL)
    assert answer["chosen_options"] == ["Approve"]
    assert answer["responded_by"]["name"] == "admin"

    run = api.wait_for_run(DAG_ID, run_id, timeout=90)
    states = api.task_states(DAG_ID, run_id)
    assert run["state"] == "success", api.explain(DAG_ID, run_id)
    assert states == {"prepare": "success", APPROVAL: "success", "publish": "success"}
    assert api.pending_actions(DAG_ID, run_id) == []
    events = api.asset_events(name=ASSET_NAME, source_run_id=run_id)
    assert [(e["source_task_id"], e["extra"]) for e in events] == [("publish", {"double": 8})]
    out = Path(api.xcom(DAG_ID, run_id, "publish"))
    assert out.parent == published and out.read_text() == "8"


def test_a_rejected_run_skips_publishing_without_failing(
    stack: AirflowStack, published: Path
) -> None:
    api = stack.client()
    run_id = api.trigger(DAG_ID, {"n": 5})["dag_run_id"]
    api.wait_for_action(DAG_ID, run_id, APPROVAL, timeout=90)

    answer = api.reject(DAG_ID, run_id, APPROVAL)
    assert answer["chosen_options"] == ["Reject"]
    with pytest.raises(AirflowApiError) as second:
        api.approve(DAG_ID, run_id, APPROVAL)
    assert second.value.status == 409  # a Required Action is answered once

    run = api.wait_for_run(DAG_ID, run_id, timeout=90)
    states = api.task_states(DAG_ID, run_id)
    assert run["state"] == "success", api.explain(DAG_ID, run_id)
    assert states == {"prepare": "success", APPROVAL: "success", "publish": "skipped"}
    assert api.asset_events(name=ASSET_NAME, source_run_id=run_id) == []
    assert list(published.iterdir()) == []
