from __future__ import annotations

import pytest
from sqlalchemy import event

import codegen
from codegen.tokens import InvalidToken, VerifiedCode
from core import services as core_services
from core.errors import NotFoundError, ValidationFailedError
from core.runtime import Runtime
from tests.conftest import REDIS_URL
from tests.factories import count_rows, make_brand


def test_bad_gtin_check_digit_is_refused_naming_the_field(runtime: Runtime) -> None:
    with runtime.db.unit_of_work() as session:
        tenant = core_services.create_tenant(session, slug="acme", name="Acme")
        with pytest.raises(ValidationFailedError) as bad:
            codegen.create_product(
                session, tenant_id=tenant.id, sku="A", name="Tea", gtin="06901234567891"
            )
        assert "gtin" in bad.value.errors
        product = codegen.create_product(
            session, tenant_id=tenant.id, sku="A", name="Tea", gtin="6901234567892"
        )
        assert product.gtin == "06901234567892"  # GTIN-13 stored as GTIN-14


@pytest.mark.parametrize("quantity", [0, -5, 100_000_001])
def test_batch_quantity_out_of_range_is_refused(runtime: Runtime, quantity: int) -> None:
    with runtime.db.unit_of_work() as session:
        brand = make_brand(session, runtime)
        with pytest.raises(ValidationFailedError) as bad:
            codegen.create_batch(
                session,
                runtime=runtime,
                tenant_id=brand.tenant_id,
                product_id=brand.product_id,
                lot="L2",
                quantity=quantity,
            )
        assert list(bad.value.errors) == ["quantity"]


def test_unknown_and_other_tenants_products_and_batches_are_not_found(runtime: Runtime) -> None:
    with runtime.db.unit_of_work() as session:
        mine = make_brand(session, runtime, slug="mine")
        theirs = make_brand(session, runtime, slug="theirs")
        with pytest.raises(NotFoundError):
            codegen.create_batch(
                session,
                runtime=runtime,
                tenant_id=mine.tenant_id,
                product_id=theirs.product_id,
                lot="L9",
                quantity=10,
            )
        with pytest.raises(NotFoundError):
            codegen.get_batch_or_raise(session, tenant_id=mine.tenant_id, batch_id=theirs.batch_id)
        with pytest.raises(NotFoundError):
            codegen.create_batch(
                session,
                runtime=runtime,
                tenant_id=mine.tenant_id,
                product_id=999_999,
                lot="L9",
                quantity=10,
            )


def test_gs1_batches_need_a_gtin(runtime: Runtime) -> None:
    with runtime.db.unit_of_work() as session:
        brand = make_brand(session, runtime)
        product = codegen.create_product(
            session, tenant_id=brand.tenant_id, sku="NO-GTIN", name="Loose tea"
        )
        with pytest.raises(ValidationFailedError) as bad:
            codegen.create_batch(
                session,
                runtime=runtime,
                tenant_id=brand.tenant_id,
                product_id=product.id,
                lot="L1",
                quantity=5,
                url_form="gs1",
            )
        assert "url_form" in bad.value.errors


def _first_code(runtime: Runtime, batch_id: int, tenant_id: int) -> str:
    with runtime.db.unit_of_work() as session:
        batch = codegen.get_batch_or_raise(session, tenant_id=tenant_id, batch_id=batch_id)
        product = codegen.get_product_or_raise(
            session, tenant_id=tenant_id, product_id=batch.product_id
        )
        return codegen.code_for_serial(
            runtime, batch=batch, gtin=product.gtin, serial=7, host="yima.example.com"
        ).url


@pytest.mark.parametrize("url_form", ["short", "gs1", "gs1-digsig"])
def test_codes_verify_without_touching_the_database(runtime: Runtime, url_form: str) -> None:
    with runtime.db.unit_of_work() as session:
        brand = make_brand(session, runtime, url_form=url_form)
    url = _first_code(runtime, brand.batch_id, brand.tenant_id)
    codegen.verify(runtime, url)  # warm the key ring
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(runtime.db.engine, "before_cursor_execute", listener)
    try:
        result = codegen.verify(runtime, url)
        forged = codegen.verify(runtime, url[:-3] + ("AAA" if url_form == "short" else "abc"))
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", listener)
    assert statements == []
    assert isinstance(result, VerifiedCode)
    assert (result.tenant_id, result.batch_id, result.serial) == (
        brand.tenant_id,
        brand.batch_id,
        7,
    )
    assert result.format == url_form
    assert isinstance(forged, InvalidToken)


def test_rotation_keeps_old_batches_verifying_and_retiring_revokes(runtime: Runtime) -> None:
    with runtime.db.unit_of_work() as session:
        brand = make_brand(session, runtime)
    old_url = _first_code(runtime, brand.batch_id, brand.tenant_id)
    with runtime.db.unit_of_work() as session:
        old_key = codegen.get_batch_or_raise(
            session, tenant_id=brand.tenant_id, batch_id=brand.batch_id
        ).key_id
        new_key = codegen.rotate_code_key(session, runtime=runtime, tenant_id=brand.tenant_id)
        new_batch = codegen.create_batch(
            session,
            runtime=runtime,
            tenant_id=brand.tenant_id,
            product_id=brand.product_id,
            lot="L2",
            quantity=10,
        )
        assert new_batch.key_id == new_key != old_key
    new_url = _first_code(runtime, new_batch.id, brand.tenant_id)
    assert isinstance(codegen.verify(runtime, old_url), VerifiedCode)
    assert isinstance(codegen.verify(runtime, new_url), VerifiedCode)
    with runtime.db.unit_of_work() as session:
        revoked = codegen.retire_code_key(
            session,
            runtime=runtime,
            tenant_id=brand.tenant_id,
            key_id=old_key,
            reason="leaked from printer",
        )
        assert revoked == 1
        assert (
            codegen.get_batch_or_raise(
                session, tenant_id=brand.tenant_id, batch_id=brand.batch_id
            ).status
            == "revoked"
        )
    assert codegen.verify(runtime, old_url) == InvalidToken("retired_key")
    assert isinstance(codegen.verify(runtime, new_url), VerifiedCode)


def test_issuing_a_million_codes_adds_no_per_code_rows(runtime: Runtime) -> None:
    """Issuing is stateless: rows grow with batches and jobs, never with codes."""

    def rows_added(quantity: int, lot: str) -> int:
        with runtime.db.unit_of_work() as session:
            before = count_rows(session)
            batch = codegen.create_batch(
                session,
                runtime=runtime,
                tenant_id=tenant_id,
                product_id=product_id,
                lot=lot,
                quantity=quantity,
            )
            codegen.create_export(
                session,
                runtime=runtime,
                tenant_id=tenant_id,
                batch_id=batch.id,
                fmt="txt",
                actor="test",
            )
        with runtime.db.unit_of_work() as session:
            export = codegen.list_batches(session, tenant_id=tenant_id, lot=lot)[0]
            assert export.quantity == quantity
            return count_rows(session) - before

    from core.runtime import Runtime as _Runtime
    from tests.conftest import make_settings

    big = _Runtime(
        make_settings(
            runtime.settings.resolved_database_url,
            runtime.settings.data_dir,
            export_chunk_size=1_000_000,
        )
    )
    try:
        with big.db.unit_of_work() as session:
            brand = make_brand(session, big, quantity=1)
            tenant_id, product_id = brand.tenant_id, brand.product_id
        runtime = big
        small = rows_added(1_000, "SMALL")
        large = rows_added(1_000_000, "LARGE")
    finally:
        big.close()
    # A batch row, an export row, one chunk row and one audit entry, whatever the quantity.
    assert small == large == 4


@pytest.mark.skipif(not REDIS_URL, reason="set YIMA_TEST_REDIS_URL: processes share key changes")
def test_another_process_sees_a_new_key_within_a_second(runtime: Runtime) -> None:
    """Two runtimes stand for two processes; the second learns of the first's new key from
    Redis, without any scan reloading the ring."""
    import time

    from tests.conftest import make_settings

    def with_redis() -> Runtime:
        return Runtime(
            make_settings(
                runtime.settings.resolved_database_url,
                runtime.settings.data_dir,
                redis_url=REDIS_URL,
            )
        )

    issuer, scanner = with_redis(), with_redis()
    try:
        codegen.key_ring_cache(scanner).ring()  # the scanner holds a ring without the new key
        with issuer.db.unit_of_work() as session:
            brand = make_brand(session, issuer)
        url = _first_code(issuer, brand.batch_id, brand.tenant_id)
        deadline = time.monotonic() + 5
        while not isinstance(codegen.verify(scanner, url), VerifiedCode):
            assert time.monotonic() < deadline, "the new key never reached the other process"
            time.sleep(0.1)
    finally:
        issuer.close()
        scanner.close()
