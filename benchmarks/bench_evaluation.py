"""Post-campaign evaluation: speed and memory at scale, and interval coverage on simulated truth.

    python benchmarks/bench_evaluation.py [--users 1000000 10000000] [--seeds 100]
        [--skip-speed] [--skip-coverage] [--work DIR]

Speed: a synthetic campaign (assignments, orders, items, campaigns written straight to
Parquet with numpy, no simulator) with a known effect on conversion per arm; each size is
evaluated by ``flashsale_ml.evaluation.campaign.evaluate_campaign`` in a fresh child process,
which reports its wall time (``time.perf_counter``) and peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``), so memory is per size. Generating the data
happens in another child and is not measured.

Coverage: ``--seeds`` simulated shops without sellouts (``sale_stock_factor=1000``), the first
campaign of each evaluated; the share of (seed, arm) whose 95 % conversion interval covers the
true effect ``mean (1 − bot)(p_arm − p_control)(1 − background order in the window)`` (see
``tests/test_campaign_evaluation.py``), and the mean CUPED/unadjusted interval width ratio.

One JSON line per result. No timing is asserted; the exit status is 1 when a child failed.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

CAMPAIGN = "bench-20260301"
ARMS = ("pct_discount", "gift_with_purchase", "timed_coupon")
HOLDOUT = 0.2
# The known effect of each arm on conversion (probability points, for every user).
EFFECT = {"pct_discount": 0.02, "gift_with_purchase": 0.01, "timed_coupon": 0.0}
START = datetime(2026, 3, 1, 19, tzinfo=UTC)
END = START + timedelta(hours=2)
PRE_DAYS = 28
CHUNK = 1_000_000
N_ITEMS = 5_000


def _max_rss_gib() -> float:
    """This process's own peak resident memory (VmHWM). Not ``ru_maxrss``: on Linux a child
    starts with its parent's peak there (it survives fork and exec), so a child measured after
    the parent generated the data reported the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def generate(users: int, lake_dir: Path) -> str:
    """Write the synthetic campaign's raw snapshot; returns its URI.

    Users have a Gamma-distributed activity; pre-period orders are Poisson in it (the CUPED
    covariate), conversion in the outcome window is ``0.03 + 0.05 * activity`` (clipped to
    0.9) plus the arm's effect, and a converted user places 1 + Poisson(0.3) orders.
    """
    import pyarrow as pa

    from flashsale_ml.contract import conform
    from flashsale_ml.datasets import SnapshotWriter
    from flashsale_ml.storage import open_store

    rng = np.random.default_rng(users)
    lake = open_store(lake_dir.as_uri())
    ts = pa.timestamp("us", tz="UTC")
    start_us = int(START.timestamp() * 1e6)
    metadata = {
        "generator": "benchmarks/bench_evaluation.py",
        "users": users,
        "true_effect": EFFECT,
        "data_as_of": (END + timedelta(days=3)).isoformat(),
    }
    item_price = np.round(rng.lognormal(3.3, 0.8, N_ITEMS) + 1.0, 2)
    order_id = 0
    with SnapshotWriter(lake, "raw", metadata=metadata) as writer:
        writer.write_table(
            "campaigns",
            conform(
                "campaigns",
                pa.table(
                    {
                        "campaign_id": [CAMPAIGN],
                        "start_ts": pa.array([START], ts),
                        "end_ts": pa.array([END], ts),
                        "item_ids": pa.array([list(range(50))], pa.list_(pa.int64())),
                        "promo_types": [list(ARMS)],
                        "discount_depth": [0.3],
                        "budget": [0.0],
                        "holdout_share": [HOLDOUT],
                    }
                ),
            ),
        )
        writer.write_table(
            "items",
            conform(
                "items",
                pa.table(
                    {
                        "item_id": np.arange(N_ITEMS, dtype=np.int64),
                        "category": ["home"] * N_ITEMS,
                        "brand": ["bench"] * N_ITEMS,
                        "list_price": item_price,
                        "cost": np.round(item_price * 0.6, 2),
                        "stock_on_hand": np.full(N_ITEMS, 100, dtype=np.int64),
                        "title": [f"item {i}" for i in range(N_ITEMS)],
                    }
                ),
            ),
        )
        for lo in range(0, users, CHUNK):
            n = min(CHUNK, users - lo)
            user_id = np.arange(lo, lo + n, dtype=np.int64) * 7_919 + 13  # not in arm order
            arm = np.where(rng.random(n) < HOLDOUT, 0, rng.integers(1, len(ARMS) + 1, n))
            arm_names = np.array(("control", *ARMS), dtype=object)
            writer.append(
                "assignments",
                conform(
                    "assignments",
                    pa.table(
                        {
                            "campaign_id": pa.array([CAMPAIGN] * n),
                            "user_id": user_id,
                            "arm": arm_names[arm],
                            "assigned_ts": pa.array(
                                np.full(n, start_us - 3_600 * 10**6), type=pa.int64()
                            ).cast(ts),
                        }
                    ),
                ),
            )
            activity = rng.gamma(0.5, 1.0, n)
            effect = np.r_[0.0, [EFFECT[a] for a in ARMS]][arm]
            converts = rng.random(n) < np.minimum(0.03 + 0.05 * activity, 0.9) + effect
            pre_orders = rng.poisson(2.0 * activity)
            post_orders = np.where(converts, 1 + rng.poisson(0.3, n), 0)
            pre_user = np.repeat(user_id, pre_orders)
            post_user = np.repeat(user_id, post_orders)
            pre_t = start_us - (rng.random(len(pre_user)) * PRE_DAYS * 86_400e6).astype(np.int64)
            window_us = (END - START + timedelta(hours=24)).total_seconds() * 1e6
            post_t = start_us + (rng.random(len(post_user)) * window_us).astype(np.int64)
            user = np.r_[pre_user, post_user]
            t = np.r_[pre_t, post_t]
            k = len(user)
            item = rng.integers(0, N_ITEMS, k)
            in_sale = np.r_[np.zeros(len(pre_user), bool), post_t < int(END.timestamp() * 1e6)]
            discount = np.where(in_sale, np.round(item_price[item] * 0.3, 2), 0.0)
            status = np.array(("completed", "cancelled", "returned"), dtype=object)[
                rng.choice(3, k, p=[0.94, 0.03, 0.03])
            ]
            writer.append(
                "orders",
                conform(
                    "orders",
                    pa.table(
                        {
                            "order_id": np.arange(order_id, order_id + k, dtype=np.int64),
                            "user_id": user,
                            "item_id": item,
                            "qty": rng.choice([1, 2, 3], k, p=[0.86, 0.11, 0.03]),
                            "unit_price": item_price[item] - discount,
                            "discount": discount,
                            "ts": pa.array(t, type=pa.int64()).cast(ts),
                            "campaign_id": pa.array(np.where(in_sale, CAMPAIGN, None)),
                            "status": status,
                        }
                    ),
                ),
            )
            order_id += k
    return writer.uri


def measure(raw_uri: str) -> dict:
    """Evaluate the synthetic campaign in this (fresh) process; time and peak RSS."""
    baseline_rss = _max_rss_gib()
    started = time.perf_counter()
    from flashsale_ml.config import get_settings
    from flashsale_ml.datasets import Snapshot, SnapshotWriter
    from flashsale_ml.duck import connect
    from flashsale_ml.evaluation.campaign import evaluate_campaign
    from flashsale_ml.steps.evaluation import _data_as_of
    from flashsale_ml.storage import open_store

    imported = time.perf_counter()
    import_rss = _max_rss_gib()
    settings = get_settings()
    with Snapshot(raw_uri) as snapshot:
        con = connect(
            {t: snapshot.local_files(t) for t in snapshot.tables},
            memory_limit=settings.duckdb_memory_limit,
            threads=settings.compute_threads,
        )
        try:
            rows = {
                t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("assignments", "orders")
            }
            began = time.perf_counter()
            evaluation, labels = evaluate_campaign(
                con,
                CAMPAIGN,
                settings.evaluation,
                settings.seed,
                raw_uri,
                snapshot.snapshot_id,
                _data_as_of(snapshot, con),
                set(snapshot.tables),
            )
            # as the step writes them: batches from DuckDB into a labels snapshot
            labels_rows = 0
            with tempfile.TemporaryDirectory(prefix="bench-labels-") as tmp:
                writer = SnapshotWriter(open_store(Path(tmp).as_uri()), "campaign_labels")
                with writer:
                    for batch in labels.batches():
                        writer.append("labels", batch)
                        labels_rows += batch.num_rows
            evaluate_s = time.perf_counter() - began  # evaluation and writing the labels
        finally:
            con.close()
    effects = {}
    for arm in evaluation.arms:
        e = evaluation.effect("conversion", arm)
        effects[arm] = {
            "estimate": round(e.difference.estimate, 5),
            "ci": [round(e.difference.low, 5), round(e.difference.high, 5)],
            "true": EFFECT[arm],
            "covered": e.difference.low <= EFFECT[arm] <= e.difference.high,
            "cuped_width_ratio": round(
                (e.cuped.interval.high - e.cuped.interval.low)
                / (e.cuped.unadjusted.high - e.cuped.unadjusted.low),
                4,
            ),
        }
    return {
        "bench": "evaluate_campaign",
        "users": rows["assignments"],
        "orders": rows["orders"],
        "labels_rows": labels_rows,
        "evaluate_s": round(evaluate_s, 2),
        "import_s": round(imported - started, 2),
        "peak_rss_gib": round(_max_rss_gib(), 3),
        "rss_after_imports_gib": round(import_rss, 3),
        "rss_at_start_gib": round(baseline_rss, 3),
        "duckdb_threads": settings.compute_threads,
        "duckdb_memory_limit": settings.duckdb_memory_limit,
        "srm_p_value": round(evaluation.srm_p_value, 4),
        "conversion": effects,
    }


def _child(args: list[str]) -> tuple[int, dict | None]:
    done = subprocess.run(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, (json.loads(lines[-1]) if lines else None)


def speed(users: int, work: Path) -> int:
    lake_dir = work / f"lake-{users}"
    shutil.rmtree(lake_dir, ignore_errors=True)
    lake_dir.mkdir(parents=True)
    started = time.perf_counter()
    code, generated = _child(["--generate", str(users), str(lake_dir)])
    if code or generated is None:
        print(json.dumps({"bench": "evaluate_campaign", "users": users, "failed": "generate",
                          "exit_code": code}), flush=True)  # fmt: skip
        return 1
    generate_s = time.perf_counter() - started
    code, row = _child(["--measure", generated["raw_uri"]])
    if code or row is None:
        print(json.dumps({"bench": "evaluate_campaign", "users": users, "failed": "measure",
                          "exit_code": code}), flush=True)  # fmt: skip
        return 1
    row["generate_s"] = round(generate_s, 1)
    row["parquet_mib"] = round(sum(f.stat().st_size for f in lake_dir.rglob("*.parquet")) / 2**20)
    print(json.dumps(row), flush=True)
    shutil.rmtree(lake_dir, ignore_errors=True)
    return 0


def truth_case(seed: int, root: Path, users: int, days: int) -> list[dict]:
    """One simulated shop without sellouts: per arm, interval, truth and CUPED width ratios."""
    from flashsale_ml.datasets import Snapshot
    from flashsale_ml.duck import connect
    from flashsale_ml.evaluation.campaign import evaluate_campaign
    from flashsale_ml.evaluation.settings import EvaluationConfig
    from flashsale_ml.simulation import SimulationConfig, simulate
    from flashsale_ml.steps.evaluation import _data_as_of
    from flashsale_ml.storage import open_store

    lake = open_store((root / f"seed-{seed}").as_uri())
    result = simulate(
        SimulationConfig(users=users, days=days, seed=seed, sale_stock_factor=1000.0), lake
    )
    rows = []
    with Snapshot(result.raw_uri) as raw, Snapshot(result.truth_uri) as truth:
        files = {t: raw.local_files(t) for t in raw.tables}
        files["sale_truth"] = truth.local_files("sale_truth")
        con = connect(files)
        try:
            (cid,) = con.execute(
                "SELECT campaign_id FROM campaigns ORDER BY start_ts LIMIT 1"
            ).fetchone()
            evaluation, _ = evaluate_campaign(
                con,
                cid,
                EvaluationConfig(bootstrap_samples=200),
                seed,
                result.raw_uri,
                raw.snapshot_id,
                _data_as_of(raw, con),
                set(raw.tables),
            )
            for arm in evaluation.arms:
                exact, simple = con.execute(
                    f"""
                    WITH background AS (
                        SELECT DISTINCT user_id FROM orders
                        WHERE campaign_id IS NULL AND ts >= $start AND ts < $end
                    )
                    SELECT avg((NOT t.is_bot)::INT * (t.p_{arm} - t.p_control)
                               * (b.user_id IS NULL)::INT),
                           avg((NOT t.is_bot)::INT * (t.p_{arm} - t.p_control))
                    FROM sale_truth t LEFT JOIN background b USING (user_id)
                    WHERE t.campaign_id = $cid
                    """,
                    {"start": evaluation.start, "end": evaluation.outcome_end, "cid": cid},
                ).fetchone()
                effect = evaluation.effect("conversion", arm)
                ratios = {}
                for metric in ("conversion", "orders", "revenue", "margin"):
                    cuped = evaluation.effect(metric, arm).cuped
                    ratios[metric] = (cuped.interval.high - cuped.interval.low) / (
                        cuped.unadjusted.high - cuped.unadjusted.low
                    )
                rows.append(
                    {
                        "truth": exact,
                        "truth_ignoring_background": simple,
                        "low": effect.difference.low,
                        "high": effect.difference.high,
                        "z": (effect.difference.estimate - exact) / effect.difference.std_error,
                        "cuped_covered": effect.cuped.interval.low
                        <= exact
                        <= effect.cuped.interval.high,
                        "ratios": ratios,
                    }
                )
        finally:
            con.close()
    shutil.rmtree(root / f"seed-{seed}", ignore_errors=True)
    return rows


def coverage(seeds: int, users: int, days: int, work: Path) -> None:
    started = time.perf_counter()
    rows = [row for seed in range(seeds) for row in truth_case(seed, work, users, days)]
    covered = np.mean([r["low"] <= r["truth"] <= r["high"] for r in rows])
    simple = np.mean([r["low"] <= r["truth_ignoring_background"] <= r["high"] for r in rows])
    print(
        json.dumps(
            {
                "bench": "coverage",
                "seeds": seeds,
                "users": users,
                "days": days,
                "cases": len(rows),
                "coverage": round(float(covered), 4),
                "coverage_cuped": round(float(np.mean([r["cuped_covered"] for r in rows])), 4),
                "coverage_of_truth_ignoring_background": round(float(simple), 4),
                "mean_z": round(float(np.mean([r["z"] for r in rows])), 4),
                "sd_z": round(float(np.std([r["z"] for r in rows])), 4),
                "mean_cuped_width_ratio": {
                    m: round(float(np.mean([r["ratios"][m] for r in rows])), 4)
                    for m in rows[0]["ratios"]
                },
                "wall_s": round(time.perf_counter() - started, 1),
            }
        ),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--coverage-users", type=int, default=1_500)
    parser.add_argument("--coverage-days", type=int, default=14)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-coverage", action="store_true")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: tmp)")
    parser.add_argument("--generate", nargs=2, metavar=("USERS", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--measure", metavar="RAW_URI", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.generate:
        uri = generate(int(args.generate[0]), Path(args.generate[1]))
        print(json.dumps({"raw_uri": uri}), flush=True)
        return 0
    if args.measure:
        print(json.dumps(measure(args.measure)), flush=True)
        return 0

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-evaluation-"))
    work.mkdir(parents=True, exist_ok=True)
    failed = 0
    try:
        if not args.skip_speed:
            for users in args.users:
                failed |= speed(users, work)
        if not args.skip_coverage:
            coverage(args.seeds, args.coverage_users, args.coverage_days, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
