"""Demand: how many units of each SKU a sale will sell at its discount (P10, P50, P90).

Faces: :mod:`.sale` (a SKU of a flash sale, stock-outs as censoring) and :mod:`.daily` (a
shop's daily SKU series); :mod:`.quantile` is the model both use, :mod:`.decisions` turns its
what-if curves into a discount depth and a stock quantity per SKU."""

from flashsale_ml.models.demand.kind import KIND

__all__ = ["KIND"]
