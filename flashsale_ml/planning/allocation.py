"""Budgeted promotion assignment: the multiple-choice knapsack, solved through its LP dual.

Each user gets at most one option (a promotion type) or none. Option k of user i is worth
``values[i, k]`` (expected incremental margin, net of its incentive cost) and costs
``costs[i, k]`` (expected incentive spend); the total cost must stay within the budget.

The LP relaxation of this problem has a one-dimensional dual: for a price ``lam`` on a unit of
budget, every user independently takes the option that maximizes ``value - lam * cost`` (or
none when all are negative), and the dual bound is ``lam * budget + sum_i max(0, max_k(value
- lam * cost))``. Spend falls as ``lam`` grows, so bisection finds the smallest price at which
the users' own choices fit the budget. Those choices are the LP optimum except for the users
indifferent at that price (Sinha & Zoltners 1979: at most one is fractional once ties are
broken); a greedy fill then spends what is left on the best value-per-cost upgrades among
them. The result is feasible (spend never exceeds the budget) and its value is reported
against the LP bound, so the gap to the optimum is known, not assumed.

References:
    Sinha, P. & Zoltners, A. A. (1979). The multiple-choice knapsack problem. Operations
    Research 27(3), 503-515.
    Kellerer, H., Pferschy, U. & Pisinger, D. (2004). Knapsack Problems, ch. 11. Springer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NONE = -1  # the "no promotion" choice


@dataclass(frozen=True)
class Allocation:
    """The chosen option per user and what it is worth.

    Attributes:
        choice: option index per user, or :data:`NONE`.
        value: total value of the chosen options.
        spend: total cost of the chosen options (never above ``budget``).
        budget: the budget solved for.
        lp_bound: the LP relaxation's optimum (an upper bound on any assignment's value).
        price: the budget's shadow price (the dual variable) at the solution.
        fill_upgrades: users upgraded by the greedy fill after the dual solution.
    """

    choice: np.ndarray
    value: float
    spend: float
    budget: float
    lp_bound: float
    price: float
    fill_upgrades: int

    @property
    def gap(self) -> float:
        """Relative gap to the LP bound: 0 is provably optimal."""
        if self.lp_bound <= 0:
            return 0.0
        return max(0.0, (self.lp_bound - self.value) / self.lp_bound)


def _validate(values: np.ndarray, costs: np.ndarray, budget: float) -> tuple[np.ndarray, ...]:
    values = np.asarray(values, dtype=np.float64)
    costs = np.asarray(costs, dtype=np.float64)
    if values.ndim != 2 or values.shape != costs.shape:
        raise ValueError(
            f"values and costs must be 2-d arrays of one shape (users x options), got "
            f"{values.shape} and {costs.shape}"
        )
    if not (np.isfinite(values).all() and np.isfinite(costs).all()):
        raise ValueError("values and costs must be finite (a model returned NaN or inf?)")
    if (costs < 0).any():
        raise ValueError(f"costs must be >= 0, found {costs.min()}")
    if not (np.isfinite(budget) and budget >= 0):
        raise ValueError(f"budget must be a finite number >= 0, got {budget}")
    return values, costs


def _choose(values: np.ndarray, costs: np.ndarray, price: float) -> tuple[np.ndarray, np.ndarray]:
    """Each user's best option at ``price`` per unit of cost (NONE when nothing is positive);
    also the reduced value ``max(0, best)`` each user contributes to the dual."""
    reduced = values - price * costs
    best = reduced.argmax(axis=1)
    best_reduced = np.take_along_axis(reduced, best[:, None], axis=1)[:, 0]
    # Ties with "none" go to "none": an option worth exactly its cost's price is not worth it.
    choice = np.where(best_reduced > 0, best, NONE)
    return choice, np.maximum(best_reduced, 0.0)


def _picked(matrix: np.ndarray, choice: np.ndarray) -> np.ndarray:
    taken = choice != NONE
    out = np.zeros(len(choice))
    out[taken] = matrix[np.flatnonzero(taken), choice[taken]]
    return out


def solve_budgeted(
    values: np.ndarray,
    costs: np.ndarray,
    budget: float,
    max_iterations: int = 100,
    price_hint: float | None = None,
) -> Allocation:
    """Assign at most one option per user to maximize total value with total cost <= budget.

    Args:
        values: users x options, the value of each option (may be negative: never chosen).
        costs: users x options, the cost of each option (>= 0).
        budget: the most the chosen options may cost together.
        max_iterations: bisection steps on the budget's price (each halves the bracket).
        price_hint: a price near the answer (e.g. a similar problem's): the search brackets
            it first, which saves full passes over the users when it is close.

    Returns:
        An :class:`Allocation` whose spend is at most ``budget``, with its LP bound.

    Raises:
        ValueError: shapes differ, a value is not finite, a cost is negative, or the budget is
            negative.
    """
    values, costs = _validate(values, costs, budget)
    n = values.shape[0]
    if n == 0 or values.shape[1] == 0:
        return Allocation(np.full(n, NONE), 0.0, 0.0, budget, 0.0, 0.0, 0)

    choice, _ = _choose(values, costs, 0.0)
    spend = float(_picked(costs, choice).sum())
    if spend <= budget:  # the budget does not bind: every user's best option fits
        value = float(_picked(values, choice).sum())
        return Allocation(choice, value, spend, budget, value, 0.0, 0)

    # Bracket the price: at `low` the choices overspend, at `high` they fit.
    low, high = 0.0, (price_hint if price_hint and price_hint > 0 else 1.0)
    high_choice, _ = _choose(values, costs, high)
    while _picked(costs, high_choice).sum() > budget:
        low, high = high, high * 2.0
        high_choice, _ = _choose(values, costs, high)
    if low == 0.0 and price_hint:
        # The hint fits: narrow from below while the halved price still fits.
        while high > 1e-12:
            trial, _ = _choose(values, costs, high / 2.0)
            if _picked(costs, trial).sum() > budget:
                low = high / 2.0
                break
            high, high_choice = high / 2.0, trial
    low_choice = choice if low == 0.0 else _choose(values, costs, low)[0]

    # Bisect on the users whose choice still differs between the ends; the others are settled
    # (a user's choice is monotone in the price), which makes late iterations cheap.
    settled_spend = 0.0
    active = np.flatnonzero(low_choice != high_choice)
    fixed = np.ones(n, dtype=bool)
    fixed[active] = False
    settled_spend = float(_picked(costs[fixed], high_choice[fixed]).sum())
    for _ in range(max_iterations):
        if active.size == 0 or high - low <= 1e-12 * max(1.0, high):
            break
        middle = 0.5 * (low + high)
        mid_choice, _ = _choose(values[active], costs[active], middle)
        if settled_spend + _picked(costs[active], mid_choice).sum() > budget:
            low = middle
            low_choice[active] = mid_choice
        else:
            high = middle
            high_choice[active] = mid_choice
        still = low_choice[active] != high_choice[active]
        newly_settled = active[~still]
        settled_spend += float(_picked(costs[newly_settled], high_choice[newly_settled]).sum())
        active = active[still]

    choice = high_choice.copy()
    spend = float(_picked(costs, choice).sum())
    # Weak duality: the dual at any price bounds the LP (and so every assignment) from above.
    bound = min(
        price * budget + float(_choose(values, costs, price)[1].sum()) for price in (low, high)
    )

    choice, upgrades = _greedy_fill(values, costs, choice, budget - spend)
    spend = float(_picked(costs, choice).sum())
    value = float(_picked(values, choice).sum())
    return Allocation(choice, value, spend, budget, max(bound, value), high, upgrades)


def _greedy_fill(
    values: np.ndarray, costs: np.ndarray, choice: np.ndarray, left: float
) -> tuple[np.ndarray, int]:
    """Spend what the dual solution left on upgrades (a better option, or one where there was
    none) that fit, best value per extra cost first, at most one upgrade per user."""
    current_value = _picked(values, choice)[:, None]
    current_cost = _picked(costs, choice)[:, None]
    gain_value = values - current_value
    gain_cost = costs - current_cost
    users, options = np.nonzero((gain_value > 0) & (gain_cost <= left))
    if users.size == 0:
        return choice, 0
    gains = gain_value[users, options]
    extra = gain_cost[users, options]
    ratio = np.where(extra > 0, gains / np.maximum(extra, 1e-300), np.inf)
    # Stable order (ratio, then user and option position): the same inputs, the same plan.
    order = np.lexsort((options, users, -ratio))
    choice = choice.copy()
    upgraded = np.zeros(len(choice), dtype=bool)
    count = 0
    for position in order:
        user = users[position]
        if upgraded[user] or extra[position] > left:
            continue
        choice[user] = options[position]
        left -= max(extra[position], 0.0)
        upgraded[user] = True
        count += 1
    return choice, count


def lp_bound_highs(values: np.ndarray, costs: np.ndarray, budget: float) -> float:
    """The same LP relaxation solved by HiGHS (``scipy.optimize.linprog``): a cross-check for
    small instances (it builds a dense users x options problem)."""
    from scipy.optimize import linprog
    from scipy.sparse import csr_array, vstack

    values, costs = _validate(values, costs, budget)
    n, k = values.shape
    rows = np.repeat(np.arange(n), k)
    one_per_user = csr_array((np.ones(n * k), (rows, np.arange(n * k))), shape=(n, n * k))
    budget_row = csr_array(costs.reshape(1, -1))
    result = linprog(
        -values.reshape(-1),
        A_ub=vstack([budget_row, one_per_user]),
        b_ub=np.r_[budget, np.ones(n)],
        bounds=(0, 1),
        method="highs",
    )
    if not result.success:
        raise RuntimeError(f"HiGHS did not solve the LP: {result.message}")
    return float(-result.fun)
