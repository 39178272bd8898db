"""The demo brand: what ``make run`` shows a newcomer."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator

import codegen
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
    yield f"a printed short code: {first_url}"
    yield f"  try it here: {local_url(first_url, host)}"
    yield f"a printed signed GS1 Digital Link code: {signed_url}"
    yield f"  try it here: {local_url(signed_url, host)}"


def local_url(url: str, host: str, local: str = "http://127.0.0.1:8000") -> str:
    """The printed URL as served by ``yima serve`` on this machine."""
    for scheme in ("https://", "HTTPS://"):
        for h in (host, host.upper()):
            if url.startswith(scheme + h):
                return local + url[len(scheme + h) :]
    return url
