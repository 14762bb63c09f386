"""The campaign DAG end to end under a real scheduler: per-task timings on a large world.

    python benchmarks/bench_campaign_dag.py [--users 100000] [--days 35] [--seed 11]
        [--work /tmp/bench-campaign] [--keep]

Builds a simulated shop (``--users`` x ``--days``, stock never capping a purchase) in a local
lake, trains and promotes the two champions the plan needs (propensity LightGBM, uplift
S-learner) in this process (not timed as part of the DAG), then starts a real Airflow
(``flashsale_ml.devstack.AirflowStack``: scheduler, api-server, dag-processor, triggerer,
LocalExecutor on its own PostgreSQL database) and a real ``mlflow server``, triggers
``flashsale_campaign`` through the REST API with the form's payload (``auto_approve`` on, so
no person is in the timing) and waits for it. Prints one JSON line per task (queued, start,
end, duration) and one for the whole run (trigger to finish, and the sum of task durations).
Nothing is asserted. Needs PostgreSQL on 127.0.0.1:5432 (``FLASHSALE_AIRFLOW_DATABASE_URL``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def emit(row: dict) -> None:
    print(json.dumps(row, default=str), flush=True)


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=35)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-campaign"))
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)

    from flashsale_ml import steps
    from flashsale_ml.config import Settings
    from flashsale_ml.datasets import Snapshot
    from flashsale_ml.devstack import AirflowStack, MlflowServer
    from flashsale_ml.simulation import SimulationConfig, simulate
    from flashsale_ml.storage import open_store

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    lake_uri = (args.work / "lake").as_uri()
    started = time.perf_counter()
    with MlflowServer(args.work, args.work / "mlflow.db", str(args.work / "mlartifacts")) as server:
        settings = Settings(
            home=args.work / "home", storage_root=lake_uri, mlflow_tracking_uri=server.url
        )
        config = SimulationConfig(
            users=args.users, days=args.days, seed=args.seed, sale_stock_factor=1000
        )
        shop = simulate(config, open_store(lake_uri))
        steps.validate_data(shop.raw_uri, settings=settings)
        features = steps.build_features(shop.raw_uri, settings=settings)
        for kind, flavor in (("propensity", "lgbm"), ("uplift", "s")):
            trained = steps.train_model(features, kind, flavor, settings=settings)
            version = steps.register_model(trained["run_id"], kind, settings=settings)
            decision = steps.promote_model(version["version"], kind, settings=settings)
            emit({"setup": f"{kind} champion", "promoted": decision["promoted"]})
        emit({"setup_seconds": round(time.perf_counter() - started, 1), "users": args.users})
        with Snapshot(shop.raw_uri) as raw:
            as_of = datetime.fromisoformat(raw.manifest.metadata["data_as_of"])
        start = (as_of + timedelta(days=1)).replace(hour=19, tzinfo=UTC)
        form = steps.form_from_spec(
            {
                "campaign_id": "bench-campaign",
                "start": start.isoformat(),
                "end": (start + timedelta(hours=2)).isoformat(),
                "skus": [1000000 + i for i in range(8)],
                "promotions": {
                    "pct_discount": 4.0,
                    "gift_with_purchase": 6.0,
                    "timed_coupon": 3.0,
                },
                "discount_depths": [0.2, 0.3],
                "budget": 500.0 * args.users / 4_000,
            },
            auto_approve=True,
        )
        env = {
            "FLASHSALE_STORAGE_ROOT": lake_uri,
            "FLASHSALE_MLFLOW_TRACKING_URI": server.url,
            "FLASHSALE_HOME": str(args.work / "home"),
            "FLASHSALE_TASK_RETRY_DELAY_S": "1",
        }
        with AirflowStack(args.work, ROOT / "dags", ROOT / "plugins", env=env) as stack:
            emit({"airflow": stack.timings})
            api = stack.client()
            api.wait_for_dag("flashsale_campaign", timeout=180)
            triggered = time.perf_counter()
            run_id = api.trigger("flashsale_campaign", form)["dag_run_id"]
            run = api.wait_for_run("flashsale_campaign", run_id, timeout=3600)
            wall = time.perf_counter() - triggered
            total = 0.0
            for ti in sorted(
                api.task_instances("flashsale_campaign", run_id),
                key=lambda t: t.get("start_date") or "",
            ):
                begin, end = parse_time(ti.get("start_date")), parse_time(ti.get("end_date"))
                seconds = (end - begin).total_seconds() if begin and end else None
                total += seconds or 0.0
                emit(
                    {
                        "task": ti["task_id"],
                        "state": ti["state"],
                        "seconds": seconds,
                        "queued": ti.get("queued_when"),
                        "start": ti.get("start_date"),
                    }
                )
            emit(
                {
                    "dag_run": run["state"],
                    "trigger_to_end_seconds": round(wall, 1),
                    "sum_of_task_seconds": round(total, 1),
                    "users": args.users,
                }
            )
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)
    return 0 if run["state"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
