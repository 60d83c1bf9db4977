"""The hourly price of an instance, as the planners use it (:class:`PriceQuote`).

Where a price comes from (SkyPilot's catalog, AWS spot prices, the shipped table) is
:mod:`optuna_seer.pricing`'s business; the planning core only reads quotes.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any

MARKETS = ("on-demand", "spot")
_COLUMNS = (
    "instance_type",
    "accelerator",
    "gpus",
    "dollars_per_hour",
    "market",
    "region",
    "source",
    "date",
)


@dataclass(frozen=True)
class PriceQuote:
    """The hourly price of one instance type.

    Attributes:
        instance_type: The cloud's name for it (``"p3.8xlarge"``), or any label for local slots.
        accelerator: GPU model (``"V100"``); trials are profiled on one accelerator model.
        gpus: GPUs (or local worker slots) per instance.
        dollars_per_hour: Price of the whole instance per hour.
        market: ``"on-demand"`` or ``"spot"``.
        region: Where the price applies (``""`` when it does not matter).
        source: Where the figure came from (``"shipped-table"``, ``"skypilot-catalog"``, …).
        date: When it was read (ISO date).

    Example:
        >>> q = PriceQuote("p3.8xlarge", "V100", 4, 12.24)
        >>> round(q.dollars_per_gpu_hour, 2)
        3.06
    """

    instance_type: str
    accelerator: str
    gpus: int
    dollars_per_hour: float
    market: str = "on-demand"
    region: str = ""
    source: str = "user"
    date: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.instance_type, str) or not self.instance_type:
            raise ValueError(f"instance_type={self.instance_type!r} must be a non-empty string.")
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, int) or self.gpus < 1:
            raise ValueError(
                f"gpus={self.gpus!r} for {self.instance_type} must be a whole number >= 1."
            )
        price = self.dollars_per_hour
        if isinstance(price, bool) or not isinstance(price, (int, float)):
            raise TypeError(f"dollars_per_hour={price!r} for {self.instance_type} is not a number.")
        if not math.isfinite(price) or price < 0:
            raise ValueError(
                f"dollars_per_hour={price!r} for {self.instance_type} must be >= 0 and finite."
            )
        if self.market not in MARKETS:
            raise ValueError(f"market={self.market!r} must be one of {MARKETS}.")

    @property
    def dollars_per_gpu_hour(self) -> float:
        return float(self.dollars_per_hour) / self.gpus

    @property
    def dollars_per_second(self) -> float:
        return float(self.dollars_per_hour) / 3600.0

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _COLUMNS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PriceQuote:
        try:
            return cls(
                instance_type=str(data["instance_type"]),
                accelerator=str(data.get("accelerator", "")),
                gpus=int(data["gpus"]),
                dollars_per_hour=float(data["dollars_per_hour"]),
                market=str(data.get("market", "on-demand")),
                region=str(data.get("region", "")),
                source=str(data.get("source", "user")),
                date=str(data.get("date", "")),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(
                f"not a price quote ({exc}): {data!r}; needs instance_type, gpus, dollars_per_hour."
            ) from None
