"""The plan summary a person reads before approving: Markdown, shown as the approval's body."""

from __future__ import annotations

from collections.abc import Mapping

from flashsale_ml.planning.plan import Interval, PlanSummary

# Below this many control users the campaign's evaluation has no power (and under two buckets
# it refuses): the approver is warned.
MIN_MEASURABLE_CONTROL = 50


def _money(value: float) -> str:
    return f"{value:,.0f}"


def _interval(i: Interval, money: bool = True) -> str:
    fmt = _money if money else (lambda v: f"{v:,.0f}")
    return f"**{fmt(i.estimate)}** (90 % interval {fmt(i.low)} to {fmt(i.high)})"


def render_markdown(
    summary: PlanSummary,
    start: str,
    end: str,
    models: Mapping[str, str],
    data_snapshot: str,
) -> str:
    """The approval body: the headline numbers first, then who is held out, the top segments,
    and what the plan was made from.

    Args:
        summary: the plan's numbers.
        start, end: the campaign window, as ISO text.
        models: model kind -> ``name/version`` of the champion used.
        data_snapshot: the raw snapshot id the plan was scored on.
    """
    s = summary
    share = s.expected_spend / s.budget if s.budget else 0.0
    lines = [
        f"## Campaign plan `{s.campaign_id}`",
        "",
        f"{start} to {end}, sale-wide discount depth **{s.discount_depth:.0%}**.",
        "",
        "| | expected |",
        "|---|---|",
        f"| incremental orders | {_interval(s.incremental_orders, money=False)} |",
        f"| incremental revenue | {_interval(s.incremental_revenue)} |",
        f"| incremental margin, net of incentives | {_interval(s.incremental_margin)} |",
        f"| incentive spend | **{_money(s.expected_spend)}** of {_money(s.budget)} ({share:.1%}) |",
        "",
        f"Intervals: {s.model_uncertainty}.",
        "",
        "### Who gets what",
        "",
        f"- Eligible users: {s.eligible_users:,} (excluded: {s.excluded_bots:,} flagged as bots,"
        f" {s.excluded_listed:,} on the exclusion list).",
        f"- Targeted: {s.targeted_users:,}, plus {s.exploration_users:,} exploring a random "
        "promotion type (so future models keep learning).",
        "- By promotion: "
        + ", ".join(f"{arm} {users:,}" for arm, users in s.arm_users.items())
        + ".",
        f"- Holdout: {s.holdout_users:,} users held out at random within each value segment; "
        f"{s.holdout_control_users:,} of them would have been targeted and form the control "
        "group that measures the campaign.",
        *(
            [
                "",
                f"> **Warning:** only {s.holdout_control_users:,} control user(s): too few to "
                "measure what this campaign causes. Consider a larger budget or holdout, or "
                "cheaper promotions.",
            ]
            if s.holdout_control_users < MIN_MEASURABLE_CONTROL
            else []
        ),
        "",
        "### Top segments",
        "",
        "| value segment | promotion | users | incremental orders | incremental margin | spend |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for seg in s.top_segments:
        lines.append(
            f"| {seg.segment} | {seg.arm} | {seg.users:,} | {seg.incremental_orders:,.1f} | "
            f"{_money(seg.incremental_margin)} | {_money(seg.spend)} |"
        )
    if len(s.depth_margins) > 1:
        lines += [
            "",
            "Expected incremental margin by discount depth: "
            + ", ".join(f"{float(d):.0%}: {_money(m)}" for d, m in s.depth_margins.items())
            + ".",
        ]
    lines += [
        "",
        "### Made from",
        "",
        f"- Data snapshot `{data_snapshot}`.",
        *(f"- {kind}: `{version}` (champion)" for kind, version in sorted(models.items())),
        f"- Assignment optimality: within {s.optimality_gap:.4%} of the LP bound.",
        "",
    ]
    return "\n".join(lines)
