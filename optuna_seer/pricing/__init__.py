"""Where prices come from: SkyPilot's catalog, AWS spot prices, the shipped table.

Each source returns :class:`~optuna_seer.planning.prices.PriceQuote` objects for the planners.
"""

from optuna_seer.pricing.sources import (
    aws_spot_quotes,
    find_quote,
    read_price_csv,
    resolve_quote,
    shipped_price_table,
    sky_catalog_quote,
)

__all__ = [
    "aws_spot_quotes",
    "find_quote",
    "read_price_csv",
    "resolve_quote",
    "shipped_price_table",
    "sky_catalog_quote",
]
