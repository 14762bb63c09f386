"""Run Airflow in a subprocess with its own AIRFLOW_HOME, so its config never leaks into pytest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DAGS_FOLDER = REPO_ROOT / "dags"
PLUGINS_FOLDER = REPO_ROOT / "plugins"
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def airflow_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "FLASHSALE_TASK_RETRY_DELAY_S": "1",
        **(extra or {}),
    }


def run_python(code: str, env: dict[str, str], timeout: int = 300) -> dict:
    """Run ``code`` (which must print one JSON line last) and return that JSON."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"subprocess failed ({result.returncode}):\n{result.stderr[-6000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def airflow_cli(
    args: list[str], env: dict[str, str], timeout: int = 900
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
