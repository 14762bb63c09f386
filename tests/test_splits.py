"""The one campaign time-split policy: decided once, the same rows for every flavor."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from flashsale_ml.errors import DataError
from flashsale_ml.training.splits import (
    IN_TIME_VALIDATION_SHARE,
    CampaignSplit,
    campaign_order,
    part_positions,
    plan_split,
)


def test_three_or_more_campaigns_validate_on_the_second_newest() -> None:
    split = plan_split(["a", "b", "c", "d"])
    assert (split.train, split.valid, split.test) == (("a", "b"), ("c",), ("d",))
    assert not split.in_time_validation
    assert split.fitted_campaigns == ("a", "b", "c")


def test_two_campaigns_validate_in_time_on_a_user_sample_of_the_older() -> None:
    """The decision for exactly two campaigns (the flavors used to disagree: LightGBM
    sampled the older sale by row position, the deep model refused)."""
    split = plan_split(["old", "new"])
    assert (split.train, split.valid, split.test) == (("old",), ("old",), ("new",))
    assert split.in_time_validation and split.fitted_campaigns == ("old",)
    assert CampaignSplit.from_dict(split.as_dict()) == split


def test_fewer_than_two_campaigns_are_a_data_error() -> None:
    for order in ([], ["only"]):
        with pytest.raises(DataError, match="at least two campaigns"):
            plan_split(order)


def test_campaign_order_comes_from_the_manifest_by_start() -> None:
    metadata = {
        "cutoffs": [
            {"campaign_id": "z-first", "as_of": "2026-01-01T19:00:00+00:00"},
            {"campaign_id": "a-last", "as_of": "2026-01-15T19:00:00+00:00"},
            {"campaign_id": "m-middle", "as_of": "2026-01-08T19:00:00+00:00"},
            {"campaign_id": None, "as_of": "2026-01-20T19:00:00+00:00"},
        ]
    }
    assert campaign_order(metadata) == ["z-first", "m-middle", "a-last"]


def rows(n_users: int = 4_000, seed: int = 0) -> pd.DataFrame:
    users = np.arange(1_000, 1_000 + n_users)
    frame = pd.concat(
        [pd.DataFrame({"campaign_id": c, "user_id": users}) for c in ("old", "new")],
        ignore_index=True,
    )
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def keys(frame: pd.DataFrame, positions: np.ndarray) -> set[tuple[str, int]]:
    return set(map(tuple, frame.iloc[positions][["campaign_id", "user_id"]].to_numpy()))


def test_in_time_validation_users_do_not_depend_on_row_order_or_shards() -> None:
    """What lets a rank of a distributed job, reading only its shard, put each row in the
    same part as LightGBM reading the whole table."""
    split = plan_split(["old", "new"])
    whole = rows(seed=1)
    parts = part_positions(split, whole["campaign_id"], whole["user_id"], seed=7)
    shuffled = rows(seed=2)
    again = part_positions(split, shuffled["campaign_id"], shuffled["user_id"], seed=7)
    for name in ("train", "valid", "test"):
        assert keys(whole, parts[name]) == keys(shuffled, again[name])
    # three shards, each split on its own, together give the same parts
    for name in ("train", "valid", "test"):
        pieces = set()
        for rank in range(3):
            shard = whole.iloc[rank::3].reset_index(drop=True)
            mine = part_positions(split, shard["campaign_id"], shard["user_id"], seed=7)
            pieces |= keys(shard, mine[name])
        assert pieces == keys(whole, parts[name])
    valid_share = len(parts["valid"]) / (len(parts["train"]) + len(parts["valid"]))
    assert valid_share == pytest.approx(IN_TIME_VALIDATION_SHARE, abs=0.03)
    assert keys(whole, parts["test"]) == {("new", u) for u in whole["user_id"].unique()}
    other_seed = part_positions(split, whole["campaign_id"], whole["user_id"], seed=8)
    assert keys(whole, other_seed["valid"]) != keys(whole, parts["valid"])


@pytest.mark.parametrize("campaigns", [["old", "new"], ["a", "b", "c"]])
def test_lightgbm_and_the_deep_model_split_the_same_rows(campaigns: list[str]) -> None:
    """LightGBM's Arrow path and the policy the deep model's ranks apply agree row by row."""
    from flashsale_ml.models.propensity.lgbm import _split_positions

    users = np.arange(3_000)
    frame = pd.concat(
        [
            pd.DataFrame(
                {
                    "campaign_id": c,
                    "user_id": users,
                    "as_of": pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(days=7 * i),
                }
            )
            for i, c in enumerate(campaigns)
        ],
        ignore_index=True,
    ).sample(frac=1.0, random_state=3)
    lgbm, parts = _split_positions(
        pa.array(frame["campaign_id"]),
        pa.array(frame["as_of"]),
        pa.array(frame["user_id"]),
        seed=11,
    )
    policy = part_positions(plan_split(campaigns), frame["campaign_id"], frame["user_id"], seed=11)
    assert parts == plan_split(campaigns).as_dict()
    for name in ("train", "valid", "test"):
        np.testing.assert_array_equal(lgbm[name], policy[name])
