"""The three user-facing DAGs (campaign, post-campaign evaluation, pre-sale retraining) and the
simulated world's DAG: their shape, their schedules and Assets, the campaign form, and the
pre-sale timetable. Airflow runs in a subprocess with its own AIRFLOW_HOME."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from flashsale_ml.errors import DataError
from flashsale_ml.steps.planning import spec_from_form
from tests.airflow_env import DAGS_FOLDER, airflow_env, run_python


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("airflow-home")
    calendar = home / "calendar.json"
    calendar.write_text(json.dumps(["2026-03-07T19:00:00Z", {"start": "2026-03-14T19:00:00Z"}]))
    return run_python(
        f"""
        import json, time
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder={str(DAGS_FOLDER)!r})
        per_file = {{s.file.rsplit("/", 1)[-1]: s.duration.total_seconds()
                     for s in bag.dagbag_stats}}
        out = {{"errors": {{k: str(v) for k, v in bag.import_errors.items()}},
               "parse_seconds": per_file, "dags": {{}}}}
        for dag_id, dag in bag.dags.items():
            out["dags"][dag_id] = {{
                "tasks": {{t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks}},
                "operators": {{t.task_id: type(t).__name__ for t in dag.tasks}},
                "outlets": {{t.task_id: [getattr(o, "name", str(o)) for o in t.outlets]
                             for t in dag.tasks if t.outlets}},
                "schedule": type(dag.timetable).__name__,
                "timetable_description": getattr(getattr(dag.timetable, "timetable",
                                                         dag.timetable), "description", ""),
                "params": {{k: dag.params[k] for k in dag.params.keys()}},
                "sections": sorted({{p.schema.get("section", "")
                                     for p in dag.params.values()}}),
            }}
        print(json.dumps(out, default=str))
        """,
        airflow_env(home, {"FLASHSALE_CAMPAIGN_CALENDAR": str(calendar)}),
    )


def test_every_dag_file_parses_and_says_how_long_it_took(report: dict) -> None:
    assert report["errors"] == {}
    assert {
        "flashsale_campaign",
        "flashsale_post_campaign_eval",
        "flashsale_presale_retrain",
        "flashsale_world",
    } <= set(report["dags"])
    for name, seconds in sorted(report["parse_seconds"].items()):
        print(f"parse time {name}: {seconds:.3f} s (target <= 1 s)")


def test_campaign_dag_checks_plans_asks_and_publishes(report: dict) -> None:
    dag = report["dags"]["flashsale_campaign"]
    assert dag["tasks"] == {
        "check_form": [],
        "find_data": ["check_form"],
        "validate_data": ["find_data"],
        "build_features": ["check_form", "find_data", "validate_data"],
        "score_with_champions": ["build_features", "check_form"],
        "forecast_demand": ["build_features", "check_form"],
        "plan_campaign": ["check_form", "forecast_demand", "score_with_champions"],
        "route_approval": ["plan_campaign"],
        "approve_plan": ["route_approval"],
        "auto_approve": ["plan_campaign", "route_approval"],
        "publish_plan": ["approve_plan", "auto_approve", "check_form", "plan_campaign"],
    }
    assert dag["operators"]["approve_plan"] == "ApprovalOperator"
    assert dag["outlets"] == {"publish_plan": ["flashsale_campaign_published"]}
    assert {"Campaign", "Promotions", "Budget and measurement", "Exclusions", "Approval"} <= set(
        dag["sections"]
    )


def test_evaluation_runs_on_outcomes_and_retraining_on_labels_or_time(report: dict) -> None:
    evaluation = report["dags"]["flashsale_post_campaign_eval"]
    assert evaluation["schedule"] == "AssetTriggeredTimetable"
    assert evaluation["outlets"] == {"evaluate_campaign": ["flashsale_labels_written"]}
    retrain = report["dags"]["flashsale_presale_retrain"]
    assert retrain["schedule"] == "AssetOrTimeSchedule"
    assert "2 calendar campaign(s)" in retrain["timetable_description"]
    assert retrain["operators"]["retrain"].endswith("MappedOperator")
    assert retrain["tasks"]["retrain"] == ["build_features", "start_pipeline"]
    world = report["dags"]["flashsale_world"]
    assert world["outlets"] == {"advance_world": ["flashsale_outcomes_landed"]}


def test_the_forms_defaults_make_a_valid_spec(report: dict) -> None:
    form = report["dags"]["flashsale_campaign"]["params"]
    spec = spec_from_form(form)
    assert spec["campaign_id"] == form["campaign_id"]
    assert set(spec["promotions"]) == set(form["promotion_types"])
    assert spec["promotions"]["pct_discount"] == form["pct_discount_unit_cost"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"end": "2026-02-14T18:00:00+00:00"}, "is not after start"),
        ({"holdout_fraction": 0.9}, "holdout_fraction"),
        ({"promotion_types": ["free_lunch"]}, "unknown promotion type"),
        ({"budget": 0}, "budget"),
    ],
)
def test_a_bad_form_fails_with_a_readable_message(report: dict, change, words) -> None:
    form = {**report["dags"]["flashsale_campaign"]["params"], **change}
    with pytest.raises(DataError, match="the campaign form is invalid") as caught:
        spec_from_form(form)
    assert words in str(caught.value)


def test_presale_timetable_runs_daily_and_before_each_campaign(tmp_path) -> None:
    result = run_python(
        """
        import json
        from datetime import datetime, UTC
        import pendulum
        from airflow.timetables.base import DataInterval, TimeRestriction
        from flashsale_timetables import PresaleTimetable

        tt = PresaleTimetable(3, ["2026-03-07T19:00:00Z", "2026-03-07T09:00:00+00:00"], 6)
        restriction = TimeRestriction(earliest=pendulum.datetime(2026, 3, 6, 4), latest=None,
                                      catchup=True)
        runs, last = [], None
        for _ in range(5):
            info = tt.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
            runs.append(info.run_after.isoformat())
            last = info.data_interval
        again = PresaleTimetable.deserialize(json.loads(json.dumps(tt.serialize())))
        print(json.dumps({"runs": runs, "roundtrip": again == tt,
                          "description": tt.description}))
        """,
        airflow_env(tmp_path),
    )
    runs = [datetime.fromisoformat(r) for r in result["runs"]]
    assert runs == sorted(runs) and len(set(runs)) == len(runs)
    # The 09:00 campaign's pre-sale time (03:00) coincides with the daily run: one run, not two.
    assert runs[:4] == [
        datetime(2026, 3, 7, 3, tzinfo=UTC),
        datetime(2026, 3, 7, 13, tzinfo=UTC),
        datetime(2026, 3, 8, 3, tzinfo=UTC),
        datetime(2026, 3, 9, 3, tzinfo=UTC),
    ]
    assert result["roundtrip"] is True
    assert "6 h before each of 2 calendar campaign(s)" in result["description"]


def test_form_from_spec_is_the_inverse_of_spec_from_form() -> None:
    from flashsale_ml.planning.spec import parse_spec
    from flashsale_ml.steps.planning import form_from_spec

    spec = {
        "campaign_id": "fs-roundtrip",
        "start": "2026-03-07T19:00:00Z",
        "end": "2026-03-07T21:00:00Z",
        "skus": [3, 1, 2],
        "promotions": {"timed_coupon": 2.5, "gift_with_purchase": 6.0},
        "discount_depths": [0.3, 0.2],
        "budget": 123.0,
        "holdout_fraction": 0.2,
        "exploration_share": 0.05,
        "exclusions": {"user_ids": [9, 7], "bots": False},
    }
    form = form_from_spec(spec, auto_approve=True)
    assert form["auto_approve"] is True
    assert form["promotion_types"] == ["gift_with_purchase", "timed_coupon"]
    assert spec_from_form(form) == parse_spec(spec).model_dump(mode="json")
