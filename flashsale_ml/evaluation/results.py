"""Typed results of a post-campaign evaluation: what the statistics produce and the report,
the MLflow run and the CLI read. Pure data, no computation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flashsale_ml.evaluation.effects import CupedResult, Interval

ALL_USERS = "all"
# The dataset evaluation writes its per-user labels to, and retraining reads them from.
LABELS_DATASET = "campaign_labels"


@dataclass(frozen=True)
class MetricEffect:
    """One metric's effect of one arm against control, overall or within one segment.

    Attributes:
        metric: ``conversion``, ``orders``, ``revenue``, ``margin``, ``visit``, ``spend``...
        arm: the promotion arm; ``control`` is the reference.
        segment: :data:`ALL_USERS` or a segment (value tier ``high``/``mid``/``low``).
        n_treated, n_control: users in the arm and in control (within the segment).
        mean_treated, mean_control: per-user means.
        difference: difference in means with its Welch interval and p-value.
        bootstrap: the same difference's bucket (Poisson) bootstrap interval.
        relative_lift: ``mean_treated / mean_control - 1`` with a delta-method interval (None
            when the control mean is zero).
        cuped: the CUPED-adjusted difference (None without a pre-period covariate).
        adjusted_p_value: the p-value after the family-wise or FDR correction of its family
            (the segment effects of one metric); None for overall effects.
    """

    metric: str
    arm: str
    segment: str
    n_treated: int
    n_control: int
    mean_treated: float
    mean_control: float
    difference: Interval
    bootstrap: Interval | None = None
    relative_lift: Interval | None = None
    cuped: CupedResult | None = None
    adjusted_p_value: float | None = None


@dataclass(frozen=True)
class ArmTotals:
    """What an arm caused in total: per-user difference × users in the arm.

    Attributes:
        arm: the promotion arm.
        users: users in the arm.
        incremental: metric -> interval of the total (e.g. incremental orders, revenue, margin).
        incentive_cost: what the promotion cost (discounts, gifts, coupons redeemed) in total.
        roi: incremental margin ÷ incentive cost (None without a cost).
    """

    arm: str
    users: int
    incremental: dict[str, Interval]
    incentive_cost: float
    roi: Interval | None = None


@dataclass(frozen=True)
class CumulativeEffect:
    """Incremental conversions of an arm (per user in the arm) up to each time in the outcome
    window, with a Welch interval at each point."""

    arm: str
    hours: tuple[float, ...]
    estimate: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]


@dataclass(frozen=True)
class Calibration:
    """How a model's predictions compare with what happened.

    Attributes:
        model: e.g. ``flashsale-propensity/3``.
        target: what it predicted (``conversion``).
        mean_prediction, observed_rate: overall.
        bins_mean_prediction, bins_observed_rate, bins_rows: equal-mass bins.
        rows: users scored.
    """

    model: str
    target: str
    mean_prediction: float
    observed_rate: float
    bins_mean_prediction: tuple[float, ...]
    bins_observed_rate: tuple[float, ...]
    bins_rows: tuple[int, ...]
    rows: int


@dataclass(frozen=True)
class CampaignEvaluation:
    """Everything an evaluation found, for the report, the MLflow run and the labels.

    Attributes:
        campaign_id: the campaign.
        data_uri, data_snapshot_id: the snapshot evaluated (lineage).
        start, end, outcome_end: ISO times: the sale, and the end of the outcome window.
        control: the control arm's name.
        arms: the promotion arms, in the campaign's order.
        arm_users: users per arm, control included.
        expected_shares: the design's share per arm (for the sample-ratio check).
        srm_p_value: the sample-ratio-mismatch test's p-value (it passed to get here).
        metrics: the metrics evaluated, headline metric first.
        effects: every :class:`MetricEffect`, overall (segment ``all``) and per segment.
        correction: ``holm`` or ``bh``: how the segment p-values were adjusted.
        totals: per arm.
        cumulative: per arm, the headline metric's effect through the outcome window.
        calibration: model accountability (may be empty, with ``notes`` saying why).
        notes: plain-language caveats (e.g. "no plan recorded predictions").
        lineage: code version, config hash, MLflow run id, labels snapshot URI...
    """

    campaign_id: str
    data_uri: str
    data_snapshot_id: str
    start: str
    end: str
    outcome_end: str
    control: str
    arms: tuple[str, ...]
    arm_users: dict[str, int]
    expected_shares: dict[str, float]
    srm_p_value: float
    metrics: tuple[str, ...]
    effects: tuple[MetricEffect, ...]
    correction: str
    totals: tuple[ArmTotals, ...] = ()
    cumulative: tuple[CumulativeEffect, ...] = ()
    calibration: tuple[Calibration, ...] = ()
    notes: tuple[str, ...] = ()
    lineage: dict[str, str] = field(default_factory=dict)

    def effect(self, metric: str, arm: str, segment: str = ALL_USERS) -> MetricEffect:
        for e in self.effects:
            if (e.metric, e.arm, e.segment) == (metric, arm, segment):
                return e
        raise KeyError(f"no effect of {arm} on {metric} in segment {segment}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
