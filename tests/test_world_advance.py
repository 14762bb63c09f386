"""The simulated world answers: `flashsale world advance --to T` extends the newest simulated
snapshot to T and plays every published plan whose sale has ended, with each user responding to
their planned arm with the simulator's true probability. Old data stays as it was, advancing
again writes nothing, the same inputs give the same bytes, a plan still running is not played,
and the played campaign can be evaluated once its outcome window has closed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from flashsale_ml.config import Settings
from flashsale_ml.contract import ARMS, conform
from flashsale_ml.datasets import Snapshot, list_snapshots
from flashsale_ml.errors import DataError
from flashsale_ml.planning.output import publish_plan, read_plan_table
from flashsale_ml.simulation import SimulationConfig, simulate
from flashsale_ml.simulation.advance import advance, load_plans, truth_uri_of
from flashsale_ml.storage import ObjectStore, open_store

pytestmark = pytest.mark.slow

SHOP = SimulationConfig(users=3_000, days=14, seed=5, sale_stock_factor=1000)
AS_OF = SHOP.start + timedelta(days=SHOP.days)  # 2026-01-19
A_START = datetime(2026, 1, 21, 19, tzinfo=UTC)
A_END = A_START + timedelta(hours=2)
B_START = datetime(2026, 1, 24, 18, tzinfo=UTC)
B_END = B_START + timedelta(hours=3)
TO = A_END + timedelta(hours=25)  # the 24 h outcome window of A has closed
LATER = B_END + timedelta(hours=30)
ID_COLUMNS = {"events": ["event_id", "session_id"], "orders": ["order_id"]}


def publish(lake: ObjectStore, campaign_id: str, start: datetime, end: datetime, raw_uri: str):
    """A published plan as planning writes it: spec, chosen depth, the assignments table (every
    account, randomized: 20 % control, the rest split over the three types) and predictions."""
    with Snapshot(raw_uri) as raw:
        users = raw.read_pandas("users")
        items = raw.read_pandas("items")
    rng = np.random.default_rng(int.from_bytes(campaign_id.encode(), "little"))
    user_ids = users["user_id"].to_numpy()
    codes = np.where(rng.random(len(user_ids)) < 0.2, 0, rng.integers(1, 4, len(user_ids)))
    assignments = conform(
        "assignments",
        pa.table(
            {
                "campaign_id": [campaign_id] * len(user_ids),
                "user_id": user_ids,
                "arm": np.asarray(ARMS, dtype=object)[codes],
                "assigned_ts": pa.array([start] * len(user_ids), pa.timestamp("us", tz="UTC")),
            }
        ),
    )
    # Deep discounts on the most price-elastic category: a clear true uplift to find.
    skus = [int(i) for i in items.loc[items["category"] == "electronics", "item_id"][:10]]
    spec = {
        "campaign_id": campaign_id,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "skus": skus,
        "promotions": {"pct_discount": 4.0, "gift_with_purchase": 6.0, "timed_coupon": 3.0},
        "discount_depths": [0.3, 0.6],
        "budget": 5_000.0,
        "holdout_fraction": 0.2,
    }
    promos = np.asarray(ARMS[1:], dtype=object)
    predictions = pa.table(
        {
            "user_id": np.repeat(user_ids, len(promos)),
            "arm": np.tile(promos, len(user_ids)),
            "p_control": np.full(len(user_ids) * len(promos), 0.05),
            "incremental_probability": np.full(len(user_ids) * len(promos), 0.01),
        }
    )
    document = {
        "campaign_id": campaign_id,
        "spec": spec,
        "summary": {"discount_depth": 0.6},
        "models": {"propensity": "flashsale-propensity/1", "uplift": "flashsale-uplift/1"},
    }
    tables = {"assignments": assignments, "predictions": predictions}
    return publish_plan(lake.uri(f"plans/{campaign_id}"), tables, "# plan", document, {})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from flashsale_ml import steps

    work = tmp_path_factory.mktemp("world")
    settings = Settings(
        home=work,
        storage_root=(work / "lake").as_uri(),
        mlflow_tracking_uri=f"sqlite:///{work}/m.db",
        threads=2,
        validation_gx_max_rows=0,
    )
    lake = open_store(settings.lake_uri)
    shop = simulate(SHOP, lake)
    plan_a = publish(lake, "fs-a", A_START, A_END, shop.raw_uri)
    publish(lake, "fs-b", B_START, B_END, shop.raw_uri)
    result = steps.advance_world(TO, settings=settings)
    return {
        "settings": settings,
        "lake": lake,
        "work": work,
        "old_raw": shop.raw_uri,
        "old_truth": shop.truth_uri,
        "plan_a": plan_a,
        "result": result,
    }


@pytest.fixture(scope="module")
def advanced_again(world: dict) -> dict:
    """The CLI, as a person runs it, past the end of plan B."""
    settings = world["settings"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_")},
        "FLASHSALE_HOME": str(settings.home),
        "FLASHSALE_STORAGE_ROOT": settings.lake_uri,
        "FLASHSALE_MLFLOW_TRACKING_URI": settings.tracking_uri,
    }
    done = subprocess.run(
        [sys.executable, "-m", "flashsale_ml.cli", "world", "advance", "--to", LATER.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def bought(raw_uri: str, campaign_id: str) -> set[int]:
    with Snapshot(raw_uri) as raw:
        orders = raw.read_pandas("orders")
    return set(orders.loc[orders["campaign_id"] == campaign_id, "user_id"])


def test_a_plan_whose_sale_ended_is_played_with_its_campaign_and_assignments(world: dict) -> None:
    result = world["result"]
    assert result["changed"] and result["played"] == ["fs-a"]
    assert result["pending"] == ["fs-b"] and result["missed"] == []
    assert result["evaluable_campaigns"] == ["fs-a"]  # its outcome window closed by TO
    assert result["previous_raw_uri"] == world["old_raw"]
    assert result["data_as_of"] == TO.isoformat()
    with Snapshot(result["raw_uri"]) as raw:
        assert raw.manifest.metadata["data_as_of"] == TO.isoformat()
        campaigns = raw.read_pandas("campaigns").set_index("campaign_id")
        assignments = raw.read_table("assignments")
        items = raw.read_pandas("items")
    assert "fs-b" not in campaigns.index  # its window had not ended
    row = campaigns.loc["fs-a"]
    assert row["start_ts"] == A_START and row["end_ts"] == A_END
    skus = items.loc[items["category"] == "electronics", "item_id"][:10]
    assert sorted(row["item_ids"]) == sorted(skus)
    assert list(row["promo_types"]) == ["pct_discount", "gift_with_purchase", "timed_coupon"]
    assert (row["discount_depth"], row["budget"], row["holdout_share"]) == (0.6, 5_000.0, 0.2)

    # The plan's assignments, exactly.
    planned = read_plan_table(world["plan_a"], "assignments").to_pandas()
    played = assignments.filter(pc.equal(assignments["campaign_id"], "fs-a")).to_pandas()
    assert played.reset_index(drop=True).equals(planned.reset_index(drop=True))

    # People bought, and every order of the sale lies in its window at the sale's prices.
    buyers = bought(result["raw_uri"], "fs-a")
    assert len(buyers) > 150
    with Snapshot(result["raw_uri"]) as raw:
        orders = raw.read_pandas("orders")
    sale = orders[orders["campaign_id"] == "fs-a"]
    assert sale["ts"].between(A_START, A_END, inclusive="left").all()
    assert sale["item_id"].isin(skus).all()
    assert (sale["discount"] > 0).all()

    # Ground truth for exactly the assigned users.
    with Snapshot(result["truth_uri"]) as truth:
        sale_truth = truth.read_pandas("sale_truth")
    mine = sale_truth[sale_truth["campaign_id"] == "fs-a"]
    assert sorted(mine["user_id"]) == sorted(planned["user_id"])
    assert (mine.set_index("user_id")["arm"] == planned.set_index("user_id")["arm"]).all()


def test_users_respond_to_their_planned_arm_with_the_true_probability(world: dict) -> None:
    result = world["result"]
    with Snapshot(result["truth_uri"]) as truth:
        sale_truth = truth.read_pandas("sale_truth")
    users = sale_truth[(sale_truth["campaign_id"] == "fs-a") & ~sale_truth["is_bot"]].copy()
    users["bought"] = users["user_id"].isin(bought(result["raw_uri"], "fs-a"))
    for arm in ARMS:
        p = users.loc[users["arm"] == arm, "p_assigned"]
        assert np.allclose(p, users.loc[users["arm"] == arm, f"p_{arm}"])
        realized = users.loc[users["arm"] == arm, "bought"]
        se = np.sqrt((p * (1 - p)).sum()) / len(p)
        assert abs(realized.mean() - p.mean()) < 4 * se, arm
    # pct_discount has a clearly positive true uplift here: its users buy more than control.
    rate = users.groupby("arm")["bought"].agg(["mean", "size"])
    assert users.loc[users["arm"] == "pct_discount", "uplift_pct_discount"].mean() > 0.03
    diff = rate.loc["pct_discount", "mean"] - rate.loc["control", "mean"]
    se = np.sqrt(sum(r["mean"] * (1 - r["mean"]) / r["size"] for _, r in rate.iterrows()))
    assert diff > 3 * se, rate
    treated = users[users["arm"] != "control"]
    assert treated["bought"].mean() > rate.loc["control", "mean"]


def test_old_data_is_unchanged(world: dict) -> None:
    new_raw = world["result"]["raw_uri"]
    with Snapshot(world["old_raw"]) as old, Snapshot(new_raw) as new:
        assert old.tables == new.tables
        for table in old.tables:
            before, after = old.read_table(table), new.read_table(table)
            assert after.num_rows >= before.num_rows, table
            assert after.slice(0, before.num_rows).equals(before), table
            if table in ("events", "orders"):  # their part files are carried over as they were
                old_entry, new_entry = old.manifest.tables[table], new.manifest.tables[table]
                for key in old_entry.files:
                    assert new_entry.sha256[key] == old_entry.sha256[key], key
        assert new.read_table("users").num_rows > old.read_table("users").num_rows  # signups
        events = new.read_pandas("events")
        assert events["ts"].max() < TO and events["event_id"].is_unique
        assert (events["ts"] >= AS_OF).sum() > 10_000  # ordinary activity went on
        traffic = new.read_pandas("traffic")
        assert traffic["ts"].is_unique and traffic["ts"].is_monotonic_increasing
        assert traffic["ts"].iloc[-1] == TO - timedelta(minutes=1)
    with Snapshot(world["old_truth"]) as old, Snapshot(world["result"]["truth_uri"]) as new:
        for table in ("sale_truth", "demand_truth"):
            before, after = old.read_table(table), new.read_table(table)
            assert after.slice(0, before.num_rows).equals(before), table
        before, after = old.read_pandas("users_truth"), new.read_pandas("users_truth")
        head = after.iloc[: len(before)]
        assert head.drop(columns="churn_ts").equals(before.drop(columns="churn_ts"))
        # The same latent churn times: users seen to churn before stay churned at that time.
        churned = before["churn_ts"].notna()
        assert (head.loc[churned, "churn_ts"] == before.loc[churned, "churn_ts"]).all()
        assert head["churn_ts"].notna().sum() > churned.sum()


def test_point_in_time_features_of_old_campaigns_do_not_change(world: dict) -> None:
    from flashsale_ml.features.snapshot import build_features

    with Snapshot(world["old_raw"]) as old:
        first = old.read_pandas("campaigns")["start_ts"].min().to_pydatetime()
    built = [
        build_features(uri, world["lake"], as_of=first, threads=2)
        for uri in (world["old_raw"], world["result"]["raw_uri"])
    ]
    with Snapshot(built[0]) as before, Snapshot(built[1]) as after:
        assert before.tables == after.tables
        for table in before.tables:
            assert before.read_table(table).equals(after.read_table(table)), table


def test_advancing_again_writes_nothing(world: dict) -> None:
    from flashsale_ml import steps

    lake, settings = world["lake"], world["settings"]
    snapshots = list_snapshots(lake, "raw")
    for to in (TO, TO - timedelta(days=1)):
        again = steps.advance_world(to, settings=settings)
        assert not again["changed"] and again["played"] == []
        assert again["evaluable_campaigns"] == ["fs-a"]  # a re-run announces the same
        assert again["raw_uri"] == world["result"]["raw_uri"]
    assert list_snapshots(lake, "raw") == snapshots


def test_the_same_inputs_give_the_same_bytes(world: dict, tmp_path: Path) -> None:
    lake = world["lake"]
    results = [
        advance(world["old_raw"], TO, load_plans(lake), open_store((tmp_path / n).as_uri()))
        for n in ("one", "two")
    ]
    uris = [(r.raw_uri, r.truth_uri) for r in results]
    uris.append((world["result"]["raw_uri"], world["result"]["truth_uri"]))
    digests = []
    for raw_uri, truth_uri in uris:
        with Snapshot(raw_uri) as raw, Snapshot(truth_uri) as truth:
            digests.append(
                {
                    f"{s.manifest.dataset}/{t}": e.sha256
                    for s in (raw, truth)
                    for t, e in s.manifest.tables.items()
                }
            )
    assert digests[0] == digests[1] == digests[2]


def test_a_running_plan_is_refused_and_a_pending_one_is_played_once_it_ended(
    world: dict, advanced_again: dict, tmp_path: Path
) -> None:
    lake = world["lake"]
    # Advancing into the middle of a sale would cut it in half.
    with pytest.raises(DataError, match="fs-b runs from"):
        advance(world["result"]["raw_uri"], B_START + timedelta(hours=1), load_plans(lake))
    # The CLI went on past its end: now it is played, and fs-a is not played twice.
    assert advanced_again["changed"] and advanced_again["played"] == ["fs-b"]
    assert advanced_again["evaluable_campaigns"] == ["fs-b"]
    assert advanced_again["previous_raw_uri"] == world["result"]["raw_uri"]
    with Snapshot(advanced_again["raw_uri"]) as raw:
        ids = raw.read_pandas("campaigns")["campaign_id"].tolist()
    assert ids.count("fs-a") == 1 and ids.count("fs-b") == 1
    assert bought(advanced_again["raw_uri"], "fs-b")

    # Two steps or one: the same world. Ids count what was written in order, so they differ,
    # but a session cut by the first step keeps its id in the second.
    direct = advance(world["old_raw"], LATER, load_plans(lake), open_store(tmp_path.as_uri()))
    chained = advanced_again["raw_uri"]
    with Snapshot(direct.raw_uri) as one, Snapshot(chained) as two:
        for table in one.tables:
            a, b = (s.read_table(table).drop_columns(ID_COLUMNS.get(table, [])) for s in (one, two))
            keys = [
                (c, "ascending") for c in a.column_names if c not in ("item_ids", "promo_types")
            ]
            assert a.sort_by(keys).equals(b.sort_by(keys)), table
        sessions = [s.read_pandas("events", ["session_id", "user_id"]) for s in (one, two)]
        assert sessions[0]["session_id"].nunique() == sessions[1]["session_id"].nunique()
        assert (sessions[1].groupby("session_id")["user_id"].nunique() == 1).all()
    with Snapshot(direct.truth_uri) as one, Snapshot(truth_uri_of(chained)) as two:
        for table in one.tables:
            assert one.read_table(table).equals(two.read_table(table)), table


def test_the_played_campaign_is_evaluated_once_its_outcome_window_closed(
    world: dict, tmp_path: Path
) -> None:
    from flashsale_ml import steps
    from flashsale_ml.evaluation.integrity import EvaluationIntegrityError

    settings = world["settings"]
    early = advance(
        world["old_raw"],
        A_END + timedelta(hours=1),
        load_plans(world["lake"]),
        open_store(tmp_path.as_uri()),
    )
    assert early.played == ("fs-a",)
    with pytest.raises(EvaluationIntegrityError, match="outcome window"):
        steps.evaluate_campaign("fs-a", early.raw_uri, settings=settings)

    evaluation = steps.evaluate_campaign("fs-a", world["result"]["raw_uri"], settings=settings)
    assert evaluation["srm_p_value"] > 0.001
    assert any("pct_discount" in line for line in evaluation["headline"])
    validation = steps.validate_data(world["result"]["raw_uri"], settings=settings)
    assert validation["success"], validation


def test_the_cli_refuses_a_time_without_zone() -> None:
    from flashsale_ml.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["world", "advance", "--to", "2026-02-15T12:00:00"])
    assert exit_info.value.code == 2


def test_the_world_advances_on_s3(s3_lake: ObjectStore) -> None:
    shop = simulate(SimulationConfig(users=400, days=14, seed=9, chunk_users=1_000), s3_lake)
    publish(s3_lake, "fs-s3", A_START, A_END, shop.raw_uri)
    result = advance(shop.raw_uri, TO, load_plans(s3_lake))
    assert result.played == ("fs-s3",) and result.raw_uri.startswith("s3://")
    assert result.truth_uri == truth_uri_of(result.raw_uri)
    with Snapshot(result.raw_uri) as raw:
        assert "fs-s3" in raw.read_pandas("campaigns")["campaign_id"].tolist()
        assert raw.manifest.metadata["data_as_of"] == TO.isoformat()
    with Snapshot(result.truth_uri) as truth:
        assert (truth.read_pandas("sale_truth")["campaign_id"] == "fs-s3").sum() == 400
    assert not advance(result.raw_uri, TO, load_plans(s3_lake, exclude={"fs-s3"})).changed
