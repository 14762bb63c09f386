"""Immutable dataset snapshots with a manifest, committed atomically.

Layout under the lake root::

    datasets/<dataset>/<snapshot_id>/<table>/part-00000.parquet
    datasets/<dataset>/<snapshot_id>/_manifest.json      <- written last

A snapshot exists for readers only once its manifest does. On a local folder the whole
snapshot is staged under ``.staging-<id>`` and published with one ``rename``; on S3, which
has no rename, the manifest is the commit point. On any error the staged files are deleted,
so a failed write leaves nothing a reader could pick up.

Stopping a writer: SIGTERM (what Airflow and Kubernetes send) is handled like Ctrl-C while a
writer is open, so the staged files are removed then too. A writer killed outright (SIGKILL,
a lost machine) leaves an uncommitted folder: ``.staging-<id>/`` locally, parts without a
manifest on S3. :func:`collect_garbage` removes those once they are older than
``staging_max_age_hours``; every writer runs it for its own dataset when it starts.

Reading: the manifest records each part file's size and SHA-256. :class:`Snapshot` checks
the size of every file it hands out (or its full hash with ``verify_checksums=full``), and
validation always checks the full hash, so a damaged file fails with :class:`CorruptFileError`
naming the file instead of surfacing later as odd data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from flashsale_ml.errors import DataError
from flashsale_ml.lineage import code_version, new_snapshot_id, utc_now
from flashsale_ml.storage import (
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    StorageError,
    collect_stale_scratch,
    open_store,
)

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
MANIFEST_VERSION = 1
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"

VerifyMode = Literal["size", "full"]


class SnapshotNotCommittedError(StorageError, DataError):
    """The snapshot has no manifest: it was never committed or its writer failed."""


class CorruptFileError(StorageError, DataError):
    """A committed file's bytes differ from its manifest entry (size or SHA-256).

    Reading it again gives the same bytes, so this is a data error: restore the file or
    write the snapshot again.
    """


@dataclass(frozen=True)
class TableEntry:
    files: list[str]
    rows: int
    schema: dict[str, str]
    sha256: dict[str, str]
    # Bytes per file; manifests written before sizes were recorded have none.
    sizes: dict[str, int] = field(default_factory=dict)

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


def _settings_value(name: str, default: Any) -> Any:
    """One setting from the environment; the default when the settings cannot be read.

    Storage must not stop working because an unrelated setting is invalid; the command that
    needs that setting reports it.
    """
    from flashsale_ml.config import get_settings

    try:
        return getattr(get_settings(), name)
    except Exception as exc:  # pydantic's ValidationError, or a bad value elsewhere
        log.debug("settings unreadable (%s); %s=%r", exc, name, default)
        return default


# --- stopping a writer --------------------------------------------------------------------------


class TerminatedBySignal(KeyboardInterrupt):
    """SIGTERM (or a SIGINT set to kill outright) arrived while a snapshot was being written.

    A ``KeyboardInterrupt`` so that ``except Exception`` blocks let it through, exactly like
    Ctrl-C: every open :class:`SnapshotWriter` removes its staged files on the way out.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        name = signal.Signals(signum).name
        super().__init__(
            f"stopped by {name} while writing a snapshot (its staged files are removed)"
        )


class _SignalGuard:
    """Turns SIGTERM into :class:`TerminatedBySignal` while at least one writer is open.

    Installed by the first writer opened in the main thread, put back by the last one to close.
    The previous handler is chained, not replaced: it runs first (Airflow's task runner calls
    the operator's ``on_kill`` there), then the exception unwinds the writers. A signal that
    arrives while a writer commits or cleans up is held back until that is done, so neither
    can be cut in half. SIGINT is taken over only where it would kill the process outright
    (Airflow's task processes reset it to SIG_DFL); Python's own Ctrl-C handling already
    raises ``KeyboardInterrupt``. An ignored signal stays ignored.
    """

    signals = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.previous: dict[int, Any] = {}
        self.shield_depth = 0
        self.pending: int | None = None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.shield_depth:
            self.pending = signum
            return
        self.fire(signum, frame, raise_=True)

    def fire(self, signum: int, frame: FrameType | None, raise_: bool) -> None:
        previous = self.previous.get(signum)
        if callable(previous):
            previous(signum, frame)
        if raise_:
            raise TerminatedBySignal(signum)

    def acquire(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False  # signal handlers can only be set, and only run, in the main thread
        with self.lock:
            if self.depth == 0:
                for signum in self.signals:
                    current = signal.getsignal(signum)
                    if current in (None, signal.SIG_IGN) or current is signal.default_int_handler:
                        continue  # not set from Python, deliberately ignored, or already raises
                    self.previous[signum] = current
                    signal.signal(signum, _on_signal)
            self.depth += 1
        return True

    def release(self) -> None:
        with self.lock:
            self.depth -= 1
            if self.depth > 0:
                return
            for signum, previous in self.previous.items():
                if signal.getsignal(signum) is _on_signal:  # someone else's handler stays
                    signal.signal(signum, previous)
            self.previous.clear()

    @contextmanager
    def shield(self, exception_in_flight: bool) -> Iterator[None]:
        """Hold signals back for the block; deliver one that came meanwhile at its end."""
        self.shield_depth += 1
        failed = True
        try:
            yield
            failed = False
        finally:
            self.shield_depth -= 1
            if not self.shield_depth and self.pending is not None:
                signum, self.pending = self.pending, None
                # Already unwinding (an error or an earlier signal): only let the previous
                # handler know; the exception in flight stops the process anyway.
                self.fire(signum, None, raise_=not (exception_in_flight or failed))


_guard = _SignalGuard()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _guard.handle(signum, frame)


class SnapshotWriter:
    """Context manager that stages tables and commits them as one snapshot.

    Example::

        with SnapshotWriter(lake, "raw", metadata={"seed": 42}) as writer:
            writer.write_table("users", users_table)
            for batch in event_batches:
                writer.append("events", batch)
        uri = writer.uri   # only valid after a clean exit

    Opening a writer first removes the stale uncommitted leftovers of ``dataset`` (see
    :func:`collect_garbage`, with the ``staging_max_age_hours`` setting).
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
            f"datasets/{dataset}/{STAGING_PREFIX}{self.snapshot_id}"
            if lake.renames_atomically
            else self.final_key
        )
        self._tables: dict[str, dict[str, Any]] = {}
        self._scratch: Path | None = None
        self._guarded = False
        self.committed = False

    @property
    def uri(self) -> str:
        return self.lake.uri(self.final_key)

    def __enter__(self) -> SnapshotWriter:
        if self.lake.exists(f"{self.final_key}/{MANIFEST}"):
            raise StorageError(f"snapshot {self.uri} already exists; snapshots are immutable")
        try:
            collect_garbage(self.lake, None, datasets=[self.dataset], uploads=False, scratch=False)
        except Exception as exc:  # housekeeping must never stop a write
            log.warning("could not collect stale staging areas of %s: %s", self.dataset, exc)
        self._guarded = _guard.acquire()
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
            table, {"files": [], "rows": 0, "schema": data.schema, "sha256": {}, "sizes": {}}
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
        state["sizes"][key] = local.stat().st_size
        if self.lake.local_path(f"{self.staging_key}/{key}") is None:
            self.lake.upload_file(local, f"{self.staging_key}/{key}")
            local.unlink()
        state["files"].append(key)
        state["rows"] += data.num_rows

    def add_file(self, table: str, path: Path) -> None:
        """Add a Parquet file written elsewhere (e.g. by DuckDB's ``COPY``) as one part of
        ``table``, moved into the snapshot rather than decoded and written again. The file is
        consumed; its schema must equal the table's other parts'.

        Raises:
            StorageError: the file's schema differs from the first part's.
        """
        import shutil

        path = Path(path)
        schema = pq.read_schema(path)
        rows = pq.read_metadata(path).num_rows
        state = self._tables.setdefault(
            table, {"files": [], "rows": 0, "schema": schema, "sha256": {}, "sizes": {}}
        )
        if not schema.equals(state["schema"]):
            raise StorageError(
                f"table {table!r} of snapshot {self.uri}: file schema {schema} differs from "
                f"the first part's {state['schema']}"
            )
        key, local = self._part_path(table, len(state["files"]))
        state["sha256"][key] = _sha256_file(path)
        state["sizes"][key] = path.stat().st_size
        if self.lake.local_path(f"{self.staging_key}/{key}") is None:
            self.lake.upload_file(path, f"{self.staging_key}/{key}")
            path.unlink()
        else:
            shutil.move(path, local)
        state["files"].append(key)
        state["rows"] += rows

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
                    sizes=state["sizes"],
                )
                for name, state in self._tables.items()
            },
            metadata=self.metadata,
        )
        self._check_staged(manifest)
        # The manifest goes in before a local rename and last on S3: both orders leave a
        # snapshot that is either complete with its manifest or invisible.
        self.lake.write_bytes(f"{self.staging_key}/{MANIFEST}", manifest.to_json().encode())
        if self.staging_key != self.final_key:
            self.lake.rename_prefix(self.staging_key, self.final_key)
        self.committed = True
        return manifest

    def _check_staged(self, manifest: Manifest) -> None:
        """Every part is still staged with the size written: nothing (a gc) removed any."""
        staged = {info.key: info.size for info in self.lake.list_info(f"{self.staging_key}/")}
        for entry in manifest.tables.values():
            for key in entry.files:
                full = f"{self.staging_key}/{key}"
                if staged.get(full) != entry.sizes[key]:
                    found = "is missing" if full not in staged else f"has {staged[full]} bytes"
                    raise StorageError(
                        f"staged part {self.lake.uri(full)} {found}, expected "
                        f"{entry.sizes[key]} bytes: the staging area changed under the writer "
                        "(removed as stale by `flashsale gc`?); not committing"
                    )

    def _abort(self, reason: str) -> None:
        removed = self.lake.delete_prefix(self.staging_key)
        log.warning(
            "aborted snapshot %s after %s; removed %d staged objects", self.uri, reason, removed
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            with _guard.shield(exception_in_flight=exc_type is not None):
                try:
                    if exc_type is None:
                        try:
                            self.manifest = self._commit()
                        except BaseException as failure:
                            if not self.committed:
                                self._abort(f"a failed commit ({type(failure).__name__})")
                            raise
                        log.info(
                            "committed snapshot %s (%s)", self.uri, _row_summary(self.manifest)
                        )
                    else:
                        try:
                            self._abort(exc_type.__name__)
                        except Exception as abort_error:  # keep the error in flight visible
                            log.warning(
                                "could not remove the staged parts of %s: %s",
                                self.uri,
                                abort_error,
                            )
                finally:
                    if self._scratch is not None:
                        import shutil

                        shutil.rmtree(self._scratch, ignore_errors=True)
        finally:
            if self._guarded:
                self._guarded = False
                _guard.release()


def _row_summary(manifest: Manifest) -> str:
    return ", ".join(f"{name}={entry.rows:,}" for name, entry in manifest.tables.items())


class Snapshot:
    """Read access to a committed snapshot given its URI.

    Every part file is checked against the manifest before it is handed out, once per file
    and instance: its size (``verify="size"``, cheap) or its SHA-256 (``verify="full"``).
    The default is the ``verify_checksums`` setting. A mismatch raises
    :class:`CorruptFileError`; :meth:`verify` checks every file at once.
    """

    def __init__(self, uri: str, verify: VerifyMode | None = None) -> None:
        self.uri = uri.rstrip("/")
        self.verify_mode: VerifyMode = verify or _settings_value("verify_checksums", "size")
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
        self._verified: dict[str, VerifyMode] = {}

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
            self._check(table, entry, key, local, self.verify_mode)
            paths.append(local)
        return paths

    def verify(self, tables: Iterable[str] | None = None, mode: VerifyMode = "full") -> None:
        """Check every part file of ``tables`` (default: all) now.

        Raises:
            CorruptFileError: the first file whose size or SHA-256 differs from the manifest.
        """
        saved, self.verify_mode = self.verify_mode, mode
        try:
            for table in self.tables if tables is None else tables:
                self.local_files(table)
        finally:
            self.verify_mode = saved

    def _check(
        self, table: str, entry: TableEntry, key: str, local: Path, mode: VerifyMode
    ) -> None:
        done = self._verified.get(key)
        if done == "full" or done == mode:
            return
        where = f"(table {table!r} of snapshot {self.uri})"
        expected_size = entry.sizes.get(key)
        if expected_size is not None:
            size = local.stat().st_size
            if size != expected_size:
                raise CorruptFileError(
                    f"corrupt file {self.store.uri(key)}: expected {expected_size} bytes, got "
                    f"{size} (manifest size check) {where}; restore the file or write the "
                    "snapshot again"
                )
        if mode == "full":
            expected = entry.sha256.get(key)
            actual = _sha256_file(local)
            if expected is not None and actual != expected:
                raise CorruptFileError(
                    f"corrupt file {self.store.uri(key)}: expected sha256 {expected}, got "
                    f"{actual} (manifest checksum) {where}; restore the file or write the "
                    "snapshot again"
                )
        self._verified[key] = mode

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


# --- garbage collection ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StaleArea:
    """One uncommitted snapshot folder: a crashed or running write."""

    uri: str
    objects: int
    bytes: int
    age_hours: float


@dataclass
class GarbageReport:
    """What :func:`collect_garbage` removed (or, in a dry run, would remove) and what it kept."""

    older_than_hours: float
    dry_run: bool
    removed: list[StaleArea] = field(default_factory=list)
    kept_young: list[StaleArea] = field(default_factory=list)
    aborted_uploads: int = 0
    scratch_removed: list[str] = field(default_factory=list)

    @property
    def bytes_removed(self) -> int:
        return sum(area.bytes for area in self.removed)

    def summary(self) -> dict[str, Any]:
        """JSON-able, for the CLI and logs."""
        return {
            "older_than_hours": self.older_than_hours,
            "dry_run": self.dry_run,
            "removed": [asdict(area) for area in self.removed],
            "bytes_removed": self.bytes_removed,
            "kept_young": [asdict(area) for area in self.kept_young],
            "aborted_uploads": self.aborted_uploads,
            "scratch_removed": self.scratch_removed,
        }


def _snapshot_folders(
    lake: ObjectStore, datasets: Iterable[str] | None
) -> dict[tuple[str, str], list[ObjectInfo]]:
    """Every ``datasets/<dataset>/<folder>/`` with the objects below it (local: empty ones too)."""
    prefixes = [f"datasets/{d}/" for d in datasets] if datasets is not None else ["datasets/"]
    folders: dict[tuple[str, str], list[ObjectInfo]] = {}
    for prefix in prefixes:
        for info in lake.list_info(prefix):
            parts = info.key.split("/")
            if len(parts) >= 4:  # datasets/<dataset>/<folder>/<file...>
                folders.setdefault((parts[1], parts[2]), []).append(info)
        base = lake.local_path(prefix.rstrip("/"))
        if base is not None and base.is_dir():
            children = [base] if datasets is not None else [p for p in base.iterdir() if p.is_dir()]
            for dataset_dir in children:
                for folder in dataset_dir.iterdir():
                    if folder.is_dir():
                        folders.setdefault((dataset_dir.name, folder.name), [])
    return folders


def _folder_modified(lake: ObjectStore, key: str, objects: list[ObjectInfo]) -> datetime:
    """The last change below a folder: its newest object (or, locally, the folder itself)."""
    from datetime import UTC

    times = [info.modified for info in objects]
    local = lake.local_path(key)
    if local is not None:
        with suppress(FileNotFoundError):
            times.append(datetime.fromtimestamp(local.stat().st_mtime, UTC))
    return max(times) if times else utc_now()


def collect_garbage(
    lake: ObjectStore,
    older_than: timedelta | None = None,
    *,
    datasets: Iterable[str] | None = None,
    scratch: bool = True,
    uploads: bool = True,
    dry_run: bool = False,
    now: datetime | None = None,
) -> GarbageReport:
    """Remove what killed writers left behind; never a committed snapshot or a young write.

    A snapshot folder ``datasets/<dataset>/<folder>/`` is garbage when it has no
    ``_manifest.json`` (a local ``.staging-<id>/`` always counts as uncommitted) and nothing
    in it changed for ``older_than``: a writer still running keeps adding parts, and one that
    wrote nothing for that long is presumed dead. Locally a stale staging area is first renamed
    (atomically) to ``.trash-...`` so a writer that comes back fails cleanly instead of
    publishing half a snapshot; writers also check their parts are all there before they
    commit. On S3 the same pass aborts unfinished multipart uploads started before the
    cut-off, except in a folder that is young (its writer may be running).

    Args:
        lake: the lake root.
        older_than: minimum age of an uncommitted folder (default: the
            ``staging_max_age_hours`` setting, 24 h).
        datasets: only these datasets (default: all).
        scratch: also remove this machine's temporary folders of dead flashsale processes
            (:func:`flashsale_ml.storage.collect_stale_scratch`) older than ``older_than``.
        uploads: also abort stale multipart uploads (S3). Writers leave this to the gc verb:
            moto's S3 server reports every upload as started in 2010, so the start time
            alone cannot protect the first, still running upload of a concurrent writer.
        dry_run: report, remove nothing.
        now: the reference time (default: now).

    Returns:
        What was removed, what was kept for being too young, and the aborted uploads.
    """
    if older_than is None:
        older_than = timedelta(hours=_settings_value("staging_max_age_hours", 24.0))
    if older_than <= timedelta(0):
        raise ValueError(f"older_than must be positive, got {older_than}")
    now = now or utc_now()
    cutoff = now - older_than
    report = GarbageReport(older_than.total_seconds() / 3600, dry_run)
    selected = list(datasets) if datasets is not None else None

    for (dataset, folder), objects in sorted(_snapshot_folders(lake, selected).items()):
        key = f"datasets/{dataset}/{folder}"
        staging = folder.startswith((STAGING_PREFIX, TRASH_PREFIX))
        if not staging and any(o.key == f"{key}/{MANIFEST}" for o in objects):
            continue  # committed: never touched
        modified = _folder_modified(lake, key, objects)
        area = StaleArea(
            lake.uri(key),
            len(objects),
            sum(o.size for o in objects),
            round((now - modified).total_seconds() / 3600, 3),
        )
        if modified > cutoff and not folder.startswith(TRASH_PREFIX):
            report.kept_young.append(area)
            continue
        if not dry_run and not _remove_uncommitted(lake, dataset, folder):
            continue
        report.removed.append(area)
        log.warning(
            "%s stale uncommitted snapshot folder %s (%d objects, %s bytes, %.1f h old)",
            "would remove" if dry_run else "removed",
            area.uri,
            area.objects,
            f"{area.bytes:,}",
            area.age_hours,
        )

    if uploads:
        young = {area.uri for area in report.kept_young}
        prefixes = [f"datasets/{d}/" for d in selected] if selected is not None else ["datasets/"]
        for upload in (u for p in prefixes for u in lake.list_uploads(p)):
            folder = "/".join(upload.key.split("/")[:3])
            if upload.initiated >= cutoff or lake.uri(folder) in young:
                continue  # may belong to a writer that is still running
            if not dry_run:
                lake.abort_upload(upload)
            report.aborted_uploads += 1
    if scratch:
        removed = collect_stale_scratch(
            older_than.total_seconds(), now=now.timestamp(), dry_run=dry_run
        )
        report.scratch_removed = [str(p) for p in removed]
    return report


def _remove_uncommitted(lake: ObjectStore, dataset: str, folder: str) -> bool:
    key = f"datasets/{dataset}/{folder}"
    if lake.renames_atomically and not folder.startswith(TRASH_PREFIX):
        # Take it away from a writer that may still hold it, atomically, then delete it.
        trash = f"datasets/{dataset}/{TRASH_PREFIX}{folder.lstrip('.')}-{uuid.uuid4().hex[:8]}"
        try:
            lake.rename_prefix(key, trash)
        except FileNotFoundError:
            return False  # committed (renamed) or removed meanwhile
        key = trash
    elif not folder.startswith(TRASH_PREFIX) and lake.exists(f"{key}/{MANIFEST}"):
        return False  # committed since it was listed
    lake.delete_prefix(f"{key}/")
    return True
