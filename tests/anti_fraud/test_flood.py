"""Flood windows: decided in process memory, shared between processes through Redis."""

from __future__ import annotations

import pytest

from anti_fraud.flood import FloodGuard
from core.ratelimit import Limit
from tests.conftest import REDIS_URL

LIMITS = (Limit("test-ip", 30, 60.0), Limit("test-device", 20, 60.0))


def test_one_process_refuses_past_the_limit_and_tells_how_long() -> None:
    guard = FloodGuard(LIMITS)
    waits = [guard.count([(0, "198.51.100.1")]) for _ in range(31)]
    assert waits[:30] == [0] * 30 and waits[30] >= 1
    assert guard.count([(0, "198.51.100.2")]) == 0  # another client is unaffected


@pytest.mark.skipif(not REDIS_URL, reason="set YIMA_TEST_REDIS_URL to share windows through Redis")
def test_a_client_over_the_limit_across_processes_is_refused_everywhere() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    key = "203.0.113.250"
    for k in client.scan_iter(f"yima:flood:test-ip:{key}:*"):
        client.delete(k)
    first, second = FloodGuard(LIMITS, client), FloodGuard(LIMITS, client)
    # 20 invalid scans land on each of two processes: each alone is under 30.
    assert all(first.count([(0, key)]) == 0 for _ in range(20))
    assert all(second.count([(0, key)]) == 0 for _ in range(20))
    first.sync()
    second.sync()  # the shared total (40) is over the limit: the second process knows now
    assert second.count([(0, key)]) >= 1
    # The first learns at its next sync (every 200 ms in the background): one more scan passes.
    assert first.count([(0, key)]) == 0
    first.sync()
    assert first.count([(0, key)]) >= 1
    for k in client.scan_iter(f"yima:flood:test-ip:{key}:*"):
        client.delete(k)


def test_redis_down_leaves_the_memory_windows_working() -> None:
    import redis

    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.05)
    guard = FloodGuard(LIMITS, dead)
    waits = [guard.count([(1, "device-x")]) for _ in range(21)]
    assert waits[-1] >= 1
    with pytest.raises(redis.ConnectionError):
        guard.sync()  # the background thread logs this and carries on
