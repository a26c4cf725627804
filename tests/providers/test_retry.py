"""The retry loop, the deadline and the circuit breaker, as pure logic: calls are coroutines
that succeed, fail or hang on command, and the breaker runs on a hand-driven clock."""

from __future__ import annotations

import asyncio

import pytest

from providers import KeyUnavailableError, ProviderUnavailableError
from providers._retry import (
    BREAKER_COOL_DOWN_SECONDS,
    BREAKER_THRESHOLD,
    MAX_ATTEMPTS,
    MAX_TIMED_OUT_ATTEMPTS,
    MIN_USEFUL_ATTEMPT_SECONDS,
    RETRY_AFTER_SECONDS,
    Breakers,
    with_retries,
)
from providers.deadline import answer_within, remaining

KEY = "aws-kms://arn:aws:kms:us-east-1:123456789012:key/k"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Kms:
    """Answers from a script: "ok", "down" (an outage), "deny", or "hang"."""

    def __init__(self, *script: str) -> None:
        self.script = list(script)
        self.requests = 0

    async def __call__(self) -> str:
        self.requests += 1
        step = self.script.pop(0) if self.script else "ok"
        if step == "down":
            raise ProviderUnavailableError(f"{KEY}: KMS is unavailable (503)")
        if step == "deny":
            raise KeyUnavailableError(f"{KEY}: AccessDenied", denied=True)
        if step == "hang":
            await asyncio.Event().wait()
        return "wrapped"


async def test_transient_failures_are_retried_and_exhaustion_carries_a_retry_hint() -> None:
    kms = Kms("down", "down", "ok")
    assert await with_retries(kms, base_delay=0) == "wrapped"
    assert kms.requests == 3

    kms = Kms(*["down"] * MAX_ATTEMPTS)
    with pytest.raises(ProviderUnavailableError) as caught:
        await with_retries(kms, base_delay=0)
    assert kms.requests == MAX_ATTEMPTS
    assert caught.value.retry_after == RETRY_AFTER_SECONDS
    assert not caught.value.deadline_reached


async def test_a_refusal_is_not_retried_and_keeps_its_denied_flag() -> None:
    kms = Kms("deny")
    with pytest.raises(KeyUnavailableError) as caught:
        await with_retries(kms)
    assert kms.requests == 1 and caught.value.denied


async def test_a_hung_attempt_ends_at_the_attempt_timeout_and_is_retried() -> None:
    kms = Kms("hang", "ok")
    assert await with_retries(kms, attempt_timeout=0.05, base_delay=0) == "wrapped"
    assert kms.requests == 2

    # Hung twice: the call gives up rather than spend its remaining attempts on a hung KMS.
    kms = Kms(*["hang"] * MAX_ATTEMPTS)
    with pytest.raises(ProviderUnavailableError, match="no answer within"):
        await with_retries(kms, attempt_timeout=0.05, base_delay=0)
    assert kms.requests == MAX_TIMED_OUT_ATTEMPTS < MAX_ATTEMPTS


async def test_the_deadline_bounds_attempts_and_leaves_room_to_answer() -> None:
    kms = Kms(*["hang"] * 10)
    with answer_within(0.3):
        with pytest.raises(ProviderUnavailableError, match="no answer within") as caught:
            await with_retries(kms, attempt_timeout=10)
        # The attempt was cut at the provider deadline (a tenth of 0.3 s before the caller's),
        # not at its own 10 s timeout: what is left is about nothing, not minus 9.7 s.
        left = remaining()
        assert left is not None and -1.0 < left < MIN_USEFUL_ATTEMPT_SECONDS
    assert kms.requests == 1, "no second attempt: none could fit"
    assert caught.value.retry_after == RETRY_AFTER_SECONDS
    assert caught.value.deadline_reached, "an answer for this caller, not for those sharing it"


async def test_no_attempt_starts_once_the_deadline_has_passed() -> None:
    kms = Kms()
    with (
        answer_within(0.0),
        pytest.raises(ProviderUnavailableError, match="no time left") as caught,
    ):
        await with_retries(kms)
    assert kms.requests == 0 and caught.value.deadline_reached


def test_nested_deadlines_keep_the_earlier() -> None:
    with answer_within(10):
        outer = remaining()
        with answer_within(100):
            assert remaining() is not None and outer is not None
            assert remaining() <= outer  # type: ignore[operator]
        with answer_within(None):
            assert remaining() is not None
    assert remaining() is None


async def test_the_breaker_opens_after_the_threshold_and_probes_after_the_cool_down() -> None:
    clock = Clock()
    breakers = Breakers(clock=clock)
    kms = Kms(*["down"] * 100)

    # Failed attempts in a row across calls open it (the third call's first attempt is the
    # ninth); further calls do not reach the KMS.
    for _ in range(2):
        with pytest.raises(ProviderUnavailableError) as exhausted:
            await with_retries(kms, base_delay=0, key_uri=KEY, breakers=breakers)
        assert exhausted.value.retry_after == RETRY_AFTER_SECONDS
    assert not breakers.is_open(KEY), "two callers' full retries alone do not open it"
    with pytest.raises(ProviderUnavailableError) as opened:
        await with_retries(kms, base_delay=0, key_uri=KEY, breakers=breakers)
    assert kms.requests == BREAKER_THRESHOLD == 2 * MAX_ATTEMPTS + 1
    assert opened.value.retry_after == BREAKER_COOL_DOWN_SECONDS
    for _ in range(10):
        with pytest.raises(ProviderUnavailableError, match="paused") as paused:
            await with_retries(kms, base_delay=0, key_uri=KEY, breakers=breakers)
        assert paused.value.retry_after == BREAKER_COOL_DOWN_SECONDS
    assert kms.requests == BREAKER_THRESHOLD

    # Other keys are not affected.
    assert await with_retries(Kms(), key_uri=KEY + "-other", breakers=breakers) == "wrapped"

    # After the cool-down, one probe; it fails, so the breaker reopens without a retry.
    clock.now += BREAKER_COOL_DOWN_SECONDS
    with pytest.raises(ProviderUnavailableError):
        await with_retries(kms, base_delay=0, key_uri=KEY, breakers=breakers)
    assert kms.requests == BREAKER_THRESHOLD + 1

    # The KMS is back: the next probe succeeds and closes it.
    kms.script.clear()
    clock.now += BREAKER_COOL_DOWN_SECONDS
    assert await with_retries(kms, key_uri=KEY, breakers=breakers) == "wrapped"
    assert not breakers.is_open(KEY)


async def test_a_refusal_closes_the_breaker_so_a_revocation_is_always_seen() -> None:
    clock = Clock()
    breakers = Breakers(clock=clock)
    kms = Kms(*["down"] * (BREAKER_THRESHOLD - 1), "deny", "down")
    for _ in range(2):
        with pytest.raises(ProviderUnavailableError):
            await with_retries(kms, base_delay=0, key_uri=KEY, breakers=breakers)
    # One failure short of opening, the KMS answers with a refusal: counted as an answer.
    with pytest.raises(KeyUnavailableError):
        await with_retries(kms, base_delay=0, key_uri=KEY, breakers=breakers)
    assert kms.requests == BREAKER_THRESHOLD
    with pytest.raises(ProviderUnavailableError, match="503"):
        await with_retries(kms, base_delay=0, attempts=1, key_uri=KEY, breakers=breakers)
    assert not breakers.is_open(KEY)


async def test_only_one_probe_at_a_time_while_half_open() -> None:
    clock = Clock()
    breakers = Breakers(threshold=1, clock=clock)
    with pytest.raises(ProviderUnavailableError):
        await with_retries(Kms("down"), key_uri=KEY, breakers=breakers)
    clock.now += BREAKER_COOL_DOWN_SECONDS
    hung = Kms("hang")
    probe = asyncio.create_task(with_retries(hung, key_uri=KEY, breakers=breakers))
    await asyncio.sleep(0)
    others = Kms()
    with pytest.raises(ProviderUnavailableError, match="paused"):
        await with_retries(others, key_uri=KEY, breakers=breakers)
    assert others.requests == 0
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    # A cancelled probe lets the next caller probe.
    assert await with_retries(others, key_uri=KEY, breakers=breakers) == "wrapped"
