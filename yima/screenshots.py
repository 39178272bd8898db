"""Screenshots of every dashboard page, for a reviewer: ``python -m yima.screenshots``.

Builds a throw-away embedded instance (SQLite under ``--data-dir``, emptied first) with the demo
brand of ``yima demo`` and a month of activity made through the services a real scan goes
through (codes shipped to three distributors and scanned by phones across China and abroad,
re-scans, a cloned code, forged codes, members earning and spending points, draws of the demo
campaign), refreshes the rollups and evaluates the alerts as the worker would, serves the
console on a free local port, signs in with headless Chromium (Debian's ``chromium``) and saves
one PNG per page (Chinese, 1440 px wide), plus the overview on a tablet.

``make screenshots`` runs it with ``--out var/screenshots``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

import anti_fraud
import campaigns
import codegen
import members
import traceability
from anti_fraud.recording import insert_scan
from console.app import create_app
from core import services as core_services
from core.config import Settings
from core.runtime import Runtime, set_runtime, upgrade_database
from members.tasks import activate_pending_points
from yima.demo import build_demo

PAGES = ("overview", "map", "diversion", "counterfeit", "campaigns", "members", "production")
EMAIL = "reviewer@demo.yima.example"
PASSWORD = "screenshots only 2026"
DAYS = 30
CHROMIUM = "/usr/bin/chromium"

# Where phones scan: (lat, lon) of a city in each province the demo's goods reach.
CITIES: dict[str, list[tuple[float, float]]] = {
    "CN-ZJ": [(30.274, 120.155), (29.868, 121.544), (28.000, 120.672), (30.000, 120.580)],
    "CN-JS": [(32.060, 118.797), (31.299, 120.585), (31.570, 120.300)],
    "CN-GD": [(23.130, 113.260), (22.540, 114.060), (23.020, 113.750)],
    "CN-SH": [(31.230, 121.470)],
    "CN-BJ": [(39.900, 116.400)],
    "CN-AH": [(31.820, 117.230)],
    "CN-FJ": [(26.070, 119.300)],
    "CN-SD": [(36.650, 117.120)],
    "CN-HA": [(34.750, 113.620)],
    "CN-HB": [(30.590, 114.300)],
    "CN-HN": [(28.230, 112.940)],
    "CN-SC": [(30.660, 104.070)],
    "CN-CQ": [(29.560, 106.550)],
    "CN-SN": [(34.270, 108.950)],
    "CN-GX": [(22.820, 108.320)],
    "CN-JX": [(28.680, 115.860)],
    "CN-YN": [(25.040, 102.710)],
    "CN-LN": [(41.800, 123.430)],
    "CN-TJ": [(39.130, 117.200)],
}
ABROAD_IPS = ("8.8.8.8", "1.1.1.1", "210.140.92.1", "203.208.60.1")


def say(line: str) -> None:
    print(line, flush=True)


# --- the demo brand and a month of activity ------------------------------------------------------


def _where(rng: random.Random, home: str | None, stray: float) -> str:
    """A province: the goods' home region mostly, elsewhere with probability ``stray``."""
    if home is not None and rng.random() > stray:
        return home
    weights = {"CN-SH": 6, "CN-BJ": 6, "CN-JS": 5, "CN-GD": 5, "CN-ZJ": 4, "CN-AH": 3}
    names = list(CITIES)
    return rng.choices(names, [weights.get(n, 2) for n in names])[0]


def _hour(rng: random.Random) -> int:
    # Local (UTC+8) shopping hours: evenings most, nights least.
    weights = [1, 1, 1, 1, 1, 1, 2, 4, 6, 7, 8, 8, 9, 8, 7, 7, 8, 9, 11, 12, 11, 9, 5, 2]
    return (rng.choices(range(24), weights)[0] - 8) % 24


def build(runtime: Runtime, rng: random.Random) -> None:
    for _line in build_demo(runtime):
        pass
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with runtime.db.unit_of_work() as session:
        tenant = core_services.get_tenant_by_slug(session, "demo")
        assert tenant is not None
        tid = tenant.id
        core_services.create_user(
            session, tenant_id=tid, email=EMAIL, role="admin", password=PASSWORD, name="Reviewer"
        )
        product = codegen.create_product(
            session,
            tenant_id=tid,
            sku="TEA-BLC-125",
            name="洞庭碧螺春 Biluochun 125 g",
            gtin=None,
            specification="125 g",
        )
        batch = codegen.create_batch(
            session,
            runtime=runtime,
            tenant_id=tid,
            product_id=product.id,
            lot="L2026C",
            quantity=3000,
            url_form="short",
            production_date=(now - dt.timedelta(days=40)).date(),
        )
        traceability.record_activation(
            session,
            runtime,
            tenant_id=tid,
            action="activate",
            scope="range",
            ranges=[traceability.SerialRange(batch.id, 1, 2600)],
            operator="line-2",
            line="L2",
            site="苏州东山茶厂",
            at=now - dt.timedelta(days=38),
        )
        zj = next(
            d for d in traceability.list_distributors(session, tenant_id=tid) if d.code == "ZJ-001"
        )
        js = traceability.create_distributor(
            session, tenant_id=tid, code="JS-002", name="江苏苏南经销商", level="provincial",
            regions=["CN-JS"],
        )  # fmt: skip
        gd = traceability.create_distributor(
            session, tenant_id=tid, code="GD-003", name="广东华南经销商", level="provincial",
            regions=["CN-GD"],
        )  # fmt: skip
        lots = [(zj.id, "CN-ZJ", 1, 900), (js.id, "CN-JS", 901, 1700), (gd.id, "CN-GD", 1701, 2400)]
        for n, (dist, _home, first, last) in enumerate(lots):
            traceability.ship(
                session,
                runtime,
                tenant_id=tid,
                reference=f"DN-2026-{n + 2:04d}",
                to_distributor_id=dist,
                ranges=[traceability.SerialRange(batch.id, first, last)],
                operator="warehouse",
                at=now - dt.timedelta(days=35 - n),
            )
        demo_batch = codegen.list_batches(session, tenant_id=tid, limit=1)[0].id
        # A print job for the new batch, as the factory would ask for it.
        codegen.create_export(
            session, runtime=runtime, tenant_id=tid, batch_id=batch.id, fmt="csv",
            first_serial=1, last_serial=3000, password=None, actor="demo",
        )  # fmt: skip
    people = _members_and_points(runtime, rng, tid, now)
    _campaign(runtime, tid, now)
    # Scans: rising over the month, more at weekends; home region mostly, some strays. Members
    # scanning the new tea take part in its campaign (points and a draw, once per code).
    pools: list[tuple[int, int, int, str | None, float]] = [
        (batch.id, first, last, home, 0.12 if home == "CN-ZJ" else 0.07)
        for _d, home, first, last in lots
    ]
    pools.append((demo_batch, 49, 997, None, 1.0))
    scanned: list[tuple[int, int, str]] = []
    device = 0
    for back in range(DAYS - 1, -1, -1):
        day = (now - dt.timedelta(days=back)).date()
        weekend = day.isoweekday() >= 6
        count = int(
            (18 + (DAYS - back) * 1.3) * (1.4 if weekend else 1.0) * rng.uniform(0.85, 1.15)
        )
        with runtime.db.unit_of_work() as session:
            for _ in range(count):
                batch_id, first, last, home, stray = rng.choice(pools)
                serial = rng.randint(first, last)
                at = dt.datetime.combine(day, dt.time(_hour(rng), rng.randint(0, 59)), dt.UTC)
                if back == 0 and at > now:
                    at = now - dt.timedelta(minutes=rng.randint(1, 300))
                device += 1
                if rng.random() < 0.03:
                    request = anti_fraud.ScanRequest(
                        code="", ip=rng.choice(ABROAD_IPS), device=f"d{device}"
                    )
                    province = "abroad"
                else:
                    province = _where(rng, home, stray)
                    lat, lon = rng.choice(CITIES[province])
                    request = anti_fraud.ScanRequest(
                        code="", ip=f"10.{device % 250}.{device % 7}.9", device=f"d{device}",
                        lat=lat + rng.uniform(-0.05, 0.05), lon=lon + rng.uniform(-0.05, 0.05),
                        accuracy_m=30,
                    )  # fmt: skip
                outcome = _record(session, runtime, tid, batch_id, serial, request, at)
                scanned.append((batch_id, serial, province))
                joined = [p for p, since in people if since < at]
                if batch_id == batch.id and joined and rng.random() < 0.45:
                    campaigns.reward_scan(
                        session, runtime, member=rng.choice(joined), now=at,
                        facts=campaigns.ScanFacts(
                            tenant_id=tid, batch_id=batch_id, serial=serial, sku=product.sku,
                            verdict=outcome.verdict, timezone="Asia/Shanghai",
                            device=f"d{device}",
                        ),
                    )  # fmt: skip
                # A friend checks the same tin again later: "already verified".
                if rng.random() < 0.08:
                    again = anti_fraud.ScanRequest(
                        code="", ip="10.9.9.9", device=f"friend{device}",
                        lat=request.lat, lon=request.lon, accuracy_m=50,
                    )  # fmt: skip
                    _record(
                        session, runtime, tid, batch_id, serial, again, at + dt.timedelta(hours=3)
                    )
    # One tin's code copied onto fakes: many phones, far apart, within hours.
    with runtime.db.unit_of_work() as session:
        for n, province in enumerate(["CN-GD", "CN-BJ", "CN-SC", "CN-LN", "CN-YN", "CN-HA"]):
            lat, lon = CITIES[province][0]
            request = anti_fraud.ScanRequest(
                code="", ip=f"10.77.0.{n}", device=f"clone{n}", lat=lat, lon=lon, accuracy_m=20
            )
            _record(
                session, runtime, tid, demo_batch, 500, request, now - dt.timedelta(hours=6 - n)
            )
    # Forged codes: a workshop in Shenzhen and a trickle elsewhere.
    with runtime.db.unit_of_work() as session:
        # A workshop in Shenzhen tried its printed fakes an hour ago (one IP, a burst: an alert);
        # a trickle elsewhere over the month.
        hour = (now - dt.timedelta(hours=2)).replace(minute=5, second=0)
        for i in range(36):
            at = hour + dt.timedelta(seconds=70 * i)
            _forged(
                session, tid, at, "广东省", "深圳市", ip="113.90.4.17", device=f"forger-{i % 3}"
            )
        spots = [
            ("福建省", "莆田市", 14, 2), ("河南省", "郑州市", 9, 5), ("广东省", "广州市", 8, 9),
            ("浙江省", "金华市", 6, 13), ("河北省", "保定市", 5, 20),
        ]  # fmt: skip
        for province, city, n, back in spots:
            for i in range(n):
                at = now - dt.timedelta(days=back, hours=i * 3, minutes=rng.randint(0, 59))
                ip = f"36.{rng.randint(10, 200)}.4.{i}"
                _forged(session, tid, at, province, city, ip=ip, device=f"forger-{city}-{i}")
    # A genuine tin's code photographed and printed on fakes: 24 phones in a day. The brand's
    # rule blacklists it once 20 devices have scanned it.
    with runtime.db.unit_of_work() as session:
        for n in range(24):
            lat, lon = CITIES[rng.choice(["CN-GD", "CN-GX", "CN-FJ", "CN-HN"])][0]
            request = anti_fraud.ScanRequest(
                code="", ip=f"10.88.0.{n}", device=f"copy{n}", lat=lat, lon=lon, accuracy_m=25
            )
            _record(
                session,
                runtime,
                tid,
                demo_batch,
                777,
                request,
                now - dt.timedelta(hours=20 - n * 0.7),
            )
    # What the worker does on its schedule: points past their pending hours become spendable,
    # alerts and diversion are evaluated, the rollups refreshed, RFM computed.
    activate_pending_points()
    anti_fraud.evaluate_alerts(runtime)
    anti_fraud.evaluate_diversion(runtime)
    anti_fraud.refresh_scan_rollups(runtime)
    members.refresh_member_rollups(runtime)
    campaigns.refresh_campaign_rollups(runtime)
    with runtime.db.unit_of_work() as session:
        members.compute_rfm(session, tenant_id=tid)


def _record(
    session: Any,
    runtime: Runtime,
    tenant_id: int,
    batch_id: int,
    serial: int,
    request: anti_fraud.ScanRequest,
    at: dt.datetime,
) -> anti_fraud.ScanOutcome:
    trail = traceability.code_trail(
        runtime, session, tenant_id=tenant_id, code=traceability.CodeRef(batch_id, serial)
    )
    return anti_fraud.record_valid_scan(
        session, runtime, tenant_id=tenant_id, batch_id=batch_id, serial=serial,
        request=request, trail=trail, now=at,
    )  # fmt: skip


def _forged(
    session: Any, tenant_id: int, at: dt.datetime, province: str, city: str, *, ip: str, device: str
) -> None:
    """A forged code's scan, as the scan service records one (no batch, located by its IP)."""
    insert_scan(
        session, now=at, tenant_id=tenant_id, batch_id=None, serial=None, verdict="counterfeit",
        signals=["bad_mac"], device=device, ip=ip, user_agent=None,
        place={"country": "CN", "province": province, "city": city, "source": "ip",
               "precision": "city"},
    )  # fmt: skip


def _members_and_points(
    runtime: Runtime, rng: random.Random, tenant_id: int, now: dt.datetime
) -> list[tuple[members.SignedIn, dt.datetime]]:
    """Members joining over the months, earning in the shop and spending in the catalogue; the
    members, signed in, with when they joined."""
    expiry = members.Expiry.parse("end_of_year")
    people = []
    with runtime.db.unit_of_work() as session:
        for i in range(260):
            joined = now - dt.timedelta(days=rng.triangular(0, 120, 5), hours=rng.randint(0, 23))
            member = members.enrol_member(
                session, runtime, tenant_id=tenant_id, phone=f"139{i:08d}", now=joined
            ).member
            signed = members.SignedIn(
                tenant_id, member.id, 0, None, member.created_at, member.phone_block
            )
            people.append((signed, joined))
            visits = max(1, int(rng.paretovariate(1.3)))
            shopped = joined + dt.timedelta(days=rng.uniform(1, 25))
            held = 0  # points earned before the member shops
            for v in range(min(visits, 12)):
                at = joined + dt.timedelta(days=rng.uniform(0, 12) * v, minutes=5)
                if at >= now:
                    break
                points = rng.choice([10, 10, 20, 50])
                held += points if at < shopped else 0
                members.earn(
                    session, tenant_id=tenant_id, member_id=member.id, points=points,
                    business_key=f"shot:{i}:{v}", expiry=expiry, now=at,
                )  # fmt: skip
            if held >= 20 and rng.random() < 0.6 and shopped < now:
                members.spend(
                    session, tenant_id=tenant_id, member_id=member.id, points=held // 20 * 10,
                    business_key=f"shop:{i}", now=shopped,
                )  # fmt: skip
    return people


def _campaign(runtime: Runtime, tenant_id: int, now: dt.datetime) -> None:
    """The new tea's launch campaign: three weeks in, nine days to go."""
    with runtime.db.unit_of_work() as session:
        made = campaigns.create_campaign(
            session,
            tenant_id=tenant_id,
            actor="demo",
            raw={
                "name": "碧螺春新品 扫码赢红包",
                "priority": 1,
                "starts_at": (now - dt.timedelta(days=21)).isoformat(),
                "ends_at": (now + dt.timedelta(days=9)).isoformat(),
                "targeting": {"skus": ["TEA-BLC-125"]},
                "earn": {"points_per_scan": 20, "first_scan_bonus": 30},
                "draw": {
                    "prizes": [
                        {"key": "cash-5", "name": "现金红包 ¥5", "kind": "cash",
                         "probability": "1/8", "stock": 400, "amount_fen": 500},
                        {"key": "sample", "name": "新茶小样", "kind": "goods",
                         "probability": "1/5", "stock": 300, "value_fen": 800},
                        {"key": "cup", "name": "定制茶杯", "kind": "goods",
                         "probability": "1/30", "stock": 40, "value_fen": 2900},
                        {"key": "thanks", "name": "谢谢参与", "kind": "thanks",
                         "probability": "0"},
                    ],
                    "budget_fen": 150_000,
                    "draws_per_member_per_day": 3,
                    "fallback": "thanks",
                },
            },
        )  # fmt: skip
        campaigns.schedule_campaign(
            session, runtime, tenant_id=tenant_id, campaign_id=made.id,
            now=now - dt.timedelta(days=22),
        )  # fmt: skip


# --- serving and capturing ----------------------------------------------------------------------


@contextmanager
def serving(runtime: Runtime) -> Iterator[str]:
    app = DispatcherMiddleware(Response("not here", status=404), {"/console": create_app()})
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/console"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def capture(base: str, out: Path, chromium: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    saved: list[Path] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars"],
        )
        context = browser.new_context(
            locale="zh-CN", viewport={"width": 1440, "height": 900}, device_scale_factor=1
        )
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base + "/sign-in")
        page.fill("#brand", "demo")
        page.fill("#email", EMAIL)
        page.fill("#password", PASSWORD)
        page.click("#sign-in")
        page.wait_for_url(base + "/")
        for name in PAGES:
            page.goto(f"{base}/dashboards/{name}")
            page.locator("#dashboard[data-loaded]").wait_for(timeout=30_000)
            page.wait_for_load_state("networkidle")
            if name == "diversion":
                button = page.locator(".alert-card button[id$='-evidence']").first
                if button.count():
                    button.click()
                    page.wait_for_load_state("networkidle")
            path = out / f"{name}.png"
            page.screenshot(path=str(path), full_page=True)
            saved.append(path)
            say(f"  {path}")
        tablet = browser.new_context(
            locale="zh-CN",
            viewport={"width": 820, "height": 1180},
            storage_state=context.storage_state(),
        )
        page = tablet.new_page()
        page.goto(f"{base}/dashboards/overview")
        page.locator("#dashboard[data-loaded]").wait_for(timeout=30_000)
        page.wait_for_load_state("networkidle")
        path = out / "overview-tablet.png"
        page.screenshot(path=str(path), full_page=True)
        saved.append(path)
        say(f"  {path}")
        browser.close()
        if errors:
            raise SystemExit("script errors on the pages: " + "; ".join(errors))
    return saved


def _check_fonts() -> None:
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return
    found = subprocess.run([fc_list, ":lang=zh"], capture_output=True, text=True, check=False)
    if not found.stdout.strip():
        say("warning: no Chinese font installed: the pages will show boxes instead of Chinese")
        say("         (Debian: apt-get install fonts-noto-cjk)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("var/screenshots"))
    parser.add_argument("--data-dir", type=Path, default=Path("var/screenshots-data"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or CHROMIUM)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    _check_fonts()
    shutil.rmtree(args.data_dir, ignore_errors=True)
    args.data_dir.mkdir(parents=True)
    args.out.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{args.data_dir.resolve() / 'yima.db'}"
    settings = Settings(
        env="development", data_dir=args.data_dir, database_url=url, task_mode="inline"
    )
    upgrade_database(url)
    runtime = Runtime(settings)
    set_runtime(runtime)
    try:
        say(f"building the demo brand and a month of activity in {args.data_dir}/ ...")
        build(runtime, random.Random(args.seed))
        with serving(runtime) as base:
            say(f"console at {base}; saving screenshots:")
            capture(base, args.out, args.chromium)
    finally:
        set_runtime(None)
        runtime.close()


if __name__ == "__main__":
    main()
