"""The verdict: pure rules over what is known of a code and of this scan.

* genuine: valid, active, first scan; or a re-scan by the device that scanned it first;
* already_verified: valid, active, scanned before by another device;
* suspicious: valid but blacklisted, not activated, seen by too many devices, or moved faster
  than travel allows;
* counterfeit: the code failed verification (decided before any of this runs).

Re-scans by one device never escalate a verdict: devices are counted once each, and the first
device keeps getting ``genuine``. Signals name why; they reach the brand, never the consumer.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from anti_fraud import geo


@dataclass(frozen=True)
class Thresholds:
    """A tenant's anti-fraud configuration."""

    clone_device_threshold: int = 5
    auto_blacklist_device_threshold: int = 20
    max_travel_speed_kmh: float = 900.0
    ip_storage: str = "truncated"
    forged_cluster_threshold: int = 20
    forged_window_minutes: int = 60
    diversion_alert_score: float = 1.0


@dataclass(frozen=True)
class CodeFacts:
    """What the database says of the code once this scan is counted."""

    first_scan: bool
    first_device: str
    scan_count: int
    device_count: int
    blacklist_reason: str | None
    # From traceability: inactive when deactivated at the line, or never activated by a brand
    # that requires activation (the reason of a deactivation travels with it).
    activated: bool = True
    deactivated_reason: str | None = None
    # Where the code was last located before this scan, if this scan has coordinates.
    prev_lat: float | None = None
    prev_lon: float | None = None
    prev_located_at: dt.datetime | None = None


@dataclass(frozen=True)
class Judgement:
    verdict: str
    signals: tuple[str, ...] = field(default_factory=tuple)
    auto_blacklist: bool = False


def impossible_travel(
    facts: CodeFacts, lat: float | None, lon: float | None, at: dt.datetime, max_speed_kmh: float
) -> bool:
    """True when reaching (lat, lon) at ``at`` from the last located scan needs a faster speed
    (distances under 100 km are GPS noise and never count)."""
    if lat is None or lon is None or facts.prev_lat is None or facts.prev_lon is None:
        return False
    if facts.prev_located_at is None:
        return False
    before = geo.Place(None, None, None, facts.prev_lat, facts.prev_lon, "gps", "unknown")
    now = geo.Place(None, None, None, lat, lon, "gps", "unknown")
    return geo.travel_is_impossible(
        before, facts.prev_located_at, now, at, max_speed_kmh=max_speed_kmh
    )


def judge(
    facts: CodeFacts,
    *,
    device: str,
    thresholds: Thresholds,
    lat: float | None = None,
    lon: float | None = None,
    at: dt.datetime,
) -> Judgement:
    """The verdict for a valid code, from the facts after this scan was counted."""
    signals: list[str] = []
    if facts.blacklist_reason:
        signals.append(f"blacklisted:{facts.blacklist_reason}")
    if facts.deactivated_reason:
        signals.append(f"deactivated:{facts.deactivated_reason}")
    elif not facts.activated:
        signals.append("not_activated")
    if facts.device_count >= thresholds.clone_device_threshold:
        signals.append("many_devices")
    if impossible_travel(facts, lat, lon, at, thresholds.max_travel_speed_kmh):
        signals.append("impossible_travel")
    auto = (
        not facts.blacklist_reason
        and facts.device_count >= thresholds.auto_blacklist_device_threshold
    )
    if auto:
        signals.append("auto_blacklisted")
    if signals:
        return Judgement("suspicious", tuple(signals), auto_blacklist=auto)
    if facts.first_scan or device == facts.first_device:
        return Judgement("genuine")
    return Judgement("already_verified", ("seen_before",))
