"""benchmarks/bench_planning.py runs end to end at a tiny size and its rows keep the budget.
No quality or timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_planning.py"


def run_bench(*args: str) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, str(BENCH), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def test_quality_section_tiny() -> None:
    rows = run_bench(
        "--sections", "quality", "--users", "1500", "--days", "21", "--seeds", "1",
        "--uplift-learners", "s", "--unit-costs", "0.1", "--random-draws", "2", "--threads", "2",
    )  # fmt: skip
    quality = [r for r in rows if r["section"] == "quality"]
    assert len(quality) == 1
    row = quality[0]
    budget = row["budget"]
    for name, policy in row["policies"].items():
        if name != "oracle":  # policies spend the budget on the models' expected cost
            assert policy["model_spend"] <= budget + 1e-6, name
    assert row["policies"]["oracle"]["true_spend"] <= budget + 1e-6
    summary = [r for r in rows if r["section"] == "quality_summary"]
    assert len(summary) == 1 and set(summary[0]["true_margin"]) >= {"plan", "propensity"}


def test_speed_section_tiny() -> None:
    rows = run_bench("--sections", "speed", "--speed-users", "20000", "--highs-users", "3000")
    (speed,) = [r for r in rows if r["section"] == "speed"]
    assert speed["solve_budgeted"]["spend_within_budget"]
    assert speed["plan_at_depth"]["spend_within_budget"]
    assert abs(speed["highs_cross_check"]["bound_rel_diff"]) < 1e-6
