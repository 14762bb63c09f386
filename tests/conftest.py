"""Shared fixtures: a real S3 API over HTTP (moto server), lakes, and small simulated datasets."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flashsale_ml.devstack import S3Server
from flashsale_ml.storage import ObjectStore, open_store

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

for noisy in ("great_expectations", "alembic", "botocore", "urllib3", "matplotlib"):
    logging.getLogger(noisy).setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server as a separate process on a loopback port."""
    with S3Server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = s3_server.client_env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def s3_lake(s3_server: S3Server, s3_env: dict[str, str]) -> ObjectStore:
    bucket = f"lake-{uuid.uuid4().hex[:10]}"
    s3_server.create_bucket(bucket)
    return open_store(f"s3://{bucket}/flashsale")


@pytest.fixture
def local_lake(tmp_path: Path) -> ObjectStore:
    return open_store((tmp_path / "lake").as_uri())


@pytest.fixture(params=["local", "s3"])
def lake(request: pytest.FixtureRequest) -> ObjectStore:
    """Each storage test runs against a local folder and against S3 over HTTP."""
    return request.getfixturevalue(f"{request.param}_lake")


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory):
    """One small simulated dataset shared by read-only tests."""
    from flashsale_ml.simulation import SimulationConfig, simulate

    lake = open_store(tmp_path_factory.mktemp("world").as_uri())
    return simulate(SimulationConfig(users=1_500, days=21, seed=7), lake)


def in_ci() -> bool:
    """CI services (GitHub Actions, GitLab, ...) set ``CI=true``."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def shared_data(name: str) -> Path:
    """A real public dataset from ``../shared/data``.

    Missing on a developer machine, the test is skipped; in CI (``CI=true``) a missing dataset
    fails the test, so a CI run cannot pass while silently skipping the real-data tests.
    """
    path = SHARED_DATA / name
    if not path.exists():
        message = f"real dataset {name} not found at {path}"
        if in_ci():
            pytest.fail(f"{message}; CI=true requires every real dataset", pytrace=False)
        pytest.skip(message)
    return path
