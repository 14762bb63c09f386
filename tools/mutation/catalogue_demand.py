"""Demand bugs (issue 20): the discount effect left unconstrained, stock-outs taken as demand,
a margin that forgets the cost. Each was put in by hand once and failed the named test; this
keeps them caught."""

from tools.mutation.run import Mutation

QUANTILE = "flashsale_ml/models/demand/quantile.py"
SALE = "flashsale_ml/models/demand/sale.py"
DECISIONS = "flashsale_ml/models/demand/decisions.py"
KIND_TESTS = "tests/test_demand_kind.py"

MUTATIONS = [
    Mutation(
        "a_discount_unconstrained",
        QUANTILE,
        '"monotone_constraints": constraints,',
        '"monotone_constraints": [0] * len(constraints),',
        (f"{KIND_TESTS}::test_quantiles_never_cross_and_never_fall_with_the_discount",),
        "the boosters may forecast less demand at a deeper discount",
    ),
    Mutation(
        "b_stock_outs_taken_as_demand",
        SALE,
        "    return np.where(sold_out, units / np.maximum(share, share_floor), units)",
        "    return units",
        (f"{KIND_TESTS}::test_censoring_correction_brings_the_target_closer_to_true_demand",),
        "sales of sold-out SKUs are trained on as if they were their demand",
    ),
    Mutation(
        "c_margin_without_cost",
        DECISIONS,
        "    unit_margin = price - np.repeat(cost, n_depths)",
        "    unit_margin = price + 0.0 * np.repeat(cost, n_depths)",
        ("tests/test_demand_decisions.py",),
        "the depth recommendation maximises revenue, not margin",
    ),
]
