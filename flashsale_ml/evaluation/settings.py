"""Settings of post-campaign evaluation (light: read by :mod:`flashsale_ml.config`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Correction = Literal["holm", "bh"]


class EvaluationConfig(BaseModel):
    """How a campaign is evaluated (``FLASHSALE_EVALUATION__<FIELD>``)."""

    model_config = {"frozen": True, "extra": "forbid"}

    outcome_window_hours: float = Field(
        default=24.0,
        ge=0,
        description="orders up to this long after the sale ends still count as its outcome "
        "(late checkouts, coupons redeemed the next day)",
    )
    pre_period_days: float = Field(
        default=28.0,
        gt=0,
        description="the CUPED covariate: the same metric per user over this many days before "
        "the sale",
    )
    correction: Correction = Field(
        default="holm",
        description="multiple-testing correction of the segment effects: holm (family-wise "
        "error rate) or bh (Benjamini-Hochberg false discovery rate)",
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    bootstrap_samples: int = Field(default=1000, ge=100)
    buckets: int = Field(
        default=512, ge=16, description="hash buckets of the Poisson bootstrap's aggregates"
    )
    srm_alpha: float = Field(default=0.001, gt=0, lt=1)
    cumulative_points: int = Field(default=48, ge=2, le=500)
