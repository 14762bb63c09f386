"""Local servers for the demo and the end-to-end tests: a real ``mlflow server``, an S3 API and
a real Airflow (scheduler, api-server, dag-processor, triggerer) on PostgreSQL.

All run as separate processes on loopback and are talked to over HTTP, exactly as a deployed
MLflow, MinIO/S3 and Airflow would be. Nothing here is used by the pipeline itself.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "flashsale-local",
    "AWS_SECRET_ACCESS_KEY": "flashsale-local-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def live_group_members(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` that still run; zombies are not counted.

    A killed grandchild lingers as a zombie until its new parent reaps it, and a container's
    PID 1 may never do so; ``killpg(pgid, 0)`` still finds such a group. On Linux, ``/proc``
    tells the two apart; elsewhere the signal probe is the best there is.
    """
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    members = []
    for stat_file in proc.glob("[0-9]*/stat"):
        try:
            stat = stat_file.read_text()
        except OSError:
            continue  # the process exited while we looked
        # "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        # Z: a zombie (exited, not yet reaped); X: dead, being removed.
        if len(fields) > 2 and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(stat_file.parent.name))
    return sorted(members)


def _wait_groups_gone(pgids: Sequence[int], timeout: float) -> list[int]:
    """Wait until no process of ``pgids`` runs; the groups still running at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [g for g in pgids if live_group_members(g)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


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
        if self.process is None:
            return
        if self.process.poll() is None:
            # The server forks workers: signal the whole process group.
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        # Workers may outlive the leader (also one that had already exited).
        if live_group_members(self.process.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            _wait_groups_gone([self.process.pid], timeout=10)

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


# --- A real Airflow on PostgreSQL -------------------------------------------------------------

AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
TERMINAL_RUN_STATES = ("success", "failed")
# The states a Human-in-the-loop task waits in: Airflow 3.3 parks it in ``awaiting_input`` (no
# trigger); older versions defer it to a trigger on the triggerer (``deferred``). The UI's
# Required Actions page lists both.
HITL_WAITING_STATES = ("awaiting_input", "deferred")
# Keys of the health answer (``GET /api/v2/monitor/health``) and the component behind each.
_HEALTH_COMPONENTS = {
    "metadatabase": "api-server",
    "scheduler": "scheduler",
    "dag_processor": "dag-processor",
    "triggerer": "triggerer",
}


def _pg_connect(url: str):
    """A psycopg2 connection (autocommit) to the database of SQLAlchemy URL ``url``."""
    import psycopg2
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    conn = psycopg2.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        dbname=parsed.database,
        connect_timeout=10,
        **{k: v for k, v in parsed.query.items() if isinstance(v, str)},
    )
    conn.autocommit = True
    return conn


def postgres_database_exists(server_url: str, name: str) -> bool:
    """Whether database ``name`` exists on the PostgreSQL server of ``server_url``."""
    conn = _pg_connect(server_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            return cur.fetchone() is not None
    finally:
        conn.close()


def create_postgres_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``server_url``; return a URL that points at it."""
    from psycopg2 import sql
    from sqlalchemy.engine import make_url

    try:
        conn = _pg_connect(server_url)
    except Exception as exc:  # psycopg2.OperationalError: say what to do about it
        raise RuntimeError(
            f"cannot reach PostgreSQL at {make_url(server_url).render_as_string()} ({exc}). "
            "The Airflow end-to-end tests need PostgreSQL (127.0.0.1:5432, trust auth for "
            "'postgres' by default); set FLASHSALE_AIRFLOW_DATABASE_URL to point elsewhere."
        ) from exc
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(server_url: str, name: str, attempts: int = 5) -> None:
    """Drop database ``name``, ending the sessions still connected to it first."""
    from psycopg2 import sql

    conn = _pg_connect(server_url)
    try:
        with conn.cursor() as cur:
            for attempt in range(attempts):
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                try:
                    cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
                    return
                except Exception:  # a process reconnected between the two statements
                    if attempt == attempts - 1:
                        raise
                    time.sleep(1)
    finally:
        conn.close()


class AirflowApiError(RuntimeError):
    """A REST call to the Airflow API server answered with an error status."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> HTTP {status}: {body[:2000]}")
        self.method = method
        self.path = path
        self.status = status
        self.body = body


class AirflowClient:
    """The public REST API (``/api/v2``) of an Airflow API server, used as a person would.

    Logs in as the simple auth manager's admin (password from the generated password file)
    and sends the same requests as the UI: the trigger form, the Required Actions page.
    """

    def __init__(
        self,
        url: str,
        username: str = "admin",
        password: str | None = None,
        password_file: Path | None = None,
        diagnostics: Callable[[], str] | None = None,
        parked: Callable[[Mapping[str, Any]], bool] | None = None,
        poll_s: float = 1.0,
        settle_s: float = 10.0,
        settle_timeout_s: float = 90.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.username = username
        self._password = password
        self.password_file = password_file
        self._diagnostics = diagnostics
        self._parked = parked
        self.settle_s = settle_s
        self.settle_timeout_s = settle_timeout_s
        self.poll_s = poll_s
        self._token: str | None = None

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def password(self) -> str:
        if self._password is None:
            if self.password_file is None:
                raise ValueError("give a password or the simple auth manager's password file")
            self._password = json.loads(Path(self.password_file).read_text())[self.username]
        return self._password

    def token(self) -> str:
        """A JWT from the simple auth manager's ``POST /auth/token``."""
        if self._token is None:
            answer = self._send(
                "POST",
                "/auth/token",
                {"username": self.username, "password": self.password},
                authenticated=False,
            )
            self._token = answer["access_token"]
        return self._token

    def _send(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        authenticated: bool = True,
        accept: str = "application/json",
    ) -> Any:
        url = self.url + path
        if params:
            items = params.items() if isinstance(params, Mapping) else params
            query = [(k, v) for k, v in items if v is not None]
            query = [(k, str(v).lower() if isinstance(v, bool) else v) for k, v in query]
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": accept}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if authenticated:
            headers["Authorization"] = f"Bearer {self.token()}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw = response.read().decode()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            if exc.code == 401 and authenticated and self._token is not None:
                self._token = None  # expired: log in again once
                return self._send(method, path, body, params, authenticated, accept)
            raise AirflowApiError(method, path, exc.code, detail) from None
        if accept != "application/json":
            return raw
        return json.loads(raw) if raw else None

    def get(self, path: str, **params: Any) -> Any:
        return self._send("GET", path, params=params)

    def _paged(
        self,
        path: str,
        key: str,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
    ) -> list[dict]:
        items: list[dict] = []
        base = list(params.items() if isinstance(params, Mapping) else params or [])
        while True:
            page = self._send("GET", path, params=[*base, ("limit", 100), ("offset", len(items))])
            items += page[key]
            if not page[key] or len(items) >= page["total_entries"]:
                return items

    def _timeout(self, what: str, timeout: float, details: str = "") -> TimeoutError:
        extra = f"\n{self._diagnostics()}" if self._diagnostics else ""
        return TimeoutError(f"{what} not reached after {timeout:.0f} s{details}{extra}")

    # -- DAGs and runs -----------------------------------------------------------------------

    def health(self) -> dict:
        return self._send("GET", "/api/v2/monitor/health", authenticated=False)

    def import_errors(self) -> list[dict]:
        return self._paged("/api/v2/importErrors", "import_errors")

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> dict:
        """Wait until the dag-processor has parsed ``dag_id``; return ``GET /api/v2/dags/{id}``.

        Raises:
            RuntimeError: the DAG's file has an import error (the message has its traceback).
            TimeoutError: not parsed in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.get(f"/api/v2/dags/{dag_id}")
            except AirflowApiError as exc:
                if exc.status != 404:
                    raise
            errors = self.import_errors()
            if errors:
                text = "\n".join(f"{e['filename']}:\n{e['stack_trace']}" for e in errors)
                raise RuntimeError(f"DAG {dag_id!r} not parsed; import errors:\n{text}")
            if time.monotonic() > deadline:
                raise self._timeout(f"DAG {dag_id!r} parsed", timeout)
            time.sleep(self.poll_s)

    def set_paused(self, dag_id: str, paused: bool) -> dict:
        """``PATCH /api/v2/dags/{dag_id}`` (the UI's pause toggle)."""
        return self._send("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused})

    def trigger(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        *,
        logical_date: str | None = "now",
        dag_run_id: str | None = None,
        note: str | None = None,
    ) -> dict:
        """Trigger ``dag_id`` with ``conf`` as the UI's "Trigger Dag" form does.

        The form posts ``conf``, the logical date (pre-filled with ``"now"``; an ISO time, or
        ``None`` for none) and empty data interval and partition fields. Returns the created run
        (``run["dag_run_id"]``, ``run["state"]``, ``run["conf"]``).
        """
        if logical_date == "now":
            now = datetime.datetime.now(datetime.UTC)
            logical_date = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        body: dict[str, Any] = {
            "conf": dict(conf or {}),
            "logical_date": logical_date,
            "data_interval_start": None,
            "data_interval_end": None,
            "partition_key": None,
        }
        if dag_run_id is not None:
            body["dag_run_id"] = dag_run_id
        if note is not None:
            body["note"] = note
        return self._send("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)

    def get_run(self, dag_id: str, run_id: str) -> dict:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")

    def list_runs(self, dag_id: str) -> list[dict]:
        return self._paged(f"/api/v2/dags/{dag_id}/dagRuns", "dag_runs")

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float = 300,
        states: Sequence[str] = TERMINAL_RUN_STATES,
    ) -> dict:
        """Wait until the run is in one of ``states`` (default: success or failed); return it."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_run(dag_id, run_id)
            if run["state"] in states:
                return run
            if time.monotonic() > deadline:
                tasks = self.task_states(dag_id, run_id)
                raise self._timeout(
                    f"run {run_id} of {dag_id} in {list(states)} (it is {run['state']!r})",
                    timeout,
                    f"; task states: {tasks}",
                )
            time.sleep(self.poll_s)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        """Every task instance of a run (``task_id``, ``map_index``, ``state``...)."""
        run = urllib.parse.quote(run_id, safe="")
        return self._paged(f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances", "task_instances")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """``{task_id: state}`` of a run (mapped tasks: ``task_id[i]``)."""
        return {
            ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""): ti["state"]
            for ti in self.task_instances(dag_id, run_id)
        }

    def wait_for_task(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: Sequence[str],
        timeout: float = 180,
    ) -> str:
        """Wait until ``task_id`` is in one of ``states``; return its state.

        Raises:
            RuntimeError: the run finished first.
        """
        deadline = time.monotonic() + timeout
        while True:
            tasks = self.task_states(dag_id, run_id)
            if tasks.get(task_id) in states:
                return tasks[task_id]
            run_state = self.get_run(dag_id, run_id)["state"]
            if run_state in TERMINAL_RUN_STATES:
                raise RuntimeError(
                    f"run {run_id} of {dag_id} ended {run_state!r} before {task_id} reached "
                    f"{list(states)}; task states: {tasks}"
                )
            if time.monotonic() > deadline:
                raise self._timeout(
                    f"{task_id} of {run_id} in {list(states)}", timeout, f"; task states: {tasks}"
                )
            time.sleep(self.poll_s)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """A task's XCom value as JSON (``return_value``: what the task returned)."""
        run = urllib.parse.quote(run_id, safe="")
        answer = self.get(
            f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances/{task_id}/xcomEntries/{key}"
        )
        return answer["value"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """A task try's log as text (each structured line's ``event``; what the UI shows)."""
        run = urllib.parse.quote(run_id, safe="")
        answer = self.get(
            f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances/{task_id}/logs/{try_number}",
            full_content=True,
        )
        lines = []
        for item in answer.get("content") or []:
            if isinstance(item, dict):
                lines.append(str(item.get("event", "")))
                if item.get("error_detail"):
                    lines.append(json.dumps(item["error_detail"], default=str))
            else:
                lines.append(str(item))
        return "\n".join(lines)

    def explain(self, dag_id: str, run_id: str, chars: int = 3000) -> str:
        """Task states of a run and the log tail of each failed task, for assertion messages."""
        parts = [f"run {run_id} of {dag_id}: {self.get_run(dag_id, run_id)['state']}"]
        for ti in self.task_instances(dag_id, run_id):
            parts.append(f"  {ti['task_id']}: {ti['state']} (try {ti['try_number']})")
            if ti["state"] in ("failed", "upstream_failed") and ti["try_number"]:
                with contextlib.suppress(AirflowApiError):
                    log = self.task_log(dag_id, run_id, ti["task_id"], ti["try_number"])
                    parts.append(textwrap.indent(log[-chars:], "    | "))
        return "\n".join(parts)

    # -- Human in the loop (Browse -> Required Actions) --------------------------------------

    def pending_actions(self, dag_id: str = "~", run_id: str = "~") -> list[dict]:
        """Open Required Actions: the UI's query (not yet answered, task waiting for input).

        Each item has ``subject``, ``body`` (Markdown), ``options``, ``params`` and
        ``task_instance`` (``dag_id``, ``dag_run_id``, ``task_id``, ``map_index``, ``state``).
        """
        run = urllib.parse.quote(run_id, safe="~")
        params = [("response_received", "false"), *(("state", s) for s in HITL_WAITING_STATES)]
        return self._paged(
            f"/api/v2/dags/{dag_id}/dagRuns/{run}/hitlDetails", "hitl_details", params
        )

    def wait_for_action(self, dag_id: str, run_id: str, task_id: str, timeout: float = 180) -> dict:
        """Wait until ``task_id`` of the run asks for a response; return its Required Action."""
        deadline = time.monotonic() + timeout
        while True:
            for item in self.pending_actions(dag_id, run_id):
                if item["task_instance"]["task_id"] == task_id:
                    return item
            run_state = self.get_run(dag_id, run_id)["state"]
            if run_state in TERMINAL_RUN_STATES:
                raise RuntimeError(
                    f"run {run_id} of {dag_id} ended {run_state!r} without asking for a response "
                    f"at {task_id}; task states: {self.task_states(dag_id, run_id)}"
                )
            if time.monotonic() > deadline:
                raise self._timeout(
                    f"a Required Action at {task_id} of {run_id}",
                    timeout,
                    f"; task states: {self.task_states(dag_id, run_id)}",
                )
            time.sleep(self.poll_s)

    def respond(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        chosen_options: Sequence[str],
        params_input: Mapping[str, Any] | None = None,
        map_index: int = -1,
    ) -> dict:
        """Answer a Required Action as the UI does when a person clicks an option.

        ``PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/
        hitlDetails`` with ``{"chosen_options": [...], "params_input": {...}}``; returns
        ``{"chosen_options", "params_input", "responded_by", "responded_at"}``.

        First waits until the scheduler has seen the worker that parked the task exit: in
        Airflow 3.3.2 an answer that resumes the task before then (a person is never that
        fast, a test is) makes the scheduler fail the resumed task ("reported that the task
        instance ... finished with state success, but the task instance's state attribute is
        queued").
        """
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
        path += f"/taskInstances/{task_id}/{map_index}/hitlDetails"
        self._wait_until_parked(path)
        return self._send(
            "PATCH",
            path,
            {"chosen_options": list(chosen_options), "params_input": dict(params_input or {})},
        )

    def _wait_until_parked(self, path: str) -> None:
        deadline = time.monotonic() + self.settle_timeout_s
        while True:
            detail = self.get(path)
            ti = detail["task_instance"]
            if detail["response_received"] or ti["state"] not in HITL_WAITING_STATES:
                return  # nothing to race with; the PATCH answers for itself
            if self._parked is not None:
                if self._parked(ti):
                    return
            else:  # no scheduler log to read: give the worker time to exit
                created = datetime.datetime.fromisoformat(detail["created_at"])
                age = datetime.datetime.now(datetime.UTC) - created
                if age.total_seconds() >= self.settle_s:
                    return
            if time.monotonic() > deadline:
                raise self._timeout(
                    f"the exit of the worker that parked {ti['task_id']} of {ti['dag_run_id']} "
                    f"(try {ti['try_number']}) seen by the scheduler",
                    self.settle_timeout_s,
                )
            time.sleep(self.poll_s / 2)

    def approve(self, dag_id: str, run_id: str, task_id: str) -> dict:
        """Click "Approve" on an ``ApprovalOperator``'s Required Action."""
        return self.respond(dag_id, run_id, task_id, ["Approve"])

    def reject(self, dag_id: str, run_id: str, task_id: str) -> dict:
        """Click "Reject" on an ``ApprovalOperator``'s Required Action."""
        return self.respond(dag_id, run_id, task_id, ["Reject"])

    # -- Assets ------------------------------------------------------------------------------

    def asset_events(
        self,
        *,
        uri: str | None = None,
        name: str | None = None,
        source_dag_id: str | None = None,
        source_run_id: str | None = None,
    ) -> list[dict]:
        """Asset events (``uri``, ``name``, ``extra``, ``source_*``, ``created_dagruns``...),
        oldest first, optionally only those of one asset (by URI or name) or one producer."""
        params = {"source_dag_id": source_dag_id, "source_run_id": source_run_id}
        events = self._paged(
            "/api/v2/assets/events",
            "asset_events",
            {k: v for k, v in params.items() if v is not None} | {"order_by": "timestamp"},
        )
        return [
            e
            for e in events
            if (uri is None or e.get("uri") == uri) and (name is None or e.get("name") == name)
        ]


class AirflowStack:
    """A real Airflow on a fresh PostgreSQL database: the end-to-end tests' orchestrator.

    On enter: creates a database with a unique name on the server of ``database_url``, writes
    an ``AIRFLOW_HOME`` under ``workdir``, runs ``airflow db migrate``, starts ``airflow
    api-server`` (127.0.0.1, a free port), ``scheduler``, ``dag-processor`` and ``triggerer`` as
    separate processes (LocalExecutor) and waits until ``/api/v2/monitor/health`` reports every
    component healthy. On exit: stops every process group and drops the database.

    Args:
        workdir: parent folder of the home (``<workdir>/airflow-<db name>``).
        dags_folder: the DAGs to serve.
        plugins_folder: Airflow plugins (default: an empty folder in the home).
        env: extra environment of every component and so of every task (``FLASHSALE_*``, AWS
            and MLflow variables...); ``AIRFLOW__*`` keys here override the stack's settings.
        database_url: SQLAlchemy URL of a maintenance database on the PostgreSQL server
            (default: ``Settings.airflow_database_url``).
        port: API server port (default: a free one).
        parallelism: LocalExecutor worker processes (it forks them all at start).
        dag_refresh_s: how often the dag-processor lists the folder (new files appear).
        min_file_process_interval_s: how often an unchanged file is parsed again.
        startup_timeout: seconds to wait for migration plus health.
    """

    def __init__(
        self,
        workdir: Path,
        dags_folder: Path,
        plugins_folder: Path | None = None,
        env: Mapping[str, str] | None = None,
        database_url: str | None = None,
        port: int | None = None,
        parallelism: int = 4,
        dag_refresh_s: int = 3,
        min_file_process_interval_s: int = 10,
        startup_timeout: float = 120,
    ) -> None:
        if database_url is None:
            from flashsale_ml.config import get_settings

            database_url = get_settings().airflow_database_url
        self.server_url = database_url
        self.database_name = f"airflow_e2e_{uuid.uuid4().hex[:12]}"
        self.home = Path(workdir).resolve() / f"airflow-{self.database_name}"
        self.dags_folder = Path(dags_folder).resolve()
        self.plugins_folder = (
            Path(plugins_folder).resolve() if plugins_folder else self.home / "plugins"
        )
        self.extra_env = dict(env or {})
        self.port = port or free_port()
        self.parallelism = parallelism
        self.dag_refresh_s = dag_refresh_s
        self.min_file_process_interval_s = min_file_process_interval_s
        self.startup_timeout = startup_timeout
        self.sql_alchemy_conn: str | None = None
        self.processes: dict[str, subprocess.Popen] = {}
        self.timings: dict[str, float] = {}
        self._client: AirflowClient | None = None
        self._secrets = {name: secrets.token_urlsafe(32) for name in ("jwt", "api")}

    # -- addresses and files -----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def password_file(self) -> Path:
        """Where the simple auth manager writes the generated admin password."""
        return self.home / "simple_auth_manager_passwords.json.generated"

    def log_path(self, component: str) -> Path:
        """The stdout/stderr of one component (``api-server``, ``scheduler``, ``db-migrate``...).
        Task logs are under ``<home>/logs/dag_id=.../``."""
        return self.home / f"{component}.log"

    def env(self) -> dict[str, str]:
        """The environment of every ``airflow`` command of this stack."""
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("AIRFLOW__") and k not in ("AIRFLOW_HOME", "AIRFLOW_CONFIG")
        }
        bin_dir = str(Path(sys.executable).parent)
        return {
            **base,
            # `airflow` components start helpers as `airflow ...` found on PATH.
            "PATH": bin_dir + os.pathsep + base.get("PATH", ""),
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn or "",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.plugins_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            # Tests trigger through the API like the UI, which unpauses as it triggers.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.password_file),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__WORKERS": "1",
            # Scheduler (token issuer) and API server (token checker) must share these.
            "AIRFLOW__API_AUTH__JWT_SECRET": self._secrets["jwt"],
            "AIRFLOW__API__SECRET_KEY": self._secrets["api"],
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": str(self.dag_refresh_s),
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(
                self.min_file_process_interval_s
            ),
            "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": str(self.dag_refresh_s),
            **self.extra_env,
        }

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> AirflowStack:
        started = time.monotonic()
        deadline = started + self.startup_timeout
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            self.plugins_folder.mkdir(parents=True, exist_ok=True)
            self.sql_alchemy_conn = create_postgres_database(self.server_url, self.database_name)
            env = self.env()
            with self.log_path("db-migrate").open("wb") as log_file:
                migrate = subprocess.run(
                    [_bin("airflow"), "db", "migrate"],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.home,
                    timeout=max(1.0, deadline - time.monotonic()),
                )
            if migrate.returncode != 0:
                raise RuntimeError(
                    f"`airflow db migrate` failed ({migrate.returncode}); "
                    f"{self._tail('db-migrate')}"
                )
            self.timings["migrate_s"] = round(time.monotonic() - started, 1)
            for component in AIRFLOW_COMPONENTS:
                self._start_component(component, env)
            self._wait_healthy(deadline)
            self.timings["startup_s"] = round(time.monotonic() - started, 1)
        except BaseException:
            self.stop(strict=False)  # the error that stopped the start is the one to see
            raise
        return self

    def _start_component(self, component: str, env: Mapping[str, str]) -> None:
        cmd = [_bin("airflow"), component]
        if component == "api-server":
            cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        with self.log_path(component).open("ab") as log_file:
            self.processes[component] = subprocess.Popen(
                cmd,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=self.home,
                start_new_session=True,  # its own process group: stop() signals the task forks too
            )

    def health(self) -> dict | None:
        """The API server's ``/api/v2/monitor/health`` answer, ``None`` when it does not answer."""
        try:
            with urllib.request.urlopen(self.url + "/api/v2/monitor/health", timeout=5) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return None

    @staticmethod
    def unhealthy(health: Mapping[str, Any] | None) -> list[str]:
        """The components a health answer does not report healthy (all of them: no answer)."""
        if health is None:
            return ["api-server (no answer)"]
        problems = []
        for key, component in _HEALTH_COMPONENTS.items():
            status = (health.get(key) or {}).get("status")
            if status != "healthy":
                heartbeat = next(
                    (v for k, v in (health.get(key) or {}).items() if "heartbeat" in k), None
                )
                seen = f"last heartbeat {heartbeat}" if heartbeat else "never reported"
                problems.append(f"{component} ({key}: {status or 'no status'}, {seen})")
        return problems

    def _wait_healthy(self, deadline: float) -> None:
        health = None
        while time.monotonic() < deadline:
            for component, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(
                        f"airflow {component} exited with code {process.returncode} during "
                        f"startup; {self._tail(component)}"
                    )
            health = self.health()
            if not self.unhealthy(health):
                return
            time.sleep(1)
        problems = self.unhealthy(health)
        tails = "\n".join(self._tail(p.split(" ")[0]) for p in problems)
        raise TimeoutError(
            f"Airflow not healthy after {self.startup_timeout:.0f} s: unhealthy "
            f"{'; '.join(problems)}\nhealth: {json.dumps(health)}\n{tails}"
        )

    def _tail(self, component: str, chars: int = 3000) -> str:
        path = self.log_path(component)
        if component not in (*AIRFLOW_COMPONENTS, "db-migrate") or not path.exists():
            return f"{component}: no log at {path} (not started)"
        text = path.read_text(errors="replace")[-chars:]
        return f"log of {component} ({path}), last {chars} characters:\n{text}"

    def diagnostics(self) -> str:
        """Health and the last lines of each component's log, for failure messages."""
        parts = [f"health: {json.dumps(self.health())}"]
        for component in AIRFLOW_COMPONENTS:
            process = self.processes.get(component)
            state = (
                "not started"
                if process is None
                else ("running" if process.poll() is None else f"exited {process.returncode}")
            )
            parts.append(f"[{component}: {state}] " + self._tail(component, 1500))
        return "\n".join(parts)

    def stop(self, strict: bool = True) -> None:
        """Stop every component (process group: SIGTERM, then SIGKILL) and drop the database.

        Args:
            strict: raise if a process group survives; ``False`` only logs it (used while
                another exception is on its way, which must not be replaced).

        Raises:
            RuntimeError: ``strict`` and a component's process group still runs 15 s after
                SIGKILL (the database is dropped first).
        """
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for process in self.processes.values():
            # The group may outlive its leader (task forks): kill what is left either way.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        # SIGKILL is delivered asynchronously: the leader is reaped, a forked task runner may
        # not have died yet. Return only once every group is gone.
        still_running = _wait_groups_gone([p.pid for p in self.processes.values()], timeout=15)
        self.processes.clear()
        self._client = None
        if self.sql_alchemy_conn is not None:
            drop_postgres_database(self.server_url, self.database_name)
            self.sql_alchemy_conn = None
        if still_running:
            message = f"Airflow process groups {still_running} survived SIGKILL"
            if strict:
                raise RuntimeError(message)
            log.warning("%s", message)

    def parked_worker_exited(self, ti: Mapping[str, Any]) -> bool:
        """Whether the scheduler has processed the exit of the worker that parked task instance
        ``ti`` (a ``task_instance`` of the REST API) waiting for input; read from its log."""
        needle = (
            f"TaskInstance Finished: dag_id={ti['dag_id']}, task_id={ti['task_id']}, "
            f"run_id={ti['dag_run_id']}, map_index={ti['map_index']},"
        )
        try_marker = f"executor_state=success, try_number={ti['try_number']},"
        with self.log_path("scheduler").open(errors="replace") as log:
            return any(needle in line and try_marker in line for line in log)

    def database_exists(self) -> bool:
        return postgres_database_exists(self.server_url, self.database_name)

    def client(self) -> AirflowClient:
        """A REST client logged in as the admin user."""
        if self._client is None:
            self._client = AirflowClient(
                self.url,
                password_file=self.password_file,
                diagnostics=self.diagnostics,
                parked=self.parked_worker_exited,
            )
        return self._client

    def __enter__(self) -> AirflowStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(strict=exc_type is None)
