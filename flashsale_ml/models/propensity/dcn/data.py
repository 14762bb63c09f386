"""Turn propensity feature rows into tensors, reading only this rank's shard of the Parquet.

The same encoding serves training (a rank's shard) and scoring (any frame of raw features,
without a label).

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

from flashsale_ml.contract import ARMS, DEVICE_TYPES
from flashsale_ml.features.columns import LABEL, SALE_FEATURES, USER_FEATURES
from flashsale_ml.features.encoding import category_index_codes

DENSE = (*USER_FEATURES, *SALE_FEATURES)
MIN_GROUPS_PER_RANK = 8
REGION_BUCKETS = 64


@dataclass(frozen=True)
class Encoded:
    dense: np.ndarray  # float32 [n, n_dense]: signed log1p, NaN -> 0, plus NaN indicators
    cats: np.ndarray  # int64 [n, 4]: user bucket, region bucket, device type, arm
    label: np.ndarray  # float32 [n] (zeros when the frame has no label: scoring)
    campaign: np.ndarray  # campaign id per row (None when the frame has none)
    user_id: np.ndarray  # int64 [n]: picks the in-time validation users of the shared split

    def __len__(self) -> int:
        return len(self.label)

    def take(self, rows: np.ndarray) -> Encoded:
        return Encoded(
            self.dense[rows], self.cats[rows], self.label[rows], self.campaign[rows],
            self.user_id[rows],
        )  # fmt: skip

    def matrix(self) -> np.ndarray:
        """What the logged model takes: dense columns, then the categorical codes, as float32."""
        return np.hstack([self.dense, self.cats.astype(np.float32)])


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
        c for c in (*DENSE, "user_id", "region", "device_type", "arm") if c not in frame.columns
    ]
    if missing:
        raise ValueError(f"propensity features: missing column(s) {missing}")
    values = np.nan_to_num(frame.loc[:, list(DENSE)].astype("float64").to_numpy())
    dense = np.sign(values) * np.log1p(np.abs(values))
    indicators = frame.loc[:, list(NULLABLE)].isna().to_numpy(dtype=np.float32)
    region = np.array([zlib.crc32(str(r).encode()) % REGION_BUCKETS for r in frame["region"]])
    device = category_index_codes(pa.array(frame["device_type"], from_pandas=True), DEVICE_TYPES)
    arm = category_index_codes(pa.array(frame["arm"], from_pandas=True), ARMS)
    cats = np.column_stack(
        [
            np.mod(frame["user_id"].to_numpy(dtype=np.int64), user_buckets),
            region,
            device.astype(np.int64),
            arm.astype(np.int64),
        ]
    ).astype(np.int64)
    return Encoded(
        dense=np.hstack([dense.astype(np.float32), indicators]),
        cats=cats,
        label=(
            frame[LABEL].to_numpy(dtype=np.float32)
            if LABEL in frame.columns
            else np.zeros(len(frame), dtype=np.float32)
        ),
        campaign=(
            frame["campaign_id"].to_numpy(dtype=object)
            if "campaign_id" in frame.columns
            else np.full(len(frame), None, dtype=object)
        ),
        user_id=frame["user_id"].to_numpy(dtype=np.int64),
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
