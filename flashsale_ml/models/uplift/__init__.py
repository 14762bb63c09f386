"""Uplift: who buys because of which promotion. Flavors ``x`` (default), ``dr``, ``t``, ``s``."""

from flashsale_ml.models.uplift.kind import KIND

__all__ = ["KIND"]
