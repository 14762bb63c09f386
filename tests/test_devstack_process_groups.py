"""``devstack.live_group_members``: what the servers' stop waits on, and what the end-to-end
tests check is gone afterwards. Checked against ``ps``, not against its own /proc reading."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flashsale_ml.devstack import live_group_members

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

# A session leader that forks a child which exits at once and is never reaped (a zombie
# while the parent lives), then prints the child's pid and sleeps.
PARENT = """
import os, sys, time
child = os.fork()
if child == 0:
    os._exit(0)
print(child, flush=True)
time.sleep(60)
"""


def ps_state(pid: int) -> str:
    return subprocess.run(
        ["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True
    ).stdout.strip()


def test_a_zombie_is_not_counted_and_its_living_parent_is() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        child = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while not ps_state(child).startswith("Z") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ps_state(child).startswith("Z")  # ps sees the child as a zombie of the group
        assert live_group_members(parent.pid) == [parent.pid]
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
    # The parent reaped (by us), the zombie reparented and reaped or not: nothing runs.
    deadline = time.monotonic() + 10
    while live_group_members(parent.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_group_members(parent.pid) == []


def test_every_running_member_is_counted() -> None:
    group = subprocess.Popen(["bash", "-c", "sleep 60 & sleep 60 & wait"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(live_group_members(group.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        members = live_group_members(group.pid)
        listed = subprocess.run(
            ["ps", "-e", "-o", "pid=,pgid="], capture_output=True, text=True
        ).stdout.split("\n")
        by_ps = sorted(
            int(pid)
            for pid, pgid in (line.split() for line in listed if line.strip())
            if int(pgid) == group.pid
        )
        assert members == by_ps and len(members) == 3
    finally:
        os.killpg(group.pid, signal.SIGKILL)
        group.wait(timeout=10)
