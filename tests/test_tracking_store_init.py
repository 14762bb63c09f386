"""Two pipelines starting together on a fresh SQLite tracking store both succeed.

MLflow creates the schema of an empty SQLite database (tables, then every migration) in
whichever process opens it first, without a lock; two processes racing on a fresh store
crashed with ``table experiments already exists`` or ``duplicate column name``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PIPELINE_START = """
import sys, time
from pathlib import Path
import mlflow  # imported before the barrier, so both processes reach the store together
from flashsale_ml.config import Settings
from flashsale_ml.tracking import finish_pipeline_run, start_pipeline_run
settings = Settings(home=sys.argv[1])
go = Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.002)
run_id = start_pipeline_run(settings, "race")
finish_pipeline_run(settings, run_id)
print(run_id, flush=True)
"""


@pytest.mark.parametrize("attempt", [1, 2])
def test_two_pipelines_on_a_fresh_sqlite_store(tmp_path: Path, attempt: int) -> None:
    import mlflow

    home = tmp_path / "home"  # does not exist yet: the store is created by the racers
    go = tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_")}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", PIPELINE_START, str(home), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        for racer in racers:
            assert racer.stdout.readline().strip() == "ready", racer.stderr.read()[-3000:]
        go.touch()
        results = [racer.communicate(timeout=120) for racer in racers]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
    for racer, (_, err) in zip(racers, results, strict=True):
        assert racer.returncode == 0, err[-3000:]
    run_ids = {out.strip() for out, _ in results}
    assert len(run_ids) == 2

    uri = f"sqlite:///{(home / 'mlflow.db').resolve()}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("flashsale")
    runs = client.search_runs([experiment.experiment_id])
    assert {r.info.run_id for r in runs} == run_ids
    assert {r.info.status for r in runs} == {"FINISHED"}
