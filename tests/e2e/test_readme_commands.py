"""Every command the README shows, run exactly as written, the way a newcomer would.

The README's code blocks are parsed, not copied: a changed README changes what runs here. The
commands run through ``make`` and ``bash`` with a PATH that does *not* hold the venv, as in a
fresh shell, each test under its own ``FLASHSALE_HOME`` and ports.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from flashsale_ml.devstack import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
VENV_BIN = REPO / ".venv" / "bin"


def readme_blocks(section: str) -> list[list[str]]:
    """The bash blocks under ``## <section>`` (up to the next ``## ``), as command lines."""
    text = README.read_text()
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"README has no section {section!r}"
    blocks = re.findall(r"```bash\n(.*?)```", match.group(1), re.S)
    return [[line for line in block.splitlines() if line.strip()] for block in blocks]


def command_of(line: str) -> str:
    return line.split("#", 1)[0].strip()


def run_block(
    block: list[str], home: Path, timeout: int
) -> tuple[subprocess.CompletedProcess, list[int]]:
    """Run a README block line by line in one bash from the repository root, in a fresh
    shell's environment; return the process and each line's exit code (one per line)."""
    script = "\n".join(f'{line}\necho "::rc $?::"' for line in block)
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=REPO,
        env=fresh_shell_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    codes = [int(c) for c in re.findall(r"::rc (\d+)::", result.stdout)]
    assert len(codes) == len(block), result.stdout[-3000:] + result.stderr[-3000:]
    return result, codes


def fresh_shell_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a new terminal: no venv on PATH, no FLASHSALE_*/AIRFLOW* leftovers."""
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != VENV_BIN]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLASHSALE_", "AIRFLOW", "MLFLOW_", "VIRTUAL_ENV"))
    }
    return {**env, "PATH": os.pathsep.join(path), "FLASHSALE_HOME": str(home), **extra}


def http_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read().decode()
    return json.loads(body) if body.strip().startswith("{") else {"text": body}


def wait_for(check, timeout: float, what: str, process: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what}: exited {process.returncode}\n{log.read_text()[-5000:]}")
        try:
            result = check()
            if result:
                return result
        except OSError as exc:  # not listening yet
            last_error = exc
        time.sleep(1)
    raise AssertionError(
        f"{what}: not healthy in {timeout} s ({last_error})\n{log.read_text()[-5000:]}"
    )


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on ``port`` (from /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, port_hex = local.rsplit(":", 1)
            if state == "0A" and int(port_hex, 16) == port:
                found.add(address)
    return found


LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1


class MakeTarget:
    """``make <target>`` as a long-running process group, stopped like Ctrl-C would."""

    def __init__(self, target: str, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.handle = log.open("wb")
        self.process = subprocess.Popen(
            ["make", target],
            cwd=REPO,
            env=env,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.handle.close()
        return self.process.returncode


def run_make(target: str, env: dict[str, str], timeout: int = 900) -> str:
    result = subprocess.run(
        ["make", target], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"make {target} failed:\n{output[-6000:]}"
    return output


def test_the_sections_show_what_this_module_runs() -> None:
    """If the README gains a command, this fails until a test here runs it."""
    assert [[command_of(c) for c in b] for b in readme_blocks("Two commands")] == [
        ["make demo", "make test"]
    ]
    assert [[command_of(c) for c in b] for b in readme_blocks("Look at the results")] == [
        ["make mlflow-ui", "make airflow-ui"]
    ]
    (cli_block,) = readme_blocks("Command line")
    assert cli_block[0] == "source .venv/bin/activate"
    (byo_block,) = readme_blocks("Bring your own data")
    assert byo_block[0] == "source .venv/bin/activate"
    assert "flashsale ingest --mapping docs/examples/byo/mapping.yaml" in map(command_of, byo_block)


@pytest.fixture(scope="module")
def ui_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """``make mlflow-ui`` and ``make airflow-ui``, started as the README says."""
    home = tmp_path_factory.mktemp("ui-home")
    mlflow_port, airflow_port = free_port(), free_port()
    env = fresh_shell_env(home, MLFLOW_PORT=str(mlflow_port), AIRFLOW_PORT=str(airflow_port))
    mlflow_ui = MakeTarget("mlflow-ui", env, home / "make-mlflow-ui.log")
    airflow_ui = MakeTarget("airflow-ui", env, home / "make-airflow-ui.log")
    try:
        wait_for(
            lambda: http_json(f"http://127.0.0.1:{mlflow_port}/health"),
            180,
            "make mlflow-ui",
            mlflow_ui.process,
            mlflow_ui.log,
        )

        def airflow_healthy() -> dict | None:
            health = http_json(f"http://127.0.0.1:{airflow_port}/api/v2/monitor/health")
            parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
            ok = all((health.get(p) or {}).get("status") == "healthy" for p in parts)
            return health if ok else None

        health = wait_for(
            airflow_healthy, 300, "make airflow-ui", airflow_ui.process, airflow_ui.log
        )
        yield {
            "home": home,
            "env": env,
            "health": health,
            "ports": (mlflow_port, airflow_port),
            "airflow_log": airflow_ui.log,
            "stop_airflow_ui": airflow_ui.stop,
        }
    finally:
        codes = (airflow_ui.stop(), mlflow_ui.stop())
    del codes


def test_ui_targets_answer_on_loopback_only(ui_stack: dict) -> None:
    mlflow_port, airflow_port = ui_stack["ports"]
    assert ui_stack["health"]["scheduler"]["status"] == "healthy"
    for port in (mlflow_port, airflow_port):
        addresses = listening_addresses(port)
        assert addresses and addresses <= LOOPBACK, f"port {port} listens on {addresses}"
    log = ui_stack["airflow_log"].read_text()
    assert "FileNotFoundError" not in log
    assert "looks like production" not in log
    password_file = ui_stack["home"] / "airflow" / "simple_auth_manager_passwords.json.generated"
    assert password_file.stat().st_mode & 0o077 == 0, "admin password readable by others"


def test_demo_beside_the_ui_then_alone_moves_the_shop_on_and_decides(ui_stack: dict) -> None:
    """First `make demo` while `make airflow-ui` runs: the demo hands its run to that scheduler
    instead of running every task a second time beside it. Then, with the UI stopped, a
    second `make demo` runs the DAG itself, one week further on, and makes a real decision."""
    import mlflow

    first = run_make("demo", ui_stack["env"])
    assert "28 days of history (first demo" in first, first[-3000:]
    assert "handing the run to it" in first, first[-3000:]
    mlflow.set_tracking_uri(f"http://127.0.0.1:{ui_stack['ports'][0]}")
    runs = mlflow.search_runs(experiment_names=["flashsale"], output_format="list")
    steps = [r.data.tags.get("flashsale.step") for r in runs]
    assert steps.count("train_propensity_lgbm") == 1, steps
    assert steps.count("promote_model") == 1, steps
    experiment = mlflow.get_experiment_by_name("flashsale")
    # Opens on the runs table, not MLflow 3's GenAI traces view.
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    ui_stack["stop_airflow_ui"]()
    second = run_make("demo", ui_stack["env"])
    assert "35 days of history: the shop moved on a week" in second, second[-3000:]
    assert "handing the run to it" not in second  # no scheduler: airflow dags test
    decision = re.search(
        r"Promotion:\s+(promoted|rejected), gate by gate:\n((?:    .*\n)+)", second
    )
    assert decision, second[-3000:]
    assert "+0.0000 (95% CI +0.0000..+0.0000)" not in decision.group(2)
    assert re.search(r"flashsale-propensity version 2\b", second), second[-3000:]
    assert "Deep model run:" in second


def test_command_line_section_runs_as_written(tmp_path: Path) -> None:
    """The README's command-line session, line by line in one bash, each exit code checked."""
    (block,) = readme_blocks("Command line")
    lake = Path("/tmp/flashsale-lake")
    existed = lake.exists()
    result, codes = run_block(block, tmp_path, timeout=1500)
    log = result.stdout + "\n" + result.stderr
    for line, code in zip(block, codes, strict=True):
        if command_of(line).startswith("flashsale registry rollback") and code == 2:
            # Documented: "if any". A champion with no predecessor gets a one-line reason.
            assert "no previous champion" in result.stderr, result.stderr[-2000:]
            continue
        assert code == 0, f"`{line}` exited {code}:\n{log[-6000:]}"
    if not existed:
        shutil.rmtree(lake, ignore_errors=True)


def test_bring_your_own_data_section_runs_as_written(tmp_path: Path) -> None:
    """CSV exports -> mapping -> validated snapshot -> features -> propensity and demand, each
    line of the README's block in one bash, each exit code checked."""
    (block,) = readme_blocks("Bring your own data")
    paths = [Path("/tmp/my-shop"), Path("/tmp/my-shop-lake"), Path("/tmp/my-mapping.yaml")]
    existed = {p: p.exists() for p in paths}
    result, codes = run_block(block, tmp_path, timeout=900)
    log = result.stdout + "\n" + result.stderr
    for line, code in zip(block, codes, strict=True):
        assert code == 0, f"`{line}` exited {code}:\n{log[-6000:]}"
    # The mapping's filter dropped the shop's 3 QA test orders.
    assert re.search(r'"filtered_out": \{[^}]*"orders": 3,', result.stdout), result.stdout[-3000:]
    assert '"test_auc"' in result.stdout and '"test_pinball"' in result.stdout
    for path, was_there in existed.items():
        if was_there:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def test_benchmark_scripts_parse_their_arguments() -> None:
    """The benchmark lines are too heavy for CI; their scripts must at least start."""
    text = README.read_text()
    block = re.search(r"## Benchmarks\n.*?```bash\n(.*?)```", text, re.S).group(1)
    scripts = sorted({line.split()[1] for line in block.splitlines() if line.startswith("python")})
    assert scripts
    for script in scripts:
        result = subprocess.run(
            [str(VENV_BIN / "python"), script, "--help"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{script} --help: {result.stderr[-2000:]}"


def test_docker_compose_needs_every_secret_and_keeps_them_out_of_git() -> None:
    compose = (REPO / "docker" / "docker-compose.yml").read_text()
    template = (REPO / "docker" / ".env.example").read_text()
    referenced = set(re.findall(r"\$\{(\w+)", compose))
    required = set(re.findall(r"\$\{(\w+):\?", compose))
    assert referenced and referenced == required, "every secret must be required (${VAR:?})"
    assert referenced <= set(re.findall(r"^(\w+)=", template, re.M))
    ignored = subprocess.run(["git", "check-ignore", "-q", "docker/.env"], cwd=REPO)
    assert ignored.returncode == 0, "docker/.env is not git-ignored"
