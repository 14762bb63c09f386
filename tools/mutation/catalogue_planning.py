"""Planning bugs (issue 18): a budget broken by exploration, bots targeted, a holdout that is not
stratified, a plan the dual does not bound, a targeted campaign judged by an even split, and
its promotions measured against the whole control group or with a wrong counterfactual.
Each was put in by hand once and failed the named test; this keeps them caught."""

from tools.mutation.run import Mutation

PLAN = "flashsale_ml/planning/plan.py"
ALLOCATION = "flashsale_ml/planning/allocation.py"
EVALUATION = "flashsale_ml/evaluation/campaign.py"
VALIDATION = "flashsale_ml/validation/relational.py"
UNIT = "tests/test_planning.py"
UPLIFT_FLAVORS = "flashsale_ml/models/uplift/flavors.py"
UPLIFT_TESTS = "tests/test_uplift_kind.py"

MUTATIONS = [
    Mutation(
        "a_budget_ignores_exploration_cost",
        PLAN,
        "values[rest], costs[rest], budget - float(explorer_cost.sum()), price_hint=first.price",
        "values[rest], costs[rest], budget, price_hint=first.price",
        (f"{UNIT}::test_the_budget_holds_and_is_used",),
        "explorers' random promotions are paid on top of a fully spent budget",
    ),
    Mutation(
        "b_bots_targeted",
        PLAN,
        "    role[candidates.is_bot] = EXCLUDED_BOT\n",
        "",
        (f"{UNIT}::test_bots_and_excluded_users_are_never_targeted_and_counted",),
        "accounts flagged as bots get promotions",
    ),
    Mutation(
        "c_holdout_not_stratified",
        PLAN,
        "held = stratified_holdout(holdout_draw, candidates.segment[eligible], holdout_fraction)",
        "held = holdout_draw < holdout_fraction",
        (f"{UNIT}::test_holdout_is_balanced_across_segments",),
        "a coin flip per user: segments drift off the holdout fraction",
    ),
    Mutation(
        "d_no_greedy_fill",
        ALLOCATION,
        "    choice, upgrades = _greedy_fill(values, costs, choice, budget - spend)\n",
        "    upgrades = 0\n",
        (f"{UNIT}::test_knapsack_matches_highs_and_the_exact_optimum",),
        "the budget left by the dual solution is never spent",
    ),
    Mutation(
        "e_targeted_campaign_even_split_srm",
        VALIDATION,
        "        if design == TARGETED:",
        '        if design == "never":',
        (
            "tests/test_planning_step.py::test_the_published_plan_plays_out_validates_and_is_evaluated",
        ),
        "a plan's unequal arms trip the even-split sample-ratio test",
    ),
    Mutation(
        "f_targeted_promotion_against_every_control_user",
        UPLIFT_FLAVORS,
        "& (~targeted | (plan_arm == arm))",
        "",
        (
            f"{UPLIFT_TESTS}::"
            "test_a_targeted_campaign_compares_each_promotion_with_its_own_control_users",
        ),
        "the uplift gates compare a plan's promotion with users the plan meant for others",
    ),
    Mutation(
        "g_control_plan_arm_not_the_counterfactual",
        PLAN,
        "plan_arm = np.where(np.isin(role, (TARGETED, HOLDOUT)), arm, None)",
        "plan_arm = np.where(np.isin(role, (TARGETED, HOLDOUT)), np.roll(arm, 1), None)",
        (f"{UNIT}::test_within_a_plan_arm_treated_and_control_users_are_alike",),
        "control users carry a plan arm the rule would not have given them",
    ),
    Mutation(
        "h_exploration_thins_only_the_treated",
        PLAN,
        "    plan_arm[would_explore] = None\n",
        "",
        (f"{UNIT}::test_within_a_plan_arm_control_is_the_holdout_share",),
        "control users the exploration draw would have taken keep their plan arm, so each "
        "plan arm's control is larger than its holdout share",
    ),
    Mutation(
        "i_targeted_evaluation_against_every_control_user",
        "flashsale_ml/evaluation/campaign.py",
        "    if design.design != TARGETED:\n        return plain, ()",
        "    if True:\n        return plain, ()",
        (
            "tests/test_planning_step.py::"
            "test_the_published_plan_plays_out_validates_and_is_evaluated",
        ),
        "the report measures a plan's promotion against users the plan meant for others",
    ),
]
