"""The best possible propensity score on simulated data, from the ground truth.

Only tests and benchmarks read ground truth; the pipeline never does. The oracle score of a
user in a campaign is the simulator's true probability of a purchase under the user's assigned
arm; bots, which follow a script instead of that model, get the probability that a bot shows
up and checks out (0.95). Stock-outs can still turn an attempted purchase into no purchase, so
the oracle is an upper bound in spirit rather than exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from flashsale_ml.datasets import Snapshot

BOT_PURCHASE_PROBABILITY = 0.95


def oracle_scores(truth_uri: str, rows: pd.DataFrame) -> np.ndarray:
    """True purchase probability for each ``(campaign_id, user_id)`` row of ``rows``.

    Raises:
        ValueError: a row has no ground truth (not a user assigned in that campaign).
    """
    with Snapshot(truth_uri) as truth:
        sale = truth.read_pandas(
            "sale_truth", columns=["campaign_id", "user_id", "is_bot", "p_assigned"]
        )
    sale["oracle"] = np.where(sale["is_bot"], BOT_PURCHASE_PROBABILITY, sale["p_assigned"])
    joined = rows[["campaign_id", "user_id"]].merge(
        sale[["campaign_id", "user_id", "oracle"]], on=["campaign_id", "user_id"], how="left"
    )
    if joined["oracle"].isna().any():
        missing = int(joined["oracle"].isna().sum())
        raise ValueError(f"{missing} row(s) have no ground truth in {truth_uri}")
    return joined["oracle"].to_numpy()
