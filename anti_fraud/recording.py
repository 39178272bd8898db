"""Recording a scan of a valid code: the hot path's only database work.

Two statements in the request's transaction, the shape of the floor benchmark (one UPDATE, one
INSERT): an upsert of the code's state that also counts the device and returns the facts the
verdict needs (first scan or not, counts, blacklist), then the scan row. Exactly one of any
number of concurrent first scans sees ``scan_count == 1``: the database's row lock on the
conflicting key decides, not a read in Python. On PostgreSQL the device row is inserted in the
same statement (a data-modifying CTE); SQLite takes it as a separate statement.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Json
from sqlalchemy import JSON, TextClause, bindparam, text
from sqlalchemy.orm import Session

from anti_fraud.verdicts import CodeFacts
from core.db import UTCDateTime, driver_cursor, pyformat

_STATE_COLUMNS = """
    (batch_id, serial, tenant_id, first_scan_at, first_device, first_place, scan_count,
     device_count, last_scan_at, last_lat, last_lon, last_located_at)
"""
_STATE_VALUES = """
    (:batch_id, :serial, :tenant_id, :now, :device, :place, 1, 1, :now, :lat, :lon, :located_at)
"""
_ON_CONFLICT = """
    ON CONFLICT (batch_id, serial) DO UPDATE SET
        scan_count = cs.scan_count + 1,
        device_count = cs.device_count + {new_device},
        last_scan_at = excluded.last_scan_at,
        prev_lat = CASE WHEN excluded.last_lat IS NULL THEN cs.prev_lat ELSE cs.last_lat END,
        prev_lon = CASE WHEN excluded.last_lat IS NULL THEN cs.prev_lon ELSE cs.last_lon END,
        prev_located_at = CASE WHEN excluded.last_lat IS NULL THEN cs.prev_located_at
                               ELSE cs.last_located_at END,
        last_lat = COALESCE(excluded.last_lat, cs.last_lat),
        last_lon = COALESCE(excluded.last_lon, cs.last_lon),
        last_located_at = CASE WHEN excluded.last_lat IS NULL THEN cs.last_located_at
                               ELSE excluded.last_located_at END
    RETURNING scan_count, device_count, first_device, first_scan_at, first_place,
        prev_lat, prev_lon, prev_located_at,
        (SELECT bl.reason FROM anti_fraud_blacklist bl
          WHERE bl.batch_id = :batch_id AND :serial BETWEEN bl.first_serial AND bl.last_serial
            AND bl.lifted_at IS NULL
          ORDER BY bl.id DESC LIMIT 1) AS blacklist_reason
"""

_TYPES = (
    bindparam("now", type_=UTCDateTime()),
    bindparam("located_at", type_=UTCDateTime()),
    bindparam("place", type_=JSON()),
)
_RESULT_TYPES: dict[str, Any] = {
    "first_scan_at": UTCDateTime(),
    "prev_located_at": UTCDateTime(),
    "first_place": JSON(),
}


def _typed(sql: str) -> TextClause:
    """``sql`` with the types of the parameters it uses (times and JSON on every backend)."""
    return text(sql).bindparams(*(p for p in _TYPES if f":{p.key}" in sql))


PG_UPSERT = _typed(
    "WITH dev AS (INSERT INTO anti_fraud_code_devices (batch_id, serial, device) "
    "VALUES (:batch_id, :serial, :device) ON CONFLICT DO NOTHING RETURNING 1) "
    f"INSERT INTO anti_fraud_code_states AS cs {_STATE_COLUMNS} VALUES {_STATE_VALUES}"
    + _ON_CONFLICT.format(new_device="(SELECT count(*) FROM dev)")
).columns(**_RESULT_TYPES)
SQLITE_DEVICE = text(
    "INSERT INTO anti_fraud_code_devices (batch_id, serial, device) "
    "VALUES (:batch_id, :serial, :device) ON CONFLICT DO NOTHING"
)
SQLITE_UPSERT = _typed(
    f"INSERT INTO anti_fraud_code_states AS cs {_STATE_COLUMNS} VALUES {_STATE_VALUES}"
    + _ON_CONFLICT.format(new_device=":new_device")
).columns(**_RESULT_TYPES)
INSERT_SCAN = text(
    "INSERT INTO anti_fraud_scans (scanned_at, tenant_id, batch_id, serial, verdict, signals, "
    "device, ip, user_agent, country, province, city, lat, lon, place_source, place_precision, "
    "distributor_id, shipment_id, diverted) "
    "VALUES (:now, :tenant_id, :batch_id, :serial, :verdict, :signals, :device, :ip, "
    ":user_agent, :country, :province, :city, :lat, :lon, :place_source, :place_precision, "
    ":distributor_id, :shipment_id, :diverted) "
    "RETURNING id"
).bindparams(bindparam("now", type_=UTCDateTime()), bindparam("signals", type_=JSON()))


# On PostgreSQL the two statements go to psycopg directly, prepared (core.db, "the driver
# itself"); the transaction is still the session's.
_PG_UPSERT_RAW = pyformat(PG_UPSERT)
_PG_INSERT_SCAN_RAW = pyformat(INSERT_SCAN)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return value.astimezone(dt.UTC) if value is not None else None


@dataclass(frozen=True)
class CountedScan:
    facts: CodeFacts
    first_scan_at: dt.datetime
    first_place: dict[str, Any] | None


def count_scan(
    session: Session,
    *,
    tenant_id: int,
    batch_id: int,
    serial: int,
    device: str,
    now: dt.datetime,
    place: dict[str, Any] | None,
    lat: float | None,
    lon: float | None,
    activated: bool = True,
    deactivated_reason: str | None = None,
) -> CountedScan:
    """Count this scan on the code's state and return the facts after it."""
    params = {
        "batch_id": batch_id,
        "serial": serial,
        "tenant_id": tenant_id,
        "device": device,
        "now": now,
        "place": place,
        "lat": lat,
        "lon": lon,
        "located_at": now if lat is not None else None,
    }
    # Core, not the ORM: this is the hot path, and nothing here needs the identity map.
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        cursor = driver_cursor(session)
        params["place"] = Json(place)
        cursor.execute(_PG_UPSERT_RAW, params, prepare=True)
        (count, devices, first_device, first_at, first_place, plat, plon, pat, reason) = (
            cursor.fetchone()
        )
        facts = CodeFacts(
            first_scan=count == 1,
            first_device=first_device,
            scan_count=count,
            device_count=devices,
            blacklist_reason=reason,
            activated=activated,
            deactivated_reason=deactivated_reason,
            prev_lat=plat,
            prev_lon=plon,
            prev_located_at=_utc(pat),
        )
        return CountedScan(facts=facts, first_scan_at=_utc(first_at), first_place=first_place)  # type: ignore[arg-type]
    else:
        new_device = conn.execute(SQLITE_DEVICE, params).rowcount
        row = conn.execute(SQLITE_UPSERT, {**params, "new_device": new_device}).one()
    facts = CodeFacts(
        first_scan=row.scan_count == 1,
        first_device=row.first_device,
        scan_count=row.scan_count,
        device_count=row.device_count,
        blacklist_reason=row.blacklist_reason,
        activated=activated,
        deactivated_reason=deactivated_reason,
        prev_lat=row.prev_lat,
        prev_lon=row.prev_lon,
        prev_located_at=row.prev_located_at,
    )
    return CountedScan(facts=facts, first_scan_at=row.first_scan_at, first_place=row.first_place)


def insert_scan(
    session: Session,
    *,
    now: dt.datetime,
    tenant_id: int | None,
    batch_id: int | None,
    serial: int | None,
    verdict: str,
    signals: tuple[str, ...] | list[str],
    device: str | None,
    ip: str | None,
    user_agent: str | None,
    place: dict[str, Any] | None,
    distributor_id: int | None = None,
    shipment_id: int | None = None,
    diverted: bool | None = None,
) -> int:
    """The scan row; returns its id."""
    place = place or {}
    params = {
        "now": now,
        "tenant_id": tenant_id,
        "batch_id": batch_id,
        "serial": serial,
        "verdict": verdict,
        "signals": list(signals),
        "device": device,
        "ip": ip,
        "user_agent": (user_agent or "")[:300] or None,
        "country": place.get("country"),
        "province": place.get("province"),
        "city": place.get("city"),
        "lat": place.get("lat"),
        "lon": place.get("lon"),
        "place_source": place.get("source", "none"),
        "place_precision": place.get("precision", "unknown"),
        "distributor_id": distributor_id,
        "shipment_id": shipment_id,
        "diverted": diverted,
    }
    if session.get_bind().dialect.name == "postgresql":
        cursor = driver_cursor(session)
        params["signals"] = Json(params["signals"])
        cursor.execute(_PG_INSERT_SCAN_RAW, params, prepare=True)
        return int(cursor.fetchone()[0])
    return int(session.execute(INSERT_SCAN, params).scalar_one())
