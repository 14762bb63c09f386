"""``flashsale demo``: the training DAG run by Airflow against a real MLflow server.

Two things make the demo behave like the real loop rather than a fixed script:

* **The shop moves on.** Each demo after the first simulates the same shop one week further
  (28 days, then 35, 42, ...), so the newest sale is one neither model has seen and a rerun
  shows a real champion/challenger decision instead of an identical model rejected by +0.0000.
* **One scheduler per metadata DB.** When ``make airflow-ui`` is running on the same Airflow
  home, its scheduler would also pick up an ``airflow dags test`` run and execute every task a
  second time; so the demo hands the run to that scheduler (``airflow dags trigger``) and
  follows it. Without a running scheduler it uses ``airflow dags test``, which needs none.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DAG_ID = "flashsale_training_pipeline"
FIRST_DAYS = 28
WEEK_DAYS = 7
TERMINAL_STATES = {"success", "failed"}


class DemoError(RuntimeError):
    """The demo cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class ShopHistory:
    """How many days the demo's shop covers this time, and why."""

    days: int
    previous_days: int | None

    def describe(self) -> str:
        if self.previous_days is None:
            return f"{self.days} days of history (first demo on this lake)"
        return (
            f"{self.days} days of history: the shop moved on a week since the last demo "
            f"({self.previous_days} days), so the newest sale is new to every model"
        )


def next_shop_history(lake_uri: str, users: int, first_days: int) -> ShopHistory:
    """The demo's history length: ``first_days``, then a week more than the last demo's shop.

    Only simulated snapshots of the same shop size count, so an ``ingest`` or a bigger
    ``simulate`` in the same lake does not move the demo's calendar.
    """
    from flashsale_ml.datasets import Snapshot, list_snapshots
    from flashsale_ml.storage import open_store

    for uri in reversed(list_snapshots(open_store(lake_uri), "raw")):
        with Snapshot(uri) as snapshot:
            metadata = snapshot.manifest.metadata
        config = metadata.get("config") or {}
        if metadata.get("generator") == "flashsale_ml.simulation" and config.get("users") == users:
            previous = int(config["days"])
            return ShopHistory(previous + WEEK_DAYS, previous)
    return ShopHistory(first_days, None)


@contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold ``lock_path`` for the whole demo: two demos on one home would race."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DemoError(
                f"another `flashsale demo` is running on this home (lock {lock_path}); "
                "wait for it to finish"
            ) from None
        yield


class AirflowCli:
    """The ``airflow`` command of this environment, with the demo's environment."""

    def __init__(self, executable: str, env: dict[str, str]) -> None:
        self.executable = executable
        self.env = env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.executable, *args], env=self.env, capture_output=True, text=True
        )
        if check and result.returncode != 0:
            raise DemoError(
                f"`airflow {' '.join(args)}` failed ({result.returncode}):\n"
                f"{(result.stderr or result.stdout)[-3000:]}"
            )
        return result

    def json(self, *args: str) -> Any:
        lines = self.run(*args, "-o", "json").stdout.strip().splitlines()
        return json.loads(lines[-1]) if lines else []

    def scheduler_alive(self) -> bool:
        """Is a scheduler heartbeating on this metadata DB (``make airflow-ui``)?"""
        return self.run("jobs", "check", "--job-type", "SchedulerJob", check=False).returncode == 0


def run_on_scheduler(
    airflow: AirflowCli,
    conf: dict[str, Any],
    log_path: Path,
    poll_s: float = 10.0,
    timeout_s: float = 4 * 3600,
) -> str:
    """Trigger the DAG on the running scheduler and follow it; returns the final state.

    Raises:
        DemoError: the scheduler stopped while the run was unfinished, or ``timeout_s`` passed
            (the run goes on in Airflow; the demo stops waiting for it).
    """
    run_id = f"demo__{time.strftime('%Y%m%dT%H%M%S')}"
    deadline = time.monotonic() + 120
    while True:  # the dag processor may not have parsed the DAG yet right after start-up
        unpause = airflow.run("dags", "unpause", DAG_ID, check=False)
        if unpause.returncode == 0:
            break
        if time.monotonic() > deadline:
            raise DemoError(
                f"the running Airflow does not know {DAG_ID}:\n{unpause.stderr[-2000:]}"
            )
        time.sleep(5)
    airflow.run("dags", "trigger", DAG_ID, "--run-id", run_id, "--conf", json.dumps(conf))
    print(f"  triggered run {run_id}; follow it at the Airflow UI", flush=True)
    shown: dict[str, str] = {}
    with log_path.open("w") as log_file:
        give_up = time.monotonic() + timeout_s
        while True:
            time.sleep(poll_s)
            if time.monotonic() > give_up:
                raise DemoError(f"run {run_id} unfinished after {timeout_s:.0f} s; see the UI")
            states = {
                s["task_id"]: s["state"] or "none"
                for s in airflow.json("tasks", "states-for-dag-run", DAG_ID, run_id)
            }
            for task, state in states.items():
                if shown.get(task) != state:
                    line = f"    {task}: {state}"
                    print(line, flush=True)
                    log_file.write(line + "\n")
            shown = states
            runs = [r for r in airflow.json("dags", "list-runs", DAG_ID) if r["run_id"] == run_id]
            if runs and runs[0]["state"] in TERMINAL_STATES:
                return runs[0]["state"]
            if not airflow.scheduler_alive():
                raise DemoError(
                    f"the Airflow scheduler stopped while run {run_id} was unfinished; start "
                    "`make airflow-ui` again and it resumes, or run `make demo` without it"
                )


def run_with_dags_test(airflow: AirflowCli, conf: dict[str, Any], log_path: Path) -> str:
    """Run the DAG in this process tree with ``airflow dags test``; returns the final state."""
    with log_path.open("w") as log_file:
        run = subprocess.run(
            [airflow.executable, "dags", "test", DAG_ID, "-c", json.dumps(conf)],
            env=airflow.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return "success" if run.returncode == 0 else "failed"


def airflow_environment(home: Path, dags_folder: Path, tracking_uri: str) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        # The DAG files import their shared glue from plugins/ (on every component's path).
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(dags_folder.parent / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "FLASHSALE_HOME": str(home),
        "FLASHSALE_MLFLOW_TRACKING_URI": tracking_uri,
    }


# --- The closed loop, after the training DAG ---------------------------------------------------

RETRAIN_DAG = "flashsale_presale_retrain"
CAMPAIGN_DAG = "flashsale_campaign"
WORLD_DAG = "flashsale_world"
EVALUATION_DAG = "flashsale_post_campaign_eval"


def run_dag_test(airflow: AirflowCli, dag_id: str, conf: dict[str, Any], log_path: Path) -> str:
    """``airflow dags test`` of any DAG; returns ``success`` or ``failed``."""
    with log_path.open("w") as log_file:
        run = subprocess.run(
            [airflow.executable, "dags", "test", dag_id, "-c", json.dumps(conf)],
            env=airflow.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return "success" if run.returncode == 0 else "failed"


@dataclass(frozen=True)
class DemoCampaign:
    """The campaign the demo plans: the evening after the data ends, on the first SKUs."""

    campaign_id: str
    form: dict[str, Any]
    outcomes_closed_at: str  # when the sale's outcome window has closed (the world goes there)


def demo_campaign(raw_uri: str, outcome_window_hours: float) -> DemoCampaign:
    from datetime import datetime, timedelta

    from flashsale_ml.datasets import Snapshot
    from flashsale_ml.steps.planning import form_from_spec

    with Snapshot(raw_uri) as raw:
        as_of = datetime.fromisoformat(raw.manifest.metadata["data_as_of"])
        skus = sorted(raw.read_table("items", ["item_id"]).column(0).to_pylist())[:8]
    start = (as_of + timedelta(days=1)).replace(hour=19, minute=0, second=0, microsecond=0)
    end = start + timedelta(hours=2)
    campaign_id = f"demo-{start:%Y%m%d}"
    form = form_from_spec(
        {
            "campaign_id": campaign_id,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "skus": skus,
            # Cheap promotions and a generous budget: a small simulated shop's uplift models
            # predict small effects, and the demo needs a plan with a measurable holdout.
            "promotions": {"pct_discount": 0.5, "gift_with_purchase": 0.8, "timed_coupon": 0.4},
            "discount_depths": [0.2],
            "budget": 2_000.0,
            "holdout_fraction": 0.2,
        },
        auto_approve=True,
    )
    closed = end + timedelta(hours=outcome_window_hours + 1)
    return DemoCampaign(campaign_id, form, closed.isoformat())


def run_loop(
    airflow: AirflowCli, raw_uri: str, home: Path, outcome_window_hours: float
) -> list[str]:
    """Retrain every kind, plan a campaign (approved automatically, and said so), let the
    simulated sale happen, evaluate it, and retrain on its labels: each an ``airflow dags
    test`` of the DAG a scheduler would run. Returns what happened, line by line.

    Raises:
        DemoError: a DAG run failed (its log is named).
    """
    campaign = demo_campaign(raw_uri, outcome_window_hours)
    steps = [
        (RETRAIN_DAG, {"deep_epochs": 1}, "retraining every model kind (uplift too)"),
        (
            CAMPAIGN_DAG,
            campaign.form,
            f"campaign {campaign.campaign_id}: plan APPROVED AUTOMATICALLY (demo flag "
            "auto_approve; in the UI a person approves under Required Actions)",
        ),
        (WORLD_DAG, {"to": campaign.outcomes_closed_at}, "the simulated sale happens"),
        (
            EVALUATION_DAG,
            {"campaign_ids": [campaign.campaign_id]},
            "evaluating what the campaign caused (a scheduler starts this on the outcomes Asset)",
        ),
        (
            RETRAIN_DAG,
            {"deep_epochs": 1},
            "retraining on the campaign's labels (a scheduler starts this on the labels Asset)",
        ),
    ]
    done = []
    for n, (dag_id, conf, what) in enumerate(steps, start=1):
        log_path = home / f"demo-loop-{n}-{dag_id}.log"
        print(f"  loop {n}/{len(steps)}: {what} ({dag_id}, log: {log_path})...", flush=True)
        if run_dag_test(airflow, dag_id, conf, log_path) != "success":
            raise DemoError(f"{dag_id} failed; see {log_path}")
        done.append(f"{dag_id}: {what}")
    return done
