"""Integrity checks that must pass before any effect of a campaign is reported.

A broken experiment gives confident, wrong numbers, so evaluation refuses instead: each check
raises :class:`EvaluationIntegrityError` naming the table, the column, the rule and the
numbers. The checks take counts and times (what SQL aggregates produce), not per-user rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from flashsale_ml.errors import DataError

# The common industry threshold for a sample-ratio mismatch: at p < 0.001 the split is almost
# certainly not the designed one (a bug in assignment or logging), whatever the effect says.
SRM_ALPHA = 0.001


class EvaluationIntegrityError(DataError):
    """The campaign's data breaks a rule that effect estimates rely on.

    Attributes:
        table, column, rule: where and what.
        detail: the numbers.
    """

    def __init__(self, table: str, column: str, rule: str, detail: str) -> None:
        self.table, self.column, self.rule, self.detail = table, column, rule, detail
        super().__init__(f"{table}.{column}: {rule}: {detail}; no effects are reported")


def expected_arm_shares(
    control: str, promo_types: Sequence[str], holdout_share: float
) -> dict[str, float]:
    """The design's share of each arm: ``holdout_share`` for control, the rest split evenly
    over the campaign's promotion types."""
    if not promo_types:
        raise ValueError("a campaign needs at least one promotion type besides control")
    if not 0.0 < holdout_share < 1.0:
        raise ValueError(f"holdout_share must lie in (0, 1), got {holdout_share}")
    each = (1.0 - holdout_share) / len(promo_types)
    return {control: holdout_share, **{arm: each for arm in promo_types}}


def check_arms_present(
    arm_users: Mapping[str, int], expected: Sequence[str], campaign_id: str
) -> None:
    """Every designed arm has users, and no user is in an arm the campaign does not have."""
    missing = [arm for arm in expected if arm_users.get(arm, 0) == 0]
    unknown = sorted(set(arm_users) - set(expected))
    if missing:
        raise EvaluationIntegrityError(
            "assignments",
            "arm",
            "every arm of the campaign has users",
            f"campaign {campaign_id} has no users in arm(s) {missing} "
            f"(designed: {list(expected)}; observed: {dict(arm_users)})",
        )
    if unknown:
        raise EvaluationIntegrityError(
            "assignments",
            "arm",
            "arms are the campaign's control and promotion types",
            f"campaign {campaign_id} assigns users to {unknown}, which it does not have "
            f"(designed: {list(expected)})",
        )


def check_sample_ratio(
    arm_users: Mapping[str, int],
    expected_shares: Mapping[str, float],
    campaign_id: str,
    alpha: float = SRM_ALPHA,
) -> float:
    """Refuse a sample-ratio mismatch: the users per arm must fit the designed split
    (chi-square test over all arms). Returns the test's p-value.

    References:
        Fabijan et al. (2019), "Diagnosing Sample Ratio Mismatch in Online Controlled
        Experiments", KDD.
    """
    from flashsale_ml.evaluation.effects import sample_ratio_mismatch

    observed = {arm: int(arm_users.get(arm, 0)) for arm in expected_shares}
    statistic, p_value = sample_ratio_mismatch(observed, expected_shares)
    if p_value < alpha:
        total = sum(observed.values())
        shares = ", ".join(
            f"{arm} {n:,} ({n / total:.2%}, designed {expected_shares[arm]:.2%})"
            for arm, n in observed.items()
        )
        raise EvaluationIntegrityError(
            "assignments",
            "arm",
            f"sample ratio matches the design (chi-square p >= {alpha})",
            f"campaign {campaign_id}: {shares}; chi-square {statistic:.1f}, p = {p_value:.2e}",
        )
    return p_value


def check_single_arm_per_user(
    users_in_several_arms: int, example_user: int | None, campaign_id: str
) -> None:
    """Each user is in exactly one arm of a campaign."""
    if users_in_several_arms:
        raise EvaluationIntegrityError(
            "assignments",
            "user_id",
            "each user is assigned to one arm",
            f"campaign {campaign_id}: {users_in_several_arms:,} user(s) are in two or more "
            f"arms (e.g. user {example_user})",
        )


def check_exposure_after_assignment(
    exposed_before_assignment: int,
    example_user: int | None,
    example_gap_s: float | None,
    campaign_id: str,
    exposure_table: str = "orders",
) -> None:
    """No user acted on the campaign before being assigned to an arm (then the arm could not
    have caused what they did, and assignment may have depended on it)."""
    if exposed_before_assignment:
        gap = f", {example_gap_s / 3600:.1f} h before assignment" if example_gap_s else ""
        raise EvaluationIntegrityError(
            exposure_table,
            "ts",
            "exposure comes after assignment",
            f"campaign {campaign_id}: {exposed_before_assignment:,} user(s) have campaign "
            f"activity before their assigned_ts (e.g. user {example_user}{gap})",
        )


def check_outcome_window_complete(
    campaign_id: str, outcome_end: datetime, data_as_of: datetime | None
) -> None:
    """The data covers the whole outcome window (campaign end plus the outcome window);
    otherwise late orders are missing and every effect is biased towards zero."""
    if data_as_of is None:
        raise EvaluationIntegrityError(
            "orders",
            "ts",
            "the data's as-of time is known",
            f"campaign {campaign_id}: the snapshot records no data_as_of, so whether its "
            f"outcome window (to {outcome_end.isoformat()}) is complete cannot be told",
        )
    if outcome_end > data_as_of:
        raise EvaluationIntegrityError(
            "orders",
            "ts",
            "the outcome window is complete",
            f"campaign {campaign_id}: its outcome window ends {outcome_end.isoformat()}, after "
            f"the data's as-of time {data_as_of.isoformat()} "
            f"({(outcome_end - data_as_of).total_seconds() / 3600:.1f} h missing); evaluate "
            "once the window has closed and its orders have landed",
        )
