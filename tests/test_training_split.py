"""The time split and encoding that training reads: the Arrow path equals the frame path,
and what LightGBM learns from it equals what it learns from the serving matrix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from flashsale_ml.features.sql import LABEL
from flashsale_ml.models.propensity.lgbm import (
    CATEGORY_VOCAB,
    FEATURES,
    TRAINING_COLUMNS,
    encode_features,
    encode_split,
    encoded_time_split,
    feature_table,
    time_split,
)


def as_matrix(table: pa.Table) -> np.ndarray:
    """A feature table's values as float64 (nulls as NaN), to compare with encode_features."""
    return np.column_stack(
        [table[c].to_numpy(zero_copy_only=False).astype("float64") for c in FEATURES]
    )


def feature_frame(campaigns: int, rows_per_campaign: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for c in range(campaigns):
        n = rows_per_campaign
        frame = pd.DataFrame({f: rng.normal(size=n) for f in FEATURES if f not in CATEGORY_VOCAB})
        frame.loc[rng.random(n) < 0.1, "days_since_last_purchase"] = np.nan
        # an integer count with nulls, as a nullable column arrives from Parquet
        frame["events_1h"] = pd.array(rng.integers(0, 5, n), dtype="Int64")
        frame.loc[rng.random(n) < 0.1, "events_1h"] = pd.NA
        for column, vocab in CATEGORY_VOCAB.items():
            frame[column] = rng.choice([*vocab, "unknown-value"], n)
        frame[LABEL] = rng.integers(0, 2, n)
        frame["user_id"] = np.arange(n)  # the same users in every sale
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
    frames = time_split(frame, seed=7)
    got = encoded_time_split(pa.Table.from_pandas(frame, preserve_index=False), seed=7)
    assert got.campaigns == frames.campaigns
    assert got.campaigns["test"] == [f"sale-{1:02d}"]  # the newest by date, not by name
    for part in ("train", "valid", "test"):
        assert len(got.y[part]) > 0
        # the serving matrix of the same rows
        expected = encode_features(getattr(frames, part)).to_numpy()
        np.testing.assert_array_equal(as_matrix(got.x[part]), expected)
        np.testing.assert_array_equal(got.y[part], getattr(frames, part)[LABEL].to_numpy(float))
        assert got.x[part].schema.names == list(FEATURES)
    # unknown categories are missing (-1), numeric nulls stay missing
    train = as_matrix(got.x["train"])
    assert (train[:, FEATURES.index("arm")] == -1).any()
    assert np.isnan(train[:, FEATURES.index("days_since_last_purchase")]).any()
    assert got.x["train"]["events_1h"].null_count > 0


def test_arrow_split_rejects_missing_columns_and_single_campaign() -> None:
    frame = feature_frame(2, 50)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['arm'\]"):
        encoded_time_split(pa.Table.from_pandas(frame.drop(columns="arm")), seed=1)
    with pytest.raises(ValueError, match="at least two campaigns"):
        encoded_time_split(pa.Table.from_pandas(frame[frame.campaign_id == "sale-01"]), seed=1)


def test_dictionary_encoded_parquet_equals_frame_split(tmp_path) -> None:
    """What the training step reads: Parquet row groups with their own dictionaries, a null
    category and a null campaign id; the result equals the frame path, and every part is a
    zero-copy slice of the table read (no copy of the features beside it)."""
    import pyarrow.parquet as pq

    from flashsale_ml.models.propensity.lgbm import DICTIONARY_COLUMNS

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
        assert got.x[part].equals(expected.x[part])
        np.testing.assert_array_equal(got.y[part], expected.y[part])
    # valid and test campaigns are stored in row order, so their parts are views of the
    # buffers read (train is not: the row without a campaign id sits inside it)
    read_buffers = {chunk.buffers()[1].address for chunk in table["events_7d"].chunks}
    for part in ("valid", "test"):
        for chunk in got.x[part]["events_7d"].chunks:
            assert chunk.buffers()[1].address in read_buffers
    assert not {c.buffers()[1].address for c in got.x["train"]["events_7d"].chunks} & read_buffers
    assert len(got.y["train"]) + len(got.y["valid"]) + len(got.y["test"]) == len(frame) - 1
    # the null region (row 5, the oldest campaign: training) is missing, as unknown values are
    assert got.x["train"]["region"][5].as_py() == -1


def test_category_codes_handle_dictionaries_strings_and_nulls() -> None:
    from flashsale_ml.models.propensity.lgbm import category_codes

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


def test_lightgbm_learns_the_same_model_from_arrow_as_from_the_serving_matrix() -> None:
    """Training reads Arrow tables and serving sends encode_features' float64 matrix: the
    trees, and so the scores, must not depend on which one LightGBM saw (nulls in integer
    columns included)."""
    import lightgbm as lgb

    from flashsale_ml.models.propensity.lgbm import LgbmConfig, lgbm_params

    frame = feature_frame(3, 400, seed=5)
    arrow = feature_table(pa.Table.from_pandas(frame, preserve_index=False))
    matrix = encode_features(frame)
    params = lgbm_params(LgbmConfig(min_data_in_leaf=5), seed=1)
    y = frame[LABEL].to_numpy(float)
    boosters = [
        lgb.train(
            params,
            lgb.Dataset(
                x, y, feature_name=list(FEATURES), categorical_feature=list(CATEGORY_VOCAB)
            ),
            num_boost_round=20,
        )
        for x in (arrow, matrix)
    ]
    # (the only other difference: a DataFrame input records its pandas categoricals, none)
    from_arrow, from_matrix = (
        [line for line in b.model_to_string().splitlines() if "pandas_categorical" not in line]
        for b in boosters
    )
    assert [line for line in from_arrow if line.startswith("split_feature")]  # trees were grown
    assert from_arrow == from_matrix
    np.testing.assert_array_equal(boosters[0].predict(arrow), boosters[0].predict(matrix))


def test_feature_table_casts_other_numeric_types_and_rejects_text() -> None:
    frame = feature_frame(2, 20)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    as_decimal = table.set_column(
        table.schema.get_field_index("discount_depth"),
        "discount_depth",
        pa.array([Decimal("0.25")] * len(frame), pa.decimal128(5, 2)),
    )
    assert feature_table(as_decimal)["discount_depth"].type == pa.float64()
    as_text = table.set_column(
        table.schema.get_field_index("discount_depth"),
        "discount_depth",
        pa.array(["a lot"] * len(frame)),
    )
    with pytest.raises(ValueError, match="'discount_depth' of type string is not numeric"):
        feature_table(as_text)
