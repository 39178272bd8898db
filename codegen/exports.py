"""Print-file exports: a generation job split into idempotent chunks.

``create_export`` records the job and one row per chunk, then (after commit) sends one task per
chunk. A chunk writes its part file to a temporary name and renames it into place, so running
it twice (a redelivered task, a resumed job) writes the same bytes again; it is marked done by
a guarded UPDATE and counted by an atomic increment, and whoever counts the last chunk sends
the assembly task. Assembly concatenates (TXT/CSV) or merges (ZIP/PDF) the parts in constant
memory, optionally seals them in an AES-256 ZIP with a password, and records the file by a
guarded UPDATE so that of two concurrent assemblers exactly one file wins. ``resume_exports``
re-sends whatever a killed worker left unfinished.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import secrets
import shutil
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from codegen.errors import BatchRevokedError, ExportNotFoundError, ExportNotReadyError
from codegen.models import EXPORT_FORMATS, Batch, Export, ExportChunk, Product
from codegen.print_files import lines
from codegen.print_files.images import StreamingZip, write_png_zip, write_svg_zip
from codegen.print_files.pdf import LabelSheet, write_pdf_labels
from codegen.print_files.qr import QrSpec, choose_spec
from codegen.services import get_batch_or_raise, key_material
from codegen.tokens import (
    gs1_url,
    mint_gs1_serial,
    mint_gs1_serial_array,
    mint_short,
    mint_short_array,
    short_url,
    sign_gs1,
)
from core import services as core_services
from core.db import utcnow
from core.errors import ValidationFailedError
from core.keyring import unwrap_secret, wrap_secret
from core.models import Tenant
from core.runtime import Runtime

# Codes per chunk for the slower formats: a chunk is a task of tens of seconds at most.
IMAGE_CHUNK = 50_000
PDF_CHUNK = 10_000
# Codes minted and written per step: bounds the memory of a chunk task (~50 MB for CSV).
WRITE_BLOCK = 131_072
PASSWORD_KEY_ID = 0  # associated-data slot for wrapped pack passwords

EXTENSIONS = {"txt": "txt", "csv": "csv", "png-zip": "zip", "svg-zip": "zip", "pdf": "pdf"}
SEALED_SUFFIX = ".sealed.zip"


def export_file_name(
    sku: str, lot: str, first: int, last: int, fmt: str, chunks: int, *, sealed: bool
) -> str:
    """The download name: a ZIP for images and for PDFs of several sheets files."""
    ext = "zip" if fmt == "pdf" and chunks > 1 else EXTENSIONS[fmt]
    name = f"{sku}-{lot}-{first}-{last}.{ext}".replace("/", "_")
    return name + SEALED_SUFFIX if sealed else name


def _validate_options(fmt: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options a format takes, with defaults filled in; field errors for the rest."""
    allowed: dict[str, Any] = {}
    if fmt in ("png-zip", "svg-zip", "pdf"):
        allowed = {"error_correction": "M"}
        if fmt == "pdf":
            allowed.update({f.name: None for f in dataclasses.fields(LabelSheet)})
        else:
            allowed.update({"module_px": 4, "quiet_zone": 4})
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValidationFailedError(
            f"format {fmt} takes no option {unknown[0]!r}",
            errors={f"options.{name}": "unknown option" for name in unknown},
        )
    merged = {k: v for k, v in allowed.items() if v is not None}
    merged.update({k: v for k, v in options.items() if v is not None})
    if merged.get("error_correction", "M") not in ("L", "M", "Q", "H"):
        raise ValidationFailedError.field("options.error_correction", "must be L, M, Q or H")
    for name, low, high in (("module_px", 1, 50), ("quiet_zone", 0, 20)):
        if name in merged:
            value = merged[name]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValidationFailedError.field(
                    f"options.{name}", f"must be a whole number from {low} to {high}"
                )
    if fmt == "pdf":
        _label_sheet(merged)
    return merged


def _label_sheet(options: dict[str, Any]) -> LabelSheet:
    sheet_args = {k: v for k, v in options.items() if k not in ("error_correction", "host")}
    try:
        return LabelSheet(**sheet_args)
    except (TypeError, ValueError) as exc:
        raise ValidationFailedError.field("options", str(exc)) from exc


def scan_host_for(session: Session, runtime: Runtime, tenant_id: int) -> str:
    tenant = session.get(Tenant, tenant_id)
    return tenant.scan_host if tenant and tenant.scan_host else runtime.settings.scan_host


def create_export(
    session: Session,
    *,
    runtime: Runtime,
    tenant_id: int,
    batch_id: int,
    fmt: str,
    actor: str,
    options: dict[str, Any] | None = None,
    password: str | None = None,
    first_serial: int | None = None,
    last_serial: int | None = None,
) -> Export:
    """Record a print-file job for serials first..last of a batch and queue its chunks."""
    from codegen import tasks  # the task module imports this one

    if fmt not in EXPORT_FORMATS:
        raise ValidationFailedError.field("format", f"must be one of {', '.join(EXPORT_FORMATS)}")
    batch = get_batch_or_raise(session, tenant_id=tenant_id, batch_id=batch_id)
    if batch.status != "active":
        raise BatchRevokedError(f"batch {batch.id} is revoked: {batch.revoked_reason}")
    first = 1 if first_serial is None else first_serial
    last = batch.quantity if last_serial is None else last_serial
    if not 1 <= first <= batch.quantity:
        raise ValidationFailedError.field("first_serial", f"must be within 1..{batch.quantity}")
    if not first <= last <= batch.quantity:
        raise ValidationFailedError.field(
            "last_serial", f"must be within {first}..{batch.quantity}"
        )
    if password is not None and len(password) < 8:
        raise ValidationFailedError.field("password", "must have at least 8 characters")
    opts = _validate_options(fmt, dict(options or {}))
    opts["host"] = scan_host_for(session, runtime, tenant_id)
    product = session.get(Product, batch.product_id)
    assert product is not None
    if fmt == "pdf":
        spec = choose_spec(
            _url_for(runtime, batch, product.gtin, opts["host"], 1, session),
            error_correction=opts.get("error_correction", "M"),
        )
        try:
            _label_sheet(opts).check_fits(spec)
        except ValueError as exc:
            raise ValidationFailedError.field("options", str(exc)) from exc
    size = min(
        runtime.settings.export_chunk_size,
        {"png-zip": IMAGE_CHUNK, "svg-zip": IMAGE_CHUNK, "pdf": PDF_CHUNK}.get(fmt, 1 << 62),
    )
    total = last - first + 1
    chunks = math.ceil(total / size)
    export = Export(
        tenant_id=tenant_id,
        batch_id=batch.id,
        format=fmt,
        options=opts,
        first_serial=first,
        last_serial=last,
        chunk_size=size,
        chunks_total=chunks,
        chunks_done=0,
        status="running",
        encrypted=password is not None,
        created_by=actor,
        file_name=export_file_name(
            product.sku, batch.lot, first, last, fmt, chunks, sealed=password is not None
        ),
    )
    session.add(export)
    session.flush()
    if password is not None:
        export.wrapped_password = wrap_secret(
            runtime.settings.master_key_bytes,
            key_id=PASSWORD_KEY_ID,
            tenant_id=export.id,
            secret=password.encode(),
        )
    session.execute(
        insert(ExportChunk),
        [
            {
                "export_id": export.id,
                "index": i,
                "first_serial": first + i * size,
                "last_serial": min(last, first + (i + 1) * size - 1),
                "status": "pending",
                "attempts": 0,
            }
            for i in range(chunks)
        ],
    )
    core_services.record_audit(
        session,
        tenant_id=tenant_id,
        actor=actor,
        action="export.create",
        target_type="batch",
        target_id=batch.id,
        detail={
            "export_id": export.id,
            "format": fmt,
            "first_serial": first,
            "last_serial": last,
            "encrypted": export.encrypted,
        },
    )
    session.flush()
    for i in range(chunks):
        tasks.dispatch_chunk(session, export.id, i)
    return export


def get_export_or_raise(session: Session, *, tenant_id: int, export_id: int) -> Export:
    export = session.get(Export, export_id)
    if export is None or export.tenant_id != tenant_id:
        raise ExportNotFoundError(f"no export {export_id} in this tenant")
    return export


def list_exports(
    session: Session,
    *,
    tenant_id: int,
    after_id: int = 0,
    limit: int = 50,
    batch_id: int | None = None,
    status: str | None = None,
) -> Sequence[Export]:
    stmt = select(Export).where(Export.tenant_id == tenant_id, Export.id > after_id)
    if batch_id is not None:
        stmt = stmt.where(Export.batch_id == batch_id)
    if status:
        stmt = stmt.where(Export.status == status)
    return session.scalars(stmt.order_by(Export.id).limit(limit)).all()


# --- chunk work -----------------------------------------------------------------------------


def _export_dir(runtime: Runtime, export_id: int) -> Path:
    return runtime.settings.export_dir / str(export_id)


def _part_path(runtime: Runtime, export_id: int, index: int) -> Path:
    return _export_dir(runtime, export_id) / f"part-{index:06d}"


def _qr_spec(host: str, export: Export, batch: Batch, gtin: str | None, runtime: Runtime) -> QrSpec:
    sample = _url_for(runtime, batch, gtin, host, 1)
    return choose_spec(sample, error_correction=export.options.get("error_correction", "M"))


def _url_for(
    runtime: Runtime,
    batch: Batch,
    gtin: str | None,
    host: str,
    serial: int,
    session: Session | None = None,
) -> str:
    key = key_material(runtime, batch.key_id, session)
    if batch.url_form == "short":
        return short_url(host, mint_short(key, batch.id, serial))
    assert gtin is not None
    code = mint_gs1_serial(key, batch.id, serial, gtin, batch.lot)
    sig = sign_gs1(key, gtin, batch.lot, code) if batch.url_form == "gs1-digsig" else None
    return gs1_url(host, gtin, batch.lot, code, sig)


def _iter_codes(
    runtime: Runtime, batch: Batch, gtin: str | None, host: str, first: int, last: int
) -> Iterator[tuple[int, str, str]]:
    """(serial, code, url) for serials first..last, minted a block at a time."""
    key = key_material(runtime, batch.key_id)
    block = 65_536
    for start in range(first, last + 1, block):
        stop = min(last, start + block - 1)
        serials = np.arange(start, stop + 1, dtype=np.uint64)
        if batch.url_form == "short":
            tokens = mint_short_array(key, batch.id, serials)
            for serial, raw in zip(range(start, stop + 1), tokens, strict=True):
                token = raw.tobytes().decode()
                yield serial, token, short_url(host, token)
        else:
            assert gtin is not None
            codes = mint_gs1_serial_array(key, batch.id, serials, gtin, batch.lot)
            for serial, raw in zip(range(start, stop + 1), codes, strict=True):
                code = raw.tobytes().decode()
                sig = (
                    sign_gs1(key, gtin, batch.lot, code) if batch.url_form == "gs1-digsig" else None
                )
                yield serial, code, gs1_url(host, gtin, batch.lot, code, sig)


def write_codes(
    runtime: Runtime,
    out: IO[bytes],
    *,
    export: Export,
    batch: Batch,
    gtin: str | None,
    first: int,
    last: int,
) -> None:
    """Write serials first..last of ``export`` in its format to ``out`` (one part)."""
    host = export.options["host"]
    fmt = export.format
    if fmt in ("txt", "csv") and batch.url_form == "short":
        key = key_material(runtime, batch.key_id)
        prefix = short_url(host, "").encode()
        for serials, tokens in lines.iter_short_chunks(key, batch.id, first, last, WRITE_BLOCK):
            if fmt == "txt":
                lines.write_txt(out, prefix, tokens)
            else:
                lines.write_csv(
                    out, serials, tokens, prefix, str(batch.id).encode(), batch.lot.encode()
                )
        return
    codes = _iter_codes(runtime, batch, gtin, host, first, last)
    if fmt == "txt":
        for _serial, _code, url in codes:
            out.write(url.encode() + b"\n")
    elif fmt == "csv":
        for serial, code, url in codes:
            out.write(f"{serial},{code},{url},{batch.id},{batch.lot}\n".encode())
    elif fmt in ("png-zip", "svg-zip"):
        spec = _qr_spec(host, export, batch, gtin, runtime)
        ext = "png" if fmt == "png-zip" else "svg"
        items = ((f"{serial:09d}_{code}.{ext}", url) for serial, code, url in codes)
        writer = write_png_zip if fmt == "png-zip" else write_svg_zip
        writer(
            out,
            items,
            spec,
            module_px=export.options["module_px"],
            quiet_zone=export.options["quiet_zone"],
        )
    else:
        spec = _qr_spec(host, export, batch, gtin, runtime)
        write_pdf_labels(
            out, ((url, code) for _s, code, url in codes), spec, _label_sheet(export.options)
        )


def run_chunk(runtime: Runtime, export_id: int, index: int) -> bool:
    """Produce one chunk's part file; True when this call finished the chunk.

    Safe to run any number of times, concurrently too: the part is written to a private
    temporary name and renamed, the chunk is marked done once by a guarded UPDATE.
    """
    from codegen import tasks

    with runtime.db.unit_of_work() as session:
        export = session.get(Export, export_id)
        chunk = session.get(ExportChunk, (export_id, index))
        if export is None or chunk is None or chunk.status == "done":
            return False
        if export.status not in ("running",):
            return False
        batch = session.get(Batch, export.batch_id)
        assert batch is not None
        product = session.get(Product, batch.product_id)
        gtin = product.gtin if product else None
        session.execute(
            update(ExportChunk)
            .where(ExportChunk.export_id == export_id, ExportChunk.index == index)
            .values(attempts=ExportChunk.attempts + 1)
        )
        session.expunge_all()
    part = _part_path(runtime, export_id, index)
    part.parent.mkdir(parents=True, exist_ok=True)
    tmp = part.with_name(f"{part.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as out:
            write_codes(
                runtime,
                out,
                export=export,
                batch=batch,
                gtin=gtin,
                first=chunk.first_serial,
                last=chunk.last_serial,
            )
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, part)
    except Exception as exc:
        _record_failure(runtime, export_id, chunk.attempts + 1, f"chunk {index}: {exc!r}")
        raise
    finally:
        tmp.unlink(missing_ok=True)
    with runtime.db.unit_of_work() as session:
        marked = session.execute(
            update(ExportChunk)
            .where(
                ExportChunk.export_id == export_id,
                ExportChunk.index == index,
                ExportChunk.status == "pending",
            )
            .values(status="done", done_at=utcnow())
        ).rowcount  # type: ignore[attr-defined]
        if not marked:
            return False
        done = session.execute(
            update(Export)
            .where(Export.id == export_id)
            .values(chunks_done=Export.chunks_done + 1)
            .returning(Export.chunks_done, Export.chunks_total)
        ).one()
        if done[0] == done[1]:
            tasks.dispatch_assemble(session, export_id)
    return True


MAX_ATTEMPTS = 5


def _record_failure(runtime: Runtime, export_id: int, attempts: int, error: str) -> None:
    """Keep the error on the export; after MAX_ATTEMPTS tries of a chunk the job fails."""
    with runtime.db.unit_of_work() as session:
        values: dict[str, Any] = {"error": error[:2000]}
        if attempts >= MAX_ATTEMPTS:
            values["status"] = "failed"
        session.execute(update(Export).where(Export.id == export_id).values(**values))


# --- assembly -------------------------------------------------------------------------------


def _merge_zip_parts(parts: list[Path], out: IO[bytes]) -> None:
    """One ZIP of every member of the part ZIPs, in order, in constant memory."""
    merged = StreamingZip(out)
    for part in parts:
        with zipfile.ZipFile(part) as pack:
            for info in pack.infolist():
                merged.add(
                    info.filename,
                    pack.read(info),
                    deflate=info.compress_type == zipfile.ZIP_DEFLATED,
                )
    merged.close()


def _zip_of_files(parts: list[Path], names: list[str], out: IO[bytes]) -> None:
    pack = StreamingZip(out)
    for part, name in zip(parts, names, strict=True):
        pack.add(name, part.read_bytes(), deflate=False)
    pack.close()


def _write_print_file(export: Export, parts: list[Path], out: IO[bytes]) -> None:
    """The print file from its parts: joined text, merged images, or the sheet PDF(s)."""
    if export.format in ("txt", "csv"):
        if export.format == "csv":
            lines.write_csv_header(out)
        for part in parts:
            with open(part, "rb") as reader:
                shutil.copyfileobj(reader, out, 1 << 20)
    elif export.format in ("png-zip", "svg-zip"):
        _merge_zip_parts(parts, out)
    elif len(parts) == 1:
        with open(parts[0], "rb") as reader:
            shutil.copyfileobj(reader, out, 1 << 20)
    else:
        stem = _plain_name(export).removesuffix(".zip")
        _zip_of_files(parts, [f"{stem}-{i + 1:05d}.pdf" for i in range(len(parts))], out)


def _seal(plain: Path, inner_name: str, password: bytes, out_path: Path) -> None:
    """An AES-256 ZIP (WinZip AES, opens in 7-Zip and most archivers) holding the print file."""
    import pyzipper

    with pyzipper.AESZipFile(
        out_path,
        "w",
        compression=pyzipper.ZIP_DEFLATED,
        encryption=pyzipper.WZ_AES,
        allowZip64=True,
    ) as pack:
        pack.setpassword(password)
        pack.setencryption(pyzipper.WZ_AES, nbits=256)
        with open(plain, "rb") as reader, pack.open(inner_name, "w", force_zip64=True) as writer:
            shutil.copyfileobj(reader, writer, 1 << 20)


def _plain_name(export: Export) -> str:
    """The print file's name before sealing (``file_name`` without the sealing suffix)."""
    name = export.file_name or f"export-{export.id}"
    return name.removesuffix(SEALED_SUFFIX) if export.encrypted else name


def assemble(runtime: Runtime, export_id: int) -> bool:
    """Join the parts into the print file; True when this call sealed it."""
    with runtime.db.unit_of_work() as session:
        started = session.execute(
            update(Export)
            .where(
                Export.id == export_id,
                Export.status.in_(("running", "assembling")),
                Export.chunks_done == Export.chunks_total,
            )
            .values(status="assembling")
        ).rowcount  # type: ignore[attr-defined]
        if not started:
            return False
        export = session.get(Export, export_id)
        assert export is not None
        password = None
        if export.wrapped_password:
            password = unwrap_secret(
                runtime.settings.master_key_bytes,
                key_id=PASSWORD_KEY_ID,
                tenant_id=export.id,
                wrapped=export.wrapped_password,
            )
        session.expunge_all()
    folder = _export_dir(runtime, export_id)
    parts = [_part_path(runtime, export_id, i) for i in range(export.chunks_total)]
    # Each attempt writes its own file; the guarded UPDATE below picks the one that counts.
    final = folder / f"{secrets.token_hex(4)}-{export.file_name}"
    plain = final.with_name(final.name + ".plain")
    try:
        with open(plain, "wb") as out:
            _write_print_file(export, parts, out)
        if password is not None:
            _seal(plain, _plain_name(export), password, final)
        else:
            os.replace(plain, final)
    except FileNotFoundError:
        # Parts are deleted only after a file was sealed: a concurrent assembler finished first.
        if _status(runtime, export_id) == "done":
            return False
        raise
    finally:
        plain.unlink(missing_ok=True)
    digest, size = _digest(final)
    with runtime.db.unit_of_work() as session:
        sealed = session.execute(
            update(Export)
            .where(Export.id == export_id, Export.status == "assembling")
            .values(
                status="done",
                file_size=size,
                sha256=digest,
                wrapped_password=None,
                storage_path=str(final.relative_to(runtime.settings.export_dir)),
                finished_at=utcnow(),
            )
        ).rowcount  # type: ignore[attr-defined]
    if not sealed:
        final.unlink(missing_ok=True)  # another assembler won; keep only its file
        return False
    for part in parts:
        part.unlink(missing_ok=True)
    return True


def _status(runtime: Runtime, export_id: int) -> str | None:
    with runtime.db.read_only() as session:
        return session.scalar(select(Export.status).where(Export.id == export_id))


def _digest(path: Path) -> tuple[str, int]:
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            sha.update(block)
            size += len(block)
    return sha.hexdigest(), size


# --- resume and download -------------------------------------------------------------------


def resume_exports(runtime: Runtime) -> int:
    """Re-send the unfinished chunks and assemblies of every open export; how many were sent.

    Called when a worker starts, every minute by beat, and by ``yima jobs resume``. Sending a
    chunk that a live worker is still running is harmless: chunks are idempotent.
    """
    from codegen import tasks

    sent = 0
    with runtime.db.unit_of_work() as session:
        open_exports = session.scalars(
            select(Export).where(Export.status.in_(("running", "assembling")))
        ).all()
        for export in open_exports:
            if export.chunks_done == export.chunks_total:
                tasks.dispatch_assemble(session, export.id)
                sent += 1
                continue
            pending = session.scalars(
                select(ExportChunk.index).where(
                    ExportChunk.export_id == export.id, ExportChunk.status == "pending"
                )
            ).all()
            for index in pending:
                tasks.dispatch_chunk(session, export.id, index)
                sent += 1
    return sent


def export_progress(session: Session, export_id: int) -> tuple[int, int]:
    row = session.execute(
        select(Export.chunks_done, Export.chunks_total).where(Export.id == export_id)
    ).one()
    return int(row[0]), int(row[1])


def open_export_file(
    session: Session,
    *,
    runtime: Runtime,
    tenant_id: int,
    export_id: int,
    actor: str,
    ip: str | None = None,
) -> tuple[Export, Path]:
    """The sealed file of an export, with the download written to the audit log."""
    export = get_export_or_raise(session, tenant_id=tenant_id, export_id=export_id)
    if export.status != "done" or not export.storage_path:
        raise ExportNotReadyError(
            f"export {export_id} is {export.status} ({export.chunks_done}/"
            f"{export.chunks_total} chunks); download it when it is done"
        )
    core_services.record_audit(
        session,
        tenant_id=tenant_id,
        actor=actor,
        action="export.download",
        target_type="export",
        target_id=export.id,
        detail={
            "batch_id": export.batch_id,
            "format": export.format,
            "codes": export.last_serial - export.first_serial + 1,
            "sha256": export.sha256,
            "encrypted": export.encrypted,
        },
        ip=ip,
    )
    return export, runtime.settings.export_dir / export.storage_path
