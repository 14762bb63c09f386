"""Validation throughput: wall time and peak RSS of `flashsale validate` on large snapshots.

    python benchmarks/bench_validate.py --data <raw snapshot URI> [<raw snapshot URI> ...]
    python benchmarks/bench_validate.py --lake file:///tmp/bench-lake   # every raw snapshot

Each snapshot is validated twice in a fresh child process: the events table alone (suite rules
only) and the whole snapshot (every suite plus referential, campaign-window, freshness,
experiment-integrity and drift checks). Target (issue 4): 1e8 events in <= 3 min, <= 4 GB.

A validation writes into its lake: a report next to the data and, when the whole snapshot
passes, the dataset's drift reference (``validation/<dataset>/accepted_profile.json``), which
the next validation compares against. So the lake is never validated in place: every run
validates a private copy of the snapshot (hard links where the file system allows, else a
copy, made before the clock starts) in a private lake seeded with the lake's drift reference
as it was when the benchmark started. Each run therefore sees the same reference whatever ran
before it, and the lake is left exactly as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import run_measured


def _snapshots(lake: str) -> list[str]:
    from flashsale_ml.datasets import list_snapshots
    from flashsale_ml.storage import open_store

    return list_snapshots(open_store(lake), "raw")


def _dataset_of(snapshot_uri: str) -> tuple[str, str, str]:
    """(lake root URI, dataset, snapshot id) of ``<root>/datasets/<dataset>/<id>``."""
    root, _, rest = snapshot_uri.rstrip("/").partition("/datasets/")
    dataset, _, snapshot_id = rest.partition("/")
    return root, dataset, snapshot_id


def _place(store, key: str, target: Path) -> None:
    """Hard-link (else copy, else download) the object ``key`` of ``store`` to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    source = store.local_path(key)
    if source is None:
        store.download_file(key, target)
        return
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(source, target)


def drift_reference_key(dataset: str) -> str:
    from flashsale_ml.validation.report import ACCEPTED_PROFILE

    return f"validation/{dataset}/{ACCEPTED_PROFILE}"


def read_reference(snapshot_uri: str) -> bytes | None:
    """The lake's drift reference for the snapshot's dataset, as it is now (None: none yet)."""
    from flashsale_ml.storage import ObjectNotFoundError, open_store

    root, dataset, _ = _dataset_of(snapshot_uri)
    try:
        return open_store(root).read_bytes(drift_reference_key(dataset))
    except ObjectNotFoundError:
        return None


@contextmanager
def private_copy(snapshot_uri: str, reference: bytes | None) -> Iterator[str]:
    """The URI of the snapshot in a fresh private lake holding ``reference`` as its drift
    reference; the private lake is removed afterwards. Nothing is written to the source lake."""
    from flashsale_ml.storage import open_store

    _, dataset, snapshot_id = _dataset_of(snapshot_uri)
    prefix = f"datasets/{dataset}/{snapshot_id}"
    private = Path(tempfile.mkdtemp(prefix="bench-validate-lake-"))
    try:
        source = open_store(snapshot_uri)
        for key in source.list(""):
            _place(source, key, private / prefix / key)
        if reference is not None:
            target = private / drift_reference_key(dataset)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(reference)
        yield open_store(private.as_uri()).uri(prefix)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", nargs="*", default=[])
    parser.add_argument("--lake", default=None)
    args = parser.parse_args(argv)
    from flashsale_ml.datasets import resolve_snapshot_uri

    uris = [resolve_snapshot_uri(u) for u in args.data] + (
        _snapshots(args.lake) if args.lake else []
    )
    # Every run is compared against the references as they are now, before any run.
    references = {uri: read_reference(uri) for uri in uris}
    for uri in uris:
        from flashsale_ml.datasets import Snapshot

        events = Snapshot(uri).manifest.tables["events"].rows
        reference = references[uri]
        for scope, extra in (("events table", ["--table", "events"]), ("whole snapshot", [])):
            out = Path(tempfile.mkstemp(suffix=".json")[1])
            with private_copy(uri, reference) as copy:
                cmd = [
                    sys.executable,
                    "-m",
                    "flashsale_ml.cli",
                    "--log-level",
                    "WARNING",
                    "validate",
                    "--data",
                    copy,
                    *extra,
                ]
                with out.open("w") as fh:
                    m = run_measured(cmd, stdout=fh)
            summary = json.loads(out.read_text() or "{}")
            out.unlink()
            print(
                json.dumps(
                    {
                        "events": events,
                        "scope": scope,
                        "wall_s": round(m.wall_s, 1),
                        "peak_rss_gib": round(m.peak_rss_gib, 2),
                        "exit": m.exit_code,
                        "success": summary.get("success"),
                        "engines": summary.get("engines"),
                        "drift_reference": reference is not None,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
