"""Benchmark: rate-limit hits per second on one thread, and the evidence behind the algorithm.

Run: ``.venv/bin/python bench/bench_ratelimit.py [--redis redis://127.0.0.1:6379/15] [--n 20000]``
(``YIMA_TEST_REDIS_URL`` is used when ``--redis`` is not given; without either only the in-process
parts run). Writes only keys under a random ``yima:bench:`` prefix, deleted at the end.

It prints, in one run on one machine:

- throughput: the in-process limiter, the Redis two-bucket counter (what ships), an exact Redis
  sliding log (the alternative, a Lua script defined here only), and Redis ``PING`` as the
  round-trip floor that no one-round-trip limiter can beat;
- memory per key: ``MEMORY USAGE`` of a full key for both Redis layouts, and bytes per key of
  the in-process limiter against an in-process log;
- accuracy: the counter's decisions against the exact log on simulated traffic, with a fake clock.

Each throughput figure is the median over chunks of 500 operations, the contenders taking turns
chunk by chunk (the machine may be shared); the best chunk is shown beside it. Redis is reached
over TCP through redis-py, as the scan service does; Redis's own time per call is shown as well.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import tracemalloc
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

import redis

from bench.machine import machine
from core.ratelimit import Limit, MemoryRateLimiter, RedisRateLimiter

CHUNK = 500

# The exact alternative: one sorted-set member per event, scored by its time.
# KEYS[1]; ARGV: now, window, max_events, cost, unique member id, ttl (ms).
SLIDING_LOG_SCRIPT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local max_events = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n + cost <= max_events then
  for i = 1, cost do redis.call('ZADD', KEYS[1], now, ARGV[5] .. ':' .. i) end
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  return {1, 0, max_events - n - cost}
end
local oldest = redis.call('ZRANGE', KEYS[1], n + cost - max_events - 1,
  n + cost - max_events - 1, 'WITHSCORES')
return {0, math.max(1, math.ceil(tonumber(oldest[2]) + window - now)), max_events - n}
"""


class SlidingLog:
    """The exact sliding log in-process (the accuracy reference): events in (now - W, now]."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.logs: dict[str, deque[float]] = {}

    def hit(self, limit: Limit, key: str) -> bool:
        now = self.clock()
        log = self.logs.setdefault(key, deque())
        while log and log[0] <= now - limit.window_seconds:
            log.popleft()
        if len(log) + 1 > limit.max_events:
            return False
        log.append(now)
        return True


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# label, unit, run over a chunk of keys, the Redis command it sends (for the server-side time)
Contender = tuple[str, str, Callable[[list[str]], object], str | None]


def measure(
    contenders: list[Contender], keys: list[str], repeat: int, server: redis.Redis | None = None
) -> dict[str, float]:
    """Per contender: the median rate over chunks of ``CHUNK`` operations, best chunk beside it.

    Contenders take turns chunk by chunk, so that a neighbour's burst on a shared machine hits
    them alike instead of skewing one. With ``server``, Redis's own time per command (from
    ``INFO commandstats``, diffed around each chunk) is shown too: it is free of that noise.
    """
    chunks = [keys[i : i + CHUNK] for i in range(0, len(keys), CHUNK)]
    times: dict[str, list[float]] = {label: [] for label, _, _, _ in contenders}
    server_usec = dict.fromkeys(times, 0.0)
    server_calls = dict.fromkeys(times, 0)
    for _ in range(repeat):
        for chunk in chunks:
            for label, _, run, command in contenders:
                before = server.info("commandstats") if server is not None else {}
                t0 = time.perf_counter()
                run(chunk)
                times[label].append((time.perf_counter() - t0) / len(chunk))
                if server is not None and command is not None:
                    # Only this command: the ones a script calls are counted apart as well.
                    key = f"cmdstat_{command}"
                    after = server.info("commandstats").get(key, {"calls": 0, "usec": 0})
                    old = before.get(key, {"calls": 0, "usec": 0})
                    server_calls[label] += after["calls"] - old["calls"]
                    server_usec[label] += after["usec"] - old["usec"]
    rates = {}
    for label, unit, _, _ in contenders:
        rates[label] = 1 / statistics.median(times[label])
        line = (
            f"{label:<44} {rates[label]:>9,.0f} {unit}/s (best chunk {1 / min(times[label]):,.0f})"
        )
        if server_calls[label]:
            line += f"  redis-side {server_usec[label] / server_calls[label]:.2f} us/call"
        print(line)
    return rates


def keys_for(n: int, distinct: int) -> list[str]:
    rng = random.Random(7)
    return [f"198.51.{k // 256}.{k % 256}" for k in (rng.randrange(distinct) for _ in range(n))]


def bench_memory(n: int, repeat: int) -> None:
    limit = Limit("bench", max_events=30, window_seconds=60)
    keys = keys_for(n, 1000)  # 1000 IPs, most over their limit after the first run: both paths

    limiter = MemoryRateLimiter()
    measure(
        [
            (
                "in-process counter hit",
                "hits",
                lambda chunk: [limiter.hit(limit, k) for k in chunk],
                None,
            )
        ],
        keys,
        repeat,
    )

    # Bytes per tracked key (its name included): the counter against a log of 30 floats per key.
    def fill_counter() -> object:
        counter = MemoryRateLimiter(max_keys=100_000)
        for i in range(100_000):
            counter.hit(limit, f"device-{i:08d}")
        return counter

    def fill_log() -> object:
        clock = Clock(0.0)
        log = SlidingLog(clock)
        for i in range(100_000):
            for j in range(limit.max_events):
                clock.now = j * 0.001
                log.hit(limit, f"device-{i:08d}")
        return log

    for label, fill in [("in-process counter", fill_counter), ("in-process exact log", fill_log)]:
        tracemalloc.start()
        kept = fill()
        used = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del kept
        print(f"{label + ' bytes per full key (max 30)':<44} {used / 100_000:>9,.0f} B")


def bench_redis(url: str, n: int, repeat: int) -> None:
    client = redis.Redis.from_url(url)
    info = client.info("server")
    print(f"redis {info['redis_version']} at {url}")
    prefix = f"yima:bench:{uuid.uuid4().hex}:"
    try:
        limit = Limit("bench", max_events=30, window_seconds=60)
        keys = keys_for(n, 1000)  # 1000 IPs over a 30/min limit: allowed and refused hits
        counter = RedisRateLimiter(client, prefix + "c:")
        log_script = client.register_script(SLIDING_LOG_SCRIPT)
        seq = iter(range(10**12))

        def log_hits(chunk: list[str]) -> None:
            for k in chunk:
                now = time.time()
                log_script(
                    keys=[f"{prefix}l:bench:{k}"],
                    args=[repr(now), 60.0, 30, 1, f"{now!r}:{next(seq)}", 120_000],
                )

        floor = "redis PING (round-trip floor)"
        rates = measure(
            [
                (floor, "pings", lambda chunk: [client.ping() for _ in chunk], "ping"),
                (
                    "redis counter hit (shipped)",
                    "hits",
                    lambda chunk: [counter.hit(limit, k) for k in chunk],
                    "evalsha",
                ),
                ("redis exact sliding log hit (alternative)", "hits", log_hits, "evalsha"),
            ],
            keys,
            repeat,
            server=client,
        )
        for label, rate in rates.items():
            if label != floor:
                print(f"  {label:<42} {rate / rates[floor]:>9.0%} of the PING floor")

        # Memory of one full key (max_events events inside the window), as Redis reports it.
        for max_events in (10, 100, 1000):
            big = Limit("mem", max_events=max_events, window_seconds=3600)
            counter.hit(big, "k", cost=max_events)
            now = time.time()
            for i in range(max_events):
                log_script(
                    keys=[f"{prefix}l:mem:{max_events}"],
                    args=[
                        repr(now + i * 1e-3),
                        3600.0,
                        max_events,
                        1,
                        f"{now + i * 1e-3!r}:{next(seq)}",
                        7_200_000,
                    ],
                )
            counter_bytes = client.memory_usage(counter.redis_key(big, "k"), samples=0)
            log_bytes = client.memory_usage(f"{prefix}l:mem:{max_events}", samples=0)
            counter.reset(big, "k")
            print(
                f"{f'redis bytes per full key (max {max_events})':<44} "
                f"counter {counter_bytes:>6,} B   log {log_bytes:>8,} B"
            )
    finally:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
        client.close()


def max_in_any_window(times: list[float], window: float) -> int:
    """The most events admitted in any (t - window, t] — the log never exceeds max_events."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def bench_accuracy() -> None:
    """The counter against the exact log on one key, over 1000 windows of simulated traffic:
    how many hits each admits, and the most it admits within any one sliding window."""
    limit = Limit("acc", max_events=30, window_seconds=60)
    w = limit.window_seconds
    rng = random.Random(11)
    horizon = 1000 * w

    def poisson(rate_per_window: float) -> list[float]:
        times: list[float] = []
        t = 0.0
        while True:
            t += rng.expovariate(rate_per_window / w)
            if t >= horizon:
                return times
            times.append(t)

    def end_burst_then_trickle() -> list[float]:
        # The counter's worst case: a full burst in the last second of a bucket (weighted down
        # as the next bucket goes by, though it is all still inside the window), then a steady
        # stream through the next bucket that takes every slot the weighting frees.
        times: list[float] = []
        for b in range(0, 1000, 2):
            times += [(b + 1) * w - 1 + i * 0.01 for i in range(limit.max_events)]
            times += [(b + 1) * w + i * 0.1 for i in range(int(w * 10))]
        return times

    patterns = [
        ("legit: Poisson at 0.5x the limit", poisson(15)),
        ("Poisson at 1x", poisson(30)),
        ("flood: Poisson at 3x", poisson(90)),
        ("flood: Poisson at 20x", poisson(600)),
        ("adversarial: end burst, then trickle", end_burst_then_trickle()),
    ]
    print(f"accuracy against the exact sliding log (limit {limit.max_events}/{w:g}s, one key):")
    print(
        f"  {'traffic':<38} {'hits':>8} {'admitted: log':>14} {'counter':>8} "
        f"{'most in one window: log':>24} {'counter':>8}"
    )
    for label, times in patterns:
        clock_c, clock_l = Clock(0.0), Clock(0.0)
        counter, log = MemoryRateLimiter(clock=clock_c), SlidingLog(clock_l)
        admitted_c: list[float] = []
        admitted_l: list[float] = []
        for t in times:
            clock_c.now = clock_l.now = t
            if counter.hit(limit, "k").allowed:
                admitted_c.append(t)
            if log.hit(limit, "k"):
                admitted_l.append(t)
        print(
            f"  {label:<38} {len(times):>8,} {len(admitted_l):>14,} {len(admitted_c):>8,} "
            f"{max_in_any_window(admitted_l, w):>24} {max_in_any_window(admitted_c, w):>8}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", default=os.environ.get("YIMA_TEST_REDIS_URL"))
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(machine())
    bench_memory(args.n * 4, args.repeat)
    if args.redis:
        bench_redis(args.redis, args.n, args.repeat)
    else:
        print("redis: skipped (pass --redis URL or set YIMA_TEST_REDIS_URL)")
    bench_accuracy()


if __name__ == "__main__":
    main()
