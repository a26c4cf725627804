"""A slow and flaky KMS: BYOK tenants whose KEKs live in the Google Cloud KMS stand-in.

Promises checked (issue 6, docs/ARCHITECTURE.md sections 5 and 7): a call with a deadline
returns by it (the client's deadline fires, or vaultd answers UNAVAILABLE first); a provider
call is retried at most providers._retry.MAX_ATTEMPTS times per request, counted at the stand-in
itself; and nothing is written with a KEK that could not be wrapped (the object's name stays
free and the store holds no KEK version for the item), not even once a late KMS answer arrives.

Each test has its own stand-in: fault switches left armed must not reach the BYOK tests, which
share the session's. A SlowProxy between vaultd and the stand-in makes the KMS slow.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from providers._retry import MAX_ATTEMPTS
from testkit.fault_load import (
    AUTH,
    BACKEND_FAULT_STATUSES,
    BACKEND_UNAVAILABLE,
    CLIENT_DEADLINE,
    OK,
    Load,
    Verifier,
)
from testkit.slow_kms import GENEROUS_DEADLINE, Kms
from testkit.standins.gcp import GcpKmsStandIn
from vaultd.v1 import object_service_pb2 as pb

pytestmark = pytest.mark.faults

SHORT_DEADLINE = 0.8
# The client's own deadline cuts every call, so this is no timing test: it only catches a call
# that somehow outlived its deadline. Generous, as the test's event loop (which also runs vaultd)
# may be late to notice on a busy 2-CPU machine.
SLOWER_THAN_THE_DEADLINE = 2.0
IN_TIME_STATUSES = {CLIENT_DEADLINE, BACKEND_UNAVAILABLE}
LATE_ANSWER_WITHIN = SLOWER_THAN_THE_DEADLINE + 5.0
LATE_ANSWER_SETTLE_SECONDS = 0.5
FLAKY_ROUNDS = 10
CONCURRENT_READS = 50
EXHAUSTED_WITHIN_SECONDS = 15.0


FAULTS: dict[str, Callable[[GcpKmsStandIn, int], None]] = {
    "unavailable": lambda s, n: s.fail_next(n, grpc.StatusCode.UNAVAILABLE),
    "internal": lambda s, n: s.fail_next(n, grpc.StatusCode.INTERNAL),
    "corrupted": lambda s, n: s.corrupt_next(n),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_flaky_kms_is_retried_a_bounded_number_of_times(kms: Kms, fault: str) -> None:
    inject = FAULTS[fault]

    # Fewer failures than attempts: the request succeeds, after exactly that many retries.
    tenant = kms.tenant()
    inject(kms.standin, MAX_ATTEMPTS - 1)
    wraps = kms.wraps
    created, status, _ = await kms.create(f"flaky-{uuid.uuid4().hex}", tenant)
    assert status == OK and created is not None, status
    assert kms.wraps - wraps == MAX_ATTEMPTS
    name = created.metadata.name
    await kms.read_back(created.metadata.id, name.encode())

    # Every attempt fails: UNAVAILABLE after MAX_ATTEMPTS calls, and nothing written. The
    # context also has an item no rule governs: the BYOK guarantee leaves vaultd no other KEK to
    # fall back to.
    cold = kms.tenant() | {"user_id": "u-1"}
    name = f"never-{uuid.uuid4().hex}"
    inject(kms.standin, MAX_ATTEMPTS)
    wraps = kms.wraps
    _, status, _ = await kms.create(name, cold)
    assert status == BACKEND_UNAVAILABLE
    assert kms.wraps - wraps == MAX_ATTEMPTS, "retries must stop at MAX_ATTEMPTS"
    await kms.assert_nothing_written(name, cold)
    # The faults are used up: the same name and tenant work now, with one wrap.
    wraps = kms.wraps
    retried, status, _ = await kms.create(name, cold)
    assert status == OK and retried is not None, status
    assert kms.wraps - wraps == 1
    await kms.read_back(retried.metadata.id, name.encode())

    # Unwrapping a cold KEK that fails every attempt: reads and updates are UNAVAILABLE after
    # MAX_ATTEMPTS calls, and the update wrote no version.
    object_id = created.metadata.id
    for rpc in ("read", "update"):
        kms.vaultd.keyring.cache.clear()
        inject(kms.standin, MAX_ATTEMPTS)
        unwraps = kms.unwraps
        if rpc == "read":
            _, status, _ = await kms.read(object_id)
        else:
            request = pb.UpdateObjectRequest(id=object_id, value=b"never written")
            call = kms.objects.UpdateObject(request, timeout=GENEROUS_DEADLINE, metadata=AUTH)
            _, status, _ = await kms.call(call, GENEROUS_DEADLINE)
        assert status == BACKEND_UNAVAILABLE, rpc
        assert kms.unwraps - unwraps == MAX_ATTEMPTS, rpc
    versions = await kms.objects.ListObjectVersions(
        pb.ListObjectVersionsRequest(id=object_id), timeout=GENEROUS_DEADLINE, metadata=AUTH
    )
    assert len(versions.versions) == 1, "the failed update must not have added a version"
    await kms.read_back(object_id, created.metadata.name.encode())
    kms.report.note("MAX_ATTEMPTS", MAX_ATTEMPTS)


async def test_concurrent_requests_share_one_bounded_retry_sequence(kms: Kms) -> None:
    """Concurrent misses for one KEK make one provider call (docs/ARCHITECTURE.md section 4);
    when it fails every attempt they share that failure rather than each retrying MAX_ATTEMPTS
    times."""
    created, status, _ = await kms.create(f"shared-{uuid.uuid4().hex}", kms.tenant())
    assert status == OK and created is not None, status
    kms.vaultd.keyring.cache.clear()
    kms.standin.fail_next(MAX_ATTEMPTS)
    unwraps = kms.unwraps
    results = await asyncio.gather(
        *(kms.read(created.metadata.id) for _ in range(CONCURRENT_READS))
    )
    statuses = Counter(status for _, status, _ in results)
    kms.report.note("concurrent reads", CONCURRENT_READS)
    kms.report.note("unwraps for them", kms.unwraps - unwraps)
    assert set(statuses) <= {OK, BACKEND_UNAVAILABLE}, statuses
    assert statuses[BACKEND_UNAVAILABLE] > 0, "the shared load did not fail"
    # + 1: a read that arrives after the shared load failed starts one more, and it succeeds.
    assert kms.unwraps - unwraps <= MAX_ATTEMPTS + 1, statuses
    for reply, status, _ in results:
        if status == OK:
            assert reply is not None and reply.object.value == created.metadata.name.encode()
    await kms.read_back(created.metadata.id, created.metadata.name.encode())


async def test_a_caller_giving_up_does_not_fail_those_sharing_its_kms_call(kms: Kms) -> None:
    """Callers missing the same KEK share one provider call; when the caller that started it
    gives up at its deadline, the others (with time left) still get their answer."""
    created, status, _ = await kms.create(f"shared-{uuid.uuid4().hex}", kms.tenant())
    assert status == OK and created is not None, status
    cold = kms.tenant()
    kms.proxy.delay = SLOWER_THAN_THE_DEADLINE
    kms.vaultd.keyring.cache.clear()
    for rpc in ("create (wrap)", "read (unwrap)"):
        calls = kms.standin.calls.total()

        def request(deadline: float, rpc: str = rpc) -> Awaitable[tuple[Any, str, float]]:
            if rpc == "read (unwrap)":
                return kms.read(created.metadata.id, deadline=deadline)
            return kms.create(f"shared-{uuid.uuid4().hex}", cold, deadline=deadline)

        first = asyncio.ensure_future(request(SHORT_DEADLINE))
        await asyncio.sleep(0.1)  # so it is the one that starts the provider call
        others = await asyncio.gather(*(request(GENEROUS_DEADLINE) for _ in range(10)))
        assert (await first)[1] in IN_TIME_STATUSES, rpc
        assert {status for _, status, _ in others} == {OK}, rpc
        await kms.proxy.drained(LATE_ANSWER_WITHIN)
        # The first caller's call (cancelled, but it reached the KMS) and one for the others.
        assert kms.standin.calls.total() - calls <= 2, rpc
        if rpc == "create (wrap)":
            kms.proxy.delay = 0.0  # the read-backs are no part of this
            for reply, _, _ in others:
                await kms.read_back(reply.metadata.id, reply.metadata.name.encode())
            kms.proxy.delay = SLOWER_THAN_THE_DEADLINE
            kms.vaultd.keyring.cache.clear()
    kms.proxy.delay = 0.0
    await kms.read_back(created.metadata.id, created.metadata.name.encode())


async def _late_answer_arrived(kms: Kms, calls_before: int) -> None:
    """Wait (bounded) until the proxy passed on everything it held back, check that the request
    did reach the stand-in, and give its late answer a moment: a KEK stored from that answer
    would be in the store by then. Also leaves the proxy empty for the next step."""
    await kms.proxy.drained(LATE_ANSWER_WITHIN)
    assert kms.standin.calls.total() > calls_before, "the delayed request never reached the KMS"
    await asyncio.sleep(LATE_ANSWER_SETTLE_SECONDS)


async def test_slow_kms_deadlines_are_honoured_and_nothing_is_written(kms: Kms) -> None:
    # Slow, but in time: the request waits for it.
    kms.proxy.delay = 0.3
    created, status, elapsed = await kms.create(f"slow-{uuid.uuid4().hex}", kms.tenant())
    assert status == OK and created is not None, status
    assert elapsed >= kms.proxy.delay, "the proxy did not slow the KMS down"
    kms.report.note("slow create s", round(elapsed, 2))

    # Slower than the deadline: back by the deadline, and nothing written even once the late
    # answer arrives.
    kms.proxy.delay = SLOWER_THAN_THE_DEADLINE
    cold = kms.tenant()
    name = f"late-{uuid.uuid4().hex}"
    calls = kms.standin.calls.total()
    _, status, elapsed = await kms.create(name, cold, deadline=SHORT_DEADLINE)
    assert status in IN_TIME_STATUSES, status
    kms.report.note("create past its deadline returned after s", round(elapsed, 2))
    await _late_answer_arrived(kms, calls)
    await kms.assert_nothing_written(name, cold)

    # A read that needs a slow unwrap: back by the deadline too.
    kms.vaultd.keyring.cache.clear()
    calls = kms.standin.calls.total()
    _, status, _ = await kms.read(created.metadata.id, deadline=SHORT_DEADLINE)
    assert status in IN_TIME_STATUSES, status
    await _late_answer_arrived(kms, calls)

    # Slow and failing: the retries stop at the deadline, and at MAX_ATTEMPTS in any case.
    kms.proxy.delay = 0.3
    kms.standin.fail_next(MAX_ATTEMPTS)
    cold = kms.tenant()
    name = f"slow-flaky-{uuid.uuid4().hex}"
    calls = kms.standin.calls.total()
    _, status, _ = await kms.create(name, cold, deadline=SHORT_DEADLINE)
    assert status in IN_TIME_STATUSES, status
    await _late_answer_arrived(kms, calls)
    assert kms.standin.calls.total() - calls <= MAX_ATTEMPTS
    await kms.assert_nothing_written(name, cold)

    # Fast again: the same vaultd serves the same name and tenant (a failure the deadline left
    # armed is one more retry, within the attempts), and reads what it wrote while slow.
    kms.proxy.delay = 0.0
    retried, status, _ = await kms.create(name, cold)
    assert status == OK and retried is not None, status
    await kms.read_back(retried.metadata.id, name.encode())
    await kms.read_back(created.metadata.id, created.metadata.name.encode())


async def test_mixed_load_against_a_slow_flaky_kms(kms: Kms) -> None:
    """Many callers while the KMS fails in bursts and the KEK cache keeps going cold: only the
    documented statuses, every acknowledged write reads back, provider calls stay bounded."""
    load = Load(
        kms.channel, kms.report, prefix=f"kms-{uuid.uuid4().hex[:8]}", fresh_context_share=0.2
    )
    rng = random.Random(load.seed)
    stats = kms.vaultd.keyring.cache.stats
    calls, loads = kms.standin.calls.total(), stats.loads
    kms.proxy.delay = 0.05
    injected = 0
    async with load.running():
        load.phase = "flaky"
        for round_ in range(FLAKY_ROUNDS):
            # Mostly short bursts, which the retries ride out. Once, a burst no set of requests
            # can ride out: each worker's request runs at most one KEK load at a time, and a
            # load that has failed MAX_ATTEMPTS - 1 times fails for good on its next failure;
            # so workers * (MAX_ATTEMPTS - 1) + 1 failures in a row exhaust some request.
            if round_ == FLAKY_ROUNDS // 2:
                failures = load.workers * (MAX_ATTEMPTS - 1) + 1
            else:
                failures = rng.randint(1, MAX_ATTEMPTS - 1)
            kms.standin.fail_next(failures)
            injected += failures
            kms.vaultd.keyring.cache.clear()  # as if the TTL ran out: unwraps under faults
            await asyncio.sleep(0.3)
        await load.wait_until(
            "a request ran out of attempts",
            lambda: kms.report.statuses[BACKEND_UNAVAILABLE] > 0,
            EXHAUSTED_WITHIN_SECONDS,
        )
        load.phase = "settled"
        # The KMS is healthy again: faults still queued would otherwise reach it one per probe
        # of the key's circuit breaker (one per cool-down), not one per request.
        kms.standin.clear_faults()
        await load.wait_until("20 writes acknowledged", lambda: load.acked("settled") >= 20, 15)
    kms.report.note("KMS failures injected", injected)
    verifier = Verifier(kms.channel, kms.report)
    violations = await verifier.verify(load.tracked, prefix=load.prefix)

    kms_calls = kms.standin.calls.total() - calls
    kms.report.note("KMS calls", kms_calls)

    assert not violations, "\n".join(violations[:30])
    # Each cache load makes at most two provider sequences (create loses a race: wrap, then
    # unwrap the winner's), each of at most MAX_ATTEMPTS calls.
    assert kms_calls <= 2 * MAX_ATTEMPTS * (stats.loads - loads)
    kms.report.assert_statuses(BACKEND_FAULT_STATUSES)
