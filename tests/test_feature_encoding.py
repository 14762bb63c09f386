"""Categorical codes from the contract's vocabularies (flashsale_ml.features.encoding)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from flashsale_ml.contract import ARMS, CONTROL_ARM, DEVICE_TYPES, PROMO_TYPES, REGIONS
from flashsale_ml.features.columns import CATEGORICAL_FEATURES
from flashsale_ml.features.encoding import CATEGORY_VOCAB, category_codes, category_index_codes

VOCAB = ("a", "b", "c")
# Values "c", null, "x" (unknown), "a", "b" as plain strings and as dictionary chunks, each
# chunk with its own dictionary (as Parquet row groups have), one with a null index.
PLAIN = pa.chunked_array([["c", None, "x"], ["a", "b"]])
DICTIONARY = pa.chunked_array(
    [
        pa.array(["c", None, "x"]).dictionary_encode(),
        pa.DictionaryArray.from_arrays(pa.array([1, 0], pa.int32()), ["b", "a"]),
    ]
)


def test_vocabularies_come_from_the_contract() -> None:
    assert tuple(CATEGORY_VOCAB) == CATEGORICAL_FEATURES
    assert CATEGORY_VOCAB["region"] == REGIONS
    assert CATEGORY_VOCAB["device_type"] == DEVICE_TYPES
    assert CATEGORY_VOCAB["arm"] == ARMS == (CONTROL_ARM, *PROMO_TYPES)


def test_codes_of_plain_strings_and_dictionaries_with_nulls_and_unknowns() -> None:
    for values in (PLAIN, DICTIONARY, PLAIN.combine_chunks(), DICTIONARY.chunk(0)):
        expected = [2, -1, -1, 0, 1][: len(values)]
        codes = category_codes(values, VOCAB)
        assert codes.dtype == np.int32
        np.testing.assert_array_equal(codes, expected)


def test_a_large_string_dictionary_and_a_null_index() -> None:
    values = pa.DictionaryArray.from_arrays(
        pa.array([0, None, 1, 2], pa.int8()), pa.array(["b", "zz", "c"], pa.large_string())
    )
    np.testing.assert_array_equal(category_codes(values, VOCAB), [1, -1, -1, 2])


def test_empty_input() -> None:
    for values in (pa.chunked_array([], pa.string()), pa.array([], pa.string())):
        assert category_codes(values, VOCAB).dtype == np.int32
        assert len(category_codes(values, VOCAB)) == 0
        assert len(category_index_codes(values, VOCAB)) == 0


def test_index_codes_are_one_based_with_zero_for_missing() -> None:
    for values in (PLAIN, DICTIONARY):
        codes = category_index_codes(values, VOCAB)
        np.testing.assert_array_equal(codes, [3, 0, 0, 1, 2])
        np.testing.assert_array_equal(codes, category_codes(values, VOCAB) + 1)


def test_index_codes_match_the_deep_models_arm_and_device_lookup() -> None:
    """The embedding inputs the deep model builds with ``Series.map`` (1-based, 0 missing)."""
    import pandas as pd

    for column, vocab in (("arm", ARMS), ("device_type", DEVICE_TYPES)):
        series = pd.Series([*vocab, None, "not-a-value"], dtype=object)
        mapped = series.map({v: i + 1 for i, v in enumerate(vocab)}).fillna(0).to_numpy(np.int64)
        codes = category_index_codes(pa.array(series, from_pandas=True), CATEGORY_VOCAB[column])
        np.testing.assert_array_equal(codes, mapped)
