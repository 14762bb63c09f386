"""Immutable dataset snapshots with a manifest, committed atomically.

Layout under the lake root::

    datasets/<dataset>/<snapshot_id>/<table>/part-00000.parquet
    datasets/<dataset>/<snapshot_id>/_manifest.json      <- written last

A snapshot exists for readers only once its manifest does. On a local folder the whole
snapshot is staged under ``.staging-<id>`` and published with one ``rename``; on S3, which
has no rename, the manifest is the commit point. On any error the staged files are deleted,
so a failed write leaves nothing a reader could pick up.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from flashsale_ml.errors import DataError
from flashsale_ml.lineage import code_version, new_snapshot_id, utc_now
from flashsale_ml.storage import ObjectNotFoundError, ObjectStore, StorageError, open_store

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
MANIFEST_VERSION = 1


class SnapshotNotCommittedError(StorageError, DataError):
    """The snapshot has no manifest: it was never committed or its writer failed."""


@dataclass(frozen=True)
class TableEntry:
    files: list[str]
    rows: int
    schema: dict[str, str]
    sha256: dict[str, str]

    @property
    def num_files(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class Manifest:
    dataset: str
    snapshot_id: str
    created_at: str
    code_version: str
    tables: dict[str, TableEntry]
    metadata: dict[str, Any] = field(default_factory=dict)
    version: int = MANIFEST_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = json.loads(text)
        tables = {name: TableEntry(**entry) for name, entry in raw.pop("tables").items()}
        return cls(tables=tables, **raw)


def _schema_dict(schema: pa.Schema) -> dict[str, str]:
    return {f.name: str(f.type) for f in schema}


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class SnapshotWriter:
    """Context manager that stages tables and commits them as one snapshot.

    Example::

        with SnapshotWriter(lake, "raw", metadata={"seed": 42}) as writer:
            writer.write_table("users", users_table)
            for batch in event_batches:
                writer.append("events", batch)
        uri = writer.uri   # only valid after a clean exit
    """

    def __init__(
        self,
        lake: ObjectStore,
        dataset: str,
        metadata: Mapping[str, Any] | None = None,
        snapshot_id: str | None = None,
        compression: str = "zstd",
        row_group_size: int = 1 << 20,
    ) -> None:
        self.lake = lake
        self.dataset = dataset
        self.snapshot_id = snapshot_id or new_snapshot_id()
        self.metadata = dict(metadata or {})
        self.compression = compression
        self.row_group_size = row_group_size
        self.final_key = f"datasets/{dataset}/{self.snapshot_id}"
        self.staging_key = (
            f"datasets/{dataset}/.staging-{self.snapshot_id}"
            if lake.renames_atomically
            else self.final_key
        )
        self._tables: dict[str, dict[str, Any]] = {}
        self._scratch: Path | None = None
        self.committed = False

    @property
    def uri(self) -> str:
        return self.lake.uri(self.final_key)

    def __enter__(self) -> SnapshotWriter:
        if self.lake.exists(f"{self.final_key}/{MANIFEST}"):
            raise StorageError(f"snapshot {self.uri} already exists; snapshots are immutable")
        return self

    def _part_path(self, table: str, part: int) -> tuple[str, Path]:
        key = f"{table}/part-{part:05d}.parquet"
        local = self.lake.local_path(f"{self.staging_key}/{key}")
        if local is None:
            if self._scratch is None:
                from flashsale_ml.storage import scratch_dir

                self._scratch = scratch_dir("flashsale-snapshot-")
            local = self._scratch / key
        local.parent.mkdir(parents=True, exist_ok=True)
        return key, local

    def append(self, table: str, data: pa.Table | pa.RecordBatch) -> None:
        """Add one part file to ``table``; parts must share one schema."""
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        state = self._tables.setdefault(
            table, {"files": [], "rows": 0, "schema": data.schema, "sha256": {}}
        )
        if not data.schema.equals(state["schema"]):
            raise StorageError(
                f"table {table!r} of snapshot {self.uri}: part schema {data.schema} differs "
                f"from the first part's {state['schema']}"
            )
        key, local = self._part_path(table, len(state["files"]))
        pq.write_table(
            data, local, compression=self.compression, row_group_size=self.row_group_size
        )
        state["sha256"][key] = _sha256_file(local)
        if self.lake.local_path(f"{self.staging_key}/{key}") is None:
            self.lake.upload_file(local, f"{self.staging_key}/{key}")
            local.unlink()
        state["files"].append(key)
        state["rows"] += data.num_rows

    def write_table(self, table: str, data: pa.Table | Iterable[pa.Table]) -> None:
        if isinstance(data, pa.Table):
            self.append(table, data)
        else:
            for part in data:
                self.append(table, part)

    def write_json(self, name: str, payload: Any) -> None:
        """Store a small JSON side file (e.g. a validation report) inside the snapshot."""
        self.lake.write_bytes(
            f"{self.staging_key}/{name}", json.dumps(payload, indent=2, default=str).encode()
        )

    def _commit(self) -> Manifest:
        manifest = Manifest(
            dataset=self.dataset,
            snapshot_id=self.snapshot_id,
            created_at=utc_now().isoformat(),
            code_version=code_version(),
            tables={
                name: TableEntry(
                    files=state["files"],
                    rows=state["rows"],
                    schema=_schema_dict(state["schema"]),
                    sha256=state["sha256"],
                )
                for name, state in self._tables.items()
            },
            metadata=self.metadata,
        )
        # The manifest goes in before a local rename and last on S3: both orders leave a
        # snapshot that is either complete with its manifest or invisible.
        self.lake.write_bytes(f"{self.staging_key}/{MANIFEST}", manifest.to_json().encode())
        if self.staging_key != self.final_key:
            self.lake.rename_prefix(self.staging_key, self.final_key)
        self.committed = True
        return manifest

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.manifest = self._commit()
                log.info("committed snapshot %s (%s)", self.uri, _row_summary(self.manifest))
            else:
                removed = self.lake.delete_prefix(self.staging_key)
                log.warning(
                    "aborted snapshot %s after %s; removed %d staged objects",
                    self.uri,
                    exc_type.__name__,
                    removed,
                )
        finally:
            if self._scratch is not None:
                import shutil

                shutil.rmtree(self._scratch, ignore_errors=True)


def _row_summary(manifest: Manifest) -> str:
    return ", ".join(f"{name}={entry.rows:,}" for name, entry in manifest.tables.items())


class Snapshot:
    """Read access to a committed snapshot given its URI."""

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        self.store = open_store(self.uri)
        try:
            self.manifest = Manifest.from_json(self.store.read_bytes(MANIFEST).decode())
        except ObjectNotFoundError:
            if self.store.list(""):
                reason = f"it has files but no {MANIFEST}: an unfinished or crashed write"
            else:
                reason = "it does not exist"
            raise SnapshotNotCommittedError(
                f"{self.uri} is not a committed snapshot: {reason}"
            ) from None
        self._cache: Path | None = None

    @property
    def snapshot_id(self) -> str:
        return self.manifest.snapshot_id

    @property
    def tables(self) -> list[str]:
        return sorted(self.manifest.tables)

    def _entry(self, table: str) -> TableEntry:
        try:
            return self.manifest.tables[table]
        except KeyError:
            raise ObjectNotFoundError(
                f"snapshot {self.uri} has no table {table!r} (has: {', '.join(self.tables)})"
            ) from None

    def local_files(self, table: str) -> list[Path]:
        """Local paths of the table's part files, downloading them once from S3.

        DuckDB reads these directly; its httpfs extension is not available offline.
        """
        entry = self._entry(table)
        paths = []
        for key in entry.files:
            local = self.store.local_path(key)
            if local is None:
                if self._cache is None:
                    from flashsale_ml.storage import scratch_dir

                    self._cache = scratch_dir("flashsale-read-")
                local = self._cache / key
                if not local.exists():
                    local.parent.mkdir(parents=True, exist_ok=True)
                    self.store.download_file(key, local)
            paths.append(local)
        return paths

    def read_table(
        self,
        table: str,
        columns: list[str] | None = None,
        dictionary_columns: list[str] | None = None,
    ) -> pa.Table:
        """The table's rows in file order; ``dictionary_columns`` are read as Arrow
        dictionaries (codes plus distinct values), far cheaper for low-cardinality strings."""
        paths = self.local_files(table)
        parts = [
            pq.read_table(p, columns=columns, read_dictionary=dictionary_columns) for p in paths
        ]
        if not parts:
            return pa.table({})
        return pa.concat_tables(parts)

    def read_pandas(self, table: str, columns: list[str] | None = None):
        return self.read_table(table, columns).to_pandas()

    def read_json(self, name: str) -> Any:
        return json.loads(self.store.read_bytes(name).decode())

    def close(self) -> None:
        if self._cache is not None:
            import shutil

            shutil.rmtree(self._cache, ignore_errors=True)
            self._cache = None

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def list_snapshots(lake: ObjectStore, dataset: str) -> list[str]:
    """URIs of committed snapshots of ``dataset``, oldest first."""
    ids = sorted(
        {
            key.split("/")[2]
            for key in lake.list(f"datasets/{dataset}/")
            if key.endswith(f"/{MANIFEST}") and not key.split("/")[2].startswith(".")
        }
    )
    return [lake.uri(f"datasets/{dataset}/{sid}") for sid in ids]


LATEST = "latest"


def resolve_snapshot_uri(uri: str) -> str:
    """Turn ``<lake>/datasets/<name>/latest`` into the newest committed snapshot's URI.

    Other URIs are returned unchanged. ``latest`` is resolved once, when a command starts, and
    the resolved URI is what gets recorded, so lineage never points at a moving name.

    Raises:
        SnapshotNotCommittedError: the dataset has no committed snapshot yet.
    """
    parent, _, name = uri.rstrip("/").rpartition("/")
    lake_uri, marker, dataset = parent.rpartition("/datasets/")
    if name != LATEST or not marker:
        return uri
    snapshots = list_snapshots(open_store(lake_uri), dataset)
    if not snapshots:
        raise SnapshotNotCommittedError(f"{parent} has no committed snapshot to call {LATEST!r}")
    return snapshots[-1]
