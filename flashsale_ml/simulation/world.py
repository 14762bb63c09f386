"""The simulated world: users with latent traits, a catalogue, and the flash-sale calendar.

Latent traits (activity, price sensitivity, category affinity, purchase intent, bot, churn) are
drawn once here. They are never written to the observable tables, only to the ground truth;
models have to recover them from the behaviour they leave in the clickstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from pydantic import BaseModel, Field, model_validator

from flashsale_ml.config import DEV_PSEUDONYM_KEY
from flashsale_ml.contract import DEVICE_TYPES, PROMO_TYPES, REGIONS, pseudonymize

CATEGORIES = (
    "electronics", "fashion", "home", "beauty", "sports", "toys",
    "books", "grocery", "jewelry", "shoes", "garden", "health",
)  # fmt: skip
# Share of the catalogue, median list price and price elasticity of each category.
CATEGORY_SHARE = np.array([0.08, 0.16, 0.12, 0.09, 0.08, 0.07, 0.10, 0.08, 0.04, 0.07, 0.05, 0.06])
CATEGORY_MEDIAN_PRICE = np.array(
    [180.0, 35.0, 45.0, 22.0, 55.0, 25.0, 14.0, 8.0, 120.0, 70.0, 30.0, 18.0]
)
CATEGORY_ELASTICITY = np.array([1.8, 1.5, 1.2, 1.0, 1.3, 1.1, 0.7, 0.5, 1.6, 1.4, 0.9, 0.6])
ADJECTIVES = ("Classic", "Pro", "Eco", "Ultra", "Mini", "Deluxe", "Smart", "Vintage", "Sport")

# Calendar shape: weekday multipliers (Mon..Sun) and a diurnal profile (share of sessions per
# UTC hour), roughly what a European shop sees.
WEEKDAY_FACTOR = np.array([0.95, 0.92, 0.95, 1.0, 1.08, 1.2, 1.15])
DIURNAL = np.array(
    [0.6, 0.35, 0.2, 0.15, 0.15, 0.25, 0.5, 0.9, 1.2, 1.3, 1.35, 1.4,
     1.5, 1.45, 1.35, 1.3, 1.35, 1.5, 1.75, 2.0, 2.1, 1.9, 1.5, 1.0]
)  # fmt: skip


class SimulationConfig(BaseModel):
    """Everything that determines a simulated dataset: same config, same bytes."""

    model_config = {"frozen": True}

    users: int = Field(default=5_000, ge=10)
    days: int = Field(default=28, ge=7, le=3650)
    items: int | None = Field(default=None, ge=10, description="default: users // 10, >= 50")
    seed: int = 42
    start: datetime = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
    events_per_user_day: float = Field(default=3.5, gt=0)
    bot_share: float = Field(default=0.02, ge=0, le=0.2)
    churn_share: float = Field(default=0.2, ge=0, le=1)
    sale_every_days: int = Field(default=7, ge=1)
    sale_hour_utc: int = Field(default=19, ge=0, le=23)
    sale_duration_hours: int = Field(default=2, ge=1, le=24)
    sale_item_share: float = Field(default=0.02, gt=0, le=1)
    holdout_share: float = Field(default=0.2, gt=0, lt=1)
    sale_stock_factor: float | None = Field(
        default=None,
        gt=0,
        description="None: each sale item's stock is its demand times a random factor in "
        "[0.45, 1.6) (sellouts happen); a number: stock = ceil(demand * factor) + 1 for every "
        "item (e.g. 1000: no sellouts, so realized sale purchases follow the true purchase "
        "probabilities). The same random draws are made either way.",
    )
    chunk_users: int = Field(default=50_000, ge=1_000)
    # The public development key is fine for simulated users in a local lake; the CLI and the
    # steps pass the configured key (config.check_pseudonym_key refuses it for s3:// lakes).
    pseudonym_key: str = Field(default=DEV_PSEUDONYM_KEY, min_length=1, repr=False)

    @model_validator(mode="after")
    def _utc_start(self) -> SimulationConfig:
        if self.start.tzinfo is None or self.start.utcoffset() != timedelta(0):
            raise ValueError("start must be a UTC timestamp")
        return self

    @property
    def n_items(self) -> int:
        return self.items if self.items is not None else max(50, self.users // 10)

    @property
    def horizon_seconds(self) -> int:
        return self.days * 86_400

    def sale_starts(self) -> list[int]:
        """Second offsets of each sale's start; the first sale leaves six days of history."""
        first = min(6, self.days - 1)
        return [
            d * 86_400 + self.sale_hour_utc * 3_600
            for d in range(first, self.days, self.sale_every_days)
            if d * 86_400 + (self.sale_hour_utc + self.sale_duration_hours) * 3_600
            <= self.horizon_seconds
        ]


def rng_for(config: SimulationConfig, *stream: int) -> np.random.Generator:
    """An independent, reproducible random stream per component (and per chunk)."""
    return np.random.default_rng([config.seed, *stream])


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Users:
    user_id: np.ndarray  # int64 pseudonymous ids
    signup_offset: np.ndarray  # seconds relative to start (negative = before the horizon)
    churn_offset: np.ndarray  # seconds; horizon+ for users who never churn
    region: np.ndarray  # index into REGIONS
    device_type: np.ndarray  # index into DEVICE_TYPES
    activity: np.ndarray  # expected events per day
    price_sensitivity: np.ndarray  # 0..1
    affinity: np.ndarray  # (n, n_categories) float32 rows summing to 1
    intent: np.ndarray  # logit shift of buying given interest
    preferred_hour: np.ndarray
    annoyed: np.ndarray  # bool: put off by promotions
    is_bot: np.ndarray  # bool
    device_id: np.ndarray
    ip_hash: np.ndarray

    @property
    def n(self) -> int:
        return len(self.user_id)


@dataclass
class Items:
    item_id: np.ndarray
    category: np.ndarray  # index into CATEGORIES
    brand: np.ndarray  # strings
    list_price: np.ndarray
    cost: np.ndarray
    stock_on_hand: np.ndarray
    title: np.ndarray
    popularity: np.ndarray  # within-category sampling weight
    # Items sorted by category with a cumulative popularity that runs from c to c+1 inside
    # category c, so one searchsorted draws an item of a given category.
    sorted_index: np.ndarray
    category_cdf: np.ndarray

    @property
    def n(self) -> int:
        return len(self.item_id)

    def sample_in_category(self, category: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Draw one item index per entry of ``category`` with probability ∝ popularity."""
        u = category + rng.random(len(category)) * 0.999_999
        pos = np.searchsorted(self.category_cdf, u, side="right")
        return self.sorted_index[np.minimum(pos, len(self.sorted_index) - 1)]


@dataclass
class Campaign:
    campaign_id: str
    start_offset: int
    end_offset: int
    item_index: np.ndarray
    promo_types: tuple[str, ...]
    discount_depth: float
    budget: float
    holdout_share: float
    # contract.RANDOMIZED (the simulator's own sales) or contract.TARGETED (a played plan)
    design: str = "randomized"


def make_users(config: SimulationConfig) -> Users:
    n = config.users
    rng = rng_for(config, 1)
    horizon = config.horizon_seconds

    raw_activity = rng.lognormal(0.0, 1.1, n)  # heavy-tailed: a few users do most browsing
    activity = raw_activity / raw_activity.mean() * config.events_per_user_day

    new_user = rng.random(n) < 0.12
    signup = np.where(
        new_user,
        rng.integers(0, max(1, horizon - 7 * 86_400), n),
        -rng.integers(86_400, 900 * 86_400, n),
    )
    churns = rng.random(n) < config.churn_share
    churn = np.where(
        churns, np.maximum(signup, 0) + rng.integers(86_400, horizon + 1, n), horizon + 1
    )

    is_bot = rng.random(n) < config.bot_share
    activity = np.where(is_bot, 0.3, activity)  # bots are quiet until a sale opens
    churn = np.where(is_bot, horizon + 1, churn)
    signup = np.where(is_bot, -rng.integers(86_400, 60 * 86_400, n), signup)

    device_id = rng.integers(1, 2**62, n, dtype=np.int64)
    household = rng.random(n) < 0.05
    household[0] = False
    device_id = np.where(household, np.roll(device_id, 1), device_id)
    ip_hash = rng.integers(1, 2**62, max(1, n // 2), dtype=np.int64)[
        rng.integers(0, max(1, n // 2), n)
    ]
    # Bot rings: 10-30 accounts behind one device fingerprint and a handful of IPs.
    bot_idx = np.flatnonzero(is_bot)
    ring = np.arange(len(bot_idx)) // 20
    n_rings = int(ring.max()) + 1 if len(bot_idx) else 0
    ring_device = rng.integers(1, 2**62, n_rings, dtype=np.int64)
    ring_ip = rng.integers(1, 2**62, n_rings * 3, dtype=np.int64)
    device_id[bot_idx] = ring_device[ring]
    ip_hash[bot_idx] = ring_ip[ring * 3 + rng.integers(0, 3, len(bot_idx))]

    affinity = rng.dirichlet(np.full(len(CATEGORIES), 0.35), n).astype(np.float32)
    return Users(
        user_id=pseudonymize((f"U{i:09d}" for i in range(n)), config.pseudonym_key),
        signup_offset=signup.astype(np.int64),
        churn_offset=churn.astype(np.int64),
        region=rng.choice(len(REGIONS), n, p=[0.22, 0.2, 0.18, 0.18, 0.17, 0.05]),
        device_type=rng.choice(len(DEVICE_TYPES), n, p=[0.45, 0.3, 0.07, 0.18, 0.0]),
        activity=activity,
        price_sensitivity=rng.beta(2.0, 2.0, n),
        affinity=affinity,
        intent=rng.normal(0.0, 0.8, n),
        preferred_hour=np.round(rng.normal(19.0, 3.5, n)).astype(np.int64) % 24,
        annoyed=rng.random(n) < 0.05,
        is_bot=is_bot,
        device_id=device_id,
        ip_hash=ip_hash,
    )


def make_items(config: SimulationConfig) -> Items:
    m = config.n_items
    rng = rng_for(config, 2)
    category = rng.choice(len(CATEGORIES), m, p=CATEGORY_SHARE / CATEGORY_SHARE.sum())
    popularity = np.empty(m)
    for c in range(len(CATEGORIES)):
        idx = np.flatnonzero(category == c)
        ranks = rng.permutation(len(idx)) + 1
        popularity[idx] = 1.0 / ranks**1.05  # Zipf: a few best-sellers per category
    brand_rank = np.minimum(rng.zipf(1.6, m), 25)
    brand = np.array(
        [
            f"{CATEGORIES[c][:3].title()}Co-{b:02d}"
            for c, b in zip(category, brand_rank, strict=True)
        ]
    )
    list_price = np.round(CATEGORY_MEDIAN_PRICE[category] * rng.lognormal(0.0, 0.55, m), 0) - 0.01
    list_price = np.maximum(list_price, 0.99)
    cost = np.round(list_price * rng.uniform(0.35, 0.75, m), 2)
    stock = rng.poisson(20 + 400 * popularity).astype(np.int64)
    adjective = rng.choice(len(ADJECTIVES), m)
    title = np.array(
        [
            f"{brand[i]} {ADJECTIVES[adjective[i]]} {CATEGORIES[category[i]]} item {i}"
            for i in range(m)
        ]
    )

    order = np.lexsort((np.arange(m), category))
    cdf = np.empty(m)
    for c in range(len(CATEGORIES)):
        in_cat = order[category[order] == c]
        if len(in_cat):
            pos = np.flatnonzero(category[order] == c)
            cdf[pos] = c + np.cumsum(popularity[in_cat]) / popularity[in_cat].sum()
    return Items(
        item_id=np.arange(m, dtype=np.int64) + 1_000_000,
        category=category,
        brand=brand,
        list_price=list_price,
        cost=cost,
        stock_on_hand=stock,
        title=title,
        popularity=popularity,
        sorted_index=order,
        category_cdf=cdf,
    )


def make_campaigns(config: SimulationConfig, items: Items) -> list[Campaign]:
    rng = rng_for(config, 3)
    campaigns = []
    n_sale = max(10, round(items.n * config.sale_item_share))
    # Sale items lean towards popular SKUs, as merchandisers pick them.
    weight = items.popularity / items.popularity.sum()
    for i, start in enumerate(config.sale_starts()):
        chosen = np.sort(rng.choice(items.n, min(n_sale, items.n), replace=False, p=weight))
        depth = float(np.round(rng.uniform(0.2, 0.5), 2))
        start_dt = config.start + timedelta(seconds=start)
        campaigns.append(
            Campaign(
                campaign_id=f"fs-{start_dt:%Y%m%d}-{i + 1:02d}",
                start_offset=start,
                end_offset=start + config.sale_duration_hours * 3_600,
                item_index=chosen,
                promo_types=PROMO_TYPES,
                discount_depth=depth,
                budget=float(np.round(0.02 * config.users * depth * 40, -2)),
                holdout_share=config.holdout_share,
            )
        )
    return campaigns
