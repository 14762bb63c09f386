"""How simulated users behave: everyday browsing sessions and flash-sale visits.

Both generators are vectorized over many users at once and return plain numpy columns; the
runner turns them into contract tables. Times are float seconds since the simulation start.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flashsale_ml.contract import ARMS, CHANNELS, PROMO_TYPES
from flashsale_ml.simulation.world import (
    CATEGORIES,
    CATEGORY_ELASTICITY,
    CATEGORY_MEDIAN_PRICE,
    DIURNAL,
    WEEKDAY_FACTOR,
    Campaign,
    Items,
    SimulationConfig,
    Users,
    sigmoid,
)

VIEW, CART, PURCHASE = 0, 1, 2
ARM_CONTROL = 0  # arm codes: positions in ARMS (0 = control, 1.. = PROMO_TYPES in order)
# Expected events per baseline session (views + carts + purchases); used to turn the configured
# events per user-day into a session rate.
EVENTS_PER_SESSION = 2.55


@dataclass
class Events:
    user: np.ndarray
    item: np.ndarray
    session: np.ndarray
    kind: np.ndarray
    t: np.ndarray
    price: np.ndarray
    channel: np.ndarray

    def __len__(self) -> int:
        return len(self.user)


@dataclass
class Orders:
    user: np.ndarray
    item: np.ndarray
    qty: np.ndarray
    unit_price: np.ndarray
    discount: np.ndarray
    t: np.ndarray
    campaign: np.ndarray  # -1 outside a sale
    status: np.ndarray  # index into ORDER_STATUSES

    def __len__(self) -> int:
        return len(self.user)


@dataclass
class SaleOutcome:
    """Everything one campaign produced, observable and ground truth."""

    campaign: Campaign
    eligible: np.ndarray  # user indices
    arm: np.ndarray  # arm code per eligible user
    true_prob: np.ndarray  # (n_eligible, 1 + n_promos): P(purchase) under each arm
    events: Events
    orders: Orders
    session_starts: np.ndarray
    demand: dict[str, np.ndarray] = field(default_factory=dict)


def _calendar_cdfs(config: SimulationConfig) -> tuple[np.ndarray, np.ndarray]:
    weekday0 = config.start.weekday()
    days = np.arange(config.days)
    day_w = WEEKDAY_FACTOR[(weekday0 + days) % 7].copy()
    day_of_month = np.array([(config.start.day - 1 + d) % 30 + 1 for d in days])
    day_w[(day_of_month >= 25) & (day_of_month <= 28)] *= 1.12  # payday bump
    return np.cumsum(day_w) / day_w.sum(), np.cumsum(DIURNAL) / DIURNAL.sum()


def _session_offsets(k: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """Cumulative in-session offsets for sessions of lengths ``k`` from per-event ``gaps``."""
    cs = np.cumsum(gaps)
    starts = np.repeat(np.cumsum(k) - k, k)
    return cs - cs[starts]


def _channels(users: Users, user_idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    app_user = users.device_type[user_idx] == 3
    other = rng.choice(len(CHANNELS), len(user_idx), p=[0.82, 0.0, 0.1, 0.08])
    return np.where(app_user, 1, other).astype(np.int8)


def _cart_and_buy(
    users: Users,
    items: Items,
    ev_user: np.ndarray,
    ev_item: np.ndarray,
    price: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    cat = items.category[ev_item]
    sens = users.price_sensitivity[ev_user]
    rel_price = np.log(price / CATEGORY_MEDIAN_PRICE[cat])
    markdown = np.log(items.list_price[ev_item] / price)  # > 0 when on markdown
    aff = users.affinity[ev_user, cat] * len(CATEGORIES)
    logit = (
        -2.7
        + users.intent[ev_user]
        + 0.35 * np.log1p(aff)
        - 0.6 * sens * rel_price
        + 6.0 * sens * CATEGORY_ELASTICITY[cat] * markdown
    )
    cart = rng.random(len(ev_user)) < sigmoid(logit)
    buy = cart & (rng.random(len(ev_user)) < sigmoid(-0.4 + 0.6 * users.intent[ev_user]))
    return cart, buy


def _order_lines(
    users: Users,
    items: Items,
    ev: Events,
    buy_mask: np.ndarray,
    campaign: int,
    rng: np.random.Generator,
) -> Orders:
    user = ev.user[buy_mask]
    item = ev.item[buy_mask]
    n = len(user)
    bots = users.is_bot[user]
    qty = np.where(bots, rng.integers(3, 6, n), rng.choice([1, 2, 3], n, p=[0.86, 0.11, 0.03]))
    unit_price = ev.price[buy_mask]
    discount = np.round(items.list_price[item] - unit_price, 2)
    p_return = np.where(discount > 0, 0.09, 0.05)
    u = rng.random(n)
    status = np.where(u < np.where(bots, 0.2, 0.03), 1, np.where(u > 1 - p_return, 2, 0))
    return Orders(
        user=user,
        item=item,
        qty=qty.astype(np.int64),
        unit_price=unit_price,
        discount=np.maximum(discount, 0.0),
        t=ev.t[buy_mask],
        campaign=np.full(n, campaign, dtype=np.int64),
        status=status.astype(np.int8),
    )


def baseline_sessions(
    config: SimulationConfig,
    users: Users,
    items: Items,
    user_lo: int,
    user_hi: int,
    rng: np.random.Generator,
) -> tuple[Events, Orders, np.ndarray]:
    """Everyday browsing of users ``[user_lo, user_hi)`` over the whole horizon.

    Returns events, the order lines of their purchases, and session start times.
    """
    day_cdf, hour_cdf = _calendar_cdfs(config)
    uidx = np.arange(user_lo, user_hi)
    rate = users.activity[uidx] / EVENTS_PER_SESSION * config.days
    s_user = np.repeat(uidx, rng.poisson(rate))
    n_s = len(s_user)

    day = np.searchsorted(day_cdf, rng.random(n_s), side="right")
    own_hour = rng.random(n_s) < 0.4
    hour = np.where(
        own_hour,
        (users.preferred_hour[s_user] + np.round(rng.normal(0, 1.5, n_s)).astype(np.int64)) % 24,
        np.searchsorted(hour_cdf, rng.random(n_s), side="right"),
    )
    s_t = day * 86_400.0 + hour * 3_600.0 + rng.random(n_s) * 3_600.0
    alive = (s_t >= users.signup_offset[s_user]) & (s_t < users.churn_offset[s_user])
    s_user, s_t = s_user[alive], s_t[alive]
    n_s = len(s_user)

    # One category per session, drawn from the user's affinity.
    cum_aff = np.cumsum(users.affinity[s_user], axis=1)
    s_cat = (cum_aff < rng.random(n_s)[:, None] * cum_aff[:, -1:]).sum(axis=1)
    s_cat = np.minimum(s_cat, len(CATEGORIES) - 1)
    s_channel = _channels(users, s_user, rng)

    k = rng.geometric(0.45, n_s)
    ev_sess = np.repeat(np.arange(n_s), k)
    ev_user = s_user[ev_sess]
    ev_item = items.sample_in_category(s_cat[ev_sess], rng)
    ev_t = s_t[ev_sess] + _session_offsets(k, rng.exponential(45.0, len(ev_sess)))
    on_markdown = rng.random(len(ev_sess)) < 0.15
    price = np.round(
        items.list_price[ev_item] * np.where(on_markdown, rng.uniform(0.7, 0.9, len(ev_sess)), 1),
        2,
    )
    cart, buy = _cart_and_buy(users, items, ev_user, ev_item, price, rng)
    cart_t = ev_t + rng.uniform(5, 60, len(ev_t))
    buy_t = cart_t + rng.uniform(20, 300, len(ev_t))

    kind = np.concatenate(
        [np.full(len(ev_t), VIEW), np.full(cart.sum(), CART), np.full(buy.sum(), PURCHASE)]
    ).astype(np.int8)
    sel = [slice(None), cart, buy]
    events = Events(
        user=np.concatenate([ev_user[s] for s in sel]),
        item=np.concatenate([ev_item[s] for s in sel]),
        session=np.concatenate([ev_sess[s] for s in sel]),
        kind=kind,
        t=np.concatenate([ev_t, cart_t[cart], buy_t[buy]]),
        price=np.concatenate([price[s] for s in sel]),
        channel=np.concatenate([s_channel[ev_sess][s] for s in sel]),
    )
    # A session that starts just before churn (or the horizon's end) is cut off there.
    keep = (events.t < config.horizon_seconds) & (events.t < users.churn_offset[events.user])
    events = Events(**{k_: v[keep] for k_, v in events.__dict__.items()})
    purchases = events.kind == PURCHASE
    orders = _order_lines(users, items, events, purchases, -1, rng)
    return events, orders, s_t


def true_sale_probabilities(
    users: Users, items: Items, campaign: Campaign, idx: np.ndarray
) -> np.ndarray:
    """P(purchase in the sale) for users ``idx`` under control and each promotion type.

    The heterogeneous treatment effects are the point of the simulator: price-sensitive users
    respond to a percentage discount (scaled by the category's elasticity), loyal category fans
    who do not care about price respond to a gift, frequent visitors respond to a time-limited
    coupon, and a few 'annoyed' users buy less when promoted to.
    """
    sale_cats = items.category[campaign.item_index]
    cat_share = np.bincount(sale_cats, minlength=len(CATEGORIES)) / len(sale_cats)
    aff_sale = (users.affinity[idx] * cat_share).sum(axis=1) * len(CATEGORIES)
    elasticity = float((cat_share * CATEGORY_ELASTICITY).sum())
    z_act = np.log(users.activity[idx] / np.median(users.activity))
    sens = users.price_sensitivity[idx]

    base = -3.6 + 0.55 * z_act + 0.8 * users.intent[idx] + 0.9 * np.log1p(aff_sale)
    effects = {
        "pct_discount": campaign.discount_depth * elasticity * (4.0 * sens - 1.0),
        "gift_with_purchase": 0.9 * np.log1p(aff_sale) * (1.0 - sens) - 0.15,
        "timed_coupon": 0.8 * sigmoid(1.5 * z_act) - 0.25,
    }
    annoyed = users.annoyed[idx]
    columns = [sigmoid(base)]
    for promo in PROMO_TYPES:
        delta = np.where(annoyed, -0.8, effects[promo])
        columns.append(sigmoid(base + delta))
    return np.column_stack(columns)


def flash_sale(
    config: SimulationConfig,
    users: Users,
    items: Items,
    campaign: Campaign,
    campaign_index: int,
    rng: np.random.Generator,
    assigned_arm: np.ndarray | None = None,
) -> SaleOutcome:
    """Assign arms, simulate visits and purchases, then resolve limited stock by arrival time.

    ``assigned_arm`` (one arm code per user of ``users``) plays a given assignment instead of
    drawing a randomized one: a published plan, where users it leaves out carry
    ``ARM_CONTROL``. No arm is drawn then, so the rest of the draws shift.
    """
    start, end = campaign.start_offset, campaign.end_offset
    duration = end - start
    eligible = np.flatnonzero((users.signup_offset < start) & (users.churn_offset > end))
    n = len(eligible)
    n_arms = len(ARMS)
    if assigned_arm is None:
        arm = np.where(
            rng.random(n) < campaign.holdout_share, ARM_CONTROL, rng.integers(1, n_arms, n)
        )
    else:
        arm = np.asarray(assigned_arm, dtype=np.int64)[eligible]
    probs = true_sale_probabilities(users, items, campaign, eligible)
    p_assigned = probs[np.arange(n), arm]
    bot = users.is_bot[eligible]

    buys = ~bot & (rng.random(n) < p_assigned)
    browses = buys | (~bot & (rng.random(n) < np.minimum(1.0, 3.0 * probs[:, 0] + 0.02)))
    human = eligible[browses]
    human_buys = buys[browses]
    arrival = np.minimum(rng.exponential(600.0, len(human)), duration - 900.0)

    # Humans browse sale items of categories they like.
    sale_items = campaign.item_index
    sale_cats = items.category[sale_items]
    present = np.bincount(sale_cats, minlength=len(CATEGORIES)) > 0
    aff = users.affinity[human] * present
    cum = np.cumsum(aff, axis=1)
    cat = np.minimum(
        (cum < rng.random(len(human))[:, None] * cum[:, -1:]).sum(axis=1), len(CATEGORIES) - 1
    )
    pop = items.popularity[sale_items]
    k = rng.geometric(0.35, len(human))
    v_sess = np.repeat(np.arange(len(human)), k)
    v_item = np.empty(len(v_sess), dtype=np.int64)
    v_cat = cat[v_sess]
    u = rng.random(len(v_sess))
    for c in np.flatnonzero(present):
        in_c = sale_items[sale_cats == c]
        w = np.cumsum(pop[sale_cats == c])
        mask = v_cat == c
        v_item[mask] = in_c[np.minimum(np.searchsorted(w / w[-1], u[mask]), len(in_c) - 1)]
    v_t = start + arrival[v_sess] + _session_offsets(k, rng.exponential(25.0, len(v_sess)))
    first_view = np.cumsum(k) - k
    h_buy_item = v_item[first_view][human_buys]
    h_buy_t = v_t[first_view][human_buys] + rng.uniform(10, 120, human_buys.sum())

    # Bots: nearly all show up in the first minute, hammer the best-sellers, check out at once.
    bot_users = eligible[bot & (rng.random(n) < 0.95)]
    top = sale_items[np.argsort(-pop)[: max(3, len(sale_items) // 10)]]
    b_arrival = rng.exponential(8.0, len(bot_users))
    b_k = rng.integers(10, 41, len(bot_users))
    b_sess = np.repeat(np.arange(len(bot_users)), b_k)
    b_item = top[rng.integers(0, len(top), len(b_sess))]
    b_t = start + b_arrival[b_sess] + _session_offsets(b_k, rng.uniform(0.3, 2.0, len(b_sess)))
    b_buy_item = top[rng.integers(0, len(top), len(bot_users))]
    b_buy_t = start + b_arrival + rng.uniform(1.0, 5.0, len(bot_users))

    # Purchase attempts from humans and bots compete for limited sale stock, first come first
    # served; attempts after an item sells out leave a cart event but no purchase.
    att_user = np.concatenate([human[human_buys], bot_users])
    att_item = np.concatenate([h_buy_item, b_buy_item])
    att_t = np.concatenate([h_buy_t, b_buy_t])
    att_qty = np.concatenate(
        [rng.choice([1, 2], human_buys.sum(), p=[0.9, 0.1]), rng.integers(3, 6, len(bot_users))]
    )
    demand = np.bincount(
        np.searchsorted(sale_items, att_item), weights=att_qty, minlength=len(sale_items)
    )
    stock_factor = rng.uniform(0.45, 1.6, len(sale_items))  # drawn either way: same stream
    if config.sale_stock_factor is not None:
        stock_factor = np.full(len(sale_items), config.sale_stock_factor)
    stock = np.ceil(demand * stock_factor).astype(np.int64) + 1
    order = np.lexsort((att_t, att_item))
    item_pos = np.searchsorted(sale_items, att_item[order])
    cum_qty = np.cumsum(att_qty[order])
    group_start = np.r_[0, np.flatnonzero(np.diff(item_pos)) + 1]
    first_of_group = np.repeat(group_start, np.diff(np.r_[group_start, len(order)]))
    before = cum_qty - att_qty[order] - (cum_qty[first_of_group] - att_qty[order][first_of_group])
    accepted_sorted = before + att_qty[order] <= stock[item_pos]
    accepted = np.empty(len(order), dtype=bool)
    accepted[order] = accepted_sorted
    sold = np.bincount(
        np.searchsorted(sale_items, att_item[accepted]),
        weights=att_qty[accepted],
        minlength=len(sale_items),
    )
    last_sale_t = np.full(len(sale_items), -np.inf)
    np.maximum.at(last_sale_t, np.searchsorted(sale_items, att_item[accepted]), att_t[accepted])
    sellout_t = np.where(sold >= stock, last_sale_t, np.nan)

    sale_price = np.round(items.list_price * (1.0 - campaign.discount_depth), 2)
    n_human_views, n_bot_views = len(v_sess), len(b_sess)
    att_is_bot = np.r_[np.zeros(human_buys.sum(), bool), np.ones(len(bot_users), bool)]
    # Arm-specific price: an extra percentage off for the pct_discount arm.
    arm_of_user = np.zeros(users.n, dtype=np.int8)
    arm_of_user[eligible] = arm
    extra = np.where(arm_of_user[att_user] == 1, 0.1, 0.0) * ~att_is_bot
    att_price = np.round(sale_price[att_item] * (1 - extra), 2)

    user = np.concatenate([human[v_sess], bot_users[b_sess], att_user, att_user[accepted]])
    item = np.concatenate([v_item, b_item, att_item, att_item[accepted]])
    t = np.concatenate([v_t, b_t, att_t - rng.uniform(2, 8, len(att_t)), att_t[accepted]])
    kind = np.concatenate(
        [
            np.full(n_human_views + n_bot_views, VIEW),
            np.full(len(att_user), CART),
            np.full(int(accepted.sum()), PURCHASE),
        ]
    ).astype(np.int8)
    price = np.concatenate([sale_price[v_item], sale_price[b_item], att_price, att_price[accepted]])
    # Session ids are per visitor here (one sale visit each); the runner offsets them globally.
    att_sess = np.concatenate(
        [np.flatnonzero(human_buys), len(human) + np.arange(len(bot_users))]
    ).astype(np.int64)
    session = np.concatenate([v_sess, len(human) + b_sess, att_sess, att_sess[accepted]]).astype(
        np.int64
    )
    channel = _channels(users, user, rng)
    events = Events(
        user=user, item=item, session=session, kind=kind, t=t, price=price, channel=channel
    )
    purchase_mask = kind == PURCHASE
    orders = _order_lines(users, items, events, purchase_mask, campaign_index, rng)
    qty = att_qty[accepted]
    orders.qty = qty.astype(np.int64)

    return SaleOutcome(
        campaign=campaign,
        eligible=eligible,
        arm=arm,
        true_prob=probs,
        events=events,
        orders=orders,
        session_starts=np.concatenate([start + arrival, start + b_arrival]),
        demand={
            "item_index": sale_items,
            "true_demand_qty": demand.astype(np.int64),
            "sale_stock": stock,
            "sold_qty": sold.astype(np.int64),
            "sellout_offset": sellout_t,
        },
    )
