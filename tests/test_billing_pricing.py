"""Billing rules and price sources (shipped table, CSV, SkyPilot catalog, AWS spot via moto)."""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import optuna_seer
from optuna_seer.planning.billing import BillingRule
from optuna_seer.planning.placement import ClusterShape
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.pricing import sources
from optuna_seer.pricing.clusters import ClusterPricer, launched_hourly_price
from optuna_seer.pricing.sources import (
    aws_spot_quotes,
    find_quote,
    read_price_csv,
    resolve_quote,
    shipped_price_table,
    shipped_quote,
)

ROOT = Path(optuna_seer.__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("spec", "seconds", "billed"),
    [
        ("exact", 12.5, 12.5),
        ("per-second", 12.5, 60.0),
        ("per-second", 61.2, 62.0),
        ("per-minute", 61.0, 120.0),
        ("per-hour", 1.0, 3600.0),
        ("per-hour", 3600.0, 3600.0),
        ("per-hour", 3600.5, 7200.0),
        ("per-second:10m", 30.0, 600.0),
        ("increment:1m,minimum:10m", 700.0, 720.0),
    ],
)
def test_billing_rounds_leases(spec: str, seconds: float, billed: float) -> None:
    assert BillingRule.parse(spec).billed_seconds(seconds) == billed


def test_billing_array_and_round_trip() -> None:
    rule = BillingRule.parse("per-hour")
    np.testing.assert_array_equal(rule.billed_array(np.array([1.0, 7200.0])), [3600.0, 7200.0])
    assert BillingRule.parse(rule.to_spec()) == rule
    odd = BillingRule(30.0, 90.0)
    assert BillingRule.parse(odd.to_spec()) == odd


@pytest.mark.parametrize("spec", ["per-fortnight", "per-second:abc", "increment:1m"])
def test_billing_rejects_unknown_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="billing"):
        BillingRule.parse(spec)


def test_billing_rejects_negative() -> None:
    with pytest.raises(ValueError, match="increment_s"):
        BillingRule(-1.0, 0.0)


def test_shipped_table_has_sources_and_dates() -> None:
    table = shipped_price_table()
    assert len(table) >= 5
    for quote in table:
        assert quote.source and quote.date and quote.dollars_per_hour > 0
    v100 = find_quote(table, "p3.8xlarge")
    assert v100.gpus == 4 and v100.dollars_per_gpu_hour == pytest.approx(3.06)


def test_the_shipped_table_has_current_gpus_dated_with_their_source() -> None:
    # Refreshed from SkyPilot's own AWS catalog (skypilot-catalog, v8 aws vms.csv, us-east-1
    # on-demand): H100, H200, A100 (40 and 80 GB) and L4 nodes, each row dated.
    table = {q.instance_type: q for q in shipped_price_table()}
    expected = {
        "p5.48xlarge": ("H100", 8, 55.04),
        "p5en.48xlarge": ("H200", 8, 63.296),
        "p4d.24xlarge": ("A100", 8, 21.957642),
        "p4de.24xlarge": ("A100-80GB", 8, 27.44705),
        "g6.2xlarge": ("L4", 1, 0.9776),
    }
    for name, (accelerator, gpus, price) in expected.items():
        quote = table[name]
        assert (quote.accelerator, quote.gpus, quote.dollars_per_hour) == (accelerator, gpus, price)
        assert quote.date == "2026-12-04" and quote.source.startswith("skypilot-catalog")


def test_a_shipped_price_is_used_only_with_a_warning_naming_its_date(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sources._WARNED.discard("p5en.48xlarge")
    with caplog.at_level("WARNING", logger="optuna_seer.pricing.sources"):
        quote = shipped_quote("H200", 8)
        assert quote is not None and quote.instance_type == "p5en.48xlarge"
        shipped_quote("H200", 8)
    warnings = [r.getMessage() for r in caplog.records if "SHIPPED TABLE" in r.getMessage()]
    assert len(warnings) == 1, warnings  # loud, and once
    assert "DATED 2026-12-04" in warnings[0] and "sky gpus list H200:8" in warnings[0]
    assert shipped_quote("H200", 3) is None


def test_the_shipped_price_warning_says_why_the_catalog_was_not_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # optuna-seer plan --no-sky used to warn that SkyPilot's catalog "was not available".
    sources._WARNED.discard("p3.8xlarge")
    with caplog.at_level("WARNING", logger="optuna_seer.pricing.sources"):
        resolve_quote("p3.8xlarge", use_sky=False)
    warnings = [r.getMessage() for r in caplog.records if "SHIPPED TABLE" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "which was not read (--no-sky)" in warnings[0]
    assert "not available" not in warnings[0]


def test_cluster_prices_come_from_catalog_then_configured_then_shipped_table() -> None:
    # No catalog (no infra named): a configured price wins over the shipped table; without
    # one the shipped table answers and says its date; spot has no shipped price.
    configured = ClusterPricer("H100", (), use_spot=False, price_per_gpu_hour=2.0)
    assert configured.hourly_price(ClusterShape(1, 8))[0] == 16.0
    shipped = ClusterPricer("H100", (), use_spot=False, price_per_gpu_hour=None)
    price, source = shipped.hourly_price(ClusterShape(2, 8))
    assert price == pytest.approx(2 * 55.04)
    assert source.startswith("shipped table dated 2026-12-04: p5.48xlarge")
    spot = ClusterPricer("H100", (), use_spot=True, price_per_gpu_hour=None)
    assert spot.hourly_price(ClusterShape(1, 8))[0] is None


def test_find_quote_names_known_types() -> None:
    with pytest.raises(ValueError, match=r"p3\.2xlarge"):
        find_quote(shipped_price_table(), "p99.mega")


def test_price_csv_errors_name_the_row(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("instance_type,gpus,dollars_per_hour\nlocal,2,0.5\n")
    assert read_price_csv(good)[0] == PriceQuote("local", "", 2, 0.5)
    bad = tmp_path / "bad.csv"
    bad.write_text("instance_type,gpus,dollars_per_hour\nlocal,two,0.5\n")
    with pytest.raises(ValueError, match=r"bad\.csv:2"):
        read_price_csv(bad)
    missing = tmp_path / "missing.csv"
    missing.write_text("instance_type,gpus\nlocal,2\n")
    with pytest.raises(ValueError, match="dollars_per_hour"):
        read_price_csv(missing)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gpus": 0}, "gpus"),
        ({"dollars_per_hour": -1.0}, "dollars_per_hour"),
        ({"market": "reserved"}, "market"),
    ],
)
def test_price_quote_validation(kwargs: dict[str, object], match: str) -> None:
    fields: dict[str, object] = {
        "instance_type": "x",
        "accelerator": "V100",
        "gpus": 1,
        "dollars_per_hour": 1.0,
    }
    fields.update(kwargs)
    with pytest.raises(ValueError, match=match):
        PriceQuote(**fields)  # type: ignore[arg-type]


def test_resolve_quote_from_shipped_table_or_user_table() -> None:
    assert resolve_quote("p3.2xlarge", use_sky=False).source == "aws-ec2-on-demand-pricing-page"
    mine = (PriceQuote("local-slot", "cpu", 1, 0.1),)
    assert resolve_quote("local-slot", table=mine, use_sky=False) == mine[0]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sky_catalog_is_read_when_on_disk(tmp_path: Path) -> None:
    """A hand-written SkyPilot v8 catalog under HOME is read by SkyPilot's own catalog code."""
    catalog = tmp_path / ".sky" / "catalogs" / "v8" / "aws"
    catalog.mkdir(parents=True)
    (catalog / "vms.csv").write_text(
        "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,"
        "SpotPrice,Region,AvailabilityZone\n"
        "p3.8xlarge,V100,4.0,32.0,244.0,,11.11,3.33,us-east-1,us-east-1a\n"
    )
    empty_home = tmp_path / "empty"
    empty_home.mkdir()
    offline = textwrap.dedent(
        """
        from optuna_seer.pricing.sources import resolve_quote, sky_catalog_quote
        print(sky_catalog_quote("p3.8xlarge"), resolve_quote("p3.8xlarge").source)
        """
    )
    env = {**os.environ, "HOME": str(empty_home), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", offline], env=env, capture_output=True, text=True, timeout=100
    )
    assert done.returncode == 0, done.stderr
    # No catalog on disk and fetching off (SEER_PRICE_FETCH=0, as for every test: see
    # tests/fake_sky.py): no download is attempted, the shipped table answers.
    assert done.stdout.strip().splitlines()[-1] == "None aws-ec2-on-demand-pricing-page"
    assert not (empty_home / ".sky" / "catalogs" / "v8" / "aws" / "vms.csv").exists()

    script = textwrap.dedent(
        """
        from optuna_seer.pricing.sources import sky_catalog_quote
        on_demand = sky_catalog_quote("p3.8xlarge")
        spot = sky_catalog_quote("p3.8xlarge", market="spot")
        print(on_demand.dollars_per_hour, on_demand.gpus, on_demand.source, spot.dollars_per_hour)
        print(sky_catalog_quote("p99.mega"))
        """
    )
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=100
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.strip().splitlines()[-2:]
    assert first == "11.11 4 skypilot-catalog:aws 3.33"
    assert second == "None"


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_aws_spot_prices_from_local_moto_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """describe_spot_price_history through boto3 against a real moto server on 127.0.0.1."""
    boto3 = pytest.importorskip("boto3")
    server_module = pytest.importorskip("moto.server")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client(
            "ec2",
            region_name="us-east-1",
            endpoint_url=f"http://{host}:{port}",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        # moto knows the instance types AWS offers today (no p3 in us-east-1 any more).
        quotes = aws_spot_quotes(["g5.xlarge", "g5.12xlarge", "p99.mega"], client=client)
    finally:
        server.stop()
    assert {q.instance_type for q in quotes} == {"g5.xlarge", "g5.12xlarge"}
    for quote in quotes:
        assert quote.market == "spot"
        assert quote.source == "aws-describe-spot-price-history"
        assert quote.dollars_per_hour >= 0
    assert next(q for q in quotes if q.instance_type == "g5.12xlarge").gpus == 4


def test_aws_spot_without_credentials_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default client (botocore's, no boto3 needed) fails on credentials, clearly."""
    pytest.importorskip("botocore")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # Unreachable endpoint: botocore must fail on credentials before any request is sent.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(RuntimeError, match="credentials"):
        aws_spot_quotes(["p3.2xlarge"])


class _Launched:
    def __init__(self, hourly: float) -> None:
        self.hourly = hourly

    def get_cost(self, seconds: float) -> float:
        return self.hourly * seconds / 3600

    def __str__(self) -> str:
        return "AWS(p4d.24xlarge)"


class _Handle:
    def __init__(self, hourly: float) -> None:
        self.launched_resources = _Launched(hourly)


def test_a_launched_cluster_is_priced_by_what_skypilot_launched() -> None:
    assert launched_hourly_price(_Handle(12.5), 2) == (25.0, "skypilot: AWS(p4d.24xlarge)")
    assert launched_hourly_price(_Handle(float("nan")), 2) is None  # keep the estimate
    assert launched_hourly_price(object(), 2) is None


def test_cluster_pricer_without_catalog_uses_the_configured_price_or_says_unknown() -> None:
    pricer = ClusterPricer("A100", (), use_spot=True, price_per_gpu_hour=1.5)
    assert pricer.hourly_price(ClusterShape(2, 4)) == (
        12.0,
        "configured $1.5/GPU-hour (no SkyPilot catalog price)",
    )
    unknown = ClusterPricer("T4", (), use_spot=False, price_per_gpu_hour=None)
    assert unknown.hourly_price(ClusterShape(1, 8))[0] is None
    with pytest.raises(ValueError, match=r"price_per_gpu_hour=-1\.0"):
        ClusterPricer("A100", (), use_spot=False, price_per_gpu_hour=-1.0)
