"""Move a simulated world forward in time and play the published campaign plans in it.

:func:`advance` reads the newest simulated raw snapshot (and its ground truth), rebuilds the
same world from the configuration recorded in its manifest (the same users with the same latent
traits, the same catalogue), and commits a NEW pair of snapshots that extends it to a target
time:

- **Ordinary activity** continues in blocks of a week after the original horizon. Block ``b``
  is drawn from its own random streams (``seed``, 101, ``b``, chunk), so the same block always
  holds the same sessions; an advance keeps the part of each block between the old ``data_as_of``
  and the target. New accounts sign up at the original simulation's rate (stream 102, ``b``);
  users churn at the latent churn time the original simulation drew for them.
- **Published plans** whose window ends by the target and whose campaign is not in the data yet
  are played with :func:`~flashsale_ml.simulation.behaviour.flash_sale`: the campaign row, the
  plan's assignments exactly, and every user alive during the sale visiting and buying with the
  simulator's TRUE probability under their arm (users the plan leaves out behave as control and
  are not recorded). Stock is the simulator's own model. The draws come from the stream
  (``seed``, 103, hash of the campaign id). Ground truth goes to ``sale_truth`` and
  ``demand_truth`` as for simulated sales.
- The simulator's own weekly sales are **not** scheduled after the original horizon: only plans
  are played, so campaign ids and windows are the planners' alone.

Old rows are never changed: every table of the new snapshot starts with the old one's rows in
their order (event and order part files are rewritten unchanged, byte for byte), then the new
rows follow. Same inputs, same table bytes. When the data already reaches the target and holds
every plan that is due, nothing is written and the old snapshot is returned.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flashsale_ml.config import DEV_PSEUDONYM_KEY
from flashsale_ml.contract import (
    ARMS,
    CONTRACT,
    DEVICE_TYPES,
    PROMO_TYPES,
    REGIONS,
    TARGETED,
    TS,
    conform,
    pseudonymize,
)
from flashsale_ml.datasets import Snapshot, SnapshotWriter
from flashsale_ml.errors import DataError
from flashsale_ml.simulation.behaviour import (
    ARM_CONTROL,
    SaleOutcome,
    baseline_sessions,
    flash_sale,
)
from flashsale_ml.simulation.runner import (
    _Ids,
    _ts,
    campaigns_table,
    events_table,
    orders_table,
    sale_stock_table,
    truth_tables,
    users_table,
)
from flashsale_ml.simulation.world import (
    CATEGORIES,
    Campaign,
    Items,
    SimulationConfig,
    Users,
    make_items,
    make_users,
    rng_for,
)
from flashsale_ml.storage import ObjectStore, open_store

log = logging.getLogger(__name__)

GENERATOR = "flashsale_ml.simulation"
BLOCK_DAYS = 7
BLOCK_SECONDS = BLOCK_DAYS * 86_400
STREAM_BASELINE, STREAM_SIGNUPS, STREAM_SALE = 101, 102, 103
# As in make_users: this share of accounts signs up during the horizon (less its last week).
NEW_USER_SHARE = 0.12
NEVER = np.int64(2**62)  # churn offset of users who do not churn
PLANS_PREFIX = "plans"
# Tables whose old part files are carried over one by one (they are large); the others are
# rewritten as one part holding the old rows followed by the new ones.
STREAMED_TABLES = ("events", "orders")


# --- inputs and outputs -----------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedSale:
    """A published plan as the world plays it."""

    campaign_id: str
    start: datetime
    end: datetime
    item_ids: tuple[int, ...]
    promo_types: tuple[str, ...]
    discount_depth: float
    budget: float
    holdout_share: float
    assignments: pa.Table  # the contract's assignments table, exactly the plan's
    uri: str = ""

    @classmethod
    def from_plan(cls, plan: dict[str, Any], assignments: pa.Table, uri: str = "") -> PlannedSale:
        """From a committed ``plan.json`` and its ``assignments.parquet``."""
        spec = plan["spec"]
        # The promotion types the plan actually gave someone (a type the optimizer and the
        # exploration left unused was offered, but no arm of the experiment has it).
        used = set(assignments.column("arm").to_pylist())
        return cls(
            campaign_id=str(spec["campaign_id"]),
            start=_utc(spec["start"]),
            end=_utc(spec["end"]),
            item_ids=tuple(int(s) for s in spec["skus"]),
            promo_types=tuple(p for p in PROMO_TYPES if p in spec["promotions"] and p in used),
            discount_depth=float(plan["summary"]["discount_depth"]),
            budget=float(spec["budget"]),
            holdout_share=float(spec["holdout_fraction"]),
            assignments=conform("assignments", assignments),
            uri=uri,
        )


@dataclass(frozen=True)
class AdvanceResult:
    raw_uri: str
    truth_uri: str
    snapshot_id: str
    data_as_of: datetime
    changed: bool
    played: tuple[str, ...]
    missed: tuple[str, ...]  # due, but their start had passed in the data before they came
    pending: tuple[str, ...]  # published, window not over by the target
    new_users: int
    rows_added: dict[str, int]
    seconds: float


def truth_uri_of(raw_uri: str) -> str:
    """The ground truth written beside a simulated raw snapshot (``<dataset>-truth``, same id)."""
    parent, _, snapshot_id = raw_uri.rstrip("/").rpartition("/")
    return f"{parent}-truth/{snapshot_id}"


def is_simulated(metadata: dict[str, Any]) -> bool:
    return metadata.get("generator") == GENERATOR and isinstance(metadata.get("config"), dict)


def load_plans(lake: ObjectStore, exclude: Collection[str] = ()) -> list[PlannedSale]:
    """Every committed plan under ``<lake>/plans/<campaign_id>/``, except campaigns in
    ``exclude`` (those already in the data are not read again). A folder whose plan does not
    commit (``read_plan`` refuses it) is skipped with a warning."""
    from flashsale_ml.planning.output import (
        PLAN_FILE,
        PlanNotCommittedError,
        read_plan,
        read_plan_table,
    )

    folders = sorted(
        {
            key.split("/")[1]
            for key in lake.list(f"{PLANS_PREFIX}/")
            if key.count("/") == 2 and key.endswith(f"/{PLAN_FILE}")
        }
    )
    plans = []
    for folder in folders:
        if folder.startswith(".") or folder in exclude:
            continue
        uri = lake.uri(f"{PLANS_PREFIX}/{folder}")
        try:
            head = json.loads(lake.read_bytes(f"{PLANS_PREFIX}/{folder}/{PLAN_FILE}"))
            if head.get("spec", {}).get("campaign_id") in exclude:
                continue
            plan = read_plan(uri)
            plans.append(PlannedSale.from_plan(plan, read_plan_table(uri, "assignments"), uri))
        except (PlanNotCommittedError, FileNotFoundError, ValueError, KeyError) as exc:
            log.warning("skipping plan folder %s: %s: %s", uri, type(exc).__name__, exc)
    return plans


# --- the world --------------------------------------------------------------------------------


def _utc(value: str | datetime) -> datetime:
    ts = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _take(obj: Any, mask: np.ndarray) -> Any:
    """A copy of an Events/Orders/Users dataclass with only the rows in ``mask``."""
    return type(obj)(**{f.name: getattr(obj, f.name)[mask] for f in fields(obj)})


def _concat_users(parts: list[Users]) -> Users:
    return Users(
        **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Users)}
    )


def _block_start(config: SimulationConfig, block: int) -> int:
    return config.horizon_seconds + block * BLOCK_SECONDS


def _block_of(config: SimulationConfig, offset: float) -> int:
    """The block holding the instant ``offset`` (seconds since the start)."""
    return int((offset - config.horizon_seconds) // BLOCK_SECONDS)


def _signups(
    config: SimulationConfig, block: int, first_index: int, activity_scale: float, key: str
) -> Users:
    """The accounts that sign up in ``block``, in signup order, drawn as make_users draws them
    (no bots: those are all there from the start)."""
    rng = rng_for(config, STREAM_SIGNUPS, block)
    per_day = NEW_USER_SHARE * config.users / max(1, config.days - 7)
    n = int(rng.poisson(per_day * BLOCK_DAYS))
    signup = _block_start(config, block) + np.sort(rng.integers(0, BLOCK_SECONDS, n))
    churns = rng.random(n) < config.churn_share
    churn = np.where(churns, signup + rng.integers(86_400, config.horizon_seconds + 1, n), NEVER)
    index = np.arange(first_index, first_index + n)
    return Users(
        user_id=pseudonymize((f"U{i:09d}" for i in index), key),
        signup_offset=signup.astype(np.int64),
        churn_offset=churn.astype(np.int64),
        region=rng.choice(len(REGIONS), n, p=[0.22, 0.2, 0.18, 0.18, 0.17, 0.05]),
        device_type=rng.choice(len(DEVICE_TYPES), n, p=[0.45, 0.3, 0.07, 0.18, 0.0]),
        activity=rng.lognormal(0.0, 1.1, n) * activity_scale,
        price_sensitivity=rng.beta(2.0, 2.0, n),
        affinity=rng.dirichlet(np.full(len(CATEGORIES), 0.35), n).astype(np.float32),
        intent=rng.normal(0.0, 0.8, n),
        preferred_hour=np.round(rng.normal(19.0, 3.5, n)).astype(np.int64) % 24,
        annoyed=rng.random(n) < 0.05,
        is_bot=np.zeros(n, dtype=bool),
        device_id=rng.integers(1, 2**62, n, dtype=np.int64),
        ip_hash=rng.integers(1, 2**62, n, dtype=np.int64),
    )


@dataclass
class _World:
    config: SimulationConfig
    users: Users  # the original users, then every signup of blocks 0..last_block
    items: Items
    n_original: int
    block_sizes: list[int]  # population after each block (cumulative)

    def population_through(self, block: int) -> int:
        return self.n_original if block < 0 else self.block_sizes[block]

    def existing_at(self, offset: float) -> int:
        """How many accounts have signed up before ``offset`` (new ones are in signup order)."""
        new = self.users.signup_offset[self.n_original :]
        return self.n_original + int(np.searchsorted(new, offset, side="left"))

    def prefix(self, n: int) -> Users:
        return _take(self.users, np.arange(self.users.n) < n)


def _build_world(config: SimulationConfig, last_block: int, key: str) -> _World:
    users = make_users(config)
    # make_users scales activity by its sample mean; signups use the same scale.
    raw_mean = float(rng_for(config, 1).lognormal(0.0, 1.1, config.users).mean())
    scale = config.events_per_user_day / raw_mean
    users.churn_offset = np.where(
        users.churn_offset == config.horizon_seconds + 1, NEVER, users.churn_offset
    )
    parts, sizes, n = [users], [], users.n
    for block in range(last_block + 1):
        new = _signups(config, block, n, scale, key)
        parts.append(new)
        n += new.n
        sizes.append(n)
    return _World(config, _concat_users(parts), make_items(config), config.users, sizes)


# --- reading what is there --------------------------------------------------------------------


def _read_all(snapshot: Snapshot, table: str) -> pa.Table:
    data = snapshot.read_table(table)
    return conform(table, data) if table in CONTRACT else data


def _part_tables(snapshot: Snapshot, table: str) -> Iterable[pa.Table]:
    for path in snapshot.local_files(table):
        data = pq.read_table(path)
        yield conform(table, data) if table in CONTRACT else data


def _classify(
    plans: Iterable[PlannedSale], in_data: set[str], as_of: datetime, to: datetime
) -> tuple[list[PlannedSale], list[str], list[str]]:
    due, missed, pending = [], [], []
    for plan in sorted(plans, key=lambda p: (p.start, p.campaign_id)):
        if plan.campaign_id in in_data:
            continue
        if plan.start < as_of:
            missed.append(plan.campaign_id)
        elif plan.end <= to:
            due.append(plan)
        elif plan.start < to:
            raise DataError(
                f"cannot advance the world to {to.isoformat()}: campaign {plan.campaign_id} "
                f"runs from {plan.start.isoformat()} to {plan.end.isoformat()} and would be cut "
                "in half; advance to its start or earlier, or to its end or later"
            )
        else:
            pending.append(plan.campaign_id)
    return due, missed, pending


# --- playing a plan ---------------------------------------------------------------------------


def _positions(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of each of ``values`` in ``keys`` (unique), -1 where absent."""
    order = np.argsort(keys, kind="stable")
    pos = np.searchsorted(keys, values, sorter=order)
    pos = np.minimum(pos, len(keys) - 1)
    found = order[pos]
    return np.where(keys[found] == values, found, -1)


def _campaign_seed(campaign_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(campaign_id.encode(), digest_size=8).digest(), "little")


def _play(world: _World, plan: PlannedSale, offset_of) -> tuple[Campaign, SaleOutcome, SaleOutcome]:
    """Play one plan. Returns the campaign, the sale (every visitor) and its ground truth
    restricted to the plan's assigned users, in the plan's row order."""
    config, items = world.config, world.items
    skus = np.unique(np.asarray(plan.item_ids, dtype=np.int64))
    item_index = _positions(items.item_id, skus)
    if (item_index < 0).any():
        raise DataError(
            f"plan {plan.campaign_id}: SKU(s) {skus[item_index < 0][:5].tolist()} are not in "
            "the catalogue"
        )
    start, end = offset_of(plan.start), offset_of(plan.end)
    campaign = Campaign(
        campaign_id=plan.campaign_id,
        start_offset=start,
        end_offset=end,
        item_index=np.sort(item_index),
        promo_types=plan.promo_types,
        discount_depth=plan.discount_depth,
        budget=plan.budget,
        holdout_share=plan.holdout_share,
        design=TARGETED,
    )
    # The sale's population: every account that exists at its start.
    users = world.prefix(world.existing_at(start))
    arms = plan.assignments.column("arm").to_pylist()
    bad_arms = sorted(set(arms) - set(ARMS))
    if bad_arms:
        raise DataError(f"plan {plan.campaign_id}: unknown arm(s) {bad_arms}")
    idx = _positions(world.users.user_id, plan.assignments.column("user_id").to_numpy())
    if (idx < 0).any():
        raise DataError(
            f"plan {plan.campaign_id}: {int((idx < 0).sum()):,} assigned user(s) are not in "
            f"the data (e.g. {plan.assignments.column('user_id')[int(np.argmin(idx))]})"
        )
    codes = np.array([ARMS.index(a) for a in arms], dtype=np.int64)
    arm_of_user = np.full(users.n, ARM_CONTROL, dtype=np.int64)
    present = idx < users.n
    arm_of_user[idx[present]] = codes[present]
    rng = rng_for(config, STREAM_SALE, _campaign_seed(plan.campaign_id))
    sale = flash_sale(config, users, items, campaign, 0, rng, assigned_arm=arm_of_user)

    # Truth for exactly the assigned users: what governed them (zero for one who was gone).
    row_of = np.full(users.n, -1, dtype=np.int64)
    row_of[sale.eligible] = np.arange(len(sale.eligible))
    rows = np.where(present, row_of[np.minimum(idx, users.n - 1)], -1)
    true_prob = np.zeros((len(idx), len(ARMS)))
    true_prob[rows >= 0] = sale.true_prob[rows[rows >= 0]]
    truth = replace(sale, eligible=idx, arm=codes, true_prob=true_prob)
    return campaign, sale, truth


# --- the advance ------------------------------------------------------------------------------


def _users_truth(config: SimulationConfig, users: Users, until: float) -> pa.Table:
    churned = users.churn_offset <= until
    churn_s = np.where(churned, users.churn_offset, 0).astype(float)
    return pa.table(
        {
            "user_id": users.user_id,
            "is_bot": users.is_bot,
            "activity": users.activity,
            "price_sensitivity": users.price_sensitivity,
            "intent": users.intent,
            "annoyed": users.annoyed,
            "churn_ts": pa.array(
                _ts(config, churn_s).to_numpy(zero_copy_only=False), type=TS, mask=~churned
            ),
        }
    )


def _traffic(
    config: SimulationConfig, lo: float, hi: float, events: list, starts: list, orders: list
) -> pa.Table:
    """Rows for the minutes that start in ``[lo, hi)``, counting what happened in ``[lo, hi)``."""
    first = int(np.ceil(lo / 60.0))
    n = max(0, int(np.ceil(hi / 60.0)) - first)

    def counts(times: list[np.ndarray]) -> np.ndarray:
        t = np.concatenate(times) if times else np.zeros(0)
        minute = (t // 60).astype(np.int64) - first
        minute = minute[(minute >= 0) & (minute < n)]
        return np.bincount(minute, minlength=n).astype(np.int64)

    return conform(
        "traffic",
        pa.table(
            {
                "ts": _ts(config, (first + np.arange(n)) * 60.0),
                "requests": counts(events),
                "sessions": counts(starts),
                "orders": counts(orders),
            }
        ),
    )


def advance(
    raw_uri: str,
    to: datetime,
    plans: Iterable[PlannedSale],
    lake: ObjectStore | None = None,
    pseudonym_key: str = DEV_PSEUDONYM_KEY,
    snapshot_id: str | None = None,
) -> AdvanceResult:
    """Extend the simulated world of ``raw_uri`` to ``to`` and play the plans that are due.

    Args:
        raw_uri: a simulated raw snapshot (normally the newest); its ground truth is read from
            :func:`truth_uri_of`.
        to: the target time (UTC); the new snapshot's ``data_as_of``.
        plans: the published plans (:func:`load_plans`); those whose campaign is in the data
            already are ignored, those whose window ends by ``to`` are played.
        lake: where the new snapshots go (default: the lake ``raw_uri`` lives in).
        pseudonym_key: the key of the accounts' pseudonymous ids (new signups get theirs).
        snapshot_id: an explicit id for the new snapshots (default: time-based).

    Returns:
        The new (or, when nothing was due, the old) snapshot, what was played, missed and is
        still pending, and how many rows each table gained.

    Raises:
        DataError: the snapshot is not simulated, does not match the world its manifest
            describes, a plan refers to unknown users or SKUs, or ``to`` falls inside the window
            of a plan not yet played.
    """
    started = time.perf_counter()
    to = _utc(to)
    with Snapshot(raw_uri) as raw:
        metadata = raw.manifest.metadata
        if not is_simulated(metadata):
            raise DataError(
                f"{raw_uri} was not written by the simulator (no generator config in its "
                "manifest); only a simulated world can be advanced"
            )
        config = SimulationConfig.model_validate(
            {**metadata["config"], "pseudonym_key": pseudonym_key}
        )
        as_of = _utc(metadata["data_as_of"])
        campaigns_old = _read_all(raw, "campaigns")
        in_data = set(campaigns_old.column("campaign_id").to_pylist())
        due, missed, pending = _classify(plans, in_data, as_of, to)
        for cid in missed:
            log.warning(
                "plan %s is not played: its sale started before the data's as-of time %s, "
                "so the world went past it without the plan",
                cid,
                as_of.isoformat(),
            )
        if to <= as_of and not due:
            log.info("%s already reaches %s with every due plan; nothing to do", raw_uri, to)
            return AdvanceResult(
                raw.uri,
                truth_uri_of(raw.uri),
                raw.snapshot_id,
                as_of,
                False,
                (),
                tuple(missed),
                tuple(pending),
                0,
                {},
                time.perf_counter() - started,
            )
        return _advance(
            raw, config, as_of, to, due, missed, pending, lake or _lake_of(raw_uri), snapshot_id,
            started,
        )  # fmt: skip


def _lake_of(raw_uri: str) -> ObjectStore:
    root, marker, _ = raw_uri.rstrip("/").rpartition("/datasets/")
    if not marker:
        raise DataError(f"{raw_uri} is not a snapshot of a lake (<lake>/datasets/<name>/<id>)")
    return open_store(root)


def _advance(
    raw: Snapshot,
    config: SimulationConfig,
    as_of: datetime,
    to: datetime,
    due: list[PlannedSale],
    missed: list[str],
    pending: list[str],
    lake: ObjectStore,
    snapshot_id: str | None,
    started: float,
) -> AdvanceResult:
    metadata = raw.manifest.metadata
    world_meta = dict(metadata.get("world") or {})
    dataset = raw.manifest.dataset

    def offset_of(ts: datetime) -> float:
        return (ts - config.start).total_seconds()

    lo, hi = offset_of(as_of), offset_of(to)
    if lo < config.horizon_seconds:
        raise DataError(
            f"{raw.uri}: data_as_of {as_of.isoformat()} is before the end of the simulated "
            "horizon; the snapshot does not match its manifest"
        )
    last_block = _block_of(config, hi - 1e-6)
    world = _build_world(config, max(last_block, _block_of(config, lo)), config.pseudonym_key)

    # The accounts in the data must be the world's first accounts, in order.
    old_users = _read_all(raw, "users")
    n_old = old_users.num_rows
    if n_old != world.existing_at(lo):
        raise DataError(
            f"{raw.uri} has {n_old:,} users where its simulated world has "
            f"{world.existing_at(lo):,} by {as_of.isoformat()}; it was changed after "
            "simulation or written by another version"
        )
    data_ids = old_users.column("user_id").to_numpy()
    if not np.array_equal(data_ids, world.users.user_id[:n_old]):
        # Another pseudonym key: the world is the same, the ids are the data's.
        log.warning(
            "the account ids of %s were made with another pseudonym key; new accounts get ids "
            "from the configured key",
            raw.uri,
        )
        world.users.user_id[:n_old] = data_ids
    n_new = world.existing_at(hi)

    ids = _Ids()
    session_max = 0
    for path in raw.local_files("events"):
        part = pq.read_table(path, columns=["event_id", "session_id"])
        ids.event = max(ids.event, pc.max(part.column("event_id")).as_py() or 0)
        session_max = max(session_max, pc.max(part.column("session_id")).as_py() or 0)
    for path in raw.local_files("orders"):
        top = pc.max(pq.read_table(path, columns=["order_id"]).column("order_id")).as_py()
        ids.order = max(ids.order, top or 0)

    new_events: list[pa.Table] = []
    new_orders: list[pa.Table] = []
    ev_times, start_times, order_times = [], [], []
    bases = {int(k): int(v) for k, v in (world_meta.get("session_bases") or {}).items()}
    first_block = _block_of(config, lo)
    for block in range(first_block, last_block + 1):
        block_lo = _block_start(config, block)
        keep_lo, keep_hi = max(lo, block_lo), min(hi, block_lo + BLOCK_SECONDS)
        n_pop = world.population_through(block)
        shifted = replace(
            world.prefix(n_pop),
            signup_offset=world.users.signup_offset[:n_pop] - block_lo,
            churn_offset=world.users.churn_offset[:n_pop] - block_lo,
        )
        block_config = config.model_copy(
            update={"start": config.start + timedelta(seconds=block_lo), "days": BLOCK_DAYS}
        )
        base = bases.setdefault(block, session_max)
        sessions = 0
        for chunk in range(-(-n_pop // config.chunk_users)):
            c_lo = chunk * config.chunk_users
            c_hi = min(n_pop, c_lo + config.chunk_users)
            ev, orders, starts = baseline_sessions(
                block_config,
                shifted,
                world.items,
                c_lo,
                c_hi,
                rng_for(config, STREAM_BASELINE, block, chunk),
            )
            ev.t = ev.t + block_lo
            orders.t = orders.t + block_lo
            starts = starts + block_lo
            ev = _take(ev, (ev.t >= keep_lo) & (ev.t < keep_hi))
            orders = _take(orders, (orders.t >= keep_lo) & (orders.t < keep_hi))
            new_events.append(
                events_table(config, world.users, world.items, ev, base + sessions, ids)
            )
            new_orders.append(orders_table(config, world.users, world.items, orders, [], ids))
            ev_times.append(ev.t)
            order_times.append(orders.t)
            start_times.append(starts[(starts >= keep_lo) & (starts < keep_hi)])
            sessions += len(starts)
        session_max = max(session_max, base + sessions)

    campaigns: list[Campaign] = []
    sale_truths: list[SaleOutcome] = []
    played_sales: list[SaleOutcome] = []
    assignments = []
    for plan in due:
        campaign, sale, truth = _play(world, plan, offset_of)
        ev, orders = sale.events, sale.orders
        ev = _take(ev, ev.t < hi)
        orders = _take(orders, orders.t < hi)
        new_events.append(events_table(config, world.users, world.items, ev, session_max, ids))
        new_orders.append(orders_table(config, world.users, world.items, orders, [campaign], ids))
        ev_times.append(ev.t)
        order_times.append(orders.t)
        start_times.append(sale.session_starts[sale.session_starts < hi])
        session_max += len(sale.session_starts)
        campaigns.append(campaign)
        sale_truths.append(truth)
        played_sales.append(sale)
        assignments.append(plan.assignments)
        n_orders = len(orders)
        log.info(
            "played %s: %s assigned, %s visitors, %s orders",
            plan.campaign_id,
            f"{plan.assignments.num_rows:,}",
            f"{len(np.unique(sale.events.user)):,}",
            f"{n_orders:,}",
        )

    new_tables: dict[str, list[pa.Table]] = {
        "users": [users_table(config, world.prefix(n_new))[n_old:]],
        "items": [],
        "campaigns": [campaigns_table(config, campaigns, world.items)] if campaigns else [],
        "assignments": assignments,
        "events": [t for t in new_events if t.num_rows],
        "orders": [t for t in new_orders if t.num_rows],
        "traffic": [_traffic(config, lo, hi, ev_times, start_times, order_times)],
        "sale_stock": [sale_stock_table(config, world.items, played_sales)] if played_sales else [],
    }
    truth_new = truth_tables(config, world.users, world.items, sale_truths)
    played = tuple(c.campaign_id for c in campaigns)
    world_meta.update(
        {
            "advanced_from": raw.uri,
            "advanced_from_as_of": as_of.isoformat(),
            "played": played,
            "played_total": [*world_meta.get("played_total", []), *played],
            "signups": n_new - world.n_original,
            "session_bases": {str(k): v for k, v in sorted(bases.items())},
        }
    )
    new_metadata = {**metadata, "data_as_of": to.isoformat(), "world": world_meta}
    rows_added: dict[str, int] = {}
    writer = SnapshotWriter(lake, dataset, metadata=new_metadata, snapshot_id=snapshot_id)
    truth_writer = SnapshotWriter(
        lake, f"{dataset}-truth", metadata=new_metadata, snapshot_id=writer.snapshot_id
    )
    with Snapshot(truth_uri_of(raw.uri)) as old_truth, writer, truth_writer:
        for table in raw.tables:
            added = new_tables.get(table, [])
            rows_added[table] = sum(t.num_rows for t in added)
            if table in STREAMED_TABLES:
                for part in _part_tables(raw, table):
                    writer.append(table, part)
                for part in added:
                    writer.append(table, part)
            else:
                writer.write_table(table, pa.concat_tables([_read_all(raw, table), *added]))
        for table in old_truth.tables:
            old = old_truth.read_table(table)
            if table == "users_truth":
                new = _users_truth(config, world.prefix(n_new), hi)
            elif table in truth_new:
                new = pa.concat_tables([old, truth_new[table].cast(old.schema)])
            else:
                new = old
            truth_writer.write_table(table, new)
        for table in sorted(set(truth_new) - set(old_truth.tables) - {"users_truth"}):
            truth_writer.write_table(table, truth_new[table])
    seconds = time.perf_counter() - started
    log.info(
        "advanced %s to %s in %.1f s: played %s; added %s",
        raw.uri,
        to.isoformat(),
        seconds,
        list(played) or "no plan",
        rows_added,
    )
    return AdvanceResult(
        writer.uri,
        truth_writer.uri,
        writer.snapshot_id,
        to,
        True,
        played,
        tuple(missed),
        tuple(pending),
        n_new - world.n_original,
        rows_added,
        seconds,
    )
