"""A simulated shop with the champions campaign planning needs, for the planning tests and the
end-to-end loop (the same shop, so the same gates pass)."""

from __future__ import annotations

from flashsale_ml.config import Settings
from flashsale_ml.simulation import SimulationConfig

# 4,000 users x 35 days: five weekly sales (stock never caps a purchase); the S-learner passes
# the uplift gates on it (seed 11), so planning has both champions.
PLANNING_SHOP = SimulationConfig(users=4_000, days=35, seed=11, sale_stock_factor=1000)
CHAMPION_FLAVORS = (("propensity", "lgbm"), ("uplift", "s"))


def shop_with_champions(settings: Settings, config: SimulationConfig = PLANNING_SHOP) -> dict:
    """Simulate ``config`` into the settings' lake, validate, build features, and train,
    register and promote one champion per kind planning uses. Returns the raw snapshot URI and
    the champion versions; fails when a champion is not promoted."""
    from flashsale_ml import steps
    from flashsale_ml.simulation import simulate
    from flashsale_ml.storage import open_store

    shop = simulate(config, open_store(settings.lake_uri))
    steps.validate_data(shop.raw_uri, settings=settings)
    features = steps.build_features(shop.raw_uri, settings=settings)
    versions = {}
    for kind, flavor in CHAMPION_FLAVORS:
        trained = steps.train_model(features, kind, flavor, settings=settings)
        registered = steps.register_model(trained["run_id"], kind, settings=settings)
        decision = steps.promote_model(registered["version"], kind, settings=settings)
        assert decision["promoted"], decision
        versions[kind] = registered["version"]
    return {"raw_uri": shop.raw_uri, "versions": versions}
