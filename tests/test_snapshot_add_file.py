"""SnapshotWriter.add_file: a Parquet file written elsewhere becomes a part as it is (moved, not
rewritten), with its rows and checksum in the manifest; a file of another schema is refused and
nothing commits."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flashsale_ml.datasets import Snapshot, SnapshotWriter, list_snapshots
from flashsale_ml.storage import StorageError, open_store


def _file(path: Path, table: pa.Table) -> Path:
    pq.write_table(table, path)
    return path


def test_a_file_is_moved_in_with_its_rows(tmp_path: Path) -> None:
    lake = open_store((tmp_path / "lake").as_uri())
    first = _file(tmp_path / "a.parquet", pa.table({"x": [1, 2, 3]}))
    second = _file(tmp_path / "b.parquet", pa.table({"x": [4]}))
    original = first.read_bytes()
    with SnapshotWriter(lake, "raw") as writer:
        writer.add_file("t", first)
        writer.add_file("t", second)
    assert not first.exists() and not second.exists()
    with Snapshot(writer.uri) as snap:
        assert snap.read_table("t").column("x").to_pylist() == [1, 2, 3, 4]
        assert snap.manifest.tables["t"].rows == 4
        part = snap.local_files("t")[0]
        assert part.read_bytes() == original  # not re-encoded


def test_a_file_of_another_schema_is_refused_and_nothing_commits(tmp_path: Path) -> None:
    lake = open_store((tmp_path / "lake").as_uri())
    first = _file(tmp_path / "a.parquet", pa.table({"x": [1]}))
    other = _file(tmp_path / "b.parquet", pa.table({"x": ["1"]}))
    with (
        pytest.raises(StorageError, match="differs from the first part"),
        SnapshotWriter(lake, "raw") as writer,
    ):
        writer.add_file("t", first)
        writer.add_file("t", other)
    assert list_snapshots(lake, "raw") == []
