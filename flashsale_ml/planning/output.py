"""Writing and reading a plan folder, committed atomically.

A plan folder holds ``targeting.parquet`` (every scored user: role, promotion, expected value
and cost), ``assignments.parquet`` (the contract's ``assignments`` table: the treated users
and the control group, what evaluation measures), ``predictions.parquet`` (every user x
promotion type: the probabilities and values the plan was made from, for accountability),
``summary.md`` (what the approver reads) and ``plan.json`` (the summary as numbers, the spec,
the models and data used, and every file's SHA-256). These five are a function of the inputs:
planning again gives the same bytes. ``lineage.json`` records the MLflow run that wrote them.

Commit: on a local folder the files are staged beside the target and renamed into place (an
older plan of the same campaign is swapped out, never mixed in); on S3, where nothing renames,
``plan.json`` goes last and lists every file's hash, so a reader never trusts a folder without
it or with files that do not match it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from flashsale_ml.errors import DataError
from flashsale_ml.storage import ObjectStore, open_store

PLAN_FILE = "plan.json"
LINEAGE_FILE = "lineage.json"
PLAN_TABLES = ("targeting", "assignments", "predictions")
# Sections a plan has when their models exist (``stock``: the demand champion's).
OPTIONAL_TABLES = ("stock",)


class PlanNotCommittedError(DataError):
    """A plan folder without a committed ``plan.json``, or with files that do not match it."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parquet_bytes(table: pa.Table) -> bytes:
    """Deterministic Parquet bytes (no writer-dependent statistics beyond the data's own)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", row_group_size=1 << 20)
    return sink.getvalue().to_pybytes()


def publish_plan(
    out_uri: str,
    tables: Mapping[str, pa.Table],
    summary_md: str,
    plan: dict[str, Any],
    lineage: dict[str, Any],
) -> str:
    """Commit a plan folder at ``out_uri`` (replacing an older plan there); returns its URI."""
    files: dict[str, bytes] = {f"{name}.parquet": parquet_bytes(t) for name, t in tables.items()}
    files["summary.md"] = summary_md.encode()
    plan = {**plan, "files": {name: _sha256(data) for name, data in sorted(files.items())}}
    files[PLAN_FILE] = (json.dumps(plan, indent=2, sort_keys=True, default=str) + "\n").encode()
    files[LINEAGE_FILE] = (json.dumps(lineage, indent=2, sort_keys=True) + "\n").encode()
    return commit_files(out_uri, files)


def commit_files(out_uri: str, files: Mapping[str, bytes]) -> str:
    """Commit a plan folder's files (``plan.json`` among them) at ``out_uri``, replacing what
    was there; returns the folder's URI."""
    if PLAN_FILE not in files:
        raise ValueError(f"a plan folder needs its {PLAN_FILE}")
    store = open_store(out_uri)
    root = store.local_path("")
    if root is not None:
        _publish_local(root, files)
    else:
        _publish_s3(store, files)
    return store.uri("").rstrip("/")


def _publish_local(root: Path, files: Mapping[str, bytes]) -> None:
    root = root.resolve()
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.parent / f".staging-{root.name}-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        old = None
        if root.exists():
            old = root.parent / f".trash-{root.name}-{uuid.uuid4().hex}"
            root.rename(old)
        staging.rename(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _publish_s3(store: ObjectStore, files: Mapping[str, bytes]) -> None:
    # plan.json is the commit: an older plan.json is removed first, so a reader never pairs it
    # with the new files while they upload.
    if store.exists(PLAN_FILE):
        store.delete_prefix(PLAN_FILE)
    for name, data in files.items():
        if name != PLAN_FILE:
            store.write_bytes(name, data)
    store.write_bytes(PLAN_FILE, files[PLAN_FILE])


def read_plan(uri: str) -> dict[str, Any]:
    """The committed ``plan.json`` of a plan folder, after checking every file against it.

    Raises:
        PlanNotCommittedError: no ``plan.json``, or a file missing or changed.
    """
    store = open_store(uri)
    if not store.exists(PLAN_FILE):
        raise PlanNotCommittedError(f"{uri} holds no committed plan ({PLAN_FILE} is missing)")
    plan = json.loads(store.read_bytes(PLAN_FILE))
    for name, digest in plan.get("files", {}).items():
        try:
            data = store.read_bytes(name)
        except FileNotFoundError:
            raise PlanNotCommittedError(f"plan {uri}: {name} is missing") from None
        if _sha256(data) != digest:
            raise PlanNotCommittedError(f"plan {uri}: {name} does not match {PLAN_FILE}")
    return plan


def read_plan_table(uri: str, table: str) -> pa.Table:
    """One table of a committed plan (``targeting``, ``assignments``, ``predictions``, and
    ``stock`` where the plan has that section).

    Raises:
        ValueError: not a plan table, or a section this plan does not have.
    """
    if table not in PLAN_TABLES + OPTIONAL_TABLES:
        raise ValueError(f"a plan has tables {PLAN_TABLES + OPTIONAL_TABLES}, not {table!r}")
    plan = read_plan(uri)
    if table in OPTIONAL_TABLES and table not in plan.get("sections", {}):
        raise ValueError(f"the plan {uri} has no {table!r} section")
    return pq.read_table(pa.BufferReader(open_store(uri).read_bytes(f"{table}.parquet")))
