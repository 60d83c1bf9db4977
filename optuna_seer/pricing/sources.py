"""What an instance costs per hour, and where that figure came from.

Three sources, best first:

1. SkyPilot's catalog (:func:`sky_catalog_quote` for an instance type,
   :func:`sky_accelerator_quote` for the cheapest instance with some GPUs): the cloud's
   catalog CSV on disk (``~/.sky/catalogs/<version>/<cloud>/vms.csv``), which SkyPilot is
   allowed to fetch once when it is missing (at most :data:`FETCH_TIMEOUT_S` seconds; offline,
   or with ``SEER_PRICE_FETCH=0``, nothing is fetched and the next source answers).
2. AWS spot prices from EC2's ``describe_spot_price_history`` (:func:`aws_spot_quotes`), when
   boto3 finds credentials.
3. A small table shipped with the package (:func:`shipped_price_table`): list prices with their
   source and date, the offline fallback, used only with a warning that names its date
   (:func:`shipped_quote`). Pass your own CSV, or a price, for real budgets.

Every figure is a :class:`PriceQuote`, so a plan can say which price it assumed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
import csv
import datetime
import importlib.resources
import math
import os
from pathlib import Path
import threading
from typing import Any

from optuna_seer._install import install_hint
from optuna_seer._logging import get_logger
from optuna_seer.planning.prices import MARKETS, PriceQuote

logger = get_logger(__name__)

FETCH_TIMEOUT_S = 30.0
"""Longest wait for SkyPilot to fetch a missing catalog before the next source answers."""
ENV_PRICE_FETCH = "SEER_PRICE_FETCH"
"""``0``: never let SkyPilot fetch a missing catalog (offline machines, tests)."""
_UNFETCHABLE: set[str] = set()  # clouds whose catalog could not be fetched by this process
_WARNED: set[str] = set()


def read_price_csv(path: str | Path) -> tuple[PriceQuote, ...]:
    """Quotes from a CSV with the columns of the shipped table (``optuna_seer/data/prices.csv``).

    Raises:
        ValueError: A column is missing or a row is malformed; the message names the row.
    """
    with open(path, newline="", encoding="utf-8") as handle:
        return _parse_rows(csv.DictReader(handle), str(path))


def shipped_price_table() -> tuple[PriceQuote, ...]:
    """The offline fallback: list prices shipped with the package, each with source and date.
    Quote from it through :func:`shipped_quote` (which warns), not directly.

    Example:
        >>> any(q.instance_type == "p5.48xlarge" for q in shipped_price_table())
        True
    """
    text = importlib.resources.files("optuna_seer").joinpath("data/prices.csv").read_text("utf-8")
    return _parse_rows(csv.DictReader(text.splitlines()), "optuna_seer/data/prices.csv")


def _parse_rows(rows: Iterable[dict[str, str]], where: str) -> tuple[PriceQuote, ...]:
    quotes = []
    for line, row in enumerate(rows, start=2):
        missing = [c for c in ("instance_type", "gpus", "dollars_per_hour") if not row.get(c)]
        if missing:
            raise ValueError(f"{where}:{line}: missing {', '.join(missing)} in {row!r}.")
        try:
            quotes.append(PriceQuote.from_dict(dict(row)))
        except ValueError as exc:
            raise ValueError(f"{where}:{line}: {exc}") from None
    return tuple(quotes)


def find_quote(
    quotes: Sequence[PriceQuote], instance_type: str, market: str = "on-demand", region: str = ""
) -> PriceQuote:
    """The quote for ``instance_type`` in ``market`` (and ``region`` if given); cheapest wins.

    Raises:
        ValueError: No quote matches; the message lists the instance types that have one.
    """
    matches = [
        q
        for q in quotes
        if q.instance_type == instance_type
        and q.market == market
        and (not region or q.region == region)
    ]
    if not matches:
        known = sorted({q.instance_type for q in quotes if q.market == market})
        raise ValueError(
            f"no {market} price for instance type {instance_type!r}"
            f"{f' in {region}' if region else ''}; known: {', '.join(known) or 'none'}."
        )
    return min(matches, key=lambda q: q.dollars_per_hour)


def shipped_quote(accelerator: str, gpus: int, market: str = "on-demand") -> PriceQuote | None:
    """The cheapest shipped-table instance with ``gpus`` x ``accelerator`` (``None``: none),
    with a warning, once per instance type, that names the table's date: list prices change,
    and SkyPilot's catalog (or your own price) is the better source.

    Example:
        >>> shipped_quote("H100", 8).instance_type
        'p5.48xlarge'
    """
    matches = [
        q
        for q in shipped_price_table()
        if q.accelerator == accelerator and q.gpus == gpus and q.market == market
    ]
    if not matches:
        return None
    quote = min(matches, key=lambda q: q.dollars_per_hour)
    _warn_shipped(quote)
    return quote


def _warn_shipped(quote: PriceQuote, why: str = "which was not available") -> None:
    if quote.instance_type in _WARNED:
        return
    _WARNED.add(quote.instance_type)
    logger.warning(
        "PRICE FROM THE SHIPPED TABLE DATED %s: %s (%s x %s) at $%.4f/hour %s in %s (source: "
        "%s), not from SkyPilot's catalog, %s. List prices change; check "
        "`sky gpus list %s:%s` or pass your own price.",
        quote.date,
        quote.instance_type,
        quote.gpus,
        quote.accelerator,
        quote.dollars_per_hour,
        quote.market,
        quote.region or "any region",
        quote.source,
        why,
        quote.accelerator,
        quote.gpus,
    )


def _sky_catalog(cloud: str, fetch: bool = True) -> Any | None:
    """SkyPilot's ``sky.catalog`` module when ``cloud``'s catalog CSV is on disk (fetched by
    SkyPilot first if it is missing and ``fetch`` allows), else ``None``.

    The one gate of every catalog lookup here: never for no cloud at all (SkyPilot would fetch
    every cloud's), a fetch at most once per cloud and process and :data:`FETCH_TIMEOUT_S`
    long, and none with ``SEER_PRICE_FETCH=0``.
    """
    if not cloud:
        return None
    try:
        from sky import catalog as sky_catalog
        from sky.catalog import common as sky_common
    except ImportError:
        return None
    path = sky_common.get_catalog_path(f"{cloud}/vms.csv")
    if os.path.exists(path):
        return sky_catalog
    if not fetch or cloud in _UNFETCHABLE or os.environ.get(ENV_PRICE_FETCH, "1") == "0":
        return None
    _fetch_catalog(sky_catalog, cloud)
    if os.path.exists(path):
        return sky_catalog
    _UNFETCHABLE.add(cloud)
    logger.warning(
        "SkyPilot's %s price catalog is not on disk and could not be fetched (offline?): "
        "prices come from the configured price or the shipped table.",
        cloud,
    )
    return None


def _fetch_catalog(sky_catalog: Any, cloud: str) -> None:
    """Let SkyPilot fetch ``cloud``'s catalog (any lookup does), waiting at most
    :data:`FETCH_TIMEOUT_S` (SkyPilot's own request has no timeout)."""

    def lookup() -> None:
        try:
            sky_catalog.list_accelerators(gpus_only=True, clouds=cloud)
        except Exception as exc:  # offline, rate-limited …: the caller sees no CSV
            logger.debug("fetching SkyPilot's %s catalog failed: %s", cloud, exc)

    worker = threading.Thread(target=lookup, name=f"sky-catalog-{cloud}", daemon=True)
    worker.start()
    worker.join(FETCH_TIMEOUT_S)


def _check_market(market: str) -> None:
    if market not in MARKETS:
        raise ValueError(f"market={market!r} must be one of {MARKETS}.")


def sky_catalog_quote(
    instance_type: str, *, cloud: str = "aws", market: str = "on-demand", region: str = ""
) -> PriceQuote | None:
    """The price SkyPilot's catalog gives, or ``None`` when SkyPilot or its catalog is absent
    (a missing catalog is fetched once if it can be: see :func:`_sky_catalog`). ``region``
    empty: the cheapest region's price.
    """
    _check_market(market)
    catalog = _sky_catalog(cloud.lower())
    if catalog is None:
        return None
    try:
        price = catalog.get_hourly_cost(
            instance_type, market == "spot", region or None, None, clouds=cloud.lower()
        )
        accelerators = catalog.get_accelerators_from_instance_type(
            instance_type, clouds=cloud.lower()
        )
    except Exception:  # SkyPilot raises many types for an unknown type/region: no quote then.
        return None
    if not accelerators or not math.isfinite(price) or price < 0:
        return None
    name, count = next(iter(accelerators.items()))
    return PriceQuote(
        instance_type=instance_type,
        accelerator=name,
        gpus=max(1, math.ceil(count)),
        dollars_per_hour=float(price),
        market=market,
        region=region,
        source=f"skypilot-catalog:{cloud.lower()}",
        date=datetime.date.today().isoformat(),
    )


def sky_accelerator_quote(
    accelerator: str,
    gpus: int,
    *,
    cloud: str = "aws",
    market: str = "on-demand",
    region: str = "",
) -> PriceQuote | None:
    """The cheapest instance type of ``cloud`` with ``gpus`` × ``accelerator``, priced by
    SkyPilot's catalog (:func:`sky_catalog_quote`); ``None`` when the catalog is not there (and
    cannot be fetched) or has no such instance.
    """
    _check_market(market)
    catalog = _sky_catalog(cloud.lower())
    if catalog is None:
        return None
    try:
        types, _ = catalog.get_instance_type_for_accelerator(
            accelerator,
            gpus,
            use_spot=market == "spot",
            region=region or None,
            clouds=cloud.lower(),
        )
    except Exception:  # offline or partial catalogs raise many kinds: no quote then.
        return None
    if not types:
        return None
    # SkyPilot lists the matching instance types cheapest first.
    return sky_catalog_quote(types[0], cloud=cloud, market=market, region=region)


def aws_spot_quotes(
    instance_types: Sequence[str],
    *,
    region: str = "us-east-1",
    on_demand: Sequence[PriceQuote] = (),
    client: Any = None,
) -> tuple[PriceQuote, ...]:
    """Current AWS spot prices (cheapest zone) for ``instance_types``.

    Uses EC2 ``describe_spot_price_history`` through botocore, which the ``s3`` extra brings
    (``client``: an EC2 client, e.g. one with an ``endpoint_url``; by default botocore's
    ``create_client("ec2", region_name=region)`` with the usual AWS credentials).
    GPUs and accelerator are taken from the matching ``on_demand`` quote or the shipped table.

    Raises:
        RuntimeError: botocore is not installed or has no credentials; the message says which.
    """
    try:
        import botocore.exceptions
        import botocore.session
    except ImportError:
        raise RuntimeError(
            f"AWS spot prices need botocore: {install_hint('s3', 'botocore')}."
        ) from None
    if client is None:
        client = botocore.session.get_session().create_client("ec2", region_name=region)
    known = {q.instance_type: q for q in (*shipped_price_table(), *on_demand)}
    latest: dict[str, tuple[datetime.datetime, float]] = {}
    try:
        pages = client.get_paginator("describe_spot_price_history").paginate(
            InstanceTypes=list(instance_types),
            ProductDescriptions=["Linux/UNIX"],
            StartTime=datetime.datetime.now(datetime.timezone.utc),
        )
        for page in pages:
            for entry in page["SpotPriceHistory"]:
                name, price = entry["InstanceType"], float(entry["SpotPrice"])
                stamp = entry["Timestamp"]
                if name not in latest or price < latest[name][1]:
                    latest[name] = (stamp, price)
    except botocore.exceptions.NoCredentialsError:
        raise RuntimeError(
            "AWS spot prices need credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a "
            "profile); falling back to on-demand prices is the caller's choice."
        ) from None
    quotes = []
    for name in instance_types:
        if name not in latest or name not in known:
            continue
        stamp, price = latest[name]
        quotes.append(
            PriceQuote(
                instance_type=name,
                accelerator=known[name].accelerator,
                gpus=known[name].gpus,
                dollars_per_hour=price,
                market="spot",
                region=region,
                source="aws-describe-spot-price-history",
                date=stamp.date().isoformat(),
            )
        )
    return tuple(quotes)


def resolve_quote(
    instance_type: str,
    *,
    market: str = "on-demand",
    region: str = "",
    table: Sequence[PriceQuote] | None = None,
    use_sky: bool = True,
) -> PriceQuote:
    """The best available price for ``instance_type``: SkyPilot's catalog, else ``table``
    (default: the shipped table, with a warning naming its date).

    Example:
        >>> resolve_quote("p3.8xlarge", use_sky=False).gpus
        4
    """
    if use_sky:
        quote = sky_catalog_quote(instance_type, market=market, region=region)
        if quote is not None:
            return quote
    if table is not None:
        return find_quote(table, instance_type, market, region)
    quote = find_quote(shipped_price_table(), instance_type, market, region)
    # With use_sky=False (the CLI's --no-sky) the catalog was not asked, not missing.
    _warn_shipped(quote, "which was not available" if use_sky else "which was not read (--no-sky)")
    return quote
