"""Planning end to end on a small simulated shop: the champions (trained, validated and promoted
through the real flow into a local MLflow store) score every account, the plan folder commits,
planning again gives byte-identical files, the MLflow run records campaign and model versions,
and bad specs are refused by the CLI before any model is touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from flashsale_ml.config import Settings
from flashsale_ml.contract import CONTROL_ARM, check_schema
from flashsale_ml.datasets import Snapshot
from flashsale_ml.planning.output import read_plan, read_plan_table
from flashsale_ml.storage import open_store
from tests.shop_helpers import PLANNING_SHOP, shop_with_champions

pytestmark = pytest.mark.slow

SHOP = PLANNING_SHOP
PLAN_FILES = ("targeting.parquet", "assignments.parquet", "predictions.parquet", "summary.md")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:

    work = tmp_path_factory.mktemp("planning")
    settings = Settings(
        home=work,
        storage_root=(work / "lake").as_uri(),
        mlflow_tracking_uri=f"sqlite:///{work}/m.db",
        threads=2,
    )
    made = shop_with_champions(settings, SHOP)
    shop_uri, versions = made["raw_uri"], made["versions"]
    with Snapshot(shop_uri) as raw:
        items = raw.read_pandas("items")
        as_of = raw.manifest.metadata["data_as_of"]
    spec = {
        "campaign_id": "fs-plan-test",
        "start": "2026-02-14T19:00:00Z",
        "end": "2026-02-14T21:00:00Z",
        "skus": [int(i) for i in items["item_id"].head(8)],
        "promotions": {"pct_discount": 4.0, "gift_with_purchase": 6.0, "timed_coupon": 3.0},
        "discount_depths": [0.2, 0.3],
        "budget": 150.0,
        "holdout_fraction": 0.1,
    }
    assert as_of < spec["start"]
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec))
    return {
        "settings": settings,
        "raw_uri": shop_uri,
        "spec": spec,
        "spec_path": spec_path,
        "versions": versions,
        "work": work,
    }


@pytest.fixture(scope="module")
def planned(world: dict) -> dict:
    from flashsale_ml import steps

    return steps.plan_campaign(
        world["spec_path"],
        world["raw_uri"],
        out_uri=(world["work"] / "plan-a").as_uri(),
        settings=world["settings"],
    )


def test_the_plan_holds_the_budget_and_records_what_made_it(world: dict, planned: dict) -> None:
    plan = read_plan(planned["plan_uri"])
    assert planned["expected_spend"] <= world["spec"]["budget"] + 1e-9
    assert planned["expected_spend"] > 0.95 * world["spec"]["budget"]
    assert plan["models"] == {
        kind: f"flashsale-{kind}/{version}" for kind, version in world["versions"].items()
    }
    with Snapshot(world["raw_uri"]) as raw:
        assert plan["data_snapshot_id"] == raw.snapshot_id
    assert plan["spec"]["campaign_id"] == "fs-plan-test"
    lineage = json.loads(
        Path(planned["plan_uri"].removeprefix("file://"), "lineage.json").read_text()
    )
    assert lineage["mlflow_run_id"] == planned["mlflow_run_id"]

    targeting = read_plan_table(planned["plan_uri"], "targeting").to_pandas()
    treated = targeting["role"].isin(["targeted", "exploration"])
    assert targeting.loc[treated, "expected_cost"].sum() == pytest.approx(planned["expected_spend"])
    assert not targeting.loc[targeting["role"] == "excluded_bot", "arm"].notna().any()

    # The assignments are the contract's table, ready for evaluation.
    assignments = read_plan_table(planned["plan_uri"], "assignments")
    assert check_schema("assignments", assignments.schema) == []
    arms = assignments.column("arm").to_pylist()
    assert CONTROL_ARM in arms and len(set(arms)) > 2
    predictions = read_plan_table(planned["plan_uri"], "predictions")
    assert predictions.num_rows == len(targeting) * 3

    import mlflow

    mlflow.set_tracking_uri(world["settings"].tracking_uri)
    run = mlflow.MlflowClient().get_run(planned["mlflow_run_id"])
    assert run.data.tags["flashsale.campaign_id"] == "fs-plan-test"
    assert run.data.tags["flashsale.model.uplift"] == plan["models"]["uplift"]
    assert run.data.metrics["expected_spend"] == pytest.approx(planned["expected_spend"])
    assert "Campaign plan" in planned["summary_md"] and "of the LP bound" in planned["summary_md"]


def test_planning_again_gives_byte_identical_files(world: dict, planned: dict) -> None:
    from flashsale_ml import steps

    again = steps.plan_campaign(
        world["spec_path"],
        world["raw_uri"],
        out_uri=(world["work"] / "plan-b").as_uri(),
        settings=world["settings"],
    )
    first = Path(planned["plan_uri"].removeprefix("file://"))
    second = Path(again["plan_uri"].removeprefix("file://"))
    for name in (*PLAN_FILES, "plan.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    # Into the same folder: replaced, not duplicated.
    steps.plan_campaign(
        world["spec_path"], world["raw_uri"], out_uri=again["plan_uri"], settings=world["settings"]
    )
    assert sorted(p.name for p in second.iterdir()) == sorted(
        (*PLAN_FILES, "plan.json", "lineage.json")
    )
    assert not [p for p in second.parent.iterdir() if p.name.startswith((".staging", ".trash"))]


def test_the_planned_population_reads_only_data_before_the_start(world: dict) -> None:
    """Features of the planned campaign are point-in-time: events appended after the start
    change nothing."""
    import duckdb

    from flashsale_ml.features.sql import connect
    from flashsale_ml.planning.spec import parse_spec
    from flashsale_ml.steps.planning import planned_features

    spec = parse_spec(world["spec"])
    with Snapshot(world["raw_uri"]) as raw:
        tables = {t: raw.local_files(t) for t in raw.tables}
        con = connect(tables)
        before = planned_features(con, spec, 0.3).to_pandas()
        # Append a burst of events at and after the start, for every user.
        later = duckdb.sql(
            "SELECT event_id + 10000000000 AS event_id, user_id, item_id, session_id, "
            "event_type, TIMESTAMPTZ '2026-02-14 19:00:00+00' + INTERVAL 1 MINUTE * (event_id % 90)"
            " AS ts, price, channel, device_id, ip_hash FROM read_parquet($files)",
            params={"files": [str(p) for p in tables["events"]]},
        ).to_arrow_table()
        extra = world["work"] / "later-events.parquet"
        pq.write_table(later, extra)
        con2 = connect({**tables, "events": [*tables["events"], extra]})
        after = planned_features(con2, spec, 0.3).to_pandas()
    features = [c for c in before.columns if not c.startswith("label_")]
    assert len(before) == len(after) > 3_000
    for column in features:
        assert before[column].equals(after[column]), column
    # The arm is unknown (no assignment yet) and the sale features are the spec's.
    assert before["arm"].isna().all()
    assert np.allclose(before["discount_depth"], 0.3)


def run_cli(world: dict, *args: str) -> subprocess.CompletedProcess:
    settings = world["settings"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_")},
        "FLASHSALE_HOME": str(settings.home),
        "FLASHSALE_STORAGE_ROOT": settings.lake_uri,
        "FLASHSALE_MLFLOW_TRACKING_URI": settings.tracking_uri,
    }
    return subprocess.run(
        [sys.executable, "-m", "flashsale_ml.cli", "plan", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"end": "2026-02-14T18:00:00Z"}, "is not after start"),
        (
            {"start": "2026-01-20T19:00:00Z", "end": "2026-01-20T21:00:00Z"},
            "earlier than the data's as-of time",
        ),
        ({"budget": 0}, "budget: the budget must be > 0"),
        ({"promotions": {"free_shipping": 2.0}}, "unknown promotion type(s) ['free_shipping']"),
        ({"skus": [1]}, "unknown SKU(s) 1"),
        ({"holdout_fraction": 0.7}, "holdout_fraction: the holdout fraction must be in (0, 0.5]"),
    ],
)
def test_the_cli_refuses_bad_specs_before_any_work(world: dict, change: dict, words: str) -> None:
    spec = {**world["spec"], **change}
    path = world["work"] / "bad.json"
    path.write_text(json.dumps(spec))
    out = world["work"] / "bad-plan"
    result = run_cli(
        world, "--campaign", str(path), "--data", world["raw_uri"], "--out", out.as_uri()
    )
    assert result.returncode != 0
    assert words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_the_cli_refuses_another_campaign_id(world: dict) -> None:
    out = world["work"] / "other-plan"
    result = run_cli(
        world,
        "--campaign",
        str(world["spec_path"]),
        "--data",
        world["raw_uri"],
        "--out",
        out.as_uri(),
        "--campaign-id",
        "fs-someone-else",
    )
    assert result.returncode != 0
    assert "the spec says 'fs-plan-test' but the call asked for 'fs-someone-else'" in result.stderr
    assert not out.exists()


def test_a_stage_refuses_the_work_of_another_spec(world: dict, planned: dict) -> None:
    """The campaign DAG runs features, scoring and planning as separate tasks over one work
    folder per campaign: a stage never builds on files made for another version of the spec."""
    from flashsale_ml import steps
    from flashsale_ml.errors import DataError

    settings = world["settings"]
    work = steps.campaign_features(world["spec"], world["raw_uri"], settings=settings)
    steps.score_campaign(world["spec"], work["work_uri"], settings=settings)
    changed = {**world["spec"], "budget": 999.0}
    with pytest.raises(DataError, match="made for another version"):
        steps.plan_from_scores(changed, work["work_uri"], settings=settings)
    with pytest.raises(DataError, match=r"has no features\.json"):
        steps.score_campaign(world["spec"], (world["work"] / "empty").as_uri(), settings=settings)


def test_the_published_plan_plays_out_validates_and_is_evaluated(world: dict) -> None:
    """The loop without Airflow: plan → publish → the simulated sale → validation of the new
    data → evaluation of a *targeted* campaign (its holdout tested against the pooled treated
    users) that holds the plan to account → uplift retraining reads the labels."""
    from datetime import datetime, timedelta

    from flashsale_ml import steps
    from flashsale_ml.evaluation.results import LABELS_DATASET

    settings = world["settings"]
    spec = {**world["spec"], "campaign_id": "fs-loop-1", "budget": 400.0}
    draft = steps.draft_plan(spec, world["raw_uri"], settings=settings)
    published = steps.publish_plan(draft["plan_uri"], "fs-loop-1", settings=settings)
    assert read_plan(published["plan_uri"])["files"] == read_plan(draft["plan_uri"])["files"]

    end = datetime.fromisoformat(spec["end"].replace("Z", "+00:00"))
    advanced = steps.advance_world(end + timedelta(hours=25), settings=settings)
    assert advanced["played"] == ["fs-loop-1"] and advanced["evaluable_campaigns"] == ["fs-loop-1"]
    with Snapshot(advanced["raw_uri"]) as raw:
        campaign = raw.read_pandas("campaigns").set_index("campaign_id").loc["fs-loop-1"]
        assigned = raw.read_pandas("assignments")
    assert campaign["design"] == "targeted"
    plan_assignments = read_plan_table(published["plan_uri"], "assignments").to_pandas()
    played = assigned[assigned["campaign_id"] == "fs-loop-1"].sort_values("user_id")
    assert played["arm"].tolist() == plan_assignments.sort_values("user_id")["arm"].tolist()
    # Each control user carries the promotion the plan would have given them (none for those
    # the exploration draw would have made explorers).
    targeting = read_plan_table(published["plan_uri"], "targeting").to_pandas()
    would_get = targeting.set_index("user_id")["arm"]
    control = played[played["arm"] == "control"]
    with_arm = control[control["plan_arm"].notna()]
    assert len(with_arm) > 0.5 * len(control)
    assert (with_arm["plan_arm"].to_numpy() == would_get.loc[with_arm["user_id"]].to_numpy()).all()

    # Raises on any failed check, the per-campaign sample-ratio test among them.
    steps.validate_data(advanced["raw_uri"], settings=settings)
    result = steps.evaluate_campaign("fs-loop-1", advanced["raw_uri"], settings=settings)
    assert result["srm_p_value"] > 1e-3
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    run = mlflow.MlflowClient().get_run(result["mlflow_run_id"])
    predicted = {k: v for k, v in run.data.metrics.items() if k.startswith("plan.predicted_uplift")}
    assert predicted, run.data.metrics.keys()
    # Each promotion is measured on the users the plan meant for it: its treated users against
    # the control users of the same plan arm (explorers left out), in the report's effects and
    # in the plan's accountability alike.
    with Snapshot(result["labels_uri"]) as snapshot:
        labels = snapshot.read_pandas("labels")
    labels["plan_arm"] = labels["user_id"].map(plan_assignments.set_index("user_id")["plan_arm"])
    report = mlflow.artifacts.load_dict(
        f"runs:/{result['mlflow_run_id']}/evaluation/evaluation.json"
    )
    assert any("the control users the plan meant" in note for note in report["notes"]), report[
        "notes"
    ]
    compared = 0
    for arm in sorted(set(labels["arm"]) - {CONTROL_ARM}):
        treated = labels[(labels["arm"] == arm) & (labels["plan_arm"] == arm)]
        control = labels[(labels["arm"] == CONTROL_ARM) & (labels["plan_arm"] == arm)]
        if len(treated) < 2 or len(control) < 2:
            continue
        compared += 1
        realized = treated["sale_conversion"].mean() - control["sale_conversion"].mean()
        assert run.data.metrics[f"plan.realized_uplift.{arm}"] == pytest.approx(realized)
        effect = next(
            e
            for e in report["effects"]
            if (e["metric"], e["arm"], e["segment"]) == ("conversion", arm, "all")
        )
        assert (effect["n_treated"], effect["n_control"]) == (len(treated), len(control))
        assert effect["difference"]["estimate"] == pytest.approx(
            treated["conversion"].mean() - control["conversion"].mean()
        )
    assert compared >= 1
    # The uplift gates would judge a challenger on this campaign per promotion, each against
    # the control users the plan meant for it.
    from flashsale_ml.models import get_kind

    features = steps.build_features(advanced["raw_uri"], settings=settings)
    with Snapshot(features) as snapshot:
        frame = snapshot.read_pandas("propensity")
    selection = get_kind("uplift").select_holdout(frame)
    assert selection.campaign_ids == ("fs-loop-1",)
    for arm, block in selection.rows.groupby("scored_arm"):
        assert set(block["plan_arm"]) == {arm}
        assert set(block["arm"]) <= {arm, "control"}
    # Evaluating again on the same data returns the earlier result, writing nothing new.
    lake = open_store(settings.lake_uri)
    from flashsale_ml.datasets import list_snapshots

    before = list_snapshots(lake, LABELS_DATASET)
    again = steps.evaluate_campaign("fs-loop-1", advanced["raw_uri"], settings=settings)
    assert again["labels_uri"] == result["labels_uri"] and again["already_evaluated"]
    assert list_snapshots(lake, LABELS_DATASET) == before
