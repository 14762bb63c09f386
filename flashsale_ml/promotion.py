"""Champion/challenger promotion as a pure decision.

``decide_promotion(challenger, champion, gates)`` looks only at arrays and typed records and
returns a :class:`Decision`; it never talks to MLflow. The registry adapter
(:mod:`flashsale_ml.registry`) gathers the evidence (scores of both models on the same holdout,
behavioural checks, data-validation status) and applies the decision to the aliases.

A challenger is promoted only if every gate passes:

* **holdout** – both models were scored on the same rows of the same, newest window, and
  neither model was fitted or early-stopped on that window;
* **data** – the data the challenger was trained on passed validation;
* **behaviour** – the challenger's behavioural checks pass (row order, irrelevant columns,
  monotonicity where the business demands it);
* **absolute** – the challenger is good enough on its own (minimum AUC, maximum calibration
  error) and **calibration_in_the_large** – its mean predicted probability agrees with the
  holdout's observed purchase rate (exact confidence interval, plus a relative tolerance);
  the first model of a kind needs only these gates;
* **primary** – the challenger beats the champion on the primary metric by the configured
  margin, and a paired bootstrap confidence interval of the difference excludes zero;
* **calibration** and **segments** – no regression beyond a tolerance in calibration error
  or in the AUC of high/mid/low value customers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from flashsale_ml.config import PrimaryMetric, PromotionGates
from flashsale_ml.training.metrics import (
    auc_from_groups,
    binary_metrics,
    check_binary_inputs,
    roc_auc,
)

ArrayLikeFloat = Sequence[float] | np.ndarray | pd.Series
VALUE_TIERS = ("high", "mid", "low")


@dataclass(frozen=True)
class HoldoutWindow:
    """The rows both models are judged on: the newest sale of a feature snapshot."""

    feature_snapshot_id: str
    campaign_ids: tuple[str, ...]
    as_of: str
    rows: int
    row_digest: str

    @property
    def key(self) -> str:
        return f"{self.feature_snapshot_id}:{','.join(self.campaign_ids)}"


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class ModelEvaluation:
    """Everything the decision needs to know about one model on the holdout.

    Attributes:
        model: a readable reference, e.g. ``flashsale-propensity/3``.
        holdout: the window the scores are for.
        fitted_on: ids of the campaigns the model was trained or early-stopped on (``None``
            when unknown, which fails the holdout gate).
        labels: 0/1 outcomes of the holdout rows, in holdout order.
        scores: predicted probabilities, aligned with ``labels``.
        segments: value tier (``high``/``mid``/``low``) of each row.
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

    def metrics(self) -> dict[str, float]:
        """AUC, PR-AUC, log loss, Brier and ECE overall and AUC per value tier."""
        out = {k: v for k, v in binary_metrics(self.labels, self.scores).items() if k != "n"}
        for tier, auc in segment_aucs(self.labels, self.scores, self.segments, 1).items():
            out[f"auc_{tier}"] = auc
        return out


@dataclass(frozen=True)
class BootstrapInterval:
    """Paired bootstrap of ``challenger - champion`` on one metric; positive = challenger better."""

    metric: str
    difference: float
    low: float
    high: float
    confidence: float
    samples: int
    distribution: np.ndarray = field(repr=False, compare=False)

    def excludes_zero(self) -> bool:
        return self.low > 0.0


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


def row_digest(keys: pd.DataFrame) -> str:
    """Order-sensitive fingerprint of the holdout's row keys, so 'same rows' can be checked."""
    hashed = pd.util.hash_pandas_object(keys.reset_index(drop=True), index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def value_tiers(monetary: ArrayLikeFloat) -> np.ndarray:
    """High/mid/low value tier of each customer from spend before the cutoff.

    Percentile ranks with ties averaged: the top 20 % of spend are ``high``, the next 30 %
    ``mid`` and the rest ``low``. Customers who never bought share one (low) rank, so a shop
    where most accounts never bought puts all of them in ``low``.
    """
    from scipy.stats import rankdata

    values = np.nan_to_num(np.asarray(monetary, dtype=float), nan=0.0)
    if values.size == 0:
        return np.array([], dtype=object)
    percentile = rankdata(values, method="average") / values.size
    return np.where(percentile > 0.8, "high", np.where(percentile > 0.5, "mid", "low"))


def segment_aucs(
    labels: np.ndarray, scores: np.ndarray, segments: np.ndarray, min_rows: int
) -> dict[str, float]:
    """AUC within each value tier that has at least ``min_rows`` rows and both classes."""
    out: dict[str, float] = {}
    for tier in VALUE_TIERS:
        mask = segments == tier
        y = labels[mask]
        if mask.sum() >= min_rows and 0 < y.sum() < len(y):
            out[tier] = roc_auc(y, scores[mask])
    return out


class _RankedScores:
    """Scores sorted once, so a weighted AUC per bootstrap replicate costs O(n), not O(n log n)."""

    def __init__(self, labels: np.ndarray, scores: np.ndarray) -> None:
        self.order = np.argsort(scores, kind="mergesort")
        self.labels = labels[self.order]
        ordered = scores[self.order]
        new_group = np.r_[True, ordered[1:] != ordered[:-1]]
        self.group_starts = np.flatnonzero(new_group)
        self.has_ties = len(self.group_starts) < len(ordered)

    def auc(self, weights: np.ndarray) -> float:
        w = weights[self.order]
        positives = w * self.labels
        negatives = w - positives
        if self.has_ties:
            neg_per_group = np.add.reduceat(negatives, self.group_starts)
            pos_per_group = np.add.reduceat(positives, self.group_starts)
        else:  # every score distinct (the usual case): each row is its own group
            neg_per_group, pos_per_group = negatives, positives
        return auc_from_groups(pos_per_group, neg_per_group)


def _row_losses(metric: PrimaryMetric, labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    if metric == "brier":
        return (scores - labels) ** 2
    p = np.clip(scores, 1e-7, 1 - 1e-7)
    return -(labels * np.log(p) + (1 - labels) * np.log(1 - p))


def paired_bootstrap(
    labels: np.ndarray,
    challenger_scores: np.ndarray,
    champion_scores: np.ndarray,
    metric: PrimaryMetric,
    samples: int,
    confidence: float,
    seed: int,
) -> BootstrapInterval:
    """Percentile interval of the paired difference ``challenger - champion`` (better > 0).

    Each replicate resamples holdout rows with replacement and scores *both* models on the
    same resample, so the interval reflects the uncertainty of the difference rather than of
    each metric alone (the two are strongly correlated on shared rows).

    Args:
        labels: 0/1 outcomes.
        challenger_scores, champion_scores: probabilities for the same rows.
        metric: ``auc`` (higher is better) or ``log_loss`` / ``brier`` (lower is better; the
            difference is reported as champion loss minus challenger loss).
        samples: number of bootstrap replicates.
        confidence: two-sided level of the interval, e.g. 0.95.
        seed: seed of the resampling.

    Returns:
        The point difference on the full holdout and its percentile interval.

    Raises:
        ValueError: inputs misaligned, not binary, or with a single class.

    References:
        Efron & Tibshirani (1993), *An Introduction to the Bootstrap*, ch. 13 (percentile
        intervals); DeLong, DeLong & Clarke-Pearson (1988), "Comparing the areas under two or
        more correlated ROC curves", Biometrics 44(3) — the analytic counterpart for AUC.
    """
    y = np.asarray(labels, dtype=float)
    a = np.asarray(challenger_scores, dtype=float)
    b = np.asarray(champion_scores, dtype=float)
    if not (y.shape == a.shape == b.shape) or y.ndim != 1:
        raise ValueError(
            f"labels and both score arrays must align, got {y.shape}, {a.shape}, {b.shape}"
        )
    check_binary_inputs(y, a, both_classes=True)
    check_binary_inputs(y, b, both_classes=True)
    n = len(y)
    rng = np.random.default_rng(seed)
    if metric == "auc":
        ranked_a, ranked_b = _RankedScores(y, a), _RankedScores(y, b)
        ones = np.ones(n)
        point = ranked_a.auc(ones) - ranked_b.auc(ones)

        def replicate(w: np.ndarray) -> float:
            return ranked_a.auc(w) - ranked_b.auc(w)
    else:
        gain = _row_losses(metric, y, b) - _row_losses(metric, y, a)
        point = float(gain.mean())

        def replicate(w: np.ndarray) -> float:
            return float(w @ gain / n)

    draws = np.empty(samples)
    for i in range(samples):
        draws[i] = replicate(np.bincount(rng.integers(0, n, n), minlength=n).astype(float))
    draws = draws[~np.isnan(draws)]  # a replicate without both classes has no AUC
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha])
    return BootstrapInterval(
        metric, float(point), float(low), float(high), confidence, len(draws), draws
    )


def behavioural_checks(
    predict: Callable[[pd.DataFrame], np.ndarray],
    frame: pd.DataFrame,
    seed: int,
    monotone_increasing: Mapping[str, Sequence[float]] | None = None,
    monotone_tolerance: float = 0.002,
    invariance_tolerance: float = 1e-9,
) -> tuple[CheckResult, ...]:
    """Behaviour a propensity model must show whatever its metrics say.

    Args:
        predict: the scoring path under test (raw feature frame in, probabilities out).
        frame: a sample of holdout rows with the raw feature columns.
        seed: seed of the shuffles and noise.
        monotone_increasing: feature -> grid of values along which the mean prediction must
            not fall by more than ``monotone_tolerance`` (e.g. a deeper discount never makes a
            purchase less likely on average).
        monotone_tolerance: allowed fall of the mean prediction between grid steps (noise).
        invariance_tolerance: allowed absolute difference for the invariance checks.

    Returns:
        One result per check: ``row_order``, ``irrelevant_columns`` and ``monotone:<feature>``.
    """
    rng = np.random.default_rng(seed)
    base = np.asarray(predict(frame), dtype=float)
    results: list[CheckResult] = []

    perm = rng.permutation(len(frame))
    shuffled = np.asarray(predict(frame.iloc[perm]), dtype=float)
    gap = float(np.max(np.abs(shuffled - base[perm]))) if len(frame) else 0.0
    results.append(
        CheckResult(
            "row_order",
            gap <= invariance_tolerance,
            f"max |Δ| {gap:.2e} after shuffling {len(frame)} rows",
        )
    )

    noisy = frame.assign(
        zz_irrelevant_noise=rng.normal(size=len(frame)),
        zz_irrelevant_label="irrelevant",
    )
    noisy = noisy[list(reversed(noisy.columns))]
    gap = float(np.max(np.abs(np.asarray(predict(noisy), dtype=float) - base)))
    results.append(
        CheckResult(
            "irrelevant_columns",
            gap <= invariance_tolerance,
            f"max |Δ| {gap:.2e} with two extra columns and reversed column order",
        )
    )

    for feature, grid in (monotone_increasing or {}).items():
        means = [float(np.mean(predict(frame.assign(**{feature: value})))) for value in grid]
        drops = [means[i] - means[i + 1] for i in range(len(means) - 1)]
        worst = max(drops, default=0.0)
        curve = ", ".join(f"{v:g}:{m:.4f}" for v, m in zip(grid, means, strict=True))
        results.append(
            CheckResult(
                f"monotone:{feature}",
                worst <= monotone_tolerance,
                f"mean prediction along {feature} [{curve}]; largest fall {max(worst, 0):.4f} "
                f"(tolerance {monotone_tolerance})",
            )
        )
    return tuple(results)


def positive_rate_interval(positives: int, rows: int, confidence: float) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval of a binomial proportion ``positives / rows``.

    Exact rather than Wilson: its coverage is never below ``confidence``, so a gate built on it
    errs towards passing a model when the holdout is small.

    References:
        Clopper & Pearson (1934), "The use of confidence or fiducial limits illustrated in the
        case of the binomial", Biometrika 26(4); computed by
        ``scipy.stats.binomtest(...).proportion_ci(method="exact")``.
    """
    from scipy.stats import binomtest

    ci = binomtest(positives, rows).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def calibration_in_the_large(
    labels: np.ndarray, scores: np.ndarray, confidence: float, tolerance: float
) -> tuple[CheckResult, dict[str, float]]:
    """Does the mean predicted probability agree with the observed positive rate?

    ECE averages absolute gaps per bin, so at a low base rate a model that over-predicts every
    row by a third still has a small ECE. This compares the overall level instead: the mean
    prediction must lie within ``[low · (1 − tolerance), high · (1 + tolerance)]``, where
    ``low..high`` is the exact ``confidence`` interval of the observed rate. The interval takes
    care of sampling noise (a tiny holdout cannot fail a calibrated model), the relative
    tolerance of drift between sales that no model can foresee.

    Returns:
        The check (named ``calibration_in_the_large``) and the interval as metrics.
    """
    y, p = check_binary_inputs(labels, scores)
    rows, positives = len(y), int(y.sum())
    observed, mean = positives / rows, float(p.mean())
    low, high = positive_rate_interval(positives, rows, confidence)
    if mean > high:
        where = f"{mean / high - 1:.1%} above the interval"
    elif mean < low:
        where = f"{1 - mean / low:.1%} below the interval"
    else:
        where = "inside the interval"
    passed = low * (1 - tolerance) <= mean <= high * (1 + tolerance)
    detail = (
        f"mean predicted {mean:.4f} vs observed {observed:.4f} ({confidence:.0%} CI "
        f"{low:.4f}..{high:.4f}, {positives}/{rows} rows): {where} (tolerance {tolerance:.0%})"
    )
    metrics = {"positive_rate_ci_low": low, "positive_rate_ci_high": high}
    return CheckResult("calibration_in_the_large", passed, detail), metrics


def _holdout_gate(
    challenger: ModelEvaluation, champion: ModelEvaluation | None, gates: PromotionGates
) -> CheckResult:
    holdout = challenger.holdout
    problems = []
    if holdout.rows < gates.min_holdout_rows:
        problems.append(f"holdout has {holdout.rows} rows, fewer than {gates.min_holdout_rows}")
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


def decide_promotion(
    challenger: ModelEvaluation,
    champion: ModelEvaluation | None,
    gates: PromotionGates,
    seed: int,
) -> Decision:
    """Decide whether ``challenger`` replaces ``champion`` (or becomes the first champion).

    Args:
        challenger: the new version's evaluation on the newest holdout.
        champion: the current champion's evaluation on the same rows; ``None`` when the model
            kind has no champion yet (then only the absolute gates apply).
        gates: thresholds.
        seed: seed of the bootstrap.

    Returns:
        A :class:`Decision` with one :class:`CheckResult` per gate; ``promote`` is true only if
        every gate passed, and ``reasons`` names each failed gate (or, on promotion, the
        evidence).
    """
    results: list[CheckResult] = [_holdout_gate(challenger, champion, gates)]
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

    mine = challenger.metrics()
    metrics = {f"challenger_{k}": v for k, v in mine.items()}
    absolute_ok = mine["auc"] >= gates.min_auc and mine["ece"] <= gates.max_ece
    results.append(
        CheckResult(
            "absolute",
            absolute_ok,
            f"AUC {mine['auc']:.4f} (min {gates.min_auc}), ECE {mine['ece']:.4f} "
            f"(max {gates.max_ece})",
        )
    )
    in_the_large, interval_metrics = calibration_in_the_large(
        challenger.labels,
        challenger.scores,
        gates.confidence,
        gates.max_calibration_ratio_error,
    )
    results.append(in_the_large)
    metrics |= interval_metrics

    interval = None
    if champion is not None:
        theirs = champion.metrics()
        metrics |= {f"champion_{k}": v for k, v in theirs.items()}
        interval = paired_bootstrap(
            challenger.labels,
            challenger.scores,
            champion.scores,
            gates.primary_metric,
            gates.bootstrap_samples,
            gates.confidence,
            seed,
        )
        metrics |= {
            "difference": interval.difference,
            "difference_ci_low": interval.low,
            "difference_ci_high": interval.high,
        }
        better = interval.difference >= gates.min_improvement and interval.excludes_zero()
        if better:
            verdict = "better"
        elif interval.high < 0:  # the whole interval on the worse side
            verdict = "worse"
        elif interval.difference < 0:
            verdict = "not better"
        else:
            verdict = "not significantly better"
        results.append(
            CheckResult(
                "primary",
                better,
                f"{verdict}: {gates.primary_metric} gain {interval.difference:+.4f} "
                f"({interval.confidence:.0%} CI {interval.low:+.4f}..{interval.high:+.4f}, "
                f"margin {gates.min_improvement}) vs {champion.model}",
            )
        )
        ece_gap = mine["ece"] - theirs["ece"]
        results.append(
            CheckResult(
                "calibration",
                ece_gap <= gates.ece_tolerance,
                f"ECE {mine['ece']:.4f} vs {theirs['ece']:.4f} (tolerance +{gates.ece_tolerance})",
            )
        )
        mine_seg = segment_aucs(
            challenger.labels, challenger.scores, challenger.segments, gates.min_segment_rows
        )
        theirs_seg = segment_aucs(
            champion.labels, champion.scores, champion.segments, gates.min_segment_rows
        )
        regressions = [
            f"{tier} AUC {mine_seg[tier]:.4f} vs {theirs_seg[tier]:.4f}"
            for tier in mine_seg
            if tier in theirs_seg
            and mine_seg[tier] < theirs_seg[tier] - gates.segment_auc_tolerance
        ]
        compared = ", ".join(
            f"{t} {mine_seg[t]:.3f}/{theirs_seg[t]:.3f}" for t in mine_seg if t in theirs_seg
        )
        if regressions:
            detail = "; ".join(regressions) + f" (tolerance {gates.segment_auc_tolerance})"
        else:
            detail = f"no value tier regressed (challenger/champion AUC: {compared or 'none'})"
        results.append(CheckResult("segments", not regressions, detail))

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
