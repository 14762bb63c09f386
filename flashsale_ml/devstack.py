"""Local servers for the demo and the end-to-end tests: a real ``mlflow server`` and an S3 API.

Both run as separate processes on loopback and are talked to over HTTP, exactly as a deployed
MLflow and MinIO/S3 would be. Nothing here is used by the pipeline itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

DEFAULT_S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "flashsale-local",
    "AWS_SECRET_ACCESS_KEY": "flashsale-local-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bin(name: str) -> str:
    """An executable from this interpreter's environment, falling back to PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name!r} is not installed in this environment")
    return found


def _wait_http(url: str, process: subprocess.Popen, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited with code {process.returncode} before answering {url}; "
                f"log:\n{log_path.read_text()[-4000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except OSError:
            time.sleep(0.25)
    raise TimeoutError(
        f"no answer from {url} after {timeout:.0f} s; log:\n{log_path.read_text()[-4000:]}"
    )


class _Server:
    name = "server"
    health_path = "/"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 90,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.port = port or free_port()
        self.env = {**os.environ, **(env or {})}
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        self.log_path = self.workdir / f"{self.name}-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> _Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.workdir,
                start_new_session=True,
            )
        _wait_http(self.url + self.health_path, self.process, self.startup_timeout, self.log_path)
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # The server forks workers: signal the whole process group.
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def __enter__(self) -> _Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class S3Server(_Server):
    """moto's S3-compatible server mode (the only S3 API installable here; MinIO in docker/)."""

    name = "moto-s3"
    health_path = "/moto-api/"

    def command(self) -> list[str]:
        return [_bin("moto_server"), "-H", "127.0.0.1", "-p", str(self.port)]

    def client_env(self) -> dict[str, str]:
        """What a client (or the MLflow server) needs to reach this S3 endpoint."""
        return {
            **DEFAULT_S3_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.url,
            "MLFLOW_S3_ENDPOINT_URL": self.url,
        }

    def create_bucket(self, bucket: str) -> None:
        import boto3

        boto3.client(
            "s3",
            endpoint_url=self.url,
            **{
                "aws_access_key_id": DEFAULT_S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                "aws_secret_access_key": DEFAULT_S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                "region_name": DEFAULT_S3_CREDENTIALS["AWS_DEFAULT_REGION"],
            },
        ).create_bucket(Bucket=bucket)


class MlflowServer(_Server):
    """``mlflow server`` with a SQLite backend and an artifact store.

    Args:
        backend_db: path of the SQLite file.
        artifacts: ``s3://bucket/prefix`` (served through the server as ``mlflow-artifacts:/``)
            or a local folder (clients write there directly, so runs logged without the
            server share the same store).
    """

    name = "mlflow"
    health_path = "/health"

    def __init__(
        self,
        workdir: Path,
        backend_db: Path,
        artifacts: str,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        workers: int = 2,
        startup_timeout: float = 120,
    ) -> None:
        # MLflow 3's server starts ~9 job-runner processes (GenAI trace rollups, judges) that
        # this project never uses; on a 2-core machine they compete with training.
        quiet = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        super().__init__(workdir, port, {**quiet, **(env or {})}, startup_timeout)
        self.backend_db = Path(backend_db).resolve()
        self.artifacts = artifacts
        self.workers = workers

    def command(self) -> list[str]:
        cmd = [
            _bin("mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--backend-store-uri",
            f"sqlite:///{self.backend_db}",
            "--workers",
            str(self.workers),
        ]
        if self.artifacts.startswith("s3://"):
            cmd += ["--artifacts-destination", self.artifacts]
        else:
            root = Path(self.artifacts).resolve()
            root.mkdir(parents=True, exist_ok=True)
            cmd += ["--default-artifact-root", root.as_uri(), "--no-serve-artifacts"]
        return cmd
