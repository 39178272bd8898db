"""The ``yima`` command: set-up, codes, print files, keys, and running the platform.

Each command is one unit of work; errors are printed as ``error: <detail>`` with the field at
fault, and exit with status 2 (bad input) or 1 (anything else).
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy.orm import Session

import codegen
from core import services as core_services
from core.errors import ValidationFailedError, YimaError
from core.models import ROLES, Tenant
from core.runtime import Runtime, get_runtime
from yima.campaigns_cli import register as register_campaign_commands

F = TypeVar("F", bound=Callable[..., Any])
CLI_ACTOR = "cli"
ROW_ID = click.IntRange(1, 2**31 - 1)


def _runtime() -> Runtime:
    runtime = get_runtime()
    if runtime.db.is_sqlite:
        runtime.migrate()  # the embedded default keeps itself up to date
    return runtime


def handle_errors(command: F) -> F:
    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except YimaError as exc:
            click.secho(f"error: {exc.detail}", fg="red", err=True)
            for field, message in exc.errors.items():
                if f"{field}: {message}" != exc.detail:
                    click.secho(f"  {field}: {message}", fg="red", err=True)
            sys.exit(2 if exc.status < 500 else 1)

    return wrapper  # type: ignore[return-value]


@contextmanager
def unit_of_work() -> Iterator[tuple[Runtime, Session]]:
    runtime = _runtime()
    with runtime.db.unit_of_work() as session:
        yield runtime, session


def resolve_tenant(session: Session, slug: str | None) -> Tenant:
    if slug:
        return core_services.get_tenant_by_slug_or_raise(session, slug)
    tenants = core_services.list_tenants(session)
    if len(tenants) == 1:
        return tenants[0]
    raise ValidationFailedError.field(
        "tenant", f"name the tenant with --tenant (there are {len(tenants)})"
    )


tenant_option = click.option("--tenant", "tenant_slug", help="tenant slug (default: the only one)")


@click.group()
@click.version_option(package_name="yima")
def main() -> None:
    """Yima (一码): one-thing-one-code platform."""


# --- db, tenants, users, API keys ---------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration (SQLite or PostgreSQL, as YIMA_DATABASE_URL says)."""
    runtime = get_runtime()
    runtime.migrate()
    click.echo(f"database at the newest migration ({runtime.db.engine.dialect.name})")


@main.group()
def tenants() -> None:
    """Brands (tenants)."""


@tenants.command("create")
@click.argument("slug")
@click.option("--name", required=True)
@click.option("--scan-host", help="host printed in this brand's codes")
@handle_errors
def tenants_create(slug: str, name: str, scan_host: str | None) -> None:
    with unit_of_work() as (_r, session):
        tenant = core_services.create_tenant(session, slug=slug, name=name, scan_host=scan_host)
        click.echo(f"tenant {tenant.slug} created (id {tenant.id})")


@tenants.command("list")
def tenants_list() -> None:
    with unit_of_work() as (_r, session):
        for tenant in core_services.list_tenants(session):
            click.echo(f"{tenant.id}\t{tenant.slug}\t{tenant.name}\t{tenant.scan_host or ''}")


@main.group()
def users() -> None:
    """Console users."""


@users.command("create")
@click.option(
    "--brand", "--tenant", "tenant_slug", help="brand (tenant) slug (default: the only one)"
)
@click.option("--email", required=True)
@click.option("--role", required=True, type=click.Choice(list(ROLES)))
@click.option("--name", default="", help="the user's name as the console shows it")
@click.option("--distributor", "distributor_id", type=ROW_ID, help="for --role distributor")
@click.option(
    "--generate-password", is_flag=True, help="make a password and print it once (no prompt)"
)
@handle_errors
def users_create(
    tenant_slug: str | None,
    email: str,
    role: str,
    name: str,
    distributor_id: int | None,
    generate_password: bool,
) -> None:
    """Create a console user; asks for its password (or makes one with --generate-password)."""
    from core import accounts

    email = accounts.normalize_email(email)
    password = (
        accounts.temporary_password()
        if generate_password
        else click.prompt("Password", hide_input=True, confirmation_prompt=True)
    )
    with unit_of_work() as (_r, session):
        tenant = resolve_tenant(session, tenant_slug)
        if role == "distributor":
            import traceability

            if distributor_id is None or not traceability.get_distributor(
                session, tenant_id=tenant.id, distributor_id=distributor_id
            ):
                raise ValidationFailedError.field(
                    "distributor", "name one of the brand's distributors with --distributor ID"
                )
        user = core_services.create_user(
            session,
            tenant_id=tenant.id,
            email=email,
            role=role,
            password=password,
            name=name,
            distributor_id=distributor_id,
        )
        core_services.record_audit(
            session,
            tenant_id=tenant.id,
            actor=CLI_ACTOR,
            action="user.create",
            target_type="user",
            target_id=user.id,
            detail={"email": user.email, "role": role, "distributor_id": user.distributor_id},
        )
    click.echo(f"user {user.email} ({user.role}) created at {tenant.slug} (id {user.id})")
    if generate_password:
        click.echo(f"password (shown once): {password}")


@users.command("reset-password")
@click.option(
    "--brand", "--tenant", "tenant_slug", help="brand (tenant) slug (default: the only one)"
)
@click.option("--email", required=True)
@handle_errors
def users_reset_password(tenant_slug: str | None, email: str) -> None:
    """Give a user a new password, printed once (its console sessions end)."""
    from sqlalchemy import select

    from core import accounts
    from core.models import User

    email = accounts.normalize_email(email)
    password = accounts.temporary_password()
    with unit_of_work() as (_r, session):
        tenant = resolve_tenant(session, tenant_slug)
        user = session.scalar(select(User).where(User.tenant_id == tenant.id, User.email == email))
        if user is None:
            raise ValidationFailedError.field("email", f"no user {email} at {tenant.slug}")
        accounts.set_password(
            session, user=user, password=password, actor=CLI_ACTOR, action="user.password_reset"
        )
    click.echo(f"password of {email} (shown once): {password}")


@users.command("list")
@click.option(
    "--brand", "--tenant", "tenant_slug", help="brand (tenant) slug (default: the only one)"
)
@handle_errors
def users_list(tenant_slug: str | None) -> None:
    """The brand's console users: id, e-mail, role, two-step sign-in, status, last sign-in."""
    from core import accounts

    with unit_of_work() as (_r, session):
        tenant = resolve_tenant(session, tenant_slug)
        after = 0
        while True:
            page = accounts.list_users(session, tenant_id=tenant.id, after_id=after, limit=200)
            for user in page:
                role = user.role + (f":{user.distributor_id}" if user.distributor_id else "")
                seen = f"{user.last_sign_in_at:%Y-%m-%d %H:%M}" if user.last_sign_in_at else "never"
                click.echo(
                    f"{user.id}\t{user.email}\t{role}\t{'totp' if user.totp_enabled_at else '-'}"
                    f"\t{'disabled' if user.disabled_at else 'active'}\t{seen}"
                )
            if len(page) < 200:
                break
            after = page[-1].id


@main.group()
def apikeys() -> None:
    """API keys of the management API."""


@apikeys.command("create")
@tenant_option
@click.option("--name", required=True)
@click.option(
    "--role",
    default="admin",
    show_default=True,
    type=click.Choice(["admin", "factory_operator", "analyst", "distributor"]),
)
@handle_errors
def apikeys_create(tenant_slug: str | None, name: str, role: str) -> None:
    """Create an API key; its secret is printed once."""
    with unit_of_work() as (_r, session):
        tenant = resolve_tenant(session, tenant_slug)
        issued = core_services.create_api_key(session, tenant_id=tenant.id, name=name, role=role)
        core_services.record_audit(
            session,
            tenant_id=tenant.id,
            actor=CLI_ACTOR,
            action="apikey.create",
            target_type="api_key",
            target_id=issued.key.id,
            detail={"role": role},
        )
    click.echo(issued.token)


# --- products and batches -----------------------------------------------------------------


@main.group()
def products() -> None:
    """Products (SKU, GTIN)."""


@products.command("create")
@tenant_option
@click.option("--sku", required=True)
@click.option("--name", required=True)
@click.option("--gtin", help="GTIN-8/12/13/14; its check digit is validated")
@click.option("--spec", "specification", default="")
@click.option("--shelf-life-days", type=int)
@click.option("--image-url")
@handle_errors
def products_create(tenant_slug: str | None, **fields: Any) -> None:
    with unit_of_work() as (_r, session):
        tenant = resolve_tenant(session, tenant_slug)
        product = codegen.create_product(session, tenant_id=tenant.id, **fields)
        click.echo(f"product {product.id} {product.sku} {product.gtin or ''}".rstrip())


@products.command("list")
@tenant_option
@handle_errors
def products_list(tenant_slug: str | None) -> None:
    with unit_of_work() as (_r, session):
        tenant = resolve_tenant(session, tenant_slug)
        after = 0
        while page := list(
            codegen.list_products(session, tenant_id=tenant.id, after_id=after, limit=200)
        ):
            for p in page:
                click.echo(f"{p.id}\t{p.sku}\t{p.gtin or '-'}\t{p.name}")
            after = page[-1].id


@main.group()
def batches() -> None:
    """Batches and their print files."""


@batches.command("create")
@tenant_option
@click.option("--sku", help="product SKU")
@click.option("--product-id", type=ROW_ID)
@click.option("--lot", required=True)
@click.option("--quantity", required=True, type=int)
@click.option(
    "--form",
    "url_form",
    default="short",
    show_default=True,
    type=click.Choice(["short", "gs1", "gs1-digsig"]),
)
@click.option("--production-date", type=click.DateTime(["%Y-%m-%d"]))
@click.option("--factory", default="")
@click.option("--line", default="")
@handle_errors
def batches_create(
    tenant_slug: str | None,
    sku: str | None,
    product_id: int | None,
    production_date: dt.datetime | None,
    **fields: Any,
) -> None:
    """Create a batch: its codes exist from now on (one row, no per-code rows)."""
    with unit_of_work() as (runtime, session):
        tenant = resolve_tenant(session, tenant_slug)
        if product_id is None:
            if not sku:
                raise ValidationFailedError.field("sku", "give --sku or --product-id")
            product_id = codegen.get_product_by_sku_or_raise(
                session, tenant_id=tenant.id, sku=sku
            ).id
        batch = codegen.create_batch(
            session,
            runtime=runtime,
            tenant_id=tenant.id,
            product_id=product_id,
            production_date=production_date.date() if production_date else None,
            **fields,
        )
        core_services.record_audit(
            session,
            tenant_id=tenant.id,
            actor=CLI_ACTOR,
            action="batch.create",
            target_type="batch",
            target_id=batch.id,
            detail={"quantity": batch.quantity},
        )
        click.echo(
            f"batch {batch.id} lot {batch.lot}: {batch.quantity:,} {batch.url_form} codes"
            f" (key {batch.key_id})"
        )


@batches.command("list")
@tenant_option
@handle_errors
def batches_list(tenant_slug: str | None) -> None:
    with unit_of_work() as (_r, session):
        tenant = resolve_tenant(session, tenant_slug)
        after = 0
        while page := list(
            codegen.list_batches(session, tenant_id=tenant.id, after_id=after, limit=200)
        ):
            for b in page:
                click.echo(f"{b.id}\t{b.lot}\t{b.quantity}\t{b.url_form}\t{b.status}")
            after = page[-1].id


@batches.command("export")
@tenant_option
@click.argument("batch_id", type=ROW_ID)
@click.option(
    "--format", "fmt", required=True, type=click.Choice(["txt", "csv", "png-zip", "svg-zip", "pdf"])
)
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--first", "first_serial", type=int)
@click.option("--last", "last_serial", type=int)
@click.option("--password", help="seal the pack in an AES-256 ZIP with this password")
@click.option("--module-px", type=int)
@click.option("--quiet-zone", type=int)
@click.option("--error-correction", type=click.Choice(["L", "M", "Q", "H"]))
@handle_errors
def batches_export(
    tenant_slug: str | None,
    batch_id: int,
    fmt: str,
    out_path: Path,
    first_serial: int | None,
    last_serial: int | None,
    password: str | None,
    **options: Any,
) -> None:
    """Generate a print file (chunked job; progress shown) and copy it to --out."""
    options = {k: v for k, v in options.items() if v is not None}
    with unit_of_work() as (runtime, session):
        tenant = resolve_tenant(session, tenant_slug)
        export = codegen.create_export(
            session,
            runtime=runtime,
            tenant_id=tenant.id,
            batch_id=batch_id,
            fmt=fmt,
            actor=CLI_ACTOR,
            options=options,
            password=password,
            first_serial=first_serial,
            last_serial=last_serial,
        )
        export_id, total = export.id, export.chunks_total
    _follow_export(runtime, tenant.id, export_id, total)
    with unit_of_work() as (runtime, session):
        sealed, path = codegen.open_export_file(
            session, runtime=runtime, tenant_id=tenant.id, export_id=export_id, actor=CLI_ACTOR
        )
        shutil.copyfile(path, out_path)
        click.echo(
            f"{out_path}: {sealed.last_serial - sealed.first_serial + 1:,} codes, "
            f"{sealed.file_size:,} bytes, sha256 {sealed.sha256}"
        )


def _follow_export(runtime: Runtime, tenant_id: int, export_id: int, total: int) -> None:
    with click.progressbar(length=total, label=f"export {export_id}", show_pos=True) as bar:
        shown = 0
        while True:
            with runtime.db.sessionmaker() as session:
                export = codegen.get_export_or_raise(
                    session, tenant_id=tenant_id, export_id=export_id
                )
                done, status, error = export.chunks_done, export.status, export.error
            bar.update(done - shown)
            shown = done
            if status == "done":
                return
            if status == "failed":
                raise YimaError(f"export {export_id} failed: {error}")
            time.sleep(0.2)


# --- verify and keys -----------------------------------------------------------------------


@main.command()
@click.argument("code")
@handle_errors
def verify(code: str) -> None:
    """Verify a code offline: a token, a short URL or a GS1 Digital Link URL."""
    runtime = _runtime()
    result = codegen.verify(runtime, code)
    if isinstance(result, codegen.InvalidToken):
        click.secho(f"invalid: {result.reason}", fg="red")
        sys.exit(1)
    click.secho(
        f"valid {result.format} code: tenant {result.tenant_id}, batch {result.batch_id}, "
        f"serial {result.serial}, key {result.key_id}",
        fg="green",
    )


@main.group()
def keys() -> None:
    """Code key versions: list, rotate, retire."""


@keys.command("list")
@tenant_option
@handle_errors
def keys_list(tenant_slug: str | None) -> None:
    with unit_of_work() as (_r, session):
        tenant = resolve_tenant(session, tenant_slug)
        for key in core_services.list_code_keys(session, tenant_id=tenant.id):
            click.echo(
                f"{key.id}\t{key.status}\t{key.created_at:%Y-%m-%d %H:%M}\t"
                f"{key.retired_reason or ''}".rstrip()
            )


@keys.command("rotate")
@tenant_option
@handle_errors
def keys_rotate(tenant_slug: str | None) -> None:
    """Make a new current key; existing batches keep verifying with theirs."""
    with unit_of_work() as (runtime, session):
        tenant = resolve_tenant(session, tenant_slug)
        key_id = codegen.rotate_code_key(session, runtime=runtime, tenant_id=tenant.id)
        core_services.record_audit(
            session,
            tenant_id=tenant.id,
            actor=CLI_ACTOR,
            action="key.rotate",
            target_type="key",
            target_id=key_id,
        )
        click.echo(f"key {key_id} is now current for new batches")


@keys.command("retire")
@tenant_option
@click.argument("key_id", type=click.IntRange(1, 32767))
@click.option("--reason", required=True)
@handle_errors
def keys_retire(tenant_slug: str | None, key_id: int, reason: str) -> None:
    """Retire a key: its codes stop verifying and its batches are revoked."""
    with unit_of_work() as (runtime, session):
        tenant = resolve_tenant(session, tenant_slug)
        revoked = codegen.retire_code_key(
            session, runtime=runtime, tenant_id=tenant.id, key_id=key_id, reason=reason
        )
        core_services.record_audit(
            session,
            tenant_id=tenant.id,
            actor=CLI_ACTOR,
            action="key.retire",
            target_type="key",
            target_id=key_id,
            detail={"reason": reason, "batches_revoked": revoked},
        )
        click.echo(f"key {key_id} retired; {revoked} batch(es) revoked")


# --- jobs ----------------------------------------------------------------------------------


@main.group()
def jobs() -> None:
    """Generation jobs (print-file exports)."""


@jobs.command("resume")
def jobs_resume() -> None:
    """Re-send the unfinished chunks of every open export (after a worker died)."""
    runtime = _runtime()
    sent = codegen.resume_exports(runtime)
    from core.tasks import wait_for_in_process_tasks

    wait_for_in_process_tasks()
    click.echo(f"{sent} task(s) sent")


# --- traceability ---------------------------------------------------------------------------


@main.group("trace")
def trace_group() -> None:
    """Activation at the line, packing uploads, a code's journey."""


@trace_group.command("activate")
@tenant_option
@click.argument("batch_id", type=ROW_ID)
@click.option("--first", "first_serial", required=True, type=ROW_ID)
@click.option("--last", "last_serial", required=True, type=ROW_ID)
@click.option("--deactivate", "reason", help="deactivate instead, for this reason (misprint, ...)")
@click.option("--line", default="")
@click.option("--site", default="")
@handle_errors
def trace_activate(
    tenant_slug: str | None,
    batch_id: int,
    first_serial: int,
    last_serial: int,
    reason: str | None,
    line: str,
    site: str,
) -> None:
    """Activate serials FIRST..LAST of a batch (one row, however many codes)."""
    import traceability

    with unit_of_work() as (runtime, session):
        tenant = resolve_tenant(session, tenant_slug)
        batch = codegen.get_batch_or_raise(session, tenant_id=tenant.id, batch_id=batch_id)
        if not 1 <= first_serial <= last_serial <= batch.quantity:
            raise ValidationFailedError.field(
                "--last", f"serials must satisfy 1 <= first <= last <= {batch.quantity}"
            )
        event = traceability.record_activation(
            session,
            runtime,
            tenant_id=tenant.id,
            action="deactivate" if reason else "activate",
            scope="range",
            ranges=[traceability.SerialRange(batch_id, first_serial, last_serial)],
            operator=CLI_ACTOR,
            reason=reason,
            line=line,
            site=site,
        )
        click.echo(f"{event.action}d {event.code_count:,} codes of batch {batch_id} (#{event.id})")


@trace_group.command("pack")
@tenant_option
@click.argument("csv_file", type=click.File("r", encoding="utf-8-sig"))
@click.option("--line", default="")
@handle_errors
def trace_pack(tenant_slug: str | None, csv_file: Any, line: str) -> None:
    """Upload a packing line's parent,child CSV (all or nothing)."""
    import csv

    import traceability

    rows = [r for r in csv.reader(csv_file) if r and any(c.strip() for c in r)]
    if rows and rows[0][0].strip().lower() == "parent":
        rows = rows[1:]
    if any(len(r) != 2 for r in rows):
        raise ValidationFailedError.field("csv", "every line must be parent,child")
    with unit_of_work() as (runtime, session):
        tenant = resolve_tenant(session, tenant_slug)
        texts = [t for r in rows for t in r]
        fields = [f"line {i // 2 + 1}" for i in range(len(texts))]
        refs = traceability.resolve_codes(
            runtime, session, tenant_id=tenant.id, texts=texts, fields=fields
        )
        done = traceability.pack(
            session,
            runtime,
            tenant_id=tenant.id,
            pairs=list(zip(refs[0::2], refs[1::2], strict=True)),
            operator=CLI_ACTOR,
            line=line,
        )
        click.echo(f"{done.packed:,} packed, {done.already_packed:,} already packed")


@trace_group.command("journey")
@tenant_option
@click.argument("code")
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", show_default=True)
@handle_errors
def trace_journey(tenant_slug: str | None, code: str, lang: str) -> None:
    """Print a code's journey: activation, packing, shipments, receipts."""
    import traceability

    with unit_of_work() as (runtime, session):
        tenant = resolve_tenant(session, tenant_slug)
        ref = traceability.resolve_code(
            runtime, session, tenant_id=tenant.id, text=code, field="code"
        )
        trail = traceability.code_trail(runtime, session, tenant_id=tenant.id, code=ref)
        click.echo(
            f"batch {ref.batch_id} #{ref.serial}: {'active' if trail.active else 'inactive'}"
        )
        for step in trail.steps:
            click.echo(f"  {step.at:%Y-%m-%d %H:%M} UTC  {traceability.describe(step, lang)}")


@main.group()
def points() -> None:
    """The points ledger's scheduled work (the worker runs it on its own)."""


@points.command("activate")
@handle_errors
def points_activate() -> None:
    """Make pending points whose window has passed spendable."""
    from members.tasks import activate_pending_points

    click.echo(f"{activate_pending_points.run():,} lot(s) activated")


@points.command("expire")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 16))
@handle_errors
def points_expire(workers: int) -> None:
    """Debit what expired lots still hold, in batches, in parallel member shards."""
    import members

    click.echo(f"{members.expire_all(_runtime(), workers=workers):,} lot(s) expired")


@main.group("members")
def members_group() -> None:
    """Members: the scheduled work (the worker runs it on its own) and erasure."""


@members_group.command("review-tiers")
@tenant_option
@handle_errors
def members_review_tiers(tenant_slug: str | None) -> None:
    """Downgrade, by the brand's policy, members who no longer qualify for their tier."""
    from members.tiers import review_all

    runtime = _runtime()
    tenant_id = None
    if tenant_slug:
        with runtime.db.read_only() as session:
            tenant_id = resolve_tenant(session, tenant_slug).id
    click.echo(f"{review_all(runtime, tenant_id=tenant_id):,} member(s) changed tier")


@members_group.command("birthdays")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="default: today")
@handle_errors
def members_birthdays(day: dt.datetime | None) -> None:
    """Credit birthday points (once per member per year)."""
    from members.engagement import grant_all_birthday_points

    granted = grant_all_birthday_points(_runtime(), today=day.date() if day else None)
    click.echo(f"{granted:,} birthday reward(s) credited")


@members_group.command("rfm")
@tenant_option
@handle_errors
def members_rfm(tenant_slug: str | None) -> None:
    """Score members by recency, frequency and monetary value into the 8 RFM segments."""
    from members.rfm import compute_rfm

    runtime = _runtime()
    tenant_id = None
    if tenant_slug:
        with runtime.db.read_only() as session:
            tenant_id = resolve_tenant(session, tenant_slug).id
    run = compute_rfm(runtime, tenant_id=tenant_id)
    click.echo(f"{run.members:,} member(s) of {run.tenants} brand(s) scored in {run.seconds:.1f} s")


@members_group.command("tags")
@handle_errors
def members_tags() -> None:
    """Re-apply every automatic tag's rule."""
    from members.tags import evaluate_tags

    with unit_of_work() as (_rt, session):
        done = evaluate_tags(session)
    click.echo(
        f"{done.tags} automatic tag(s) evaluated: {done.added:,} member(s) tagged, "
        f"{done.removed:,} untagged"
    )


@members_group.command("erase")
@tenant_option
@click.argument("member_id", type=ROW_ID)
@handle_errors
def members_erase(tenant_slug: str | None, member_id: int) -> None:
    """Erase a member's personal data (the anonymous ledger stays)."""
    import getpass

    from members.erasure import erase_member

    with unit_of_work() as (_rt, session):
        tenant = resolve_tenant(session, tenant_slug)
        erase_member(
            session, tenant_id=tenant.id, member_id=member_id, actor=f"cli:{getpass.getuser()}"
        )
    click.echo(f"member {member_id} erased")


@main.group()
def alerts() -> None:
    """Alert notifications: e-mail and webhooks by the brand's alert rules."""


@alerts.command("notify")
@handle_errors
def alerts_notify() -> None:
    """Match new alerts to the rules and send what is due now (the worker does it every minute)."""
    import anti_fraud

    added, sent = anti_fraud.notify_alerts(_runtime())
    click.echo(f"{added} new notification(s), {sent} sent")


@main.group()
def diversion() -> None:
    """Diversion (窜货) alerts: evaluate the evidence, list and review alerts."""


@diversion.command("evaluate")
@handle_errors
def diversion_evaluate() -> None:
    """Raise or refresh diversion alerts now (the worker does it every five minutes)."""
    import anti_fraud

    new = anti_fraud.evaluate_diversion(_runtime())
    click.echo(f"{new} new alert(s)")


@diversion.command("alerts")
@tenant_option
@click.option("--distributor", "distributor_id", type=ROW_ID)
@click.option("--region", help="where goods turned up: CN-JS, CN-JS/南京市")
@click.option("--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]))
@click.option("--until", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]))
@click.option("--status", type=click.Choice(["open", "confirmed", "dismissed"]))
@handle_errors
def diversion_alerts(
    tenant_slug: str | None,
    distributor_id: int | None,
    region: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    status: str | None,
) -> None:
    """List diversion alerts with their evidence, highest score first."""
    import anti_fraud
    import traceability

    with unit_of_work() as (_, session):
        tenant = resolve_tenant(session, tenant_slug)
        alerts = anti_fraud.list_diversion_alerts(
            session,
            tenant_id=tenant.id,
            limit=1000,
            distributor_id=distributor_id,
            region=region,
            since=since.replace(tzinfo=dt.UTC) if since else None,
            until=until.replace(tzinfo=dt.UTC) if until else None,
            status=status,
        )
        for alert in sorted(alerts, key=lambda a: -a.score):
            party = traceability.get_distributor(
                session, tenant_id=tenant.id, distributor_id=alert.distributor_id
            )
            shipment = traceability.get_shipment_or_raise(
                session, tenant_id=tenant.id, shipment_id=alert.shipment_id
            )
            click.echo(
                f"#{alert.id} [{alert.status}] score {alert.score:.2f}  "
                f"{party.name if party else alert.distributor_id} ({', '.join(alert.regions)})  "
                f"shipment {shipment.reference}: {alert.code_count} codes, "
                f"{alert.scan_count} scans, {alert.receipt_count} receipts, "
                f"{alert.first_seen_at:%Y-%m-%d}..{alert.last_seen_at:%Y-%m-%d}"
            )
            for place in alert.places:
                click.echo(
                    f"    {place['region'] or 'unknown'}  {place['source']}/{place['precision']}"
                    f"  x{place['count']}"
                )
        click.echo(f"{len(alerts)} alert(s)")


@main.group()
def rollups() -> None:
    """The dashboards' rollups (the worker refreshes them every minute)."""


@rollups.command("refresh")
@click.option(
    "--batch-size",
    type=click.IntRange(100, 1_000_000),
    help="rows per transaction (default: 20,000; 5,000 on SQLite)",
)
@handle_errors
def rollups_refresh(batch_size: int | None) -> None:
    """Count the scans, members, ledger entries and rewards not yet counted (safe to run any
    time)."""
    import anti_fraud
    import campaigns
    import members

    runtime = _runtime()
    scans = anti_fraud.refresh_scan_rollups(runtime, batch_size=batch_size)
    click.echo(
        f"{scans.scans:,} scan(s) counted in {scans.seconds:.1f} s "
        f"({scans.scans / scans.seconds if scans.seconds else 0:,.0f}/s)"
    )
    people = members.refresh_member_rollups(runtime, batch_size=batch_size)
    click.echo(
        f"{people.members:,} member(s) and {people.entries:,} ledger entr(ies) counted "
        f"in {people.seconds:.1f} s"
    )
    rewards = campaigns.refresh_campaign_rollups(runtime, batch_size=batch_size)
    click.echo(f"{rewards.rewards:,} campaign reward(s) counted in {rewards.seconds:.1f} s")
    with runtime.db.read_only() as session:
        lag = anti_fraud.rollup_lag(session)
    click.echo(f"scans counted up to id {lag['last_scan_id']}, {lag['open_gaps']} open gap(s)")


# --- running ----------------------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Serve the scan app (/) and the console app (/console) in one process."""
    import logging

    from werkzeug.serving import run_simple

    from yima.wsgi import combined_app

    # Development serving: Yima's own log (sign-in codes of the log SMS sender among them).
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    runtime = _runtime()
    codegen.resume_exports(runtime)
    if runtime.settings.resolved_task_mode != "celery":
        from core.tasks import start_in_process_beat

        start_in_process_beat()  # periodic tasks (alerts, resumption) without Celery beat
    click.echo(f"scan app: http://{host}:{port}/   console: http://{host}:{port}/console/")
    run_simple(host, port, combined_app(), threaded=True, use_reloader=False)


@main.command()
@click.option("--concurrency", "-c", default=2, show_default=True, type=int)
@click.option("--loglevel", default="INFO", show_default=True)
@handle_errors
def worker(concurrency: int, loglevel: str) -> None:
    """Run a Celery worker (needs YIMA_BROKER_URL)."""
    from core.tasks import configure_celery

    runtime = get_runtime()
    if not runtime.settings.broker_url:
        raise ValidationFailedError.field(
            "YIMA_BROKER_URL",
            "set a broker (redis:// or amqp://) to run workers; without one"
            " tasks run inside 'yima serve'",
        )
    app = configure_celery()
    app.worker_main(
        [
            "worker",
            f"--loglevel={loglevel}",
            f"--concurrency={concurrency}",
            "--without-gossip",
            "--without-mingle",
        ]
    )


@main.command()
@click.option("--loglevel", default="INFO", show_default=True)
def beat(loglevel: str) -> None:
    """Run Celery beat (periodic resumption of stalled jobs)."""
    from core.tasks import configure_celery

    app = configure_celery()
    app.start(
        [
            "beat",
            f"--loglevel={loglevel}",
            f"--schedule={get_runtime().settings.data_dir / 'celerybeat-schedule'}",
        ]
    )


@main.command()
@handle_errors
def demo() -> None:
    """Create a demo brand, product, batches, API key and print files (idempotent)."""
    from yima.demo import build_demo

    runtime = _runtime()
    for line in build_demo(runtime):
        click.echo(line)


register_campaign_commands(main)


if __name__ == "__main__":  # pragma: no cover
    main()
