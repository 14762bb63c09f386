"""Simulator throughput: wall time and peak RSS of `flashsale simulate` at a given size.

    python benchmarks/bench_simulate.py --users 1000000 --days 28 [--out file:///tmp/bench-lake]

Target (issue 3): 1,000,000 users / ~100,000,000 events in <= 10 minutes and <= 4 GB peak RSS
on a 2-core machine. Each size runs in a fresh child process so RSS is the simulator's own.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import run_measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--out", default=None, help="lake URI (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the generated lake")
    args = parser.parse_args()
    out_dir = None if args.out else Path(tempfile.mkdtemp(prefix="bench-sim-"))
    out = args.out or out_dir.as_uri()
    results = []
    for users in args.users:
        log = Path(tempfile.mkstemp(suffix=".json")[1])
        cmd = [
            sys.executable,
            "-c",
            "import json,sys; from flashsale_ml.cli import main; "
            f"sys.argv=['flashsale','--log-level','WARNING','simulate','--users','{users}',"
            f"'--days','{args.days}','--out','{out}']; main()",
        ]
        with log.open("w") as fh:
            m = run_measured(cmd, stdout=fh)
        summary = json.loads(log.read_text() or "{}")
        events = summary.get("rows", {}).get("events", 0)
        results.append(
            {
                "users": users,
                "days": args.days,
                "events": events,
                "wall_s": round(m.wall_s, 1),
                "peak_rss_gib": round(m.peak_rss_gib, 2),
                "events_per_s": round(events / m.wall_s),
                "exit": m.exit_code,
            }
        )
        print(json.dumps(results[-1]), flush=True)
    if out_dir and not args.keep:
        shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
