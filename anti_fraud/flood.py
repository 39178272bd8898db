"""Flood control for codes that fail verification: sliding windows per IP and per device.

A client (IP or device) that scanned too many invalid codes in the last minute is refused for a
while: the API answers 429 with Retry-After, a person gets a calm page. Valid scans are never
counted, so a shop scanning a pallet of genuine goods is never slowed down. Windows live in Redis
when configured (shared by every process) and in process memory otherwise or while Redis is down.
"""

from __future__ import annotations

import threading

from anti_fraud.ratelimit import Limit, RateLimiter, build_rate_limiter
from core.runtime import Runtime

_limiters: dict[int, tuple[Runtime, RateLimiter]] = {}
_lock = threading.Lock()


def _limiter(runtime: Runtime) -> RateLimiter:
    with _lock:
        entry = _limiters.get(id(runtime))
        if entry is None or entry[0] is not runtime:
            entry = _limiters[id(runtime)] = (runtime, build_rate_limiter(runtime.redis))
        return entry[1]


def _limits(runtime: Runtime) -> tuple[Limit, Limit]:
    settings = runtime.settings
    return (
        Limit("invalid-ip", settings.invalid_scans_per_ip_per_minute, 60.0),
        Limit("invalid-device", settings.invalid_scans_per_device_per_minute, 60.0),
    )


def _clients(ip: str | None, device: str | None) -> list[tuple[int, str]]:
    keys = []
    if ip:
        keys.append((0, ip))
    if device:
        keys.append((1, device))
    return keys


def retry_after(runtime: Runtime, *, ip: str | None, device: str | None) -> int:
    """Seconds this client must wait (0: it may scan)."""
    limiter, limits = _limiter(runtime), _limits(runtime)
    wait = 0
    for index, key in _clients(ip, device):
        decision = limiter.peek(limits[index], key)
        if not decision.allowed:
            wait = max(wait, decision.retry_after)
    return wait


def count_invalid(runtime: Runtime, *, ip: str | None, device: str | None) -> int:
    """Count one invalid scan for this client; returns the wait it has now earned (0: none)."""
    limiter, limits = _limiter(runtime), _limits(runtime)
    wait = 0
    for index, key in _clients(ip, device):
        decision = limiter.hit(limits[index], key)
        if not decision.allowed:
            wait = max(wait, decision.retry_after)
    return wait
