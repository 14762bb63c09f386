"""The uplift kind: who buys *because of* which promotion (multi-treatment)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flashsale_ml.features.columns import LABEL, PROPENSITY_TABLE
from flashsale_ml.models.base import PURCHASE_UPLIFT, HoldoutSelection, Predictor
from flashsale_ml.models.uplift.flavors import UpliftFlavor
from flashsale_ml.models.uplift.gates import UpliftGates, uplift_metrics

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from flashsale_ml.config import Settings
    from flashsale_ml.promotion.gates import CheckResult, GateSpec


class UpliftKind:
    """The incremental purchase probability of each promotion type against control, per
    user, from the randomized assignments of past sales; gated on Qini (paired bootstrap),
    uplift calibration and each arm's Qini."""

    name = "uplift"
    feature_table = PROPENSITY_TABLE
    target = LABEL
    # The X-learner on the log-odds scale: of the learners in benchmarks/bench_uplift.py it
    # ranked the simulator's true uplift best on every arm and had the best mean Qini; its
    # Qini margin over the S-learner is within the seeds' noise (docs/uplift.md, Measured).
    default_flavor = "xl"
    gate_settings = UpliftGates
    flat_gate_settings = False
    # Trained on demand (`flashsale train --model uplift`); the training DAG's branches are
    # propensity's for now.
    pipeline_branches = ()
    headline_metrics = ("test_qini", "test_uplift_at_30", "test_uplift_calibration_error")
    accountable_for = None
    plan_role = PURCHASE_UPLIFT
    # Sales (campaigns) with their randomized arms (assignments) and what users bought.
    required_tables = ("users", "orders", "campaigns", "assignments")

    def __init__(self) -> None:
        self.flavors = {name: UpliftFlavor(name) for name in ("xl", "dr", "x", "t", "s")}

    def select_holdout(self, frame: pd.DataFrame) -> HoldoutSelection:
        """The newest campaign: for each promotion arm, its treated users and every control
        user (``scored_arm`` names the arm whose uplift is scored), sorted by arm and user;
        targets encode (treated, purchase) as ``treated * 2 + purchase``; segments are arms."""
        from flashsale_ml.contract import CONTROL_ARM
        from flashsale_ml.models.uplift.flavors import expand_by_arm

        newest = frame.groupby("campaign_id")["as_of"].min().idxmax()
        rows = frame[frame["campaign_id"] == newest]
        arms = tuple(sorted(set(rows["arm"].dropna()) - {CONTROL_ARM}))
        expanded = (
            expand_by_arm(rows, arms, CONTROL_ARM)
            .sort_values(["scored_arm", "user_id"])
            .reset_index(drop=True)
        )
        targets = expanded["treated"].to_numpy(dtype=float) * 2.0 + expanded[LABEL].to_numpy(
            dtype=float
        )
        return HoldoutSelection(
            rows=expanded,
            campaign_ids=(str(newest),),
            targets=targets,
            segments=expanded["scored_arm"].to_numpy(dtype=object),
            key_columns=("campaign_id", "user_id", "scored_arm"),
        )

    def evaluate(self, targets: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
        return uplift_metrics(targets, predictions)

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
        """Row-order and irrelevant-column invariance (no monotone business rule yet)."""
        from flashsale_ml.promotion.behaviour import behavioural_checks

        return behavioural_checks(
            predict, sample, seed, None, invariance_tolerance=invariance_tolerance
        )


KIND = UpliftKind()
