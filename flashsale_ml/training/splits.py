"""The one campaign time-split policy every model flavor trains with.

A model is always used on a sale that has not happened yet, so rows are split by campaign in
time, never at random:

* three or more campaigns: train on the older ones, validate (early stopping, intercept
  correction) on the second newest, test on the newest;
* exactly two: test on the newest; validate on a seeded 20 % of the older campaign's users
  and train on the rest of it (an *in-time* validation: there is no later sale to correct
  towards, so nothing is recalibrated on it);
* fewer than two: refused, there is no out-of-time test.

Which users of the older campaign validate is a function of the user id and the seed alone
(a keyed hash), not of row order, so every flavor, every storage order and every rank of a
distributed job that reads a shard puts each row in the same part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flashsale_ml.errors import DataError

PARTS = ("train", "valid", "test")
# Share of the older campaign's users that validate when there are only two campaigns.
IN_TIME_VALIDATION_SHARE = 0.2


@dataclass(frozen=True)
class CampaignSplit:
    """Which campaigns train, validate and test a model.

    Attributes:
        train, valid, test: campaign ids per part, oldest first.
        in_time_validation: the validation rows are a user sample of a training campaign
            (the two-campaign case); the others are then the rest of its users.
    """

    train: tuple[str, ...]
    valid: tuple[str, ...]
    test: tuple[str, ...]
    in_time_validation: bool = False

    @property
    def fitted_campaigns(self) -> tuple[str, ...]:
        """Campaigns the model was fitted or early-stopped on: promotion never tests there."""
        return tuple(sorted({*self.train, *self.valid}))

    def as_dict(self) -> dict[str, list[str]]:
        return {"train": list(self.train), "valid": list(self.valid), "test": list(self.test)}

    @classmethod
    def from_dict(cls, parts: Mapping[str, Sequence[str]]) -> CampaignSplit:
        train, valid = tuple(parts["train"]), tuple(parts["valid"])
        return cls(train, valid, tuple(parts["test"]), bool(set(train) & set(valid)))


def plan_split(campaigns_oldest_first: Sequence[str]) -> CampaignSplit:
    """The split of campaigns ordered by start (see the module docstring).

    Raises:
        DataError: fewer than two campaigns.
    """
    order = list(campaigns_oldest_first)
    if len(order) < 2:
        raise DataError(
            f"need features for at least two campaigns for a time-based split, got {order}"
        )
    if len(order) == 2:
        return CampaignSplit((order[0],), (order[0],), (order[1],), in_time_validation=True)
    return CampaignSplit(tuple(order[:-2]), (order[-2],), (order[-1],))


def campaign_order(manifest_metadata: Mapping[str, Any]) -> list[str]:
    """Campaign ids of a feature snapshot, oldest first (by start, then id), from its
    manifest's ``cutoffs``."""
    cutoffs = [c for c in manifest_metadata.get("cutoffs", []) if c.get("campaign_id")]
    return [c["campaign_id"] for c in sorted(cutoffs, key=lambda c: (c["as_of"], c["campaign_id"]))]


def _mix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a well-spread 64-bit hash of each value."""
    z = values.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def in_time_validation_users(user_ids: np.ndarray, seed: int) -> np.ndarray:
    """Whether each user id belongs to the in-time validation sample (a seeded
    :data:`IN_TIME_VALIDATION_SHARE` of users, the same for a user wherever its row is)."""
    ids = np.asarray(user_ids).astype(np.int64).view(np.uint64)
    key = _mix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    uniform = (_mix64(ids ^ key) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return uniform < IN_TIME_VALIDATION_SHARE


def part_positions(
    split: CampaignSplit, campaign_ids: np.ndarray, user_ids: np.ndarray, seed: int
) -> dict[str, np.ndarray]:
    """Ascending row positions of each part, for rows labelled with their campaign id (rows of
    other campaigns, or without one, belong to no part).

    Args:
        split: the plan.
        campaign_ids: each row's campaign id (object or string array; None for none).
        user_ids: each row's user id (integers).
        seed: the root seed (picks the in-time validation users).
    """
    campaign_ids = np.asarray(campaign_ids, dtype=object)
    test = np.isin(campaign_ids, split.test)
    if split.in_time_validation:
        older = np.isin(campaign_ids, split.train)
        sampled = in_time_validation_users(user_ids, seed)
        valid, train = older & sampled, older & ~sampled
    else:
        train, valid = np.isin(campaign_ids, split.train), np.isin(campaign_ids, split.valid)
    return {
        "train": np.flatnonzero(train),
        "valid": np.flatnonzero(valid),
        "test": np.flatnonzero(test),
    }
