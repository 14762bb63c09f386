"""Feature-build cost: full build (every group) at one cutoff, and DuckDB vs pandas.

    python benchmarks/bench_features.py --lake file:///tmp/bench-lake [--pandas-max-events 20000000]

For every raw snapshot in the lake (e.g. made by bench_simulate.py at 1e6 / 1e7 / 1e8 events):
1. ``flashsale features --as-of <newest sale start>``: all groups (user, item, user x category,
   traffic, labels) as of one cutoff, committed as a snapshot; wall time and peak RSS.
2. The user feature group alone, in DuckDB (``propensity_features``) and in idiomatic pandas
   (``features.pandas_reference``), each in a fresh process; the DuckDB query computes a
   superset of the pandas columns, so the speed-up is conservative.
Targets (issue 5): 1e8 events <= 90 s and <= 6 GB; speed-up over pandas >= 4x.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import run_measured

DUCKDB_USER_GROUP = """
from flashsale_ml.datasets import Snapshot
from flashsale_ml.features.build import Cutoff, connect, propensity_features
from datetime import datetime
s = Snapshot({uri!r})
con = connect({{t: s.local_files(t) for t in
              ("users", "items", "events", "orders", "campaigns", "assignments")}})
c = Cutoff({cid!r}, datetime.fromisoformat({as_of!r}), datetime.fromisoformat({end!r}))
print(propensity_features(con, c).num_rows)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lake", required=True)
    parser.add_argument(
        "--pandas-max-events",
        type=float,
        default=2e7,
        help="skip the pandas run above this many events (memory)",
    )
    args = parser.parse_args()
    from flashsale_ml.datasets import Snapshot, list_snapshots
    from flashsale_ml.storage import open_store

    for uri in list_snapshots(open_store(args.lake), "raw"):
        snap = Snapshot(uri)
        events = snap.manifest.tables["events"].rows
        campaigns = snap.read_pandas("campaigns").sort_values("start_ts")
        last = campaigns.iloc[-1]
        as_of, end = last["start_ts"].isoformat(), last["end_ts"].isoformat()
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
        print(
            json.dumps(
                {
                    "events": events,
                    "what": "full build, one cutoff",
                    "wall_s": round(m.wall_s, 1),
                    "peak_rss_gib": round(m.peak_rss_gib, 2),
                    "exit": m.exit_code,
                }
            ),
            flush=True,
        )
        fill = {"uri": uri, "cid": last["campaign_id"], "as_of": as_of, "end": end}
        duck = run_measured(
            [sys.executable, "-c", DUCKDB_USER_GROUP.format(**fill)], stdout=subprocess.DEVNULL
        )
        row = {
            "events": events,
            "what": "user group",
            "duckdb_s": round(duck.wall_s, 1),
            "duckdb_rss_gib": round(duck.peak_rss_gib, 2),
        }
        if events <= args.pandas_max_events:
            pandas = run_measured(
                [sys.executable, "-c", PANDAS_USER_GROUP.format(**fill)],
                stdout=subprocess.DEVNULL,
            )
            row |= {
                "pandas_s": round(pandas.wall_s, 1),
                "pandas_rss_gib": round(pandas.peak_rss_gib, 2),
                "speedup": round(pandas.wall_s / duck.wall_s, 1),
            }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
