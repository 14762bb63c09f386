"""Turn propensity feature rows into tensors, reading only this rank's shard of the Parquet.

Each rank reads the row groups ``g`` with ``g % world_size == rank``: no rank ever holds the
whole dataset. With few row groups (small data) it reads every ``world_size``-th row of each
row group instead, so every rank sees every campaign.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flashsale_ml.contract import CONTROL_ARM, DEVICE_TYPES, PROMO_TYPES
from flashsale_ml.features.build import LABEL, SALE_FEATURES, USER_FEATURES

DENSE = (*USER_FEATURES, *SALE_FEATURES)
MIN_GROUPS_PER_RANK = 8
REGION_BUCKETS = 64
ARMS = (CONTROL_ARM, *PROMO_TYPES)


@dataclass(frozen=True)
class Encoded:
    dense: np.ndarray  # float32 [n, n_dense]: signed log1p, NaN -> 0, plus NaN indicators
    cats: np.ndarray  # int64 [n, 4]: user bucket, region bucket, device type, arm
    label: np.ndarray  # float32 [n]
    campaign: np.ndarray  # campaign id per row

    def __len__(self) -> int:
        return len(self.label)


NULLABLE = (
    "cart_to_purchase_30d",
    "discount_purchase_share",
    "days_since_last_event",
    "days_since_last_purchase",
    "preferred_hour",
)


def cardinalities(user_buckets: int) -> list[int]:
    return [user_buckets, REGION_BUCKETS, len(DEVICE_TYPES) + 1, len(ARMS) + 1]


def n_dense_columns() -> int:
    return len(DENSE) + len(NULLABLE)


def sale_columns() -> tuple[int, ...]:
    """Positions of the sale-level features (constant within a sale) in ``Encoded.dense``."""
    return tuple(DENSE.index(name) for name in SALE_FEATURES)


def encode(frame: pd.DataFrame, user_buckets: int) -> Encoded:
    """Dense and categorical model inputs of ``frame`` (stateless: no fitted statistics, so
    every rank encodes its shard identically; the network's BatchNorm does the scaling)."""
    missing = [
        c
        for c in (*DENSE, "user_id", "region", "device_type", "arm", LABEL)
        if c not in frame.columns
    ]
    if missing:
        raise ValueError(f"propensity features: missing column(s) {missing}")
    values = np.nan_to_num(frame.loc[:, list(DENSE)].astype("float64").to_numpy())
    dense = np.sign(values) * np.log1p(np.abs(values))
    indicators = frame.loc[:, list(NULLABLE)].isna().to_numpy(dtype=np.float32)
    region = np.array([zlib.crc32(str(r).encode()) % REGION_BUCKETS for r in frame["region"]])
    device = frame["device_type"].map({d: i + 1 for i, d in enumerate(DEVICE_TYPES)})
    arm = frame["arm"].map({a: i + 1 for i, a in enumerate(ARMS)})
    cats = np.column_stack(
        [
            np.mod(frame["user_id"].to_numpy(dtype=np.int64), user_buckets),
            region,
            device.fillna(0).to_numpy(dtype=np.int64),
            arm.fillna(0).to_numpy(dtype=np.int64),
        ]
    ).astype(np.int64)
    return Encoded(
        dense=np.hstack([dense.astype(np.float32), indicators]),
        cats=cats,
        label=frame[LABEL].to_numpy(dtype=np.float32),
        campaign=frame["campaign_id"].to_numpy(dtype=object),
    )


def read_shard(
    files: Sequence[Path], rank: int, world_size: int, columns: list[str] | None = None
) -> pd.DataFrame:
    """This rank's rows of the Parquet ``files`` (see the module docstring)."""

    groups = [(f, g) for f in files for g in range(pq.ParquetFile(f).num_row_groups)]
    # Whole row groups when there are enough of them to balance the ranks (each feature part
    # is one campaign, so a handful of groups would hand whole campaigns to single ranks).
    if len(groups) >= MIN_GROUPS_PER_RANK * world_size:
        mine = [
            pq.ParquetFile(f).read_row_group(g, columns=columns)
            for i, (f, g) in enumerate(groups)
            if i % world_size == rank
        ]
    else:
        mine = []
        for f, g in groups:
            table = pq.ParquetFile(f).read_row_group(g, columns=columns)
            mine.append(table.take(np.arange(rank, table.num_rows, world_size)))
    if not mine:
        return pq.read_schema(files[0]).empty_table().to_pandas()
    return pa.concat_tables(mine).to_pandas()
