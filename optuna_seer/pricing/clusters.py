"""What a cluster of GPU nodes costs per hour, and where that figure came from.

A cloud backend prices a cluster twice: an estimate before launching it
(:meth:`ClusterPricer.hourly_price`: SkyPilot's catalog through
:func:`~optuna_seer.pricing.sources.sky_accelerator_quote`, else a configured price per
GPU-hour, else the shipped table with a warning naming its date), then, once it is up, what
SkyPilot says the instances it got cost (:func:`launched_hourly_price`). Every figure comes
with a source string a cost report shows.
"""

from __future__ import annotations

from collections.abc import Sequence
import math
from typing import Any

from optuna_seer.planning.placement import ClusterShape
from optuna_seer.pricing.sources import shipped_quote, sky_accelerator_quote


class ClusterPricer:
    """Hourly prices of clusters of ``accelerator`` nodes on the given infra.

    Args:
        accelerator: GPU name as SkyPilot's catalog spells it (``"A100"``).
        infras: Infra strings the clusters may use (``"aws"``, ``"gcp/us-central1"``); the
            cheapest catalog price among them is the estimate. Empty: SkyPilot may pick any
            cloud, so no single catalog price applies and ``price_per_gpu_hour`` is used.
        use_spot: Price the spot market (the tier SkyPilot tries first).
        price_per_gpu_hour: Price used where the catalog has none (``None``: unknown).

    Example:
        >>> pricer = ClusterPricer("A100", (), use_spot=False, price_per_gpu_hour=2.0)
        >>> pricer.hourly_price(ClusterShape(2, 4))
        (16.0, 'configured $2.0/GPU-hour (no SkyPilot catalog price)')
    """

    def __init__(
        self,
        accelerator: str,
        infras: Sequence[str],
        *,
        use_spot: bool,
        price_per_gpu_hour: float | None,
    ) -> None:
        if price_per_gpu_hour is not None and not (
            isinstance(price_per_gpu_hour, int | float)
            and math.isfinite(price_per_gpu_hour)
            and price_per_gpu_hour >= 0
        ):
            raise ValueError(
                f"price_per_gpu_hour={price_per_gpu_hour!r} must be a finite number >= 0."
            )
        self.accelerator = accelerator
        self.infras = tuple(infras)
        self.use_spot = use_spot
        self.price_per_gpu_hour = price_per_gpu_hour
        self._node_prices: dict[int, tuple[float | None, str]] = {}

    def hourly_price(self, shape: ClusterShape) -> tuple[float | None, str]:
        """Dollars per hour for a cluster of ``shape``, and where the price came from."""
        per_node, source = self.node_price(shape.gpus_per_node)
        return (None if per_node is None else per_node * shape.nodes), source

    def node_price(self, gpus: int) -> tuple[float | None, str]:
        """Dollars per hour of one node with ``gpus`` GPUs (looked up once per size)."""
        if gpus not in self._node_prices:
            self._node_prices[gpus] = self._look_up(gpus)
        return self._node_prices[gpus]

    def _look_up(self, gpus: int) -> tuple[float | None, str]:
        market = "spot" if self.use_spot else "on-demand"
        quotes: list[tuple[float, str]] = []
        for infra in self.infras:
            cloud, _, rest = infra.partition("/")
            region = rest.partition("/")[0]
            quote = sky_accelerator_quote(
                self.accelerator, gpus, cloud=cloud, market=market, region=region
            )
            if quote is not None:
                quotes.append(
                    (quote.dollars_per_hour, f"skypilot catalog: {infra} {quote.instance_type}")
                )
        if quotes:
            price, source = min(quotes)
            return price, source + (" (spot)" if self.use_spot else "")
        if self.price_per_gpu_hour is not None:
            return (
                self.price_per_gpu_hour * gpus,
                f"configured ${self.price_per_gpu_hour}/GPU-hour (no SkyPilot catalog price)",
            )
        shipped = None if self.use_spot else shipped_quote(self.accelerator, gpus)
        if shipped is not None:
            return shipped.dollars_per_hour, (
                f"shipped table dated {shipped.date}: {shipped.instance_type} in "
                f"{shipped.region} (no SkyPilot catalog price, no price_per_gpu_hour)"
            )
        return None, "unknown: no SkyPilot catalog price, no price_per_gpu_hour, no shipped price"


def launched_hourly_price(handle: Any, nodes: int) -> tuple[float, str] | None:
    """What SkyPilot says a launched cluster costs per hour (its handle's
    ``launched_resources`` × ``nodes``), or ``None`` when the handle has no price.

    Example:
        >>> launched_hourly_price(None, 2) is None
        True
    """
    launched: Any = getattr(handle, "launched_resources", None)
    try:
        hourly = float(launched.get_cost(3600)) * nodes
    except Exception:  # no handle, or no catalog price for what was launched
        return None
    if not math.isfinite(hourly) or hourly < 0:
        return None
    return hourly, f"skypilot: {launched}"
