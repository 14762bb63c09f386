"""Categorical features as integer codes, from fixed vocabularies, for every model kind.

The vocabularies come from the contract, not from the data, so that a code means the same
value in training and in scoring, whatever rows either saw.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flashsale_ml.contract import ARMS, DEVICE_TYPES, REGIONS

# Vocabulary of each categorical feature (flashsale_ml.features.columns.CATEGORICAL_FEATURES).
CATEGORY_VOCAB: dict[str, tuple[str, ...]] = {
    "region": REGIONS,
    "device_type": DEVICE_TYPES,
    "arm": ARMS,
}


def category_codes(values: pa.ChunkedArray | pa.Array, vocab: Sequence[str]) -> np.ndarray:
    """Position of each value in ``vocab`` (int32), -1 for nulls and values not in it.

    Dictionary-encoded chunks are looked up once per dictionary entry, not once per row, and
    each chunk may carry its own dictionary (as Parquet row groups do).
    """
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    value_set = pa.array(list(vocab), pa.string())
    parts = []
    for chunk in chunks:
        if pa.types.is_dictionary(chunk.type):
            found = pc.index_in(chunk.dictionary.cast(pa.string()), value_set).fill_null(-1)
            # one extra slot at the end for null indices
            lookup = np.append(np.asarray(found, dtype=np.int32), np.int32(-1))
            indices = chunk.indices.fill_null(len(lookup) - 1)
            parts.append(lookup[np.asarray(indices)])
        else:
            found = pc.index_in(chunk.cast(pa.string()), value_set).fill_null(-1)
            parts.append(np.asarray(found, dtype=np.int32))
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int32)


def category_index_codes(values: pa.ChunkedArray | pa.Array, vocab: Sequence[str]) -> np.ndarray:
    """1-based position of each value in ``vocab`` (int32), 0 for nulls and values not in it.

    What an embedding table of ``len(vocab) + 1`` rows takes, row 0 standing for "missing":
    :func:`category_codes` plus one.
    """
    return category_codes(values, vocab) + 1
