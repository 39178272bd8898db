"""Rate limiter behaviour, held identical for the in-process limiter and Redis.

Every behaviour test runs against :class:`MemoryRateLimiter` and, when ``YIMA_TEST_REDIS_URL`` is
set (e.g. ``redis://127.0.0.1:6379/15``), against :class:`RedisRateLimiter` too. Time is an
injected clock stepped by the tests; nothing sleeps to make time pass.
"""

from __future__ import annotations

import logging
import random
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.ratelimit import (
    DEFAULT_REDIS_TIMEOUT_SECONDS,
    Decision,
    FallbackRateLimiter,
    Limit,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    build_rate_limiter,
)
from tests.conftest import REDIS_URL

needs_redis = pytest.mark.skipif(
    not REDIS_URL,
    reason="set YIMA_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/15) to test against Redis",
)
REDIS_SERVER = shutil.which("redis-server")

# A multiple of every window below, so that each test starts on a bucket boundary.
T0 = 1_700_000_000.0


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on (handed out by the OS, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fast_client(port: int) -> redis.Redis:
    """A client that gives up after 50 ms and never retries, as the limiter's own client does."""
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=0.05,
        socket_connect_timeout=0.05,
        retry=Retry(NoBackoff(), 0),
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    assert REDIS_URL
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    prefix = f"yima:test:rl:{uuid.uuid4().hex}:"
    yield prefix
    for key in redis_client.scan_iter(match=f"{prefix}*"):
        redis_client.delete(key)


@pytest.fixture(params=["memory", pytest.param("redis", marks=needs_redis)])
def limiter(request: pytest.FixtureRequest, clock: FakeClock) -> RateLimiter:
    if request.param == "memory":
        return MemoryRateLimiter(clock=clock)
    client: redis.Redis = request.getfixturevalue("redis_client")
    prefix: str = request.getfixturevalue("redis_prefix")
    return RedisRateLimiter(client, prefix, clock=clock)


def test_allows_up_to_max_then_refuses_with_retry_after(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    limit = Limit("invalid-scan-ip", max_events=3, window_seconds=10)

    assert [limiter.hit(limit, "203.0.113.7") for _ in range(3)] == [
        Decision(True, 0, 2),
        Decision(True, 0, 1),
        Decision(True, 0, 0),
    ]
    # The three events count as spread over their bucket, so at t0+14 (weight 0.6, 1.8 events)
    # one more fits; at t0+13 (weight 0.7, 2.1 events) it does not.
    assert limiter.hit(limit, "203.0.113.7") == Decision(False, 14, 0)
    clock.advance(13)
    assert not limiter.hit(limit, "203.0.113.7").allowed
    clock.advance(1)
    assert limiter.hit(limit, "203.0.113.7") == Decision(True, 0, 0)


def test_retry_after_while_the_previous_bucket_slides_out(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    limit = Limit("invalid-scan-ip", max_events=3, window_seconds=10)
    for _ in range(3):
        limiter.hit(limit, "ip")
    clock.advance(15)  # half of the full previous bucket is still in the window: 1.5 events

    assert limiter.hit(limit, "ip") == Decision(True, 0, 0)
    assert limiter.hit(limit, "ip") == Decision(False, 2, 0)
    clock.advance(1)
    assert not limiter.hit(limit, "ip").allowed
    clock.advance(1)
    assert limiter.hit(limit, "ip").allowed


def test_window_slides_and_old_events_age_out(limiter: RateLimiter, clock: FakeClock) -> None:
    limit = Limit("invalid-scan-device", max_events=4, window_seconds=10)
    for _ in range(4):
        assert limiter.hit(limit, "dev").allowed
    clock.advance(10)  # the full bucket is a whole window old: still counted in full
    assert not limiter.hit(limit, "dev").allowed
    clock.advance(5)  # half of it has slid out
    assert [limiter.hit(limit, "dev").allowed for _ in range(3)] == [True, True, False]
    clock.advance(20)  # two windows after the last hit: nothing is left
    assert limiter.peek(limit, "dev") == Decision(True, 0, 4)
    assert [limiter.hit(limit, "dev").allowed for _ in range(5)] == [True] * 4 + [False]


def test_keys_and_limits_are_independent(limiter: RateLimiter) -> None:
    per_ip = Limit("invalid-scan-ip", max_events=2, window_seconds=60)
    per_device = Limit("invalid-scan-device", max_events=2, window_seconds=60)
    for _ in range(2):
        limiter.hit(per_ip, "198.51.100.1")

    assert not limiter.hit(per_ip, "198.51.100.1").allowed
    assert limiter.hit(per_ip, "198.51.100.2") == Decision(True, 0, 1)
    assert limiter.hit(per_device, "198.51.100.1") == Decision(True, 0, 1)


def test_cost_counts_several_events(limiter: RateLimiter) -> None:
    limit = Limit("batch-lookup", max_events=10, window_seconds=60)

    assert limiter.hit(limit, "k", cost=4) == Decision(True, 0, 6)
    assert limiter.hit(limit, "k", cost=4) == Decision(True, 0, 2)
    refused = limiter.hit(limit, "k", cost=4)
    assert not refused.allowed and refused.remaining == 2  # a smaller hit still fits
    assert limiter.hit(limit, "k", cost=2) == Decision(True, 0, 0)
    with pytest.raises(ValueError, match="cost"):
        limiter.hit(limit, "k", cost=0)
    with pytest.raises(ValueError, match="cost"):
        limiter.hit(limit, "k", cost=11)


def test_peek_decides_without_counting(limiter: RateLimiter, clock: FakeClock) -> None:
    limit = Limit("invalid-scan-ip", max_events=3, window_seconds=10)

    assert [limiter.peek(limit, "ip") for _ in range(10)] == [Decision(True, 0, 3)] * 10
    assert [limiter.hit(limit, "ip").allowed for _ in range(4)] == [True] * 3 + [False]
    assert limiter.peek(limit, "ip") == limiter.hit(limit, "ip") == Decision(False, 14, 0)
    assert limiter.peek(limit, "ip", cost=3) == Decision(False, 20, 0)


def test_reset_forgets_the_key(limiter: RateLimiter) -> None:
    limit = Limit("invalid-scan-ip", max_events=1, window_seconds=60)
    limiter.hit(limit, "ip")
    limiter.hit(limit, "other")

    limiter.reset(limit, "ip")

    assert limiter.hit(limit, "ip").allowed
    assert not limiter.hit(limit, "other").allowed


def test_concurrent_hits_allow_exactly_max(limiter: RateLimiter) -> None:
    limit = Limit("flood", max_events=500, window_seconds=60)
    start = threading.Barrier(8)
    allowed = [0] * 8

    def flood(worker: int) -> None:
        start.wait()
        allowed[worker] = sum(limiter.hit(limit, "one-key").allowed for _ in range(200))

    threads = [threading.Thread(target=flood, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(allowed) == 500


def test_limit_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="name"):
        Limit("a:b", 1, 1)
    with pytest.raises(ValueError, match="max_events"):
        Limit("a", 0, 1)
    with pytest.raises(ValueError, match="window_seconds"):
        Limit("a", 1, 0)


def test_memory_limiter_stays_bounded_under_a_flood_of_keys(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(max_keys=100_000, clock=clock)
    limit = Limit("invalid-scan-device", max_events=1, window_seconds=60)

    for i in range(200_000):
        assert limiter.hit(limit, f"device-{i}").allowed

    assert len(limiter) == 100_000
    assert limiter.peek(limit, "device-0").allowed  # the oldest were forgotten
    assert not limiter.peek(limit, "device-199999").allowed  # the newest are kept


def test_memory_limiter_evicts_the_least_recently_hit_key(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(max_keys=2, clock=clock)
    limit = Limit("l", max_events=1, window_seconds=60)
    limiter.hit(limit, "a")
    limiter.hit(limit, "b")
    assert not limiter.hit(limit, "a").allowed  # refused, but "a" is still flooding: keep it

    limiter.hit(limit, "c")

    assert not limiter.peek(limit, "a").allowed
    assert limiter.peek(limit, "b").allowed
    assert len(limiter) == 2


@needs_redis
def test_redis_and_memory_decide_alike(redis_client: redis.Redis, redis_prefix: str) -> None:
    clock = FakeClock(T0 + 0.123)
    memory = MemoryRateLimiter(clock=clock)
    shared = RedisRateLimiter(redis_client, redis_prefix, clock=clock)
    limits = [Limit("a", 5, 2.5), Limit("b", 17, 60), Limit("c", 1, 0.7)]
    rng = random.Random(20240501)

    for _ in range(2000):
        clock.advance(rng.choice([0, 0, 0, 0.01, 0.3, 1.1, 4]))
        limit, key = rng.choice(limits), rng.choice(["k1", "k2"])
        cost = rng.randint(1, min(3, limit.max_events))
        if rng.random() < 0.2:
            assert memory.peek(limit, key, cost) == shared.peek(limit, key, cost)
        else:
            assert memory.hit(limit, key, cost) == shared.hit(limit, key, cost)


@needs_redis
def test_redis_keys_expire_on_their_own(redis_client: redis.Redis, redis_prefix: str) -> None:
    limiter = RedisRateLimiter(redis_client, redis_prefix, clock=FakeClock())
    limit = Limit("invalid-scan-ip", max_events=3, window_seconds=10)

    limiter.hit(limit, "ip")
    limiter.peek(limit, "never-hit")

    assert 0 < redis_client.pttl(limiter.redis_key(limit, "ip")) <= 20_000
    assert not redis_client.exists(limiter.redis_key(limit, "never-hit"))


@needs_redis
def test_build_rate_limiter_uses_redis_through_its_own_fast_client(
    redis_client: redis.Redis,
) -> None:
    assert REDIS_URL
    limiter = build_rate_limiter(redis.Redis.from_url(REDIS_URL, socket_timeout=5))
    limit = Limit(f"build-{uuid.uuid4().hex}", max_events=2, window_seconds=60)
    assert isinstance(limiter, FallbackRateLimiter)
    assert isinstance(limiter.primary, RedisRateLimiter)
    try:
        assert [limiter.hit(limit, "k").allowed for _ in range(3)] == [True, True, False]
        assert not limiter.degraded
        assert redis_client.exists(limiter.primary.redis_key(limit, "k"))
        kwargs = limiter.primary.client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == DEFAULT_REDIS_TIMEOUT_SECONDS
        assert kwargs["retry"].get_retries() == 0
    finally:
        redis_client.delete(limiter.primary.redis_key(limit, "k"))
        limiter.primary.client.connection_pool.disconnect()


def test_without_redis_the_limiter_is_in_process() -> None:
    assert isinstance(build_rate_limiter(None), MemoryRateLimiter)


def test_fallback_answers_from_memory_when_redis_is_unreachable(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    client = fast_client(free_port())
    memory = MemoryRateLimiter(clock=clock)
    limiter = FallbackRateLimiter(RedisRateLimiter(client, clock=clock), memory, clock=clock)
    limit = Limit("invalid-scan-ip", max_events=3, window_seconds=10)

    with caplog.at_level(logging.WARNING, logger="core.ratelimit"):
        decisions = [limiter.hit(limit, "ip") for _ in range(4)]
        clock.advance(6)  # past the back-off: the primary is tried again, fails again
        decisions.append(limiter.hit(limit, "ip"))

    assert decisions == [
        Decision(True, 0, 2),
        Decision(True, 0, 1),
        Decision(True, 0, 0),
        Decision(False, 14, 0),
        Decision(False, 8, 0),
    ]
    assert limiter.degraded
    assert memory.peek(limit, "ip") == Decision(False, 8, 0)  # the fallback did the counting
    assert len(caplog.records) == 1  # two failures within 30 s: reported once
    assert "ConnectionError" in caplog.records[0].getMessage()
    client.close()


def test_build_rate_limiter_falls_back_when_redis_is_unreachable() -> None:
    # A default client retries with back-off for seconds; the limiter's own client must not.
    limiter = build_rate_limiter(redis.Redis(host="127.0.0.1", port=free_port()))
    limit = Limit("invalid-scan-ip", max_events=2, window_seconds=60)
    assert isinstance(limiter, FallbackRateLimiter)

    assert [limiter.hit(limit, "ip").allowed for _ in range(3)] == [True, True, False]
    assert limiter.degraded
    assert isinstance(limiter.fallback, MemoryRateLimiter)
    assert len(limiter.fallback) == 1


class RedisServer:
    """A throwaway redis-server without persistence, which a test may kill and restart."""

    def __init__(self, binary: str, port: int, workdir: Path) -> None:
        self.binary, self.port, self.workdir = binary, port, workdir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"]
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), *options, "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        probe = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    probe.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise
                    time.sleep(0.02)  # waiting for start-up, not for time to pass
        finally:
            probe.close()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(REDIS_SERVER, free_port(), tmp_path)
    server.start()
    yield server
    server.kill()


def test_limiting_survives_redis_dying_and_uses_it_again_once_back(
    redis_server: RedisServer, clock: FakeClock
) -> None:
    client = fast_client(redis_server.port)
    observer = redis.Redis(host="127.0.0.1", port=redis_server.port)
    memory = MemoryRateLimiter(clock=clock)
    primary = RedisRateLimiter(client, clock=clock)
    limiter = FallbackRateLimiter(primary, memory, backoff_seconds=5, clock=clock)
    limit = Limit("invalid-scan-ip", max_events=5, window_seconds=60)
    key = primary.redis_key(limit, "ip")

    assert limiter.hit(limit, "ip") == Decision(True, 0, 4)
    assert observer.hget(key, "c") == b"1"

    redis_server.kill()
    assert [limiter.hit(limit, "ip") for _ in range(2)] == [
        Decision(True, 0, 4),
        Decision(True, 0, 3),
    ]
    assert limiter.degraded
    assert memory.peek(limit, "ip").remaining == 3

    redis_server.start()
    clock.advance(4)  # still within the back-off: Redis is left alone
    assert limiter.hit(limit, "ip").allowed
    assert memory.peek(limit, "ip").remaining == 2
    assert not observer.exists(key)

    clock.advance(1)  # the back-off is over: the next hit probes Redis and finds it back
    assert limiter.hit(limit, "ip") == Decision(True, 0, 4)  # a fresh Redis: state was lost
    assert not limiter.degraded
    assert observer.hget(key, "c") == b"1"
    assert limiter.hit(limit, "ip") == Decision(True, 0, 3)
    assert memory.peek(limit, "ip").remaining == 2
    client.close()
    observer.close()
