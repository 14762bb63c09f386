"""Champion/challenger promotion as a pure decision, for any model kind.

``decide_promotion(challenger, champion, gates, seed)`` looks only at arrays, typed records and
the kind's :class:`~flashsale_ml.promotion.gates.GateSpec`, and returns a :class:`Decision`;
it never talks to MLflow. :mod:`flashsale_ml.promotion.flow` gathers the evidence (both models
scored on the same holdout, behavioural checks, data-validation status) and applies the
decision to the registry's aliases.

A challenger is promoted only if every gate passes:

* **holdout** – both models were scored on the same rows of the same, newest window, and
  neither model was fitted or early-stopped on that window;
* **data** – the data the challenger was trained on passed validation;
* **behaviour** – the challenger's behavioural checks pass (row order, irrelevant columns,
  monotonicity where the business demands it);
* **absolute** – the challenger is good enough on its own (the kind's bounds, e.g. minimum
  AUC and maximum calibration error), plus the kind's own checks of the challenger alone
  (e.g. **calibration_in_the_large** for probabilities); the first model of a kind needs
  only these gates;
* **primary** – the challenger beats the champion on the primary statistic by the configured
  margin, and a paired bootstrap confidence interval of the difference excludes zero;
* the kind's **no-regression** gates (e.g. **calibration**) and **segments** – no metric and no
  segment gets worse than the champion's beyond a tolerance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from flashsale_ml.evaluation.bootstrap import BootstrapInterval, paired_bootstrap
from flashsale_ml.promotion.gates import CheckResult, GateSpec
from flashsale_ml.promotion.holdout import HoldoutWindow


class HasGateSpec(Protocol):
    """A kind's gate settings (thresholds read from the environment) that build its spec."""

    def spec(self) -> GateSpec: ...


@dataclass(frozen=True)
class ModelEvaluation:
    """Everything the decision needs to know about one model on the holdout.

    Attributes:
        model: a readable reference, e.g. ``flashsale-propensity/3``.
        holdout: the window the scores are for.
        fitted_on: ids of the campaigns the model was trained or early-stopped on (``None``
            when unknown, which fails the holdout gate).
        labels: the targets of the holdout rows, in holdout order (0/1 for a binary kind).
        scores: the model's predictions, aligned with ``labels``.
        segments: the segment of each row (e.g. value tier ``high``/``mid``/``low``).
        behaviour: results of the behavioural checks (may be empty for a champion).
        data_validated: whether the model's training data passed validation (``None``: not
            looked up, as for a champion; a challenger needs ``True``).
    """

    model: str
    holdout: HoldoutWindow
    fitted_on: frozenset[str] | None
    labels: np.ndarray
    scores: np.ndarray
    segments: np.ndarray
    behaviour: tuple[CheckResult, ...] = ()
    data_validated: bool | None = True


@dataclass(frozen=True)
class Decision:
    """The outcome: promote or not, and why, gate by gate."""

    promote: bool
    reasons: list[str]
    gates: tuple[CheckResult, ...]
    metrics: dict[str, float]
    challenger: str
    champion: str | None
    bootstrap: BootstrapInterval | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "promote": self.promote,
            "reasons": self.reasons,
            "gates": [asdict(g) for g in self.gates],
            "metrics": self.metrics,
            "challenger": self.challenger,
            "champion": self.champion,
        }


def evaluation_metrics(evaluation: ModelEvaluation, spec: GateSpec) -> dict[str, float]:
    """The kind's metrics of one model on the holdout, and its segment metric per segment
    (``<segment metric>_<segment>``, e.g. ``auc_high``; every segment with rows)."""
    out = {k: float(v) for k, v in spec.evaluate(evaluation.labels, evaluation.scores).items()}
    if spec.segments is not None:
        gate = spec.segments
        prefix = gate.label.lower()
        for segment, value in gate.metric(
            evaluation.labels, evaluation.scores, evaluation.segments, 1
        ).items():
            out[f"{prefix}_{segment}"] = float(value)
    return out


def _holdout_gate(
    challenger: ModelEvaluation, champion: ModelEvaluation | None, spec: GateSpec
) -> CheckResult:
    holdout = challenger.holdout
    problems = []
    if holdout.rows < spec.min_holdout_rows:
        problems.append(f"holdout has {holdout.rows} rows, fewer than {spec.min_holdout_rows}")
    for evaluation in (challenger, champion):
        if evaluation is None:
            continue
        if evaluation.fitted_on is None:
            problems.append(
                f"{evaluation.model} records no training window; cannot prove it "
                "never saw the holdout"
            )
            continue
        seen = sorted(set(holdout.campaign_ids) & evaluation.fitted_on)
        if seen:
            problems.append(
                f"{evaluation.model} was trained or early-stopped on holdout campaign(s) {seen}"
            )
    if champion is not None and (
        champion.holdout.key != holdout.key or champion.holdout.row_digest != holdout.row_digest
    ):
        problems.append(
            f"models scored on different holdouts ({holdout.key} vs {champion.holdout.key})"
        )
    scored = "both scored" if champion is not None else "scored"
    detail = "; ".join(problems) or (
        f"{scored} on {holdout.rows} rows of {','.join(holdout.campaign_ids)} "
        f"(features {holdout.feature_snapshot_id}), unseen in training"
    )
    return CheckResult("holdout", not problems, detail)


def _primary_gate(
    challenger: ModelEvaluation, champion: ModelEvaluation, spec: GateSpec, seed: int
) -> tuple[CheckResult, BootstrapInterval]:
    primary = spec.primary
    interval = paired_bootstrap(
        challenger.labels,
        challenger.scores,
        champion.scores,
        primary.statistic,
        spec.bootstrap_samples,
        spec.confidence,
        seed,
    )
    better = interval.difference >= primary.min_improvement and interval.excludes_zero()
    if better:
        verdict = "better"
    elif interval.high < 0:  # the whole interval on the worse side
        verdict = "worse"
    elif interval.difference < 0:
        verdict = "not better"
    else:
        verdict = "not significantly better"
    detail = (
        f"{verdict}: {primary.name} gain {interval.difference:+.4f} "
        f"({interval.confidence:.0%} CI {interval.low:+.4f}..{interval.high:+.4f}, "
        f"margin {primary.min_improvement}) vs {champion.model}"
    )
    return CheckResult("primary", better, detail), interval


def _segment_gate(
    challenger: ModelEvaluation, champion: ModelEvaluation, spec: GateSpec
) -> CheckResult | None:
    gate = spec.segments
    if gate is None:
        return None
    mine = gate.metric(challenger.labels, challenger.scores, challenger.segments, gate.min_rows)
    theirs = gate.metric(champion.labels, champion.scores, champion.segments, gate.min_rows)
    shared = [s for s in mine if s in theirs]

    def worse(segment: str) -> bool:
        gap = (
            theirs[segment] - mine[segment]
            if gate.higher_is_better
            else (mine[segment] - theirs[segment])
        )
        return gap > gate.tolerance

    regressions = [
        f"{segment} {gate.label} {mine[segment]:.4f} vs {theirs[segment]:.4f}"
        for segment in shared
        if worse(segment)
    ]
    compared = ", ".join(f"{s} {mine[s]:.3f}/{theirs[s]:.3f}" for s in shared)
    if regressions:
        detail = "; ".join(regressions) + f" (tolerance {gate.tolerance})"
    else:
        detail = f"no segment regressed (challenger/champion {gate.label}: {compared or 'none'})"
    return CheckResult(gate.gate, not regressions, detail)


def decide_promotion(
    challenger: ModelEvaluation,
    champion: ModelEvaluation | None,
    gates: GateSpec | HasGateSpec,
    seed: int,
) -> Decision:
    """Decide whether ``challenger`` replaces ``champion`` (or becomes the first champion).

    Args:
        challenger: the new version's evaluation on the newest holdout.
        champion: the current champion's evaluation on the same rows; ``None`` when the model
            kind has no champion yet (then only the absolute gates apply).
        gates: the kind's gates: a :class:`GateSpec`, or its gate settings (which build one).
        seed: seed of the bootstrap.

    Returns:
        A :class:`Decision` with one :class:`CheckResult` per gate; ``promote`` is true only if
        every gate passed, and ``reasons`` names each failed gate (or, on promotion, the
        evidence).
    """
    spec = gates if isinstance(gates, GateSpec) else gates.spec()
    results: list[CheckResult] = [_holdout_gate(challenger, champion, spec)]
    results.append(
        CheckResult(
            "data",
            bool(challenger.data_validated),
            "training data passed validation"
            if challenger.data_validated
            else "no passing validation report for the challenger's training data",
        )
    )
    failed_behaviour = [c for c in challenger.behaviour if not c.passed]
    results.append(
        CheckResult(
            "behaviour",
            not failed_behaviour,
            "; ".join(f"{c.name}: {c.detail}" for c in failed_behaviour)
            or f"{len(challenger.behaviour)} behavioural checks passed",
        )
    )

    mine = evaluation_metrics(challenger, spec)
    metrics = {f"challenger_{k}": v for k, v in mine.items()}
    if spec.absolute:
        results.append(
            CheckResult(
                "absolute",
                all(bound.passed(mine[bound.metric]) for bound in spec.absolute),
                ", ".join(bound.describe(mine[bound.metric]) for bound in spec.absolute),
            )
        )
    for check in spec.challenger_checks:
        result, check_metrics = check(challenger.labels, challenger.scores)
        results.append(result)
        metrics |= dict(check_metrics)

    interval = None
    if champion is not None:
        theirs = evaluation_metrics(champion, spec)
        metrics |= {f"champion_{k}": v for k, v in theirs.items()}
        primary, interval = _primary_gate(challenger, champion, spec, seed)
        metrics |= {
            "difference": interval.difference,
            "difference_ci_low": interval.low,
            "difference_ci_high": interval.high,
        }
        results.append(primary)
        for gate in spec.no_regression:
            a, b = mine[gate.metric], theirs[gate.metric]
            sign = "+" if not gate.higher_is_better else "-"
            results.append(
                CheckResult(
                    gate.gate,
                    gate.regression(a, b) <= gate.tolerance,
                    f"{gate.label} {a:.4f} vs {b:.4f} (tolerance {sign}{gate.tolerance})",
                )
            )
        segments = _segment_gate(challenger, champion, spec)
        if segments is not None:
            results.append(segments)

    promote = all(r.passed for r in results)
    if promote:
        reasons = [f"{r.name}: {r.detail}" for r in results]
        if champion is None:
            reasons.insert(0, "first model of this kind: absolute gates passed")
    else:
        reasons = [f"{r.name}: {r.detail}" for r in results if not r.passed]
    return Decision(
        promote=promote,
        reasons=reasons,
        gates=tuple(results),
        metrics=metrics,
        challenger=challenger.model,
        champion=champion.model if champion else None,
        bootstrap=interval,
    )
