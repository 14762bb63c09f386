"""Uplift: who buys because of which promotion. Flavors ``dr`` (default), ``x``, ``t``, ``s``."""

from flashsale_ml.models.uplift.kind import KIND

__all__ = ["KIND"]
