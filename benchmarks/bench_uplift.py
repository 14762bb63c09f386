"""Uplift meta-learners (flashsale_ml.models.uplift): quality on simulated truth and on the real
Hillstrom experiment, training and scoring speed at scale, and a causalml cross-check.

    python benchmarks/bench_uplift.py [--sections simulator hillstrom speed causalml]
        [--seeds 5] [--first-seed 1] [--users 20000] [--days 35]
        [--hillstrom ../shared/data/hillstrom.csv]
        [--train-users 1000000] [--score-users 10000000] [--chunk 1000000] [--threads N]

simulator: ``--seeds`` simulated shops (seeds ``--first-seed`` onwards; ``--users`` x ``--days``,
    ``sale_stock_factor=1000`` so stock never caps a purchase). Each learner (s, t, x, xl, dr)
    is fitted by its uplift flavor
    exactly as ``flashsale train --model uplift`` fits it (``UpliftFlavor.fit``: the older
    sales, the design's arm shares as propensities; MLflow logging left out), and judged on
    the newest sale: the Spearman correlation of its predicted uplift with the simulator's
    true uplift per arm (human users; bots never buy), the normalized Qini (overall and
    per arm) that the run would log, and the Qini of the *true* uplift by the predicted
    ranking (``true_effect_qini``, mean over arms: the same area without the outcome noise of
    one sale). Summary per learner: the mean over seeds, and the mean difference of each Qini
    (and of its Spearman per arm) minus the S-learner's with a 95 % t-interval over seeds
    (scipy.stats.t). ``simulator_target``, one line per Qini: the default flavor's mean
    difference against the S-learner with its 95 % t-interval, whether the mean is positive
    and whether the interval excludes zero, and a one-line ``verdict``.
hillstrom: the visit outcome (and conversion, reported, not tuned to) of Mens E-Mail vs No
    E-Mail and Womens E-Mail vs No E-Mail, loaded by ``flashsale_ml.loaders.load_hillstrom``;
    a 30 % random holdout per seed; the learners fitted with the default ``UpliftConfig`` on
    Hillstrom's own covariates (recency, history, mens, womens, newbie; zip_code, channel and
    history_segment as integer codes) with the design's treated share as propensity; uplift@30 %
    (``uplift_at_k``, strategy "overall", and "by_group" for reference), the normalized Qini,
    random targeting's uplift@30 % and the holdout ATE, mean ± sd over seeds; per learner,
    paired over seeds with 95 % t-intervals, its uplift@30 % minus the S-learner's and minus
    the same holdout's ATE. ``target`` (Mens, visit) reads the issue's rule for each learner:
    mean at least the S-learner's (this run's, and the issue's reference 0.089), and
    "interval above the ATE" three ways: mean − sd, the 95 % interval of the mean, and the
    paired interval of uplift@30 % minus the holdout ATE (above zero). Then one
    ``hillstrom_target`` line per reading for the default flavor, each with ``met`` and a
    one-line ``verdict``: its mean against the S-learner's (paired) and the reference;
    mean − sd against the full-data ATE; the 95 % t-interval of the mean against it; the
    paired 95 % t-interval of uplift@30 % minus the same holdout's ATE against zero. With
    more than 5 seeds, ``hillstrom_draws`` (S and the default flavor): the share of 20,000
    seeded draws of 5 of the measured holdouts on which each of those three readings holds.
speed: synthetic numpy data with the uplift kind's 35 feature columns. One child process per
    learner (``--speed-learners``; default t, dr and the default flavor) fits it on
    ``--train-users`` users x 4 arms (control + 3 promotions); one child per fitted learner
    scores ``--score-users`` users x 3 arms with ``UpliftScorer.predict`` in chunks of
    ``--chunk`` rows (data generation not timed). Each child reports its wall seconds and its
    own peak RSS (VmHWM of /proc/self/status).
causalml: cross-check against causalml's meta-learners only if ``import causalml`` works.

One JSON line per result. No timing or quality is asserted; the exit status is 1 when a child
process failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LEARNERS = ("s", "t", "x", "xl", "dr")


def chosen() -> str:
    """The uplift kind's default flavor: what `flashsale train --model uplift` fits."""
    from flashsale_ml.models import get_kind

    return get_kind("uplift").default_flavor


DEFAULT_HILLSTROM = ROOT.parent / "shared" / "data" / "hillstrom.csv"
HILLSTROM_NUMERIC = ("recency", "history", "mens", "womens", "newbie")
HILLSTROM_CODED = ("zip_code", "channel", "history_segment")
# Reference figures of the issue (visit, Mens E-Mail vs control, uplift@30 %, 30 % holdout x 5
# seeds, measured elsewhere): mean and sd over seeds.
HILLSTROM_REFERENCE = {
    "s": (0.089, 0.010),
    "t": (0.085, 0.011),
    "random": (0.074, 0.006),
    "ate": (0.077, None),
}


def emit(row: dict) -> None:
    print(json.dumps(row, default=_jsonable), flush=True)


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value))


def peak_rss_gib() -> float:
    """This process's peak RSS: VmHWM, the high-water mark of its own address space.

    ``getrusage(RUSAGE_SELF).ru_maxrss`` is not used where VmHWM exists: on Linux it survives
    fork and exec, so a child started by a parent holding a simulated shop would report the
    parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024**2, 3)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3)


def mean_sd(values) -> dict:
    v = np.asarray(values, dtype=float)
    return {
        "mean": round(float(v.mean()), 4),
        "sd": round(float(v.std(ddof=1)), 4) if len(v) > 1 else None,
    }


def t_interval(values, confidence: float = 0.95) -> dict:
    """Mean and two-sided t-interval of the mean (n - 1 degrees of freedom)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    n = len(v)
    mean = float(v.mean())
    if n < 2:
        return {"mean": round(mean, 4), "low": None, "high": None, "n": n}
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * v.std(ddof=1) / np.sqrt(n))
    return {
        "mean": round(mean, 4),
        "low": round(mean - half, 4),
        "high": round(mean + half, 4),
        "n": n,
    }


def code_version() -> dict:
    """Which learner code was measured (others edit it concurrently)."""
    files = ("learners.py", "flavors.py", "scorer.py")
    folder = ROOT / "flashsale_ml" / "models" / "uplift"
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "git_head": head,
        **{f: hashlib.sha256((folder / f).read_bytes()).hexdigest()[:12] for f in files},
    }


# ------------------------------------------------------------------------------ simulator


def simulator_seed(seed: int, users: int, days: int, threads: int) -> list[dict]:
    """Every learner on one simulated shop's newest sale."""
    from scipy.stats import spearmanr

    from flashsale_ml.config import Settings
    from flashsale_ml.datasets import Snapshot
    from flashsale_ml.evaluation.uplift import true_effect_qini
    from flashsale_ml.features import build_features
    from flashsale_ml.models import get_kind
    from flashsale_ml.models.base import FitRequest
    from flashsale_ml.simulation import SimulationConfig, simulate
    from flashsale_ml.storage import open_store
    from flashsale_ml.training.plots import close
    from flashsale_ml.training.splits import campaign_order, plan_split

    kind = get_kind("uplift")
    with tempfile.TemporaryDirectory(prefix="bench-uplift-") as tmp:
        started = time.perf_counter()
        lake = open_store((Path(tmp) / "lake").as_uri())
        config = SimulationConfig(users=users, days=days, seed=seed, sale_stock_factor=1000)
        world = simulate(config, lake)
        features_uri = build_features(world.raw_uri, lake)
        with Snapshot(features_uri) as snapshot:
            metadata = snapshot.manifest.metadata
            frame = snapshot.read_pandas(kind.feature_table)
        with Snapshot(world.truth_uri) as truth:
            sale_truth = truth.read_pandas("sale_truth").drop(columns="arm")
        data_s = time.perf_counter() - started
        split = plan_split(campaign_order(metadata))
        test = frame[frame["campaign_id"].isin(split.test)].merge(
            sale_truth, on=["campaign_id", "user_id"], validate="1:1"
        )
        humans = test[~test["is_bot"]].reset_index(drop=True)
        settings = Settings(home=Path(tmp) / "home", threads=threads)
        rows = []
        for learner in LEARNERS:
            started = time.perf_counter()
            fitted = kind.flavors[learner].fit(
                FitRequest(
                    kind=kind,
                    features_uri=features_uri,
                    settings=settings,
                    split=split,
                    run_id="bench",
                )
            )
            fit_s = time.perf_counter() - started
            for figure in fitted.figures.values():
                close(figure)
            scorer = fitted.model
            predicted = scorer.predict(humans)
            spearman, truth_sd, truth_qini = {}, {}, {}
            for column, arm in enumerate(scorer.arms):
                true = humans[f"uplift_{arm}"].to_numpy(dtype=float)
                spearman[arm] = round(float(spearmanr(predicted[:, column], true).statistic), 4)
                truth_sd[arm] = round(float(true.std()), 4)
                truth_qini[arm] = round(true_effect_qini(true, predicted[:, column]), 4)
            metrics = fitted.metrics["test"]
            rows.append(
                {
                    "section": "simulator",
                    "seed": seed,
                    "learner": learner,
                    "users": users,
                    "days": days,
                    "fit_rows": fitted.params["rows"]["fit"],
                    "test_rows": fitted.params["rows"]["test"],
                    "test_humans": len(humans),
                    "data_s": round(data_s, 2),
                    "fit_s": round(fit_s, 2),
                    "qini": round(metrics["qini"], 4),
                    "qini_by_arm": {
                        arm: round(metrics[f"qini_{arm}"], 4)
                        for arm in scorer.arms
                        if f"qini_{arm}" in metrics
                    },
                    "uplift_at_30": round(metrics["uplift_at_30"], 4),
                    "calibration_error": round(metrics["uplift_calibration_error"], 4),
                    "spearman": spearman,
                    # The Qini of the true per-user uplift by predicted ranking (no outcome
                    # noise), per arm and its mean over arms.
                    "truth_qini": float(np.mean(list(truth_qini.values()))),
                    "truth_qini_by_arm": truth_qini,
                    "truth_sd": truth_sd,
                    "most_heterogeneous_arm": max(truth_sd, key=truth_sd.get),
                    "max_abs_predicted_uplift": round(float(np.abs(predicted).max()), 4),
                }
            )
        return rows


def simulator_section(args: argparse.Namespace) -> None:
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for row in simulator_seed(seed, args.users, args.days, args.threads):
            emit(row)
            rows.append(row)
    arms = sorted(rows[0]["spearman"])
    by_learner = {name: [r for r in rows if r["learner"] == name] for name in LEARNERS}
    s_qini = {r["seed"]: r["qini"] for r in by_learner["s"]}
    s_truth_qini = {r["seed"]: r["truth_qini"] for r in by_learner["s"]}
    s_spearman = {r["seed"]: r["spearman"] for r in by_learner["s"]}
    for name, mine in by_learner.items():
        summary = {
            "section": "simulator_summary",
            "learner": name,
            "seeds": [r["seed"] for r in mine],
            "spearman": {arm: mean_sd([r["spearman"][arm] for r in mine]) for arm in arms},
            "spearman_most_heterogeneous_arm": mean_sd(
                [r["spearman"][r["most_heterogeneous_arm"]] for r in mine]
            ),
            "qini": mean_sd([r["qini"] for r in mine]),
            "truth_qini": mean_sd([r["truth_qini"] for r in mine]),
            "qini_by_arm": {
                arm: mean_sd([r["qini_by_arm"][arm] for r in mine])
                for arm in arms
                if all(arm in r["qini_by_arm"] for r in mine)
            },
            "uplift_at_30": mean_sd([r["uplift_at_30"] for r in mine]),
            "calibration_error": mean_sd([r["calibration_error"] for r in mine]),
            "fit_s": mean_sd([r["fit_s"] for r in mine]),
        }
        if name != "s":
            summary["qini_minus_s"] = t_interval([r["qini"] - s_qini[r["seed"]] for r in mine])
            summary["truth_qini_minus_s"] = t_interval(
                [r["truth_qini"] - s_truth_qini[r["seed"]] for r in mine]
            )
            summary["spearman_minus_s"] = {
                arm: t_interval([r["spearman"][arm] - s_spearman[r["seed"]][arm] for r in mine])
                for arm in arms
            }
        if name == args.chosen:
            chosen_summary = summary
        emit(summary)
    seeds = len(chosen_summary["seeds"])
    readings = {
        "qini": "Qini of the realized outcomes",
        "truth_qini": "Qini of the true uplift (no outcome noise)",
    }
    for metric, label in readings.items():
        difference = chosen_summary[f"{metric}_minus_s"]
        mean_above = difference["mean"] > 0
        interval_above = difference["low"] is not None and difference["low"] > 0
        emit(
            {
                "section": "simulator_target",
                "learner": args.chosen,
                "metric": metric,
                "seeds": seeds,
                "minus_s": difference,
                "mean_above_s": mean_above,
                "interval_above_zero": interval_above,
                "verdict": (
                    f"{args.chosen} - S, {label}, over {seeds} seeds: "
                    f"{difference['mean']:+.4f}, 95% t-interval [{_fmt(difference['low'])}, "
                    f"{_fmt(difference['high'])}]: mean {'above' if mean_above else 'NOT above'}"
                    f" S, interval {'excludes' if interval_above else 'does NOT exclude'} zero "
                    f"-> target, on this Qini, "
                    f"{'MET' if mean_above and interval_above else 'NOT met'}"
                ),
            }
        )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4f}"


# ------------------------------------------------------------------------------ Hillstrom


def hillstrom_frame(path: Path):
    """Covariates, arm and outcomes of every Hillstrom customer, via the package's loader."""
    import secrets

    from flashsale_ml.loaders import load_hillstrom

    # A throwaway key: user ids only join the loader's tables here, nothing is stored.
    data = load_hillstrom(path, pseudonym_key=secrets.token_hex(16))
    customers = data.tables["hillstrom_customers"].to_pandas()
    arms = data.tables["assignments"].to_pandas()[["user_id", "arm"]]
    outcomes = data.tables["campaign_outcomes"].to_pandas()[["user_id", "visit", "conversion"]]
    frame = customers.merge(arms, on="user_id", validate="1:1").merge(
        outcomes, on="user_id", validate="1:1"
    )
    for column in HILLSTROM_CODED:  # stable integer codes (sorted categories)
        frame[column] = frame[column].astype("category").cat.codes.astype("float64")
    return frame


def hillstrom_section(args: argparse.Namespace) -> None:
    from flashsale_ml.evaluation.uplift import qini_coefficient, uplift_at_k
    from flashsale_ml.models.uplift.learners import UpliftConfig, make_learner

    path = Path(args.hillstrom)
    if not path.exists():
        emit({"section": "hillstrom", "skipped": f"{path} not found"})
        return
    frame = hillstrom_frame(path)
    features = [*HILLSTROM_NUMERIC, *HILLSTROM_CODED]
    for outcome in ("visit", "conversion"):
        for arm in ("mens_email", "womens_email"):
            rows = frame[frame["arm"].isin(["control", arm])].reset_index(drop=True)
            x_all = rows[features].to_numpy(dtype=float)
            t_all = (rows["arm"] == arm).to_numpy(dtype=np.int64)
            y_all = rows[outcome].to_numpy(dtype=float)
            full_ate = float(y_all[t_all == 1].mean() - y_all[t_all == 0].mean())
            results: dict[str, dict[str, list[float]]] = {}

            def add(name: str, key: str, value: float, results=results) -> None:
                results.setdefault(name, {}).setdefault(key, []).append(float(value))

            for seed in range(args.first_seed - 1, args.first_seed - 1 + args.seeds):
                rng = np.random.default_rng(seed)
                test = np.zeros(len(rows), dtype=bool)
                test[rng.permutation(len(rows))[: round(0.3 * len(rows))]] = True
                x, t, y = x_all[~test], t_all[~test], y_all[~test]
                xt, tt, yt = x_all[test], t_all[test], y_all[test]
                share = t.mean()
                propensity = np.tile([1.0 - share, share], (len(t), 1))
                for learner in LEARNERS:
                    config = UpliftConfig(seed=seed, num_threads=args.threads)
                    started = time.perf_counter()
                    fitted = make_learner(learner, config).fit(x, t, y, propensity)
                    scores = fitted.predict_uplift(xt)[:, 0]
                    add(learner, "fit_s", time.perf_counter() - started)
                    add(learner, "uplift_at_30", uplift_at_k(yt, tt, scores, k=0.3))
                    add(
                        learner,
                        "uplift_at_30_by_group",
                        uplift_at_k(yt, tt, scores, k=0.3, strategy="by_group"),
                    )
                    add(learner, "qini", qini_coefficient(yt, tt, scores))
                random_scores = rng.random(len(yt))
                add("random", "uplift_at_30", uplift_at_k(yt, tt, random_scores, k=0.3))
                add(
                    "random",
                    "uplift_at_30_by_group",
                    uplift_at_k(yt, tt, random_scores, k=0.3, strategy="by_group"),
                )
                add("random", "qini", qini_coefficient(yt, tt, random_scores))
                add("ate", "holdout_ate", yt[tt == 1].mean() - yt[tt == 0].mean())
            row = {
                "section": "hillstrom",
                "outcome": outcome,
                "arm": arm,
                "rows": len(rows),
                "holdout_rows": round(0.3 * len(rows)),
                "seeds": args.seeds,
                "ate_full_data": round(full_ate, 4),
                "holdout_ate": mean_sd(results["ate"]["holdout_ate"]),
            }
            holdout_ate = np.asarray(results["ate"]["holdout_ate"])
            s_at_30 = np.asarray(results["s"]["uplift_at_30"])
            for name in (*LEARNERS, "random"):
                at_30 = np.asarray(results[name]["uplift_at_30"])
                row[name] = {key: mean_sd(values) for key, values in results[name].items()}
                row[name]["uplift_at_30_ci95"] = t_interval(at_30)
                row[name]["uplift_at_30_minus_holdout_ate"] = t_interval(at_30 - holdout_ate)
                if name != "s":
                    row[name]["uplift_at_30_minus_s"] = t_interval(at_30 - s_at_30)
            if outcome == "visit" and arm == "mens_email":
                ref_s, _ = HILLSTROM_REFERENCE["s"]
                row["reference"] = {
                    k: {"mean": m, "sd": s} for k, (m, s) in HILLSTROM_REFERENCE.items()
                }
                row["target"] = {
                    name: {
                        "mean_at_least_s": row[name]["uplift_at_30"]["mean"]
                        >= row["s"]["uplift_at_30"]["mean"],
                        "mean_at_least_reference_s": row[name]["uplift_at_30"]["mean"] >= ref_s,
                        "mean_minus_sd_above_ate": row[name]["uplift_at_30"]["mean"]
                        - row[name]["uplift_at_30"]["sd"]
                        > full_ate,
                        "ci95_low_above_ate": row[name]["uplift_at_30_ci95"]["low"] > full_ate,
                        "paired_excess_over_holdout_ate_ci95_low_above_zero": row[name][
                            "uplift_at_30_minus_holdout_ate"
                        ]["low"]
                        > 0,
                    }
                    for name in LEARNERS
                }
                row["target"]["chosen"] = args.chosen
            emit(row)
            if outcome == "visit" and arm == "mens_email":
                hillstrom_target(row, args.chosen, full_ate)
                if args.seeds > ISSUE_HOLDOUTS:
                    for name in sorted({"s", args.chosen}):
                        emit(
                            {
                                "section": "hillstrom_draws",
                                "learner": name,
                                "seeds": args.seeds,
                                **interval_readings_over_draws(
                                    np.asarray(results[name]["uplift_at_30"]),
                                    holdout_ate,
                                    full_ate,
                                ),
                            }
                        )


ISSUE_HOLDOUTS = 5  # the issue's Hillstrom protocol: 30 % holdout x 5 seeds


def interval_readings_over_draws(
    at_30: np.ndarray, holdout_ate: np.ndarray, full_ate: float, draws: int = 20_000
) -> dict:
    """How often the issue's "interval above the ATE" holds on ``ISSUE_HOLDOUTS`` holdouts
    drawn (without replacement, seeded) from the more this run measured. With 5 holdouts the
    readings are noisy; this says how likely a learner is to meet them on any 5.

    Args:
        at_30: a learner's uplift@30 % on each measured holdout.
        holdout_ate: each holdout's own ATE, in the same order.
        full_ate: the ATE on all rows.
        draws: how many draws of 5 holdouts.

    Returns:
        The draw size and count, and the share of draws where each of the three readings of
        :func:`hillstrom_target` holds (mean − sd above ``full_ate``; the 95 % t-interval of
        the mean above it; the paired 95 % t-interval of uplift@30 % − holdout ATE above 0).
    """
    from scipy import stats

    rng = np.random.default_rng(0)
    picks = np.array([rng.choice(len(at_30), ISSUE_HOLDOUTS, replace=False) for _ in range(draws)])
    values, excess = at_30[picks], (at_30 - holdout_ate)[picks]
    half = stats.t.ppf(0.975, ISSUE_HOLDOUTS - 1) / np.sqrt(ISSUE_HOLDOUTS)
    mean, sd = values.mean(axis=1), values.std(axis=1, ddof=1)
    excess_mean, excess_sd = excess.mean(axis=1), excess.std(axis=1, ddof=1)
    return {
        "holdouts_per_draw": ISSUE_HOLDOUTS,
        "draws": draws,
        "share_mean_minus_sd_above_ate": round(float((mean - sd > full_ate).mean()), 3),
        "share_ci95_of_mean_above_ate": round(float((mean - half * sd > full_ate).mean()), 3),
        "share_paired_excess_above_zero": round(
            float((excess_mean - half * excess_sd > 0).mean()), 3
        ),
    }


def hillstrom_target(row: dict, name: str, full_ate: float) -> None:
    """The issue's Hillstrom rule for learner ``name`` (Mens E-Mail, visit), one line per
    reading: its mean against this run's S-learner and the reference, then "interval above
    the ATE" three ways (mean − sd, the 95 % t-interval of the mean, and the paired 95 %
    interval of uplift@30 % minus the same holdout's ATE), each with a one-line verdict."""
    at_30 = row[name]["uplift_at_30"]
    s_mean = row["s"]["uplift_at_30"]["mean"]
    ref_s, _ = HILLSTROM_REFERENCE["s"]
    ci = row[name]["uplift_at_30_ci95"]
    paired = row[name]["uplift_at_30_minus_holdout_ate"]
    versus_s = row[name].get("uplift_at_30_minus_s")
    lower = at_30["mean"] - at_30["sd"] if at_30["sd"] is not None else None
    readings = {
        "mean_at_least_s": (
            at_30["mean"] >= s_mean,
            f"mean {at_30['mean']:.4f} (sd {at_30['sd']}) vs this run's S {s_mean:.4f}"
            + (
                f" (paired {name} - S {versus_s['mean']:+.4f} [{_fmt(versus_s['low'])}, "
                f"{_fmt(versus_s['high'])}])"
                if versus_s
                else ""
            )
            + f" and the issue's reference S {ref_s:.3f}: "
            + ("at least" if at_30["mean"] >= s_mean else "BELOW")
            + " this run's S, "
            + ("at least" if at_30["mean"] >= ref_s else "below")
            + " the reference",
        ),
        "mean_minus_sd_above_ate": (
            lower is not None and lower > full_ate,
            f"mean - sd {'n/a' if lower is None else f'{lower:.4f}'} vs ATE {full_ate:.4f}: "
            + ("above" if lower is not None and lower > full_ate else "NOT above"),
        ),
        "ci95_of_mean_above_ate": (
            ci["low"] is not None and ci["low"] > full_ate,
            f"95% t-interval of the mean [{_fmt(ci['low'])}, {_fmt(ci['high'])}] vs ATE "
            f"{full_ate:.4f}: "
            + ("above" if ci["low"] is not None and ci["low"] > full_ate else "NOT above"),
        ),
        "paired_excess_over_holdout_ate_above_zero": (
            paired["low"] is not None and paired["low"] > 0,
            f"paired uplift@30% - holdout ATE {paired['mean']:+.4f}, 95% t-interval "
            f"[{_fmt(paired['low'])}, {_fmt(paired['high'])}]: "
            + (
                "above zero"
                if paired["low"] is not None and paired["low"] > 0
                else "NOT above zero"
            ),
        ),
    }
    for reading, (met, verdict) in readings.items():
        emit(
            {
                "section": "hillstrom_target",
                "learner": name,
                "outcome": "visit",
                "arm": "mens_email",
                "seeds": row["seeds"],
                "reading": reading,
                "met": bool(met),
                "verdict": f"{name} Hillstrom Mens/visit uplift@30%: {verdict}",
            }
        )


# ------------------------------------------------------------------------------ speed


def synthetic_frame(n: int, seed: int):
    """``n`` rows of the uplift kind's feature columns (numeric noise; categoricals drawn from
    their vocabularies)."""
    import pandas as pd

    from flashsale_ml.features.encoding import CATEGORY_VOCAB
    from flashsale_ml.models.uplift.scorer import CATEGORICAL, FEATURES

    rng = np.random.default_rng(seed)
    columns = {}
    for column in FEATURES:
        if column in CATEGORICAL:
            vocab = np.array(CATEGORY_VOCAB[column], dtype=object)
            columns[column] = vocab[rng.integers(0, len(vocab), n)]
        else:
            columns[column] = rng.gamma(2.0, 1.0, n)
    return pd.DataFrame(columns)


def child_train(args: argparse.Namespace) -> None:
    from flashsale_ml.models.uplift.learners import UpliftConfig, make_learner
    from flashsale_ml.models.uplift.scorer import feature_matrix

    started = time.perf_counter()
    x = feature_matrix(synthetic_frame(args.n, seed=1))
    rng = np.random.default_rng(2)
    arm = np.where(rng.random(args.n) < 0.2, 0, rng.integers(1, 4, args.n))
    # Heterogeneous effects on the first features; base rate ~12 %.
    base = -2.0 + 0.3 * (x[:, 0] - 2.0)
    effect = np.stack([np.zeros(args.n), 0.4 * (x[:, 1] > 2), 0.3 * (x[:, 2] - 2), 0.2 * x[:, 3]])
    y = (rng.random(args.n) < 1 / (1 + np.exp(-(base + effect[arm, np.arange(args.n)])))).astype(
        float
    )
    shares = np.bincount(arm, minlength=4) / args.n
    propensity = np.broadcast_to(shares, (args.n, 4))
    data_s = time.perf_counter() - started
    config = UpliftConfig(num_threads=args.threads)
    started = time.perf_counter()
    fitted = make_learner(args.learner, config).fit(x, arm, y, propensity)
    fit_s = time.perf_counter() - started
    Path(args.model_path).write_bytes(pickle.dumps(fitted))
    emit(
        {
            "section": "speed_train",
            "learner": args.learner,
            "users": args.n,
            "arms": 4,
            "features": x.shape[1],
            "threads": args.threads or os.cpu_count(),
            "n_estimators": config.n_estimators,
            "data_s": round(data_s, 2),
            "fit_s": round(fit_s, 2),
            "peak_rss_gib": peak_rss_gib(),
        }
    )


def child_score(args: argparse.Namespace) -> None:
    from flashsale_ml.models.uplift.scorer import UpliftScorer

    fitted = pickle.loads(Path(args.model_path).read_bytes())
    scorer = UpliftScorer(fitted, ("a1", "a2", "a3"))
    predict_s = generate_s = 0.0
    done, checksum, chunk_index = 0, 0.0, 0
    while done < args.n:
        size = min(args.chunk, args.n - done)
        started = time.perf_counter()
        frame = synthetic_frame(size, seed=100 + chunk_index)
        generate_s += time.perf_counter() - started
        started = time.perf_counter()
        uplift = scorer.predict(frame)
        predict_s += time.perf_counter() - started
        assert uplift.shape == (size, 3)
        checksum += float(uplift.sum())
        done += size
        chunk_index += 1
        del frame, uplift
    emit(
        {
            "section": "speed_score",
            "learner": fitted.learner,
            "users": args.n,
            "arms": 3,
            "chunk": args.chunk,
            "chunks": chunk_index,
            "threads": fitted.config.num_threads or os.cpu_count(),
            "predict_s": round(predict_s, 2),
            "rows_per_s": round(args.n / predict_s),
            "generate_s_not_timed": round(generate_s, 2),
            "peak_rss_gib": peak_rss_gib(),
            "mean_uplift": round(checksum / (3 * args.n), 5),
        }
    )


def run_child(*child_args: str) -> bool:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, *child_args], stdout=subprocess.PIPE, text=True, check=False
    )
    for line in proc.stdout.splitlines():
        if line.strip():
            row = json.loads(line)
            row["child_wall_s"] = round(time.perf_counter() - started, 2)
            emit(row)
    if proc.returncode:
        emit({"section": "speed", "failed": list(child_args), "exit_code": proc.returncode})
    return proc.returncode == 0


def speed_section(args: argparse.Namespace) -> bool:
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-uplift-speed-") as tmp:
        for learner in args.speed_learners:
            model = str(Path(tmp) / f"{learner}.pkl")
            common = ["--threads", str(args.threads), "--model-path", model]
            trained = run_child(
                "--child", "train", "--learner", learner, "--n", str(args.train_users), *common
            )
            ok &= trained
            if trained:
                ok &= run_child(
                    "--child",
                    "score",
                    "--n",
                    str(args.score_users),
                    "--chunk",
                    str(args.chunk),
                    *common,
                )
    return ok


# ------------------------------------------------------------------------------ causalml


def causalml_section(args: argparse.Namespace) -> None:
    try:
        import causalml  # noqa: F401
    except ImportError as exc:
        emit(
            {
                "section": "causalml",
                "available": False,
                "detail": f"causalml is not installed in this environment ({exc}); "
                "cross-check skipped",
            }
        )
        return
    from causalml.inference.meta import BaseTClassifier
    from lightgbm import LGBMClassifier

    from flashsale_ml.evaluation.uplift import uplift_at_k

    frame = hillstrom_frame(Path(args.hillstrom))
    rows = frame[frame["arm"].isin(["control", "mens_email"])].reset_index(drop=True)
    x = rows[[*HILLSTROM_NUMERIC, *HILLSTROM_CODED]].to_numpy(dtype=float)
    t = (rows["arm"] == "mens_email").to_numpy(dtype=np.int64)
    y = rows["visit"].to_numpy(dtype=float)
    values = []
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        test = np.zeros(len(rows), dtype=bool)
        test[rng.permutation(len(rows))[: round(0.3 * len(rows))]] = True
        model = BaseTClassifier(learner=LGBMClassifier(num_leaves=15, n_estimators=200, verbose=-1))
        model.fit(x[~test], np.where(t[~test] == 1, "mens", "control"), y[~test])
        scores = np.asarray(model.predict(x[test])).reshape(-1)
        values.append(uplift_at_k(y[test], t[test], scores, k=0.3))
    emit({"section": "causalml", "available": True, "t_learner_uplift_at_30": mean_sd(values)})


# ------------------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["simulator", "hillstrom", "speed", "causalml"],
        choices=["simulator", "hillstrom", "speed", "causalml"],
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--first-seed",
        type=int,
        default=1,
        help="simulator: first shop seed (Hillstrom: holdout seeds from first-seed - 1)",
    )
    parser.add_argument("--users", type=int, default=20_000, help="simulator: users per shop")
    parser.add_argument("--days", type=int, default=35)
    parser.add_argument("--hillstrom", default=str(DEFAULT_HILLSTROM))
    parser.add_argument("--train-users", type=int, default=1_000_000)
    parser.add_argument("--score-users", type=int, default=10_000_000)
    parser.add_argument("--chunk", type=int, default=1_000_000)
    parser.add_argument("--speed-learners", nargs="+", default=None, choices=LEARNERS)
    parser.add_argument("--threads", type=int, default=0, help="LightGBM threads (0: all cores)")
    # Internal: the measured child processes of the speed section.
    parser.add_argument("--child", choices=["train", "score"], help=argparse.SUPPRESS)
    parser.add_argument("--learner", default="t", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--model-path", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.chosen = chosen()
    if args.speed_learners is None:
        args.speed_learners = sorted({"t", "dr", args.chosen})
    if args.threads == 0:
        args.threads = os.cpu_count() or 1

    if args.child == "train":
        child_train(args)
        return 0
    if args.child == "score":
        child_score(args)
        return 0

    import logging

    logging.basicConfig(level=logging.WARNING)
    emit({"section": "meta", "cpus": os.cpu_count(), "threads": args.threads, **code_version()})
    ok = True
    if "simulator" in args.sections:
        simulator_section(args)
    if "hillstrom" in args.sections:
        hillstrom_section(args)
    if "speed" in args.sections:
        ok &= speed_section(args)
    if "causalml" in args.sections:
        causalml_section(args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
