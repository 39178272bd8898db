"""The scan rollups equal a direct count of the scan table: after random scans, late scans,
re-runs, gaps left by transactions that commit late, and concurrent refreshes on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text

import anti_fraud
import codegen
import traceability
from anti_fraud import rollups, sketches
from anti_fraud.models import Scan, ScanDay, ScanHour, ScanPlace
from anti_fraud.recording import insert_scan
from core.runtime import Runtime
from tests.conftest import PG_URL
from tests.factories import Brand, make_brand

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
PLACES: list[dict[str, Any] | None] = [
    {"country": "CN", "province": "浙江省", "city": "杭州市", "source": "gps", "precision": "city"},
    {"country": "CN", "province": "江苏省", "city": "南京市", "source": "gps", "precision": "city"},
    {"country": "CN", "province": "广东省", "source": "ip", "precision": "province"},
    {"country": "US", "province": "California", "source": "ip", "precision": "province"},
    {"country": "JP", "source": "ip", "precision": "country"},
    None,
]
VERDICTS = ("genuine", "genuine", "genuine", "already_verified", "suspicious", "counterfeit")


@pytest.fixture
def brands(runtime: Runtime) -> list[Brand]:
    with runtime.db.unit_of_work() as session:
        a = make_brand(session, runtime, slug="acme", quantity=100)
        second = codegen.create_batch(
            session,
            runtime=runtime,
            tenant_id=a.tenant_id,
            product_id=a.product_id,
            lot="L2026B",
            quantity=100,
            url_form="short",
        )
        b = make_brand(session, runtime, slug="bravo", quantity=100)
        session.flush()
        a.extra_batch = second.id  # type: ignore[attr-defined]
        return [a, b]


def _scan(session: Any, rng: random.Random, brand: Brand, at: dt.datetime, **kw: Any) -> int:
    verdict = kw.pop("verdict", rng.choice(VERDICTS))
    forged = verdict == "counterfeit"
    batch = kw.pop(
        "batch_id", rng.choice([brand.batch_id, getattr(brand, "extra_batch", brand.batch_id)])
    )
    return insert_scan(
        session,
        now=at,
        tenant_id=brand.tenant_id,
        batch_id=None if forged else batch,
        serial=None if forged else rng.randint(1, 100),
        verdict=verdict,
        signals=[],
        device=kw.pop("device", f"d{rng.randint(1, 40)}"),
        ip="10.0.0.1",
        user_agent=None,
        place=kw.pop("place", rng.choice(PLACES)),
        distributor_id=kw.pop("distributor_id", rng.choice([None, 1, 2])),
        diverted=kw.pop("diverted", rng.choice([None, False, False, True])),
    )


def _random_scans(
    runtime: Runtime, brands: list[Brand], n: int, seed: int, *, days: int = 3
) -> None:
    rng = random.Random(seed)
    with runtime.db.unit_of_work() as session:
        for _ in range(n):
            at = NOW - dt.timedelta(seconds=rng.randint(0, days * 86400))
            _scan(session, rng, rng.choice(brands), at)


def _direct(
    runtime: Runtime, tenant_id: int, zone: str = "Asia/Shanghai"
) -> tuple[Counter[Any], ...]:
    """The rollups' tables computed straight from the scan table."""
    hours: Counter[Any] = Counter()
    days: Counter[Any] = Counter()
    places: Counter[Any] = Counter()
    tz = ZoneInfo(zone)
    with runtime.db.read_only() as session:
        for s in session.scalars(select(Scan).where(Scan.tenant_id == tenant_id)):
            flag = 1 if s.diverted else 0
            hour = s.scanned_at.replace(minute=0, second=0, microsecond=0)
            hours[(hour, s.batch_id or 0, s.verdict, flag)] += 1
            place = traceability.province_iso(s.country, s.province) or ""
            day = s.scanned_at.astimezone(tz).date()
            days[(day, s.batch_id or 0, s.verdict, flag)] += 1
            key = (day, s.batch_id or 0, s.country or "", place)
            places[(*key, s.verdict, flag, s.distributor_id or 0)] += 1
    return hours, days, places


def _rolled(runtime: Runtime, tenant_id: int) -> tuple[Counter[Any], ...]:
    with runtime.db.read_only() as session:
        h, d, p = ScanHour, ScanDay, ScanPlace
        hours = Counter(
            {
                (r.hour, r.batch_id, r.verdict, r.diverted): r.scans
                for r in session.scalars(select(h).where(h.tenant_id == tenant_id))
            }
        )
        days = Counter(
            {
                (r.day, r.batch_id, r.verdict, r.diverted): r.scans
                for r in session.scalars(select(d).where(d.tenant_id == tenant_id))
            }
        )
        places = Counter(
            {
                (
                    r.day,
                    r.batch_id,
                    r.country,
                    r.province,
                    r.verdict,
                    r.diverted,
                    r.distributor_id,
                ): r.scans
                for r in session.scalars(select(p).where(p.tenant_id == tenant_id))
            }
        )
    return hours, days, places


def _assert_equal(runtime: Runtime, brands: list[Brand]) -> None:
    for brand in brands:
        assert _rolled(runtime, brand.tenant_id) == _direct(runtime, brand.tenant_id)


def test_rollups_equal_direct_counts_with_late_scans_and_reruns(
    runtime: Runtime, brands: list[Brand]
) -> None:
    _random_scans(runtime, brands, 300, seed=1)
    first = anti_fraud.refresh_scan_rollups(runtime, batch_size=64)
    assert first.scans == 300 and first.batches == 5
    _assert_equal(runtime, brands)
    # Late scans: scanned days ago, recorded now (a phone that was offline, a spooled flush).
    rng = random.Random(2)
    with runtime.db.unit_of_work() as session:
        for _ in range(50):
            _scan(session, rng, rng.choice(brands), NOW - dt.timedelta(days=rng.randint(5, 9)))
    assert anti_fraud.refresh_scan_rollups(runtime).scans == 50
    assert anti_fraud.refresh_scan_rollups(runtime).scans == 0  # a re-run counts nothing twice
    _assert_equal(runtime, brands)
    # Scans of no brand (a forged code of an unknown key) move the watermark and count nowhere.
    with runtime.db.unit_of_work() as session:
        insert_scan(
            session, now=NOW, tenant_id=None, batch_id=None, serial=None, verdict="counterfeit",
            signals=[], device="x", ip=None, user_agent=None, place=None,
        )  # fmt: skip
    assert anti_fraud.refresh_scan_rollups(runtime).scans == 1
    _assert_equal(runtime, brands)
    with runtime.db.read_only() as session:
        assert anti_fraud.rollup_lag(session)["open_gaps"] == 0


def _insert_with_id(runtime: Runtime, brand: Brand, scan_id: int, at: dt.datetime) -> None:
    with runtime.db.unit_of_work() as session:
        session.execute(
            Scan.__table__.insert().values(
                id=scan_id, scanned_at=at, tenant_id=brand.tenant_id, batch_id=brand.batch_id,
                serial=1, verdict="genuine", signals=[], device="late", place_source="none",
                place_precision="unknown",
            )
        )  # fmt: skip


def test_a_scan_committed_after_higher_ids_were_counted_is_still_counted(
    runtime: Runtime, brands: list[Brand]
) -> None:
    """Ids are taken at insert, not at commit: the ids skipped are looked up again (gaps)."""
    brand = brands[0]
    for scan_id in (1, 2, 5):
        _insert_with_id(runtime, brand, scan_id, NOW)
    with runtime.db.unit_of_work() as session:
        assert rollups.refresh_batch(session, now=NOW) == 3
    with runtime.db.read_only() as session:
        assert anti_fraud.rollup_lag(session) == {
            "last_scan_id": 5, "open_gaps": 1, "updated_at": NOW,
        }  # fmt: skip
    _insert_with_id(runtime, brand, 4, NOW - dt.timedelta(hours=3))  # the slow transaction
    with runtime.db.unit_of_work() as session:
        assert rollups.refresh_batch(session, now=NOW + dt.timedelta(minutes=1)) == 0
    _assert_equal(runtime, [brand])
    # Id 3 never comes (its transaction rolled back): forgotten after the grace period.
    with runtime.db.unit_of_work() as session:
        rollups.refresh_batch(session, now=NOW + dt.timedelta(minutes=5))
    with runtime.db.read_only() as session:
        assert anti_fraud.rollup_lag(session)["open_gaps"] == 1
    with runtime.db.unit_of_work() as session:
        rollups.refresh_batch(session, now=NOW + dt.timedelta(minutes=11))
    with runtime.db.read_only() as session:
        assert anti_fraud.rollup_lag(session)["open_gaps"] == 0
    _assert_equal(runtime, [brand])


@pytest.mark.skipif(not PG_URL, reason="real concurrency needs PostgreSQL")
@pytest.mark.parametrize("backend", ["postgresql"])
def test_concurrent_refreshes_while_scans_arrive_count_each_scan_once(
    runtime: Runtime, brands: list[Brand]
) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []

    def scanner(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(60):
                with runtime.db.unit_of_work() as session:
                    for _ in range(rng.randint(1, 5)):
                        _scan(
                            session,
                            rng,
                            rng.choice(brands),
                            NOW - dt.timedelta(minutes=rng.randint(0, 600)),
                        )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def refresher() -> None:
        try:
            while not stop.is_set():
                anti_fraud.refresh_scan_rollups(runtime, batch_size=25)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    scanners = [threading.Thread(target=scanner, args=(i,)) for i in range(3)]
    refreshers = [threading.Thread(target=refresher) for _ in range(2)]
    for t in scanners + refreshers:
        t.start()
    for t in scanners:
        t.join()
    stop.set()
    for t in refreshers:
        t.join()
    assert not errors
    anti_fraud.refresh_scan_rollups(runtime)
    _assert_equal(runtime, brands)
    with runtime.db.read_only() as session:
        total = session.scalar(text("SELECT sum(scans) FROM anti_fraud_scan_hours"))
        assert total == session.scalar(text("SELECT count(*) FROM anti_fraud_scans"))


def _filter(brand: Brand, first: dt.date, last: dt.date, **kw: Any) -> anti_fraud.ScanFilter:
    return anti_fraud.ScanFilter(
        tenant_id=brand.tenant_id, first_day=first, last_day=last, timezone="Asia/Shanghai", **kw
    )


def test_series_are_bucketed_in_the_brands_timezone_and_filtered(
    runtime: Runtime, brands: list[Brand]
) -> None:
    brand = brands[0]
    rng = random.Random(3)
    zj, us = PLACES[0], PLACES[3]
    with runtime.db.unit_of_work() as session:
        # 17:30 UTC on 1 December is 01:30 on 2 December in Shanghai.
        _scan(session, rng, brand, dt.datetime(2026, 12, 1, 17, 30, tzinfo=dt.UTC),
              verdict="genuine", batch_id=brand.batch_id, place=zj, diverted=False)  # fmt: skip
        _scan(session, rng, brand, dt.datetime(2026, 12, 1, 15, 59, tzinfo=dt.UTC),
              verdict="suspicious", batch_id=brand.extra_batch, place=us, diverted=True)  # type: ignore[attr-defined]  # fmt: skip
        _scan(session, rng, brand, dt.datetime(2026, 12, 1, 16, 0, tzinfo=dt.UTC),
              verdict="counterfeit", place=zj, diverted=None)  # fmt: skip
        _scan(session, rng, brands[1], dt.datetime(2026, 12, 1, 17, 0, tzinfo=dt.UTC),
              verdict="genuine", place=zj)  # another brand's  # fmt: skip
    anti_fraud.refresh_scan_rollups(runtime)
    with runtime.db.read_only() as session:
        days = anti_fraud.scan_series(
            session, _filter(brand, dt.date(2026, 12, 1), dt.date(2026, 12, 2))
        )
        assert [(p["start"], p["scans"]) for p in days.points] == [
            ("2026-12-01", 1), ("2026-12-02", 2),
        ]  # fmt: skip
        assert days.totals == {
            "scans": 3, "genuine": 1, "already_verified": 0, "suspicious": 1, "counterfeit": 1,
            "diverted": 1,
        }  # fmt: skip
        hours = anti_fraud.scan_series(
            session, _filter(brand, dt.date(2026, 12, 2), dt.date(2026, 12, 2)), interval="hour"
        )
        assert len(hours.points) == 24
        assert hours.points[0]["start"] == "2026-12-02T00:00:00+08:00"
        assert [p["scans"] for p in hours.points[:3]] == [1, 1, 0]
        only_zj = anti_fraud.scan_series(
            session, _filter(brand, dt.date(2026, 12, 1), dt.date(2026, 12, 2), regions=("CN-ZJ",))
        )
        assert only_zj.totals["scans"] == 2 and only_zj.totals["counterfeit"] == 1
        one_batch = anti_fraud.scan_series(
            session,
            _filter(brand, dt.date(2026, 12, 1), dt.date(2026, 12, 2), batch_ids=(brand.batch_id,)),
        )
        assert one_batch.totals["scans"] == 1
        by_product = anti_fraud.scan_series(
            session,
            _filter(
                brand, dt.date(2026, 12, 1), dt.date(2026, 12, 2), product_ids=(brand.product_id,)
            ),
        )
        assert by_product.totals["scans"] == 2  # both batches; the forged scan has no product
        places = anti_fraud.scan_map(
            session, _filter(brand, dt.date(2026, 12, 1), dt.date(2026, 12, 2))
        )
        assert places["provinces"][0] == {
            "country": "CN", "province": "CN-ZJ", "scans": 2, "genuine": 1,
            "already_verified": 0, "suspicious": 0, "counterfeit": 1, "diverted": 0,
        }  # fmt: skip
        assert {c["country"]: c["scans"] for c in places["countries"]} == {"CN": 2, "US": 1}


def test_unique_scanners_merge_over_days_and_batches(runtime: Runtime, brands: list[Brand]) -> None:
    brand = brands[0]
    rng = random.Random(4)
    with runtime.db.unit_of_work() as session:
        for i in range(400):
            day = NOW - dt.timedelta(days=i % 4)
            # 250 distinct phones, many scanning on several days and both batches.
            _scan(session, rng, brand, day, device=f"phone-{i % 250}")
    anti_fraud.refresh_scan_rollups(runtime)
    with runtime.db.read_only() as session:
        f = _filter(brand, (NOW - dt.timedelta(days=5)).date(), NOW.date())
        assert abs(anti_fraud.unique_scanners(session, f) - 250) <= 3  # type: ignore[operator]
        assert (
            anti_fraud.unique_scanners(
                session, _filter(brand, f.first_day, f.last_day, regions=("CN",))
            )
            is None
        )


def test_hyperloglog_error_is_within_its_bound() -> None:
    """p = 12: standard error 1.6 %; 100,000 items land well inside 3 standard errors, and the
    merge of two halves estimates the union."""
    items = [f"device-{i}" for i in range(100_000)]
    whole = sketches.add_all(None, items)
    assert abs(sketches.estimate(whole) - 100_000) / 100_000 < 0.05
    halves = [sketches.add_all(None, items[:60_000]), sketches.add_all(None, items[40_000:])]
    assert sketches.merge(halves).tobytes() == whole
    assert len(whole) == 4096
    assert sketches.estimate(sketches.EMPTY) == 0
    assert sketches.estimate(sketches.add_all(None, ["one", "two", "two"])) == 2


def test_bad_periods_are_422(runtime: Runtime, brands: list[Brand]) -> None:
    from core.errors import ValidationFailedError

    with pytest.raises(ValidationFailedError):
        _filter(brands[0], dt.date(2026, 12, 2), dt.date(2026, 12, 1))
    with pytest.raises(ValidationFailedError):
        _filter(brands[0], dt.date(2025, 1, 1), dt.date(2026, 12, 1))
    with runtime.db.read_only() as session, pytest.raises(ValidationFailedError):
        anti_fraud.scan_series(
            session, _filter(brands[0], dt.date(2026, 10, 1), dt.date(2026, 12, 1)), interval="hour"
        )


def test_the_cli_refreshes_the_rollups(runtime: Runtime, brands: list[Brand]) -> None:
    from click.testing import CliRunner

    from yima.cli import main

    _random_scans(runtime, brands, 30, seed=5)
    result = CliRunner().invoke(main, ["rollups", "refresh", "--batch-size", "100"])
    assert result.exit_code == 0, result.output
    assert "30 scan(s) counted" in result.output
    assert "scans counted up to id 30, 0 open gap(s)" in result.output
    _assert_equal(runtime, brands)
    again = CliRunner().invoke(main, ["rollups", "refresh"])
    assert "\n0 scan(s) counted" in "\n" + again.output
