"""The post-campaign report: plain-language headline, figures and one self-contained HTML page.

Everything here reads a :class:`~flashsale_ml.evaluation.results.CampaignEvaluation` and
computes nothing statistical: the words are generated from its numbers, with one rule that is
never bent: an effect whose interval contains zero is reported as "no detectable effect".

* :func:`headline`: the opening sentences (one per arm for the headline metric, with its totals;
  the sample-ratio check; the segment correction and the headline metric's segments that
  survive it, the other metrics' only named with a pointer to the table).
* :func:`figures`: matplotlib figures by file name (pyplot-free, like
  :mod:`flashsale_ml.training.plots`).
* :func:`render_report`: the PNGs and ``report.html`` (figures embedded as base64, inline CSS,
  no external requests) into a folder.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flashsale_ml.evaluation.results import (
    ALL_USERS,
    ArmTotals,
    CampaignEvaluation,
    MetricEffect,
)
from flashsale_ml.evaluation.segments import VALUE_TIERS
from flashsale_ml.training.plots import MAX_FIGURE_HEIGHT_IN, close

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from flashsale_ml.evaluation.effects import Interval

# Adjusted p-values below this name a segment in the headline and highlight it in the table.
SEGMENT_ALPHA = 0.05

# Metrics that are per-user proportions (shown in %, differences in percentage points).
RATE_METRICS = frozenset({"conversion", "visit", "purchase", "click", "retention", "redemption"})
# Totals counted in units (incremental orders, conversions...): "about 412 extra orders".
COUNT_TOTALS = {
    "orders": "orders",
    "conversion": "conversions",
    "conversions": "conversions",
    "visit": "visits",
    "visits": "visits",
    "purchases": "purchases",
    "units": "units",
}

CORRECTIONS = {
    "holm": "Holm's step-down correction (family-wise error rate)",
    "bh": "the Benjamini-Hochberg correction (false discovery rate)",
    "bonferroni": "the Bonferroni correction (family-wise error rate)",
}

MINUS = "\u2212"
FIGURE_DPI = 110
ARM_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3")
HTML_NAME = "report.html"
NO_VALUE = "\u2014"  # an em dash: a value that is not given (e.g. no ROI)


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`render_report` wrote: the HTML page and each figure's PNG by name."""

    html: Path
    figures: dict[str, Path]


# --------------------------------------------------------------------------------- numbers


def is_rate(metric: str) -> bool:
    """Whether a metric is a per-user proportion (shown in %, differences in points)."""
    return metric in RATE_METRICS or metric.endswith("_rate")


def _finite(*values: float) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def _decimals(interval: Interval, scale: float = 1.0, lo: int = 0, hi: int = 4) -> int:
    """Decimals that show the interval's half-width to one significant digit."""
    half = abs(interval.high - interval.low) * scale / 2
    if not _finite(half) or half == 0:
        half = abs(interval.estimate * scale) if _finite(interval.estimate) else 0.0
    if half == 0:
        return lo
    return max(lo, min(hi, -math.floor(math.log10(half))))


def _number(x: float, decimals: int) -> str:
    """``x`` with thousands separators and a typographic minus."""
    if not _finite(x):
        return "n/a"
    text = f"{abs(x):,.{decimals}f}"
    return MINUS + text if x < 0 and float(text.replace(",", "")) != 0 else text


def _signed(x: float, decimals: int) -> str:
    """``x`` with an explicit sign (``+2.3``, ``−0.4``); zero after rounding has none."""
    if not _finite(x):
        return "n/a"
    text = f"{abs(x):,.{decimals}f}"
    if float(text.replace(",", "")) == 0:
        return text
    return ("+" if x > 0 else MINUS) + text


def _percent(x: float, decimals: int) -> str:
    return f"{_number(x * 100, decimals)} %"


def _money(x: float) -> str:
    """An amount without a currency symbol: whole units from 100 up, cents below."""
    return _number(x, 0 if abs(x) >= 100 else 2)


def confidence_text(interval: Interval) -> str:
    """``95 %`` for a confidence of 0.95 (or 95)."""
    c = interval.confidence
    c = c * 100 if c <= 1 else c
    return f"{c:g} %"


def p_equals(p: float | None) -> str:
    """``= 0.012`` or ``< 0.001``: what follows a ``p`` in a sentence."""
    text = p_text(p)
    return text if text.startswith("<") else f"= {text}"


def p_text(p: float | None) -> str:
    if p is None or not _finite(p):
        return "n/a"
    if p < 0.001:
        return "< 0.001"
    text = f"{p:.3g}"
    # never print "0.05" for a p-value that is below the threshold
    if p < SEGMENT_ALPHA <= float(text):
        return f"< {SEGMENT_ALPHA:g}"
    return text


def _unit(metric: str) -> tuple[float, str]:
    """Scale and unit suffix of a metric's differences in words."""
    return (100.0, " points") if is_rate(metric) else (1.0, "")


def _difference_text(metric: str, interval: Interval) -> str:
    """``+2.3 points, 95 % CI +1.6 to +3.0`` (rates) or ``+0.32, 95 % CI +0.11 to +0.53``."""
    scale, unit = _unit(metric)
    d = _decimals(interval, scale, lo=1 if is_rate(metric) else 2)
    return (
        f"{_signed(interval.estimate * scale, d)}{unit}, {confidence_text(interval)} CI "
        f"{_signed(interval.low * scale, d)} to {_signed(interval.high * scale, d)}"
    )


def _mean_text(metric: str, value: float, like: Interval) -> str:
    scale, _ = _unit(metric)
    d = _decimals(like, scale, lo=1 if is_rate(metric) else 2)
    return _percent(value, d) if is_rate(metric) else _number(value, d)


def _relative_text(interval: Interval | None) -> str | None:
    if interval is None or not _finite(interval.estimate):
        return None
    return f"{_signed(interval.estimate * 100, _decimals(interval, 100, hi=1))} %"


def _interval_text(
    interval: Interval | None,
    scale: float = 1.0,
    lo: int = 0,
    decimals: int | None = None,
    estimate: bool = True,
) -> str:
    """``+2.3 [+1.6, +3.0]`` for a table cell (``[+1.6, +3.0]`` without the estimate)."""
    if interval is None:
        return ""
    d = _decimals(interval, scale, lo=lo) if decimals is None else decimals
    bounds = f"[{_signed(interval.low * scale, d)}, {_signed(interval.high * scale, d)}]"
    return f"{_signed(interval.estimate * scale, d)} {bounds}" if estimate else bounds


def _reduction_text(reduction: float) -> str:
    """A CUPED variance reduction in %: whole percent from 1 % up, one significant digit
    below (``0.04 %``), ``<0.01 %`` below that; ``0 %`` only when it is exactly zero."""
    if not _finite(reduction):
        return "n/a"
    pct = reduction * 100
    size = abs(pct)
    if size == 0:
        return "0 %"
    if size < 0.01:
        return f"{MINUS if pct < 0 else ''}<0.01 %"
    if size >= 1:
        return f"{_number(pct, 0)} %"
    rounded = float(f"{size:.1g}")  # one significant digit: 0.0996 -> 0.1, not 0.10
    return f"{_number(math.copysign(rounded, pct), max(0, -math.floor(math.log10(rounded))))} %"


def _roi_text(roi: Interval) -> tuple[str, str, str]:
    """ROI estimate, low and high, signed like every other interval in the report."""
    d = _decimals(roi, lo=2, hi=3)
    return _signed(roi.estimate, d), _signed(roi.low, d), _signed(roi.high, d)


def _shows_roi(totals: ArmTotals) -> bool:
    """A ROI is shown only with a positive incentive cost and a finite estimate."""
    roi = totals.roi
    return bool(totals.incentive_cost) and roi is not None and _finite(roi.estimate)


# -------------------------------------------------------------------------------- headline


def _promotion_arms(evaluation: CampaignEvaluation) -> list[str]:
    return [a for a in evaluation.arms if a != evaluation.control]


def _segments(evaluation: CampaignEvaluation) -> list[str]:
    """Segments in the value-tier order, then any others as they first appear."""
    seen = {e.segment for e in evaluation.effects if e.segment != ALL_USERS}
    ordered = [s for s in VALUE_TIERS if s in seen]
    for e in evaluation.effects:
        if e.segment in seen and e.segment not in ordered:
            ordered.append(e.segment)
    return ordered


def _overall(evaluation: CampaignEvaluation, metric: str, arm: str) -> MetricEffect | None:
    try:
        return evaluation.effect(metric, arm)
    except KeyError:
        return None


def _arm_sentence(evaluation: CampaignEvaluation, arm: str) -> str:
    metric = evaluation.metrics[0]
    effect = _overall(evaluation, metric, arm)
    totals = next((t for t in evaluation.totals if t.arm == arm), None)
    if effect is None:
        head = f"The {arm} arm has no estimate of its effect on {metric}"
    else:
        diff = effect.difference
        treated = _mean_text(metric, effect.mean_treated, diff)
        control = _mean_text(metric, effect.mean_control, diff)
        details = _difference_text(metric, diff)
        relative = _relative_text(effect.relative_lift)
        if relative is not None:
            details += f"; {relative} relative"
        if diff.excludes_zero():
            verb = "raised" if diff.estimate > 0 else "lowered"
            head = f"The {arm} arm {verb} {metric} from {control} to {treated} ({details})"
        else:
            head = (
                f"The {arm} arm had no detectable effect on {metric}: {treated} against "
                f"{control} in {evaluation.control} ({details})"
            )
    if totals is None:
        return head + "."
    return f"{head}; in total, {_totals_text(totals)}."


def _total_item(metric: str, interval: Interval) -> tuple[bool, str]:
    """Whether the total's interval excludes zero, and its words: ``about 412 extra orders
    (95 % CI 290 to 534)``, ``incremental margin +5,230 (...)``, or for an interval that
    contains zero just ``orders (+40, 95 % CI −70 to +150)`` (to follow "no detectable change
    in")."""
    conf = confidence_text(interval)
    noun = COUNT_TOTALS.get(metric)
    d = 0 if noun else _decimals(interval, lo=0, hi=2)
    if not interval.excludes_zero():
        return False, (
            f"{noun or metric} ({_signed(interval.estimate, d)}, "
            f"{conf} CI {_signed(interval.low, d)} to {_signed(interval.high, d)})"
        )
    if noun:
        more = "extra" if interval.estimate > 0 else "fewer"
        return True, (
            f"about {_number(abs(interval.estimate), 0)} {more} {noun} "
            f"({conf} CI {_number(interval.low, 0)} to {_number(interval.high, 0)})"
        )
    return True, (
        f"incremental {metric} {_signed(interval.estimate, d)} "
        f"({conf} CI {_signed(interval.low, d)} to {_signed(interval.high, d)})"
    )


def _join(items: Sequence[str], word: str = "and") -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {word} " + items[-1]


def _totals_text(totals: ArmTotals) -> str:
    items = [_total_item(metric, interval) for metric, interval in totals.incremental.items()]
    detected = [text for found, text in items if found]
    unchanged = [text for found, text in items if not found]
    if unchanged:
        detected.append(f"no detectable change in {_join(unchanged, 'or')}")
    text = _join(detected) if detected else f"{totals.users:,} users"
    if totals.incentive_cost:
        text += f", at an incentive cost of {_money(totals.incentive_cost)}"
        if _shows_roi(totals):
            estimate, low, high = _roi_text(totals.roi)
            text += f" (ROI {estimate}, {confidence_text(totals.roi)} CI {low} to {high})"
        else:
            text += " (no ROI given: see the notes)"
    return text


def _srm_sentence(evaluation: CampaignEvaluation) -> str:
    users = ", ".join(
        f"{arm} {evaluation.arm_users[arm]:,}"
        for arm in [evaluation.control, *_promotion_arms(evaluation)]
        if arm in evaluation.arm_users
    )
    shares = " / ".join(
        f"{round(evaluation.expected_shares[arm] * 100, 1):g} %"
        for arm in [evaluation.control, *_promotion_arms(evaluation)]
        if arm in evaluation.expected_shares
    )
    text = f"The sample-ratio check passed (p {p_equals(evaluation.srm_p_value)})"
    if users:
        text += f": users {users}"
        if shares:
            text += f" against planned shares of {shares}"
    return text + "."


def _significant(evaluation: CampaignEvaluation, metric: str) -> list[MetricEffect]:
    """The metric's segment effects below :data:`SEGMENT_ALPHA` after adjustment, by arm in
    the campaign's order, then segment in the value-tier order."""
    segments = _segments(evaluation)
    return [
        e
        for arm in _promotion_arms(evaluation)
        for segment in segments
        for e in evaluation.effects
        if (e.metric, e.arm, e.segment) == (metric, arm, segment)
        and e.adjusted_p_value is not None
        and e.adjusted_p_value < SEGMENT_ALPHA
    ]


def _segment_sentences(evaluation: CampaignEvaluation) -> list[str]:
    """One sentence: the correction, then only the headline metric's significant segments,
    grouped by arm (``mens_email in high (+1.0 points), mid (+0.9 points) and low (+0.4
    points); womens_email in ...``); other metrics with significant segments are only named,
    with a pointer to the table."""
    segments = _segments(evaluation)
    if not segments:
        return ["No segment effects were estimated."]
    method = CORRECTIONS.get(evaluation.correction.lower(), f"the {evaluation.correction}")
    opening = (
        f"Segment effects ({', '.join(segments)}) were adjusted with {method} across the "
        f"segments of each metric"
    )
    headline_metric = evaluation.metrics[0]
    found = _significant(evaluation, headline_metric)
    others = [m for m in evaluation.metrics[1:] if _significant(evaluation, m)]
    if not found and not others:
        return [f"{opening}; no segment effect is significant after adjustment."]
    threshold = f"adjusted p < {SEGMENT_ALPHA:g}"
    if found:
        by_arm: dict[str, list[str]] = {}
        for e in found:
            by_arm.setdefault(e.arm, []).append(
                f"{e.segment} ({_signed_short(headline_metric, e.difference)})"
            )
        groups = [f"{arm} in {_join(items)}" for arm, items in by_arm.items()]
        text = (
            f"{opening}; significant on {headline_metric} after adjustment ({threshold}): "
            f"{'; '.join(groups)}"
        )
    else:
        text = f"{opening}; no segment effect on {headline_metric} is significant after adjustment"
    if others:
        text += (
            f"; {_join(others)} {'has' if len(others) == 1 else 'have'} significant segment "
            "effects too (see the table for the other metrics)"
        )
    return [text + "."]


def _signed_short(metric: str, interval: Interval) -> str:
    scale, unit = _unit(metric)
    d = _decimals(interval, scale, lo=1 if is_rate(metric) else 2)
    return f"{_signed(interval.estimate * scale, d)}{unit}"


def headline(evaluation: CampaignEvaluation) -> list[str]:
    """The report's opening sentences, generated from the numbers.

    One sentence per promotion arm on the headline metric (``metrics[0]``, its overall effect
    against control), with the arm's totals when there are any; then the sample-ratio check;
    then the correction used for the segment effects and the headline metric's segment effects
    whose adjusted p-value is below :data:`SEGMENT_ALPHA`, grouped by arm (the other metrics
    with such segments are only named: the table has them). An interval that contains zero is
    always "no detectable effect" (or, for a total, "no detectable change"); each interval is
    quoted at its own confidence level. Amounts carry no currency symbol.
    """
    if not evaluation.metrics:
        raise ValueError(f"campaign {evaluation.campaign_id}: no metrics were evaluated")
    sentences = [_arm_sentence(evaluation, arm) for arm in _promotion_arms(evaluation)]
    sentences.append(_srm_sentence(evaluation))
    sentences.extend(_segment_sentences(evaluation))
    return sentences


# --------------------------------------------------------------------------------- figures


def _new_figure(width: float, height: float) -> Figure:
    # pyplot-free, as in flashsale_ml.training.plots: nothing lands in pyplot's global state
    from matplotlib.figure import Figure

    return Figure(
        figsize=(width, min(MAX_FIGURE_HEIGHT_IN, height)), dpi=FIGURE_DPI, layout="constrained"
    )


def _colour(evaluation: CampaignEvaluation, arm: str) -> str:
    arms = _promotion_arms(evaluation)
    index = arms.index(arm) if arm in arms else len(arms)
    return ARM_COLOURS[index % len(ARM_COLOURS)]


def _axis_label(metric: str) -> str:
    if is_rate(metric):
        return f"difference in {metric} (percentage points)"
    return f"difference in {metric} per user"


def _interval_row(ax, y: float, interval: Interval, scale: float, colour: str, **kw) -> None:
    filled = interval.excludes_zero()
    ax.errorbar(
        interval.estimate * scale,
        y,
        xerr=[
            [(interval.estimate - interval.low) * scale],
            [(interval.high - interval.estimate) * scale],
        ],
        fmt="o",
        color=colour,
        markerfacecolor=colour if filled else "white",
        markersize=6,
        capsize=3,
        lw=1.6,
        **kw,
    )


def lift_figure(evaluation: CampaignEvaluation) -> Figure:
    """Forest plot of the headline metric's difference per arm, overall and per segment."""
    metric = evaluation.metrics[0]
    scale, _ = _unit(metric)
    rows: list[tuple[str, MetricEffect]] = []
    for arm in _promotion_arms(evaluation):
        for segment in [ALL_USERS, *_segments(evaluation)]:
            try:
                rows.append((arm, evaluation.effect(metric, arm, segment)))
            except KeyError:
                continue
    fig = _new_figure(8.5, 1.6 + 0.3 * max(len(rows), 1))
    ax = fig.subplots()
    ax.set_title(f"Effect on {metric} by arm and segment")
    if not rows:
        ax.text(0.5, 0.5, "no effects", ha="center", va="center", transform=ax.transAxes)
        return fig
    positions, labels, p_labels = [], [], []
    y, previous = 0.0, None
    for arm, effect in rows:
        if previous is not None and arm != previous:
            y -= 0.6  # a gap between arms
        previous = arm
        _interval_row(ax, y, effect.difference, scale, _colour(evaluation, arm))
        positions.append(y)
        overall = effect.segment == ALL_USERS
        labels.append(f"{arm} · {'all users' if overall else effect.segment}")
        if overall:
            p_labels.append(f"p {p_text(effect.difference.p_value)}")
        else:
            p_labels.append(f"adj. p {p_text(effect.adjusted_p_value)}")
        y -= 1.0
    ax.axvline(0.0, color="black", lw=1)
    ax.set_yticks(positions, labels, fontsize=9)
    for tick, (_, effect) in zip(ax.get_yticklabels(), rows, strict=True):
        if effect.segment == ALL_USERS:
            tick.set_fontweight("bold")
    right = ax.secondary_yaxis("right")
    right.set_yticks(positions, p_labels, fontsize=8)
    for tick, (_, effect) in zip(right.get_yticklabels(), rows, strict=True):
        if effect.adjusted_p_value is not None and effect.adjusted_p_value < SEGMENT_ALPHA:
            tick.set_fontweight("bold")
    ax.set_ylim(min(positions) - 0.7, max(positions) + 0.7)
    ax.grid(axis="x", alpha=0.3)
    conf = confidence_text(rows[0][1].difference)
    ax.set_xlabel(
        f"{_axis_label(metric)}, {conf} CI\n"
        f"filled: interval excludes 0; right: p (all users), {evaluation.correction}-adjusted "
        "p (segments)",
        fontsize=9,
    )
    return fig


def cuped_figure(evaluation: CampaignEvaluation) -> Figure | None:
    """Per metric (one panel each) and arm: the unadjusted and the CUPED interval side by
    side, the variance reduction in the arm's label. None when no metric has CUPED."""
    arms = _promotion_arms(evaluation)
    panels = []
    for metric in evaluation.metrics:
        effects = [_overall(evaluation, metric, arm) for arm in arms]
        effects = [e for e in effects if e is not None and e.cuped is not None]
        if effects:
            panels.append((metric, effects))
    if not panels:
        return None
    ncols = min(2, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    height = 0.9 + nrows * (0.9 + 0.5 * len(arms))
    fig = _new_figure(5.0 * ncols, height)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (metric, effects) in zip(axes, panels, strict=False):
        scale, _ = _unit(metric)
        positions, labels = [], []
        for i, effect in enumerate(effects):
            y = -float(i)
            cuped = effect.cuped
            _interval_row(ax, y + 0.15, cuped.unadjusted, scale, "#999999")
            _interval_row(ax, y - 0.15, cuped.interval, scale, _colour(evaluation, effect.arm))
            positions.append(y)
            reduction = cuped.variance_reduction
            labels.append(
                f"{effect.arm}\nvariance {'increased' if reduction < 0 else 'reduced'} "
                f"{_reduction_text(abs(reduction))}"
                if _finite(reduction)
                else effect.arm
            )
        ax.axvline(0.0, color="black", lw=1)
        ax.set_yticks(positions, labels, fontsize=8)
        ax.set_ylim(min(positions) - 0.6, max(positions) + 0.6)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel(
            "difference (points)" if is_rate(metric) else "difference per user", fontsize=9
        )
        ax.tick_params(axis="x", labelsize=8)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    from matplotlib.lines import Line2D

    fig.legend(
        handles=[
            Line2D([], [], color="#999999", marker="o", label="unadjusted"),
            Line2D([], [], color="black", marker="o", label="CUPED (colour of the arm)"),
        ],
        loc="outside lower center",
        ncols=2,
        fontsize=8,
        frameon=False,
    )
    fig.suptitle("Unadjusted vs CUPED-adjusted differences (top vs bottom of each arm)")
    return fig


def _hours_between(start: str, end: str) -> float | None:
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() / 3600
    except (TypeError, ValueError):
        return None


def cumulative_figure(evaluation: CampaignEvaluation) -> Figure | None:
    """One small panel per arm (shared y axis): the cumulative effect with its band over hours
    since the start, the zero line and the end of the campaign."""
    if not evaluation.cumulative:
        return None
    metric = evaluation.metrics[0]
    scale, _ = _unit(metric)
    curves = evaluation.cumulative
    ncols = min(3, len(curves))
    nrows = math.ceil(len(curves) / ncols)
    fig = _new_figure(3.6 * ncols + 0.6, 0.9 + 2.7 * nrows)
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel()
    campaign_hours = _hours_between(evaluation.start, evaluation.end)
    for ax, curve in zip(axes, curves, strict=False):
        colour = _colour(evaluation, curve.arm)
        ax.fill_between(
            curve.hours,
            [v * scale for v in curve.low],
            [v * scale for v in curve.high],
            color=colour,
            alpha=0.25,
            lw=0,
            label="interval",
        )
        ax.plot(curve.hours, [v * scale for v in curve.estimate], color=colour, label=curve.arm)
        ax.axhline(0.0, color="black", lw=1)
        if campaign_hours is not None and campaign_hours > 0:
            ax.axvline(campaign_hours, color="grey", ls=":", lw=1.2, label="campaign ends")
        ax.set_title(curve.arm, fontsize=10, color=colour)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        ax.set_xlabel("hours since the start", fontsize=9)
    for ax in axes[len(curves) :]:
        ax.set_visible(False)
    unit = "points" if is_rate(metric) else "per user"
    for ax in axes[::ncols]:
        ax.set_ylabel(f"cumulative difference ({unit})", fontsize=9)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    conf = confidence_text(evaluation.effects[0].difference) if evaluation.effects else "95 %"
    handles = [
        Line2D([], [], color="#555555", label="estimate"),
        Patch(color="#555555", alpha=0.25, lw=0, label=f"{conf} interval"),
    ]
    if campaign_hours is not None and campaign_hours > 0:
        handles.append(Line2D([], [], color="grey", ls=":", lw=1.2, label="campaign ends"))
    fig.legend(
        handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False
    )
    fig.suptitle(f"Cumulative effect on {metric} since the start, one panel per arm", fontsize=11)
    return fig


def calibration_figure(evaluation: CampaignEvaluation) -> Figure | None:
    """Predicted vs observed per bin, one line per model, with the diagonal."""
    if not evaluation.calibration:
        return None
    fig = _new_figure(5.8, 4.8)
    ax = fig.subplots()
    ax.set_title("Calibration on the campaign (equal-mass bins)")
    ax.grid(alpha=0.3)
    top = max(
        max([*c.bins_mean_prediction, *c.bins_observed_rate, c.mean_prediction, 0.0])
        for c in evaluation.calibration
    )
    top = (top or 1.0) * 1.05
    ax.plot([0, top], [0, top], "--", color="grey", label="perfect")
    for i, c in enumerate(evaluation.calibration):
        ax.plot(
            c.bins_mean_prediction,
            c.bins_observed_rate,
            "o-",
            color=ARM_COLOURS[(i + 3) % len(ARM_COLOURS)],
            label=f"{c.model} ({c.rows:,} users)",
        )
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(6))
        axis.set_major_formatter(PercentFormatter(xmax=1.0))
    target = evaluation.calibration[0].target
    ax.set_xlabel(f"mean predicted {target} probability")
    ax.set_ylabel(f"observed {target} rate")
    ax.legend(loc="upper left", fontsize=8)
    return fig


def _thousands(x: float, _pos: int) -> str:
    return _number(x, 0) if abs(x) >= 10 or x == 0 else _number(x, 1)


def _formatter():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(_thousands)


def totals_figure(evaluation: CampaignEvaluation) -> Figure | None:
    """Incremental totals (orders, revenue, margin...) per arm with intervals."""
    if not evaluation.totals:
        return None
    metrics: list[str] = []
    for t in evaluation.totals:
        metrics.extend(m for m in t.incremental if m not in metrics)
    if not metrics:
        return None
    arms = [t.arm for t in evaluation.totals]
    fig = _new_figure(3.4 * len(metrics), 1.6 + 0.55 * len(arms))
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics, strict=True):
        for i, t in enumerate(evaluation.totals):
            interval = t.incremental.get(metric)
            if interval is None:
                continue
            colour = _colour(evaluation, t.arm)
            ax.barh(-i, interval.estimate, height=0.55, color=colour, alpha=0.75)
            ax.errorbar(
                interval.estimate,
                -i,
                xerr=[[interval.estimate - interval.low], [interval.high - interval.estimate]],
                fmt="none",
                ecolor="black",
                capsize=3,
                lw=1.2,
            )
            if metric == "margin" and t.incentive_cost:
                ax.plot(t.incentive_cost, -i, "D", color="black", markersize=5)
        ax.axvline(0.0, color="black", lw=1)
        ax.set_title(f"incremental {metric}", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=8)
        ax.xaxis.set_major_formatter(_formatter())
        # a few ticks: five-digit totals side by side overlapped ("−20,000−15,000...")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(4))
    axes[0].set_yticks([-i for i in range(len(arms))], arms, fontsize=9)
    axes[0].set_ylim(-len(arms) + 0.4, 0.6)
    if "margin" in metrics and any(t.incentive_cost for t in evaluation.totals):
        # below the panels, where it covers no arm's bar
        from matplotlib.lines import Line2D

        fig.legend(
            handles=[
                Line2D(
                    [],
                    [],
                    ls="none",
                    marker="D",
                    color="black",
                    markersize=5,
                    label="incentive cost (margin panel)",
                ),
            ],
            loc="outside lower center",
            fontsize=8,
            frameon=False,
        )
    fig.suptitle("What each arm caused in total (bars: estimate; whiskers: interval)")
    return fig


def figures(evaluation: CampaignEvaluation) -> dict[str, Figure]:
    """The report's figures by file name; those without data (no CUPED, no cumulative
    curves, no calibration, no totals) are left out. Close them with
    :func:`flashsale_ml.training.plots.close` when done."""
    out: dict[str, Figure] = {"lift_by_arm_and_segment.png": lift_figure(evaluation)}
    for name, make in (
        ("cuped_before_after.png", cuped_figure),
        ("cumulative_effect.png", cumulative_figure),
        ("calibration.png", calibration_figure),
        ("totals.png", totals_figure),
    ):
        fig = make(evaluation)
        if fig is not None:
            out[name] = fig
    return out


# ------------------------------------------------------------------------------------ HTML

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#222;
 max-width:1180px;margin:24px auto;padding:0 20px;line-height:1.45;font-size:15px}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.period{color:#666;margin:0 0 14px;font-size:13px}
.headline{background:#f4f7fb;border-left:4px solid #4c72b0;padding:10px 16px;margin:0 0 8px}
.headline p{margin:6px 0}
.wide{overflow-x:auto}
table{border-collapse:collapse;font-size:12px;margin:6px 0 4px;width:100%}
th,td{padding:3px 6px;border-bottom:1px solid #e5e5e5;text-align:right}
td{white-space:nowrap}
th{background:#f3f3f3;font-weight:600;vertical-align:bottom}
td.t,th.t{text-align:left}
tr.overall td{background:#fafafa;font-weight:600}
tr.sig td.adj{color:#a61c1c;font-weight:700}
details{margin:8px 0}
summary{cursor:pointer;color:#4c72b0;font-size:13px}
.figures{display:flex;flex-wrap:wrap;gap:22px;align-items:flex-start}
figure{margin:0;max-width:100%}
figure img{max-width:100%;height:auto;border:1px solid #eee;display:block}
figcaption{font-size:12px;color:#555;margin-top:4px}
.muted{color:#777;font-size:12.5px}
footer{margin-top:32px;border-top:1px solid #ddd;padding-top:8px;font-size:12px;color:#555}
footer dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:4px 0}
footer dt{font-weight:600}
footer dd{margin:0;font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
"""

CAPTIONS = {
    "lift_by_arm_and_segment.png": "Effect of each arm on the headline metric, overall and by "
    "segment (filled: interval excludes zero).",
    "cuped_before_after.png": "Unadjusted and CUPED-adjusted intervals; the labels give the "
    "variance reduction.",
    "cumulative_effect.png": "Cumulative effect through the outcome window, one panel per arm, "
    "with its interval.",
    "calibration.png": "Predicted vs observed rates per bin of the scoring models.",
    "totals.png": "Incremental totals per arm with intervals.",
}


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cells(values: Iterable[Any], cls: Sequence[str] = ()) -> str:
    out = []
    for i, value in enumerate(values):
        c = cls[i] if i < len(cls) else ""
        out.append(f'<td class="{_e(c)}">{_e(value)}</td>' if c else f"<td>{_e(value)}</td>")
    return "".join(out)


def _header(names: Iterable[str], text_columns: int) -> str:
    return "".join(
        f'<th class="t">{_e(n)}</th>' if i < text_columns else f"<th>{_e(n)}</th>"
        for i, n in enumerate(names)
    )


def _mean_cell(metric: str, value: float) -> str:
    return _percent(value, 2) if is_rate(metric) else _number(value, 3 if abs(value) < 10 else 2)


EFFECT_COLUMNS = (
    "metric",
    "arm",
    "segment",
    "users arm / control",
    "mean arm",
    "mean control",
    "difference [CI]",
    "bootstrap CI",
    "relative lift [CI]",
    "CUPED difference [CI]",
    "variance reduction",
    "p",
    "adjusted p",
)


def _effect_row(e: MetricEffect) -> str:
    scale, _ = _unit(e.metric)
    lo = 1 if is_rate(e.metric) else 2
    classes = []
    if e.segment == ALL_USERS:
        classes.append("overall")
    if e.adjusted_p_value is not None and e.adjusted_p_value < SEGMENT_ALPHA:
        classes.append("sig")
    unit = " pts" if is_rate(e.metric) else ""
    d = _decimals(e.difference, scale, lo=lo)
    values = [
        e.metric,
        e.arm,
        e.segment,
        f"{e.n_treated:,} / {e.n_control:,}",
        _mean_cell(e.metric, e.mean_treated),
        _mean_cell(e.metric, e.mean_control),
        _interval_text(e.difference, scale, decimals=d) + unit,
        (_interval_text(e.bootstrap, scale, decimals=d, estimate=False) + unit)
        if e.bootstrap
        else "",
        (_interval_text(e.relative_lift, 100) + " %") if e.relative_lift else "",
        (_interval_text(e.cuped.interval, scale, lo) + unit) if e.cuped else "",
        _reduction_text(e.cuped.variance_reduction) if e.cuped else "",
        p_text(e.difference.p_value),
        "" if e.adjusted_p_value is None else p_text(e.adjusted_p_value),
    ]
    cls = ["t", "t", "t", *[""] * (len(EFFECT_COLUMNS) - 4), "adj"]
    return f'<tr class="{" ".join(classes)}">{_cells(values, cls)}</tr>'


def _table(rows: Sequence[str]) -> str:
    return (
        f'<div class="wide"><table><thead><tr>{_header(EFFECT_COLUMNS, 3)}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _effects_table(evaluation: CampaignEvaluation) -> str:
    """The headline metric overall and per segment, every other metric overall; the other
    metrics' segment effects in a collapsed table under it."""
    order = {s: i for i, s in enumerate([ALL_USERS, *_segments(evaluation)])}
    arms = _promotion_arms(evaluation)
    metrics = list(evaluation.metrics)

    def key(e: MetricEffect) -> tuple[int, int, int]:
        return (
            metrics.index(e.metric) if e.metric in metrics else len(metrics),
            arms.index(e.arm) if e.arm in arms else len(arms),
            order.get(e.segment, len(order)),
        )

    ordered = sorted(evaluation.effects, key=key)
    main = [e for e in ordered if e.segment == ALL_USERS or e.metric == metrics[0]]
    rest = [e for e in ordered if not (e.segment == ALL_USERS or e.metric == metrics[0])]
    conf = confidence_text(evaluation.effects[0].difference) if evaluation.effects else ""
    out = _table([_effect_row(e) for e in main])
    if rest:
        names = ", ".join(dict.fromkeys(e.metric for e in rest))
        out += (
            f"<details><summary>Segment effects of {_e(names)} ({len(rest)} rows)</summary>"
            f"{_table([_effect_row(e) for e in rest])}</details>"
        )
    return out + (
        f'<p class="muted">Intervals at {_e(conf)}; rates in %, their differences in '
        "percentage points (pts); difference: Welch interval; bootstrap CI: the same "
        "difference's bucket (Poisson) bootstrap interval, blank where none was computed; "
        f"adjusted p: {_e(evaluation.correction)} across the segments of each metric, in bold "
        f"red below {SEGMENT_ALPHA:g}.</p>"
        '<p class="muted note-lift">The relative lift\'s interval is a delta-method interval '
        "for the ratio of the means, not the difference's: one can exclude zero while the "
        "other does not.</p>"
    )


def _totals_table(evaluation: CampaignEvaluation) -> str:
    if not evaluation.totals:
        return '<p class="muted">No totals were computed.</p>'
    metrics: list[str] = []
    for t in evaluation.totals:
        metrics.extend(m for m in t.incremental if m not in metrics)
    head = ["arm", "users", *[f"incremental {m} [CI]" for m in metrics], "incentive cost", "ROI"]
    rows = []
    for t in evaluation.totals:
        values = [t.arm, f"{t.users:,}"]
        values += [_interval_text(t.incremental.get(m)) for m in metrics]
        values += [_money(t.incentive_cost) if t.incentive_cost else "0"]
        if _shows_roi(t):
            estimate, low, high = _roi_text(t.roi)
            values += [f"{estimate} [{low}, {high}]"]
        else:
            values += [NO_VALUE]
        rows.append(f"<tr>{_cells(values, ['t'])}</tr>")
    return (
        f"<table><thead><tr>{_header(head, 1)}</tr></thead><tbody>{''.join(rows)}</tbody>"
        '</table><p class="muted">Totals: per-user difference × users in the arm (Welch '
        f"interval). ROI: incremental margin ÷ incentive cost; {NO_VALUE} where no ROI is given "
        "(no incentive cost, or one not distinguishable from control's: see the notes).</p>"
    )


def _calibration_table(evaluation: CampaignEvaluation) -> str:
    if not evaluation.calibration:
        return '<p class="muted">No model calibration is available (see the notes).</p>'
    head = ["model", "target", "users", "mean prediction", "observed rate", "predicted ÷ observed"]
    rows = []
    for c in evaluation.calibration:
        ratio = c.mean_prediction / c.observed_rate if c.observed_rate else float("nan")
        values = [
            c.model,
            c.target,
            f"{c.rows:,}",
            _percent(c.mean_prediction, 2),
            _percent(c.observed_rate, 2),
            _number(ratio, 2),
        ]
        rows.append(f"<tr>{_cells(values, ['t', 't'])}</tr>")
    return (
        f"<table><thead><tr>{_header(head, 2)}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


# lineage keys that name a field of the evaluation itself, under that field's label
LINEAGE_ALIASES = {"data_uri": "data", "data_snapshot_id": "data snapshot"}


def _lineage(evaluation: CampaignEvaluation) -> str:
    """The footer: each fact once. A lineage entry with the label and value of one already
    shown (``data_snapshot`` repeats ``data_snapshot_id``) is left out."""
    items = [("data", evaluation.data_uri), ("data snapshot", evaluation.data_snapshot_id)]
    for key, value in evaluation.lineage.items():
        items.append((LINEAGE_ALIASES.get(key, key.replace("_", " ")), value))
    shown = list(dict.fromkeys((label, str(value)) for label, value in items))
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in shown)
    return f"<footer><strong>Lineage</strong><dl>{rows}</dl></footer>"


def _when(iso: str) -> str:
    """``2025-11-28 00:00 UTC`` for an ISO time (as given when it does not parse)."""
    try:
        t = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return iso
    offset = t.utcoffset()
    zone = "" if offset is None else " UTC" if not offset else f" {t.strftime('%z')}"
    return t.strftime("%Y-%m-%d %H:%M") + zone


def _period(evaluation: CampaignEvaluation) -> str:
    """``Campaign <start> to <end>; outcomes up to <end>``; when start and end coincide (an
    external experiment without assignment times, all at 1970-01-01) no time is shown."""
    if evaluation.start == evaluation.end or _hours_between(evaluation.start, evaluation.end) == 0:
        text = "Campaign times not recorded"
        if evaluation.outcome_end != evaluation.start:
            text += f"; outcomes up to {_when(evaluation.outcome_end)}"
        return text
    return (
        f"Campaign {_when(evaluation.start)} to {_when(evaluation.end)}; outcomes up to "
        f"{_when(evaluation.outcome_end)}"
    )


def render_html(evaluation: CampaignEvaluation, images: dict[str, bytes]) -> str:
    """The self-contained page: ``images`` are PNG bytes by figure name, embedded in base64."""
    sentences = "".join(f"<p>{_e(s)}</p>" for s in headline(evaluation))
    period = (
        f"{_period(evaluation)}; control arm: {evaluation.control}; "
        f"metrics: {', '.join(evaluation.metrics)}."
    )
    figs = "".join(
        f'<figure><img alt="{_e(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode("ascii")}"><figcaption>{_e(name)}: '
        f"{_e(CAPTIONS.get(name, ''))}</figcaption></figure>"
        for name, png in images.items()
    )
    notes = (
        "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in evaluation.notes) + "</ul>"
        if evaluation.notes
        else '<p class="muted">No notes.</p>'
    )
    title = f"Campaign evaluation: {evaluation.campaign_id}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f'<h1>{_e(title)}</h1><p class="period">{_e(period)}</p>'
        f'<section class="headline">{sentences}</section>'
        f"<h2>Effects</h2>{_effects_table(evaluation)}"
        f'<h2>Figures</h2><div class="figures">{figs}</div>'
        f"<h2>Totals</h2>{_totals_table(evaluation)}"
        f"<h2>Model calibration</h2>{_calibration_table(evaluation)}"
        f"<h2>Notes</h2>{notes}"
        f"{_lineage(evaluation)}</body></html>\n"
    )


def render_report(evaluation: CampaignEvaluation, out_dir: Path) -> ReportFiles:
    """Write every figure as a PNG and ``report.html`` (the headline first, figures embedded)
    into ``out_dir`` (created if missing); figures are closed once saved."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    images: dict[str, bytes] = {}
    made = figures(evaluation)
    try:
        for name, fig in made.items():
            path = out_dir / name
            fig.savefig(path, format="png", dpi=FIGURE_DPI)
            paths[name] = path
            images[name] = path.read_bytes()
    finally:
        for fig in made.values():
            close(fig)
    page = out_dir / HTML_NAME
    page.write_text(render_html(evaluation, images), encoding="utf-8")
    return ReportFiles(html=page, figures=paths)
