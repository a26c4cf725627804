"""Provider outages, at the provider level: how long a caller waits on a hung KMS, and how many
requests a failing KMS receives.

- Hung: the KMS is a stopped process (SIGSTOP). Its socket still accepts connections (the
  kernel completes the handshake into the listen backlog), then nothing answers: the worst
  outage, where only timeouts help. For AWS KMS, Cloud KMS, Azure Key Vault and Vault the
  "server" is a listening process we stop; for Vault also the real OpenBao server of a
  stand-in, stopped and continued. Under `answer_within(3)` and `answer_within(20)`, every
  provider must raise ProviderUnavailableError (with retry_after) before the caller's deadline,
  so the API can answer UNAVAILABLE rather than the client seeing DEADLINE_EXCEEDED.
- Failing: each stand-in answers every wrap with a 5xx (or UNAVAILABLE) for a while. Many calls
  for one key must not multiply into MAX_ATTEMPTS requests each: the key's circuit breaker
  opens and only probes get through; once the KMS is healthy the key works again within a
  cool-down, through the same provider.

The measured numbers are printed (run with -s, or see the JUnit properties); the assertions
are the contracts: answered UNAVAILABLE (not cut off by the client's deadline), far fewer
requests than calls, working again after. Times are reported, not asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from providers import KeyProvider, ProviderUnavailableError
from providers._retry import BREAKER_COOL_DOWN_SECONDS, BREAKER_THRESHOLD, MAX_ATTEMPTS
from providers.aws_kms import AwsCredentials, AwsKmsProvider
from providers.azure_kv import AzureKvProvider
from providers.deadline import answer_within
from providers.gcp_kms import GcpKmsProvider
from providers.hcvault import HcVaultProvider
from testkit.standins.aws import AwsKmsStandIn
from testkit.standins.azure import AzureKvStandIn, StaticTokenCredential
from testkit.standins.gcp import GcpKmsStandIn
from testkit.standins.hcvault import HcVaultStandIn

pytestmark = pytest.mark.faults

BINDING = {"organization_id": "org_outage", "vaultd:kek": "kek_1"}
DEADLINES = (3.0, 20.0)
LOOP_LAG_ALLOWANCE = 10.0
CONCURRENT_CALLERS = 20
FAILING_SECONDS = 6.0
CALL_INTERVAL_SECONDS = 0.02

_LISTENER = """
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1024)
print(s.getsockname()[1], flush=True)
time.sleep(3600)
"""


@pytest.fixture(scope="module")
def stopped_port() -> Iterator[int]:
    """A port whose listening process is stopped: connections complete, nothing ever answers."""
    process = subprocess.Popen([sys.executable, "-c", _LISTENER], stdout=subprocess.PIPE)
    assert process.stdout is not None
    port = int(process.stdout.readline())
    os.kill(process.pid, signal.SIGSTOP)
    try:
        yield port
    finally:
        os.kill(process.pid, signal.SIGCONT)
        process.kill()
        process.wait()


def _hung_provider(scheme: str, port: int) -> tuple[KeyProvider, str]:
    address = f"127.0.0.1:{port}"
    if scheme == "aws-kms":
        aws = AwsKmsProvider(
            endpoint_url=f"http://{address}", credentials=AwsCredentials("testing", "testing")
        )
        return aws, "aws-kms://arn:aws:kms:us-east-1:123456789012:key/hung"
    if scheme == "gcp-kms":
        gcp = GcpKmsProvider(endpoint=address, insecure=True)
        return gcp, "gcp-kms://projects/p/locations/global/keyRings/r/cryptoKeys/hung"
    if scheme == "azure-kv":
        azure = AzureKvProvider(StaticTokenCredential(), connection_verify=False)
        return azure, f"azure-kv://{address}/keys/hung"
    vault = HcVaultProvider(address=f"http://{address}", token="hvs.outage-test")
    return vault, "hcvault://transit/keys/hung"


async def _timed(call: Callable[[], Awaitable[Any]]) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        await call()
    except BaseException as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


def _report(record_property: Callable[[str, object], None], name: str, value: object) -> None:
    record_property(name, value)
    print(f"\n[provider outages] {name} = {value}")  # the measurement, shown with -s


@pytest.mark.parametrize("deadline", DEADLINES)
@pytest.mark.parametrize("scheme", ["aws-kms", "gcp-kms", "azure-kv", "hcvault"])
async def test_a_hung_kms_is_unavailable_before_the_callers_deadline(
    scheme: str,
    deadline: float,
    stopped_port: int,
    record_property: Callable[[str, object], None],
) -> None:
    provider, key_uri = _hung_provider(scheme, stopped_port)

    async def unwrap() -> None:
        with answer_within(deadline):
            await provider.unwrap(key_uri, _any_wrapped(scheme), BINDING)

    # The client's own deadline, as grpc would enforce it: the provider must answer before it.
    # LOOP_LAG_ALLOWANCE: the client shares this event loop, which a loaded machine can starve,
    # so its timeout is only a generous safety net; the provider must give up on its own, and
    # the time it took is reported, not asserted.
    async def as_the_client_waits() -> None:
        async with asyncio.timeout(deadline + LOOP_LAG_ALLOWANCE):
            await unwrap()

    elapsed, error = await _timed(as_the_client_waits)

    assert isinstance(error, ProviderUnavailableError), error
    assert error.retry_after is not None and error.retry_after > 0
    assert key_uri in str(error)
    _report(
        record_property,
        f"{scheme} hung, deadline {deadline:g}s: answered in (s)",
        round(elapsed, 2),
    )
    with contextlib.suppress(Exception):
        close = getattr(provider, "close", None)
        if close is not None and asyncio.iscoroutinefunction(close):
            await close()


async def test_concurrent_callers_on_a_hung_kms_make_a_bounded_number_of_attempts(
    stopped_port: int, record_property: Callable[[str, object], None]
) -> None:
    provider, key_uri = _hung_provider("aws-kms", stopped_port)
    assert isinstance(provider, AwsKmsProvider)
    attempts = 0
    real_run = provider._threads.run

    async def counting_run(call: Callable[[], Any]) -> Any:
        nonlocal attempts
        attempts += 1
        return await real_run(call)

    provider._threads.run = counting_run  # type: ignore[method-assign]

    async def caller() -> tuple[float, BaseException | None]:
        async def unwrap() -> None:
            with answer_within(3.0):
                await provider.unwrap(key_uri, b"x" * 64, BINDING)

        return await _timed(unwrap)

    first_wave = await asyncio.gather(*(caller() for _ in range(CONCURRENT_CALLERS)))
    sent_by_first = attempts
    second_wave = await asyncio.gather(*(caller() for _ in range(CONCURRENT_CALLERS)))

    for wave in (first_wave, second_wave):
        assert all(isinstance(error, ProviderUnavailableError) for _, error in wave)
    # The first wave's attempts all hung (one each: none could retry inside 3 s) and opened the
    # key's breaker; the second wave is answered without a single request.
    assert sent_by_first == CONCURRENT_CALLERS >= BREAKER_THRESHOLD
    assert attempts == sent_by_first
    assert all(
        isinstance(error, ProviderUnavailableError) and "paused" in str(error)
        for _, error in second_wave
    )
    _report(record_property, f"{CONCURRENT_CALLERS} callers, hung KMS: attempts sent", attempts)
    _report(
        record_property,
        "hung KMS, first wave: slowest answer (s)",
        round(max(elapsed for elapsed, _ in first_wave), 2),
    )
    _report(
        record_property,
        "hung KMS, breaker open: slowest answer (s)",
        round(max(elapsed for elapsed, _ in second_wave), 3),
    )


async def test_a_stopped_openbao_is_unavailable_in_time_and_serves_again_when_continued(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    standin = HcVaultStandIn(tmp_path)
    try:
        provider = HcVaultProvider.from_settings(standin.provider_settings)
        key_uri = standin.create_key("outage")
        key = os.urandom(32)
        wrapped = await provider.wrap(key_uri, key, BINDING)

        pids = standin.server_pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:

            async def unwrap() -> None:
                # The provider must give up on its own (answer_within); the outer timeout is
                # only a safety net, generous so that a loaded machine cannot beat the provider.
                async with asyncio.timeout(30.0):
                    with answer_within(3.0):
                        await provider.unwrap(key_uri, wrapped, BINDING)

            elapsed, error = await _timed(unwrap)
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)

        assert isinstance(error, ProviderUnavailableError), error
        _report(record_property, "OpenBao SIGSTOP, deadline 3s: answered in (s)", round(elapsed, 2))
        # Continued: the same provider reads again, at the latest after the breaker's cool-down.
        async with asyncio.timeout(BREAKER_COOL_DOWN_SECONDS + 10):
            while True:
                try:
                    assert await provider.unwrap(key_uri, wrapped, BINDING) == key
                    break
                except ProviderUnavailableError:
                    await asyncio.sleep(0.1)
    finally:
        standin.close()


@dataclass
class Failing:
    """A stand-in made to answer every wrap with a server error, through a real provider."""

    provider: KeyProvider
    key_uri: str
    fail: Callable[[], None]
    heal: Callable[[], None]
    requests: Callable[[], int]


@pytest.fixture
def failing(
    request: pytest.FixtureRequest,
    aws_kms_standin: AwsKmsStandIn,
    gcp_kms_standin: GcpKmsStandIn,
    azure_kv_standin: AzureKvStandIn,
    hcvault_standin: HcVaultStandIn,
) -> Iterator[Failing]:
    scheme = request.param
    name = f"failing-{os.urandom(3).hex()}"
    huge = 100_000
    built: Failing
    if scheme == "aws-kms":
        aws = aws_kms_standin
        built = Failing(
            AwsKmsProvider.from_settings(aws.provider_settings),
            aws.create_key(name),
            lambda: aws.fail_next("KMSInternalException", 500, times=huge),
            aws.clear_faults,
            lambda: aws.calls["wrap"],
        )
    elif scheme == "gcp-kms":
        gcp = gcp_kms_standin
        built = Failing(
            GcpKmsProvider.from_settings(gcp.provider_settings),
            gcp.create_key(name),
            lambda: gcp.fail_next(huge, grpc.StatusCode.UNAVAILABLE),
            gcp.clear_faults,
            lambda: gcp.calls["wrap"],
        )
    elif scheme == "azure-kv":
        azure = azure_kv_standin
        built = Failing(
            AzureKvProvider.from_settings(azure.provider_settings, credential=azure.credential),
            azure.create_key(name),
            lambda: azure.inject_faults(*[503] * huge),
            azure.clear_faults,
            lambda: azure.calls["wrap"] + azure.calls["faulted"],
        )
    else:
        vault = hcvault_standin
        built = Failing(
            HcVaultProvider.from_settings(vault.provider_settings),
            vault.create_key(name),
            lambda: vault.fail_next(503, times=huge),
            vault.clear_faults,
            lambda: vault.calls["wrap"],
        )
    try:
        yield built
    finally:
        built.heal()


@pytest.mark.parametrize("failing", ["aws-kms", "gcp-kms", "azure-kv", "hcvault"], indirect=True)
async def test_a_failing_kms_gets_probes_not_a_storm_and_serves_again_after(
    failing: Failing, record_property: Callable[[str, object], None]
) -> None:
    provider, key_uri = failing.provider, failing.key_uri
    key = os.urandom(32)
    await provider.wrap(key_uri, key, BINDING)  # healthy: the client is warm

    failing.fail()
    before = failing.requests()
    started = time.monotonic()
    outcomes: list[str] = []
    # Callers keep coming for FAILING_SECONDS, as a service's traffic does during an outage.
    while time.monotonic() - started < FAILING_SECONDS:
        with answer_within(3.0):
            try:
                await provider.wrap(key_uri, key, BINDING)
                outcomes.append("ok")
            except ProviderUnavailableError as exc:
                assert exc.retry_after is not None
                outcomes.append("unavailable")
        await asyncio.sleep(CALL_INTERVAL_SECONDS)
    spent = time.monotonic() - started
    sent = failing.requests() - before

    assert outcomes and set(outcomes) == {"unavailable"}
    # At most the attempts that opened the breaker plus one probe per cool-down spent.
    assert sent <= BREAKER_THRESHOLD + int(spent / BREAKER_COOL_DOWN_SECONDS) + 1
    _report(
        record_property,
        f"{key_uri.split(':')[0]}: requests reaching a 5xx KMS for {len(outcomes)} calls "
        f"over {spent:.1f}s (unbounded: {len(outcomes) * MAX_ATTEMPTS})",
        sent,
    )

    failing.heal()
    async with asyncio.timeout(BREAKER_COOL_DOWN_SECONDS + 5):
        while True:
            try:
                await provider.wrap(key_uri, key, BINDING)
                break
            except ProviderUnavailableError:
                await asyncio.sleep(0.1)


def _any_wrapped(scheme: str) -> bytes:
    """Bytes each provider accepts as wrapped, so the call gets as far as the network."""
    if scheme == "hcvault":
        return b"vault:v1:" + b"A" * 40
    if scheme == "azure-kv":
        return b"\x01" * 256
    return b"\x01" * 64
