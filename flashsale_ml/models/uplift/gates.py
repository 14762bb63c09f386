"""The uplift kind's promotion gates: Qini on the newest campaign (paired bootstrap), a model
no worse than random targeting, uplift calibration that does not regress, no arm's Qini
regressing."""

from __future__ import annotations

import logging

from pydantic import BaseModel, Field

from flashsale_ml.errors import DataError
from flashsale_ml.promotion.gates import (
    GateSpec,
    MetricBound,
    NoRegression,
    PrimaryGate,
    SegmentNoRegression,
)

log = logging.getLogger(__name__)


class UpliftGates(BaseModel):
    """Promotion thresholds of the uplift kind (``FLASHSALE_PROMOTION__UPLIFT__<FIELD>``)."""

    model_config = {"frozen": True, "extra": "forbid"}

    min_improvement: float = Field(
        default=0.005,
        ge=0.0,
        description="the challenger's normalized Qini must beat the champion's by this much",
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    bootstrap_samples: int = Field(default=500, ge=100)
    min_qini: float = Field(
        default=0.0,
        description="normalized Qini the challenger needs on its own (0: better than random)",
    )
    calibration_tolerance: float = Field(
        default=0.01,
        ge=0.0,
        description="allowed increase of the decile uplift calibration error",
    )
    arm_qini_tolerance: float = Field(
        default=0.05, ge=0.0, description="allowed Qini drop within each promotion arm"
    )
    min_arm_rows: int = Field(default=200, ge=1)
    min_holdout_rows: int = Field(default=500, ge=1)

    def spec(self) -> GateSpec:
        from flashsale_ml.evaluation.uplift import QiniStatistic

        return GateSpec(
            evaluate=uplift_metrics,
            primary=PrimaryGate(QiniStatistic(), self.min_improvement),
            absolute=(MetricBound("qini", "Qini", True, self.min_qini),),
            no_regression=(
                NoRegression(
                    "calibration",
                    "uplift_calibration_error",
                    "uplift calibration error",
                    False,
                    self.calibration_tolerance,
                ),
            ),
            segments=SegmentNoRegression(
                "segments", "Qini", True, self.arm_qini_tolerance, self.min_arm_rows, arm_qinis
            ),
            confidence=self.confidence,
            bootstrap_samples=self.bootstrap_samples,
            min_holdout_rows=self.min_holdout_rows,
        )


def uplift_metrics(targets, predictions) -> dict[str, float]:
    """Normalized Qini, AUUC, uplift@30 % and the decile calibration error of predicted uplift
    on holdout rows whose targets encode (group, outcome) (see ``encode_qini_labels``).

    Raises:
        DataError: the rows cannot define them (one group only, or no buyers in control and
            treated); the message names the holdout rows and counts each group's buyers.
    """
    import numpy as np

    from flashsale_ml.evaluation import uplift as metrics

    y, treated = decode(targets)
    scores = np.asarray(predictions, dtype=float)
    try:
        calibration = metrics.uplift_decile_calibration(y, treated, scores)
        return {
            "qini": metrics.qini_coefficient(y, treated, scores),
            "auuc": metrics.auuc(y, treated, scores),
            "uplift_at_30": metrics.uplift_at_k(y, treated, scores, k=0.3),
            "uplift_calibration_error": calibration.calibration_error(),
        }
    except DataError as exc:
        raise DataError(
            f"uplift metrics of the holdout campaign rows ({len(y)} rows, every promotion "
            f"arm's treated rows and the control rows): {exc}"
        ) from exc


def decode(targets):
    """(outcome, treated) from the holdout targets ``treated * 2 + outcome``."""
    import numpy as np

    codes = np.asarray(targets, dtype=float)
    treated = (codes >= 2.0).astype(float)
    return codes - 2.0 * treated, treated


def arm_qinis(targets, predictions, segments, min_rows: int) -> dict[str, float]:
    """Normalized Qini within each arm's rows (its treated users and the control users they
    are compared with), for arms with at least ``min_rows`` rows and both groups.

    An arm whose Qini its rows cannot define (nobody in it bought) is left out with a warning,
    as a small arm is: a targeted campaign's plan may give a promotion to a handful of users.

    Raises:
        DataError: no arm's Qini is defined although some arm was large enough; the message
            names the first such arm and its rows.
    """
    import numpy as np

    from flashsale_ml.evaluation import uplift as metrics

    y, treated = decode(targets)
    scores = np.asarray(predictions, dtype=float)
    out, undefined = {}, []
    for arm in sorted(set(np.asarray(segments).tolist())):
        mask = np.asarray(segments) == arm
        if mask.sum() >= min_rows and 0 < treated[mask].sum() < mask.sum():
            try:
                out[str(arm)] = metrics.qini_coefficient(y[mask], treated[mask], scores[mask])
            except DataError as exc:
                undefined.append(
                    f"the Qini of arm {arm!r} on its {int(mask.sum())} campaign rows "
                    f"(its treated rows and the control rows): {exc}"
                )
    if undefined and not out:
        raise DataError(undefined[0])
    for problem in undefined:
        log.warning("left out of the per-arm Qinis: %s", problem)
    return out
