"""The demo brand: what ``make run`` shows a newcomer."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator

from sqlalchemy.orm import Session

import codegen
import traceability
from core import services as core_services
from core.runtime import Runtime
from core.tasks import wait_for_in_process_tasks

DEMO_SLUG = "demo"


def build_demo(runtime: Runtime) -> Iterator[str]:
    """Create (once) the demo tenant, its data and print files; yield what to tell the user."""
    out_dir = runtime.settings.data_dir / "demo"
    with runtime.db.unit_of_work() as session:
        tenant = core_services.get_tenant_by_slug(session, DEMO_SLUG)
        if tenant is not None:
            yield f"demo brand already set up; print files in {out_dir}/"
            batch = codegen.list_batches(session, tenant_id=tenant.id, limit=1)[0]
            product = codegen.get_product_or_raise(
                session, tenant_id=tenant.id, product_id=batch.product_id
            )
            host = tenant.scan_host or runtime.settings.scan_host
            url = codegen.code_for_serial(
                runtime, batch=batch, gtin=product.gtin, serial=1, host=host
            ).url
            yield f"a code to try: {local_url(url, host)}"
            password = _console_admin(session, tenant_id=tenant.id)
            yield from _console_lines(password)
            return
        tenant = core_services.create_tenant(session, slug=DEMO_SLUG, name="Yima Demo Tea Co.")
        issued = core_services.create_api_key(
            session, tenant_id=tenant.id, name="demo admin", role="admin"
        )
        product = codegen.create_product(
            session,
            tenant_id=tenant.id,
            sku="TEA-LJ-250",
            name="明前龙井 Longjing tea 250 g",
            gtin="06901234567892",
            specification="250 g tin",
            shelf_life_days=540,
        )
        short = codegen.create_batch(
            session,
            runtime=runtime,
            tenant_id=tenant.id,
            product_id=product.id,
            lot="L2026A",
            quantity=1000,
            url_form="short",
            production_date=dt.date(2026, 11, 1),
            factory="Hangzhou",
            line="L1",
        )
        signed = codegen.create_batch(
            session,
            runtime=runtime,
            tenant_id=tenant.id,
            product_id=product.id,
            lot="L2026B",
            quantity=100,
            url_form="gs1-digsig",
            production_date=dt.date(2026, 11, 2),
            factory="Hangzhou",
            line="L2",
        )
        exports = [
            codegen.create_export(
                session,
                runtime=runtime,
                tenant_id=tenant.id,
                batch_id=short.id,
                fmt=fmt,
                actor="demo",
            )
            for fmt in ("csv", "txt", "pdf", "png-zip")
        ] + [
            codegen.create_export(
                session,
                runtime=runtime,
                tenant_id=tenant.id,
                batch_id=signed.id,
                fmt="pdf",
                actor="demo",
            )
        ]
        ids = [e.id for e in exports]
        _trace_demo(session, runtime, tenant_id=tenant.id, batch_id=short.id)
        _members_demo(session, runtime, tenant_id=tenant.id)
        _campaign_demo(session, runtime, tenant_id=tenant.id)
        console_password = _console_admin(session, tenant_id=tenant.id)
        host = runtime.settings.scan_host
        first_url = codegen.code_for_serial(
            runtime, batch=short, gtin=product.gtin, serial=1, host=host, session=session
        ).url
        signed_url = codegen.code_for_serial(
            runtime, batch=signed, gtin=product.gtin, serial=1, host=host, session=session
        ).url
    wait_for_in_process_tasks()
    out_dir.mkdir(parents=True, exist_ok=True)
    with runtime.db.unit_of_work() as session:
        for export_id in ids:
            export, path = codegen.open_export_file(
                session, runtime=runtime, tenant_id=tenant.id, export_id=export_id, actor="demo"
            )
            shutil.copyfile(path, out_dir / (export.file_name or path.name))
            yield f"print file: {out_dir / (export.file_name or path.name)}"
    yield f"API key (admin, shown once): {issued.token}"
    yield f"a printed short code (packed, shipped to a Hangzhou dealer): {first_url}"
    yield f"  try it here: {local_url(first_url, host)}"
    yield f"a printed signed GS1 Digital Link code: {signed_url}"
    yield f"  try it here: {local_url(signed_url, host)}"
    yield (
        "member pages (sign in with any 13x... mobile number; the SMS code is printed in the "
        "server's log): http://127.0.0.1:8000/m/sign-in?brand=demo"
    )
    yield from _console_lines(console_password)


DEMO_ADMIN_EMAIL = "admin@demo.yima.example"


def _console_admin(session: Session, *, tenant_id: int) -> str | None:
    """The demo brand's console admin, made once; its password (None when it existed)."""
    from core import accounts

    if accounts.list_users(session, tenant_id=tenant_id, role="admin", limit=1):
        return None
    password = accounts.temporary_password()
    user = core_services.create_user(
        session,
        tenant_id=tenant_id,
        email=DEMO_ADMIN_EMAIL,
        role="admin",
        password=password,
        name="Demo admin",
    )
    core_services.record_audit(
        session,
        tenant_id=tenant_id,
        actor="demo",
        action="user.create",
        target_type="user",
        target_id=user.id,
        detail={"email": user.email, "role": "admin"},
    )
    return password


def _console_lines(password: str | None) -> Iterator[str]:
    yield f"console: http://127.0.0.1:8000/console/  brand {DEMO_SLUG}, e-mail {DEMO_ADMIN_EMAIL}"
    if password is not None:
        yield f"  console password (admin, shown once): {password}"
    else:
        yield (
            "  (its password was printed when the demo was built; "
            f"yima users reset-password --brand {DEMO_SLUG} --email {DEMO_ADMIN_EMAIL})"
        )


def _trace_demo(session: Session, runtime: Runtime, *, tenant_id: int, batch_id: int) -> None:
    """The supply chain of the first 48 tins: activated at line L1, packed two cases of 24
    onto a pallet (codes 1,000, 999 and 998 of the batch are the labels), shipped to the
    Zhejiang distributor and received in Hangzhou; case one went on to a dealer in Hangzhou."""
    at = dt.datetime(2026, 11, 3, 9, 30, tzinfo=dt.UTC)
    ref = traceability.CodeRef
    traceability.record_activation(
        session,
        runtime,
        tenant_id=tenant_id,
        action="activate",
        scope="range",
        ranges=[traceability.SerialRange(batch_id, 1, 1000)],
        operator="demo",
        line="L1",
        site="杭州西湖茶厂",
        at=at,
    )
    pallet, cases = ref(batch_id, 1000), [ref(batch_id, 999), ref(batch_id, 998)]
    pairs = [(cases[n // 24], ref(batch_id, n + 1)) for n in range(48)]
    pairs += [(pallet, case) for case in cases]
    traceability.pack(
        session,
        runtime,
        tenant_id=tenant_id,
        pairs=pairs,
        operator="demo",
        line="L1",
        at=at + dt.timedelta(hours=2),
    )
    zj = traceability.create_distributor(
        session,
        tenant_id=tenant_id,
        code="ZJ-001",
        name="浙江省总经销",
        level="provincial",
        regions=["CN-ZJ"],
    )
    dealer = traceability.create_distributor(
        session,
        tenant_id=tenant_id,
        code="HZ-017",
        name="杭州西湖茶叶店",
        level="dealer",
        channel="retail",
        parent_id=zj.id,
        regions=["CN-ZJ/杭州市"],
    )
    shipment = traceability.ship(
        session,
        runtime,
        tenant_id=tenant_id,
        reference="DN-2026-0001",
        to_distributor_id=zj.id,
        units=[pallet],
        operator="demo",
        at=at + dt.timedelta(days=1),
    )
    traceability.receive(
        session,
        tenant_id=tenant_id,
        shipment_id=shipment.id,
        operator="demo",
        location=traceability.Located("CN", "CN-ZJ", "杭州市", "city"),
        at=at + dt.timedelta(days=2),
    )
    traceability.ship(
        session,
        runtime,
        tenant_id=tenant_id,
        reference="ZJ-2026-0042",
        from_distributor_id=zj.id,
        to_distributor_id=dealer.id,
        units=[cases[0]],
        operator="demo",
        at=at + dt.timedelta(days=3),
    )


def _members_demo(session: Session, runtime: Runtime, *, tenant_id: int) -> None:
    """The member programme: four tiers and a small rewards catalogue."""
    from members.catalogue import create_item
    from members.tiers import create_tier

    ladder = [
        {"rank": 0, "name": "普通会员", "name_en": "Member"},
        {
            "rank": 1,
            "name": "银卡",
            "name_en": "Silver",
            "min_growth": 100,
            "benefits": {"points_multiplier": 1.2},
            "upgrade_gift_points": 50,
        },
        {
            "rank": 2,
            "name": "金卡",
            "name_en": "Gold",
            "min_growth": 500,
            "benefits": {"points_multiplier": 1.5, "discount_rate": 0.95},
            "upgrade_gift_points": 200,
        },
        {
            "rank": 3,
            "name": "钻石",
            "name_en": "Diamond",
            "min_growth": 2000,
            "min_spend": 1000,
            "qualify": "all",
            "benefits": {
                "points_multiplier": 2.0,
                "discount_rate": 0.9,
                "free_shipping": True,
                "priority_service": True,
            },
            "upgrade_gift_points": 500,
        },
    ]
    for tier in ladder:
        create_tier(session, runtime, tenant_id=tenant_id, **tier)
    create_item(
        session,
        tenant_id=tenant_id,
        kind="coupon",
        name="满50减5元券",
        name_en="¥5 off ¥50",
        points_cost=100,
        stock=1000,
        face_value_fen=500,
        min_order_fen=5000,
        coupon_valid_days=30,
    )
    create_item(
        session,
        tenant_id=tenant_id,
        kind="cash_deduction",
        name="10元现金抵扣",
        name_en="¥10 voucher",
        points_cost=300,
        face_value_fen=1000,
        coupon_valid_days=90,
    )
    create_item(
        session,
        tenant_id=tenant_id,
        kind="goods",
        name="品牌帆布袋",
        name_en="Canvas tote bag",
        points_cost=800,
        stock=50,
        per_member_limit=1,
    )


def _campaign_demo(session: Session, runtime: Runtime, *, tenant_id: int) -> None:
    """A running campaign for 30 days: weekend double points and a draw with every prize kind."""
    import campaigns

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    made = campaigns.create_campaign(
        session,
        tenant_id=tenant_id,
        actor="demo",
        raw={
            "name": "扫码赢红包",
            "description": "每次扫码得积分，还有机会赢现金红包和好礼",
            "starts_at": (now - dt.timedelta(minutes=1)).isoformat(),
            "ends_at": (now + dt.timedelta(days=30)).isoformat(),
            "earn": {
                "points_per_scan": 10,
                "boosts": [{"name": "周末双倍", "multiplier": "2", "weekdays": [6, 7]}],
                "first_scan_bonus": 50,
                "cap_per_day": 200,
            },
            "draw": {
                "prizes": [
                    {
                        "key": "cash-88",
                        "name": "现金红包 ¥8.88",
                        "kind": "cash",
                        "probability": "1/20",
                        "stock": 100,
                        "amount_fen": 888,
                    },
                    {
                        "key": "points-50",
                        "name": "50 积分",
                        "kind": "points",
                        "probability": "1/4",
                        "points": 50,
                    },
                    {
                        "key": "tote",
                        "name": "品牌帆布袋",
                        "kind": "goods",
                        "probability": "1/50",
                        "stock": 20,
                        "value_fen": 3900,
                    },
                    {"key": "thanks", "name": "谢谢参与", "kind": "thanks", "probability": "0"},
                ],
                "budget_fen": 200_000,
                "draws_per_member_per_day": 5,
                "fallback": "thanks",
            },
        },
    )
    campaigns.schedule_campaign(session, runtime, tenant_id=tenant_id, campaign_id=made.id)


def local_url(url: str, host: str, local: str = "http://127.0.0.1:8000") -> str:
    """The printed URL as served by ``yima serve`` on this machine."""
    for scheme in ("https://", "HTTPS://"):
        for h in (host, host.upper()):
            if url.startswith(scheme + h):
                return local + url[len(scheme + h) :]
    return url
