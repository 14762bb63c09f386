"""The propensity kind: P(purchase during the sale | features at its start)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flashsale_ml.features.columns import LABEL, PROPENSITY_TABLE
from flashsale_ml.models.base import (
    PURCHASE_PROBABILITY,
    HoldoutSelection,
    Predictor,
    TrainingBranch,
)
from flashsale_ml.models.propensity.flavors import DcnFlavor, LgbmFlavor
from flashsale_ml.models.propensity.gates import PropensityGates, propensity_metrics

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from flashsale_ml.config import Settings
    from flashsale_ml.promotion.gates import CheckResult, GateSpec

# A deeper discount must never make a purchase less likely on average (beyond noise).
MONOTONE_GRID: dict[str, tuple[float, ...]] = {
    "discount_depth": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
}


class PropensityKind:
    """Who will buy: purchase probabilities of every user of a sale, from point-in-time
    features; gated on AUC (paired bootstrap), calibration and value tiers."""

    name = "propensity"
    feature_table = PROPENSITY_TABLE
    target = LABEL
    default_flavor = "lgbm"
    gate_settings = PropensityGates
    # Its gates were configured as FLASHSALE_PROMOTION__<GATE> before kinds existed.
    flat_gate_settings = True
    # After a sale, evaluation compares its purchase probabilities with who bought while the
    # sale ran (its label window), not in the longer outcome window.
    accountable_for = "sale_conversion"
    plan_role = PURCHASE_PROBABILITY
    # Sales (campaigns) with their randomized arms (assignments) and what users bought.
    required_tables = ("users", "orders", "campaigns", "assignments")
    headline_metrics = ("test_auc", "test_ece", "test_mean_prediction", "test_positive_rate")
    # The training pipeline trains LightGBM (registered, judged for promotion) and, beside it,
    # the deep model (logged for comparison; `flashsale train --flavor dcn --promote` judges
    # one on demand). Task ids are the DAG's.
    pipeline_branches = (
        TrainingBranch("train_propensity", "propensity", "lgbm", promote=True),
        TrainingBranch(
            "train_propensity_deep",
            "propensity",
            "dcn",
            promote=False,
            params={"nproc_per_node": "deep_nproc_per_node", "epochs": "deep_epochs"},
        ),
    )

    def __init__(self) -> None:
        self.flavors = {flavor.name: flavor for flavor in (LgbmFlavor(), DcnFlavor())}

    def select_holdout(self, frame: pd.DataFrame) -> HoldoutSelection:
        """The newest campaign's rows sorted by user; segments are value tiers of past spend."""
        from flashsale_ml.evaluation.segments import value_tiers

        newest = frame.groupby("campaign_id")["as_of"].min().idxmax()
        rows = frame[frame["campaign_id"] == newest].sort_values("user_id").reset_index(drop=True)
        return HoldoutSelection(
            rows=rows,
            campaign_ids=(str(newest),),
            targets=rows[LABEL].to_numpy(dtype=int),
            segments=value_tiers(rows["revenue_all"]),
            key_columns=("campaign_id", "user_id"),
        )

    def evaluate(self, targets: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
        return propensity_metrics(targets, predictions)

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
        """Row-order and irrelevant-column invariance, and a mean prediction that does not
        fall as the discount deepens (beyond the ``monotone_tolerance`` gate setting)."""
        from flashsale_ml.promotion.behaviour import behavioural_checks

        gates = settings.gate_settings(self.name)
        return behavioural_checks(
            predict,
            sample,
            seed,
            MONOTONE_GRID,
            monotone_tolerance=gates.monotone_tolerance,
            invariance_tolerance=invariance_tolerance,
        )


KIND = PropensityKind()
