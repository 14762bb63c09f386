"""Every DAG file imports cleanly, fast, without heavy libraries, and has the expected shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.airflow_env import DAGS_FOLDER, airflow_env, run_python

HEAVY_MODULES = (
    "mlflow",
    "lightgbm",
    "torch",
    "great_expectations",
    "duckdb",
    "sklearn",
    "flashsale_ml.training",
    "flashsale_ml.simulation",
)


@pytest.fixture(scope="module")
def dagbag_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("airflow-home")
    return run_python(
        f"""
        import json, sys, time
        from airflow.configuration import conf
        from airflow.dag_processing.dagbag import DagBag
        started = time.perf_counter()
        bag = DagBag(dag_folder={str(DAGS_FOLDER)!r})
        seconds = time.perf_counter() - started
        per_file = {{s.file: s.duration.total_seconds() for s in bag.dagbag_stats}}
        import_timeout = conf.getfloat("core", "dagbag_import_timeout")
        dags = {{}}
        for dag_id, dag in bag.dags.items():
            dags[dag_id] = {{
                "tasks": {{t.task_id: {{"upstream": sorted(t.upstream_task_ids),
                                        "retries": t.retries,
                                        "is_teardown": t.is_teardown,
                                        "trigger_rule": str(t.trigger_rule)}}
                          for t in dag.tasks}},
                "tags": sorted(dag.tags),
                "catchup": dag.catchup,
                "doc_md": bool(dag.doc_md),
                "start_date_tz": str(dag.start_date.tzinfo) if dag.start_date else None,
                "params": sorted(dag.params.keys()),
            }}
        heavy = sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)
        print(json.dumps({{"errors": {{k: str(v) for k, v in bag.import_errors.items()}},
                          "dags": dags, "seconds": seconds, "per_file": per_file,
                          "import_timeout": import_timeout, "heavy": heavy}}))
        """,
        airflow_env(home),
    )


def test_no_import_errors(dagbag_report: dict) -> None:
    assert dagbag_report["errors"] == {}
    dag_files = {p.stem for p in Path(DAGS_FOLDER).glob("*.py") if not p.name.startswith("_")}
    assert dag_files, "no DAG files found"
    assert len(dagbag_report["dags"]) >= len(dag_files)


def test_parsing_imports_nothing_heavy(dagbag_report: dict) -> None:
    assert dagbag_report["heavy"] == []


# Share of Airflow's per-file import timeout a DAG file may use when parsed here. Parsing takes
# well under a second (it imports nothing heavy); the margin is for a loaded CI machine, so
# this catches a DAG that starts doing real work at import, not normal timing noise.
PARSE_TIMEOUT_SHARE = 0.25


def test_parsing_stays_well_inside_airflow_import_timeout(dagbag_report: dict) -> None:
    """Airflow kills a DAG file import after ``[core] dagbag_import_timeout`` (30 s by default)
    and then shows an import error instead of the DAG. A bound, not a benchmark: each file and
    the whole folder must parse in a quarter of that timeout (7.5 s by default)."""
    limit = PARSE_TIMEOUT_SHARE * dagbag_report["import_timeout"]
    assert limit > 0, "dagbag_import_timeout is disabled; nothing to check against"
    assert dagbag_report["per_file"], "DagBag recorded no per-file parse times"
    slow = {f: s for f, s in dagbag_report["per_file"].items() if s > limit}
    assert slow == {}, f"DAG files parse too slowly for a {limit:.1f} s bound: {slow}"
    assert dagbag_report["seconds"] <= limit, dagbag_report["seconds"]


def test_training_pipeline_graph(dagbag_report: dict) -> None:
    dag = dagbag_report["dags"]["flashsale_training_pipeline"]
    upstream = {task: info["upstream"] for task, info in dag["tasks"].items()}
    assert upstream == {
        "start_pipeline": [],
        "generate_data": ["start_pipeline"],
        "validate_data": ["generate_data", "start_pipeline"],
        "build_features": ["generate_data", "start_pipeline", "validate_data"],
        "train_propensity": ["build_features", "start_pipeline"],
        "register_model": ["train_propensity"],
        "promote_model": ["register_model", "start_pipeline"],
        "train_propensity_deep": ["build_features", "start_pipeline"],
        "finish_pipeline": ["promote_model", "start_pipeline", "train_propensity_deep"],
    }
    # A teardown runs after failures too but does not decide the DAG run's state.
    assert dag["tasks"]["finish_pipeline"]["is_teardown"] is True
    assert dag["params"] == ["days", "deep_epochs", "deep_nproc_per_node", "users"]


def test_every_dag_follows_conventions(dagbag_report: dict) -> None:
    for dag_id, dag in dagbag_report["dags"].items():
        assert dag["catchup"] is False, dag_id
        assert dag["doc_md"], f"{dag_id} has no doc_md"
        assert "flashsale" in dag["tags"], dag_id
        assert dag["start_date_tz"] in {"UTC", "Timezone('UTC')"}, dag_id
        work_tasks = {t: i for t, i in dag["tasks"].items() if t != "finish_pipeline"}
        assert all(info["retries"] >= 1 for info in work_tasks.values()), dag_id


def test_data_errors_fail_the_task_at_once_other_errors_keep_their_retries(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The DAG layer maps the package's DataError to AirflowFailException (no retries)."""
    report = run_python(
        f"""
        import importlib.util, json, sys
        from airflow.sdk.exceptions import AirflowFailException
        from flashsale_ml import steps
        from flashsale_ml.validation import DataValidationError

        spec = importlib.util.spec_from_file_location(
            "pipeline", {str(DAGS_FOLDER / "flashsale_training_pipeline.py")!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)

        def bad_data(*args, **kwargs):
            raise DataValidationError("raw/x", [])

        def outage(*args, **kwargs):
            raise ConnectionError("tracking server did not answer")

        outcome = {{}}
        for name, fake in (("bad_data", bad_data), ("outage", outage)):
            steps.validate_data = fake
            try:
                module._step("validate_data", "raw/x", None)
            except Exception as exc:
                outcome[name] = type(exc).__name__
        print(json.dumps(outcome))
        """,
        airflow_env(tmp_path_factory.mktemp("airflow-home")),
    )
    assert report == {"bad_data": "AirflowFailException", "outage": "ConnectionError"}
