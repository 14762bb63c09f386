"""Crash leftovers, damaged files and temporary folders (issue 22, items 6, 7 and 9).

Writers are real subprocesses stopped with real signals, against a local folder and against
S3 over HTTP (moto's server); nothing in boto3 or the signal module is patched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from flashsale_ml.datasets import (
    CorruptFileError,
    Snapshot,
    SnapshotWriter,
    TerminatedBySignal,
    collect_garbage,
    list_snapshots,
)
from flashsale_ml.errors import DataError
from flashsale_ml.lineage import utc_now
from flashsale_ml.storage import ObjectStore, StorageError, collect_stale_scratch

REPO_ROOT = Path(__file__).resolve().parents[1]
SIMULATE_ARGS = ["--users", "200000", "--days", "14", "--out"]  # ~10 s of writing

# Appends a 100-row part every 0.1 s until stopped; prints a line per part.
SLOW_WRITER = r"""
import signal, sys, time
import pyarrow as pa
from flashsale_ml.datasets import SnapshotWriter
from flashsale_ml.storage import open_store

lake_uri, previous = sys.argv[1], sys.argv[2]
if previous == "airflow":
    # What Airflow 3's task runner installs: SIGTERM calls the operator's on_kill and returns.
    def on_term(signum, frame):
        print("on_kill called", flush=True)
    signal.signal(signal.SIGTERM, on_term)
elif previous == "sigint-default":
    # Airflow's supervisor resets SIGINT to SIG_DFL in task processes, then stops tasks with it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
with SnapshotWriter(open_store(lake_uri), "slow") as writer:
    for part in range(10_000):
        writer.append("numbers", pa.table({"id": list(range(part * 100, part * 100 + 100))}))
        print(f"staged {part}", flush=True)
        time.sleep(0.1)
print("finished", flush=True)
"""


@pytest.fixture
def tmp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private temporary-files root for this process and the subprocesses it starts."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setenv("TMPDIR", str(root))
    monkeypatch.setattr(tempfile, "tempdir", None)  # forget the cached default
    return root


def _start_writer(lake: ObjectStore, previous: str = "default") -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, lake.root_uri, previous],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    # Wait until three parts are staged: the writer is in the middle of its snapshot.
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            proc.wait(5)
            raise AssertionError(f"writer died early: {proc.stderr.read()}")  # type: ignore[union-attr]
        if line.startswith("staged 2"):
            return proc
    proc.kill()
    raise AssertionError("the writer staged nothing within 60 s")


def _stop(proc: subprocess.Popen[str], signum: int) -> tuple[str, str]:
    proc.send_signal(signum)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"writer ignored {signal.Signals(signum).name}: {err}") from None
    return out, err


def _staged(lake: ObjectStore) -> list[str]:
    return lake.list("datasets/slow/")


# --- item 6: SIGTERM is handled like Ctrl-C -------------------------------------------------------


def _stop_mid_write(lake: ObjectStore, tmp_root: Path, signum: int, previous: str) -> str:
    proc = _start_writer(lake, previous)
    staged = _staged(lake)
    assert staged, "parts are staged (locally under .staging-<id>/, on S3 at the final prefix)"
    if lake.renames_atomically:
        assert all("/.staging-" in key for key in staged)

    out, err = _stop(proc, signum)

    assert proc.returncode != 0 and "finished" not in out
    assert "TerminatedBySignal" in err and signal.Signals(signum).name in err, err
    assert _staged(lake) == [], "the stopped writer left staged parts behind"
    assert list_snapshots(lake, "slow") == []
    assert list(tmp_root.iterdir()) == [], "the writer's scratch folder was left behind"
    return out


def test_sigterm_mid_write_removes_the_staged_parts(lake: ObjectStore, tmp_root: Path) -> None:
    _stop_mid_write(lake, tmp_root, signal.SIGTERM, "default")


@pytest.mark.parametrize(
    ("signum", "previous"),
    [(signal.SIGTERM, "airflow"), (signal.SIGINT, "sigint-default")],
    ids=["sigterm-chains-to-airflow-on-kill", "sigint-reset-to-default-by-airflow"],
)
def test_airflow_task_processes_clean_up_too(
    local_lake: ObjectStore, tmp_root: Path, signum: int, previous: str
) -> None:
    out = _stop_mid_write(local_lake, tmp_root, signum, previous)
    if previous == "airflow":
        assert "on_kill called" in out, "the previous (Airflow) handler must still run"


def test_sigterm_during_flashsale_simulate_leaves_nothing(tmp_path: Path, tmp_root: Path) -> None:
    lake = tmp_path / "lake"
    env = dict(os.environ, FLASHSALE_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "flashsale_ml.cli", "simulate", *SIMULATE_ARGS, lake.as_uri()],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 90
    while not list(lake.glob("datasets/raw/.staging-*/*")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "simulate never started writing"
        time.sleep(0.05)

    _, err = _stop(proc, signal.SIGTERM)

    # 128 + SIGTERM, as a shell reports a process ended by that signal
    assert proc.returncode == 143 and "terminated" in err, (proc.returncode, err)
    leftovers = [p.relative_to(lake).as_posix() for p in lake.rglob("*") if p.is_file()]
    assert leftovers == []
    assert list(tmp_root.iterdir()) == []


def test_the_previous_handlers_come_back_and_only_the_main_thread_installs(
    local_lake: ObjectStore,
) -> None:
    calls: list[int] = []

    def previous(signum: int, frame: object) -> None:
        calls.append(signum)

    saved = signal.signal(signal.SIGTERM, previous)
    try:
        with SnapshotWriter(local_lake, "a") as outer:
            outer.append("t", pa.table({"x": [1]}))
            with SnapshotWriter(local_lake, "b") as inner:
                inner.append("t", pa.table({"x": [1]}))
                assert signal.getsignal(signal.SIGTERM) is not previous
            assert signal.getsignal(signal.SIGTERM) is not previous  # the outer one still open
        assert signal.getsignal(signal.SIGTERM) is previous

        # A real SIGTERM to this process: the previous handler runs, then the writer unwinds.
        with (
            pytest.raises(TerminatedBySignal, match="SIGTERM"),
            SnapshotWriter(local_lake, "c") as writer,
        ):
            writer.append("t", pa.table({"x": [1]}))
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs before this returns
        assert calls == [signal.SIGTERM]
        assert local_lake.list("datasets/c/") == []
        assert signal.getsignal(signal.SIGTERM) is previous

        # Writers in other threads cannot install handlers and must not try.
        failures: list[BaseException] = []

        def write() -> None:
            try:
                with SnapshotWriter(local_lake, "d") as w:
                    w.append("t", pa.table({"x": [1]}))
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)

        thread = threading.Thread(target=write)
        thread.start()
        thread.join()
        assert failures == [] and list_snapshots(local_lake, "d")
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, saved)


class _SignalledDuringCommit(SnapshotWriter):
    def _commit(self):  # type: ignore[no-untyped-def]
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # a handler that raises would have done so by now
        return super()._commit()


class _SignalledDuringCleanup(SnapshotWriter):
    def _abort(self, reason: str) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
        super()._abort(reason)


def test_a_signal_during_commit_or_cleanup_waits_for_it(local_lake: ObjectStore) -> None:
    calls: list[int] = []
    saved = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        # Mid-commit: the snapshot is committed whole, then the process is stopped.
        with (
            pytest.raises(TerminatedBySignal),
            _SignalledDuringCommit(local_lake, "commit") as writer,
        ):
            writer.append("t", pa.table({"x": [1]}))
        assert list_snapshots(local_lake, "commit") == [writer.uri]
        assert all(f"/{writer.snapshot_id}/" in k for k in local_lake.list("datasets/commit/"))

        # Mid-cleanup: the cleanup finishes and the original error is what propagates.
        with (
            pytest.raises(RuntimeError, match="boom"),
            _SignalledDuringCleanup(local_lake, "cleanup") as writer,
        ):
            writer.append("t", pa.table({"x": [1]}))
            raise RuntimeError("boom")
        assert local_lake.list("datasets/cleanup/") == []
        assert calls == [signal.SIGTERM, signal.SIGTERM]  # the previous handler saw both
    finally:
        signal.signal(signal.SIGTERM, saved)


# --- item 6: what a kill -9 leaves, and the gc ----------------------------------------------------


def _table(n: int) -> pa.Table:
    return pa.table({"id": pa.array(range(n), pa.int64())})


def test_kill_9_leftovers_are_collected_once_stale(lake: ObjectStore, tmp_root: Path) -> None:
    with SnapshotWriter(lake, "slow") as writer:
        writer.append("numbers", _table(5))
    committed, committed_prefix = writer.uri, f"datasets/slow/{writer.snapshot_id}/"
    proc = _start_writer(lake)
    _stop(proc, signal.SIGKILL)
    leftovers = [k for k in _staged(lake) if not k.startswith(committed_prefix)]
    assert leftovers, "SIGKILL cannot be handled: the parts stay"
    assert list_snapshots(lake, "slow") == [committed]
    if not lake.renames_atomically:
        assert list(tmp_root.glob("flashsale-snapshot-*")), "and so does the S3 upload scratch"

    # Young: it could be a writer that is still running.
    report = collect_garbage(lake, timedelta(hours=24))
    assert report.removed == [] and len(report.kept_young) == 1
    assert set(_staged(lake)) >= set(leftovers)

    later = utc_now() + timedelta(hours=25)
    dry = collect_garbage(lake, timedelta(hours=24), now=later, dry_run=True)
    assert len(dry.removed) == 1 and set(_staged(lake)) >= set(leftovers)

    report = collect_garbage(lake, timedelta(hours=24), now=later)
    assert [a.objects for a in report.removed] == [len(leftovers)]
    assert report.bytes_removed > 0
    assert list_snapshots(lake, "slow") == [committed]
    with Snapshot(committed, verify="full") as snap:  # committed: untouched
        assert snap.read_table("numbers").num_rows == 5
    assert all(k.startswith(committed_prefix) for k in _staged(lake))
    assert list(tmp_root.iterdir()) == [], "the dead writer's scratch folder is collected too"
    summary = report.summary()
    assert summary["removed"][0]["uri"].startswith(lake.root_uri)


def _leftover(lake: ObjectStore, dataset: str, name: str) -> str:
    folder = f".staging-{name}" if lake.renames_atomically else name
    lake.write_bytes(f"datasets/{dataset}/{folder}/numbers/part-00000.parquet", b"partial")
    return f"datasets/{dataset}/{folder}/"


def test_the_next_write_of_a_dataset_collects_its_stale_leftovers(
    lake: ObjectStore, tmp_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = _leftover(lake, "demo", "dead")
    other_dataset = _leftover(lake, "other", "dead")
    time.sleep(2.2)
    young = _leftover(lake, "demo", "young")
    monkeypatch.setenv("FLASHSALE_STAGING_MAX_AGE_HOURS", str(1.5 / 3600))

    with SnapshotWriter(lake, "demo") as writer:
        writer.append("numbers", _table(3))

    assert lake.list(dead) == [], "a stale leftover of the dataset is removed"
    assert lake.list(young), "a young one may be a running writer: kept"
    assert lake.list(other_dataset), "other datasets are left to their own writers and the gc"
    with Snapshot(writer.uri) as snap:
        assert snap.read_table("numbers").num_rows == 3


def test_a_crash_between_manifest_and_rename_is_garbage_too(
    local_lake: ObjectStore, tmp_root: Path
) -> None:
    # Locally the manifest is written inside .staging-<id>/ just before the rename; a kill in
    # between leaves a staging area with a manifest: still uncommitted, still collected. So is
    # a .trash- folder of a gc that was killed while deleting, whatever its age.
    staged = local_lake.local_path("datasets/demo/.staging-x/_manifest.json")
    trash = local_lake.local_path("datasets/demo/.trash-staging-y-0000/_manifest.json")
    for path in (staged, trash):
        path.parent.mkdir(parents=True)
        path.write_text("{}")
    report = collect_garbage(local_lake, timedelta(hours=1), now=utc_now() + timedelta(minutes=1))
    assert [a.uri.rsplit("/", 1)[-1] for a in report.removed] == [".trash-staging-y-0000"]
    report = collect_garbage(local_lake, timedelta(hours=1), now=utc_now() + timedelta(hours=2))
    assert [a.uri.rsplit("/", 1)[-1] for a in report.removed] == [".staging-x"]
    assert local_lake.list("datasets/") == []
    assert list(local_lake.local_path("datasets/demo").iterdir()) == []


def test_a_writer_whose_staging_area_was_collected_does_not_commit(
    lake: ObjectStore, tmp_root: Path
) -> None:
    with (
        pytest.raises(StorageError, match=r"staged part .* is missing.*flashsale gc"),
        SnapshotWriter(lake, "demo") as writer,
    ):
        writer.append("numbers", _table(3))
        report = collect_garbage(lake, timedelta(hours=1), now=utc_now() + timedelta(hours=2))
        assert len(report.removed) == 1
    assert lake.list("datasets/demo/") == []
    assert list_snapshots(lake, "demo") == []


def test_gc_aborts_stale_multipart_uploads(s3_lake: ObjectStore, tmp_root: Path) -> None:
    from flashsale_ml.storage import make_s3_client

    client = make_s3_client()
    bucket, prefix = s3_lake.root_uri.removeprefix("s3://").split("/", 1)

    def start_upload(folder: str) -> None:
        key = f"{prefix}/datasets/demo/{folder}/events/part-00001.parquet"
        upload = client.create_multipart_upload(Bucket=bucket, Key=key)
        client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * 1024
        )

    def pending() -> list[str]:
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return sorted(u["Key"].split("/")[3] for u in uploads)

    start_upload("killed")  # a writer killed during its first large upload
    start_upload("running")  # one that is still writing: it has a fresh part
    s3_lake.write_bytes("datasets/demo/running/events/part-00000.parquet", b"fresh")

    with SnapshotWriter(s3_lake, "demo") as writer:  # writers leave uploads to the gc verb
        writer.append("numbers", _table(1))
    assert pending() == ["killed", "running"]
    # (moto reports every upload as started in 2010, so both count as old by time alone)
    report = collect_garbage(s3_lake, timedelta(hours=24))
    assert report.aborted_uploads == 1 and pending() == ["running"]
    assert s3_lake.list("datasets/demo/running/")


def test_stale_scratch_of_dead_processes_only(tmp_root: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    old = time.time() - 48 * 3600
    folders = {
        "dead": tmp_root / f"flashsale-read-{dead_pid}-abcdefgh",
        "alive": tmp_root / f"flashsale-read-{os.getpid()}-abcdefgh",
        "legacy": tmp_root / "flashsale-validation-abcd_fgh",
        "foreign": tmp_root / "tmpabcdefgh",
        "dead-young": tmp_root / f"flashsale-gx-docs-{dead_pid}-zyxwvuts",
    }
    for name, folder in folders.items():
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "file").write_text("x")
        if name != "dead-young":
            for path in (folder / "sub" / "file", folder / "sub", folder):
                os.utime(path, (old, old))

    removed = collect_stale_scratch(24 * 3600)

    assert sorted(removed) == sorted([folders["dead"], folders["legacy"]])
    assert sorted(p.name for p in tmp_root.iterdir()) == sorted(
        folders[n].name for n in ("alive", "foreign", "dead-young")
    )


# --- item 7: checksums are checked ----------------------------------------------------------------


def _committed(lake: ObjectStore) -> tuple[str, str]:
    with SnapshotWriter(lake, "demo") as writer:
        writer.append("numbers", pa.table({"id": pa.array(range(1000), pa.int64())}))
    return writer.uri, "numbers/part-00000.parquet"


def _flip_a_bit(snapshot_uri: str, key: str) -> None:
    store = Snapshot(snapshot_uri, verify="size").store
    data = bytearray(store.read_bytes(key))
    data[len(data) // 2] ^= 0x01
    local = store.local_path(key)
    if local is not None:  # in place, as a disk would do it
        with local.open("r+b") as fh:
            fh.write(bytes(data))
    else:
        store.write_bytes(key, bytes(data))


def _truncate(snapshot_uri: str, key: str) -> None:
    store = Snapshot(snapshot_uri, verify="size").store
    data = store.read_bytes(key)
    store.write_bytes(key, data[:-100])


def test_a_bit_flip_is_caught_by_the_full_check(
    lake: ObjectStore, tmp_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, key = _committed(lake)
    digest = Snapshot(uri).manifest.tables["numbers"].sha256[key]
    _flip_a_bit(uri, key)

    with pytest.raises(CorruptFileError) as caught, Snapshot(uri, verify="full") as snap:
        snap.read_table("numbers")
    message = str(caught.value)
    assert message.startswith(f"corrupt file {uri}/{key}: expected sha256 {digest}, got ")
    assert "table 'numbers'" in message
    assert isinstance(caught.value, DataError)

    monkeypatch.setenv("FLASHSALE_VERIFY_CHECKSUMS", "full")
    with pytest.raises(CorruptFileError, match="expected sha256"), Snapshot(uri) as snap:
        snap.local_files("numbers")
    with pytest.raises(CorruptFileError, match="expected sha256"), Snapshot(uri) as snap:
        snap.verify()
    assert list(tmp_root.iterdir()) == []


def test_a_truncated_file_fails_the_default_size_check(lake: ObjectStore, tmp_root: Path) -> None:
    uri, key = _committed(lake)
    size = Snapshot(uri).manifest.tables["numbers"].sizes[key]
    _truncate(uri, key)
    with (
        pytest.raises(
            CorruptFileError,
            match=rf"corrupt file {uri}/{key}: expected {size} bytes, got {size - 100} ",
        ),
        Snapshot(uri) as snap,
    ):
        snap.read_table("numbers")


@pytest.fixture(scope="module")
def small_frames(small_world) -> dict[str, pa.Table]:
    with Snapshot(small_world.raw_uri) as snap:
        return {t: snap.read_table(t) for t in snap.tables}


def _raw_copy(lake: ObjectStore, frames: dict[str, pa.Table]) -> str:
    with SnapshotWriter(lake, "raw", metadata={"copy": True}) as writer:
        for name, table in frames.items():
            writer.write_table(name, table)
    return writer.uri


def test_validation_names_a_corrupt_file_before_anything_else(
    lake: ObjectStore, tmp_root: Path, small_frames: dict[str, pa.Table]
) -> None:
    from flashsale_ml.validation import validate_snapshot

    uri = _raw_copy(lake, {"users": small_frames["users"]})
    _flip_a_bit(uri, "users/part-00000.parquet")  # same size: only the hash sees it
    with pytest.raises(
        CorruptFileError, match=r"corrupt file .*/users/part-00000\.parquet: expected sha256"
    ):
        validate_snapshot(uri)
    assert lake.list("validation/") == [], "no report for data that was never read"
    assert list(tmp_root.iterdir()) == []


def test_features_refuse_a_corrupt_raw_snapshot(
    local_lake: ObjectStore,
    tmp_root: Path,
    small_frames: dict[str, pa.Table],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flashsale_ml.features import build_features

    uri = _raw_copy(local_lake, small_frames)
    _truncate(uri, "users/part-00000.parquet")
    with pytest.raises(CorruptFileError, match=r"users/part-00000\.parquet: expected \d+ bytes"):
        build_features(uri, local_lake)
    assert list_snapshots(local_lake, "features") == []

    uri = _raw_copy(local_lake, small_frames)
    _flip_a_bit(uri, "users/part-00000.parquet")
    monkeypatch.setenv("FLASHSALE_VERIFY_CHECKSUMS", "full")
    with pytest.raises(CorruptFileError, match=r"users/part-00000\.parquet: expected sha256"):
        build_features(uri, local_lake)
    assert list_snapshots(local_lake, "features") == []


# --- item 9: validation leaves no temporary folders -----------------------------------------------


def test_validation_leaves_no_temporary_folders(
    lake: ObjectStore, tmp_root: Path, tmp_path: Path, small_frames: dict[str, pa.Table]
) -> None:
    from flashsale_ml.config import Settings
    from flashsale_ml.validation import DataValidationError, validate_snapshot

    good = _raw_copy(lake, small_frames)
    events = small_frames["events"]
    ids = events.column("event_id").to_pylist()
    ids[1] = ids[0]
    bad = _raw_copy(
        lake,
        {
            **small_frames,
            "events": events.set_column(
                events.schema.get_field_index("event_id"),
                "event_id",
                pa.array(ids, events.schema.field("event_id").type),
            ),
        },
    )
    assert list(tmp_root.iterdir()) == []

    report = validate_snapshot(good)  # GX for every table, with Data Docs
    assert report.success and report.docs_uri and report.local_dir is None
    assert list(tmp_root.iterdir()) == [], "a passing validation leaked"
    assert lake.exists(report.report_uri.removeprefix(lake.root_uri + "/"))
    assert validate_snapshot(good, settings=Settings(validation_gx_max_rows=0)).success
    with pytest.raises(DataValidationError, match="event_id") as caught:
        validate_snapshot(bad)
    assert caught.value.local_dir is None
    assert list(tmp_root.iterdir()) == [], "a failing validation leaked"

    # A caller that wants the files (to log them to MLflow) owns the folder.
    keep = tmp_path / "keep"
    report = validate_snapshot(good, local_dir=keep)
    assert report.local_dir == keep
    assert {"report.json", "index.html", "data_docs"} <= {p.name for p in keep.iterdir()}
    assert (keep / "data_docs" / "index.html").exists()
    keep_bad = tmp_path / "keep-bad"
    with pytest.raises(DataValidationError) as caught:
        validate_snapshot(bad, local_dir=keep_bad)
    assert caught.value.local_dir == keep_bad and (keep_bad / "report.json").exists()
    assert list(tmp_root.iterdir()) == []


@pytest.fixture(autouse=True)
def _no_handler_left_behind() -> Iterator[None]:
    before = signal.getsignal(signal.SIGTERM)
    yield
    assert signal.getsignal(signal.SIGTERM) is before, "a writer left its SIGTERM handler"


def test_the_gc_command_reports_what_it_removed(tmp_path: Path, capsys) -> None:
    import json
    import os
    import time

    from flashsale_ml.cli import main

    lake = tmp_path / "lake"
    stale = lake / "datasets" / "raw" / ".staging-20200101T000000.000000Z-deadbeef" / "users"
    stale.mkdir(parents=True)
    (stale / "part-00000.parquet").write_bytes(b"x" * 1000)
    old = time.time() - 48 * 3600
    for path in (stale / "part-00000.parquet", stale, stale.parent):
        os.utime(path, (old, old))
    assert main(["gc", "--lake", lake.as_uri(), "--dry-run"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["dry_run"] is True and stale.exists() and len(dry["removed"]) == 1
    assert main(["gc", "--lake", lake.as_uri()]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["bytes_removed"] >= 1000 and not stale.parent.exists()
    with pytest.raises(SystemExit):
        main(["gc", "--older-than-hours", "0"])
