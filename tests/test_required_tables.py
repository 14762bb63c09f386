"""A step run on a snapshot without a table it needs fails at once and names the table (a
shop's own data may map only some of the contract's tables)."""

from __future__ import annotations

import pytest

from flashsale_ml.datasets import Snapshot, SnapshotWriter
from flashsale_ml.errors import DataError
from flashsale_ml.storage import open_store


def _without(raw_uri: str, lake, dropped: set[str]) -> str:
    with Snapshot(raw_uri) as raw, SnapshotWriter(lake, "raw", metadata=raw.manifest.metadata) as w:
        for table in raw.tables:
            if table not in dropped:
                w.write_table(table, raw.read_table(table))
    return w.uri


def test_features_name_the_missing_catalogue(small_world, tmp_path) -> None:
    from flashsale_ml.features import build_features

    lake = open_store(tmp_path.as_uri())
    uri = _without(small_world.raw_uri, lake, {"items"})
    with pytest.raises(DataError, match=r"building features needs table\(s\) \['items'\]"):
        build_features(uri, lake)
    assert not lake.list("datasets/features")


def test_planning_names_the_missing_users(small_world, tmp_path) -> None:
    from flashsale_ml.config import Settings
    from flashsale_ml.steps import campaign_features

    lake = open_store(tmp_path.as_uri())
    uri = _without(small_world.raw_uri, lake, {"users"})
    settings = Settings(home=tmp_path, storage_root=tmp_path.as_uri())
    spec = {
        "campaign_id": "fs-needs",
        "start": "2030-01-01T19:00:00Z",
        "end": "2030-01-01T21:00:00Z",
        "skus": [1],
        "promotions": {"pct_discount": 1.0},
        "budget": 10.0,
    }
    with pytest.raises(DataError, match=r"planning a campaign needs table\(s\) \['users'\]"):
        campaign_features(spec, uri, settings=settings)
