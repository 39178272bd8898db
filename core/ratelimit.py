"""Sliding-window rate limits per IP, per device, per phone — per anything with a string key.

Every limiter counts with the same two-bucket sliding-window counter (docs/rate-limits.md says
why this one and not an exact sliding log): time is cut into fixed buckets of ``window_seconds``;
the events in the sliding window ending now are estimated as ``previous * (1 - elapsed) +
current``, where ``elapsed`` is the fraction of the current bucket that has passed. A hit is
allowed when the estimate plus its cost stays within ``max_events``; refused hits are not counted,
so waiting ``retry_after`` seconds is enough to be let in again (absent other hits on the key).

- :class:`RedisRateLimiter` keeps the counters in Redis, one small hash per key, updated by one
  atomic Lua script per call (one round trip); keys expire on their own after two windows.
- :class:`MemoryRateLimiter` keeps them in-process (the embedded default, and the fallback),
  thread-safe and bounded in size.
- :class:`FallbackRateLimiter` uses Redis and, while Redis fails, the in-process limiter: losing
  Redis loses limiter state, never a request (DESIGN.md §5).

Use :func:`build_rate_limiter` rather than wiring these by hand.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

__all__ = [
    "Decision",
    "FallbackRateLimiter",
    "Limit",
    "MemoryRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
    "build_rate_limiter",
]

logger = logging.getLogger(__name__)

# Float slack when comparing the estimate with the limit: without it, waiting exactly
# ``retry_after`` could land a hair short of the boundary and be refused again.
_EPSILON = 1e-9

# Redis calls on the hot path: a healthy Redis answers in well under a millisecond, so anything
# slower is treated as down; only one request per back-off period pays this while it is.
DEFAULT_REDIS_TIMEOUT_SECONDS = 0.02


@dataclass(frozen=True)
class Limit:
    """At most ``max_events`` (summed costs) per sliding ``window_seconds`` for each key.

    ``name`` identifies the counters: two limits with the same name share them, so give each rule
    its own name (and a new one if its window changes). It may not contain ``:``.
    """

    name: str
    max_events: int
    window_seconds: float

    def __post_init__(self) -> None:
        if not self.name or ":" in self.name:
            raise ValueError(f"limit name must be non-empty and without ':': {self.name!r}")
        if self.max_events < 1:
            raise ValueError(f"max_events must be >= 1: {self.max_events}")
        if not self.window_seconds > 0:
            raise ValueError(f"window_seconds must be > 0: {self.window_seconds}")


@dataclass(frozen=True)
class Decision:
    """The answer for one hit (or peek).

    ``retry_after`` is whole seconds (>= 1) to wait before the same hit would be allowed when it
    is refused, else 0: it is the ``Retry-After`` of the 429. ``remaining`` is how many cost-1
    hits the key would still be allowed right now, after this one is counted (a peek counts none).
    """

    allowed: bool
    retry_after: int
    remaining: int


class RateLimiter(Protocol):
    """What the scan service needs from a limiter; every implementation has the same semantics."""

    def hit(self, limit: Limit, key: str, cost: int = 1) -> Decision:
        """Count ``cost`` events for ``key`` if they fit within ``limit``, and decide."""
        ...

    def peek(self, limit: Limit, key: str, cost: int = 1) -> Decision:
        """Decide as :meth:`hit` would, without counting anything."""
        ...

    def reset(self, limit: Limit, key: str) -> None:
        """Forget every event counted for ``key`` under ``limit``."""
        ...


def _check_cost(limit: Limit, cost: int) -> None:
    # A cost above the limit could never be allowed: that is a caller's bug, not a flood.
    if not 1 <= cost <= limit.max_events:
        raise ValueError(f"cost must be between 1 and {limit.max_events} for {limit.name}: {cost}")


def _decide(
    *, previous: float, current: float, elapsed: float, max_events: int, window: float, cost: int
) -> tuple[bool, int, int]:
    """The two-bucket decision: (allowed, retry_after, remaining before counting this hit).

    ``previous`` and ``current`` are the counts of the previous and current buckets, ``elapsed``
    the fraction of the current bucket gone by. The Lua script in :class:`RedisRateLimiter`
    computes exactly this; the tests hold them to it.
    """
    estimate = previous * (1.0 - elapsed) + current
    if estimate + cost <= max_events + _EPSILON:
        return True, 0, math.floor(max_events - estimate + _EPSILON)
    if current + cost <= max_events:
        # Fits in this bucket once enough of the previous one has slid out of the window.
        needed = 1.0 - (max_events - current - cost) / previous
        wait = (needed - elapsed) * window
    else:
        # Only in the next bucket, where this bucket's count becomes the sliding-out one.
        needed = max(0.0, 1.0 - (max_events - cost) / current)
        wait = (1.0 - elapsed + needed) * window
    return False, max(1, math.ceil(wait)), max(0, math.floor(max_events - estimate + _EPSILON))


class MemoryRateLimiter:
    """In-process limiter: thread-safe, monotonic clock, at most ``max_keys`` counters.

    When full it forgets the least recently hit key (a forgotten key starts again from zero), so
    a flood of distinct keys costs bounded memory at the price of under-counting the oldest keys.
    State is per process: with several worker processes each enforces the limit on its own.
    """

    def __init__(
        self, max_keys: int = 100_000, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1: {max_keys}")
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        # (limit name, key) -> (bucket number, current count, previous count), oldest first.
        self._counters: OrderedDict[tuple[str, str], tuple[int, int, int]] = OrderedDict()

    def __len__(self) -> int:
        """How many keys are being tracked (at most ``max_keys``)."""
        return len(self._counters)

    def hit(self, limit: Limit, key: str, cost: int = 1) -> Decision:
        """Count ``cost`` events for ``key`` if they fit within ``limit``, and decide."""
        return self._apply(limit, key, cost, record=True)

    def peek(self, limit: Limit, key: str, cost: int = 1) -> Decision:
        """Decide as :meth:`hit` would, without counting anything."""
        return self._apply(limit, key, cost, record=False)

    def reset(self, limit: Limit, key: str) -> None:
        """Forget every event counted for ``key`` under ``limit``."""
        with self._lock:
            self._counters.pop((limit.name, key), None)

    def _apply(self, limit: Limit, key: str, cost: int, *, record: bool) -> Decision:
        _check_cost(limit, cost)
        window = limit.window_seconds
        now = self._clock()
        bucket = math.floor(now / window)
        elapsed = now / window - bucket
        counter_key = (limit.name, key)
        with self._lock:
            state = self._counters.get(counter_key)
            current = previous = 0
            if state is not None:
                if state[0] >= bucket:
                    # Only an injected clock can step back; do as the Lua script does for skew.
                    if state[0] > bucket:
                        bucket, elapsed = state[0], 0.0
                    current, previous = state[1], state[2]
                elif state[0] == bucket - 1:
                    previous = state[1]
            allowed, retry_after, remaining = _decide(
                previous=previous,
                current=current,
                elapsed=elapsed,
                max_events=limit.max_events,
                window=window,
                cost=cost,
            )
            if record and allowed:
                remaining -= cost
                self._counters[counter_key] = (bucket, current + cost, previous)
                self._counters.move_to_end(counter_key)
                if len(self._counters) > self._max_keys:
                    self._counters.popitem(last=False)
            elif record and state is not None:
                # A refused hit still marks the key as active, so floods are not evicted first.
                self._counters.move_to_end(counter_key)
        return Decision(allowed, retry_after, remaining)


# KEYS[1]: the counter hash {b: bucket number, c: current count, p: previous count}.
# ARGV: now (seconds), window (seconds), max_events, cost, record (1 or 0), ttl (milliseconds).
# Mirrors _decide(); `now` comes from the caller so that tests can step time.
_HIT_SCRIPT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local max_events = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local eps = 1e-9
local bucket = math.floor(now / window)
local elapsed = now / window - bucket
local state = redis.call('HMGET', KEYS[1], 'b', 'c', 'p')
local b = tonumber(state[1])
local current, previous = 0, 0
if b ~= nil then
  if b >= bucket then
    if b > bucket then
      -- Another server's clock is a little ahead: join its bucket at its start, never rewind it.
      bucket, elapsed = b, 0
    end
    current, previous = tonumber(state[2]), tonumber(state[3])
  elseif b == bucket - 1 then
    previous = tonumber(state[2])
  end
end
local estimate = previous * (1 - elapsed) + current
local remaining = math.floor(max_events - estimate + eps)
if estimate + cost <= max_events + eps then
  if ARGV[5] == '1' then
    redis.call('HSET', KEYS[1], 'b', bucket, 'c', current + cost, 'p', previous)
    redis.call('PEXPIRE', KEYS[1], ARGV[6])
    remaining = remaining - cost
  end
  return {1, 0, remaining}
end
local wait
if current + cost <= max_events then
  wait = (1 - (max_events - current - cost) / previous - elapsed) * window
else
  wait = (1 - elapsed + math.max(0, 1 - (max_events - cost) / current)) * window
end
return {0, math.max(1, math.ceil(wait)), math.max(0, remaining)}
"""


class RedisRateLimiter:
    """Limiter whose counters live in Redis (7+), shared by every process and machine.

    Each call is one atomic script round trip on one key (``{prefix}{limit name}:{key}``, cluster
    safe). Redis errors propagate: wrap this in :class:`FallbackRateLimiter` (as
    :func:`build_rate_limiter` does) so that they never reach a request. ``clock`` is wall-clock
    time because several machines share the buckets; NTP-level skew is harmless.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "yima:rl:",
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self._prefix = prefix
        self._clock = clock
        self._script = client.register_script(_HIT_SCRIPT)

    def hit(self, limit: Limit, key: str, cost: int = 1) -> Decision:
        """Count ``cost`` events for ``key`` if they fit within ``limit``, and decide."""
        return self._apply(limit, key, cost, record=True)

    def peek(self, limit: Limit, key: str, cost: int = 1) -> Decision:
        """Decide as :meth:`hit` would, without counting anything."""
        return self._apply(limit, key, cost, record=False)

    def reset(self, limit: Limit, key: str) -> None:
        """Forget every event counted for ``key`` under ``limit``."""
        self.client.delete(self.redis_key(limit, key))

    def redis_key(self, limit: Limit, key: str) -> str:
        """The Redis key holding ``key``'s counters under ``limit``."""
        return f"{self._prefix}{limit.name}:{key}"

    def _apply(self, limit: Limit, key: str, cost: int, *, record: bool) -> Decision:
        _check_cost(limit, cost)
        # The counters matter until the end of the bucket after the current one.
        ttl_ms = math.ceil(2 * limit.window_seconds * 1000)
        args = [
            repr(self._clock()),
            repr(float(limit.window_seconds)),
            limit.max_events,
            cost,
            1 if record else 0,
            ttl_ms,
        ]
        allowed, retry_after, remaining = self._script(keys=[self.redis_key(limit, key)], args=args)
        return Decision(bool(allowed), int(retry_after), int(remaining))


_T = TypeVar("_T")


class Failover:
    """Which of two backends to use: the primary until it raises one of ``errors``, then the
    fallback, never an error.

    After a failure the primary is left alone for ``backoff_seconds``; then a single call probes
    it (the others keep using the fallback, so a hung Redis delays one call per back-off, not all
    of them) and a success puts it back in use. Failures are logged at most once per
    ``log_interval_seconds``, naming ``what`` uses the primary. Shared by the rate limiters and
    the reward-fraud counters (campaigns/fraud.py).
    """

    def __init__(
        self,
        what: str,
        *,
        errors: tuple[type[BaseException], ...] = (RedisError, OSError),
        backoff_seconds: float = 5.0,
        log_interval_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self._errors = errors
        self._backoff = backoff_seconds
        self._log_interval = log_interval_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._down = False
        self._retry_at = 0.0
        self._probing = False
        self._logged_at: float | None = None
        self._unlogged_failures = 0

    @property
    def degraded(self) -> bool:
        """True while the primary is considered down and the fallback answers."""
        return self._down

    def call(self, primary: Callable[[], _T], fallback: Callable[[], _T]) -> _T:
        """``primary()`` when it is in use and answers, else ``fallback()``."""
        now = self._clock()
        with self._lock:
            if not self._down:
                use_primary, probe = True, False
            elif now >= self._retry_at and not self._probing:
                use_primary = probe = self._probing = True
            else:
                use_primary = probe = False
        if use_primary:
            try:
                result = primary()
            except self._errors as exc:
                self._failed(exc, probe)
            else:
                if probe:
                    with self._lock:
                        self._down = self._probing = False
                    logger.info("%s: Redis is back in use", self.what)
                return result
        return fallback()

    def _failed(self, exc: BaseException, probe: bool) -> None:
        now = self._clock()
        with self._lock:
            if probe:
                self._probing = False
            self._down = True
            self._retry_at = now + self._backoff
            if self._logged_at is not None and now - self._logged_at < self._log_interval:
                self._unlogged_failures += 1
                return
            self._logged_at, suppressed, self._unlogged_failures = now, self._unlogged_failures, 0
        logger.warning(
            "%s: Redis unavailable (%s: %s), working in-process%s",
            self.what,
            type(exc).__name__,
            exc,
            f" ({suppressed} failures since the last report)" if suppressed else "",
        )


class FallbackRateLimiter:
    """Uses ``primary`` and, while it raises one of ``errors``, ``fallback``: never an error
    (:class:`Failover` decides which). Counts made in the fallback stay there: a switch costs at
    most one window of leniency, which is what losing Redis state means anyway.
    """

    def __init__(
        self,
        primary: RateLimiter,
        fallback: RateLimiter,
        *,
        errors: tuple[type[BaseException], ...] = (RedisError, OSError),
        backoff_seconds: float = 5.0,
        log_interval_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self._failover = Failover(
            "rate limiter",
            errors=errors,
            backoff_seconds=backoff_seconds,
            log_interval_seconds=log_interval_seconds,
            clock=clock,
        )

    @property
    def degraded(self) -> bool:
        """True while the primary is considered down and decisions come from the fallback."""
        return self._failover.degraded

    def hit(self, limit: Limit, key: str, cost: int = 1) -> Decision:
        """Count ``cost`` events for ``key`` if they fit within ``limit``, and decide."""
        return self._call(lambda limiter: limiter.hit(limit, key, cost))

    def peek(self, limit: Limit, key: str, cost: int = 1) -> Decision:
        """Decide as :meth:`hit` would, without counting anything."""
        return self._call(lambda limiter: limiter.peek(limit, key, cost))

    def reset(self, limit: Limit, key: str) -> None:
        """Forget ``key``'s events in both limiters (the fallback may hold some from an outage)."""
        self._call(lambda limiter: limiter.reset(limit, key))
        self.fallback.reset(limit, key)

    def _call(self, operation: Callable[[RateLimiter], _T]) -> _T:
        return self._failover.call(
            lambda: operation(self.primary), lambda: operation(self.fallback)
        )


def fast_redis_client(
    url: str, timeout_seconds: float = DEFAULT_REDIS_TIMEOUT_SECONDS
) -> redis.Redis:
    """A client that gives up at once (short timeouts, no retries): the shared one waits and
    retries for seconds, which would hold a scan hostage to a dead Redis; a healthy one answers
    in well under a millisecond."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), 0),
        retry_on_error=[],
        health_check_interval=0,
    )


def _limiter_client(client: redis.Redis, timeout_seconds: float) -> redis.Redis:
    """A client to the same server as ``client`` with its own pool, short timeouts, no retries.

    The shared client may wait seconds (long timeouts, redis-py's default retries with back-off),
    which would hold a scan hostage to a dead Redis; the limiter would rather fall back at once.
    """
    pool = client.connection_pool
    kwargs: dict[str, Any] = {
        name: value
        for name, value in pool.connection_kwargs.items()
        # Per-pool machinery that a new pool builds for itself.
        if not name.startswith(("maint_notifications", "orig_", "himport_"))
    }
    kwargs.update(
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), 0),
        retry_on_error=[],
        health_check_interval=0,
    )
    return redis.Redis(
        connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
    )


def build_rate_limiter(
    redis_client: redis.Redis | None,
    *,
    max_keys: int = 100_000,
    timeout_seconds: float = DEFAULT_REDIS_TIMEOUT_SECONDS,
) -> RateLimiter:
    """The limiter for this process: Redis with an in-process fallback, or in-process only.

    With a client, the limiter talks to the same server through its own connection pool with
    ``timeout_seconds`` timeouts and no retries; nothing is sent to Redis until the first hit.
    """
    memory = MemoryRateLimiter(max_keys)
    if redis_client is None:
        return memory
    primary = RedisRateLimiter(_limiter_client(redis_client, timeout_seconds))
    return FallbackRateLimiter(primary, memory)
