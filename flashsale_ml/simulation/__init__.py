"""A flash-sale world with known ground truth: users, catalogue, browsing, sales and bots."""

from flashsale_ml.simulation.runner import SimulationResult, simulate
from flashsale_ml.simulation.world import SimulationConfig

__all__ = ["SimulationConfig", "SimulationResult", "simulate"]
