"""The demand kind: how many units of each SKU a sale will sell at its discount, as P10, P50
and P90."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flashsale_ml.features.columns import DEMAND_LABEL, ITEMS_TABLE
from flashsale_ml.models.base import DEMAND_QUANTILES, HoldoutSelection, Predictor
from flashsale_ml.models.demand.flavors import LEVEL_COLUMN, DemandFlavor
from flashsale_ml.models.demand.gates import DemandGates

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from flashsale_ml.config import Settings
    from flashsale_ml.promotion.gates import CheckResult, GateSpec

# A deeper discount must never forecast less demand (the monotone constraint's promise).
DEPTH_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


class DemandKind:
    """Per-SKU demand quantiles of a flash sale under its discount, trained on past sales with
    stock-outs treated as censoring; gated on pinball loss (paired bootstrap), P10–P90
    coverage in its band and P50 WAPE."""

    name = "demand"
    feature_table = ITEMS_TABLE
    target = DEMAND_LABEL
    default_flavor = "lgbm"
    gate_settings = DemandGates
    flat_gate_settings = False
    pipeline_branches = ()
    headline_metrics = ("test_pinball", "test_wape_p50", "test_coverage_p10_p90")
    accountable_for = None
    plan_role = DEMAND_QUANTILES
    # Past sales (campaigns, with their SKUs) and what they sold; sale_stock is optional.
    required_tables = ("items", "orders", "campaigns")

    def __init__(self) -> None:
        self.flavors = {"lgbm": DemandFlavor()}

    def select_holdout(self, frame: pd.DataFrame) -> HoldoutSelection:
        """The newest sale's SKUs, one row per SKU and quantile level (``quantile_level``
        names it), sorted by level and SKU; targets encode (level, demand) — demand corrected
        for stock-outs as in training."""
        import numpy as np
        import pandas as pd

        from flashsale_ml.evaluation.demand import QUANTILE_LEVELS, encode_quantile_labels
        from flashsale_ml.models.demand.sale import demand_target, sale_rows

        rows = sale_rows(frame)
        newest = rows.groupby("campaign_id")["as_of"].min().idxmax()
        rows = rows[rows["campaign_id"] == newest].reset_index(drop=True)
        demand = demand_target(rows)
        expanded = pd.concat(
            [rows.assign(**{LEVEL_COLUMN: level}) for level in QUANTILE_LEVELS],
            ignore_index=True,
        )
        level_index = np.repeat(np.arange(len(QUANTILE_LEVELS)), len(rows))
        return HoldoutSelection(
            rows=expanded,
            campaign_ids=(str(newest),),
            targets=encode_quantile_labels(np.tile(demand, len(QUANTILE_LEVELS)), level_index),
            segments=expanded[LEVEL_COLUMN].astype(str).to_numpy(dtype=object),
            key_columns=("campaign_id", "item_id", LEVEL_COLUMN),
        )

    def evaluate(self, targets: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
        from flashsale_ml.evaluation.demand import expanded_demand_metrics

        return expanded_demand_metrics(targets, predictions)

    def gates(self, settings: Settings) -> GateSpec:
        return settings.gate_settings(self.name).spec()

    def behavioural_checks(
        self,
        predict: Predictor,
        sample: pd.DataFrame,
        seed: int,
        settings: Settings,
        invariance_tolerance: float = 1e-9,
    ) -> tuple[CheckResult, ...]:
        """Row-order and irrelevant-column invariance, and demand that never falls on average
        as the discount deepens (no tolerance: the model is monotone by construction)."""
        from flashsale_ml.promotion.behaviour import behavioural_checks

        return behavioural_checks(
            predict,
            sample,
            seed,
            {"sale_discount_depth": DEPTH_GRID},
            monotone_tolerance=1e-9,
            invariance_tolerance=invariance_tolerance,
        )


KIND = DemandKind()
