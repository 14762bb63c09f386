"""Put known bugs into a copy of the project, one at a time, and check that a test catches each.

A test suite earns trust when it fails on the bugs it claims to prevent. Each catalogue
(``catalogue_*.py`` next to this file) lists mutations: a file, a text that occurs exactly once
in it, its replacement (the bug), the tests that should catch it, and why it matters. The
runner copies the tracked files to a temporary folder, applies one mutation there, runs the
named tests with that copy first on ``PYTHONPATH`` (subprocesses such as torchrun see the
mutant too), and reports caught/total. The working tree is never modified.

Usage: ``python -m tools.mutation.run [--only NAME ...] [--catalogue features ...]``
(``make mutation`` runs them all). Exit status 1 when a mutation survives.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Mutation:
    """One deliberate bug and the tests that must catch it."""

    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    why: str = ""
    pytest_args: tuple[str, ...] = field(default_factory=tuple)


def catalogues(only: list[str] | None = None) -> dict[str, list[Mutation]]:
    found = {}
    for path in sorted(Path(__file__).parent.glob("catalogue_*.py")):
        name = path.stem.removeprefix("catalogue_")
        if only and name not in only:
            continue
        module = importlib.import_module(f"tools.mutation.{path.stem}")
        found[name] = list(module.MUTATIONS)
    return found


def copy_tree(target: Path) -> None:
    """The tracked and untracked-but-not-ignored files, as CI would see them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        relative = Path(raw.decode())
        source = ROOT / relative
        if source.is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / relative)


def run_one(mutation: Mutation, copy: Path, python: str) -> dict:
    path = copy / mutation.file
    original = path.read_text()
    count = original.count(mutation.old)
    if count != 1:
        return {"name": mutation.name, "status": "stale", "detail": f"old text found {count}x"}
    path.write_text(original.replace(mutation.old, mutation.new))
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [
                python,
                "-m",
                "pytest",
                *mutation.tests,
                "-q",
                "-x",
                "-p",
                "no:cacheprovider",
                "-m",
                "",
                *mutation.pytest_args,
            ],
            cwd=copy,
            env={**os.environ, "PYTHONPATH": str(copy), "COLUMNS": "300"},
            capture_output=True,
            text=True,
            timeout=1800,
        )
    except subprocess.TimeoutExpired:
        return {"name": mutation.name, "status": "timeout", "detail": "tests ran past 30 min"}
    finally:
        path.write_text(original)
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, re.M)
    errors = re.findall(r"^ERROR (\S+)", proc.stdout, re.M)
    if proc.returncode == 0:
        status = "survived"
    elif failed:
        status = "caught"
    else:  # collection errors, crashes: a mutant that breaks imports is not a caught bug
        status = "broken"
    return {
        "name": mutation.name,
        "status": status,
        "seconds": round(time.perf_counter() - started, 1),
        "failed": failed[:5],
        "errors": errors[:5],
        "tail": "" if status == "caught" else proc.stdout[-1500:],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="mutation names")
    parser.add_argument("--catalogue", nargs="*", help="catalogue names (features, ...)")
    parser.add_argument("--report", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    selected = {
        name: [m for m in mutations if not args.only or m.name in args.only]
        for name, mutations in catalogues(args.catalogue).items()
    }
    results = []
    with tempfile.TemporaryDirectory(prefix="mutation-copy-") as tmp:
        copy = Path(tmp)
        copy_tree(copy)
        for catalogue, mutations in selected.items():
            for mutation in mutations:
                result = {"catalogue": catalogue, **run_one(mutation, copy, sys.executable)}
                results.append(result)
                print(
                    f"{result['status']:>8}  {catalogue}/{mutation.name}"
                    f"  ({result.get('seconds', 0)} s) {' '.join(result.get('failed', []))[:160]}",
                    flush=True,
                )
                if result["status"] != "caught":
                    print(result.get("detail") or result["tail"], flush=True)
    caught = sum(r["status"] == "caught" for r in results)
    print(f"\nmutation score: {caught}/{len(results)} caught")
    for catalogue in selected:
        mine = [r for r in results if r["catalogue"] == catalogue]
        print(f"  {catalogue}: {sum(r['status'] == 'caught' for r in mine)}/{len(mine)}")
    if args.report:
        args.report.write_text(json.dumps(results, indent=1))
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
