"""Feature-build cost: full build (every group) at one cutoff, and DuckDB vs pandas.

    python benchmarks/bench_features.py --lake file:///tmp/bench-lake [--pandas-max-events 20000000]

For every raw snapshot in the lake (e.g. made by bench_simulate.py at 1e6 / 1e7 / 1e8 events):
1. ``flashsale features --as-of <newest sale start>``: all groups (user, item, user x category,
   traffic, labels) as of one cutoff, committed as a snapshot; wall time and peak RSS.
2. The user feature group alone, in DuckDB (``propensity_features``) and in idiomatic pandas
   (``features.pandas_reference``), each in a fresh process; the DuckDB query computes a
   superset of the pandas columns, so the speed-up is conservative.
Targets (issue 5): 1e8 events <= 90 s and <= 6 GB; speed-up over pandas >= 4x.

With ``--repeat N`` each user-group run is repeated N times, alternating engines, and the
medians are compared. Before every measured run the snapshot's files are read once, so each
engine starts with them in the page cache: the pandas run holds 22 GB at 1e8 events and
evicts the cache of a 24 GB machine, which made the DuckDB run after it read 1.8 GB cold
from disk (43.5 s warm vs 57.7 s cold for the same command). With ``--compact-memory`` (off
by default: a benchmark does not change the machine's state unasked) free memory is also
compacted before every run (as root; see ``compact_memory``), because the fragmentation a
pandas run leaves behind slowed the next run by 20-45 %; each row says whether it was.

Every run's exit status is checked: a run that crashed or was killed (e.g. out of memory)
is reported with its exit code and is never timed; an engine with a failed run gets no
median and no speed-up, and the script exits with status 1 after printing every row.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import Measurement, run_measured

DUCKDB_USER_GROUP = """
from flashsale_ml.datasets import Snapshot
from flashsale_ml.features.sql import Cutoff, connect, propensity_features
from datetime import datetime
s = Snapshot({uri!r})
con = connect({{t: s.local_files(t) for t in
              ("users", "items", "events", "orders", "campaigns", "assignments")}})
c = Cutoff({cid!r}, datetime.fromisoformat({as_of!r}), datetime.fromisoformat({end!r}))
print(propensity_features(con, c).num_rows)
"""
# Equal work: DuckDB computing exactly the 18 columns of features.pandas_reference.
SAME_COLUMNS_SQL = """
WITH hist AS (SELECT user_id, session_id, item_id, event_type, ts, device_id FROM events
              WHERE ts < $as_of),
agg AS (
  SELECT user_id,
    count(*) FILTER (WHERE ts >= $as_of - INTERVAL 1 HOUR) AS events_1h,
    count(*) FILTER (WHERE ts >= $as_of - INTERVAL 1 DAY) AS events_24h,
    count(*) FILTER (WHERE ts >= $as_of - INTERVAL 7 DAY) AS events_7d,
    count(*) FILTER (WHERE ts >= $as_of - INTERVAL 30 DAY) AS events_30d,
    count(*) FILTER (WHERE event_type = 'view' AND ts >= $as_of - INTERVAL 7 DAY) AS views_7d,
    count(*) FILTER (WHERE event_type = 'add_to_cart' AND ts >= $as_of - INTERVAL 30 DAY) AS c30,
    count(*) FILTER (WHERE event_type = 'purchase' AND ts >= $as_of - INTERVAL 30 DAY) AS p30,
    count(DISTINCT session_id) FILTER (WHERE ts >= $as_of - INTERVAL 30 DAY) AS s30,
    count(DISTINCT item_id) FILTER (WHERE ts >= $as_of - INTERVAL 30 DAY) AS i30,
    max(ts) AS last_ts,
    HOURS
  FROM hist GROUP BY user_id),
buys AS (
  SELECT e.user_id, count(*) AS purchases_all, sum(e.price::DECIMAL(18, 2))::DOUBLE AS rev,
    count(*) FILTER (WHERE e.price < i.list_price)::DOUBLE / count(*) AS disc, max(e.ts) AS lb
  FROM events e JOIN items i USING (item_id)
  WHERE e.ts < $as_of AND e.event_type = 'purchase' GROUP BY e.user_id),
cats AS (
  SELECT e.user_id, count(DISTINCT i.category) AS c
  FROM events e JOIN items i USING (item_id)
  WHERE e.ts < $as_of AND e.ts >= $as_of - INTERVAL 30 DAY GROUP BY e.user_id),
ud AS (SELECT DISTINCT user_id, device_id FROM hist),
dev AS (SELECT device_id, count(*) AS n FROM ud GROUP BY device_id),
sharing AS (SELECT ud.user_id, max(dev.n) AS n FROM ud JOIN dev USING (device_id)
            GROUP BY ud.user_id)
SELECT agg.* EXCLUDE (hours_0, hours_1, hours_2, hours_3, hours_4, hours_5),
  PREFERRED_HOUR AS preferred_hour, buys.* EXCLUDE (user_id), cats.* EXCLUDE (user_id),
  sharing.* EXCLUDE (user_id)
FROM agg LEFT JOIN buys USING (user_id) LEFT JOIN cats USING (user_id)
  LEFT JOIN sharing USING (user_id)
"""
DUCKDB_SAME_COLUMNS = """
from flashsale_ml.datasets import Snapshot
from flashsale_ml.features.sql import HOUR_SUMS, connect, preferred_hour_sql
from datetime import datetime
import sys
s = Snapshot({uri!r})
con = connect({{t: s.local_files(t) for t in ("items", "events")}})
sql = sys.argv[1].replace("HOURS", HOUR_SUMS).replace("PREFERRED_HOUR", preferred_hour_sql("agg"))
print(len(con.sql(sql, params={{"as_of": datetime.fromisoformat({as_of!r})}}).fetchall()))
"""
PANDAS_USER_GROUP = """
from flashsale_ml.datasets import Snapshot
from flashsale_ml.features.pandas_reference import user_activity_features
from datetime import datetime
s = Snapshot({uri!r})
out = user_activity_features(s.local_files("events"), s.read_pandas("items"),
                             datetime.fromisoformat({as_of!r}))
print(len(out))
"""


def warm_page_cache(paths: list[Path]) -> None:
    """Read files once so the next process finds them in the OS page cache."""
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass


def compact_memory() -> bool:
    """Ask the kernel to defragment free memory (needs root; best effort).

    The pandas run at 1e8 events takes 22 GB of this 24 GB machine and leaves free memory
    fragmented: the next process's huge-page allocations then stall in direct compaction
    (``compact_stall`` in /proc/vmstat grew by thousands), and the DuckDB run right after a
    pandas run took 57-68 s against 46 s before it. Compacting before every measured run
    gives each engine the same start.
    """
    try:
        Path("/proc/sys/vm/compact_memory").write_text("1")
    except OSError:
        return False
    return True


def prepare_run(paths: list[Path], compact: bool = False) -> bool:
    """The same start for every measured run: inputs in the page cache and, only when asked
    (``--compact-memory``), defragmented memory.

    Returns whether the memory was compacted.
    """
    compacted = compact_memory() if compact else False
    warm_page_cache(paths)
    return compacted


def user_group_row(events: int, runs: dict[str, list[Measurement]], repeat: int) -> dict:
    """The figures of one snapshot's user-group comparison.

    Only runs that exited 0 are timed. An engine with any failed run (a crash, or killed for
    memory: a negative exit code is the signal) gets no median, and no speed-up is computed
    from it: a failed run is fast, and would pass for a bogus speed-up.
    """
    row: dict = {"events": events, "what": "user group", "runs_per_engine": repeat}
    wall: dict[str, float] = {}
    failed: dict[str, list[int]] = {}
    for name, ms in runs.items():
        codes = [m.exit_code for m in ms]
        if any(codes):
            failed[name] = codes
            row[f"{name}_s"] = None
        else:
            wall[name] = statistics.median(m.wall_s for m in ms)
            row[f"{name}_s"] = round(wall[name], 1)
        row[f"{name}_all_s"] = [round(m.wall_s, 1) for m in ms]
        row[f"{name}_rss_gib"] = round(max(m.peak_rss_gib for m in ms), 2)
    if "pandas" in runs:
        for key, engine in (("speedup", "duckdb"), ("speedup_same_columns", "duckdb_same_columns")):
            if "pandas" in wall and engine in wall:
                row[key] = round(wall["pandas"] / wall[engine], 2)
            else:
                row[key] = None
    if failed:
        row["failed"] = True
        row["exit_codes"] = failed
    return row


def main(argv: list[str] | None = None) -> int:
    """Print one JSON row per measurement; 1 when any measured run failed, else 0."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lake", required=True)
    parser.add_argument(
        "--events-max",
        type=float,
        default=float("inf"),
        help="only snapshots with at most this many events",
    )
    parser.add_argument(
        "--events-min", type=float, default=0, help="only snapshots with at least this many events"
    )
    parser.add_argument("--repeat", type=int, default=1, help="user-group runs per engine")
    parser.add_argument(
        "--skip-full-build", action="store_true", help="only the user-group comparison"
    )
    parser.add_argument("--skip-user-group", action="store_true", help="only the full build")
    parser.add_argument(
        "--pandas-max-events",
        type=float,
        default=2e7,
        help="skip the pandas run above this many events (memory)",
    )
    parser.add_argument(
        "--compact-memory",
        action="store_true",
        help="write /proc/sys/vm/compact_memory before every run (root; changes the machine's "
        "memory state, so off by default)",
    )
    args = parser.parse_args(argv)
    from flashsale_ml.datasets import Snapshot, list_snapshots
    from flashsale_ml.storage import open_store

    any_failed = False
    for uri in list_snapshots(open_store(args.lake), "raw"):
        snap = Snapshot(uri)
        events = snap.manifest.tables["events"].rows
        if not args.events_min <= events <= args.events_max:
            continue
        campaigns = snap.read_pandas("campaigns").sort_values("start_ts")
        last = campaigns.iloc[-1]
        as_of, end = last["start_ts"].isoformat(), last["end_ts"].isoformat()
        inputs = [path for table in snap.tables for path in snap.local_files(table)]
        if not args.skip_full_build:
            compacted = prepare_run(inputs, args.compact_memory)
            out = tempfile.mkdtemp(prefix="bench-features-")
            m = run_measured(
                [
                    sys.executable,
                    "-m",
                    "flashsale_ml.cli",
                    "--log-level",
                    "WARNING",
                    "features",
                    "--data",
                    uri,
                    "--as-of",
                    as_of,
                    "--out",
                    Path(out).as_uri(),
                ],
                stdout=subprocess.DEVNULL,
            )
            failed = m.exit_code != 0
            any_failed |= failed
            print(
                json.dumps(
                    {
                        "events": events,
                        "what": "full build, one cutoff",
                        "wall_s": None if failed else round(m.wall_s, 1),
                        "peak_rss_gib": round(m.peak_rss_gib, 2),
                        "exit": m.exit_code,
                        "failed": failed,
                        "memory_compacted_before_run": compacted,
                    }
                ),
                flush=True,
            )
        if args.skip_user_group:
            continue
        fill = {"uri": uri, "cid": last["campaign_id"], "as_of": as_of, "end": end}
        commands = {
            "duckdb": [sys.executable, "-c", DUCKDB_USER_GROUP.format(**fill)],
            "duckdb_same_columns": [
                sys.executable,
                "-c",
                DUCKDB_SAME_COLUMNS.format(**fill),
                SAME_COLUMNS_SQL,
            ],
        }
        if events <= args.pandas_max_events:
            commands["pandas"] = [sys.executable, "-c", PANDAS_USER_GROUP.format(**fill)]
        runs: dict[str, list[Measurement]] = {name: [] for name in commands}
        compacted = args.compact_memory
        for _ in range(args.repeat):
            for name, command in commands.items():
                compacted &= prepare_run(inputs, args.compact_memory)
                runs[name].append(run_measured(command, stdout=subprocess.DEVNULL))
        row = user_group_row(events, runs, args.repeat)
        row["memory_compacted_before_runs"] = compacted
        any_failed |= row.get("failed", False)
        print(json.dumps(row), flush=True)
    if any_failed:
        print("bench_features: at least one measured run failed (see exit codes)", file=sys.stderr)
    return 1 if any_failed else 0


if __name__ == "__main__":
    sys.exit(main())
