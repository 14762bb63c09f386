"""The holdout both models are judged on: the newest sale of a feature snapshot.

:class:`HoldoutWindow` and :func:`row_digest` are pure; :func:`newest_holdout` reads the
kind's feature table from the snapshot and lets the kind pick the rows, targets and segments.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from flashsale_ml.models.base import ModelKind


@dataclass(frozen=True)
class HoldoutWindow:
    """The rows both models are judged on: the newest sale of a feature snapshot."""

    feature_snapshot_id: str
    campaign_ids: tuple[str, ...]
    as_of: str
    rows: int
    row_digest: str

    @property
    def key(self) -> str:
        return f"{self.feature_snapshot_id}:{','.join(self.campaign_ids)}"


@dataclass(frozen=True)
class Holdout:
    """The holdout rows (in a fixed order), their targets and segments, and its window."""

    frame: pd.DataFrame
    window: HoldoutWindow
    labels: np.ndarray
    segments: np.ndarray


def row_digest(keys: pd.DataFrame) -> str:
    """Order-sensitive fingerprint of the holdout's row keys, so 'same rows' can be checked."""
    hashed = pd.util.hash_pandas_object(keys.reset_index(drop=True), index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def newest_holdout(features_uri: str, kind: ModelKind) -> Holdout:
    """The kind's holdout rows of ``features_uri``: the newest campaign, as the kind selects.

    Raises:
        DataError: the snapshot has no rows of the kind's feature table.
    """
    from flashsale_ml.datasets import Snapshot
    from flashsale_ml.errors import DataError

    with Snapshot(features_uri) as snapshot:
        frame = snapshot.read_pandas(kind.feature_table)
        snapshot_id = snapshot.snapshot_id
    if frame.empty:
        raise DataError(f"feature snapshot {features_uri} has no {kind.feature_table} rows")
    selection = kind.select_holdout(frame)
    rows = selection.rows
    window = HoldoutWindow(
        feature_snapshot_id=snapshot_id,
        campaign_ids=selection.campaign_ids,
        as_of=pd.Timestamp(rows["as_of"].min()).isoformat(),
        rows=len(rows),
        row_digest=row_digest(rows[list(selection.key_columns)]),
    )
    return Holdout(rows, window, selection.targets, selection.segments)
