"""Print-file jobs end to end: every format, chunked, idempotent, sealed, audited."""

from __future__ import annotations

import csv
import io
import threading
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select

import codegen
from codegen import exports
from codegen.models import Export, ExportChunk
from codegen.tokens import VerifiedCode
from core.errors import ValidationFailedError
from core.models import AuditEntry
from core.runtime import Runtime
from tests.decoding import decode_pdf, decode_png
from tests.factories import Brand, make_brand


def _brand(runtime: Runtime, **kwargs: object) -> Brand:
    with runtime.db.unit_of_work() as session:
        return make_brand(session, runtime, **kwargs)  # type: ignore[arg-type]


def _export(runtime: Runtime, brand: Brand, fmt: str, **kwargs: object) -> int:
    with runtime.db.unit_of_work() as session:
        export = codegen.create_export(
            session,
            runtime=runtime,
            tenant_id=brand.tenant_id,
            batch_id=brand.batch_id,
            fmt=fmt,
            actor="test",
            **kwargs,
        )  # type: ignore[arg-type]
        return export.id


def _file(runtime: Runtime, brand: Brand, export_id: int) -> tuple[Export, bytes]:
    with runtime.db.unit_of_work() as session:
        export, path = codegen.open_export_file(
            session, runtime=runtime, tenant_id=brand.tenant_id, export_id=export_id, actor="test"
        )
        return export, Path(path).read_bytes()


def _expected_urls(runtime: Runtime, brand: Brand, serials: range) -> list[str]:
    with runtime.db.unit_of_work() as session:
        batch = codegen.get_batch_or_raise(
            session, tenant_id=brand.tenant_id, batch_id=brand.batch_id
        )
        product = codegen.get_product_or_raise(
            session, tenant_id=brand.tenant_id, product_id=batch.product_id
        )
        return [
            codegen.code_for_serial(
                runtime, batch=batch, gtin=product.gtin, serial=s, host="yima.example.com"
            ).url
            for s in serials
        ]


def test_txt_lists_every_url_once_across_chunks(runtime: Runtime) -> None:
    brand = _brand(runtime, quantity=2500)
    export, data = _file(runtime, brand, _export(runtime, brand, "txt"))
    assert export.chunks_total == 3 and export.status == "done"
    lines = data.decode().splitlines()
    assert lines == _expected_urls(runtime, brand, range(1, 2501))
    assert len(set(lines)) == 2500
    assert all(isinstance(codegen.verify(runtime, u), VerifiedCode) for u in lines[::97])


@pytest.mark.parametrize("url_form", ["short", "gs1-digsig"])
def test_csv_has_header_and_one_row_per_serial(runtime: Runtime, url_form: str) -> None:
    brand = _brand(runtime, quantity=1500, url_form=url_form)
    _, data = _file(
        runtime, brand, _export(runtime, brand, "csv", first_serial=11, last_serial=1400)
    )
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    assert rows[0] == ["serial", "code", "url", "batch", "lot"]
    assert [int(r[0]) for r in rows[1:]] == list(range(11, 1401))
    assert [r[2] for r in rows[1:]] == _expected_urls(runtime, brand, range(11, 1401))
    assert {r[4] for r in rows[1:]} == {"L2026A"}
    assert all(r[2].endswith(r[1]) or f"/21/{r[1]}" in r[2] for r in rows[1:])


def test_png_zip_images_decode_to_their_urls(runtime: Runtime) -> None:
    brand = _brand(runtime, quantity=1200)
    _, data = _file(
        runtime,
        brand,
        _export(runtime, brand, "png-zip", options={"module_px": 3, "quiet_zone": 4}),
    )
    expected = _expected_urls(runtime, brand, range(1, 1201))
    with zipfile.ZipFile(io.BytesIO(data)) as pack:
        names = pack.namelist()
        assert len(names) == 1200 and len(set(names)) == 1200
        for name in names[::40]:
            serial = int(name.split("_")[0])
            assert decode_png(pack.read(name)) == [expected[serial - 1]]


def test_svg_zip_holds_one_svg_per_code(runtime: Runtime) -> None:
    brand = _brand(runtime, quantity=1001, url_form="gs1")
    _, data = _file(runtime, brand, _export(runtime, brand, "svg-zip"))
    with zipfile.ZipFile(io.BytesIO(data)) as pack:
        names = pack.namelist()
        assert len(names) == 1001
        assert pack.read(names[0]).startswith(b"<svg") or b"<svg" in pack.read(names[0])[:200]


def test_pdf_label_sheets_decode_to_their_urls(runtime: Runtime) -> None:
    brand = _brand(runtime, quantity=130)
    export, data = _file(runtime, brand, _export(runtime, brand, "pdf"))
    assert export.file_name is not None and export.file_name.endswith(".pdf")
    pages = decode_pdf(data)
    assert len(pages) == 2  # 65 labels a sheet
    assert sorted(u for page in pages for u in page) == sorted(
        _expected_urls(runtime, brand, range(1, 131))
    )


def test_multi_chunk_pdf_comes_as_a_zip_of_sheets(runtime: Runtime) -> None:
    brand = _brand(runtime, quantity=1010)
    export, data = _file(
        runtime, brand, _export(runtime, brand, "pdf", first_serial=1, last_serial=1010)
    )
    assert export.chunks_total == 2 and (export.file_name or "").endswith(".zip")
    with zipfile.ZipFile(io.BytesIO(data)) as pack:
        assert len(pack.namelist()) == 2
        last = decode_pdf(pack.read(pack.namelist()[1]))
    assert sorted(u for page in last for u in page) == sorted(
        _expected_urls(runtime, brand, range(1001, 1011))
    )


def test_password_pack_opens_only_with_the_password(runtime: Runtime) -> None:
    import pyzipper

    brand = _brand(runtime, quantity=50)
    export, data = _file(runtime, brand, _export(runtime, brand, "txt", password="s3cret-pack"))
    assert export.encrypted and (export.file_name or "").endswith(".txt.sealed.zip")
    with pyzipper.AESZipFile(io.BytesIO(data)) as pack:
        name = pack.namelist()[0]
        with pytest.raises(RuntimeError):
            pack.read(name)  # no password
        pack.setpassword(b"wrong-password")
        with pytest.raises(RuntimeError):
            pack.read(name)
        pack.setpassword(b"s3cret-pack")
        assert pack.read(name).decode().splitlines() == _expected_urls(runtime, brand, range(1, 51))
    # The password is erased once the pack is sealed.
    with runtime.db.unit_of_work() as session:
        assert session.get(Export, export.id).wrapped_password is None  # type: ignore[union-attr]


def test_every_download_is_audited(runtime: Runtime) -> None:
    brand = _brand(runtime, quantity=10)
    export_id = _export(runtime, brand, "txt")
    _file(runtime, brand, export_id)
    _file(runtime, brand, export_id)
    with runtime.db.unit_of_work() as session:
        actions = session.scalars(
            select(AuditEntry.action).where(
                AuditEntry.target_id == str(export_id), AuditEntry.target_type == "export"
            )
        ).all()
    assert actions == ["export.download", "export.download"]


@pytest.mark.parametrize(
    ("fmt", "kwargs", "field"),
    [
        ("txt", {"first_serial": 0}, "first_serial"),
        ("txt", {"first_serial": 5, "last_serial": 4}, "last_serial"),
        ("txt", {"last_serial": 2501}, "last_serial"),
        ("png-zip", {"options": {"module_px": 0}}, "options.module_px"),
        ("png-zip", {"options": {"dpi": 300}}, "options.dpi"),
        ("txt", {"password": "short"}, "password"),
        ("pdf", {"options": {"qr_size_mm": 500}}, "options"),
        ("docx", {}, "format"),
    ],
)
def test_bad_export_requests_name_the_field_and_leave_nothing(
    runtime: Runtime, fmt: str, kwargs: dict[str, object], field: str
) -> None:
    brand = _brand(runtime, quantity=2500)
    with pytest.raises(ValidationFailedError) as bad, runtime.db.unit_of_work() as session:
        codegen.create_export(
            session,
            runtime=runtime,
            tenant_id=brand.tenant_id,
            batch_id=brand.batch_id,
            fmt=fmt,
            actor="test",
            **kwargs,
        )  # type: ignore[arg-type]
    assert field in bad.value.errors
    with runtime.db.unit_of_work() as session:
        assert session.scalars(select(Export)).all() == []
        assert session.scalars(select(ExportChunk)).all() == []


def _record_without_running(runtime: Runtime, brand: Brand, fmt: str) -> int:
    """An export whose chunk tasks were never sent: as if every worker died at once."""
    with runtime.db.unit_of_work() as session:
        export = codegen.create_export(
            session,
            runtime=runtime,
            tenant_id=brand.tenant_id,
            batch_id=brand.batch_id,
            fmt=fmt,
            actor="test",
        )
        session.info.clear()  # drop the after-commit dispatches
        return export.id


@pytest.mark.parametrize("fmt", ["csv", "png-zip", "pdf"])
def test_a_chunk_written_twice_gives_the_same_bytes(runtime: Runtime, fmt: str) -> None:
    brand = _brand(runtime, quantity=40)
    export_id = _record_without_running(runtime, brand, fmt)
    with runtime.db.unit_of_work() as session:
        export = session.get(Export, export_id)
        batch = codegen.get_batch_or_raise(
            session, tenant_id=brand.tenant_id, batch_id=brand.batch_id
        )
        session.expunge_all()
    outputs = []
    for _ in range(2):
        out = io.BytesIO()
        exports.write_codes(
            runtime,
            out,
            export=export,
            batch=batch,  # type: ignore[arg-type]
            gtin="06901234567892",
            first=1,
            last=40,
        )
        outputs.append(out.getvalue())
    assert outputs[0] == outputs[1] and len(outputs[0]) > 0


def test_a_job_left_by_dead_workers_resumes_to_a_complete_file(runtime: Runtime) -> None:
    brand = _brand(runtime, quantity=3000)
    export_id = _record_without_running(runtime, brand, "csv")
    _run_without_dispatch(runtime, export_id, [1])
    assert exports.run_chunk(runtime, export_id, 1) is False  # done already: nothing to do
    assert exports.resume_exports(runtime) == 2  # chunks 0 and 2; chunk 1 is done
    _, data = _file(runtime, brand, export_id)
    serials = [int(r.split(",")[0]) for r in data.decode().splitlines()[1:]]
    assert serials == list(range(1, 3001))


def test_concurrent_assemblers_leave_one_sealed_file(runtime: Runtime) -> None:
    brand = _brand(runtime, quantity=2000)
    export_id = _record_without_running(runtime, brand, "txt")
    _run_without_dispatch(runtime, export_id, [0, 1])
    results: list[bool | BaseException] = []

    def assemble() -> None:
        try:
            results.append(exports.assemble(runtime, export_id))
        except BaseException as exc:  # reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=assemble) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(repr, results)) == ["False", "False", "False", "True"]
    export, data = _file(runtime, brand, export_id)
    folder = runtime.settings.export_dir / str(export_id)
    assert [p.name for p in folder.iterdir()] == [Path(export.storage_path or "").name]
    assert len(data.decode().splitlines()) == 2000


def _run_without_dispatch(runtime: Runtime, export_id: int, indexes: list[int]) -> None:
    from codegen import tasks

    original = tasks.dispatch_assemble
    tasks.dispatch_assemble = lambda session, export_id: None  # type: ignore[assignment]
    try:
        for index in indexes:
            assert exports.run_chunk(runtime, export_id, index)
    finally:
        tasks.dispatch_assemble = original  # type: ignore[assignment]


def test_a_revoked_batch_cannot_be_exported(runtime: Runtime) -> None:
    from codegen.errors import BatchRevokedError

    brand = _brand(runtime, quantity=10)
    with runtime.db.unit_of_work() as session:
        key_id = codegen.get_batch_or_raise(
            session, tenant_id=brand.tenant_id, batch_id=brand.batch_id
        ).key_id
        codegen.retire_code_key(
            session,
            runtime=runtime,
            tenant_id=brand.tenant_id,
            key_id=key_id,
            reason="stolen plates",
        )
    with pytest.raises(BatchRevokedError), runtime.db.unit_of_work() as session:
        codegen.create_export(
            session,
            runtime=runtime,
            tenant_id=brand.tenant_id,
            batch_id=brand.batch_id,
            fmt="txt",
            actor="test",
        )
