"""The campaign plan's stock and discount sections: with a demand champion the plan folder gets
``stock.parquet`` (P10/P50/P90 at the plan's depth, the stock at the service level, a depth per
SKU) and the approval text a section; the numbers are the decision functions' on the
champion's forecasts; without a demand champion the plan says it has none."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from flashsale_ml.config import Settings
from flashsale_ml.datasets import Snapshot
from flashsale_ml.planning.output import read_plan, read_plan_table
from tests.shop_helpers import PLANNING_SHOP, shop_with_champions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from flashsale_ml import steps

    work = tmp_path_factory.mktemp("demand-plan")
    settings = Settings(
        home=work,
        storage_root=(work / "lake").as_uri(),
        mlflow_tracking_uri=f"sqlite:///{work}/m.db",
        threads=2,
        # This shop is small: the gates under test here are planning's, not demand's.
        promotion={"demand": {"min_coverage": 0.0, "max_coverage": 1.0, "min_holdout_rows": 1}},
    )
    made = shop_with_champions(settings, PLANNING_SHOP)
    with Snapshot(made["raw_uri"]) as raw:
        items = raw.read_pandas("items")
    spec = {
        "campaign_id": "fs-stock-test",
        "start": "2026-02-14T19:00:00Z",
        "end": "2026-02-14T21:00:00Z",
        "skus": [int(i) for i in items["item_id"].head(12)],
        "promotions": {"pct_discount": 4.0, "gift_with_purchase": 6.0, "timed_coupon": 3.0},
        "discount_depths": [0.1, 0.3, 0.5],
        "budget": 150.0,
        "holdout_fraction": 0.1,
        "service_level": 0.95,
    }
    no_demand = steps.plan_campaign(
        spec, made["raw_uri"], out_uri=(work / "plan-without").as_uri(), settings=settings
    )
    features = steps.build_features(made["raw_uri"], settings=settings)
    trained = steps.train_model(features, "demand", settings=settings)
    registered = steps.register_model(trained["run_id"], settings=settings)
    decision = steps.promote_model(registered["version"], "demand", settings=settings)
    assert decision["promoted"], decision["reasons"]
    # Published where the world finds it (<lake>/plans/<campaign>).
    planned = steps.plan_campaign(spec, made["raw_uri"], settings=settings)
    return {
        "no_demand": no_demand,
        "planned": planned,
        "spec": spec,
        "items": items,
        "settings": settings,
    }


def test_without_a_demand_champion_the_plan_says_so(world: dict) -> None:
    plan = read_plan(world["no_demand"]["plan_uri"])
    assert "stock" not in plan["sections"]
    assert plan["stock"]["available"] is False
    assert "Stock and discount" in world["no_demand"]["summary_md"]
    assert "Not planned" in world["no_demand"]["summary_md"]


def test_the_plan_holds_stock_and_a_depth_per_sku(world: dict) -> None:
    from flashsale_ml.models.demand.decisions import quantile_function

    uri, spec = world["planned"]["plan_uri"], world["spec"]
    plan = read_plan(uri)
    assert plan["sections"]["stock"] == "stock.parquet"
    assert plan["models"]["demand"].startswith("flashsale-demand/")
    stock = read_plan_table(uri, "stock").to_pandas()
    assert sorted(stock["item_id"]) == sorted(spec["skus"])
    depth = plan["summary"]["discount_depth"]
    assert (stock["plan_depth"] == depth).all()
    assert set(stock["recommended_depth"]) <= set(spec["discount_depths"])
    # The stock is the demand distribution's service-level quantile, rounded up to a unit.
    level = quantile_function(
        np.full(len(stock), spec["service_level"]), stock["p10"], stock["p50"], stock["p90"]
    )
    np.testing.assert_array_equal(stock["quantity"], np.ceil(level - 1e-9 * np.abs(level)))
    assert (stock["quantity"] >= stock["p90"].apply(np.floor)).all()
    assert plan["stock"]["stock_to_hold"] == int(stock["quantity"].sum())
    summary = world["planned"]["summary_md"]
    assert "## Stock and discount" in summary and "95% service level" in summary


def test_the_recommended_depth_maximises_expected_margin(world: dict) -> None:
    """Recomputed from the forecasts in the work folder with the decision functions."""
    from flashsale_ml.models.demand.decisions import depth_margins
    from flashsale_ml.storage import open_store

    uri = world["planned"]["plan_uri"]
    plan = read_plan(uri)
    work = open_store(plan["data_uri"].split("/datasets/")[0]).uri(
        f"plan-work/{world['spec']['campaign_id']}"
    )
    import pyarrow as pa
    import pyarrow.parquet as pq

    what_if = pq.read_table(pa.BufferReader(open_store(work).read_bytes("demand.parquet")))
    what_if = what_if.to_pandas()
    items = what_if.drop_duplicates("item_id")[["item_id", "list_price", "cost", "stock_on_hand"]]
    margins = depth_margins(
        what_if[["item_id", "discount_depth", "p10", "p50", "p90"]],
        items.rename(columns={"stock_on_hand": "stock"}),
    )
    best = margins.loc[margins.groupby("item_id")["expected_margin"].idxmax()]
    stock = read_plan_table(uri, "stock").to_pandas().set_index("item_id")
    for row in best.itertuples():
        assert stock.loc[row.item_id, "expected_margin"] == pytest.approx(row.expected_margin)
    # Forecasts never fall as the depth deepens.
    for _, part in what_if.groupby("item_id"):
        assert (part.sort_values("discount_depth")["p50"].diff().dropna() >= 0).all()
    assert json.loads(json.dumps(plan["stock"]))["service_level"] == 0.95
    assert isinstance(what_if, pd.DataFrame)


def test_evaluation_holds_the_forecast_to_account_per_sku(world: dict) -> None:
    """After the sale: forecast against each SKU's sales, with stock-outs marked, beside the
    report, as metrics and as a plot on the evaluation run."""
    from datetime import UTC, datetime

    import mlflow

    from flashsale_ml import steps
    from flashsale_ml.duck import connect
    from flashsale_ml.storage import open_store

    settings, campaign = world["settings"], world["spec"]["campaign_id"]
    advanced = steps.advance_world(datetime(2026, 2, 15, 22, tzinfo=UTC), settings=settings)
    assert campaign in advanced["played"]
    result = steps.evaluate_campaign(campaign, advanced["raw_uri"], settings=settings)
    folder = result["report_uri"].rsplit("/", 1)[0]
    per_sku = pd.read_csv(
        pd.io.common.BytesIO(open_store(folder).read_bytes("demand_vs_forecast.csv"))
    )
    assert sorted(per_sku["item_id"]) == sorted(world["spec"]["skus"])
    with Snapshot(advanced["raw_uri"]) as raw:
        con = connect({t: raw.local_files(t) for t in raw.tables})
        sold = con.execute(
            "SELECT item_id, sum(qty)::DOUBLE AS units FROM orders "
            "WHERE campaign_id = $c AND status <> 'cancelled' GROUP BY item_id",
            {"c": campaign},
        ).df()
        stock = con.execute(
            "SELECT item_id, sold_out_ts IS NOT NULL AS out FROM sale_stock WHERE campaign_id = $c",
            {"c": campaign},
        ).df()
        con.close()
    merged = per_sku.merge(sold, on="item_id", how="left").fillna({"units": 0.0})
    np.testing.assert_allclose(merged["actual_units"], merged["units"])
    merged = per_sku.merge(stock, on="item_id")
    assert (merged["sold_out"] == merged["out"]).all()
    run = mlflow.MlflowClient(settings.mlflow_tracking_uri).get_run(result["mlflow_run_id"])
    assert run.data.metrics["demand.skus"] == len(world["spec"]["skus"])
    if (~per_sku["sold_out"]).any() and per_sku.loc[~per_sku["sold_out"], "actual_units"].sum():
        assert "demand.wape_p50" in run.data.metrics
    artifacts = mlflow.MlflowClient(settings.mlflow_tracking_uri).list_artifacts(
        result["mlflow_run_id"], "plots"
    )
    assert "plots/demand_forecast_vs_sales.png" in {a.path for a in artifacts}
