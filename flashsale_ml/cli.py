"""The ``flashsale`` command line.

Every sub-command calls the same package functions the Airflow tasks call, so a step can be run,
debugged or back-filled by hand. ``flashsale demo`` runs the whole training DAG through a real
Airflow and a real MLflow server on the embedded defaults.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

QUIET_LOGGERS = (
    "great_expectations",
    "alembic",
    "botocore",
    "urllib3",
    "matplotlib",
    "py.warnings",
    "mlflow.models.model",
    "mlflow.tracking._tracking_service",
)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Each retry of an unanswered request is a warning; the command's one-line error says it.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def _print(payload: Any) -> None:
    print(json.dumps(payload, indent=2, default=str))


def _parse_ts(value: str) -> datetime:
    expected = "an ISO 8601 UTC time such as 2026-02-01T19:00:00Z"
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not {expected}") from None
    if ts.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no time zone; expected {expected}")
    return ts


def _snapshot_ref(value: str) -> str:
    """A snapshot URI; ``.../datasets/<name>/latest`` means the newest committed one."""
    from flashsale_ml.datasets import resolve_snapshot_uri
    from flashsale_ml.errors import DataError

    try:
        return resolve_snapshot_uri(value)
    except DataError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    except Exception as exc:  # an unreachable lake: a one-line message, not a traceback
        raise argparse.ArgumentTypeError(
            f"cannot look up {value}: {type(exc).__name__}: {exc}"
        ) from None


def cmd_simulate(args: argparse.Namespace) -> int:
    from flashsale_ml.config import check_pseudonym_key, get_settings
    from flashsale_ml.simulation import SimulationConfig, simulate
    from flashsale_ml.storage import open_store

    settings = get_settings()
    check_pseudonym_key(settings, purpose="simulation", lake_uri=args.out or settings.lake_uri)
    config = SimulationConfig(
        users=args.users,
        days=args.days,
        items=args.items,
        seed=args.seed if args.seed is not None else settings.seed,
        pseudonym_key=settings.pseudonym_key,
    )
    result = simulate(config, open_store(args.out or settings.lake_uri))
    _print(
        {
            "raw_uri": result.raw_uri,
            "truth_uri": result.truth_uri,
            "rows": result.rows,
            "seconds": round(result.seconds, 1),
        }
    )
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from flashsale_ml.config import get_settings
    from flashsale_ml.storage import open_store

    if args.init:
        from flashsale_ml.ingest.template import render_template

        target = Path(args.out or "mapping.yaml")
        if target.exists() and not args.force:
            raise SystemExit(f"{target} exists; pass --force to overwrite it")
        target.write_text(render_template())
        _print({"mapping_template": str(target)})
        return 0
    settings = get_settings()
    lake = open_store(args.out or settings.lake_uri)
    if args.mapping:
        from flashsale_ml.ingest import run_ingest

        result = run_ingest(args.mapping, lake, pseudonym_key=settings.pseudonym_key)
        _print(
            {
                "snapshot_uri": result.uri,
                "rows": result.rows,
                "filtered_out": result.filtered,
                "seconds": round(result.seconds, 1),
            }
        )
        return 0
    from flashsale_ml.loaders import ingest

    if not args.path:
        raise SystemExit("flashsale ingest --dataset needs --path FILE")
    uri = ingest(args.dataset, Path(args.path), lake, pseudonym_key=settings.pseudonym_key)
    _print({"snapshot_uri": uri})
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from flashsale_ml.validation import DataValidationError, validate_snapshot

    try:
        report = validate_snapshot(args.data, tables=args.table or None)
    except DataValidationError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    _print(report.summary())
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from flashsale_ml.config import get_settings
    from flashsale_ml.features import build_features
    from flashsale_ml.storage import open_store

    settings = get_settings()
    uri = build_features(
        args.data,
        open_store(args.out or settings.lake_uri),
        as_of=args.as_of,
        label_window=timedelta(hours=args.label_window_hours),
        memory_limit=settings.duckdb_memory_limit,
        threads=settings.compute_threads,
    )
    _print({"features_uri": uri})
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from flashsale_ml import steps

    options = {
        key: value
        for key, value in {
            "nproc_per_node": args.nproc_per_node,
            "nnodes": args.nnodes,
            "epochs": args.epochs,
        }.items()
        if value is not None
    }
    result = steps.train_model(args.features, args.model, args.flavor, **options)
    if args.register or args.promote:
        result["registered"] = steps.register_model(result["run_id"], args.model)
    if args.promote:
        result["promotion"] = steps.promote_model(result["registered"]["version"], args.model)
    _print(result)
    return 0


def cmd_registry(args: argparse.Namespace) -> int:
    from flashsale_ml.config import get_settings
    from flashsale_ml.registry import RegistryError, format_status, rollback, status

    settings = get_settings()
    try:
        if args.registry_command == "status":
            statuses = status(settings, args.model, decisions=args.decisions)
            if args.json:
                _print([s.summary() for s in statuses])
            else:
                print(format_status(statuses))
        elif args.registry_command == "rollback":
            state = rollback(settings, args.model, args.reason)
            print(
                f"{state.name}: champion is now version {state.champion} "
                f"(previous-champion: {state.previous_champion or 'none'})"
            )
        else:
            from flashsale_ml.promotion.flow import promote_version

            _print(promote_version(settings, args.model, args.version, features_uri=args.features))
    except RegistryError as exc:
        print(f"flashsale registry: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_world(args: argparse.Namespace) -> int:
    """The simulated world: advance it, playing the published plans whose sale has ended."""
    from flashsale_ml import steps

    _print(steps.advance_world(args.to))
    return 0


def _map_pair(value: str) -> tuple[str, str]:
    from flashsale_ml.evaluation.external import parse_mapping

    try:
        return next(iter(parse_mapping([value]).items()))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_evaluate(args: argparse.Namespace) -> int:
    """What a campaign caused, against its randomized holdout (integrity checks first)."""
    from flashsale_ml import steps

    result = steps.evaluate_campaign(
        args.campaign,
        args.data,
        out_uri=args.out,
        assignments=args.assignments,
        outcomes=args.outcomes,
        mapping=dict(args.map or []),
        control=args.control,
        holdout_share=args.holdout_share,
    )
    _print(result)  # the headline is in it (and was logged as the evaluation ran)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """A campaign plan within its budget, with a randomized holdout (spec checks first)."""
    from flashsale_ml import steps

    result = steps.plan_campaign(
        args.campaign, args.data, out_uri=args.out, campaign_id=args.campaign_id
    )
    summary = result.pop("summary_md")
    _print(result)
    if args.show_summary:
        print(summary)
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    """Remove what crashed writers left in the lake (never a committed snapshot)."""
    from datetime import timedelta

    from flashsale_ml.config import get_settings
    from flashsale_ml.datasets import collect_garbage
    from flashsale_ml.storage import open_store

    settings = get_settings()
    hours = (
        args.older_than_hours
        if args.older_than_hours is not None
        else settings.staging_max_age_hours
    )
    report = collect_garbage(
        open_store(args.lake or settings.lake_uri),
        timedelta(hours=hours),
        dry_run=args.dry_run,
    )
    _print(report.summary())
    return 0


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return number


def cmd_pipeline(args: argparse.Namespace) -> int:
    """All steps in-process, without Airflow: the DAG's steps and training branches."""
    from flashsale_ml import steps

    branch_options = {}
    if args.deep_epochs is not None or args.nproc_per_node is not None:
        from flashsale_ml.models import training_branches

        # The DAG's form sets these params; here the flags do, for the branches that read them.
        given = {"deep_epochs": args.deep_epochs, "deep_nproc_per_node": args.nproc_per_node}
        for branch in training_branches():
            chosen = {
                option: given[param]
                for option, param in branch.params.items()
                if given.get(param) is not None
            }
            if chosen:
                branch_options[branch.task_id] = chosen
    summary = steps.run_pipeline(
        f"cli-pipeline/{time.strftime('%Y%m%dT%H%M%S')}",
        users=args.users,
        days=args.days,
        branch_options=branch_options,
    )
    _print(summary)
    return 0


def _repo_dags_folder() -> Path:
    folder = Path(
        os.environ.get("FLASHSALE_DAGS_FOLDER", Path(__file__).resolve().parents[1] / "dags")
    )
    if not (folder / "flashsale_training_pipeline.py").exists():
        raise SystemExit(f"DAG folder {folder} not found; set FLASHSALE_DAGS_FOLDER")
    return folder


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the training DAG through Airflow against a real MLflow server, then explain it."""

    from flashsale_ml import demo
    from flashsale_ml.config import get_settings
    from flashsale_ml.devstack import MlflowServer, _bin

    settings = get_settings()
    home = settings.resolved_home
    started = time.perf_counter()
    print(f"flashsale demo: state under {home}", flush=True)
    history = (
        demo.ShopHistory(args.days, None)
        if args.days is not None
        else demo.next_shop_history(settings.lake_uri, args.users, demo.FIRST_DAYS)
    )
    print(f"  simulated shop: {args.users:,} users, {history.describe()}", flush=True)
    try:
        with (
            demo.exclusive(home / "demo.lock"),
            MlflowServer(
                home, home / "mlflow.db", str(home / "mlartifacts"), port=args.mlflow_port
            ) as server,
        ):
            print(f"  mlflow server up at {server.url}", flush=True)
            airflow = demo.AirflowCli(
                _bin("airflow"), demo.airflow_environment(home, _repo_dags_folder(), server.url)
            )
            print("  migrating the Airflow metadata DB (SQLite)...", flush=True)
            airflow.run("db", "migrate")
            conf = {"users": args.users, "days": history.days}
            log_path = home / "demo-dag-run.log"
            handed_over = airflow.scheduler_alive()
            if handed_over:
                print(
                    "  an Airflow scheduler is running on this home (make airflow-ui): handing "
                    f"the run to it, so every task runs once (log: {log_path})",
                    flush=True,
                )
                state = demo.run_on_scheduler(airflow, conf, log_path)
            else:
                print(f"  running DAG {demo.DAG_ID} {conf} (log: {log_path})...", flush=True)
                state = demo.run_with_dags_test(airflow, conf, log_path)
            if state != "success":
                print(f"DAG run {state}; see {log_path}", file=sys.stderr)
                return 1
            summary = _demo_summary(server.url, settings)
            if handed_over:
                loop = (
                    "\nThe campaign loop: with this scheduler running, trigger flashsale_campaign "
                    "in the Airflow UI, approve it under Required Actions, trigger flashsale_world "
                    "past the sale; evaluation and retraining follow on their own "
                    "(docs/campaign-loop.md)."
                )
            else:
                loop = _demo_loop(airflow, settings, home)
            summary += loop
    except demo.DemoError as exc:
        print(f"flashsale demo: {exc}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - started
    print(f"\nDone in {seconds:.0f} s.\n{summary}")
    return 0


def _demo_loop(airflow, settings, home: Path) -> str:
    """The closed loop after training (see :func:`flashsale_ml.demo.run_loop`), in words."""
    from flashsale_ml import demo
    from flashsale_ml.steps import latest_raw
    from flashsale_ml.storage import open_store

    print("  the campaign loop, each step the DAG a scheduler would run:", flush=True)
    campaign = demo.demo_campaign(latest_raw(settings), settings.evaluation.outcome_window_hours)
    demo.run_loop(airflow, latest_raw(settings), home, settings.evaluation.outcome_window_hours)
    lake = open_store(settings.lake_uri)
    plan = lake.uri(f"plans/{campaign.campaign_id}/summary.md")
    reports = sorted(
        k for k in lake.list(f"reports/evaluations/{campaign.campaign_id}/") if k.endswith(".html")
    )
    summary_md = lake.read_bytes(f"plans/{campaign.campaign_id}/summary.md").decode()
    first_lines = "\n".join("    " + line for line in summary_md.splitlines()[:12])
    return f"""
The campaign loop ({campaign.campaign_id}): retrained every kind, planned the campaign
(APPROVED AUTOMATICALLY by the demo's auto_approve flag: in the UI a person approves under
Required Actions), played the sale in the simulated shop, evaluated it, retrained on its labels.
  Plan:              {plan}
{first_lines}
  Evaluation report: {lake.uri(reports[-1]) if reports else "none"}
"""


def _demo_summary(server_url: str, settings) -> str:
    """What the demo made, in words: the models, the decision and where to look."""
    from flashsale_ml.models import get_flavor, training_branches
    from flashsale_ml.registry import DECISION_TAG, REASONS_TAG, newest_version
    from flashsale_ml.tracking import runs_view_url, sibling_step_metrics

    settings = settings.model_copy(update={"mlflow_tracking_uri": server_url})
    branches = training_branches()
    promoted = next(b for b in branches if b.promote)
    compared = next((b for b in branches if not b.promote), None)
    name = settings.registered_model_name(promoted.kind)
    newest = newest_version(settings, name)
    deep = (
        sibling_step_metrics(
            settings,
            newest.experiment_id,
            newest.parent_run_id,
            get_flavor(compared.kind, compared.flavor).step_name,
        )
        if compared
        else {}
    )
    deep_auc = deep.get("test_auc", float("nan"))
    metrics = newest.run_metrics
    aliases = ", ".join(newest.aliases) or "none"
    decision = newest.tags.get(DECISION_TAG, "not decided")
    reasons = newest.tags.get(REASONS_TAG, "")
    home = settings.resolved_home
    # Where `make mlflow-ui` serves this store (MLFLOW_PORT moves it).
    ui_url = f"http://127.0.0.1:{os.environ.get('MLFLOW_PORT', '5000')}"
    runs_url = runs_view_url(ui_url, newest.experiment_id)
    reason_lines = "\n".join(
        textwrap.fill(reason, width=96, initial_indent="    - ", subsequent_indent="      ")
        for reason in reasons.split("; ")
        if reason
    )
    return f"""  Data lake:         {settings.lake_uri}
  LightGBM run:      {newest.run_id}
                     test AUC {metrics.get("test_auc", float("nan")):.3f}, \
ECE {metrics.get("test_ece", float("nan")):.3f} on the newest sale
  Deep model run:    test AUC {deep_auc:.3f} (DCN-v2 under torchrun/DDP, logged for comparison and
                     not registered: with a few thousand users and a few weekly sales a neural
                     net has far less to learn from than boosted trees; at 1M users it comes
                     within 0.003 AUC of LightGBM, see docs/training.md)
  Registered model:  {name} version {newest.version} (aliases: {aliases})
  Promotion:         {decision}, gate by gate:
{reason_lines}
  MLflow store:      {home / "mlflow.db"} + {home / "mlartifacts"}

Look at it:
  make mlflow-ui    then open {runs_url}
                    (one row per pipeline run with its results; click a run for its steps,
                    plots under Artifacts; the registered model under "Models")
  make airflow-ui   then open http://127.0.0.1:8080 (DAG runs and task logs)
  .venv/bin/flashsale registry status   champions, challengers and the last decisions
Run `make demo` again: the shop moves on a week and the new model is judged against this one.
"""


def build_parser() -> argparse.ArgumentParser:
    from flashsale_ml.models import get_kind, kind_names

    parser = argparse.ArgumentParser(
        prog="flashsale",
        description="flashsale-ml: simulate or ingest shop data, validate it, build "
        "point-in-time features, train, register and promote models.",
        epilog="Every command calls the same package functions the Airflow tasks call. "
        "Settings come from FLASHSALE_* variables (see the README).",
    )
    parser.add_argument("--log-level", default=os.environ.get("FLASHSALE_LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback when a command fails"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="generate a flash-sale dataset with ground truth")
    p.add_argument("--users", type=int, default=5_000)
    p.add_argument("--days", type=int, default=28)
    p.add_argument("--items", type=int, default=None)
    p.add_argument("--seed", type=int, default=None, help="default: FLASHSALE_SEED")
    p.add_argument("--out", help="lake URI (default: FLASHSALE_STORAGE_ROOT)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "ingest",
        help="ingest your own files through a mapping, or a public dataset",
        description="Ingest a shop's own files through a mapping file (--mapping), write a "
        "commented mapping template (--init), or convert a public dataset (--dataset/--path). "
        "See docs/ingest.md.",
    )
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--mapping", help="the mapping file (YAML or JSON) of your own files")
    how.add_argument(
        "--init", action="store_true", help="write a commented mapping template (to --out)"
    )
    how.add_argument(
        "--dataset",
        choices=["hillstrom", "online-retail", "online-shoppers"],
        help="a public dataset (with --path)",
    )
    p.add_argument("--path", help="the public dataset's source file (csv or parquet)")
    p.add_argument(
        "--out",
        help="lake URI (default: FLASHSALE_STORAGE_ROOT); with --init the template file "
        "(default: mapping.yaml)",
    )
    p.add_argument("--force", action="store_true", help="with --init: overwrite --out")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("validate", help="validate a snapshot against expectations/")
    p.add_argument(
        "--data", required=True, type=_snapshot_ref, help="snapshot URI (.../latest: newest)"
    )
    p.add_argument("--table", action="append", help="only this table (repeatable)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("features", help="point-in-time features for each campaign")
    p.add_argument(
        "--data", required=True, type=_snapshot_ref, help="raw snapshot URI (.../latest: newest)"
    )
    p.add_argument("--out", help="lake URI (default: FLASHSALE_STORAGE_ROOT)")
    p.add_argument(
        "--as-of",
        type=_parse_ts,
        default=None,
        help="only the campaign starting at this UTC timestamp (required for data without "
        "campaigns)",
    )
    p.add_argument(
        "--label-window-hours",
        type=float,
        default=2.0,
        help="label window after --as-of when the data has no campaigns",
    )
    p.set_defaults(func=cmd_features)

    kinds = kind_names()
    p = sub.add_parser("train", help="train a model kind (one of its flavors) on features")
    p.add_argument("--model", default=kinds[0], choices=kinds, help="model kind")
    p.add_argument(
        "--flavor",
        default=None,
        help="how to fit it: "
        + "; ".join(f"{k}: {', '.join(get_kind(k).flavors)}" for k in kinds)
        + " (default: the kind's first)",
    )
    p.add_argument("--nproc-per-node", type=int, default=None, help="distributed: processes")
    p.add_argument("--nnodes", type=int, default=None, help="distributed: nodes")
    p.add_argument("--epochs", type=int, default=None, help="neural flavors: epochs")
    p.add_argument(
        "--features",
        required=True,
        type=_snapshot_ref,
        help="feature snapshot URI (.../datasets/features/latest: the newest)",
    )
    p.add_argument("--register", action="store_true", help="register it as the challenger")
    p.add_argument(
        "--promote", action="store_true", help="register it and judge it against the champion"
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("registry", help="champions, challengers, promotion and rollback")
    registry = p.add_subparsers(dest="registry_command", required=True)
    r = registry.add_parser("status", help="aliases, champion history and recent decisions")
    r.add_argument("--model", default=None, help="name or kind (default: every flashsale model)")
    r.add_argument("--decisions", type=int, default=5, help="how many recent decisions")
    r.add_argument("--json", action="store_true")
    r = registry.add_parser("promote", help="judge a version against the champion and apply")
    r.add_argument("--model", default=kinds[0], help="name or kind")
    r.add_argument("--version", default=None, help="default: the current challenger")
    r.add_argument("--features", default=None, help="holdout source (default: the version's)")
    r = registry.add_parser("rollback", help="give champion back to the previous champion")
    r.add_argument("--model", required=True, help="name (flashsale-propensity) or kind")
    r.add_argument("--reason", default="manual rollback")
    p.set_defaults(func=cmd_registry)

    p = sub.add_parser("world", help="the simulated world: play published plans, move time on")
    world = p.add_subparsers(dest="world_command", required=True)
    w = world.add_parser(
        "advance",
        help="extend the newest simulated snapshot to --to, playing every published plan whose "
        "sale ends by then (idempotent)",
    )
    w.add_argument(
        "--to", required=True, type=_parse_ts, help="UTC time, e.g. 2026-02-15T12:00:00Z"
    )
    p.set_defaults(func=cmd_world)

    p = sub.add_parser(
        "evaluate", help="measure what a campaign caused against its randomized holdout"
    )
    p.add_argument("--campaign", required=True, help="campaign id")
    p.add_argument(
        "--data",
        default=None,
        type=_snapshot_ref,
        help="raw snapshot URI (.../datasets/raw/latest: the newest)",
    )
    p.add_argument(
        "--out", default=None, help="where the labels snapshot and report go (default: the lake)"
    )
    own = p.add_argument_group(
        "an experiment run outside flashsale-ml (instead of --data)",
        "CSV or Parquet files, local or s3://; --map says which column is what",
    )
    own.add_argument("--assignments", default=None, help="one row per user: user id and arm")
    own.add_argument(
        "--outcomes", default=None, help="one row per user: conversion, visit and/or spend"
    )
    own.add_argument(
        "--map",
        action="append",
        type=_map_pair,
        metavar="FIELD=COLUMN",
        help="e.g. --map user_id=customer --map arm=group --map conversion=bought "
        "(fields: user_id, arm, assigned_ts, conversion, visit, spend, covariate)",
    )
    own.add_argument("--control", default=None, help="the control arm's value (default: control)")
    own.add_argument(
        "--holdout-share",
        type=float,
        default=None,
        help="designed share of control (default: equal shares)",
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("plan", help="assign promotions within a budget, with a randomized holdout")
    p.add_argument("--campaign", required=True, help="the campaign spec (JSON or YAML file)")
    p.add_argument(
        "--data",
        required=True,
        type=_snapshot_ref,
        help="raw snapshot URI to score on (.../datasets/raw/latest: the newest)",
    )
    p.add_argument("--out", default=None, help="the plan folder (default: <lake>/plans/<id>)")
    p.add_argument(
        "--campaign-id",
        default=None,
        help="the campaign you mean to plan; refused if the spec names another",
    )
    p.add_argument("--show-summary", action="store_true", help="print the Markdown summary as well")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("pipeline", help="run all training steps in-process (no Airflow)")
    p.add_argument("--users", type=int, default=None)
    p.add_argument("--days", type=int, default=None)
    p.add_argument("--deep-epochs", type=int, default=None, help="as the DAG's form")
    p.add_argument("--nproc-per-node", type=int, default=None, help="as the DAG's form")
    p.set_defaults(func=cmd_pipeline)

    p = sub.add_parser(
        "gc", help="remove what crashed writers left in the lake (never a committed snapshot)"
    )
    p.add_argument("--lake", help="lake URI (default: FLASHSALE_STORAGE_ROOT)")
    p.add_argument(
        "--older-than-hours",
        type=_positive_float,
        default=None,
        help="only leftovers unchanged this long (default: FLASHSALE_STAGING_MAX_AGE_HOURS)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would go, remove nothing")
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("demo", help="run the training DAG via Airflow + a real MLflow server")
    p.add_argument("--users", type=int, default=5_000)
    p.add_argument(
        "--days",
        type=int,
        default=None,
        help="history length (default: 28 days, then a week more than the last demo's shop)",
    )
    p.add_argument("--mlflow-port", type=int, default=None)
    p.set_defaults(func=cmd_demo)
    return parser


def _bound_tracking_retries() -> None:
    """Give MLflow's client a short retry budget for an interactive command.

    MLflow retries every request 7 times with exponential back-off (about 4 minutes before a
    command learns the server is down, twice over when the run is then marked FAILED). A
    person at a terminal wants the answer in seconds; Airflow tasks keep MLflow's longer
    budget and add their own retries. Explicit ``MLFLOW_HTTP_REQUEST_*`` variables win.
    """
    from flashsale_ml.config import get_settings

    settings = get_settings()
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(settings.cli_tracking_retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(settings.cli_tracking_timeout_s)))


def _is_unreachable(exc: BaseException) -> bool:
    """Did this fail because a server (MLflow, S3) did not answer?"""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, ConnectionError | TimeoutError) or any(
            marker in text
            for marker in ("Max retries exceeded", "Connection refused", "ConnectionError")
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def describe_failure(exc: BaseException) -> str:
    """One or two lines: what went wrong and what to do about it."""
    from pydantic import ValidationError

    from flashsale_ml.errors import DataError

    if isinstance(exc, DataError):
        return str(exc)
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']} "
            f"(got {error.get('input')!r})"
            for error in exc.errors()
        )
        return f"invalid {exc.title}: {problems}"
    if _is_unreachable(exc):
        from flashsale_ml.config import get_settings

        uri = get_settings().tracking_uri
        return (
            f"a server did not answer ({type(exc).__name__}). MLflow tracking: {uri} "
            "(FLASHSALE_MLFLOW_TRACKING_URI); S3: AWS_ENDPOINT_URL. Start it or point the "
            "variable at it; FLASHSALE_CLI_TRACKING_RETRIES sets how often a command retries."
        )
    first_line = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {first_line} (run again with --debug for the traceback)"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level)
    # Our stdout is JSON for scripts; MLflow would print run URLs into it.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    try:
        if args.command != "demo":  # the demo's Airflow tasks keep their own budgets
            _bound_tracking_retries()
        return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:
        # SIGTERM (Airflow, Kubernetes) arrives as TerminatedBySignal after the writers cleaned up.
        signum = getattr(exc, "signum", None)
        print(
            f"flashsale {args.command}: {'terminated' if signum else 'interrupted'}",
            file=sys.stderr,
        )
        return 128 + signum if signum else 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"flashsale {args.command}: {describe_failure(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
