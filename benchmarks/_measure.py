"""Run a command in a child process and measure its wall time and peak RSS (whole process tree);
a process's own peak RSS."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass
from typing import IO


@dataclass(frozen=True)
class Measurement:
    wall_s: float
    peak_rss_gib: float
    exit_code: int


def run_measured(
    cmd: list[str],
    stdout: IO | None = None,
    interval_s: float = 0.1,
    env: dict[str, str] | None = None,
) -> Measurement:
    """Run ``cmd``; sample the RSS of it and its children every ``interval_s`` seconds."""
    import psutil

    started = time.perf_counter()
    process = subprocess.Popen(cmd, stdout=stdout, env=env)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            root = psutil.Process(process.pid)
        except psutil.NoSuchProcess:
            return
        while not done.is_set():
            try:
                rss = root.memory_info().rss + sum(
                    c.memory_info().rss for c in root.children(recursive=True)
                )
            except psutil.NoSuchProcess:
                break
            peak = max(peak, rss)
            time.sleep(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = process.wait()
    done.set()
    sampler.join()
    return Measurement(time.perf_counter() - started, peak / 1024**3, code)


def own_peak_rss_gib() -> float:
    """This process's peak RSS in GiB: VmHWM of /proc/self/status (``ru_maxrss`` survives
    fork and exec on Linux, so a child would report its parent's peak; it is the fallback
    where /proc is absent)."""
    import resource
    from pathlib import Path

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024**2, 3)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3)
