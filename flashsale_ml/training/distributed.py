"""Launch a distributed worker module with ``torchrun`` and relay its output to logging.

Generic over model kinds: a flavor that trains with DistributedDataParallel names its worker
module and arguments; :func:`run_torchrun` starts ``torchrun`` with the configured processes
per node and nodes (gloo on CPU, NCCL on GPU is the worker's choice), gives the step's share
of the cores to its processes, relays every line of their output through
:data:`torchrun_log` at the line's level, and raises with the output's tail if it fails.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from flashsale_ml.config import Settings

log = logging.getLogger(__name__)
# torchrun's output and its workers' (their logs, MLflow's, torch's C++ warnings), one record
# per line at the level the line states, instead of stderr that task logs show as errors.
torchrun_log = logging.getLogger("flashsale_ml.training.distributed.torchrun")
# Lines of output quoted in the error raised when torchrun fails.
ERROR_TAIL_LINES = 40


@dataclass(frozen=True)
class Launch:
    """Where and how wide to run: one node by default (``--standalone`` rendezvous)."""

    nproc_per_node: int = 2
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None  # host:port of the c10d rendezvous for nnodes > 1
    # More than one: a restarted gloo group occasionally fails its first reconnect on loopback.
    max_restarts: int = 3


def free_port() -> int:
    """A free TCP port on loopback (for a single-node rendezvous)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def torchrun_command(
    launch: Launch,
    worker_args: list[str],
    module: str = "flashsale_ml.models.propensity.dcn.worker",
) -> list[str]:
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun) if torchrun.exists() else "torchrun"]
    if launch.nnodes == 1:
        # An explicit rendezvous on a fresh loopback port with a unique id, not --standalone:
        # a second --standalone launch from the same process was seen waiting forever in
        # rendezvous.
        cmd += [
            "--nnodes=1",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{free_port()}",
            f"--rdzv-id={uuid.uuid4().hex}",
        ]
    else:
        if not launch.rdzv_endpoint:
            raise ValueError("multi-node training needs rdzv_endpoint (host:port)")
        cmd += [
            f"--nnodes={launch.nnodes}",
            f"--node-rank={launch.node_rank}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={launch.rdzv_endpoint}",
        ]
    cmd += [
        f"--nproc-per-node={launch.nproc_per_node}",
        f"--max-restarts={launch.max_restarts}",
        "-m",
        module,
        *worker_args,
    ]
    return cmd


_LEVEL_NAMES = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
    "FATAL": logging.CRITICAL,
}
_LEVEL_LETTERS = {
    "D": logging.DEBUG,
    "I": logging.INFO,
    "W": logging.WARNING,
    "E": logging.ERROR,
    "F": logging.CRITICAL,
}
# "[rank0]:" / "[default0]:" that torch puts before a worker's lines in some modes
_RANK_PREFIX = re.compile(r"\[(?:rank|default)\d+\]:\s?")
# glog style of torch's C++ and of torch.distributed's Python loggers:
# "W1012 12:00:00.123 140 torch/distributed/run.py:792] ...", "[W1012 12:00:00.123 ...]",
# and the older "[W socket.cpp:464] ..."
_GLOG = re.compile(r"\[?([DIWEF])\d{4} \d\d:\d\d:\d\d|\[([DIWEF]) ")
# a level name among the first words: the workers' logs ("12:00:01 INFO rank0 ..."),
# MLflow's ("2026/01/02 12:00:01 WARNING mlflow...: ..."), logging's default ("WARNING:root:")
_LEVEL_WORD = re.compile(r"(?:\S+\s+){0,3}?(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\b")
# what warnings.warn prints: "/path/module.py:12: UserWarning: ..."
_PYTHON_WARNING = re.compile(r"\S+:\d+: \w*Warning: ")


class OutputRelay:
    """Re-emits a subprocess's output through ``logger``, one record per line, at the level
    the line states (see the patterns above), else INFO. Lines without a level continue the
    line before where they are indented (the source line under a warning, a traceback's
    frames), and everything after ``Traceback (most recent call last):`` up to the next line
    with a level is ERROR. The last ``tail`` lines are kept for an error message."""

    def __init__(self, logger: logging.Logger, tail: int = ERROR_TAIL_LINES) -> None:
        self.logger = logger
        self.tail: deque[str] = deque(maxlen=tail)
        self._previous = logging.INFO
        self._in_traceback = False

    def level(self, line: str) -> int:
        text = _RANK_PREFIX.sub("", line, count=1)
        level: int | None = None
        if glog := _GLOG.match(text):
            level = _LEVEL_LETTERS[glog.group(1) or glog.group(2)]
        elif word := _LEVEL_WORD.match(text):
            level = _LEVEL_NAMES[word.group(1)]
        elif _PYTHON_WARNING.match(text):
            level = logging.WARNING
        if level is not None:
            self._in_traceback = False
        elif text.startswith("Traceback (most recent call last):"):
            self._in_traceback = True
            level = logging.ERROR
        elif self._in_traceback:
            level = logging.ERROR
        elif text[:1].isspace():
            level = self._previous
        else:
            level = logging.INFO
        self._previous = level
        return level

    def emit(self, line: str) -> None:
        line = line.rstrip()
        if not line:
            return
        self.tail.append(line)
        self.logger.log(self.level(line), "%s", line)


def run_relayed(cmd: list[str], env: dict[str, str], relay: OutputRelay) -> int:
    """Run ``cmd``, relay its stdout and stderr (merged into one pipe, read line by line, so
    neither can fill up and block it) and return its exit status. Should reading stop with
    an exception (the task is being killed, say), the process is killed, as subprocess.run
    does.

    Lines stay whole where each is written at once, as logging, warnings and torch's C++
    logs do; the workers log to stderr, and print nothing.
    """
    with subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
    ) as process:
        try:
            assert process.stdout is not None
            for line in process.stdout:
                relay.emit(line)
            return process.wait()
        except BaseException:
            # SIGTERM first: torchrun forwards it to its workers; a SIGKILL would orphan them
            # (holding cores, GPUs and the rendezvous port).
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            raise


def run_torchrun(
    module: str,
    worker_args: list[str],
    launch: Launch,
    settings: Settings,
    extra_env: dict[str, str] | None = None,
) -> None:
    """Run ``module`` under torchrun and wait for it.

    Raises:
        RuntimeError: torchrun failed (after its restarts); the message holds the last
            :data:`ERROR_TAIL_LINES` lines of its output.
    """
    cmd = torchrun_command(launch, worker_args, module)
    # The step's share of the cores, split among its worker processes.
    threads = max(1, settings.compute_threads // launch.nproc_per_node)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        **(extra_env or {}),
    }
    log.info("launching: %s", " ".join(cmd))
    relay = OutputRelay(torchrun_log)
    returncode = run_relayed(cmd, env, relay)
    if returncode != 0:
        output = "\n".join(relay.tail)
        raise RuntimeError(
            f"torchrun exited with {returncode}"
            + (f"\nlast {len(relay.tail)} lines of its output:\n{output}" if output else "")
        )
