"""The propensity kind's promotion gates: thresholds (settings) and the gate spec built
from them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from flashsale_ml.promotion.gates import (
    GateSpec,
    MetricBound,
    NoRegression,
    PrimaryGate,
    SegmentNoRegression,
)

PrimaryMetric = Literal["auc", "log_loss", "brier"]


class PropensityGates(BaseModel):
    """Promotion thresholds of the propensity kind.

    Set as ``FLASHSALE_PROMOTION__PROPENSITY__<FIELD>`` or, as before kinds existed,
    ``FLASHSALE_PROMOTION__<FIELD>`` (the kind's section wins where both are set).
    """

    model_config = {"frozen": True, "extra": "forbid"}

    primary_metric: PrimaryMetric = "auc"
    min_improvement: float = Field(
        default=0.001,
        ge=0.0,
        description="the challenger's point estimate must be better by at least this much, in "
        "the primary metric's units (AUC points, or nats of log loss); stops champions "
        "churning on noise-level gains",
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    bootstrap_samples: int = Field(default=1000, ge=100)
    ece_tolerance: float = Field(
        default=0.01, ge=0.0, description="allowed increase of expected calibration error"
    )
    segment_auc_tolerance: float = Field(
        default=0.02, ge=0.0, description="allowed AUC drop within each value tier"
    )
    min_segment_rows: int = Field(
        default=200, ge=1, description="smaller tiers (or tiers with one class) are not gated"
    )
    min_auc: float = Field(default=0.6, ge=0.0, le=1.0)
    max_ece: float = Field(default=0.1, gt=0.0)
    max_calibration_ratio_error: float = Field(
        default=0.10,
        ge=0.0,
        lt=1.0,
        description="calibration in the large: the challenger's mean predicted probability may "
        "lie at most this fraction above the upper (or below the lower) end of the exact "
        "`confidence` interval of the holdout's observed purchase rate. ECE is absolute, so at "
        "a ~11 % base rate an ECE of 0.04 can hide a 35 % over-forecast of buyers, and stock and "
        "coupon budgets are planned from the summed probabilities. The interval absorbs sampling "
        "noise (a small holdout cannot fail a calibrated model); 0.10 leaves room for real "
        "sale-to-sale drift and still rejects 0.147 predicted vs 0.109 observed from ~800 rows",
    )
    min_holdout_rows: int = Field(default=500, ge=1)
    monotone_tolerance: float = Field(
        default=0.002,
        ge=0.0,
        description="how far the mean prediction may fall when a monotone feature rises (noise)",
    )

    def spec(self) -> GateSpec:
        """The gates as data for :func:`flashsale_ml.promotion.decision.decide_promotion`."""
        from functools import partial

        from flashsale_ml.evaluation.segments import segment_aucs
        from flashsale_ml.promotion.checks import calibration_in_the_large

        return GateSpec(
            evaluate=propensity_metrics,
            primary=PrimaryGate(self.primary_metric, self.min_improvement),
            absolute=(
                MetricBound("auc", "AUC", True, self.min_auc),
                MetricBound("ece", "ECE", False, self.max_ece),
            ),
            challenger_checks=(
                partial(
                    _calibration_check,
                    calibration_in_the_large,
                    self.confidence,
                    self.max_calibration_ratio_error,
                ),
            ),
            no_regression=(NoRegression("calibration", "ece", "ECE", False, self.ece_tolerance),),
            segments=SegmentNoRegression(
                "segments",
                "AUC",
                True,
                self.segment_auc_tolerance,
                self.min_segment_rows,
                segment_aucs,
            ),
            confidence=self.confidence,
            bootstrap_samples=self.bootstrap_samples,
            min_holdout_rows=self.min_holdout_rows,
        )


def propensity_metrics(labels, scores) -> dict[str, float]:
    """AUC, PR-AUC, log loss, Brier and ECE of purchase probabilities."""
    from flashsale_ml.evaluation.binary import binary_metrics

    return {k: v for k, v in binary_metrics(labels, scores).items() if k != "n"}


def _calibration_check(check, confidence: float, tolerance: float, labels, scores):
    return check(labels, scores, confidence, tolerance)
