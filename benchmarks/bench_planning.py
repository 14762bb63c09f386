"""Campaign planning (flashsale_ml.planning): the plan's true incremental margin on simulated
truth against three common targeting policies, and the knapsack's speed and optimality gap at
ten million users.

    python benchmarks/bench_planning.py [--sections quality speed] [--seeds 5] [--users 20000]
        [--days 35] [--unit-costs 0.15 0.05 0.3] [--budget-share 0.2] [--depth 0.3]
        [--uplift-learners x s] [--random-draws 20] [--threads N]
        [--speed-users 10000000] [--highs-users 20000]

quality: ``--seeds`` simulated shops (seeds 1..N, ``--users`` x ``--days``,
    ``sale_stock_factor=1000`` so stock never caps a purchase). The NEWEST sale is the campaign
    being planned. A propensity model (the ``lgbm`` flavor, ``LgbmFlavor.fit``) and an uplift
    model per ``--uplift-learners`` flavor (``UpliftFlavor.fit``; ``x`` is the uplift kind's
    default flavor, ``s`` the best learner of benchmarks/bench_uplift.py) are fitted exactly as
    ``flashsale train`` fits them, on the feature snapshot's shared campaign split: the older
    sales train and validate, the newest is never fitted on (MLflow logging left out). They
    score the newest sale's users on their point-in-time features into ``Candidates``:
    P(buy | arm=control) from the propensity model, each type's uplift from the uplift model,
    value segments by ``value_tiers(revenue_all)``, bots by ``accounts_per_device > 5``, no
    exclusion list. ``Economics`` come from ``flashsale_ml.steps.planning.economics_at`` on the
    raw snapshot (its orders cut at the sale's start), with a ``CampaignSpec`` built from the
    sale's row.

    Unit costs: every promotion type costs the same per redemption, ``--unit-costs`` x the
    order margin, so the types differ only in their effect; a promotion then pays for a user
    when it lifts P(buy) by more than that share of the treated P(buy). Each value is judged
    separately (the first is the headline; the models are fitted once per seed). The
    simulator's pct_discount arm takes a further 10 % off the sale price, about 60 % of an
    order's margin at depth 0.3: at that cost almost nobody is worth promoting (8 of 20,000
    users had a positive true value in seed 1 when this was written), and no policy can be
    compared with another.

    Depth: the simulator draws each sale's depth in [0.2, 0.5]; above about 0.45 the sale price
    falls below the SKUs' mean unit cost, every incremental order loses money and the best plan
    targets nobody (seeds 1 and 5 at the defaults). So the newest sale is planned at
    ``--depth`` (default 0.3): the models score it with ``discount_depth`` set to it, as the
    planning step does for each depth option, and the truth is the simulator's own
    ``true_sale_probabilities`` for that sale at that depth (world rebuilt from the config;
    bots never buy). ``--depth campaign`` keeps the sale's own depth.

    Budget: ``--budget-share`` of what offering every eligible user a promotion would cost at
    the propensity model's P(buy | control): the same for every policy and uplift learner; it
    binds for every policy that spends until the budget runs out, and for the plan whenever
    enough users have a positive expected value (``budget_binds_for_plan``). Each policy spends
    it on the expected cost the MODELS give (unit cost x predicted P(buy) under the offered
    arm, ``expected_values``: what a planner knows), taking users in its order while the
    running total fits, and is judged on TRUTH: the sum over its treated users of
    true uplift x order margin - unit cost x true P(buy) under the offered arm.

    - ``plan``: ``plan_at_depth`` with holdout 0.1 and exploration 0.1, judged on its treated
      users (targeted + exploration); ``plan_no_exploration``: the same with exploration 0;
    - ``random`` (policy 1): random eligible users, each with a random promotion type
      (mean over ``--random-draws`` draws per seed);
    - ``propensity`` (policy 2): highest predicted P(buy | control) first, each user given the
      promotion type with the highest predicted uplift for them (the stronger of the two usual
      practices); ``propensity_fixed_type``: the same order, everyone given the type with the
      highest mean predicted uplift (the other usual practice, for reference);
    - ``best_type`` (policy 3): the one type with the highest mean predicted uplift over the
      eligible users, for everyone, users ranked by their predicted uplift of it;
    - ``oracle``: the knapsack (``solve_budgeted``) on the TRUE values and costs, no holdout:
      the most any assignment could get for the budget.

    Flagged bots are excluded from every policy. One row per seed, learner and unit cost; the
    summary gives each policy's mean true margin with a 95 % t-interval over seeds
    (scipy.stats.t), its share of the oracle, and the per-seed ratio plan / policy 2 with its
    mean and t-interval (the issue's target: >= 1.3). A ratio only means something where
    policy 2 earns a positive margin, so the difference plan - policy 2 is reported as well.
speed: synthetic numpy data in one child process: ``--speed-users`` users x 3 promotion types
    (+ none = 4 options) with heterogeneous P(buy) and uplift, value segments and 2 % bots; the
    budget is ``--budget-share`` of the unconstrained plan's expected spend, so it binds.
    ``solve_budgeted`` on the expected values and costs, and ``plan_at_depth`` end to end
    (expected values, keyed holdout, two knapsack solves for exploration, summary), each timed
    with ``time.perf_counter`` and ``time.process_time`` (CPU seconds: what the wall time
    lost to other processes on a shared machine; data generation not timed), with the gap to
    the LP bound (the dual bound ``solve_budgeted`` reports) and a cross-check of that bound
    against HiGHS (``lp_bound_highs``) on the first ``--highs-users`` users. Peak RSS is VmHWM
    of the child's /proc/self/status, reset (``clear_refs``) after data generation where the
    kernel allows, so it is the planning's own peak. The issue's target: <= 60 s on 2 cores,
    within 0.1 % of the LP bound.

One JSON line per result. No timing or quality is asserted; the exit status is 1 when a child
process failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-planning"
HOLDOUT = 0.1
EXPLORATION = 0.1
TARGET_RATIO = 1.3
POLICIES = (
    "plan",
    "plan_no_exploration",
    "random",
    "propensity",
    "propensity_fixed_type",
    "best_type",
    "oracle",
)


def emit(row: dict) -> None:
    print(json.dumps(row, default=_jsonable), flush=True)


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value))


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_gib() -> float:
    """This process's peak RSS: VmHWM of /proc/self/status (``ru_maxrss`` survives fork and
    exec on Linux, so a child would report its parent's peak)."""
    kib = _status_kib("VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kib / 1024**2, 3)


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


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
    """Which planning code was measured (others edit it concurrently)."""
    files = ("allocation.py", "plan.py", "randomize.py")
    folder = ROOT / "flashsale_ml" / "planning"
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "git_head": head,
        **{f: hashlib.sha256((folder / f).read_bytes()).hexdigest()[:12] for f in files},
    }


# ------------------------------------------------------------------------------ quality


@dataclasses.dataclass(frozen=True)
class Shop:
    """The newest sale of one simulated shop, scored by models fitted on the older sales."""

    seed: int
    campaign_id: str
    depth: float
    candidates: dict  # uplift learner -> flashsale_ml.planning.plan.Candidates
    economics: object  # flashsale_ml.planning.plan.Economics (unit costs filled per scenario)
    true_prob: np.ndarray  # users x (control + arms): the simulator's truth (0 for bots)
    true_bot: np.ndarray
    model_quality: dict  # "propensity" and each uplift learner
    data_s: float
    fit_s: dict


def _fit(kind_name: str, flavor: str, features_uri: str, settings, split):
    from flashsale_ml.models import get_kind
    from flashsale_ml.models.base import FitRequest
    from flashsale_ml.training.plots import close

    kind = get_kind(kind_name)
    fitted = kind.flavors[flavor].fit(
        FitRequest(
            kind=kind, features_uri=features_uri, settings=settings, split=split, run_id="bench"
        )
    )
    for figure in fitted.figures.values():
        close(figure)
    return fitted.model


def _economics(raw_uri: str, campaign: dict, depth: float):
    """``economics_at`` on the raw snapshot, its orders cut at the sale's start (the raw
    snapshot runs past it), with a spec built from the sale's row."""
    from contextlib import closing

    from flashsale_ml.contract import PROMO_TYPES
    from flashsale_ml.datasets import Snapshot
    from flashsale_ml.duck import connect
    from flashsale_ml.planning.spec import CampaignSpec
    from flashsale_ml.steps.planning import economics_at

    spec = CampaignSpec(
        campaign_id=campaign["campaign_id"],
        start=campaign["start_ts"],
        end=campaign["end_ts"],
        skus=tuple(int(s) for s in campaign["item_ids"]),
        promotions=dict.fromkeys(PROMO_TYPES, 0.0),  # filled per scenario
        discount_depths=(depth,),
        budget=1.0,  # set per scenario; economics do not depend on it
        holdout_fraction=HOLDOUT,
        exploration_share=EXPLORATION,
    )
    with Snapshot(raw_uri) as raw:
        files = {t: raw.local_files(t) for t in ("items", "orders")}
        with closing(connect({"items": files["items"], "all_orders": files["orders"]})) as con:
            start = spec.start.strftime("%Y-%m-%d %H:%M:%S")
            con.execute(
                "CREATE VIEW orders AS SELECT * FROM all_orders "
                f"WHERE ts < '{start}+00'::TIMESTAMPTZ"
            )
            return economics_at(con, spec, depth)


def _truth(config, user_ids: np.ndarray, campaign_index: int, depth: float):
    """The simulator's true P(buy) of ``user_ids`` in the sale under control and each type,
    at ``depth``; bots never buy."""
    from flashsale_ml.simulation.behaviour import true_sale_probabilities
    from flashsale_ml.simulation.world import make_campaigns, make_items, make_users

    users = make_users(config)
    items = make_items(config)
    campaign = make_campaigns(config, items)[campaign_index]
    campaign = dataclasses.replace(campaign, discount_depth=depth)
    order = np.argsort(users.user_id)
    position = order[np.searchsorted(users.user_id, user_ids, sorter=order)]
    if not np.array_equal(users.user_id[position], user_ids):
        raise RuntimeError("rebuilt world does not hold the feature table's users")
    prob = true_sale_probabilities(users, items, campaign, position)
    bot = users.is_bot[position]
    prob[bot] = 0.0
    return prob, bot


def load_shop(seed: int, args: argparse.Namespace) -> Shop:
    from scipy.stats import spearmanr

    from flashsale_ml.config import Settings
    from flashsale_ml.contract import CONTROL_ARM, PROMO_TYPES
    from flashsale_ml.datasets import Snapshot
    from flashsale_ml.evaluation.segments import value_tiers
    from flashsale_ml.features import build_features
    from flashsale_ml.features.columns import PROPENSITY_TABLE
    from flashsale_ml.models.propensity.lgbm import encode_features
    from flashsale_ml.planning.plan import Candidates
    from flashsale_ml.simulation import SimulationConfig, simulate
    from flashsale_ml.storage import open_store
    from flashsale_ml.training.splits import campaign_order, plan_split

    with tempfile.TemporaryDirectory(prefix="bench-planning-") as tmp:
        started = time.perf_counter()
        lake = open_store((Path(tmp) / "lake").as_uri())
        config = SimulationConfig(
            users=args.users, days=args.days, seed=seed, sale_stock_factor=1000
        )
        world = simulate(config, lake)
        features_uri = build_features(world.raw_uri, lake, threads=args.threads)
        with Snapshot(features_uri) as snapshot:
            order = campaign_order(snapshot.manifest.metadata)
            frame = snapshot.read_pandas(PROPENSITY_TABLE)
        with Snapshot(world.raw_uri) as raw:
            campaigns = raw.read_pandas("campaigns").sort_values(["start_ts", "campaign_id"])
        data_s = time.perf_counter() - started
        split = plan_split(order)
        newest = split.test[0]
        row = campaigns[campaigns["campaign_id"] == newest].iloc[0].to_dict()
        depth = float(row["discount_depth"]) if args.depth == "campaign" else float(args.depth)

        settings = Settings(home=Path(tmp) / "home", threads=args.threads, seed=seed)
        fit_s = {}
        started = time.perf_counter()
        booster = _fit("propensity", "lgbm", features_uri, settings, split)
        fit_s["propensity"] = round(time.perf_counter() - started, 2)
        scorers = {}
        for learner in args.uplift_learners:
            started = time.perf_counter()
            scorers[learner] = _fit("uplift", learner, features_uri, settings, split)
            fit_s[learner] = round(time.perf_counter() - started, 2)

        rows = (
            frame[frame["campaign_id"] == newest]
            .sort_values("user_id")
            .reset_index(drop=True)
            .assign(discount_depth=depth)
        )
        p_control = np.asarray(
            booster.predict(encode_features(rows.assign(arm=CONTROL_ARM))), dtype=float
        )
        users = rows["user_id"].to_numpy(dtype=np.int64)
        segment = value_tiers(rows["revenue_all"].to_numpy(dtype=float)).astype(str)
        flagged = rows["accounts_per_device"].to_numpy() > 5
        candidates = {}
        for learner, scorer in scorers.items():
            predicted = scorer.predict(rows)
            candidates[learner] = Candidates(
                user_ids=users,
                segment=segment,
                is_bot=flagged,
                excluded=np.zeros(len(rows), dtype=bool),
                p_control=p_control,
                uplift=np.column_stack([predicted[:, scorer.arms.index(a)] for a in PROMO_TYPES]),
                arms=PROMO_TYPES,
            )
        economics = _economics(world.raw_uri, row, depth)
        true_prob, true_bot = _truth(config, users, order.index(newest), depth)

        # How good the models are on this sale, for context (humans only).
        human = ~true_bot
        true_uplift = true_prob[:, 1:] - true_prob[:, :1]
        quality = {
            "propensity": {
                "spearman_vs_true_p0": round(
                    float(spearmanr(p_control[human], true_prob[human, 0]).statistic), 4
                ),
                "mean_vs_true_p0": [
                    round(float(p_control[human].mean()), 4),
                    round(float(true_prob[human, 0].mean()), 4),
                ],
            },
            "bot_rule_recall": round(float(flagged[true_bot].mean()), 4)
            if true_bot.any()
            else None,
        }
        for learner, cands in candidates.items():
            quality[learner] = {
                "uplift_spearman": {
                    arm: round(
                        float(spearmanr(cands.uplift[human, j], true_uplift[human, j]).statistic),
                        4,
                    )
                    for j, arm in enumerate(PROMO_TYPES)
                },
                "uplift_mean_vs_true": {
                    arm: [
                        round(float(cands.uplift[human, j].mean()), 4),
                        round(float(true_uplift[human, j].mean()), 4),
                    ]
                    for j, arm in enumerate(PROMO_TYPES)
                },
            }
        return Shop(
            seed=seed,
            campaign_id=newest,
            depth=depth,
            candidates=candidates,
            economics=economics,
            true_prob=true_prob,
            true_bot=true_bot,
            model_quality=quality,
            data_s=round(data_s, 2),
            fit_s=fit_s,
        )


def _take_while_fits(order: np.ndarray, cost: np.ndarray, budget: float) -> np.ndarray:
    """The users of ``order`` (positions) taken in turn while the running cost fits."""
    return order[np.cumsum(cost[order]) <= budget]


def judge_scenario(
    shop: Shop, learner: str, unit_share: float, budget_share: float, draws: int
) -> dict:
    """Every policy under one budget on one shop, with one uplift learner's scores:
    model-based spending, true margin."""
    from flashsale_ml.planning.allocation import NONE, solve_budgeted
    from flashsale_ml.planning.plan import EXPLORATION as EXPLORE_ROLE
    from flashsale_ml.planning.plan import TARGETED, expected_values, plan_at_depth

    cands = shop.candidates[learner]
    economics = dataclasses.replace(
        shop.economics,
        unit_costs=dict.fromkeys(cands.arms, unit_share * shop.economics.order_margin),
    )
    unit = np.array([economics.unit_costs[a] for a in cands.arms])
    values, costs = expected_values(cands, economics)  # what the models say
    true_cost = unit[None, :] * shop.true_prob[:, 1:]
    true_value = (
        shop.true_prob[:, 1:] - shop.true_prob[:, :1]
    ) * economics.order_margin - true_cost
    eligible = np.flatnonzero(~cands.is_bot & ~cands.excluded)
    n_arms = len(cands.arms)

    # The budget: a share of what offering every eligible user a promotion would cost at the
    # propensity model's P(buy | control); the same for every uplift learner and policy.
    p0 = np.clip(cands.p_control[eligible], 0.0, 1.0)
    budget = budget_share * float((unit.mean() * p0).sum())
    # Every cost together: a budget that cannot bind.
    unconstrained = solve_budgeted(
        values[eligible], costs[eligible], float(costs[eligible].sum()) + 1.0
    )
    result: dict = {
        "unit_cost_share_of_margin": unit_share,
        "unit_cost": round(float(unit[0]), 4),
        "budget_share": budget_share,
        "budget": round(budget, 4),
        "unconstrained_plan_spend": round(unconstrained.spend, 4),
        "budget_binds_for_plan": unconstrained.spend > budget,
        "users_with_positive_predicted_value": int((unconstrained.choice != NONE).sum()),
        "users_with_positive_true_value": int((true_value[eligible].max(axis=1) > 0).sum()),
    }

    def judge(users: np.ndarray, arms: np.ndarray) -> dict:
        return {
            "true_margin": float(true_value[users, arms].sum()),
            "predicted_margin": float(values[users, arms].sum()),
            "model_spend": float(costs[users, arms].sum()),
            "true_spend": float(true_cost[users, arms].sum()),
            "true_incremental_orders": float(
                (shop.true_prob[users, 1 + arms] - shop.true_prob[users, 0]).sum()
            ),
            "users": len(users),
        }

    policies: dict[str, dict] = {}
    arm_index = {a: i for i, a in enumerate(cands.arms)}
    for name, share in (("plan", EXPLORATION), ("plan_no_exploration", 0.0)):
        plan = plan_at_depth(shop.campaign_id, cands, economics, budget, HOLDOUT, share, KEY)
        treated = np.flatnonzero(np.isin(plan.role, (TARGETED, EXPLORE_ROLE)))
        arms = np.array([arm_index[a] for a in plan.arm[treated]], dtype=np.int64)
        policies[name] = judge(treated, arms) | {
            "optimality_gap": plan.summary.optimality_gap,
            "exploration_users": plan.summary.exploration_users,
            "holdout_users": plan.summary.holdout_users,
        }

    rng = np.random.default_rng([shop.seed, 7])
    random_rows = []
    for _ in range(draws):
        arm = rng.integers(0, n_arms, len(cands.user_ids))
        order = rng.permutation(eligible)
        users = _take_while_fits(order, costs[np.arange(len(arm)), arm], budget)
        random_rows.append(judge(users, arm[users]))
    policies["random"] = {
        k: float(np.mean([r[k] for r in random_rows])) for k in random_rows[0]
    } | {"draws": draws}

    best_arm = cands.uplift.argmax(axis=1)
    fixed = int(cands.uplift[eligible].mean(axis=0).argmax())
    by_propensity = eligible[np.lexsort((eligible, -cands.p_control[eligible]))]
    for name, arm in (
        ("propensity", best_arm),
        ("propensity_fixed_type", np.full(len(best_arm), fixed)),
    ):
        users = _take_while_fits(by_propensity, costs[np.arange(len(arm)), arm], budget)
        policies[name] = judge(users, arm[users]) | {
            "types": {a: int((arm[users] == i).sum()) for i, a in enumerate(cands.arms)}
        }
    by_uplift = eligible[np.lexsort((eligible, -cands.uplift[eligible, fixed]))]
    users = _take_while_fits(by_uplift, costs[:, fixed], budget)
    policies["best_type"] = judge(users, np.full(len(users), fixed)) | {"type": cands.arms[fixed]}

    oracle = solve_budgeted(true_value[eligible], true_cost[eligible], budget)
    taken = oracle.choice != NONE
    policies["oracle"] = judge(eligible[taken], oracle.choice[taken]) | {
        "lp_bound": oracle.lp_bound,
        "gap": oracle.gap,
    }

    for row in policies.values():
        for key, value in row.items():
            if isinstance(value, float):
                row[key] = round(value, 4)
    p2 = policies["propensity"]["true_margin"]
    result["policies"] = policies
    result["plan_over_propensity"] = (
        round(policies["plan"]["true_margin"] / p2, 4) if p2 > 0 else None
    )
    result["plan_minus_propensity"] = round(policies["plan"]["true_margin"] - p2, 4)
    return result


def ratio_interval(rows: list[dict], numerator: str, denominator: str) -> dict | None:
    """t-interval of the per-seed ratio of two policies' true margins, over the seeds where the
    denominator earned a positive margin (None when there is none)."""
    ratios = [
        r["policies"][numerator]["true_margin"] / r["policies"][denominator]["true_margin"]
        for r in rows
        if r["policies"][denominator]["true_margin"] > 0
    ]
    return t_interval(ratios) | {"seeds_defined": len(ratios)} if ratios else None


def summarize(rows: list[dict], learner: str, unit_share: float, budget_share: float) -> dict:
    margins = {name: [r["policies"][name]["true_margin"] for r in rows] for name in POLICIES}
    ratios = [r["plan_over_propensity"] for r in rows]
    summary = {
        "section": "quality_summary",
        "uplift_learner": learner,
        "unit_cost_share_of_margin": unit_share,
        "budget_share": budget_share,
        "seeds": [r["seed"] for r in rows],
        "true_margin": {name: t_interval(v) for name, v in margins.items()},
        "share_of_oracle": {
            name: t_interval([m / o for m, o in zip(v, margins["oracle"], strict=True)])
            for name, v in margins.items()
            if name != "oracle" and all(o > 0 for o in margins["oracle"])
        },
        "plan_over_propensity_per_seed": ratios,
        "plan_over_propensity": ratio_interval(rows, "plan", "propensity"),
        "plan_no_exploration_over_propensity": ratio_interval(
            rows, "plan_no_exploration", "propensity"
        ),
        "plan_over_propensity_fixed_type": ratio_interval(rows, "plan", "propensity_fixed_type"),
        "plan_over_random": ratio_interval(rows, "plan", "random"),
        "plan_over_best_type": ratio_interval(rows, "plan", "best_type"),
        "plan_minus_propensity": t_interval([r["plan_minus_propensity"] for r in rows]),
        "target_ratio": TARGET_RATIO,
    }
    interval = summary["plan_over_propensity"]
    if interval is not None and interval["seeds_defined"] == len(rows):
        summary["target_mean_holds"] = interval["mean"] >= TARGET_RATIO
        summary["target_interval_low_holds"] = (
            interval["low"] is not None and interval["low"] >= TARGET_RATIO
        )
    else:
        summary["target_mean_holds"] = None
        summary["target_note"] = (
            "policy 2 earned no positive true margin on some seed, where the ratio is "
            "undefined: see plan_minus_propensity"
        )
    return summary


def quality_section(args: argparse.Namespace) -> None:
    results: dict[tuple[str, float], list[dict]] = {}
    for seed in range(1, args.seeds + 1):
        shop = load_shop(seed, args)
        for learner in args.uplift_learners:
            for unit_share in args.unit_costs:
                result = judge_scenario(
                    shop, learner, unit_share, args.budget_share, args.random_draws
                )
                cands = shop.candidates[learner]
                row = {
                    "section": "quality",
                    "seed": seed,
                    "uplift_learner": learner,
                    "users": args.users,
                    "days": args.days,
                    "campaign_id": shop.campaign_id,
                    "discount_depth": shop.depth,
                    "order_revenue": round(shop.economics.order_revenue, 4),
                    "order_margin": round(shop.economics.order_margin, 4),
                    "eligible_users": int((~cands.is_bot & ~cands.excluded).sum()),
                    "flagged_bots": int(cands.is_bot.sum()),
                    "true_bots": int(shop.true_bot.sum()),
                    "data_s": shop.data_s,
                    "fit_s": shop.fit_s,
                    "model_quality": {
                        "propensity": shop.model_quality["propensity"],
                        "bot_rule_recall": shop.model_quality["bot_rule_recall"],
                        "uplift": shop.model_quality[learner],
                    },
                    **result,
                }
                emit(row)
                results.setdefault((learner, unit_share), []).append(row)
    for learner in args.uplift_learners:
        for unit_share in args.unit_costs:
            emit(summarize(results[learner, unit_share], learner, unit_share, args.budget_share))


# ------------------------------------------------------------------------------ speed


def synthetic_candidates(n: int, seed: int):
    """``n`` users x 3 promotion types: P(buy) ~ Beta(1.2, 16) (mean ~7 %), each type's uplift
    a different function of two latent traits plus noise (some negative), 2 % bots."""
    from flashsale_ml.contract import PROMO_TYPES
    from flashsale_ml.evaluation.segments import value_tiers
    from flashsale_ml.planning.plan import Candidates, Economics

    rng = np.random.default_rng(seed)
    p0 = rng.beta(1.2, 16.0, n)
    sens = rng.random(n)
    activity = rng.standard_normal(n)
    noise = rng.normal(0.0, 0.01, (n, 3))
    uplift = (
        np.column_stack(
            [
                0.04 * (2.0 * sens - 0.5) * p0 / 0.07,
                0.02 * (1.0 - sens) * p0 / 0.07 - 0.002,
                0.015 * np.tanh(activity) * p0 / 0.07 + 0.003,
            ]
        )
        + noise * np.sqrt(p0 / 0.07)[:, None]
    )
    del sens, activity, noise
    user_ids = rng.permutation(np.arange(n, dtype=np.int64) * 7 + 1_000_003)
    candidates = Candidates(
        user_ids=user_ids,
        segment=value_tiers(rng.gamma(0.6, 80.0, n) * (rng.random(n) < 0.7)).astype(str),
        is_bot=rng.random(n) < 0.02,
        excluded=np.zeros(n, dtype=bool),
        p_control=p0,
        uplift=uplift,
        arms=PROMO_TYPES,
    )
    economics = Economics(
        discount_depth=0.3,
        order_revenue=50.0,
        order_margin=12.0,
        unit_costs={"pct_discount": 2.5, "gift_with_purchase": 1.5, "timed_coupon": 1.0},
    )
    return candidates, economics


def child_speed(args: argparse.Namespace) -> None:
    from flashsale_ml.planning.allocation import lp_bound_highs, solve_budgeted
    from flashsale_ml.planning.plan import expected_values, plan_at_depth

    started = time.perf_counter()
    candidates, economics = synthetic_candidates(args.n, seed=1)
    values, costs = expected_values(candidates, economics)
    free = solve_budgeted(values, costs, float(costs.sum()) + 1.0)
    budget = args.budget_share * free.spend
    generate_s = time.perf_counter() - started
    rss_after_data = round((_status_kib("VmRSS") or 0) / 1024**2, 3)
    peak_before = peak_rss_gib()
    was_reset = reset_peak_rss()

    started, cpu = time.perf_counter(), time.process_time()
    values, costs = expected_values(candidates, economics)
    values_s = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    allocation = solve_budgeted(values, costs, budget)
    solve_s, solve_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    started, cpu = time.perf_counter(), time.process_time()
    plan = plan_at_depth("bench-speed", candidates, economics, budget, HOLDOUT, EXPLORATION, KEY)
    plan_s, plan_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    peak_planning = peak_rss_gib()

    highs = {}
    if args.highs_users:
        m = min(args.highs_users, args.n)
        sub_budget = budget * m / args.n
        started = time.perf_counter()
        ours = solve_budgeted(values[:m], costs[:m], sub_budget)
        ours_s = time.perf_counter() - started
        started = time.perf_counter()
        bound = lp_bound_highs(values[:m], costs[:m], sub_budget)
        highs = {
            "users": m,
            "highs_lp_bound": round(bound, 4),
            "dual_lp_bound": round(ours.lp_bound, 4),
            "bound_rel_diff": float((ours.lp_bound - bound) / abs(bound)) if bound else None,
            "value": round(ours.value, 4),
            "gap_to_highs_bound": float((bound - ours.value) / bound) if bound > 0 else None,
            "solve_s": round(ours_s, 3),
            "highs_s": round(time.perf_counter() - started, 2),
        }
    s = plan.summary
    emit(
        {
            "section": "speed",
            "users": args.n,
            "options": values.shape[1] + 1,
            "cpus": os.cpu_count(),
            "affinity_cpus": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
            "generate_s_not_timed": round(generate_s, 2),
            "budget": round(budget, 2),
            "budget_share_of_unconstrained_spend": args.budget_share,
            "expected_values_s": round(values_s, 2),
            "solve_budgeted": {
                "seconds": round(solve_s, 2),
                "cpu_seconds": round(solve_cpu_s, 2),
                "value": round(allocation.value, 4),
                "lp_bound": round(allocation.lp_bound, 4),
                "gap": allocation.gap,
                "spend": round(allocation.spend, 4),
                "spend_within_budget": allocation.spend <= budget,
                "fill_upgrades": allocation.fill_upgrades,
                "chosen_users": int((allocation.choice >= 0).sum()),
            },
            "plan_at_depth": {
                "seconds": round(plan_s, 2),
                "cpu_seconds": round(plan_cpu_s, 2),
                "targeted": s.targeted_users,
                "exploration": s.exploration_users,
                "holdout": s.holdout_users,
                "expected_spend": round(s.expected_spend, 4),
                "spend_within_budget": s.expected_spend <= budget,
                "first_lp_bound": round(s.lp_bound, 4),
                "final_gap": s.optimality_gap,
            },
            "highs_cross_check": highs,
            "rss_after_data_gib": rss_after_data,
            "peak_rss_with_data_generation_gib": peak_before,
            "peak_rss_gib": peak_planning,
            "peak_rss_is_planning_only": was_reset,
            "target": {"seconds": 60, "gap": 0.001},
            "target_holds": plan_s <= 60 and s.optimality_gap <= 0.001 and allocation.gap <= 0.001,
        }
    )


def speed_section(args: argparse.Namespace) -> bool:
    started = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            "speed",
            "--n",
            str(args.speed_users),
            "--highs-users",
            str(args.highs_users),
            "--budget-share",
            str(args.budget_share),
        ],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.strip():
            row = json.loads(line)
            row["child_wall_s"] = round(time.perf_counter() - started, 2)
            emit(row)
    if proc.returncode:
        emit({"section": "speed", "failed": True, "exit_code": proc.returncode})
    return proc.returncode == 0


# ------------------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sections", nargs="+", default=["quality", "speed"], choices=["quality", "speed"]
    )
    parser.add_argument("--seeds", type=int, default=5, help="quality: simulated shops 1..N")
    parser.add_argument("--users", type=int, default=20_000, help="quality: users per shop")
    parser.add_argument("--days", type=int, default=35)
    parser.add_argument(
        "--budget-share",
        type=float,
        default=0.2,
        help="quality: the budget as a share of the expected cost of offering every eligible "
        "user a promotion at the predicted P(buy | control); speed: as a share of the "
        "unconstrained plan's expected spend",
    )
    parser.add_argument(
        "--unit-costs",
        type=float,
        nargs="+",
        default=[0.15, 0.05, 0.3],
        help="quality: every promotion type's cost per redemption as a share of the order "
        "margin; each is judged separately (the first is the headline)",
    )
    parser.add_argument(
        "--depth",
        default="0.3",
        help="discount depth the newest sale is planned at, or 'campaign' for its own",
    )
    parser.add_argument(
        "--uplift-learners",
        nargs="+",
        default=["x", "s"],
        choices=["s", "t", "x", "dr"],
        help="uplift flavors to plan with, each judged separately (x: the kind's default)",
    )
    parser.add_argument("--random-draws", type=int, default=20)
    parser.add_argument("--speed-users", type=int, default=10_000_000)
    parser.add_argument(
        "--highs-users", type=int, default=20_000, help="speed: HiGHS cross-check size (0: off)"
    )
    parser.add_argument("--threads", type=int, default=0, help="LightGBM/DuckDB threads (0: all)")
    # Internal: the measured child process of the speed section.
    parser.add_argument("--child", choices=["speed"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads == 0:
        args.threads = os.cpu_count() or 1
    if args.depth != "campaign":
        float(args.depth)  # fail early on a typo

    if args.child == "speed":
        child_speed(args)
        return 0

    import logging

    logging.basicConfig(level=logging.WARNING)
    emit({"section": "meta", "cpus": os.cpu_count(), "threads": args.threads, **code_version()})
    ok = True
    if "quality" in args.sections:
        quality_section(args)
    if "speed" in args.sections:
        ok &= speed_section(args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
