"""Bring-your-own-data ingest (flashsale_ml.ingest) at scale: time and peak memory.

    python benchmarks/bench_ingest.py [--rows 100000000] [--users 1000000] [--items 10000]
        [--format parquet|csv] [--workdir DIR] [--memory-limit 2500MB] [--threads N] [--keep]

Generates (not timed) a shop export in ``--workdir``: ``orders`` with ``--rows`` order lines
(integer customer numbers, SKU numbers, naive local Europe/London times over one year, status
codes A/X/R through a value map), ``users`` and ``items``, as Parquet (``--format csv``: the
orders as a ``;``-separated CSV written from the Parquet by DuckDB), plus a mapping with
``traffic`` derived from orders. Then one child process runs ``flashsale_ml.ingest.run_ingest``
into a local lake and reports its wall seconds and its own peak RSS (VmHWM of
/proc/self/status), with the ingest's per-stage log lines on stderr.

The issue's target: 1e8 order lines in <= 3 min and <= 4 GB. One JSON line per result; no
figure is asserted (exit status 1 when the child fails).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CHUNK = 5_000_000
START_US = 1_735_689_600_000_000  # 2025-01-01 00:00 (naive, local)
YEAR_US = 365 * 86_400 * 1_000_000

MAPPING = """\
dataset: bench-shop
timezone: Europe/London
pseudonym: {{columns: [user_id], prefix: "bench:"}}
tables:
  users:
    source: {{path: users.parquet}}
    columns:
      user_id: customer_no
      signup_ts: created
      region: country
      device_type: {{from: dev, map: {{M: mobile, D: desktop, T: tablet}}}}
  items:
    source: {{path: items.parquet}}
    columns: {{item_id: sku, category: cat, brand: brand, list_price: price, title: title}}
  orders:
    source: {orders_source}
    columns:
      order_id: order_no
      user_id: customer_no
      item_id: sku
      qty: qty
      unit_price: price
      ts: ordered_at
      status: {{from: status, map: {{A: completed, X: cancelled, R: returned}}}}
    constants: {{discount: 0.0}}
  traffic:
    derive: {{from: orders, per: minute}}
"""


def generate(folder: Path, rows: int, users: int, items: int, fmt: str, seed: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "customer_no": np.arange(1, users + 1, dtype=np.int64),
                "created": pa.array(
                    START_US - rng.integers(86_400_000_000, 3 * YEAR_US, users),
                    pa.timestamp("us"),
                ),
                "country": pa.array(rng.choice(["GB", "IE", "FR", "DE"], users)),
                "dev": pa.array(rng.choice(["M", "D", "T"], users)),
            }
        ),
        folder / "users.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "sku": np.arange(1, items + 1, dtype=np.int64),
                "cat": pa.array(rng.choice(["gifts", "kitchen", "decor"], items)),
                "brand": pa.array(["house"] * items),
                "price": np.round(rng.uniform(1, 100, items), 2),
                "title": pa.array([f"item {i}" for i in range(items)]),
            }
        ),
        folder / "items.parquet",
    )
    codes = pa.array(["A", "X", "R"])
    schema = pa.schema(
        [
            ("order_no", pa.int64()),
            ("customer_no", pa.int64()),
            ("sku", pa.int64()),
            ("qty", pa.int64()),
            ("price", pa.float64()),
            ("ordered_at", pa.timestamp("us")),
            ("status", pa.string()),
        ]
    )
    with pq.ParquetWriter(folder / "orders.parquet", schema, compression="snappy") as writer:
        for lo in range(0, rows, CHUNK):
            n = min(CHUNK, rows - lo)
            status = codes.take(rng.choice(3, n, p=[0.9, 0.07, 0.03]))
            writer.write_table(
                pa.table(
                    {
                        "order_no": np.arange(lo + 1, lo + n + 1, dtype=np.int64),
                        "customer_no": rng.integers(1, users + 1, n),
                        "sku": rng.integers(1, items + 1, n),
                        "qty": rng.integers(1, 5, n),
                        "price": np.round(rng.uniform(1, 100, n), 2),
                        "ordered_at": pa.array(
                            START_US + np.sort(rng.integers(0, YEAR_US, n)), pa.timestamp("us")
                        ),
                        "status": status,
                    },
                    schema=schema,
                )
            )
    source = "{path: orders.parquet}"
    if fmt == "csv":
        import duckdb

        con = duckdb.connect()
        con.execute(
            f"COPY (SELECT * FROM read_parquet('{folder / 'orders.parquet'}')) "
            f"TO '{folder / 'orders.csv'}' (FORMAT csv, HEADER, DELIMITER ';')"
        )
        con.close()
        (folder / "orders.parquet").unlink()
        source = '{path: orders.csv, delimiter: ";"}'
    (folder / "mapping.yaml").write_text(MAPPING.format(orders_source=source))
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return {"seconds": round(time.perf_counter() - started, 1), "bytes": size}


CHILD = """
import json, logging, sys, time
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
from flashsale_ml.ingest import run_ingest
from flashsale_ml.storage import open_store
mapping, lake, memory, threads = sys.argv[1:5]
result = run_ingest(mapping, open_store(lake), memory_limit=memory,
                    threads=int(threads) if threads != "0" else None)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"uri": result.uri, "rows": result.rows, "seconds": round(result.seconds, 1),
                  "peak_rss_mb": round(hwm / 1024)}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--memory-limit", default="2500MB", help="DuckDB's cap")
    parser.add_argument("--threads", type=int, default=0, help="0: the compute_threads setting")
    parser.add_argument("--keep", action="store_true", help="keep the generated files and lake")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        generated = generate(work / "export", args.rows, args.users, args.items, args.format)
        print(json.dumps({"generated": generated, "rows": args.rows, "format": args.format}))
        env = {
            **os.environ,
            "FLASHSALE_PSEUDONYM_KEY": os.environ.get(
                "FLASHSALE_PSEUDONYM_KEY", "bench-only-secret-key-0123456789"
            ),
        }
        started = time.perf_counter()
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                str(work / "export" / "mapping.yaml"),
                (work / "lake").as_uri(),
                args.memory_limit,
                str(args.threads),
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        sys.stderr.write(child.stderr[-6000:])
        if child.returncode != 0:
            print(json.dumps({"error": child.stderr.strip().splitlines()[-1:]}))
            return 1
        result = json.loads(child.stdout.strip().splitlines()[-1])
        result.update(
            {
                "order_lines": args.rows,
                "format": args.format,
                "cpus": os.cpu_count(),
                "wall_s_with_start": round(time.perf_counter() - started, 1),
                "order_lines_per_s": round(args.rows / max(result["seconds"], 1e-9)),
            }
        )
        print(json.dumps(result))
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
