"""The benchmark scripts' bookkeeping: failed runs, machine state, run order. No timings are
asserted: the measured commands are replaced by fakes that report a given exit status."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))  # the scripts import their sibling _measure
    spec = importlib.util.spec_from_file_location(
        f"{Path(name).stem}_under_test", BENCHMARKS / name
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lake_of(snapshot_uri: str) -> str:
    return snapshot_uri.partition("/datasets/")[0]


def last_rows(capsys: pytest.CaptureFixture) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


@pytest.fixture
def bench_features(monkeypatch: pytest.MonkeyPatch):
    module = load_benchmark("bench_features.py")

    def no_compaction() -> bool:
        raise AssertionError("compact_memory called without --compact-memory")

    monkeypatch.setattr(module, "compact_memory", no_compaction)
    return module


def fake_runs(module, monkeypatch: pytest.MonkeyPatch, exit_code_of) -> list[str]:
    """Replace the measured child processes; ``exit_code_of(code_text)`` decides each status."""
    seen: list[str] = []

    def run_measured(cmd, stdout=None, interval_s=0.1, env=None):
        text = " ".join(cmd)
        seen.append(text)
        code = exit_code_of(text)
        # a crashed or killed run is quick: the bogus speed-up the script must not report
        return module.Measurement(0.5 if code else 5.0, 1.0, code)

    monkeypatch.setattr(module, "run_measured", run_measured)
    return seen


def test_bench_features_reports_a_killed_run_and_exits_non_zero(
    small_world, bench_features, monkeypatch, capsys
) -> None:
    fake_runs(
        bench_features,
        monkeypatch,
        lambda text: -9 if "user_activity_features" in text else 0,  # pandas killed (OOM)
    )
    code = bench_features.main(
        ["--lake", lake_of(small_world.raw_uri), "--skip-full-build", "--repeat", "2"]
    )
    assert code == 1
    (row,) = last_rows(capsys)
    assert row["failed"] is True and row["exit_codes"] == {"pandas": [-9, -9]}
    assert row["pandas_s"] is None
    assert row["speedup"] is None and row["speedup_same_columns"] is None
    assert row["duckdb_s"] == 5.0  # the engines that ran cleanly keep their figures
    assert row["memory_compacted_before_runs"] is False


def test_bench_features_a_crashed_full_build_fails_the_script(
    small_world, bench_features, monkeypatch, capsys
) -> None:
    fake_runs(bench_features, monkeypatch, lambda text: 1 if "features" in text.split() else 0)
    code = bench_features.main(["--lake", lake_of(small_world.raw_uri), "--skip-user-group"])
    assert code == 1
    (row,) = last_rows(capsys)
    assert row["failed"] is True and row["exit"] == 1 and row["wall_s"] is None


def test_bench_features_clean_runs_give_a_speedup_and_exit_zero(
    small_world, bench_features, monkeypatch, capsys
) -> None:
    fake_runs(bench_features, monkeypatch, lambda text: 0)
    code = bench_features.main(
        ["--lake", lake_of(small_world.raw_uri), "--skip-full-build", "--repeat", "1"]
    )
    assert code == 0
    (row,) = last_rows(capsys)
    assert "failed" not in row and row["speedup"] == 1.0


def test_bench_features_compacts_memory_only_when_asked(
    small_world, bench_features, monkeypatch, capsys
) -> None:
    calls = []
    monkeypatch.setattr(bench_features, "compact_memory", lambda: calls.append(1) or True)
    fake_runs(bench_features, monkeypatch, lambda text: 0)
    lake = lake_of(small_world.raw_uri)
    assert bench_features.main(["--lake", lake, "--skip-user-group"]) == 0
    assert calls == []
    assert bench_features.main(["--lake", lake, "--skip-user-group", "--compact-memory"]) == 0
    assert calls == [1]
    assert [r["memory_compacted_before_run"] for r in last_rows(capsys)] == [False, True]


def test_bench_training_runs_every_contender_equally_often_in_rotating_order() -> None:
    module = load_benchmark("bench_training.py")
    order: list[str] = []
    timed = {name: (lambda name=name: order.append(name) or 1.0) for name in ("a", "b", "c")}
    runs = module.interleaved_runs(timed, 3)
    assert {name: len(r) for name, r in runs.items()} == {"a": 3, "b": 3, "c": 3}
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_bench_validate_runs_are_independent_and_leave_the_lake_alone(
    small_world, tmp_path, monkeypatch, capsys
) -> None:
    """Each run validates a private copy seeded with the lake's reference as it was at the
    start; what a run accepts as the new reference is not seen by the next, nor by the lake."""
    module = load_benchmark("bench_validate.py")
    from _measure import Measurement

    source = Path(small_world.raw_uri.removeprefix("file://"))
    lake = tmp_path / "lake"
    snapshot = lake / "datasets" / "raw" / source.name
    shutil.copytree(source, snapshot)
    reference = lake / "validation" / "raw" / "accepted_profile.json"
    reference.parent.mkdir(parents=True)
    reference.write_text('{"original": true}')
    before = {p: p.read_bytes() for p in lake.rglob("*") if p.is_file()}

    seen = []

    def run_measured(cmd, stdout=None, interval_s=0.1, env=None):
        copy = Path(cmd[cmd.index("--data") + 1].removeprefix("file://"))
        private = copy.parents[2]
        assert private != lake and (copy / "_manifest.json").exists()
        accepted = private / "validation" / "raw" / "accepted_profile.json"
        seen.append((private, accepted.read_text()))
        accepted.write_text('{"accepted by": "this run"}')  # what a passing validation does
        stdout.write(json.dumps({"success": True}))
        return Measurement(1.0, 0.1, 0)

    monkeypatch.setattr(module, "run_measured", run_measured)
    module.main(["--lake", lake.as_uri()])
    module.main(["--data", snapshot.as_uri()])
    assert [text for _, text in seen] == ['{"original": true}'] * 4
    assert not any(private.exists() for private, _ in seen)
    assert {p: p.read_bytes() for p in lake.rglob("*") if p.is_file()} == before
    rows = last_rows(capsys)
    assert [r["drift_reference"] for r in rows] == [True] * 4


def test_bench_uplift_counts_the_five_holdout_draws_that_meet_each_interval_reading() -> None:
    import numpy as np

    module = load_benchmark("bench_uplift.py")
    rng = np.random.default_rng(3)
    ate = np.full(40, 0.07)
    steady = 0.10 + rng.normal(0, 0.002, 40)  # far above the ATE on every holdout
    readings = module.interval_readings_over_draws(steady, ate, 0.07, draws=500)
    assert readings["holdouts_per_draw"] == 5 and readings["draws"] == 500
    assert readings["share_mean_minus_sd_above_ate"] == 1.0
    assert readings["share_ci95_of_mean_above_ate"] == 1.0
    assert readings["share_paired_excess_above_zero"] == 1.0
    below = module.interval_readings_over_draws(0.06 + 0 * steady, ate, 0.07, draws=500)
    assert below["share_mean_minus_sd_above_ate"] == 0.0
    # Half the holdouts far above, half at the ATE: mean - sd clears it on some draws only,
    # and never on the draws of five at the ATE.
    mixed = np.r_[np.full(20, 0.07), steady[:20]]
    share = module.interval_readings_over_draws(mixed, ate, 0.07, draws=2_000)
    assert 0.0 < share["share_mean_minus_sd_above_ate"] < 1.0
