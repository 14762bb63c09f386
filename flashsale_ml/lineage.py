"""What made an artifact: code version, config and timestamps, recorded with every output."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


@lru_cache(maxsize=1)
def code_version() -> str:
    """``<package version>+g<git sha>[.dirty]`` when run from a checkout, else the version.

    ``FLASHSALE_CODE_VERSION`` wins when set, so container images can stamp the build.
    """
    if stamped := os.environ.get("FLASHSALE_CODE_VERSION"):
        return stamped
    try:
        pkg = version("flashsale-ml")
    except PackageNotFoundError:
        pkg = "0+unknown"
    repo = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return pkg
    return f"{pkg}+g{sha}{'.dirty' if dirty else ''}"


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_snapshot_id(now: datetime | None = None) -> str:
    """Sortable, unique id: ``20261122T071600.123456Z-3f9a1c2b``.

    Microseconds keep ids made in the same second in the order they were made, so "the
    newest snapshot" (``.../latest``, the drift reference, the demo's calendar) is well defined;
    the random suffix keeps concurrent writers apart.
    """
    import uuid

    now = now or utc_now()
    return f"{now:%Y%m%dT%H%M%S}.{now.microsecond:06d}Z-{uuid.uuid4().hex[:8]}"
