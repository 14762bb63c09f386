"""Reproducible randomization: a keyed hash of (campaign_id, user_id) decides who is held out
and who explores, so planning the same campaign again gives the same assignment, and nobody
without the key can predict it from the ids.

The campaign id and the key go through BLAKE2b (keyed) once; each user id is then mixed with
that digest by the SplitMix64 finalizer (Steele et al. 2014), a bijective 64-bit mixer whose
output bits pass the usual avalanche tests, vectorized over millions of users in numpy.

References:
    Steele, G. L., Lea, D. & Flood, C. H. (2014). Fast splittable pseudorandom number
    generators. OOPSLA '14.
"""

from __future__ import annotations

import hashlib

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def keyed_uniform(campaign_id: str, user_ids: np.ndarray, key: str, purpose: str) -> np.ndarray:
    """One number in [0, 1) per user, fixed by (key, purpose, campaign_id, user_id).

    Args:
        campaign_id: the campaign; another campaign draws independently.
        user_ids: int64 pseudonymous ids.
        key: the secret that makes the draw unpredictable from the ids.
        purpose: separates independent draws of one campaign (``holdout``, ``explore``).
    """
    digest = hashlib.blake2b(
        f"{purpose}\x00{campaign_id}".encode(), digest_size=16, key=key.encode()[:64]
    ).digest()
    salt = np.uint64(int.from_bytes(digest[:8], "little"))
    round_key = np.uint64(int.from_bytes(digest[8:], "little"))
    ids = np.asarray(user_ids, dtype=np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        bits = _mix(_mix(ids ^ salt) + round_key)
    # The top 53 bits as a double in [0, 1).
    return (bits >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def stratified_holdout(draws: np.ndarray, strata: np.ndarray, fraction: float) -> np.ndarray:
    """Hold out exactly ``round(fraction * n_s)`` users of each stratum ``s``: those with the
    smallest draws. Exact counts per stratum keep the holdout balanced across segments even in
    small ones, where a coin flip per user would drift.

    Args:
        draws: :func:`keyed_uniform` per user.
        strata: the stratum (e.g. value segment) of each user.
        fraction: the share held out, in (0, 1).

    Returns:
        A boolean mask, True for held-out users.
    """
    draws = np.asarray(draws, dtype=np.float64)
    strata = np.asarray(strata)
    if draws.shape != strata.shape:
        raise ValueError(f"draws {draws.shape} and strata {strata.shape} differ in shape")
    if not 0 < fraction < 1:
        raise ValueError(f"the holdout fraction must be in (0, 1), got {fraction}")
    held = np.zeros(len(draws), dtype=bool)
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        take = round(fraction * len(members))
        if take:
            # Ties (astronomically rare) are broken by position, so the result is stable.
            order = np.lexsort((members, draws[members]))
            held[members[order[:take]]] = True
    return held
