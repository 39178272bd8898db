"""The console's dashboards: JSON (or CSV) figures under /api/v1/dashboards/, read from rollups.

Every page takes the same filters, validated alike (a bad one is a 422 naming it):

- ``from`` / ``to``: the brand's local days, inclusive (default: the last 30 days to today);
- ``interval``: ``day`` or ``hour`` (the overview's series);
- ``sku``, ``batch_id``, ``region`` (``CN``, ``CN-ZJ``): repeat or separate by commas;
- ``campaign_id``: the campaign's window and targeting (SKUs, batches, regions) narrow the rest;
- ``format``: ``json`` (default) or ``csv`` (the page's main table, streamed, UTF-8 with BOM).

Who sees what: admins and analysts every page; a factory operator production only; customer
service the members page; a distributor its own diversion only. The scan figures come from the
anti-fraud rollups (refreshed every minute), never from the scan table.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, jsonify, request, stream_with_context
from sqlalchemy.orm import Session

import anti_fraud
import campaigns
import codegen
import members
import traceability
from core.auth import Principal, caller_with, current_principal
from core.errors import NotFoundError, PermissionDeniedError, ValidationFailedError
from core.openapi import MAX_ID, operation, secured
from core.services import tenant_timezone
from core.web import db_session

api = Blueprint("dashboards", __name__)

DEFAULT_DAYS = 30
FIRST_DAY, LAST_DAY = dt.date(2000, 1, 1), dt.date(2199, 12, 31)
MAX_LIST = 50  # values of one filter

# page -> (the permission its caller needs, the roles that see it)
PAGES: dict[str, tuple[str, frozenset[str]]] = {
    "overview": ("read", frozenset({"admin", "analyst"})),
    "map": ("read", frozenset({"admin", "analyst"})),
    "diversion": ("read", frozenset({"admin", "analyst"})),
    "counterfeit": ("read", frozenset({"admin", "analyst"})),
    "campaigns": ("campaigns", frozenset({"admin", "analyst"})),
    "members": ("members", frozenset({"admin", "analyst", "customer_service"})),
    "production": ("read", frozenset({"admin", "analyst", "factory_operator"})),
}

_LIST = {"type": "array", "items": {"type": "string"}}
FILTERS: dict[str, dict[str, Any]] = {
    "from": {"type": "string", "format": "date", "description": "first local day (inclusive)"},
    "to": {"type": "string", "format": "date", "description": "last local day (inclusive)"},
    "sku": {**_LIST, "description": "product SKUs (repeat, or separate by commas)"},
    "batch_id": {**_LIST, "description": "batch ids"},
    "region": {**_LIST, "description": "countries or provinces: CN, CN-ZJ"},
    "campaign_id": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    "format": {"type": "string", "enum": ["json", "csv"], "default": "json"},
}


def _caller(page: str) -> Principal:
    permission, roles = PAGES[page]
    principal = caller_with(permission)
    if principal.role not in roles:
        raise PermissionDeniedError(f"the role {principal.role!r} may not read the {page} page")
    return principal


def distributor_of(session: Session, principal: Principal) -> int:
    """The distributor a distributor's credentials stand for: the signed-in distributor user's,
    else the one its API key is bound to (``POST /trace/distributors/<id>/api-keys``)."""
    found = principal.distributor_id
    if found is None and principal.api_key_id is not None:
        found = traceability.distributor_of_api_key(session, principal.api_key_id)
    if found is None:
        raise PermissionDeniedError("these credentials are bound to no distributor")
    return found


# --- filters ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    scans: anti_fraud.ScanFilter
    campaign_id: int | None
    csv: bool

    @property
    def utc_range(self) -> tuple[dt.datetime, dt.datetime]:
        return self.scans.utc_range

    def echo(self) -> dict[str, Any]:
        f = self.scans
        return {
            "from": f.first_day.isoformat(),
            "to": f.last_day.isoformat(),
            "timezone": f.timezone,
            "product_ids": list(f.product_ids),
            "batch_ids": list(f.batch_ids),
            "regions": list(f.regions),
            "campaign_id": self.campaign_id,
        }


def _values(name: str) -> list[str]:
    values = [v.strip() for raw in request.args.getlist(name) for v in raw.split(",") if v.strip()]
    if len(values) > MAX_LIST:
        raise ValidationFailedError.field(name, f"at most {MAX_LIST} values")
    return values


def _day(name: str, default: dt.date) -> dt.date:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        raise ValidationFailedError.field(name, "a date such as 2026-12-01")
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        raise ValidationFailedError.field(name, "not a calendar date") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValidationFailedError.field(name, f"a date from {FIRST_DAY} to {LAST_DAY}")
    return day


def _id(name: str, raw: str) -> int:
    if not re.fullmatch(r"[0-9]{1,10}", raw) or not 1 <= int(raw) <= MAX_ID:
        raise ValidationFailedError.field(name, f"ids are whole numbers from 1 to {MAX_ID}")
    return int(raw)


def _region(raw: str) -> str:
    region = traceability.parse_region(raw, field="region")
    if region.city:
        raise ValidationFailedError.field("region", f"{raw!r}: figures are kept by province")
    return region.code


def parse_filters(session: Session, tenant_id: int) -> Filters:
    """The page's filters from the query string, checked against the brand's own products,
    batches and campaigns (another brand's id is as unknown as a made-up one)."""
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "csv"):
        raise ValidationFailedError.field("format", "json or csv")
    timezone = tenant_timezone(session, tenant_id)
    today = dt.datetime.now(ZoneInfo(timezone)).date()
    last = _day("to", today)
    first = _day("from", last - dt.timedelta(days=DEFAULT_DAYS - 1))
    products: set[int] = set()
    for sku in _values("sku"):
        if len(sku) > 64:
            raise ValidationFailedError.field("sku", "a SKU is at most 64 characters")
        try:
            product = codegen.get_product_by_sku_or_raise(session, tenant_id=tenant_id, sku=sku)
        except NotFoundError:
            raise ValidationFailedError.field("sku", f"no product with SKU {sku!r}") from None
        products.add(product.id)
    batches: set[int] = set()
    for raw in _values("batch_id"):
        batch_id = _id("batch_id", raw)
        if codegen.get_batch(session, tenant_id=tenant_id, batch_id=batch_id) is None:
            raise ValidationFailedError.field("batch_id", f"no batch {batch_id}")
        batches.add(batch_id)
    regions = {_region(raw) for raw in _values("region")}
    campaign_id = None
    raw_campaign = request.args.get("campaign_id")
    if raw_campaign:
        campaign_id = _id("campaign_id", raw_campaign)
        try:
            scope = campaigns.campaign_scope(session, tenant_id=tenant_id, campaign_id=campaign_id)
        except NotFoundError:
            raise ValidationFailedError.field("campaign_id", f"no campaign {campaign_id}") from None
        first, last = _within(scope, ZoneInfo(timezone), first, last)
        for sku in scope.skus:
            try:
                product = codegen.get_product_by_sku_or_raise(session, tenant_id=tenant_id, sku=sku)
            except NotFoundError:
                continue
            products = products & {product.id} if products else {product.id}
        if scope.batch_ids:
            batches = batches & set(scope.batch_ids) if batches else set(scope.batch_ids)
        if scope.regions:
            targeted = {_region_of_target(code) for code in scope.regions}
            regions = regions & targeted if regions else targeted
    scans = anti_fraud.ScanFilter(
        tenant_id=tenant_id,
        first_day=first,
        last_day=last,
        timezone=timezone,
        product_ids=tuple(sorted(products)),
        batch_ids=tuple(sorted(batches)),
        regions=tuple(sorted(regions)),
    )
    return Filters(scans=scans, campaign_id=campaign_id, csv=fmt == "csv")


def _within(
    scope: campaigns.CampaignScope, zone: ZoneInfo, first: dt.date, last: dt.date
) -> tuple[dt.date, dt.date]:
    """The period cut to the campaign's window (its local days); an empty cut is a 422."""
    start = scope.starts_at.astimezone(zone).date()
    end = (scope.ends_at - dt.timedelta(microseconds=1)).astimezone(zone).date()
    first, last = max(first, start), min(last, end)
    if last < first:
        raise ValidationFailedError.field("campaign_id", "the campaign ran outside this period")
    return first, last


def _region_of_target(code: str) -> str:
    """A campaign's targeted region at the grain figures are kept (a city counts as its
    province)."""
    return code.partition("/")[0]


# --- answers ------------------------------------------------------------------------------------


def _cell(value: Any) -> Any:
    # A spreadsheet runs a cell that starts with = + - @ as a formula: names come from users.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return "" if value is None else value


def csv_response(name: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Response:
    """``rows`` as a streamed CSV download (UTF-8 with BOM, so spreadsheets read Chinese)."""

    def body() -> Iterator[bytes]:
        yield "\ufeff".encode()
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header)
        for row in rows:
            writer.writerow([_cell(v) for v in row])
            if out.tell() > 64 * 1024:
                yield out.getvalue().encode()
                out.seek(0)
                out.truncate()
        yield out.getvalue().encode()

    return Response(
        stream_with_context(body()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _answer(
    page: str,
    filters: Filters,
    data: dict[str, Any],
    header: Sequence[str],
    rows: Callable[[], Iterable[Sequence[Any]]],
) -> Any:
    if filters.csv:
        f = filters.scans
        return csv_response(f"{page}-{f.first_day}-{f.last_day}.csv", header, rows())
    return jsonify({"filters": filters.echo(), **data})


_VERDICT_COLUMNS = ("scans", "genuine", "already_verified", "suspicious", "counterfeit", "diverted")


def _lag(session: Session) -> dict[str, Any]:
    """How far the scan rollups have counted (the figures are as of ``updated_at``)."""
    lag = anti_fraud.rollup_lag(session)
    moved = lag["updated_at"]
    return {**lag, "updated_at": moved.isoformat() if moved is not None else None}


@api.get("/dashboards/overview")
@operation(
    "Scans per hour or day, unique scanners, verdict mix, new members, points issued and redeemed",
    tag="dashboards",
    query={**FILTERS, "interval": {"type": "string", "enum": ["day", "hour"], "default": "day"}},
)
@secured
def overview() -> Any:
    principal = _caller("overview")
    session = db_session()
    filters = parse_filters(session, principal.tenant_id)
    f = filters.scans
    series = anti_fraud.scan_series(session, f, interval=request.args.get("interval", "day"))
    people = members.member_days(
        session, tenant_id=f.tenant_id, first_day=f.first_day, last_day=f.last_day
    )
    data = {
        "interval": series.interval,
        "series": series.points,
        "verdicts": series.totals,
        "unique_scanners": anti_fraud.unique_scanners(session, f),
        "members": people,
        "rollups": _lag(session),
    }
    return _answer(
        "overview",
        filters,
        data,
        ("start", *_VERDICT_COLUMNS),
        lambda: ([p["start"], *(p[c] for c in _VERDICT_COLUMNS)] for p in series.points),
    )


@api.get("/dashboards/map")
@operation(
    "Scans, counterfeits and diversion by country and by province", tag="dashboards", query=FILTERS
)
@secured
def scan_map() -> Any:
    principal = _caller("map")
    session = db_session()
    filters = parse_filters(session, principal.tenant_id)
    places = anti_fraud.scan_map(session, filters.scans)
    return _answer(
        "map",
        filters,
        places,
        ("country", "province", *_VERDICT_COLUMNS),
        lambda: [
            *([c["country"], "", *(c[k] for k in _VERDICT_COLUMNS)] for c in places["countries"]),
            *(
                [p["country"], p["province"], *(p[k] for k in _VERDICT_COLUMNS)]
                for p in places["provinces"]
            ),
        ],
    )


@api.get("/dashboards/diversion")
@operation(
    "Diversion by distributor: diverted scans, where they turned up, alerts with evidence",
    tag="dashboards",
    query=FILTERS,
)
@secured
def diversion() -> Any:
    principal = current_principal()
    session = db_session()
    if principal.role == "distributor":
        own = distributor_of(session, principal)
    else:
        _caller("diversion")
        own = None
    filters = parse_filters(session, principal.tenant_id)
    if own is not None:
        filters = replace(filters, scans=replace(filters.scans, distributor_id=own))
    rows = anti_fraud.diversion_by_distributor(session, filters.scans)
    return _answer(
        "diversion",
        filters,
        {"distributors": rows},
        ("distributor_id", "name", "diverted_scans", "open_alerts", "alert_codes", "places"),
        lambda: (
            [
                r["distributor_id"],
                r["name"],
                r["diverted_scans"],
                r["open_alerts"],
                r["alert_codes"],
                " ".join(f"{p['region'] or '?'}:{p['scans']}" for p in r["places"]),
            ]
            for r in rows
        ),
    )


@api.get("/dashboards/counterfeit")
@operation(
    "Counterfeit and clone alerts: hot spots, forged-code clusters by region and IP, codes "
    "blacklisted automatically with their reasons",
    tag="dashboards",
    query=FILTERS,
)
@secured
def counterfeit() -> Any:
    principal = _caller("counterfeit")
    session = db_session()
    filters = parse_filters(session, principal.tenant_id)
    found = anti_fraud.counterfeit_summary(session, filters.scans)
    return _answer(
        "counterfeit",
        filters,
        found,
        ("country", "province", "counterfeit", "suspicious"),
        lambda: (
            [p["country"], p["province"], p["counterfeit"], p["suspicious"]]
            for p in found["places"]
        ),
    )


@api.get("/dashboards/campaigns")
@operation(
    "Campaigns: draws, wins by prize, budget burn and pacing, cost per engaged member, "
    "review queue",
    tag="dashboards",
    query=FILTERS,
)
@secured
def campaign_figures() -> Any:
    principal = _caller("campaigns")
    session = db_session()
    filters = parse_filters(session, principal.tenant_id)
    first, end = filters.utc_range
    rows = campaigns.campaigns_overview(
        session,
        tenant_id=principal.tenant_id,
        first=first,
        end=end,
        campaign_id=filters.campaign_id,
    )
    return _answer(
        "campaigns",
        filters,
        {"campaigns": rows},
        (
            "campaign_id",
            "name",
            "status",
            "draws",
            "winners",
            "budget_fen",
            "spent_fen",
            "expected_spend_fen",
            "engaged_members",
            "cost_per_engaged_member_fen",
            "review_queue",
        ),
        lambda: (
            [
                c["id"],
                c["name"],
                c["status"],
                c["draws"],
                c["winners"],
                c["budget"]["budget_fen"],
                c["budget"]["spent_fen"],
                c["pacing"]["expected_spend_fen"],
                c["engaged_members"],
                c["cost_per_engaged_member_fen"],
                c["review_queue"],
            ]
            for c in rows
        ),
    )


@api.get("/dashboards/members")
@operation(
    "Members: growth, tiers, RFM segments, sleeping members, points liability and expiry in the "
    "next 30 days",
    tag="dashboards",
    query=FILTERS,
)
@secured
def member_figures() -> Any:
    principal = _caller("members")
    session = db_session()
    filters = parse_filters(session, principal.tenant_id)
    f = filters.scans
    growth = members.member_days(
        session, tenant_id=f.tenant_id, first_day=f.first_day, last_day=f.last_day
    )
    # Rollups only (a handful of rows whatever the brand's size): docs/dashboards.md.
    summary = members.segment_summary(session, tenant_id=f.tenant_id)
    held = summary["points"]
    data = {
        "growth": growth,
        "members": summary["members"],
        "tiers": summary["tiers"],
        "segments": summary["segments"],
        "rfm_computed_at": summary["computed_at"].isoformat() if summary["computed_at"] else None,
        "sleeping": summary["sleeping"],
        "churn_risk": summary["churn_risk"],
        "sleeping_days": summary["sleeping_days"],
        "points_liability": {"active": held["active"], "pending": held["pending"]},
        "expiring": held["expiring"],
        "points_counted_at": held["counted_at"].isoformat() if held["counted_at"] else None,
    }
    columns = ("new_members", "points_earned", "points_spent", "points_expired")
    return _answer(
        "members",
        filters,
        data,
        ("day", *columns),
        lambda: ([d["day"], *(d[c] for c in columns)] for d in growth["days"]),
    )


@api.get("/dashboards/production")
@operation(
    "Production: batches issued, activated, shipped and scanned; print jobs with their progress",
    tag="dashboards",
    query=FILTERS,
)
@secured
def production() -> Any:
    principal = _caller("production")
    session = db_session()
    filters = parse_filters(session, principal.tenant_id)
    f = filters.scans
    batches = [
        b
        for b in codegen.list_batches(session, tenant_id=f.tenant_id, limit=200)
        if (not f.batch_ids or b.id in f.batch_ids)
        and (not f.product_ids or b.product_id in f.product_ids)
    ]
    ids = [b.id for b in batches]
    coverage = traceability.batch_coverage(session, tenant_id=f.tenant_id, batch_ids=ids)
    scanned = anti_fraud.scans_by_batch(session, f)
    jobs = [
        e
        for e in codegen.list_exports(session, tenant_id=f.tenant_id, limit=200)
        if e.batch_id in set(ids)
    ]
    rows = [
        {
            "batch_id": b.id,
            "product_id": b.product_id,
            "lot": b.lot,
            "status": b.status,
            "issued": b.quantity,
            "activated": coverage[b.id]["activated"],
            "shipped": coverage[b.id]["shipped"],
            "scans": scanned.get(b.id, {}).get("scans", 0),
            "suspicious": scanned.get(b.id, {}).get("suspicious", 0),
            "created_at": b.created_at.isoformat(),
        }
        for b in batches
    ]
    data = {
        "batches": rows,
        "print_jobs": [
            {
                "export_id": e.id,
                "batch_id": e.batch_id,
                "format": e.format,
                "status": e.status,
                "chunks_done": e.chunks_done,
                "chunks_total": e.chunks_total,
                "progress": round(e.chunks_done / e.chunks_total, 4) if e.chunks_total else 1.0,
                "codes": e.last_serial - e.first_serial + 1,
                "created_at": e.created_at.isoformat(),
            }
            for e in jobs
        ],
    }
    columns = ("batch_id", "product_id", "lot", "status", "issued", "activated", "shipped", "scans")
    return _answer(
        "production",
        filters,
        data,
        columns,
        lambda: ([r[c] for c in columns] for r in rows),
    )
