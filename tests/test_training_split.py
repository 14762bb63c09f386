"""The time split and encoding that training reads: the Arrow path equals the frame path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from flashsale_ml.features.build import LABEL
from flashsale_ml.training.propensity_lgbm import (
    CATEGORY_VOCAB,
    FEATURES,
    TRAINING_COLUMNS,
    encode_split,
    encoded_time_split,
    time_split,
)


def feature_frame(campaigns: int, rows_per_campaign: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for c in range(campaigns):
        n = rows_per_campaign
        frame = pd.DataFrame({f: rng.normal(size=n) for f in FEATURES if f not in CATEGORY_VOCAB})
        frame.loc[rng.random(n) < 0.1, "days_since_last_purchase"] = np.nan
        for column, vocab in CATEGORY_VOCAB.items():
            frame[column] = rng.choice([*vocab, "unknown-value"], n)
        frame[LABEL] = rng.integers(0, 2, n)
        # campaign ids sort the other way round from their dates: order must come from as_of
        frame["campaign_id"] = f"sale-{campaigns - c:02d}"
        frame["as_of"] = pd.Timestamp(start + timedelta(days=7 * c))
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)[list(TRAINING_COLUMNS)]


@pytest.mark.parametrize("campaigns", [2, 3, 5])
@pytest.mark.parametrize("shuffled", [False, True])
def test_arrow_split_equals_frame_split(campaigns: int, shuffled: bool) -> None:
    frame = feature_frame(campaigns, 300)
    if shuffled:  # rows not stored campaign by campaign: the Arrow path must gather
        frame = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    expected = encode_split(time_split(frame, seed=7))
    got = encoded_time_split(pa.Table.from_pandas(frame, preserve_index=False), seed=7)
    assert got.campaigns == expected.campaigns
    assert got.campaigns["test"] == [f"sale-{1:02d}"]  # the newest by date, not by name
    for part in ("train", "valid", "test"):
        assert len(got.y[part]) > 0
        np.testing.assert_array_equal(got.x[part], expected.x[part])
        np.testing.assert_array_equal(got.y[part], expected.y[part])
    # unknown categories are missing (-1), numeric nulls stay NaN
    arm = FEATURES.index("arm")
    assert (got.x["train"][:, arm] == -1).any()
    assert np.isnan(got.x["train"][:, FEATURES.index("days_since_last_purchase")]).any()


def test_arrow_split_rejects_missing_columns_and_single_campaign() -> None:
    frame = feature_frame(2, 50)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['arm'\]"):
        encoded_time_split(pa.Table.from_pandas(frame.drop(columns="arm")), seed=1)
    with pytest.raises(ValueError, match="at least two campaigns"):
        encoded_time_split(pa.Table.from_pandas(frame[frame.campaign_id == "sale-01"]), seed=1)


def test_dictionary_encoded_parquet_equals_frame_split(tmp_path) -> None:
    """What the training step reads: Parquet row groups with their own dictionaries, a null
    category and a null campaign id; the result equals the frame path, and every part is a
    contiguous column-major matrix that LightGBM can use without copying."""
    import pyarrow.parquet as pq

    from flashsale_ml.training.propensity_lgbm import DICTIONARY_COLUMNS

    frame = feature_frame(4, 200, seed=3)
    frame.loc[5, "region"] = None
    frame.loc[7, "campaign_id"] = None  # belongs to no part
    # row groups of 150 rows: dictionaries differ between them and cross campaign boundaries
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "f.parquet",
                   row_group_size=150)  # fmt: skip
    table = pq.read_table(tmp_path / "f.parquet", read_dictionary=list(DICTIONARY_COLUMNS))
    assert pa.types.is_dictionary(table.schema.field("region").type)
    assert table["region"].num_chunks > 1

    got = encoded_time_split(table, seed=7)
    expected = encode_split(time_split(frame.drop(index=7), seed=7))
    assert got.campaigns == expected.campaigns
    for part in ("train", "valid", "test"):
        np.testing.assert_array_equal(got.x[part], expected.x[part])
        np.testing.assert_array_equal(got.y[part], expected.y[part])
        assert got.x[part].flags["F_CONTIGUOUS"]
    assert len(got.y["train"]) + len(got.y["valid"]) + len(got.y["test"]) == len(frame) - 1
    # the null region (row 5, the oldest campaign: training) is missing, as unknown values are
    assert got.x["train"][5, FEATURES.index("region")] == -1


def test_category_codes_handle_dictionaries_strings_and_nulls() -> None:
    from flashsale_ml.training.propensity_lgbm import category_codes

    vocab = ("a", "b", "c")
    plain = pa.chunked_array([["c", None, "x"], ["a", "b"]])
    encoded = pa.chunked_array(
        [
            pa.array(["c", None, "x"]).dictionary_encode(),
            pa.DictionaryArray.from_arrays(pa.array([1, 0], pa.int32()), ["b", "a"]),
        ]
    )
    for values in (plain, encoded):
        np.testing.assert_array_equal(category_codes(values, vocab), [2, -1, -1, 0, 1])
