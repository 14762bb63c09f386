"""The public datasets as mapping files: the mapping ingest reproduces the loaders on real data.

Hillstrom (``flashsale_ml/ingest/mappings/hillstrom.yaml`` + the ``hillstrom`` transform) is
compared with :func:`flashsale_ml.loaders.load_hillstrom` table by table, under the same
pseudonym key: ``users``, ``campaigns``, ``assignments`` and ``campaign_outcomes`` are equal
value for value (same rows, same user ids, same imputed signup times, same arms and
outcomes). The one difference: the loader also returns ``hillstrom_customers`` (the
pre-treatment covariates for uplift models), which is no contract table, so no mapping can
write it; the mapping ingest writes the four contract tables only, and validates them (the
loader path does not).

Online Retail and Online Shoppers have no packaged mapping yet (see docs/ingest.md).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from flashsale_ml.contract import CONTRACT, pseudonymize
from flashsale_ml.datasets import Snapshot
from flashsale_ml.ingest import MappingError, parse_mapping
from flashsale_ml.ingest.mappings import public_mapping, public_mappings
from flashsale_ml.ingest.run import run_ingest
from flashsale_ml.ingest.transforms import TRANSFORMS
from flashsale_ml.loaders import load_hillstrom
from flashsale_ml.storage import open_store
from tests.conftest import shared_data

HILLSTROM_TABLES = ("users", "campaigns", "assignments", "campaign_outcomes")
# Per-arm n, visit rate, conversion rate, mean spend published with the dataset.
HILLSTROM_REFERENCE = {
    "mens_email": (21_307, 0.1828, 0.01253, 1.4226),
    "womens_email": (21_387, 0.1514, 0.00884, 1.0772),
    "control": (21_306, 0.1062, 0.00573, 0.6528),
}


@pytest.fixture(scope="module")
def key() -> Iterator[str]:
    value = secrets.token_urlsafe(32)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLASHSALE_PSEUDONYM_KEY", value)
        yield value


@pytest.fixture(scope="module")
def hillstrom(key: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = shared_data("hillstrom.csv")
    lake = open_store(tmp_path_factory.mktemp("lake").as_uri())
    started = time.perf_counter()
    result = run_ingest(public_mapping("hillstrom", path), lake, key)
    mapped_s = time.perf_counter() - started
    with Snapshot(result.uri) as snap:
        mapped = {t: snap.read_pandas(t) for t in snap.tables}
        metadata = snap.manifest.metadata
    started = time.perf_counter()
    loaded = load_hillstrom(path, pseudonym_key=key)
    loader_s = time.perf_counter() - started
    return {
        "path": path,
        "result": result,
        "mapped": mapped,
        "metadata": metadata,
        "loaded": {t: tb.to_pandas() for t, tb in loaded.tables.items()},
        "seconds": (mapped_s, loader_s),
    }


def _sorted(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    keys = list(CONTRACT[table].primary_key)
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def test_packaged_mappings_are_listed_and_loadable() -> None:
    assert "hillstrom" in public_mappings()
    mapping = public_mapping("hillstrom", "/data/hillstrom.csv")
    assert {tm.source.path for tm in mapping.tables.values()} == {"/data/hillstrom.csv"}
    assert set(mapping.tables) == set(HILLSTROM_TABLES)
    with pytest.raises(KeyError, match="no packaged mapping"):
        public_mapping("no-such-dataset", "x.csv")


def test_hillstrom_mapping_ingest_equals_the_loader(hillstrom: dict) -> None:
    """Same tables, rows, user ids (keyed hash of ``hillstrom:<row>``) and values, table by
    table; only the loader's non-contract ``hillstrom_customers`` has no counterpart."""
    mapped, loaded = hillstrom["mapped"], hillstrom["loaded"]
    assert set(mapped) == set(HILLSTROM_TABLES)
    assert set(loaded) - set(mapped) == {"hillstrom_customers"}
    assert hillstrom["result"].rows == {t: len(loaded[t]) for t in HILLSTROM_TABLES}
    assert hillstrom["metadata"]["transforms"] == {
        "users": "hillstrom.customers",
        "campaigns": "hillstrom.campaign",
        "assignments": "hillstrom.customers",
        "campaign_outcomes": "hillstrom.customers",
    }
    for table in HILLSTROM_TABLES:
        left, right = _sorted(mapped[table], table), _sorted(loaded[table], table)
        assert list(left.columns) == list(right.columns), table
        pd.testing.assert_frame_equal(left, right, obj=table)


def test_hillstrom_mapping_keys_and_aggregates(hillstrom: dict, key: str) -> None:
    mapped = hillstrom["mapped"]
    n = 64_000
    expected_ids = set(pseudonymize((f"hillstrom:{i}" for i in range(n)), key).tolist())
    for table in ("users", "assignments", "campaign_outcomes"):
        assert len(mapped[table]) == n
        assert set(mapped[table]["user_id"]) == expected_ids, table
    # The user id of row i is the loader's: join the CSV back on it, row for row.
    source = pd.read_csv(hillstrom["path"])
    outcomes = mapped["campaign_outcomes"].set_index("user_id")
    ordered = outcomes.loc[pseudonymize((f"hillstrom:{i}" for i in range(n)), key)]
    assert ordered["spend"].tolist() == source["spend"].tolist()
    assert ordered["conversion"].tolist() == source["conversion"].tolist()
    # Per-arm figures as published.
    joined = mapped["assignments"].merge(mapped["campaign_outcomes"], on=["campaign_id", "user_id"])
    for arm, (count, visit, conversion, spend) in HILLSTROM_REFERENCE.items():
        rows = joined[joined["arm"] == arm]
        assert len(rows) == count
        assert rows["visit"].mean() == pytest.approx(visit, abs=5e-5)
        assert rows["conversion"].mean() == pytest.approx(conversion, abs=5e-6)
        assert rows["spend"].mean() == pytest.approx(spend, abs=5e-5)
    assert joined["spend"].sum() == pytest.approx(source["spend"].sum())


def test_hillstrom_mapping_is_not_slower_than_a_minute(hillstrom: dict) -> None:
    mapped_s, _ = hillstrom["seconds"]
    assert mapped_s < 60


def test_transform_keys_are_checked(tmp_path: Path) -> None:
    base = {
        "dataset": "x",
        "tables": {
            "users": {
                "source": {"path": "h.csv", "transform": "hillstrom", "output": "customers"},
                "columns": {"user_id": "customer_index", "signup_ts": "t", "region": "zip_code"},
                "constants": {"device_type": "unknown"},
            }
        },
    }
    parse_mapping(base)  # fine as written
    source = base["tables"]["users"]["source"]
    for change, key, problem in (
        ({"transform": "nope"}, "transform", "unknown transform"),
        ({"output": "nope"}, "output", "has no output 'nope'"),
        ({"output": None}, "output", "name one of the outputs"),
        ({"transform": None}, "output", "'output' needs a 'transform'"),
    ):
        broken = {**source, **change}
        raw = {**base, "tables": {"users": {**base["tables"]["users"], "source": broken}}}
        with pytest.raises(MappingError, match=problem) as err:
            parse_mapping(raw, tmp_path / "m.yaml")
        assert err.value.key == f"tables.users.source.{key}"
    assert "hillstrom" in TRANSFORMS
