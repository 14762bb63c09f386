"""The demand kind's promotion gates: pinball loss on the newest sale (paired bootstrap), a
P10–P90 interval whose coverage stays in its band, and a P50 WAPE that does not regress."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from flashsale_ml.promotion.gates import GateSpec, MetricBound, NoRegression, PrimaryGate


class DemandGates(BaseModel):
    """Promotion thresholds of the demand kind (``FLASHSALE_PROMOTION__DEMAND__<FIELD>``)."""

    model_config = {"frozen": True, "extra": "forbid"}

    min_improvement: float = Field(
        default=0.0,
        ge=0.0,
        description="the challenger's mean pinball loss must beat the champion's by this much "
        "(units of demand; the bootstrap interval must exclude no improvement either way)",
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    bootstrap_samples: int = Field(default=1000, ge=100)
    min_coverage: float = Field(
        default=0.70, ge=0.0, le=1.0, description="least share of actuals inside P10–P90"
    )
    max_coverage: float = Field(
        default=0.90, ge=0.0, le=1.0, description="most share of actuals inside P10–P90"
    )
    wape_tolerance: float = Field(
        default=0.05, ge=0.0, description="allowed increase of the P50 WAPE over the champion's"
    )
    # Rows = SKUs of the newest sale × 3 quantile levels.
    min_holdout_rows: int = Field(default=90, ge=1)

    @model_validator(mode="after")
    def _band(self) -> DemandGates:
        if self.min_coverage > self.max_coverage:
            raise ValueError(
                f"min_coverage {self.min_coverage} is above max_coverage {self.max_coverage}"
            )
        return self

    def spec(self) -> GateSpec:
        from flashsale_ml.evaluation.demand import PINBALL_STATISTIC, expanded_demand_metrics

        return GateSpec(
            evaluate=expanded_demand_metrics,
            primary=PrimaryGate(PINBALL_STATISTIC, self.min_improvement),
            absolute=(
                MetricBound("coverage_p10_p90", "P10–P90 coverage", True, self.min_coverage),
                MetricBound("coverage_p10_p90", "P10–P90 coverage", False, self.max_coverage),
            ),
            no_regression=(
                NoRegression("wape", "wape_p50", "P50 WAPE", False, self.wape_tolerance),
            ),
            confidence=self.confidence,
            bootstrap_samples=self.bootstrap_samples,
            min_holdout_rows=self.min_holdout_rows,
        )
