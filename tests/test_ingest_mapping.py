"""Bring your own data: a shop's CSV files -> mapping -> validated, pseudonymized snapshot."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
import yaml

from flashsale_ml.contract import pseudonymize, stable_ids
from flashsale_ml.datasets import Snapshot, list_snapshots
from flashsale_ml.ingest import (
    IngestDataError,
    MappingError,
    ingest_mapping,
    load_mapping,
    parse_mapping,
)
from flashsale_ml.ingest.template import render_template
from flashsale_ml.storage import ObjectStore, open_store
from flashsale_ml.validation.gx_suites import expectations_dir

BERLIN = ZoneInfo("Europe/Berlin")
STATUS_CODES = {"A": "completed", "X": "cancelled", "R": "returned"}
PREFIX = "myshop:"
CAMPAIGN_START = datetime(2025, 7, 15, 19, 0, tzinfo=UTC)


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    value = secrets.token_urlsafe(24)
    monkeypatch.setenv("FLASHSALE_PSEUDONYM_KEY", value)
    return value


def raw_customer(i: int) -> str:
    return f"CUST-{i:05d}-RAW"


def make_shop(folder: Path, users: int = 120, items: int = 15, orders: int = 900) -> dict:
    """A small shop as the owner would export it: local Berlin times, status codes, text ids."""
    rng = np.random.default_rng(5)
    folder.mkdir(parents=True, exist_ok=True)
    first = datetime(2025, 7, 1, 8, 0)
    signup = [first - timedelta(days=int(d)) for d in rng.integers(10, 400, users)]
    pd.DataFrame(
        {
            "cust_no": [raw_customer(i) for i in range(users)],
            "created": [t.strftime("%Y-%m-%d %H:%M:%S") for t in signup],
            "country": rng.choice(["DE", "AT", "CH"], users),
            "dev": rng.choice(["M", "D", "T"], users),
        }
    ).to_csv(folder / "customers.csv", index=False)
    pd.DataFrame(
        {
            "sku": [f"SKU-{i:03d}" for i in range(items)],
            "cat": rng.choice(["shoes", "bags", "hats"], items),
            "brand": "acme",
            "price": np.round(rng.uniform(5, 80, items), 2),
            "name": [f"Product {i}" for i in range(items)],
        }
    ).to_csv(folder / "products.csv", index=False)
    # Local wall-clock times over 20 days, with a burst during the 2-hour sale on day 15.
    minutes = rng.integers(0, 20 * 24 * 60, orders)
    local = [first + timedelta(minutes=int(m)) for m in minutes]
    sale_local = CAMPAIGN_START.astimezone(BERLIN).replace(tzinfo=None)
    in_sale = rng.random(orders) < 0.3
    local = [
        sale_local + timedelta(minutes=int(rng.integers(0, 120))) if s else t
        for t, s in zip(local, in_sale, strict=True)
    ]
    frame = pd.DataFrame(
        {
            "order_no": np.arange(1000, 1000 + orders),
            "cust": [raw_customer(int(u)) for u in rng.integers(0, users, orders)],
            "sku": [f"SKU-{int(i):03d}" for i in rng.integers(0, items, orders)],
            "qty": rng.integers(1, 4, orders),
            "price": np.round(rng.uniform(5, 80, orders), 2),
            "when": [t.strftime("%d.%m.%Y %H:%M:%S") for t in local],
            "st": rng.choice(list(STATUS_CODES), orders, p=[0.85, 0.1, 0.05]),
            "promo": np.where(in_sale, "SUMMER", ""),
        }
    )
    frame.to_csv(folder / "orders.csv", index=False, sep=";")
    sale_items = "|".join(f"SKU-{i:03d}" for i in range(5))
    pd.DataFrame(
        {
            "code": ["SUMMER"],
            "start": [CAMPAIGN_START.isoformat()],
            "end": [(CAMPAIGN_START + timedelta(hours=2)).isoformat()],
            "skus": [sale_items],
            "promos": ["pct_discount"],
            "depth": [0.2],
            "budget": [5000.0],
            "holdout": [0.1],
        }
    ).to_csv(folder / "sales.csv", index=False)
    return {"orders": frame, "local": local}


# The documented example (docs/examples/mapping-shop.yaml) is the mapping of this shop.
EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "mapping-shop.yaml"
MAPPING = yaml.safe_load(EXAMPLE.read_text())


def write_mapping(folder: Path, mapping: dict | None = None) -> Path:
    path = folder / "mapping.yaml"
    path.write_text(yaml.safe_dump(mapping or MAPPING, sort_keys=False))
    return path


@pytest.fixture
def shop(tmp_path: Path) -> dict:
    folder = tmp_path / "export"
    made = make_shop(folder)
    return {"folder": folder, "mapping": write_mapping(folder), **made}


def test_csv_files_become_a_validated_pseudonymized_snapshot(
    shop: dict, key: str, local_lake: ObjectStore
) -> None:
    from flashsale_ml.validation import validate_snapshot

    uri = ingest_mapping(shop["mapping"], local_lake)
    with Snapshot(uri) as snap:
        assert set(snap.tables) == {"users", "items", "orders", "campaigns", "traffic"}
        users = snap.read_pandas("users")
        orders = snap.read_pandas("orders").sort_values("order_id").reset_index(drop=True)
        traffic = snap.read_pandas("traffic")
        campaigns = snap.read_pandas("campaigns")
        metadata = snap.manifest.metadata
        assert metadata["loader"] == "mapping"
    # What was validated before the commit is recorded beside the data: each table's suite
    # (by content hash), the rows and expectations it checked, and the relational checks.
    validation = metadata["validation"]
    assert validation["passed"] is True
    assert set(validation["suites"]) == set(snap.tables)
    assert validation["relational_checks_over"] == sorted(snap.tables)
    for table, checked in validation["suites"].items():
        suite = expectations_dir() / f"{table}.json"
        assert checked["suite_sha256"] == hashlib.sha256(suite.read_bytes()).hexdigest()
        assert checked["rows"] == metadata["report"]["rows"][table] > 0
        assert checked["expectations"] >= len(json.loads(suite.read_text())["expectations"]) > 0
    source = shop["orders"]
    # Customer ids: the keyed hash of prefix + raw id, the same in every table.
    expected = pseudonymize([PREFIX + c for c in source["cust"]], key)
    assert orders["user_id"].tolist() == expected.tolist()
    assert set(orders["user_id"]) <= set(users["user_id"])
    # Local Berlin wall-clock times -> UTC.
    local = [t.replace(tzinfo=BERLIN).astimezone(UTC) for t in shop["local"]]
    assert [t.to_pydatetime() for t in orders["ts"]] == local
    assert str(orders["ts"].dt.tz) == "UTC"
    # Status codes through the value map; SKUs to stable ids; the list column split.
    assert orders["status"].tolist() == [STATUS_CODES[s] for s in source["st"]]
    assert orders["item_id"].tolist() == stable_ids(source["sku"], "myshop-sku").tolist()
    assert (
        list(campaigns["item_ids"][0])
        == stable_ids([f"SKU-{i:03d}" for i in range(5)], "myshop-sku").tolist()
    )
    # Traffic derived from orders: per minute over the whole span, gaps as zeros.
    assert traffic["requests"].sum() == len(orders)
    assert traffic["orders"].sum() == int((orders["status"] == "completed").sum())
    span = (orders["ts"].max().floor("min") - orders["ts"].min().floor("min")).total_seconds()
    assert len(traffic) == span / 60 + 1
    # No raw customer id and no key anywhere in the lake's bytes.
    stored = b"".join(local_lake.read_bytes(k) for k in local_lake.list(""))
    assert b"CUST-" not in stored and key.encode() not in stored
    # The committed snapshot passes the full validation (GX suites + checks) as well.
    assert validate_snapshot(uri).success


def test_the_snapshot_feeds_feature_building(shop: dict, key: str, local_lake: ObjectStore) -> None:
    from flashsale_ml.features import build_features

    uri = ingest_mapping(shop["mapping"], local_lake)
    features = build_features(uri, local_lake)
    with Snapshot(features) as snap:
        rows = {t: e.rows for t, e in snap.manifest.tables.items()}
        cutoffs = snap.manifest.metadata["cutoffs"]
    assert [c["campaign_id"] for c in cutoffs] == ["SUMMER"]
    # Demand rows per sale item; propensity needs assignments/events, which this shop lacks.
    assert any("items" in t and n > 0 for t, n in rows.items()), rows
    assert any("traffic" in t and n > 0 for t, n in rows.items()), rows


def _set(mapping: dict, path: str, value) -> dict:
    import copy

    out = copy.deepcopy(mapping)
    node = out
    *parents, last = path.split(".")
    for part in parents:
        node = node[part]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return out


def _rewrite_orders(folder: Path, change) -> None:
    frame = pd.read_csv(folder / "orders.csv", sep=";", dtype=str, keep_default_na=False)
    change(frame)
    frame.to_csv(folder / "orders.csv", sep=";", index=False)


def _bad_status(frame: pd.DataFrame) -> None:
    frame.loc[[3, 7], "st"] = "Q"


def _bad_time(frame: pd.DataFrame) -> None:
    frame.loc[5, "when"] = "31.02.2025 10:00:00"


def _duplicate_key(frame: pd.DataFrame) -> None:
    frame.loc[10, "order_no"] = frame.loc[11, "order_no"]


def _missing_column(frame: pd.DataFrame) -> None:
    frame.drop(columns=["qty"], inplace=True)


def _fractional_qty(frame: pd.DataFrame) -> None:
    frame.loc[2, "qty"] = "1.5"


@pytest.mark.parametrize(
    ("change", "column", "rule", "rows"),
    [
        (_missing_column, "qty", "missing source column", []),
        (_bad_status, "st", "not in the mapping's value map", ["'Q'"]),
        (_bad_time, "when", "must be a date and time", ["'31.02.2025 10:00:00'"]),
        (_duplicate_key, "order_no", "expect_column_values_to_be_unique", ["row"]),
        (_fractional_qty, "qty", "must be a whole number", ["'1.5'"]),
    ],
    ids=["missing-column", "unmapped-status", "bad-timestamp", "duplicate-key", "fractional"],
)
def test_bad_input_names_file_column_rule_rows_and_commits_nothing(
    shop: dict, key: str, local_lake: ObjectStore, change, column: str, rule: str, rows: list
) -> None:
    _rewrite_orders(shop["folder"], change)
    with pytest.raises(IngestDataError) as caught:
        ingest_mapping(shop["mapping"], local_lake)
    message = str(caught.value)
    assert str(shop["folder"] / "orders.csv") in message
    assert f"column {column!r}" in message
    assert rule in message
    assert caught.value.table == "orders" and caught.value.source_column == column
    if rows:
        assert "first offending rows" in message
        if rows != ["row"]:
            assert all(r in message for r in rows), message
        else:
            assert 1 <= len(caught.value.rows) <= 5
    assert list_snapshots(local_lake, "myshop") == []
    assert not [k for k in local_lake.list("") if k.startswith("datasets/")]


@pytest.mark.parametrize(
    ("path", "value", "key_named", "problem"),
    [
        ("tables.orders.columns.colour", "col", "tables.orders.columns.colour", "no column"),
        ("tables.basket", {"source": {"path": "x.csv"}}, "tables.basket", "unknown contract table"),
        ("tables.orders.columns.qty", None, "tables.orders.columns.qty", "neither mapped"),
        ("tables.orders.constants.order_id", 1, "tables.orders.constants.order_id", "primary key"),
        ("tables.orders.constants.discount", -1.0, "tables.orders.constants.discount", "minimum"),
        (
            "tables.orders.columns.status",
            {"from": "st", "map": {"A": "done"}},
            "tables.orders.columns.status.map.A",
            "not allowed",
        ),
        ("timezone", "Mars/Olympus", "timezone", "unknown time zone"),
        ("pseudonym.columns", ["item_id"], "pseudonym.columns", "user_id"),
        ("tables.orders.source.sep", ";", "tables.orders.source.sep", "unknown key"),
    ],
)
def test_a_wrong_mapping_names_the_file_and_key(
    tmp_path: Path, path: str, value, key_named: str, problem: str
) -> None:
    mapping = write_mapping(tmp_path, _set(MAPPING, path, value))
    with pytest.raises(MappingError) as caught:
        load_mapping(mapping)
    assert caught.value.key == key_named
    assert str(mapping) in str(caught.value) and problem in str(caught.value), caught.value


def test_a_wrong_mapping_commits_nothing(shop: dict, key: str, local_lake: ObjectStore) -> None:
    write_mapping(shop["folder"], _set(MAPPING, "tables.orders.columns.colour", "st"))
    with pytest.raises(MappingError):
        ingest_mapping(shop["mapping"], local_lake)
    assert list_snapshots(local_lake, "myshop") == []


def test_the_public_development_key_is_refused(
    shop: dict, local_lake: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flashsale_ml.errors import DataError

    monkeypatch.delenv("FLASHSALE_PSEUDONYM_KEY", raising=False)
    with pytest.raises(DataError, match="key"):
        ingest_mapping(shop["mapping"], local_lake)
    assert list_snapshots(local_lake, "myshop") == []


def test_init_template_becomes_a_valid_mapping_once_paths_are_filled(tmp_path: Path) -> None:
    from flashsale_ml.cli import main

    target = tmp_path / "mapping.yaml"
    assert main(["ingest", "--init", "--out", str(target)]) == 0
    text = target.read_text()
    assert text == render_template()
    for table in (
        "users",
        "items",
        "events",
        "orders",
        "campaigns",
        "assignments",
        "campaign_outcomes",
        "traffic",
        "sale_stock",
    ):
        assert f"{table}:" in text
    assert "timezone" in text and "map:" in text and "derive:" in text and "constants:" in text
    target.write_text(text.replace("CHANGE-ME/", ""))
    mapping = load_mapping(target)
    assert set(mapping.tables) == {"users", "items", "orders", "traffic"}
    # Every commented table parses too, once uncommented.
    uncommented = "\n".join(
        line[1:] if line.startswith("#  ") else line
        for line in text.replace("CHANGE-ME/", "").splitlines()
    )
    raw = yaml.safe_load(uncommented)
    assert {"events", "campaigns", "assignments", "sale_stock", "campaign_outcomes"} <= set(
        raw["tables"]
    )
    assert set(parse_mapping(raw, target).tables) == set(raw["tables"])
    with pytest.raises(SystemExit):
        main(["ingest", "--init", "--out", str(target)])  # no silent overwrite


def test_cli_ingests_through_a_mapping(shop: dict, tmp_path: Path) -> None:
    import json

    lake = tmp_path / "cli-lake"
    env = {
        **os.environ,
        "FLASHSALE_STORAGE_ROOT": lake.as_uri(),
        "FLASHSALE_PSEUDONYM_KEY": "a-non-default-secret-key-for-the-cli",
    }
    exe = Path(sys.executable).parent / "flashsale"
    ok = subprocess.run(
        [str(exe), "ingest", "--mapping", str(shop["mapping"])],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert ok.returncode == 0, ok.stderr
    payload = json.loads(ok.stdout)
    assert payload["snapshot_uri"].startswith(lake.as_uri())
    assert payload["rows"]["orders"] == len(shop["orders"])

    _rewrite_orders(shop["folder"], _bad_status)
    bad = subprocess.run(
        [str(exe), "ingest", "--mapping", str(shop["mapping"])],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert bad.returncode != 0
    assert "orders.csv" in bad.stderr and "'st'" in bad.stderr and "'Q'" in bad.stderr
    assert len(list_snapshots(open_store(lake.as_uri()), "myshop")) == 1


def test_sources_on_s3_are_read_without_credentials_in_sql(
    shop: dict, key: str, local_lake: ObjectStore, s3_server, s3_env
) -> None:
    bucket = "shop-export"
    s3_server.create_bucket(bucket)
    store = open_store(f"s3://{bucket}/exports")
    store.upload_file(shop["folder"] / "orders.csv", "orders.csv")
    mapping = _set(MAPPING, "tables.orders.source.path", f"s3://{bucket}/exports/*.csv")
    path = write_mapping(shop["folder"], mapping)
    uri = ingest_mapping(path, local_lake)
    with Snapshot(uri) as snap:
        assert snap.manifest.tables["orders"].rows == len(shop["orders"])
        assert snap.manifest.metadata["sources"]["orders"] == f"s3://{bucket}/exports/*.csv"


def test_parquet_sources_and_json_mappings(shop: dict, key: str, local_lake: ObjectStore) -> None:
    import json

    folder = shop["folder"]
    frame = pd.read_csv(folder / "orders.csv", sep=";")
    frame["when"] = [t for t in shop["local"]]  # naive datetime64 in Parquet
    frame.to_parquet(folder / "orders.parquet")
    mapping = _set(MAPPING, "tables.orders.source", {"path": "orders.parquet"})
    mapping = _set(mapping, "tables.orders.columns.ts", "when")
    path = folder / "mapping.json"
    path.write_text(json.dumps(mapping))
    uri = ingest_mapping(path, local_lake)
    with Snapshot(uri) as snap:
        ts = snap.read_pandas("orders").sort_values("order_id")["ts"]
    assert [t.to_pydatetime() for t in ts] == [
        t.replace(tzinfo=BERLIN).astimezone(UTC) for t in shop["local"]
    ]


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("FLASHSALE_EXPECTATIONS_DIR", raising=False)
    yield
