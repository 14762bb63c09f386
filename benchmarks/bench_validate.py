"""Validation throughput: wall time and peak RSS of `flashsale validate` on large snapshots.

    python benchmarks/bench_validate.py --data <raw snapshot URI> [<raw snapshot URI> ...]
    python benchmarks/bench_validate.py --lake file:///tmp/bench-lake   # every raw snapshot

Each snapshot is validated twice in a fresh child process: the events table alone (suite rules
only) and the whole snapshot (every suite plus referential, campaign-window, freshness,
experiment-integrity and drift checks). Target (issue 4): 1e8 events in <= 3 min, <= 4 GB.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import run_measured


def _snapshots(lake: str) -> list[str]:
    from flashsale_ml.datasets import list_snapshots
    from flashsale_ml.storage import open_store

    return list_snapshots(open_store(lake), "raw")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", nargs="*", default=[])
    parser.add_argument("--lake", default=None)
    args = parser.parse_args()
    uris = args.data + (_snapshots(args.lake) if args.lake else [])
    for uri in uris:
        from flashsale_ml.datasets import Snapshot

        events = Snapshot(uri).manifest.tables["events"].rows
        for scope, extra in (("events table", ["--table", "events"]), ("whole snapshot", [])):
            out = Path(tempfile.mkstemp(suffix=".json")[1])
            cmd = [
                sys.executable,
                "-m",
                "flashsale_ml.cli",
                "--log-level",
                "WARNING",
                "validate",
                "--data",
                uri,
                *extra,
            ]
            with out.open("w") as fh:
                m = run_measured(cmd, stdout=fh)
            summary = json.loads(out.read_text() or "{}")
            print(
                json.dumps(
                    {
                        "events": events,
                        "scope": scope,
                        "wall_s": round(m.wall_s, 1),
                        "peak_rss_gib": round(m.peak_rss_gib, 2),
                        "exit": m.exit_code,
                        "success": summary.get("success"),
                        "engines": summary.get("engines"),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
