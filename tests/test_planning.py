"""Campaign planning, the pure parts: the spec's checks, the knapsack against HiGHS, the keyed
holdout and exploration, the budget, exclusions and reproducibility of a plan."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_array, vstack

from flashsale_ml.contract import CONTROL_ARM, PROMO_TYPES
from flashsale_ml.evaluation.effects import sample_ratio_mismatch
from flashsale_ml.planning.allocation import NONE, lp_bound_highs, solve_budgeted
from flashsale_ml.planning.output import (
    PlanNotCommittedError,
    publish_plan,
    read_plan,
    read_plan_table,
)
from flashsale_ml.planning.plan import (
    EXCLUDED_BOT,
    EXCLUDED_LIST,
    EXPLORATION,
    HOLDOUT,
    TARGETED,
    Candidates,
    Economics,
    expected_values,
    plan_at_depth,
    plan_campaign,
)
from flashsale_ml.planning.randomize import keyed_uniform, stratified_holdout
from flashsale_ml.planning.spec import SpecError, check_against_data, load_spec, parse_spec

KEY = "test-key"


def spec_payload(**overrides) -> dict:
    payload = {
        "campaign_id": "fs-test-1",
        "start": "2026-02-14T19:00:00Z",
        "end": "2026-02-14T21:00:00Z",
        "skus": [3, 1, 2],
        "promotions": {"timed_coupon": 3.0, "pct_discount": 4.0},
        "discount_depths": [0.3, 0.2],
        "budget": 500.0,
        "holdout_fraction": 0.1,
    }
    payload.update(overrides)
    return payload


# -- the spec ------------------------------------------------------------------------------


def test_a_valid_spec_is_normalized() -> None:
    spec = parse_spec(spec_payload())
    assert spec.skus == (1, 2, 3)
    assert list(spec.promotions) == ["pct_discount", "timed_coupon"]  # contract order
    assert spec.discount_depths == (0.2, 0.3)
    assert spec.exploration_share == 0.1


@pytest.mark.parametrize(
    ("override", "field", "words"),
    [
        ({"end": "2026-02-14T18:00:00Z"}, "(spec)", "is not after start"),
        ({"budget": 0}, "budget", "must be > 0"),
        ({"budget": -5}, "budget", "must be > 0"),
        ({"promotions": {"free_lunch": 1.0}}, "promotions", "unknown promotion type"),
        ({"holdout_fraction": 0}, "holdout_fraction", "(0, 0.5]"),
        ({"holdout_fraction": 0.6}, "holdout_fraction", "(0, 0.5]"),
        ({"start": "2026-02-14T19:00:00"}, "start", "UTC"),
        ({"max_promotions_per_user": 2}, "max_promotions_per_user", "at most one"),
        ({"surprise": 1}, "surprise", "Extra inputs"),
    ],
)
def test_bad_specs_are_refused_naming_field_and_rule(override, field, words) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec_payload(**override))
    message = str(caught.value)
    assert f"{field}:" in message
    assert words in message


def test_checks_against_the_data_name_every_problem() -> None:
    spec = parse_spec(spec_payload())
    with pytest.raises(SpecError) as caught:
        check_against_data(
            spec,
            data_as_of=datetime(2026, 2, 15, tzinfo=UTC),
            known_skus={1, 2},
            campaign_id="fs-other",
            past_campaigns=["fs-test-1"],
        )
    message = str(caught.value)
    assert "earlier than the data's as-of time 2026-02-15T00:00:00Z" in message
    assert "unknown SKU(s) 3" in message
    assert "'fs-test-1' but the call asked for 'fs-other'" in message
    assert "already ran" in message
    # And the same spec against fitting data passes.
    check_against_data(spec, data_as_of=datetime(2026, 2, 14, tzinfo=UTC), known_skus={1, 2, 3})


def test_spec_files_in_yaml_and_json(tmp_path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(spec_payload()))
    (tmp_path / "a.yaml").write_text(
        "campaign_id: fs-test-1\nstart: 2026-02-14T19:00:00Z\nend: 2026-02-14T21:00:00Z\n"
        "skus: [1, 2, 3]\npromotions: {pct_discount: 4.0, timed_coupon: 3.0}\n"
        "discount_depths: [0.2, 0.3]\nbudget: 500\nholdout_fraction: 0.1\n"
    )
    assert load_spec(tmp_path / "a.json") == load_spec(tmp_path / "a.yaml")
    (tmp_path / "bad.yaml").write_text("campaign_id: [unclosed\n")
    with pytest.raises(SpecError, match="not valid yaml"):
        load_spec(tmp_path / "bad.yaml")
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.json")


# -- the knapsack --------------------------------------------------------------------------


def exact_optimum(values: np.ndarray, costs: np.ndarray, budget: float) -> float:
    n, k = values.shape
    rows = np.repeat(np.arange(n), k)
    matrix = vstack(
        [
            csr_array(costs.reshape(1, -1)),
            csr_array((np.ones(n * k), (rows, np.arange(n * k))), shape=(n, n * k)),
        ]
    )
    result = milp(
        -values.reshape(-1),
        constraints=LinearConstraint(matrix, -np.inf, np.r_[budget, np.ones(n)]),
        integrality=np.ones(n * k),
        bounds=Bounds(0, 1),
    )
    assert result.success
    return float(-result.fun)


@pytest.mark.parametrize("seed", range(4))
def test_knapsack_matches_highs_and_the_exact_optimum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.normal(0.5, 1.0, (250, 3))
    costs = rng.uniform(0.1, 2.0, (250, 3))
    budget = 35.0
    allocation = solve_budgeted(values, costs, budget)
    # The dual bound is the LP optimum HiGHS finds.
    assert allocation.lp_bound == pytest.approx(lp_bound_highs(values, costs, budget), rel=1e-9)
    # Feasible, never better than the exact integer optimum (scipy's MILP), and below the LP
    # bound by at most one user's best value (the rounding guarantee of the dual solution).
    chosen = allocation.choice != NONE
    spend = costs[np.flatnonzero(chosen), allocation.choice[chosen]].sum()
    value = values[np.flatnonzero(chosen), allocation.choice[chosen]].sum()
    assert spend <= budget + 1e-9
    assert spend == pytest.approx(allocation.spend)
    assert value == pytest.approx(allocation.value)
    optimum = exact_optimum(values, costs, budget)
    assert value <= optimum + 1e-9
    assert value >= allocation.lp_bound - values.max()
    assert allocation.gap < 5e-3


def test_knapsack_beats_the_best_single_option_ranking() -> None:
    """A fixed ranking by value per cost of each user's best-value option (top-k) leaves value
    on the table that choosing among options recovers."""
    rng = np.random.default_rng(11)
    values = rng.gamma(2.0, 1.0, (2_000, 3))
    costs = rng.uniform(0.2, 3.0, (2_000, 3))
    budget = 300.0
    allocation = solve_budgeted(values, costs, budget)
    best = values.argmax(axis=1)
    v, c = values[np.arange(2_000), best], costs[np.arange(2_000), best]
    order = np.argsort(-v / c)
    take = order[np.cumsum(c[order]) <= budget]
    assert allocation.value > v[take].sum() * 1.05


def test_an_unbinding_budget_takes_every_positive_option() -> None:
    values = np.array([[1.0, 2.0], [-1.0, -0.5], [0.5, 0.0]])
    costs = np.ones_like(values)
    allocation = solve_budgeted(values, costs, 100.0)
    assert allocation.choice.tolist() == [1, NONE, 0]
    assert allocation.value == allocation.lp_bound == 2.5
    assert allocation.gap == 0


@pytest.mark.parametrize(
    ("values", "costs", "budget", "words"),
    [
        (np.ones((2, 2)), np.ones((2, 3)), 1.0, "one shape"),
        (np.array([[np.nan, 1.0]]), np.ones((1, 2)), 1.0, "finite"),
        (np.ones((1, 2)), -np.ones((1, 2)), 1.0, "costs must be >= 0"),
        (np.ones((1, 2)), np.ones((1, 2)), -1.0, "budget"),
    ],
)
def test_knapsack_refuses_bad_input(values, costs, budget, words) -> None:
    with pytest.raises(ValueError, match=words):
        solve_budgeted(values, costs, budget)


# -- keyed randomization -------------------------------------------------------------------


def test_keyed_draws_are_reproducible_uniform_and_independent() -> None:
    users = np.arange(1, 50_001, dtype=np.int64) * 7919
    a = keyed_uniform("c1", users, KEY, "holdout")
    assert np.array_equal(a, keyed_uniform("c1", users, KEY, "holdout"))
    assert stats.kstest(a, "uniform").pvalue > 1e-3
    for other in (
        keyed_uniform("c2", users, KEY, "holdout"),
        keyed_uniform("c1", users, "another key", "holdout"),
        keyed_uniform("c1", users, KEY, "explore"),
    ):
        assert abs(stats.pearsonr(a, other).statistic) < 0.02
        assert not np.array_equal(a, other)


def test_stratified_holdout_takes_the_exact_share_of_every_stratum() -> None:
    rng = np.random.default_rng(0)
    strata = rng.choice(["high", "mid", "low"], 10_001, p=[0.1, 0.3, 0.6])
    draws = keyed_uniform("c", np.arange(10_001), KEY, "holdout")
    held = stratified_holdout(draws, strata, 0.15)
    for stratum in ("high", "mid", "low"):
        members = strata == stratum
        assert held[members].sum() == round(0.15 * members.sum())


# -- the plan ------------------------------------------------------------------------------


def candidates(n: int = 20_000, seed: int = 3) -> Candidates:
    rng = np.random.default_rng(seed)
    arms = PROMO_TYPES
    p_control = rng.beta(1.0, 12.0, n)
    uplift = rng.normal(0.02, 0.03, (n, len(arms))) * (1 + 2 * rng.random((n, 1)))
    return Candidates(
        user_ids=np.arange(n, dtype=np.int64) * 104_729 + 5,
        segment=rng.choice(np.array(["high", "mid", "low"]), n, p=[0.2, 0.3, 0.5]),
        is_bot=rng.random(n) < 0.02,
        excluded=rng.random(n) < 0.01,
        p_control=p_control,
        uplift=uplift,
        arms=arms,
    )


def economics(depth: float = 0.3) -> Economics:
    return Economics(
        discount_depth=depth,
        order_revenue=60.0 * (1 - depth),
        order_margin=60.0 * (1 - depth) - 25.0,
        unit_costs={"pct_discount": 4.0, "gift_with_purchase": 6.0, "timed_coupon": 2.5},
    )


def make_plan(campaign_id: str = "fs-1", budget: float = 400.0, cands: Candidates | None = None):
    return plan_at_depth(
        campaign_id,
        cands or candidates(),
        economics(),
        budget=budget,
        holdout_fraction=0.1,
        exploration_share=0.1,
        key=KEY,
    )


def test_the_budget_holds_and_is_used() -> None:
    plan = make_plan()
    treated = np.isin(plan.role, (TARGETED, EXPLORATION))
    spend = plan.expected_cost[treated].sum()
    assert spend <= 400.0 + 1e-9
    assert spend > 0.99 * 400.0
    assert plan.summary.expected_spend == pytest.approx(spend)
    # Expected cost is the unit cost times the purchase probability with the promotion.
    _, costs = expected_values(plan.candidates, plan.economics)
    rows = np.flatnonzero(treated)
    arm_index = {a: i for i, a in enumerate(plan.candidates.arms)}
    picked = np.array([arm_index[a] for a in plan.arm[rows]])
    assert np.allclose(plan.expected_cost[rows], costs[rows, picked])


def test_bots_and_excluded_users_are_never_targeted_and_counted() -> None:
    plan = make_plan()
    c = plan.candidates
    assert set(plan.role[c.is_bot]) == {EXCLUDED_BOT}
    assert set(plan.role[c.excluded & ~c.is_bot]) == {EXCLUDED_LIST}
    users, _, _ = plan.assignment_arms()
    assert not np.isin(users, c.user_ids[c.is_bot | c.excluded]).any()
    assert plan.summary.excluded_bots == int(c.is_bot.sum())
    assert plan.summary.excluded_listed == int((c.excluded & ~c.is_bot).sum())


def test_holdout_is_balanced_across_segments() -> None:
    """Within every value segment, the control group (held-out users the rule would target)
    and the treated users split as the holdout fraction says: no sample-ratio mismatch."""
    plan = make_plan(budget=1_500.0)
    users, arms, _ = plan.assignment_arms()
    segment_of = dict(zip(plan.user_ids.tolist(), plan.segment.tolist(), strict=True))
    segments = np.array([segment_of[u] for u in users.tolist()])
    for segment in ("high", "mid", "low"):
        in_segment = segments == segment
        control = int((arms[in_segment] == CONTROL_ARM).sum())
        treated = int(in_segment.sum()) - control
        assert control > 20
        _, p_value = sample_ratio_mismatch(
            {"control": control, "treated": treated}, {"control": 0.1, "treated": 0.9}
        )
        assert p_value > 1e-3, (segment, control, treated)
    # Every eligible segment loses exactly its share to the holdout.
    for segment in ("high", "mid", "low"):
        eligible = (plan.segment == segment) & ~np.isin(plan.role, (EXCLUDED_BOT, EXCLUDED_LIST))
        assert (plan.role[eligible] == HOLDOUT).sum() == round(0.1 * eligible.sum())


def test_holdout_users_are_never_treated_and_carry_their_counterfactual_arm() -> None:
    plan = make_plan()
    held = plan.role == HOLDOUT
    users, arms, plan_arms = plan.assignment_arms()
    held_ids = set(plan.user_ids[held].tolist())
    assert {
        u for u, a in zip(users.tolist(), arms.tolist(), strict=True) if a != CONTROL_ARM
    }.isdisjoint(held_ids)
    assert all(
        a == CONTROL_ARM
        for u, a in zip(users.tolist(), arms.tolist(), strict=True)
        if u in held_ids
    )
    # The control users' plan arm is the promotion the rule would have given them; a targeted
    # user's is the one received; an explorer's random promotion has none.
    arm_of = dict(zip(plan.user_ids.tolist(), plan.arm.tolist(), strict=True))
    role_of = dict(zip(plan.user_ids.tolist(), plan.role.tolist(), strict=True))
    for user, arm, plan_arm in zip(users.tolist(), arms.tolist(), plan_arms.tolist(), strict=True):
        if role_of[user] == EXPLORATION:
            assert plan_arm is None
        elif role_of[user] == HOLDOUT and plan_arm is None:
            pass  # the exploration draw would have made this user an explorer
        else:
            assert plan_arm == arm_of[user] and plan_arm in PROMO_TYPES
            assert arm in (CONTROL_ARM, plan_arm)


def test_within_a_plan_arm_treated_and_control_users_are_alike() -> None:
    """The plan gives each promotion to the users it suits, so a promotion's treated users
    differ from the control group as a whole; within one plan arm the holdout draw alone split
    them, so their predicted effect of that promotion is the same up to sampling noise (a
    Welch test). This is what lets evaluation and the uplift gates measure each promotion of a
    targeted campaign."""
    # Equal unit costs, so the rule spreads the users over every promotion.
    same_costs = replace(economics(), unit_costs=dict.fromkeys(PROMO_TYPES, 3.0))
    plan = plan_at_depth(
        "fs-1", candidates(), same_costs, 2_000.0, holdout_fraction=0.2, exploration_share=0.1,
        key=KEY,
    )  # fmt: skip
    users, arms, plan_arms = plan.assignment_arms()
    row = {u: i for i, u in enumerate(plan.user_ids.tolist())}
    rows = np.array([row[u] for u in users.tolist()])
    control = arms == CONTROL_ARM
    compared, pooled_off = 0, []
    for k, name in enumerate(plan.candidates.arms):
        effect = plan.candidates.uplift[rows, k]
        mine = plan_arms == name
        treated, held = effect[mine & ~control], effect[mine & control]
        if len(held) < 20:
            continue
        compared += 1
        se = np.sqrt(treated.var(ddof=1) / len(treated) + held.var(ddof=1) / len(held))
        assert abs(treated.mean() - held.mean()) < 4 * se, name
        # Against every control user the comparison is off: the other plan arms' users were
        # chosen for other promotions.
        everyone = effect[control]
        se_all = np.sqrt(treated.var(ddof=1) / len(treated) + everyone.var(ddof=1) / len(everyone))
        pooled_off.append(abs(treated.mean() - everyone.mean()) / se_all)
    assert compared == len(PROMO_TYPES)
    assert max(pooled_off) > 4, pooled_off


def test_within_a_plan_arm_control_is_the_holdout_share() -> None:
    """Exploration takes a keyed share of the targeted users out of every plan arm; the
    control users the same draw would have made explorers are left without a plan arm too,
    so within each plan arm control is the holdout fraction of its users (a sample-ratio
    test), not inflated by the explorers missing from the treated side."""
    same_costs = replace(economics(), unit_costs=dict.fromkeys(PROMO_TYPES, 3.0))
    plan = plan_at_depth(
        "fs-1", candidates(n=100_000), same_costs, 10_000.0, holdout_fraction=0.1,
        exploration_share=0.2, key=KEY,
    )  # fmt: skip
    _, arms, plan_arms = plan.assignment_arms()
    control_without = ((arms == CONTROL_ARM) & (plan_arms == None)).sum()  # noqa: E711
    assert control_without > 0
    for name in PROMO_TYPES:
        mine = plan_arms == name
        control = int((mine & (arms == CONTROL_ARM)).sum())
        treated = int((mine & (arms == name)).sum())
        assert control > 500, name
        _, p_value = sample_ratio_mismatch(
            {"control": control, "treated": treated}, {"control": 0.1, "treated": 0.9}
        )
        assert p_value > 1e-3, (name, control, treated)


def test_exploration_takes_its_share_with_random_types() -> None:
    plan = make_plan(budget=1_500.0)
    explorers = plan.role == EXPLORATION
    treated = np.isin(plan.role, (TARGETED, EXPLORATION))
    share = explorers.sum() / treated.sum()
    assert 0.07 < share < 0.13
    # Random types: every type appears, not only the one the plan prefers.
    counts = {a: int((plan.arm[explorers] == a).sum()) for a in PROMO_TYPES}
    assert min(counts.values()) > 0.2 * explorers.sum() / len(PROMO_TYPES), counts


def test_the_same_inputs_give_the_same_plan_and_another_campaign_another_holdout() -> None:
    first, second = make_plan(), make_plan()
    for name in ("role", "arm", "expected_value", "expected_cost"):
        assert np.array_equal(getattr(first, name), getattr(second, name))
    other = make_plan("fs-2")
    assert not np.array_equal(first.role == HOLDOUT, other.role == HOLDOUT)


def test_the_plan_targets_by_value_not_by_purchase_probability() -> None:
    """Users likely to buy anyway, whom the promotion does not move, are not worth a
    promotion: the plan prefers movable users even when they buy less often."""
    n = 4_000
    rng = np.random.default_rng(5)
    likely = rng.random(n) < 0.5
    cands = Candidates(
        user_ids=np.arange(n, dtype=np.int64),
        segment=np.full(n, "mid"),
        is_bot=np.zeros(n, bool),
        excluded=np.zeros(n, bool),
        p_control=np.where(likely, 0.6, 0.05),
        uplift=np.where(likely[:, None], 0.0, 0.08) * np.ones((n, 3)),
        arms=PROMO_TYPES,
    )
    plan = make_plan(cands=cands, budget=200.0)
    targeted = plan.role == TARGETED
    assert targeted.sum() > 100
    assert not likely[targeted].any()


def test_the_best_depth_is_chosen_and_every_depth_reported() -> None:
    cands = candidates()
    scored = {0.2: (cands, economics(0.2)), 0.5: (cands, economics(0.5))}
    plan = plan_campaign("fs-1", scored, 400.0, 0.1, 0.1, KEY)
    # At 50 % off an order's margin (5) is below most incentives: 20 % wins.
    assert plan.summary.discount_depth == 0.2
    assert set(plan.summary.depth_margins) == {"0.2", "0.5"}
    assert plan.summary.depth_margins["0.2"] > plan.summary.depth_margins["0.5"]


# -- the plan folder -----------------------------------------------------------------------


def test_plan_folder_commits_atomically_and_replaces_an_older_plan(tmp_path, monkeypatch) -> None:
    import pyarrow as pa

    out = tmp_path / "plans" / "fs-1"
    tables = {"targeting": pa.table({"user_id": [1, 2]}), "assignments": pa.table({"x": [1]})}
    publish_plan(out.as_uri(), tables, "# plan\n", {"campaign_id": "fs-1"}, {"run": "a"})
    assert read_plan(out.as_uri())["campaign_id"] == "fs-1"
    assert read_plan_table(out.as_uri(), "targeting").num_rows == 2

    # A failure while writing the new plan leaves the old one whole and no staging behind.
    from pathlib import Path

    real_write = Path.write_bytes
    calls = {"n": 0}

    def failing_write(self, data):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", failing_write)
    with pytest.raises(OSError, match="disk full"):
        publish_plan(out.as_uri(), tables, "# new plan\n", {"campaign_id": "fs-1"}, {})
    monkeypatch.undo()
    assert (out / "summary.md").read_text() == "# plan\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["fs-1"]

    # A changed file is caught by its hash.
    (out / "targeting.parquet").write_bytes(b"garbage")
    with pytest.raises(PlanNotCommittedError, match=r"targeting\.parquet does not match"):
        read_plan(out.as_uri())
    with pytest.raises(PlanNotCommittedError, match="no committed plan"):
        read_plan((tmp_path / "nothing").as_uri())


def test_plan_folder_on_s3(s3_lake) -> None:
    import pyarrow as pa

    uri = s3_lake.uri("plans/fs-1")
    tables = {"targeting": pa.table({"user_id": [1, 2, 3]})}
    publish_plan(uri, tables, "# plan\n", {"campaign_id": "fs-1"}, {"run": "a"})
    assert read_plan(uri)["files"]["summary.md"]
    assert read_plan_table(uri, "targeting").num_rows == 3


def test_intervals_hold_the_estimate_and_widen_with_the_models_error() -> None:
    from flashsale_ml.planning.plan import Interval

    plain = make_plan().summary
    off = plan_at_depth(
        "fs-1",
        candidates(),
        economics(),
        budget=400.0,
        holdout_fraction=0.1,
        exploration_share=0.1,
        key=KEY,
        model_ratio=Interval(2.5, 1.5, 4.0),
    ).summary
    for summary in (plain, off):
        for interval in (summary.incremental_orders, summary.incremental_margin):
            assert interval.low <= interval.estimate <= interval.high
    assert off.incremental_orders.estimate == pytest.approx(plain.incremental_orders.estimate)
    assert off.incremental_orders.high > plain.incremental_orders.high + 1.5 * (
        plain.incremental_orders.estimate
    )
    assert "randomness only" in plain.model_uncertainty
    assert "realized / predicted uplift 2.50" in off.model_uncertainty


@pytest.mark.parametrize("factor", [0.01, 0.7, 1.0, 1.3, 50.0])
def test_a_price_hint_changes_the_speed_not_the_answer(factor: float) -> None:
    rng = np.random.default_rng(8)
    values = rng.normal(0.5, 1.0, (400, 3))
    costs = rng.uniform(0.1, 2.0, (400, 3))
    plain = solve_budgeted(values, costs, 50.0)
    hinted = solve_budgeted(values, costs, 50.0, price_hint=plain.price * factor)
    assert hinted.value == pytest.approx(plain.value, rel=1e-9)
    assert hinted.lp_bound == pytest.approx(plain.lp_bound, rel=1e-9)
    assert hinted.spend <= 50.0 + 1e-9


def test_the_summary_warns_when_the_holdout_cannot_measure_the_campaign() -> None:
    from flashsale_ml.planning.summary import MIN_MEASURABLE_CONTROL, render_markdown

    tiny = make_plan(budget=5.0).summary
    ample = make_plan(budget=1_500.0).summary
    assert tiny.holdout_control_users < MIN_MEASURABLE_CONTROL <= ample.holdout_control_users
    assert "Warning" in render_markdown(tiny, "a", "b", {}, "s")
    assert "Warning" not in render_markdown(ample, "a", "b", {}, "s")
