"""Anti-fraud services: thresholds, recording scans with their verdict, location refinement,
the blacklist and the scan history of a code. Functions take a session, flush, never commit."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

import traceability
from anti_fraud import flood, geo
from anti_fraud.errors import BlacklistEntryNotFoundError, ScanNotFoundError
from anti_fraud.invalid import invalid_scan_row, spool_for
from anti_fraud.models import (
    BLACKLIST_REASONS,
    IP_MODES,
    BlacklistEntry,
    CodeState,
    Scan,
    TenantSettings,
)
from anti_fraud.recording import count_scan, insert_scan
from anti_fraud.scan_ids import decode_scan_id, encode_scan_id
from anti_fraud.verdicts import CodeFacts, Thresholds, impossible_travel, judge
from core.db import utcnow
from core.errors import ValidationFailedError
from core.runtime import Runtime

# --- thresholds -----------------------------------------------------------------------------

_THRESHOLD_FIELDS = tuple(Thresholds.__dataclass_fields__)
_cache: dict[tuple[int, int], tuple[float, Thresholds]] = {}
_cache_lock = threading.Lock()
SETTINGS_TTL = 30.0


def get_thresholds(runtime: Runtime, tenant_id: int, session: Session | None = None) -> Thresholds:
    """The tenant's thresholds, read at most every 30 s per process (through ``session`` when
    given: a request must not wait for a second connection while it holds its own)."""
    key = (runtime.key, tenant_id)
    hit = _cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < SETTINGS_TTL:
        return hit[1]
    if session is not None:
        row = session.get(TenantSettings, tenant_id)
    else:
        with runtime.db.read_only() as own:
            row = own.get(TenantSettings, tenant_id)
    thresholds = (
        Thresholds(**{f: getattr(row, f) for f in _THRESHOLD_FIELDS}) if row else Thresholds()
    )
    with _cache_lock:
        _cache[key] = (time.monotonic(), thresholds)
    return thresholds


def update_thresholds(
    session: Session, runtime: Runtime, *, tenant_id: int, **changes: Any
) -> Thresholds:
    unknown = set(changes) - set(_THRESHOLD_FIELDS)
    if unknown:
        raise ValidationFailedError.field(sorted(unknown)[0], "unknown setting")
    for name in (
        "clone_device_threshold",
        "auto_blacklist_device_threshold",
        "forged_cluster_threshold",
        "forged_window_minutes",
    ):
        value = changes.get(name)
        if value is not None and (isinstance(value, bool) or not 1 <= int(value) <= 1_000_000):
            raise ValidationFailedError.field(name, "must be a whole number from 1 to 1000000")
    score = changes.get("diversion_alert_score")
    if score is not None and not 0.1 <= float(score) <= 1000:
        raise ValidationFailedError.field("diversion_alert_score", "must be from 0.1 to 1000")
    speed = changes.get("max_travel_speed_kmh")
    if speed is not None and not 10 <= float(speed) <= 100_000:
        raise ValidationFailedError.field("max_travel_speed_kmh", "must be from 10 to 100000")
    if changes.get("ip_storage") is not None and changes["ip_storage"] not in IP_MODES:
        raise ValidationFailedError.field("ip_storage", f"must be one of {', '.join(IP_MODES)}")
    row = session.get(TenantSettings, tenant_id)
    if row is None:
        row = TenantSettings(tenant_id=tenant_id, **asdict(Thresholds()))
        session.add(row)
    for name, value in changes.items():
        if value is not None:
            setattr(row, name, value)
    row.updated_at = utcnow()
    session.flush()
    with _cache_lock:
        _cache.pop((runtime.key, tenant_id), None)
    return Thresholds(**{f: getattr(row, f) for f in _THRESHOLD_FIELDS})


# --- recording a valid scan ------------------------------------------------------------------


@dataclass(frozen=True)
class ScanRequest:
    """What arrives with a scan, from the page or the API."""

    code: str
    ip: str | None = None
    device: str | None = None
    user_agent: str | None = None
    lat: float | None = None
    lon: float | None = None
    accuracy_m: float | None = None


@dataclass(frozen=True)
class ScanOutcome:
    verdict: str
    signals: tuple[str, ...]
    scan_id: str
    first_scan_at: dt.datetime
    first_place: dict[str, Any] | None
    scan_count: int
    device_count: int
    place: dict[str, Any] = field(default_factory=dict)
    diverted: bool | None = None
    device: str | None = None  # the device's keyed id (device_key)
    ip: str | None = None  # the IP as the brand stores it (truncated or keyed-hashed by policy)


def device_key(runtime: Runtime, device: str | None, ip: str | None, user_agent: str | None) -> str:
    """A stable, non-reversible id of the scanning device (its cookie or app id, else IP+UA)."""
    basis = f"d:{device}" if device else f"n:{ip}|{user_agent or ''}"
    key = runtime.settings.secret_key.encode()
    return hmac.new(key, basis.encode(), hashlib.sha256).hexdigest()[:32]


def place_of(request: ScanRequest) -> geo.Place:
    """Where the scan happened: the phone's GPS when given, else the IP."""
    if request.lat is not None and request.lon is not None:
        try:
            return geo.locate_gps(request.lat, request.lon, request.accuracy_m)
        except ValueError:
            pass
    return geo.locate_ip(request.ip or "")


def record_valid_scan(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    batch_id: int,
    serial: int,
    request: ScanRequest,
    trail: traceability.CodeTrail | None = None,
    now: dt.datetime | None = None,
) -> ScanOutcome:
    """Count the scan, judge it and record it, in the caller's transaction.

    ``trail`` is what traceability knows of the code: whether it is active, and who holds it
    with which authorised regions; a scan located outside them is flagged ``diverted`` (for
    the brand: it never changes the consumer's verdict)."""
    now = now or utcnow()
    thresholds = get_thresholds(runtime, tenant_id, session)
    device = device_key(runtime, request.device, request.ip, request.user_agent)
    ip_place, kept_ip = _ip_facts(
        runtime.settings.secret_key, request.ip or "", thresholds.ip_storage
    )
    place = place_of(request) if request.lat is not None else geo.Place.from_dict(ip_place)
    place_dict = place.as_dict()
    gps = place.source == "gps"
    counted = count_scan(
        session,
        tenant_id=tenant_id,
        batch_id=batch_id,
        serial=serial,
        device=device,
        now=now,
        place=place_dict,
        lat=place.lat if gps else None,
        lon=place.lon if gps else None,
        activated=trail.active if trail is not None else True,
        deactivated_reason=trail.deactivated_reason if trail is not None else None,
    )
    judgement = judge(
        counted.facts,
        device=device,
        thresholds=thresholds,
        lat=place.lat if gps else None,
        lon=place.lon if gps else None,
        at=now,
    )
    if judgement.auto_blacklist:
        add_to_blacklist(
            session,
            tenant_id=tenant_id,
            batch_id=batch_id,
            first_serial=serial,
            last_serial=serial,
            reason="max_scan_count_exceeded",
            note=f"{counted.facts.device_count} devices",
            actor="auto",
            source="auto",
        )
    diverted = diversion_of(trail, place)
    scan_id = insert_scan(
        session,
        now=now,
        tenant_id=tenant_id,
        batch_id=batch_id,
        serial=serial,
        verdict=judgement.verdict,
        signals=judgement.signals + (("diverted",) if diverted else ()),
        device=device,
        ip=kept_ip,
        user_agent=request.user_agent,
        place=place_dict,
        distributor_id=trail.holder_id if trail is not None else None,
        shipment_id=trail.shipment_id if trail is not None else None,
        diverted=diverted,
    )
    return ScanOutcome(
        verdict=judgement.verdict,
        signals=judgement.signals,
        scan_id=encode_scan_id(runtime.settings.secret_key, scan_id, now),
        first_scan_at=counted.first_scan_at,
        first_place=counted.first_place,
        scan_count=counted.facts.scan_count,
        device_count=counted.facts.device_count,
        place=place_dict,
        diverted=diverted,
        device=device,
        ip=kept_ip,
    )


def located(place: geo.Place) -> traceability.Located:
    """A place in the terms of sales regions (ISO 3166-2 province, official city name)."""
    return traceability.Located(
        country=place.country,
        division=traceability.province_iso(place.country, place.province),
        city=place.city,
        precision=place.precision,
    )


def located_of(place: Mapping[str, Any] | None) -> traceability.Located | None:
    """:func:`located` of a scan's place as recorded (``ScanOutcome.place``); None without one."""
    return located(geo.Place.from_dict(place)) if place else None


def diversion_of(trail: traceability.CodeTrail | None, place: geo.Place) -> bool | None:
    """True: scanned outside the holder's regions; False: inside; None: cannot tell (not
    shipped, no regions, or a place too coarse for the regions)."""
    if trail is None or trail.holder_id is None:
        return None
    return _outside(trail.regions, place)


def _outside(regions: Sequence[str], place: geo.Place) -> bool | None:
    if not regions:
        return None
    check = traceability.region_check(
        [traceability.region_of_code(r) for r in regions], located(place)
    )
    return {"inside": False, "outside": True}.get(check)


def get_scan_by_public_id(session: Session, runtime: Runtime, public_id: str) -> Scan:
    decoded = decode_scan_id(runtime.settings.secret_key, public_id)
    scan = None
    if decoded is not None:
        row_id, year, month = decoded
        start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
        end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.UTC)
        scan = session.scalar(
            select(Scan).where(Scan.id == row_id, Scan.scanned_at >= start, Scan.scanned_at < end)
        )
    if scan is None or scan.batch_id is None:
        raise ScanNotFoundError("no such scan")
    return scan


REFINE_WINDOW = dt.timedelta(minutes=10)


def refine_location(
    session: Session,
    runtime: Runtime,
    *,
    public_id: str,
    lat: float,
    lon: float,
    accuracy_m: float | None = None,
) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """The phone's GPS for a scan just answered: store the finer place and judge travel again.

    Returns (verdict, signals, place). A scan only accepts a location for ten minutes.
    """
    scan = get_scan_by_public_id(session, runtime, public_id)
    if utcnow() - scan.scanned_at > REFINE_WINDOW:
        raise ValidationFailedError.field("scan_id", "the scan is too old to be located")
    try:
        place = geo.locate_gps(lat, lon, accuracy_m)
    except ValueError as exc:
        raise ValidationFailedError(str(exc), errors={"location": str(exc)}) from exc
    assert scan.tenant_id is not None and scan.batch_id is not None and scan.serial is not None
    thresholds = get_thresholds(runtime, scan.tenant_id, session)
    state = session.scalar(
        select(CodeState)
        .where(CodeState.batch_id == scan.batch_id, CodeState.serial == scan.serial)
        .with_for_update()
    )
    signals = list(scan.signals or [])
    if state is not None:
        facts = CodeFacts(
            first_scan=False,
            first_device=state.first_device,
            scan_count=state.scan_count,
            device_count=state.device_count,
            blacklist_reason=None,
            prev_lat=state.last_lat,
            prev_lon=state.last_lon,
            prev_located_at=state.last_located_at,
        )
        if (
            impossible_travel(
                facts, place.lat, place.lon, scan.scanned_at, thresholds.max_travel_speed_kmh
            )
            and "impossible_travel" not in signals
        ):
            signals.append("impossible_travel")
        state.prev_lat, state.prev_lon, state.prev_located_at = (
            state.last_lat,
            state.last_lon,
            state.last_located_at,
        )
        state.last_lat, state.last_lon, state.last_located_at = (
            place.lat,
            place.lon,
            scan.scanned_at,
        )
        if state.first_scan_at == scan.scanned_at:
            state.first_place = place.as_dict()
    verdict = "suspicious" if "impossible_travel" in signals else scan.verdict
    values = place.as_dict()
    diverted = scan.diverted
    if scan.distributor_id is not None:
        _, regions = traceability.authorised_regions(session, scan.distributor_id)
        finer = _outside(regions, place)
        diverted = scan.diverted if finer is None else finer
        if diverted and "diverted" not in signals:
            signals.append("diverted")
        elif diverted is False and "diverted" in signals:
            signals.remove("diverted")
    session.execute(
        update(Scan)
        .where(Scan.id == scan.id, Scan.scanned_at == scan.scanned_at)
        .values(
            verdict=verdict,
            signals=signals,
            country=values.get("country"),
            province=values.get("province"),
            city=values.get("city"),
            lat=place.lat,
            lon=place.lon,
            place_source="gps",
            place_precision=values.get("precision", "city"),
            diverted=diverted,
        )
    )
    session.flush()
    return verdict, tuple(signals), values


def list_code_scans(
    session: Session, *, tenant_id: int, batch_id: int, serial: int, limit: int = 100
) -> Sequence[Scan]:
    stmt = (
        select(Scan)
        .where(Scan.tenant_id == tenant_id, Scan.batch_id == batch_id, Scan.serial == serial)
        .order_by(Scan.scanned_at.desc())
        .limit(limit)
    )
    return session.scalars(stmt).all()


# --- blacklist ------------------------------------------------------------------------------


def add_to_blacklist(
    session: Session,
    *,
    tenant_id: int,
    batch_id: int,
    first_serial: int,
    last_serial: int,
    reason: str,
    actor: str,
    note: str = "",
    source: str = "manual",
) -> BlacklistEntry:
    if reason not in BLACKLIST_REASONS:
        raise ValidationFailedError.field(
            "reason", f"must be one of {', '.join(BLACKLIST_REASONS)}"
        )
    if not 1 <= first_serial <= last_serial:
        raise ValidationFailedError.field("last_serial", "the range must be first ≤ last, from 1")
    entry = BlacklistEntry(
        tenant_id=tenant_id,
        batch_id=batch_id,
        first_serial=first_serial,
        last_serial=last_serial,
        reason=reason,
        note=note[:500],
        source=source,
        created_by=actor,
    )
    session.add(entry)
    session.flush()
    return entry


def lift_blacklist(
    session: Session, *, tenant_id: int, entry_id: int, reason: str, actor: str
) -> BlacklistEntry:
    entry = session.get(BlacklistEntry, entry_id)
    if entry is None or entry.tenant_id != tenant_id:
        raise BlacklistEntryNotFoundError(f"no blacklist entry {entry_id}")
    if not reason.strip():
        raise ValidationFailedError.field("reason", "say why the codes are trusted again")
    if entry.lifted_at is None:
        entry.lifted_at, entry.lifted_by, entry.lifted_reason = utcnow(), actor, reason[:500]
        session.flush()
    return entry


def list_blacklist(
    session: Session,
    *,
    tenant_id: int,
    after_id: int = 0,
    limit: int = 50,
    batch_id: int | None = None,
    active: bool | None = None,
) -> Sequence[BlacklistEntry]:
    stmt = select(BlacklistEntry).where(
        BlacklistEntry.tenant_id == tenant_id, BlacklistEntry.id > after_id
    )
    if batch_id is not None:
        stmt = stmt.where(BlacklistEntry.batch_id == batch_id)
    if active is not None:
        stmt = stmt.where(
            BlacklistEntry.lifted_at.is_(None) if active else BlacklistEntry.lifted_at.is_not(None)
        )
    return session.scalars(stmt.order_by(BlacklistEntry.id).limit(limit)).all()


# --- codes that failed verification -----------------------------------------------------------


def note_invalid_scan(
    runtime: Runtime, request: ScanRequest, *, reason: str, tenant_id: int | None
) -> int:
    """Spool the evidence of an invalid scan and count it against the client's flood window.

    Touches no database (the spool is written in bulk by a background thread). Returns the
    seconds the client must now wait (0: none).
    """
    device = device_key(runtime, request.device, request.ip, request.user_agent)
    mode = get_cached_ip_mode(runtime, tenant_id)
    place, kept_ip = _ip_facts(runtime.settings.secret_key, request.ip or "", mode)
    spool_for(runtime).add(
        invalid_scan_row(
            runtime,
            token=request.code,
            reason=reason,
            tenant_id=tenant_id,
            ip=request.ip,
            stored_ip=kept_ip,
            device=device,
            user_agent=request.user_agent,
            place=place,
        )
    )
    return flood.count_invalid(runtime, ip=request.ip, device=device)


@lru_cache(maxsize=65_536)
def _ip_facts(secret: str, ip: str, mode: str) -> tuple[dict[str, Any], str | None]:
    """The IP's country and its stored form, remembered: floods come from few addresses."""
    stored = geo.ip_for_storage(ip, mode, secret.encode()) if ip else None
    return geo.locate_ip(ip).as_dict(), stored


def get_cached_ip_mode(runtime: Runtime, tenant_id: int | None) -> str:
    """The tenant's IP storage mode if its settings are cached, else the private default."""
    if tenant_id is None:
        return "hashed"
    hit = _cache.get((runtime.key, tenant_id))
    return hit[1].ip_storage if hit is not None else Thresholds().ip_storage


def place_label(place: dict[str, Any], lang: str) -> str | None:
    """Words for a stored place: "浙江杭州" in Chinese, "Hangzhou, Zhejiang" in English."""
    known = geo.Place.from_dict(place)
    label = known.label_en() if lang == "en" else known.label_zh()
    return label or None
