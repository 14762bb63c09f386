"""A model kind's promotion gates, as data.

The decision (:func:`flashsale_ml.promotion.decision.decide_promotion`) knows no metric by
name: a kind hands it a :class:`GateSpec` that says how to evaluate its predictions, which
metrics have absolute bounds, which must not regress against the champion (and by how much),
and which statistic is the primary one, compared by a paired bootstrap. Adding a kind means
writing one ``GateSpec``, never touching the decision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# (targets, predictions) -> metric name -> value (arrays: numpy)
Evaluate = Callable[[Any, Any], Mapping[str, float]]
# (targets, predictions, segments, min_rows) -> segment -> value of the segment metric
SegmentMetric = Callable[[Any, Any, Any, int], Mapping[str, float]]


@dataclass(frozen=True)
class CheckResult:
    """One gate or check: its name, whether it passed, and why, in a readable line."""

    name: str
    passed: bool
    detail: str


# (targets, predictions) -> a check of the challenger alone and the metrics it computed
ChallengerCheck = Callable[[Any, Any], tuple[CheckResult, Mapping[str, float]]]


@dataclass(frozen=True)
class MetricBound:
    """An absolute gate: the challenger alone must reach ``bound`` on ``metric``.

    Attributes:
        metric: key of the kind's evaluation (``auc``, ``ece``, ``qini``...).
        label: how reasons name it (``AUC``).
        higher_is_better: ``True``: at least ``bound``; ``False``: at most ``bound``.
        bound: the threshold.
    """

    metric: str
    label: str
    higher_is_better: bool
    bound: float

    def passed(self, value: float) -> bool:
        return value >= self.bound if self.higher_is_better else value <= self.bound

    def describe(self, value: float) -> str:
        side = "min" if self.higher_is_better else "max"
        return f"{self.label} {value:.4f} ({side} {self.bound})"


@dataclass(frozen=True)
class NoRegression:
    """A relative gate named ``gate``: the challenger may be worse than the champion on
    ``metric`` by at most ``tolerance`` (in the metric's units)."""

    gate: str
    metric: str
    label: str
    higher_is_better: bool
    tolerance: float

    def regression(self, mine: float, theirs: float) -> float:
        """How much worse the challenger is (negative: better)."""
        return theirs - mine if self.higher_is_better else mine - theirs


@dataclass(frozen=True)
class SegmentNoRegression:
    """No segment (e.g. a value tier) may regress on ``label`` by more than ``tolerance``;
    segments with fewer than ``min_rows`` rows (or where the metric is undefined) are not
    gated. ``metric`` computes the per-segment values."""

    gate: str
    label: str
    higher_is_better: bool
    tolerance: float
    min_rows: int
    metric: SegmentMetric


@dataclass(frozen=True)
class PrimaryGate:
    """The challenger must beat the champion on ``statistic`` by ``min_improvement`` (point
    estimate), and the paired bootstrap interval of the difference must exclude zero.

    ``statistic`` is a name in :data:`flashsale_ml.evaluation.bootstrap.STATISTICS` or a
    statistic object; the difference is oriented so that positive means the challenger is
    better.
    """

    statistic: object
    min_improvement: float

    @property
    def name(self) -> str:
        return self.statistic if isinstance(self.statistic, str) else self.statistic.name


@dataclass(frozen=True)
class GateSpec:
    """Everything the decision needs to know about one kind's gates.

    Attributes:
        evaluate: the kind's metrics of predictions against targets (logged, compared).
        primary: the champion/challenger comparison.
        absolute: bounds the challenger alone must meet (the first model of a kind too).
        challenger_checks: further checks of the challenger alone (e.g. calibration in the
            large), each returning its result and the metrics it computed.
        no_regression: metrics that may not get worse than the champion's beyond a tolerance.
        segments: the per-segment no-regression gate, if the kind has segments.
        confidence: two-sided level of the bootstrap interval.
        bootstrap_samples: bootstrap replicates.
        min_holdout_rows: fewer holdout rows fail the holdout gate.
    """

    evaluate: Evaluate
    primary: PrimaryGate
    absolute: tuple[MetricBound, ...] = ()
    challenger_checks: tuple[ChallengerCheck, ...] = ()
    no_regression: tuple[NoRegression, ...] = ()
    segments: SegmentNoRegression | None = None
    confidence: float = 0.95
    bootstrap_samples: int = 1000
    min_holdout_rows: int = 500
