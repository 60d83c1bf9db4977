"""Where prices come from: SkyPilot's catalog, AWS spot prices, the shipped table.

Each source returns :class:`~optuna_seer.planning.prices.PriceQuote` objects for the planners;
:class:`ClusterPricer` prices a cloud backend's clusters from them.
"""

from optuna_seer.pricing.clusters import ClusterPricer, launched_hourly_price
from optuna_seer.pricing.sources import (
    aws_spot_quotes,
    find_quote,
    read_price_csv,
    resolve_quote,
    shipped_price_table,
    sky_accelerator_quote,
    sky_catalog_quote,
)

__all__ = [
    "ClusterPricer",
    "aws_spot_quotes",
    "find_quote",
    "launched_hourly_price",
    "read_price_csv",
    "resolve_quote",
    "shipped_price_table",
    "sky_accelerator_quote",
    "sky_catalog_quote",
]
