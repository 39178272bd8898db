"""The scan rollups behind the dashboards, kept up to date by a task every minute.

Four tables, each at the coarsest grain its questions allow (docs/dashboards.md says why):

- ``anti_fraud_scan_hours``: UTC hour × batch × verdict × diverted → scans. Hourly series (up to
  31 days, in any timezone), filtered by product and batch.
- ``anti_fraud_scan_days``: the brand's local day × batch × verdict × diverted → scans. Daily
  series and the verdict mix over long periods, scans per batch.
- ``anti_fraud_scan_places``: local day × batch × country × province × verdict × diverted ×
  distributor → scans. The map, every figure filtered by region, diversion by distributor.
- ``anti_fraud_scanner_sketches``: local day × batch → a HyperLogLog sketch of the devices that
  scanned (anti_fraud/sketches.py), merged over any period for distinct scanners.

:func:`refresh_scan_rollups` reads the scans above the watermark (core/rollups.py: gaps left by
transactions still in flight are looked up again), in batches, and adds each batch to the counters
with ``INSERT ... ON CONFLICT DO UPDATE SET scans = scans + excluded.scans`` in the transaction
that moves the watermark, under the watermark's row lock: re-running counts nothing twice,
concurrent runs take turns, and a late scan (an earlier ``scanned_at`` than scans already
counted) lands in its own hour. A brand's local day is taken in its timezone when the scan is
counted.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, cast
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Table, func, select, text, tuple_
from sqlalchemy.orm import Session

import codegen
import traceability
from anti_fraud import sketches
from anti_fraud.models import (
    VERDICTS,
    Alert,
    BlacklistEntry,
    DiversionAlert,
    RollupCursor,
    ScanDay,
    ScanHour,
    ScannerSketch,
    ScanPlace,
)
from core import rollups
from core.db import dialect_insert, driver_cursor, fetch_all, utcnow
from core.errors import ValidationFailedError
from core.runtime import Runtime
from core.services import tenant_timezone

CURSOR = "scans"
_CURSORS = cast(Table, RollupCursor.__table__)
BATCH_SIZE = 20_000
SQLITE_BATCH_SIZE = 5_000

_EPOCH = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM scanned_at) AS BIGINT)",
    "sqlite": "CAST(strftime('%s', scanned_at) AS INTEGER)",
}
_COLUMNS = (
    "id, {epoch}, tenant_id, batch_id, verdict, diverted, country, province, distributor_id, "
    "COALESCE(device, ip)"
)


def _statements(dialect: str) -> tuple[Any, Any]:
    cols = _COLUMNS.format(epoch=_EPOCH[dialect])
    new = text(f"SELECT {cols} FROM anti_fraud_scans WHERE id > :after ORDER BY id LIMIT :n")
    return new, cols


# --- refreshing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refreshed:
    scans: int  # scan rows read (including those of no brand, which count nowhere)
    batches: int
    seconds: float


class _Context:
    """What a refresh looks up once: brands' timezones, batches' products, places' codes."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._zones: dict[int, ZoneInfo] = {}
        self._days: dict[tuple[int, int], dt.date] = {}
        self._products: dict[tuple[int, int], int] = {}
        self._provinces: dict[tuple[str | None, str | None], str] = {}

    def zone(self, tenant_id: int) -> ZoneInfo:
        zone = self._zones.get(tenant_id)
        if zone is None:
            zone = self._zones[tenant_id] = ZoneInfo(tenant_timezone(self.session, tenant_id))
        return zone

    def day(self, tenant_id: int, epoch: int) -> dt.date:
        # Every timezone's offset is a multiple of 15 minutes: one conversion per quarter hour.
        quarter = epoch - epoch % 900
        key = (tenant_id, quarter)
        found = self._days.get(key)
        if found is None:
            zone = self.zone(tenant_id)
            found = self._days[key] = dt.datetime.fromtimestamp(quarter, zone).date()
        return found

    def product(self, tenant_id: int, batch_id: int) -> int:
        if not batch_id:
            return 0
        key = (tenant_id, batch_id)
        found = self._products.get(key)
        if found is None:
            batch = codegen.get_batch(self.session, tenant_id=tenant_id, batch_id=batch_id)
            found = self._products[key] = batch.product_id if batch is not None else 0
        return found

    def province(self, country: str | None, province: str | None) -> str:
        key = (country, province)
        found = self._provinces.get(key)
        if found is None:
            found = self._provinces[key] = traceability.province_iso(country, province) or ""
        return found


def _upsert_counts(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    insert = dialect_insert(session)(table)
    keys = [c.name for c in table.primary_key.columns]
    stmt = insert.on_conflict_do_update(
        index_elements=keys, set_={"scans": table.c.scans + insert.excluded.scans}
    )
    session.execute(stmt, rows)


def _add_sketches(session: Session, devices: dict[tuple[int, dt.date, int], Any]) -> None:
    """Add each key's device hashes (unsigned 64-bit) to its sketch."""
    if not devices:
        return
    t = ScannerSketch.__table__
    keys = list(devices)
    have: dict[tuple[int, dt.date, int], bytes] = {}
    for i in range(0, len(keys), 500):
        part = keys[i : i + 500]
        for tenant_id, day, batch_id, registers in session.execute(
            select(t.c.tenant_id, t.c.day, t.c.batch_id, t.c.registers).where(
                tuple_(t.c.tenant_id, t.c.day, t.c.batch_id).in_(part)
            )
        ):
            have[(tenant_id, day, batch_id)] = bytes(registers)
    rows = [
        {
            "tenant_id": key[0],
            "day": key[1],
            "batch_id": key[2],
            "registers": sketches.add_hashes(have.get(key), hashes),
        }
        for key, hashes in devices.items()
    ]
    insert = dialect_insert(session)(t)
    # Read-modify-write is safe here: only a refresh writes sketches, under the cursor's lock.
    session.execute(
        insert.on_conflict_do_update(
            index_elements=["tenant_id", "day", "batch_id"],
            set_={"registers": insert.excluded.registers},
        ),
        rows,
    )


def refresh_batch(
    session: Session, *, limit: int = BATCH_SIZE, now: dt.datetime | None = None
) -> int:
    """Count up to ``limit`` new scans (and any that turned up in gaps) into the rollups and move
    the watermark, in the session's transaction; returns how many new scans were read."""
    now = now or utcnow()
    table = _CURSORS
    cursor = rollups.claim_cursor(session, table, CURSOR, now=now)
    if session.get_bind().dialect.name == "postgresql":
        new_ids, late_ids = _aggregate_in_postgresql(session, cursor, limit)
    else:
        new_ids, late_ids = _aggregate_in_python(session, cursor, limit)
    rollups.advance(cursor, new_ids=new_ids, found_in_gaps=late_ids, now=now)
    rollups.save_cursor(session, table, cursor, now=now)
    return len(new_ids)


def _gap_sql(cursor: rollups.Cursor) -> str:
    return " OR ".join(f"(id BETWEEN {int(a)} AND {int(b)})" for a, b, _seen in cursor.gaps)


def _aggregate_in_python(
    session: Session, cursor: rollups.Cursor, limit: int
) -> tuple[list[int], list[int]]:
    """The embedded default's way: read the scans and add them up here."""
    new_stmt, cols = _statements(session.get_bind().dialect.name)
    rows = fetch_all(session, new_stmt, {"after": cursor.last_id, "n": limit})
    late: list[tuple[Any, ...]] = []
    if cursor.gaps:
        late = fetch_all(
            session, text(f"SELECT {cols} FROM anti_fraud_scans WHERE {_gap_sql(cursor)}"), {}
        )
    ctx = _Context(session)
    hours: Counter[tuple[int, int, int, str, int, int]] = Counter()
    days: Counter[tuple[int, dt.date, int, str, int, int]] = Counter()
    places: Counter[tuple[int, dt.date, int, str, str, str, int, int, int]] = Counter()
    devices: dict[tuple[int, dt.date, int], set[str]] = defaultdict(set)
    for _id, epoch, tenant_id, batch_id, verdict, diverted, country, province, dist, who in (
        *rows,
        *late,
    ):
        if tenant_id is None:
            continue  # a code of no known brand: no dashboard shows it
        batch_id = batch_id or 0
        flag = 1 if diverted else 0
        product = ctx.product(tenant_id, batch_id)
        hours[(tenant_id, epoch - epoch % 3600, batch_id, verdict, flag, product)] += 1
        day = ctx.day(tenant_id, epoch)
        place = ctx.province(country, province)
        days[(tenant_id, day, batch_id, verdict, flag, product)] += 1
        places[
            (tenant_id, day, batch_id, country or "", place, verdict, flag, dist or 0, product)
        ] += 1
        if who:
            devices[(tenant_id, day, batch_id)].add(who)
    _upsert_counts(
        session,
        ScanHour.__table__,
        [
            {
                "tenant_id": k[0],
                "hour": dt.datetime.fromtimestamp(k[1], dt.UTC),
                "batch_id": k[2],
                "verdict": k[3],
                "diverted": k[4],
                "product_id": k[5],
                "scans": n,
            }
            for k, n in hours.items()
        ],
    )
    _upsert_counts(
        session,
        ScanDay.__table__,
        [
            {
                "tenant_id": k[0],
                "day": k[1],
                "batch_id": k[2],
                "verdict": k[3],
                "diverted": k[4],
                "product_id": k[5],
                "scans": n,
            }
            for k, n in days.items()
        ],
    )
    _upsert_counts(
        session,
        ScanPlace.__table__,
        [
            {
                "tenant_id": k[0],
                "day": k[1],
                "batch_id": k[2],
                "country": k[3],
                "province": k[4],
                "verdict": k[5],
                "diverted": k[6],
                "distributor_id": k[7],
                "product_id": k[8],
                "scans": n,
            }
            for k, n in places.items()
        ],
    )
    _add_sketches(
        session,
        {key: sketches.hashes_of(items) for key, items in devices.items()},
    )
    return [r[0] for r in rows], [r[0] for r in late]


# PostgreSQL adds the batch up itself: one GROUP BY per table over the batch's ids, joined to the
# few lookups (timezones, products, province codes) passed as arrays.
_PG_LOOKUPS = """
    FROM anti_fraud_scans s
    JOIN unnest(%(tenants)s::int[], %(zones)s::text[]) AS tz(tenant_id, zone)
      ON tz.tenant_id = s.tenant_id
    LEFT JOIN unnest(%(batches)s::bigint[], %(products)s::int[]) AS bp(batch_id, product_id)
      ON bp.batch_id = s.batch_id
    WHERE {where}
"""
_PG_HOURS = (
    "INSERT INTO anti_fraud_scan_hours AS r"
    " (tenant_id, hour, batch_id, verdict, diverted, product_id, scans)"
    " SELECT s.tenant_id, date_trunc('hour', s.scanned_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',"
    " COALESCE(s.batch_id, 0), s.verdict, CASE WHEN s.diverted THEN 1 ELSE 0 END,"
    " COALESCE(bp.product_id, 0), count(*)" + _PG_LOOKUPS + " GROUP BY 1, 2, 3, 4, 5, 6"
    " ON CONFLICT (tenant_id, hour, batch_id, verdict, diverted)"
    " DO UPDATE SET scans = r.scans + excluded.scans"
)
_PG_DAYS = (
    "INSERT INTO anti_fraud_scan_days AS r"
    " (tenant_id, day, batch_id, verdict, diverted, product_id, scans)"
    " SELECT s.tenant_id, (s.scanned_at AT TIME ZONE tz.zone)::date, COALESCE(s.batch_id, 0),"
    " s.verdict, CASE WHEN s.diverted THEN 1 ELSE 0 END, COALESCE(bp.product_id, 0), count(*)"
    + _PG_LOOKUPS
    + " GROUP BY 1, 2, 3, 4, 5, 6"
    " ON CONFLICT (tenant_id, day, batch_id, verdict, diverted)"
    " DO UPDATE SET scans = r.scans + excluded.scans"
)
_PG_PLACES = (
    "INSERT INTO anti_fraud_scan_places AS r (tenant_id, day, batch_id, country, province,"
    " verdict, diverted, distributor_id, product_id, scans)"
    " SELECT s.tenant_id, (s.scanned_at AT TIME ZONE tz.zone)::date, COALESCE(s.batch_id, 0),"
    " COALESCE(s.country, ''), COALESCE(pl.iso, ''), s.verdict,"
    " CASE WHEN s.diverted THEN 1 ELSE 0 END, COALESCE(s.distributor_id, 0),"
    " COALESCE(bp.product_id, 0), count(*)"
    + _PG_LOOKUPS.replace(
        "    WHERE",
        "    LEFT JOIN unnest(%(countries)s::text[], %(provinces)s::text[], %(isos)s::text[])"
        " AS pl(country, province, iso) ON pl.country = s.country AND pl.province = s.province\n"
        "    WHERE",
    )
    + " GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9"
    " ON CONFLICT (tenant_id, day, batch_id, country, province, verdict, diverted, distributor_id)"
    " DO UPDATE SET scans = r.scans + excluded.scans"
)
_PG_SCANNERS = (
    "SELECT DISTINCT s.tenant_id, (s.scanned_at AT TIME ZONE tz.zone)::date,"
    " COALESCE(s.batch_id, 0), hashtextextended(COALESCE(s.device, s.ip), 0)"
    + _PG_LOOKUPS
    + " AND COALESCE(s.device, s.ip) IS NOT NULL"
)


def _aggregate_in_postgresql(
    session: Session, cursor: rollups.Cursor, limit: int
) -> tuple[list[int], list[int]]:
    pg = driver_cursor(session)
    pg.execute(
        "SELECT id FROM anti_fraud_scans WHERE id > %(after)s ORDER BY id LIMIT %(n)s",
        {"after": cursor.last_id, "n": limit},
    )
    new_ids = [r[0] for r in pg.fetchall()]
    late_ids: list[int] = []
    if cursor.gaps:
        pg.execute(f"SELECT id FROM anti_fraud_scans WHERE {_gap_sql(cursor)}")
        late_ids = [r[0] for r in pg.fetchall()]
    # Each statement below reads with its own snapshot (READ COMMITTED): they are pinned to the
    # rows read above, or a scan committing in between would be counted by some and also left
    # as a gap to count again. The range excludes the ids it skipped (few: the gaps), so the
    # scan of the range stays an index range scan.
    parts = []
    if new_ids:
        skipped = []
        expected = cursor.last_id + 1
        for i in new_ids:
            if i > expected:
                skipped.append(f"s.id BETWEEN {int(expected)} AND {int(i - 1)}")
            expected = i + 1
        parts.append(
            f"(s.id > {int(cursor.last_id)} AND s.id <= {int(new_ids[-1])}"
            + (f" AND NOT ({' OR '.join(skipped)}))" if skipped else ")")
        )
    if late_ids:
        parts.append("s.id = ANY(%(late)s::bigint[])")
    if not parts:
        return new_ids, late_ids
    where = "(" + " OR ".join(parts) + ") AND s.tenant_id IS NOT NULL"
    ids = {"late": late_ids}
    pg.execute(
        "SELECT DISTINCT s.tenant_id, s.batch_id, s.country, s.province FROM anti_fraud_scans s"
        f" WHERE {where}",
        ids,
    )
    ctx = _Context(session)
    tenants: set[int] = set()
    batches: dict[int, int] = {}
    codes: dict[tuple[str, str], str] = {}
    for tenant_id, batch_id, country, province in pg.fetchall():
        tenants.add(tenant_id)
        if batch_id:
            batches[batch_id] = ctx.product(tenant_id, batch_id)
        if country and province:
            codes[(country, province)] = ctx.province(country, province)
    if not tenants:
        return new_ids, late_ids
    params = {
        **ids,
        "tenants": sorted(tenants),
        "zones": [ctx.zone(t).key for t in sorted(tenants)],
        "batches": list(batches),
        "products": list(batches.values()),
        "countries": [c for c, _p in codes],
        "provinces": [p for _c, p in codes],
        "isos": list(codes.values()),
    }
    pg.execute(_PG_HOURS.format(where=where), params)
    pg.execute(_PG_DAYS.format(where=where), params)
    pg.execute(_PG_PLACES.format(where=where), params)
    pg.execute(_PG_SCANNERS.format(where=where), params)
    found: dict[tuple[int, dt.date, int], list[int]] = defaultdict(list)
    for tenant_id, day, batch_id, hashed in pg.fetchall():
        found[(tenant_id, day, batch_id)].append(hashed)
    _add_sketches(
        session,
        {key: np.array(hashed, dtype=np.int64).view(np.uint64) for key, hashed in found.items()},
    )
    return new_ids, late_ids


def refresh_scan_rollups(
    runtime: Runtime, *, batch_size: int | None = None, max_batches: int | None = None
) -> Refreshed:
    """Count every scan not yet counted, one transaction per batch, until caught up. On SQLite
    batches are smaller: a batch holds the database's one write lock while Python sums it."""
    batch_size = batch_size or (SQLITE_BATCH_SIZE if runtime.db.is_sqlite else BATCH_SIZE)
    read, batches, seconds = rollups.refresh_in_batches(
        runtime,
        lambda session, limit: refresh_batch(session, limit=limit),
        batch_size=batch_size,
        max_batches=max_batches,
    )
    return Refreshed(read, batches, seconds)


def rollup_lag(session: Session) -> dict[str, Any]:
    """How far the scan rollups have counted: last scan id, open gaps, last move."""
    last_id, gaps, moved = rollups.cursor_lag(session, _CURSORS, CURSOR)
    return {"last_scan_id": last_id, "open_gaps": gaps, "updated_at": moved}


# --- reading ------------------------------------------------------------------------------------

MAX_DAYS = 366
MAX_HOURLY_DAYS = 31


@dataclass(frozen=True)
class ScanFilter:
    """Which scans a figure counts: a brand, a period of its local days (inclusive), and
    optionally products, batches, regions (a country ``CN`` or a province ``CN-ZJ``) and a
    distributor. Empty tuples place no condition."""

    tenant_id: int
    first_day: dt.date
    last_day: dt.date
    timezone: str
    product_ids: tuple[int, ...] = ()
    batch_ids: tuple[int, ...] = ()
    regions: tuple[str, ...] = ()
    distributor_id: int | None = None

    def __post_init__(self) -> None:
        if self.last_day < self.first_day:
            raise ValidationFailedError.field("to", "the period ends before it starts")
        if (self.last_day - self.first_day).days >= MAX_DAYS:
            raise ValidationFailedError.field("to", f"a period is at most {MAX_DAYS} days")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def utc_range(self) -> tuple[dt.datetime, dt.datetime]:
        """[start, end) in UTC of the period's local days."""
        zone = self.zone
        start = dt.datetime.combine(self.first_day, dt.time(), zone).astimezone(dt.UTC)
        end = dt.datetime.combine(self.last_day + dt.timedelta(days=1), dt.time(), zone)
        return start, end.astimezone(dt.UTC)

    @property
    def needs_places(self) -> bool:
        """Whether only the daily table (which keeps places and distributors) can answer."""
        return bool(self.regions) or self.distributor_id is not None


def _scoped(model: Any, f: ScanFilter, period: list[Any]) -> list[Any]:
    """The brand, ``period`` and the filter's products and batches, on a rollup table."""
    where = [model.tenant_id == f.tenant_id, *period]
    if f.product_ids:
        where.append(model.product_id.in_(f.product_ids))
    if f.batch_ids:
        where.append(model.batch_id.in_(f.batch_ids))
    return where


def _hour_where(f: ScanFilter) -> list[Any]:
    start, end = f.utc_range
    return _scoped(ScanHour, f, [ScanHour.hour >= start, ScanHour.hour < end])


def _days_where(f: ScanFilter) -> list[Any]:
    return _scoped(ScanDay, f, [ScanDay.day >= f.first_day, ScanDay.day <= f.last_day])


def _place_where(f: ScanFilter) -> list[Any]:
    d = ScanPlace
    where = _scoped(d, f, [d.day >= f.first_day, d.day <= f.last_day])
    if f.regions:
        countries = [r for r in f.regions if "-" not in r]
        provinces = [r for r in f.regions if "-" in r]
        places = []
        if countries:
            places.append(d.country.in_(countries))
        if provinces:
            places.append(d.province.in_(provinces))
        where.append(places[0] if len(places) == 1 else places[0] | places[1])
    if f.distributor_id is not None:
        where.append(d.distributor_id == f.distributor_id)
    return where


def _empty_counts() -> dict[str, int]:
    return {"scans": 0, **dict.fromkeys(VERDICTS, 0), "diverted": 0}


@dataclass(frozen=True)
class ScanSeries:
    interval: str  # hour | day
    points: list[dict[str, Any]]  # {"start": local ISO time, "scans", <verdicts>, "diverted"}
    totals: dict[str, int]


def scan_series(session: Session, f: ScanFilter, *, interval: str = "day") -> ScanSeries:
    """Scans per local hour or day of the period (every bucket, zeros included), by verdict and
    diverted, with the period's totals (the verdict mix)."""
    if interval not in ("hour", "day"):
        raise ValidationFailedError.field("interval", "hour or day")
    if interval == "hour" and (f.last_day - f.first_day).days >= MAX_HOURLY_DAYS:
        raise ValidationFailedError.field(
            "interval", f"hourly series cover at most {MAX_HOURLY_DAYS} days"
        )
    if interval == "hour" and f.needs_places:
        raise ValidationFailedError.field(
            "interval", "by region or distributor the series is kept by day: use interval=day"
        )
    zone = f.zone
    buckets: dict[str, dict[str, int]] = {}
    if interval == "day":
        day = f.first_day
        while day <= f.last_day:
            buckets[day.isoformat()] = _empty_counts()
            day += dt.timedelta(days=1)
    else:
        start, end = f.utc_range
        moment = start
        while moment < end:
            buckets[moment.astimezone(zone).isoformat()] = _empty_counts()
            moment += dt.timedelta(hours=1)
    rows: list[tuple[Any, str, int, int]]
    if f.needs_places:
        d = ScanPlace
        rows = [
            (day, verdict, flag, int(n))
            for day, verdict, flag, n in session.execute(
                select(d.day, d.verdict, d.diverted, func.sum(d.scans))
                .where(*_place_where(f))
                .group_by(d.day, d.verdict, d.diverted)
            )
        ]
    elif interval == "day":
        # Kept per local day: a quarter is read in a thousand rows a batch, not 24 times that.
        t = ScanDay
        rows = [
            (day, verdict, flag, int(n))
            for day, verdict, flag, n in session.execute(
                select(t.day, t.verdict, t.diverted, func.sum(t.scans))
                .where(*_days_where(f))
                .group_by(t.day, t.verdict, t.diverted)
            )
        ]
    else:
        h = ScanHour
        rows = [
            (hour, verdict, flag, int(n))
            for hour, verdict, flag, n in session.execute(
                select(h.hour, h.verdict, h.diverted, func.sum(h.scans))
                .where(*_hour_where(f))
                .group_by(h.hour, h.verdict, h.diverted)
            )
        ]
    totals = _empty_counts()
    labels: dict[Any, str] = {}
    for when, verdict, flag, n in rows:
        label = labels.get(when)
        if label is None:
            if isinstance(when, dt.datetime):
                local = when.astimezone(zone)
                label = (local.date() if interval == "day" else local).isoformat()
            else:
                label = when.isoformat()
            labels[when] = label
        bucket = buckets.get(label)
        if bucket is None:
            continue
        for counts in (bucket, totals):
            counts["scans"] += n
            counts[verdict] += n
            if flag:
                counts["diverted"] += n
    points = [{"start": start, **counts} for start, counts in buckets.items()]
    return ScanSeries(interval, points, totals)


def unique_scanners(session: Session, f: ScanFilter) -> int | None:
    """Distinct devices that scanned in the period (HyperLogLog, ±1.6 %), or None when filtered
    by region or distributor (the sketches are kept per day and batch only)."""
    if f.needs_places:
        return None
    batch_ids = _batches_of(session, f) if f.batch_ids or f.product_ids else None
    if session.get_bind().dialect.name == "postgresql":
        # Straight from the driver: a quarter's sketches are megabytes of bytea.
        pg = driver_cursor(session)
        pg.execute(
            "SELECT registers FROM anti_fraud_scanner_sketches WHERE tenant_id = %(t)s"
            " AND day BETWEEN %(first)s AND %(last)s"
            + (" AND batch_id = ANY(%(batches)s)" if batch_ids is not None else ""),
            {"t": f.tenant_id, "first": f.first_day, "last": f.last_day, "batches": batch_ids},
        )
        blobs: Sequence[bytes] = [row[0] for row in pg.fetchall()]
    else:
        s = ScannerSketch
        where = [s.tenant_id == f.tenant_id, s.day >= f.first_day, s.day <= f.last_day]
        if batch_ids is not None:
            where.append(s.batch_id.in_(batch_ids))
        blobs = session.scalars(select(s.registers).where(*where)).all()
    return sketches.estimate(sketches.merge(blobs))


def _batches_of(session: Session, f: ScanFilter) -> list[int]:
    """The batch ids a product / batch filter stands for (batches of the products, intersected
    with the batches named)."""
    if not f.product_ids:
        return list(f.batch_ids)
    d = ScanDay
    found = set(
        session.scalars(select(d.batch_id).where(*_days_where(replace(f, batch_ids=()))).distinct())
    )
    if f.batch_ids:
        found &= set(f.batch_ids)
    return sorted(found)


def scan_map(session: Session, f: ScanFilter) -> dict[str, list[dict[str, Any]]]:
    """Scans, counterfeits, suspicious and diverted scans by country and by province (ISO 3166-2;
    "" where the place is unknown), largest first."""
    d = ScanPlace
    by_place: dict[tuple[str, str], dict[str, int]] = {}
    for country, province, verdict, flag, n in session.execute(
        select(d.country, d.province, d.verdict, d.diverted, func.sum(d.scans))
        .where(*_place_where(f))
        .group_by(d.country, d.province, d.verdict, d.diverted)
    ):
        counts = by_place.setdefault((country, province), _empty_counts())
        counts["scans"] += int(n)
        counts[verdict] += int(n)
        if flag:
            counts["diverted"] += int(n)
    countries: dict[str, dict[str, int]] = {}
    for (country, _province), counts in by_place.items():
        total = countries.setdefault(country, _empty_counts())
        for key, n in counts.items():
            total[key] += n
    return {
        "countries": sorted(
            ({"country": c, **counts} for c, counts in countries.items()),
            key=lambda r: (-r["scans"], r["country"]),
        ),
        "provinces": sorted(
            ({"country": c, "province": p, **counts} for (c, p), counts in by_place.items() if p),
            key=lambda r: (-r["scans"], r["province"]),
        ),
    }


def scans_by_batch(session: Session, f: ScanFilter) -> dict[int, dict[str, int]]:
    """Scans per batch in the period, by verdict."""
    d = ScanDay
    out: dict[int, dict[str, int]] = {}
    for batch_id, verdict, n in session.execute(
        select(d.batch_id, d.verdict, func.sum(d.scans))
        .where(*_days_where(f), d.batch_id > 0)
        .group_by(d.batch_id, d.verdict)
    ):
        counts = out.setdefault(int(batch_id), {"scans": 0, **dict.fromkeys(VERDICTS, 0)})
        counts["scans"] += int(n)
        counts[verdict] += int(n)
    return out


def diversion_by_distributor(session: Session, f: ScanFilter) -> list[dict[str, Any]]:
    """Per distributor whose goods were scanned outside its regions in the period: diverted
    scans, where they turned up (provinces), and its diversion alerts with evidence (the alert
    ids lead to the codes and scans: ``GET /api/v1/diversion/alerts/<id>``)."""
    d = ScanPlace
    per: dict[int, dict[str, Any]] = {}
    for dist, country, province, n in session.execute(
        select(d.distributor_id, d.country, d.province, func.sum(d.scans))
        .where(*_place_where(f), d.diverted == 1, d.distributor_id > 0)
        .group_by(d.distributor_id, d.country, d.province)
    ):
        row = per.setdefault(
            int(dist), {"distributor_id": int(dist), "diverted_scans": 0, "places": {}}
        )
        row["diverted_scans"] += int(n)
        place = province or country or ""
        row["places"][place] = row["places"].get(place, 0) + int(n)
    start, end = f.utc_range
    a = DiversionAlert
    alerts_where = [a.tenant_id == f.tenant_id, a.last_seen_at >= start, a.first_seen_at < end]
    if f.distributor_id is not None:
        alerts_where.append(a.distributor_id == f.distributor_id)
    for alert in session.scalars(select(a).where(*alerts_where).order_by(a.id)):
        row = per.setdefault(
            alert.distributor_id,
            {"distributor_id": alert.distributor_id, "diverted_scans": 0, "places": {}},
        )
        row.setdefault("alerts", []).append(
            {
                "id": alert.id,
                "shipment_id": alert.shipment_id,
                "status": alert.status,
                "score": alert.score,
                "codes": alert.code_count,
                "scans": alert.scan_count,
                "regions": list(alert.regions or ()),
                "first_seen_at": alert.first_seen_at.isoformat(),
                "last_seen_at": alert.last_seen_at.isoformat(),
            }
        )
    out = []
    for row in per.values():
        party = traceability.get_distributor(
            session, tenant_id=f.tenant_id, distributor_id=row["distributor_id"]
        )
        alerts = row.pop("alerts", [])
        out.append(
            {
                **row,
                "name": party.name if party is not None else None,
                "places": [
                    {"region": k, "scans": v}
                    for k, v in sorted(row["places"].items(), key=lambda kv: -kv[1])
                ],
                "open_alerts": sum(1 for x in alerts if x["status"] == "open"),
                "alert_codes": sum(x["codes"] for x in alerts),
                "alerts": alerts,
            }
        )
    out.sort(key=lambda r: (-r["diverted_scans"], -r["alert_codes"], r["distributor_id"]))
    return out


FORGED_KINDS = ("forged_cluster_ip", "forged_cluster_region")
CLONE_KINDS = ("clone_suspected", "auto_blacklisted")


def counterfeit_summary(session: Session, f: ScanFilter, *, limit: int = 100) -> dict[str, Any]:
    """Counterfeit and suspicious scans by place, the forged-code clusters (by IP and region)
    and clone alerts raised in the period, and the codes blacklisted automatically, by reason."""
    d = ScanPlace
    places: dict[tuple[str, str], dict[str, int]] = {}
    for country, province, verdict, n in session.execute(
        select(d.country, d.province, d.verdict, func.sum(d.scans))
        .where(*_place_where(f), d.verdict.in_(("counterfeit", "suspicious")))
        .group_by(d.country, d.province, d.verdict)
    ):
        row = places.setdefault((country, province), {"counterfeit": 0, "suspicious": 0})
        row[verdict] += int(n)
    start, end = f.utc_range
    a = Alert
    alerts = session.scalars(
        select(a)
        .where(a.tenant_id == f.tenant_id, a.created_at >= start, a.created_at < end)
        .order_by(a.id.desc())
        .limit(limit)
    ).all()
    b = BlacklistEntry
    reasons = {
        str(reason): int(n)
        for reason, n in session.execute(
            select(b.reason, func.count())
            .where(
                b.tenant_id == f.tenant_id,
                b.source == "auto",
                b.created_at >= start,
                b.created_at < end,
            )
            .group_by(b.reason)
        )
    }
    auto = session.scalars(
        select(b)
        .where(
            b.tenant_id == f.tenant_id,
            b.source == "auto",
            b.created_at >= start,
            b.created_at < end,
        )
        .order_by(b.id.desc())
        .limit(limit)
    ).all()

    def alert_out(alert: Alert) -> dict[str, Any]:
        return {
            "id": alert.id,
            "kind": alert.kind,
            "subject": alert.subject,
            "count": alert.count,
            "status": alert.status,
            "created_at": alert.created_at.isoformat(),
            "detail": alert.detail,
        }

    return {
        "places": sorted(
            ({"country": c, "province": p, **counts} for (c, p), counts in places.items()),
            key=lambda r: (-r["counterfeit"], -r["suspicious"], r["country"], r["province"]),
        ),
        "forged_clusters": [alert_out(x) for x in alerts if x.kind in FORGED_KINDS],
        "clone_alerts": [alert_out(x) for x in alerts if x.kind in CLONE_KINDS],
        "auto_blacklisted": {
            "by_reason": reasons,
            "entries": [
                {
                    "id": e.id,
                    "batch_id": e.batch_id,
                    "first_serial": e.first_serial,
                    "last_serial": e.last_serial,
                    "reason": e.reason,
                    "note": e.note,
                    "created_at": e.created_at.isoformat(),
                    "lifted": e.lifted_at is not None,
                }
                for e in auto
            ],
        },
    }
