"""Storage layer against a local folder and against S3 over HTTP (moto server)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from flashsale_ml.datasets import (
    MANIFEST,
    Snapshot,
    SnapshotNotCommittedError,
    SnapshotWriter,
    list_snapshots,
)
from flashsale_ml.storage import (
    ObjectNotFoundError,
    ObjectStore,
    StorageError,
    StorageUnreachableError,
    open_store,
)


def test_bytes_roundtrip_list_and_delete(lake: ObjectStore) -> None:
    lake.write_bytes("a/one.txt", b"1")
    lake.write_bytes("a/b/two.txt", b"22")
    lake.write_bytes("c.txt", b"333")
    assert lake.read_bytes("a/b/two.txt") == b"22"
    assert lake.list("a/") == ["a/b/two.txt", "a/one.txt"]
    assert lake.exists("c.txt") and not lake.exists("nope.txt")
    lake.write_bytes("c.txt", b"overwritten")
    assert lake.read_bytes("c.txt") == b"overwritten"
    assert lake.delete_prefix("a/") == 2
    assert lake.list() == ["c.txt"]


def test_missing_key_names_the_uri(lake: ObjectStore) -> None:
    with pytest.raises(ObjectNotFoundError, match=r"no object at .*missing/key\.json"):
        lake.read_bytes("missing/key.json")


def test_missing_bucket_is_a_clear_error(s3_env: dict[str, str]) -> None:
    store = open_store("s3://no-such-bucket-here/prefix")
    with pytest.raises(ObjectNotFoundError, match="bucket 'no-such-bucket-here' does not exist"):
        store.read_bytes("x")


def test_unreachable_endpoint_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from flashsale_ml.devstack import DEFAULT_S3_CREDENTIALS, free_port

    for key, value in DEFAULT_S3_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(StorageUnreachableError, match=r"AWS_ENDPOINT_URL=http://127\.0\.0\.1"):
        open_store("s3://bucket/prefix").read_bytes("x")


def test_unsupported_uri_and_escaping_keys_are_refused(local_lake: ObjectStore) -> None:
    with pytest.raises(StorageError, match="unsupported storage URI"):
        open_store("gs://bucket/x")
    with pytest.raises(StorageError, match="escapes the store root"):
        local_lake.read_bytes("../../etc/passwd")


def _table(n: int, offset: int = 0) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(offset, offset + n), pa.int64()),
            "value": pa.array([float(i) / 2 for i in range(n)]),
        }
    )


def test_snapshot_commit_and_read(lake: ObjectStore) -> None:
    with SnapshotWriter(lake, "demo", metadata={"seed": 1}) as writer:
        writer.append("numbers", _table(10))
        writer.append("numbers", _table(5, offset=10))
        writer.write_table("other", _table(3))
    snap = Snapshot(writer.uri)
    assert snap.tables == ["numbers", "other"]
    assert snap.manifest.tables["numbers"].rows == 15
    assert snap.manifest.tables["numbers"].num_files == 2
    assert snap.manifest.metadata == {"seed": 1}
    assert snap.read_table("numbers").column("id").to_pylist() == list(range(15))
    assert list_snapshots(lake, "demo") == [writer.uri]
    # Checksums in the manifest match the stored bytes.
    import hashlib

    for key, digest in snap.manifest.tables["numbers"].sha256.items():
        assert hashlib.sha256(snap.store.read_bytes(key)).hexdigest() == digest


def test_failed_write_leaves_nothing_visible(lake: ObjectStore) -> None:
    with pytest.raises(RuntimeError, match="boom"), SnapshotWriter(lake, "demo") as writer:
        writer.append("numbers", _table(10))
        raise RuntimeError("boom")
    assert lake.list("datasets/demo/") == []
    assert list_snapshots(lake, "demo") == []
    with pytest.raises(SnapshotNotCommittedError, match="not a committed snapshot"):
        Snapshot(writer.uri)


def test_schema_mismatch_between_parts_aborts(lake: ObjectStore) -> None:
    with (
        pytest.raises(StorageError, match=r"table 'numbers'.*differs"),
        SnapshotWriter(lake, "demo") as writer,
    ):
        writer.append("numbers", _table(3))
        writer.append("numbers", pa.table({"id": ["not", "an", "int"]}))
    assert lake.list("datasets/demo/") == []


def test_snapshot_without_manifest_is_invisible(lake: ObjectStore) -> None:
    # A writer that died before its commit (simulated by writing the part by hand).
    lake.write_bytes("datasets/demo/20260101T000000Z-deadbeef/numbers/part-00000.parquet", b"x")
    assert list_snapshots(lake, "demo") == []


def test_snapshots_are_immutable(lake: ObjectStore) -> None:
    with SnapshotWriter(lake, "demo", snapshot_id="fixed-id") as writer:
        writer.append("numbers", _table(2))
    with (
        pytest.raises(StorageError, match="already exists"),
        SnapshotWriter(lake, "demo", snapshot_id="fixed-id"),
    ):
        pass
    assert (
        json.loads(lake.read_bytes(f"datasets/demo/fixed-id/{MANIFEST}"))["snapshot_id"]
        == "fixed-id"
    )


def test_unknown_table_error_lists_tables(local_lake: ObjectStore) -> None:
    with SnapshotWriter(local_lake, "demo") as writer:
        writer.append("numbers", _table(2))
    with pytest.raises(ObjectNotFoundError, match=r"no table 'users' \(has: numbers\)"):
        Snapshot(writer.uri).read_table("users")


def test_latest_names_the_newest_committed_snapshot(lake: ObjectStore) -> None:
    from flashsale_ml.datasets import SnapshotNotCommittedError, resolve_snapshot_uri

    latest = lake.uri("datasets/demo/latest")
    with pytest.raises(SnapshotNotCommittedError, match="no committed snapshot"):
        resolve_snapshot_uri(latest)
    uris = []
    for snapshot_id in ("20260101T000000Z-aaaaaaaa", "20260102T000000Z-bbbbbbbb"):
        with SnapshotWriter(lake, "demo", snapshot_id=snapshot_id) as writer:
            writer.append("numbers", _table(2))
        uris.append(writer.uri)
    # An uncommitted newer write is not "latest".
    lake.write_bytes("datasets/demo/20260103T000000Z-cccccccc/numbers/part-00000.parquet", b"x")
    assert resolve_snapshot_uri(latest) == uris[-1]
    assert resolve_snapshot_uri(uris[0]) == uris[0]  # anything else passes through


def test_a_missing_snapshot_says_it_does_not_exist(local_lake: ObjectStore) -> None:
    from flashsale_ml.datasets import Snapshot, SnapshotNotCommittedError

    with pytest.raises(SnapshotNotCommittedError, match="it does not exist"):
        Snapshot(local_lake.uri("datasets/raw/20990101T000000Z-00000000"))
    local_lake.write_bytes("datasets/raw/crashed/users/part-00000.parquet", b"x")
    with pytest.raises(SnapshotNotCommittedError, match="unfinished or crashed write"):
        Snapshot(local_lake.uri("datasets/raw/crashed"))


def test_list_info_sizes_and_times(lake: ObjectStore) -> None:
    from datetime import UTC, datetime, timedelta

    lake.write_bytes("a/one.txt", b"1")
    lake.write_bytes("a/b/two.txt", b"22")
    infos = lake.list_info("a/")
    assert [(i.key, i.size) for i in infos] == [("a/b/two.txt", 2), ("a/one.txt", 1)]
    now = datetime.now(UTC)
    assert all(now - timedelta(minutes=5) < i.modified <= now + timedelta(seconds=5) for i in infos)


def test_manifest_records_sizes_and_old_manifests_still_read(lake: ObjectStore) -> None:
    with SnapshotWriter(lake, "demo") as writer:
        writer.append("numbers", _table(10))
    snap = Snapshot(writer.uri)
    entry = snap.manifest.tables["numbers"]
    assert entry.sizes == {k: len(snap.store.read_bytes(k)) for k in entry.files}

    # A manifest written before sizes were recorded: readable, checked by hash only.
    raw = json.loads(snap.store.read_bytes(MANIFEST))
    del raw["tables"]["numbers"]["sizes"]
    lake.write_bytes(f"datasets/demo/{snap.snapshot_id}/{MANIFEST}", json.dumps(raw).encode())
    with Snapshot(writer.uri, verify="full") as old:
        assert old.manifest.tables["numbers"].sizes == {}
        assert old.read_table("numbers").num_rows == 10
