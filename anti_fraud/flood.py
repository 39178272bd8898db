"""Flood control for codes that fail verification: sliding windows per IP and per device.

A client (IP or device) that sent too many invalid codes in the last minute is refused for a
while: the API answers 429 with Retry-After, a person gets a calm page. Valid scans are never
counted, so a shop scanning a pallet of genuine goods is never slowed down.

The request path decides from process memory only (a sliding window per client, exact for this
process), so answering a forged code costs no network round trip. With Redis, each process also
adds its counts to shared per-minute buckets from a background thread every 200 ms and reads the
totals back: a client over the limit across all processes and machines is refused everywhere
within a fraction of a second. Losing Redis loses only that sharing (DESIGN: Redis holds only
what may be lost).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from typing import Any

from core.ratelimit import Limit, MemoryRateLimiter
from core.runtime import Runtime

log = logging.getLogger("yima.anti_fraud")

SYNC_SECONDS = 0.2
PREFIX = "yima:flood:"


class FloodGuard:
    """Per-client invalid-scan windows: decided in memory, shared through Redis off the path."""

    def __init__(self, limits: tuple[Limit, Limit], redis: Any = None) -> None:
        self._limits = limits
        self._memory = MemoryRateLimiter()
        self._redis = redis
        self._lock = threading.Lock()
        self._pending: dict[tuple[int, str], int] = defaultdict(int)
        self._blocked: dict[tuple[int, str], float] = {}
        self._thread: threading.Thread | None = None
        self._warned = 0.0

    def count(self, clients: list[tuple[int, str]]) -> int:
        """Count one invalid scan for each (limit index, client); the seconds to wait, or 0."""
        wait = 0
        now = time.monotonic()
        for index, key in clients:
            decision = self._memory.hit(self._limits[index], key)
            if not decision.allowed:
                wait = max(wait, decision.retry_after)
            until = self._blocked.get((index, key))
            if until is not None:
                if until > now:
                    wait = max(wait, math.ceil(until - now))
                else:
                    self._blocked.pop((index, key), None)
        if self._redis is not None:
            with self._lock:
                for client in clients:
                    self._pending[client] += 1
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name="yima-flood-sync", daemon=True
                    )
                    self._thread.start()
        return wait

    def _run(self) -> None:
        while True:
            time.sleep(SYNC_SECONDS)
            try:
                self.sync()
            except Exception as exc:  # Redis down: memory windows still hold per process
                if time.monotonic() - self._warned > 30:
                    self._warned = time.monotonic()
                    log.warning("flood counts not shared (Redis unavailable): %s", exc)

    def sync(self, now: float | None = None) -> None:
        """Add this process's counts to the shared buckets and learn who is over the limit."""
        with self._lock:
            pending, self._pending = self._pending, defaultdict(int)
        if not pending:
            return
        now = time.time() if now is None else now
        pipe = self._redis.pipeline(transaction=False)
        entries = list(pending.items())
        for (index, key), count in entries:
            limit = self._limits[index]
            bucket = int(now // limit.window_seconds)
            current = f"{PREFIX}{limit.name}:{key}:{bucket}"
            pipe.incrby(current, count)
            pipe.expire(current, int(limit.window_seconds * 2) + 1)
            pipe.get(f"{PREFIX}{limit.name}:{key}:{bucket - 1}")
        replies = pipe.execute()
        blocked_at = time.monotonic()
        for n, ((index, key), _count) in enumerate(entries):
            limit = self._limits[index]
            total, previous = int(replies[3 * n]), int(replies[3 * n + 2] or 0)
            elapsed = (now % limit.window_seconds) / limit.window_seconds
            estimate = previous * (1 - elapsed) + total  # the sliding-window counter estimate
            if estimate > limit.max_events:
                over = (estimate - limit.max_events) / limit.max_events
                wait = min(limit.window_seconds, max(1.0, over * limit.window_seconds))
                self._blocked[(index, key)] = blocked_at + wait


_guards: dict[int, tuple[Runtime, FloodGuard]] = {}
_guards_lock = threading.Lock()


def guard_for(runtime: Runtime) -> FloodGuard:
    with _guards_lock:
        entry = _guards.get(runtime.key)
        if entry is None or entry[0] is not runtime:
            settings = runtime.settings
            limits = (
                Limit("invalid-ip", settings.invalid_scans_per_ip_per_minute, 60.0),
                Limit("invalid-device", settings.invalid_scans_per_device_per_minute, 60.0),
            )
            entry = _guards[runtime.key] = (runtime, FloodGuard(limits, runtime.redis))
        return entry[1]


def count_invalid(runtime: Runtime, *, ip: str | None, device: str | None) -> int:
    """Count one invalid scan for this client; the seconds it must now wait (0: none)."""
    clients = []
    if ip:
        clients.append((0, ip))
    if device:
        clients.append((1, device))
    return guard_for(runtime).count(clients)
