"""The campaign plan, computed: who gets which promotion, who is held out, who explores.

Pure functions over arrays: scores and economics in, a :class:`Plan` out. The step
(:mod:`flashsale_ml.steps.planning`) loads the data, scores the champions and writes the plan.

Per user i and promotion type k, with ``p0`` the purchase probability without a promotion
(the propensity champion) and ``tau_k`` the incremental purchase probability of type k (the
uplift champion):

- expected cost ``c_ik = unit_cost_k * (p0 + tau_k)``: a redemption costs the shop the unit
  cost, whether or not the user would have bought anyway;
- expected value ``v_ik = tau_k * order_margin - c_ik``: the incremental margin, net of the
  incentive.

The assignment maximizes total expected value with total expected cost within the budget
(:func:`flashsale_ml.planning.allocation.solve_budgeted`). Then:

- **holdout**: before optimizing, a keyed hash of (campaign, user) holds out exactly the
  holdout fraction of every value segment; held-out users whom the plan's rule would target
  are recorded as ``control``: they are the counterfactual of the targeted users;
- **exploration**: a keyed share of the targeted users gets a promotion type drawn at random
  instead of the best one, and the rest of the budget is re-optimized around their cost, so
  future uplift models keep learning from randomized data and the budget still holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from flashsale_ml.contract import CONTROL_ARM
from flashsale_ml.planning.allocation import NONE, Allocation, solve_budgeted
from flashsale_ml.planning.randomize import keyed_uniform, stratified_holdout

# A user's role in the plan (the ``role`` column of the targeting table).
TARGETED = "targeted"
EXPLORATION = "exploration"
HOLDOUT = "holdout"
NOT_TARGETED = "not_targeted"
EXCLUDED_BOT = "excluded_bot"
EXCLUDED_LIST = "excluded_list"
ROLES = (TARGETED, EXPLORATION, HOLDOUT, NOT_TARGETED, EXCLUDED_BOT, EXCLUDED_LIST)
Z90 = 1.6448536269514722  # two-sided 90 % normal quantile


@dataclass(frozen=True)
class Candidates:
    """Everyone the campaign could reach, scored at one discount depth.

    Attributes:
        user_ids: int64 pseudonymous ids, unique.
        segment: value segment per user (``high``/``mid``/``low``).
        is_bot: flagged by the bot rule.
        excluded: on the spec's exclusion list.
        p_control: purchase probability without a promotion.
        uplift: users x arms, the incremental purchase probability of each promotion type.
        arms: the promotion types, in ``uplift``'s column order.
    """

    user_ids: np.ndarray
    segment: np.ndarray
    is_bot: np.ndarray
    excluded: np.ndarray
    p_control: np.ndarray
    uplift: np.ndarray
    arms: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.user_ids)
        for name in ("segment", "is_bot", "excluded", "p_control"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"candidates: {name} has {len(getattr(self, name))} rows, not {n}")
        if self.uplift.shape != (n, len(self.arms)):
            raise ValueError(
                f"candidates: uplift has shape {self.uplift.shape}, not ({n}, {len(self.arms)})"
            )
        if len(np.unique(self.user_ids)) != n:
            raise ValueError("candidates: user_ids repeat")
        if not (np.isfinite(self.p_control).all() and np.isfinite(self.uplift).all()):
            raise ValueError("candidates: a model returned NaN or inf")


@dataclass(frozen=True)
class Economics:
    """What one order of the sale is worth at a discount depth."""

    discount_depth: float
    order_revenue: float  # expected revenue of one order (discounted price x quantity)
    order_margin: float  # expected revenue minus cost of goods of one order
    unit_costs: dict[str, float]  # promotion type -> incentive cost per redemption


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class SegmentLine:
    segment: str
    arm: str
    users: int
    incremental_orders: float
    incremental_margin: float
    spend: float


@dataclass(frozen=True)
class PlanSummary:
    """What the approver reads, as numbers (the Markdown is rendered from it)."""

    campaign_id: str
    discount_depth: float
    budget: float
    expected_spend: float
    eligible_users: int
    excluded_bots: int
    excluded_listed: int
    targeted_users: int
    exploration_users: int
    holdout_users: int
    holdout_control_users: int
    arm_users: dict[str, int]
    incremental_orders: Interval
    incremental_revenue: Interval
    incremental_margin: Interval
    lp_bound: float
    optimality_gap: float
    model_uncertainty: str
    top_segments: tuple[SegmentLine, ...]
    depth_margins: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """Per user: role, arm (the promotion, or for the holdout the one the rule would have
    given), expected value and cost; plus the summary."""

    user_ids: np.ndarray
    segment: np.ndarray
    role: np.ndarray  # one of ROLES
    arm: np.ndarray  # object: promotion type, or None
    expected_value: np.ndarray
    expected_cost: np.ndarray
    candidates: Candidates
    economics: Economics
    values: np.ndarray  # users x arms
    costs: np.ndarray  # users x arms
    summary: PlanSummary
    # The promotion the rule chose (held-out users: would have chosen); None for explorers
    # and for held-out users the exploration draw would have made explorers.
    plan_arm: np.ndarray  # object

    def assignment_arms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(user_ids, arm, plan_arm) of the campaign's experiment: the treated users with
        their promotion and the held-out users the rule would have targeted as ``control``.

        ``plan_arm`` is the promotion the rule chose (for a control user, would have chosen),
        None for the exploration users, whose promotion was drawn at random. Within one
        ``plan_arm`` the holdout draw alone decided who was treated, so its treated and
        control users measure that promotion's effect on the users the plan gives it to.
        Exploration takes its keyed draw out of the treated users; the control users the same
        draw would have made explorers have no plan arm either, so both sides are thinned
        alike (up to the few users on the budget's margin, where the greedy fill and the
        re-solve's price differ from the rule).
        """
        treated = np.isin(self.role, (TARGETED, EXPLORATION))
        control = (self.role == HOLDOUT) & (self.arm != None)  # noqa: E711 (object array)
        members = treated | control
        arms = np.where(control, CONTROL_ARM, self.arm)
        return self.user_ids[members], arms[members].astype(str), self.plan_arm[members]


def expected_values(candidates: Candidates, economics: Economics) -> tuple[np.ndarray, np.ndarray]:
    """(values, costs), users x arms: expected incremental margin net of the incentive, and
    the expected incentive spend."""
    unit = np.array([economics.unit_costs[arm] for arm in candidates.arms], dtype=np.float64)
    p0 = np.clip(candidates.p_control, 0.0, 1.0)[:, None]
    # The treated purchase probability stays a probability even where the two models disagree.
    uplift = np.clip(candidates.uplift, -p0, 1.0 - p0)
    costs = unit[None, :] * (p0 + uplift)
    values = uplift * economics.order_margin - costs
    return values, costs


def _rule_at_price(values: np.ndarray, costs: np.ndarray, price: float) -> np.ndarray:
    reduced = values - price * costs
    best = reduced.argmax(axis=1)
    best_reduced = np.take_along_axis(reduced, best[:, None], axis=1)[:, 0]
    return np.where(best_reduced > 0, best, NONE)


def plan_at_depth(
    campaign_id: str,
    candidates: Candidates,
    economics: Economics,
    budget: float,
    holdout_fraction: float,
    exploration_share: float,
    key: str,
    model_ratio: Interval | None = None,
    top: int = 5,
) -> Plan:
    """Plan one campaign at one discount depth.

    Args:
        campaign_id: the campaign (part of every keyed draw).
        candidates: the scored population.
        economics: order value and unit costs at this depth.
        budget: the most the expected incentive spend may be.
        holdout_fraction: the share of each value segment held out.
        exploration_share: the share of targeted users given a random promotion type.
        key: the randomization key.
        model_ratio: realized / predicted uplift of the champion on the latest past campaign
            (with its interval): scales the intervals for the models' own error. None: the
            intervals cover the outcomes' randomness only, and the summary says so.
        top: how many segments the summary lists.

    Returns:
        The :class:`Plan`; its expected spend never exceeds ``budget``.
    """
    n = len(candidates.user_ids)
    values, costs = expected_values(candidates, economics)
    role = np.full(n, NOT_TARGETED, dtype=object)
    role[candidates.is_bot] = EXCLUDED_BOT
    role[candidates.excluded & ~candidates.is_bot] = EXCLUDED_LIST
    eligible = np.flatnonzero(role == NOT_TARGETED)

    holdout_draw = keyed_uniform(campaign_id, candidates.user_ids[eligible], key, "holdout")
    held = stratified_holdout(holdout_draw, candidates.segment[eligible], holdout_fraction)
    held_users = eligible[held]
    pool = eligible[~held]
    role[held_users] = HOLDOUT

    # 1. The best assignment over the pool.
    first = solve_budgeted(values[pool], costs[pool], budget)
    choice = np.full(n, NONE)
    choice[pool] = first.choice

    # 2. Exploration: a keyed share of the targeted users gets a random promotion type; the
    #    rest of the budget is re-optimized around what they cost.
    targeted = pool[first.choice != NONE]
    explore_draw = keyed_uniform(campaign_id, candidates.user_ids[targeted], key, "explore")
    explorers = targeted[explore_draw < exploration_share]
    arm_draw = keyed_uniform(campaign_id, candidates.user_ids[explorers], key, "explore-arm")
    explorer_arm = np.minimum(
        (arm_draw * len(candidates.arms)).astype(np.int64), len(candidates.arms) - 1
    )
    explorer_cost = costs[explorers, explorer_arm]
    # Keep explorers in draw order while they fit (only binds when random types cost more
    # than the whole budget allows).
    order = np.argsort(explore_draw[explore_draw < exploration_share], kind="stable")
    fits = np.zeros(len(explorers), dtype=bool)
    fits[order] = np.cumsum(explorer_cost[order]) <= budget
    explorers, explorer_arm, explorer_cost = (
        explorers[fits],
        explorer_arm[fits],
        explorer_cost[fits],
    )
    rest = np.setdiff1d(pool, explorers, assume_unique=True)
    # Nearly the same problem as the first: start the price search at its price.
    final = solve_budgeted(
        values[rest], costs[rest], budget - float(explorer_cost.sum()), price_hint=first.price
    )
    choice[:] = NONE
    choice[rest] = final.choice
    choice[explorers] = explorer_arm
    role[rest[final.choice != NONE]] = TARGETED
    role[explorers] = EXPLORATION

    # 3. The holdout's counterfactual: the promotion the same rule (the final budget price)
    #    would have given each held-out user.
    choice[held_users] = _rule_at_price(values[held_users], costs[held_users], final.price)
    # Held-out users the first solve's rule targets and whose exploration draw is under the
    # share would have explored: like the explorers, they get no plan arm.
    first_rule = _rule_at_price(values[held_users], costs[held_users], first.price)
    held_draw = keyed_uniform(campaign_id, candidates.user_ids[held_users], key, "explore")
    would_explore = held_users[(first_rule != NONE) & (held_draw < exploration_share)]

    arm = np.full(n, None, dtype=object)
    has = choice != NONE
    arm[has] = np.asarray(candidates.arms, dtype=object)[choice[has]]
    expected_value = np.zeros(n)
    expected_cost = np.zeros(n)
    expected_value[has] = values[np.flatnonzero(has), choice[has]]
    expected_cost[has] = costs[np.flatnonzero(has), choice[has]]
    plan_arm = np.where(np.isin(role, (TARGETED, HOLDOUT)), arm, None)
    plan_arm[would_explore] = None

    summary = _summarize(
        campaign_id,
        candidates,
        economics,
        budget,
        role,
        arm,
        choice,
        expected_value,
        expected_cost,
        final,
        first,
        model_ratio,
        top,
    )
    return Plan(
        user_ids=candidates.user_ids,
        segment=candidates.segment,
        role=role,
        arm=arm,
        expected_value=expected_value,
        expected_cost=expected_cost,
        candidates=candidates,
        economics=economics,
        values=values,
        costs=costs,
        summary=summary,
        plan_arm=plan_arm,
    )


def _summarize(
    campaign_id: str,
    candidates: Candidates,
    economics: Economics,
    budget: float,
    role: np.ndarray,
    arm: np.ndarray,
    choice: np.ndarray,
    expected_value: np.ndarray,
    expected_cost: np.ndarray,
    final: Allocation,
    first: Allocation,
    model_ratio: Interval | None,
    top: int,
) -> PlanSummary:
    treated = np.isin(role, (TARGETED, EXPLORATION))
    rows = np.flatnonzero(treated)
    p0 = np.clip(candidates.p_control[rows], 0.0, 1.0)
    uplift = np.clip(candidates.uplift[rows, choice[rows]], -p0, 1.0 - p0)
    p1 = p0 + uplift
    orders = float(uplift.sum())
    # Outcome randomness: treated and counterfactual purchases as independent Bernoullis.
    orders_sd = float(np.sqrt((p1 * (1 - p1)).sum() + (p0 * (1 - p0)).sum()))
    if model_ratio is None:
        ratio_low = ratio_high = 1.0
        uncertainty = (
            "outcome randomness only: no past campaign could be scored to measure the "
            "models' own error"
        )
    else:
        ratio_low, ratio_high = model_ratio.low, model_ratio.high
        uncertainty = (
            f"outcome randomness and the models' error on the latest past campaign "
            f"(realized / predicted uplift {model_ratio.estimate:.2f}, 90 % interval "
            f"{model_ratio.low:.2f} to {model_ratio.high:.2f})"
        )

    def interval(per_order: float, fixed: float = 0.0) -> Interval:
        # From "as predicted" to "as far off as last time", whichever way that goes: the
        # estimate stays the models' own and inside its interval.
        scaled = [orders * r * per_order for r in (1.0, ratio_low, ratio_high)]
        ends = (min(scaled), max(scaled))
        spread = Z90 * orders_sd * abs(per_order)
        return Interval(
            orders * per_order + fixed, ends[0] - spread + fixed, ends[1] + spread + fixed
        )

    spend = float(expected_cost[treated].sum())
    segments = []
    for segment in np.unique(candidates.segment[rows]) if rows.size else ():
        for name in candidates.arms:
            mask = (candidates.segment[rows] == segment) & (arm[rows] == name)
            if mask.any():
                users = rows[mask]
                segments.append(
                    SegmentLine(
                        segment=str(segment),
                        arm=name,
                        users=int(mask.sum()),
                        incremental_orders=float(uplift[mask].sum()),
                        incremental_margin=float(expected_value[users].sum()),
                        spend=float(expected_cost[users].sum()),
                    )
                )
    segments.sort(key=lambda s: (-s.incremental_margin, s.segment, s.arm))
    arm_users = {name: int(((arm == name) & treated).sum()) for name in candidates.arms}
    return PlanSummary(
        campaign_id=campaign_id,
        discount_depth=economics.discount_depth,
        budget=budget,
        expected_spend=spend,
        eligible_users=int(np.isin(role, (TARGETED, EXPLORATION, HOLDOUT, NOT_TARGETED)).sum()),
        excluded_bots=int((role == EXCLUDED_BOT).sum()),
        excluded_listed=int((role == EXCLUDED_LIST).sum()),
        targeted_users=int((role == TARGETED).sum()),
        exploration_users=int((role == EXPLORATION).sum()),
        holdout_users=int((role == HOLDOUT).sum()),
        holdout_control_users=int(((role == HOLDOUT) & (choice != NONE)).sum()),
        arm_users=arm_users,
        incremental_orders=interval(1.0),
        incremental_revenue=interval(economics.order_revenue),
        incremental_margin=interval(economics.order_margin, fixed=-spend),
        # The bound of the first, exploration-free problem: what the best plan could reach.
        lp_bound=first.lp_bound,
        optimality_gap=final.gap,
        model_uncertainty=uncertainty,
        top_segments=tuple(segments[:top]),
    )


def plan_campaign(
    campaign_id: str,
    scored: dict[float, tuple[Candidates, Economics]],
    budget: float,
    holdout_fraction: float,
    exploration_share: float,
    key: str,
    model_ratio: Interval | None = None,
) -> Plan:
    """Plan at every candidate discount depth and keep the depth whose plan has the highest
    expected incremental margin (ties: the shallower depth). The summary lists every depth's
    margin, so the approver sees what the choice was between."""
    if not scored:
        raise ValueError("no discount depth to plan at")
    plans = {
        depth: plan_at_depth(
            campaign_id,
            candidates,
            economics,
            budget,
            holdout_fraction,
            exploration_share,
            key,
            model_ratio,
        )
        for depth, (candidates, economics) in sorted(scored.items())
    }
    margins = {f"{d:g}": p.summary.incremental_margin.estimate for d, p in plans.items()}
    best = max(sorted(plans), key=lambda d: (plans[d].summary.incremental_margin.estimate, -d))
    chosen = plans[best]
    return replace(chosen, summary=replace(chosen.summary, depth_margins=margins))
