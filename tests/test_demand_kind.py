"""The demand kind on a small simulated shop, where true demand before stock-outs is known:
the inventory's sell-outs reach the labels, the censoring correction brings the target and the
forecast closer to true demand, the quantile model never crosses and never forecasts less at a
deeper discount (and the monotone constraint is what makes it so), and the kind trains,
logs and is promoted through its gates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flashsale_ml.config import Settings
from flashsale_ml.datasets import Snapshot
from flashsale_ml.features import build_features
from flashsale_ml.features.columns import ITEMS_TABLE, SOLD_OUT_LABEL
from flashsale_ml.models.demand.quantile import QuantileConfig, QuantileDemandModel
from flashsale_ml.models.demand.sale import CATEGORICAL_FEATURES, FEATURES, demand_target, sale_rows
from flashsale_ml.simulation import SimulationConfig, simulate
from flashsale_ml.storage import open_store

# 8,000 users x 63 days: nine weekly sales of 40 SKUs; stock is drawn per SKU so some sell out.
SHOP = SimulationConfig(users=8_000, days=63, seed=3)
DEPTHS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("demand")
    lake = open_store((work / "lake").as_uri())
    world = simulate(SHOP, lake)
    features_uri = build_features(world.raw_uri, lake)
    with Snapshot(features_uri) as snapshot:
        rows = sale_rows(snapshot.read_pandas(ITEMS_TABLE))
    with Snapshot(world.truth_uri) as truth:
        demand_truth = truth.read_pandas("demand_truth")
    rows = rows.merge(demand_truth, on=["campaign_id", "item_id"], how="left", validate="1:1")
    settings = Settings(home=work, mlflow_tracking_uri=f"sqlite:///{work}/m.db", threads=2)
    return {
        "rows": rows,
        "features_uri": features_uri,
        "raw_uri": world.raw_uri,
        "settings": settings,
    }


def test_sell_outs_reach_the_labels_exactly(shop: dict) -> None:
    rows = shop["rows"]
    truly_sold_out = rows["sellout_ts"].notna().to_numpy()
    assert 0 < truly_sold_out.sum() < len(rows)
    np.testing.assert_array_equal(rows[SOLD_OUT_LABEL].to_numpy() == 1, truly_sold_out)


def test_censoring_correction_brings_the_target_closer_to_true_demand(shop: dict) -> None:
    rows = shop["rows"]
    truth = rows["true_demand_qty"].to_numpy(dtype=float)
    raw, corrected = demand_target(rows, False), demand_target(rows, True)
    sold_out = rows[SOLD_OUT_LABEL].to_numpy() == 1
    # Sales of sold-out SKUs undercount their demand (the label also counts the few orders
    # outside the sale, so this holds in sum, not per SKU); the correction only raises them.
    assert raw[sold_out].sum() < truth[sold_out].sum()
    assert (corrected >= raw).all() and (corrected[~sold_out] == raw[~sold_out]).all()
    raw_gap = np.abs(raw - truth)[sold_out].sum()
    corrected_gap = np.abs(corrected - truth)[sold_out].sum()
    print(
        f"sold-out SKUs: |sales - demand| {raw_gap:.0f}, |corrected - demand| {corrected_gap:.0f}"
    )
    assert corrected_gap < 0.9 * raw_gap


def _fit(rows: pd.DataFrame, correct: bool, depth_feature: str | None = "discount_depth"):
    return QuantileDemandModel.fit(
        rows,
        demand_target(rows, correct),
        FEATURES,
        CATEGORICAL_FEATURES,
        QuantileConfig(seed=0, num_threads=2, n_estimators=200),
        depth_feature=depth_feature,
    )


def test_censoring_treatment_reduces_under_forecasting(shop: dict) -> None:
    """Trained on sales as if they were demand, the P50 under-forecasts true demand more than
    trained on the corrected target (the newest three sales held out)."""
    rows = shop["rows"]
    order = rows.groupby("campaign_id")["as_of"].min().sort_values().index
    test = rows[rows["campaign_id"].isin(order[-3:])]
    fit = rows[~rows["campaign_id"].isin(order[-3:])]
    truth = test["true_demand_qty"].to_numpy(dtype=float)
    bias = {}
    for correct in (False, True):
        p50 = _fit(fit, correct).predict(test)[:, 1]
        bias[correct] = (p50.sum() - truth.sum()) / truth.sum()
    print(
        f"P50 bias against true demand: raw sales {bias[False]:+.3f}, corrected {bias[True]:+.3f}"
    )
    assert bias[True] > bias[False]


def test_quantiles_never_cross_and_never_fall_with_the_discount(shop: dict) -> None:
    rows = shop["rows"]
    model = _fit(rows, True)
    quantiles = model.predict(rows)
    assert (np.diff(quantiles, axis=1) >= 0).all() and (quantiles >= 0).all()
    curves = model.what_if(rows, DEPTHS, keys=("item_id",))
    for column in ("p10", "p50", "p90"):
        steps = curves.groupby("row")[column].diff().dropna()
        assert (steps >= 0).all(), column
    # The constraint, not the repair, keeps the curves monotone ...
    assert model.raw_depth_violations(rows, DEPTHS) == 0.0


def test_without_the_monotone_constraint_the_boosters_break_the_price_effect(shop: dict) -> None:
    """The check above can fail: the same model without the constraint has falling curves."""
    rows = shop["rows"]
    unconstrained = _fit(rows, True, depth_feature=None)
    unconstrained.depth_feature = "discount_depth"  # vary the column it was trained on freely
    assert unconstrained.raw_depth_violations(rows, DEPTHS) > 0.0


def test_demand_trains_logs_and_is_promoted_through_its_gates(shop: dict) -> None:
    from flashsale_ml import steps

    settings = shop["settings"]
    steps.validate_data(shop["raw_uri"], settings=settings)
    result = steps.train_model(shop["features_uri"], "demand", settings=settings)
    registered = steps.register_model(result["run_id"], settings=settings)
    decision = steps.promote_model(registered["version"], "demand", settings=settings)
    for metric in ("test_pinball", "test_wape_p50", "test_coverage_p10_p90", "test_bias_p50"):
        assert np.isfinite(result[metric]), metric
    assert result["test_crossing_share"] == 0.0
    coverage_ok = 0.7 <= result["test_coverage_p10_p90"] <= 0.9
    assert decision["promoted"] == coverage_ok, decision["reasons"]
    import mlflow

    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    artifacts = {a.path for a in client.list_artifacts(result["run_id"], "plots")}
    assert {"plots/forecast_vs_actual.png", "plots/what_if_discount.png"} <= artifacts


def test_training_names_a_table_the_snapshot_lacks(shop: dict, tmp_path) -> None:
    """A shop's own snapshot without a table the kind needs fails at once, naming it."""
    from flashsale_ml import steps
    from flashsale_ml.datasets import SnapshotWriter
    from flashsale_ml.errors import DataError

    lake = open_store((tmp_path / "lake").as_uri())
    with Snapshot(shop["raw_uri"]) as raw, SnapshotWriter(lake, "raw") as writer:
        for table in raw.tables:
            if table != "campaigns":
                writer.write_table(table, raw.read_table(table))
    with Snapshot(shop["features_uri"]) as features:
        metadata = {**features.manifest.metadata, "input_snapshot": writer.uri}
        with SnapshotWriter(lake, "features", metadata=metadata) as copy:
            copy.write_table(ITEMS_TABLE, features.read_table(ITEMS_TABLE))
    with pytest.raises(DataError, match=r"needs table\(s\) \['campaigns'\]"):
        steps.train_model(copy.uri, "demand", settings=shop["settings"])
