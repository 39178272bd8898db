"""``yima campaigns ...`` and ``yima draws ...``: run a brand's campaigns, and check that a
campaign's draws were fair — from the database, or offline from an exported file.

``yima draws verify`` exits 0 when every draw checks out, 1 when it found problems, 2 when the
campaign's seed is not revealed yet (or the input is wrong). Registered on the ``yima`` group
by :func:`register`.

yima/cli.py is imported lazily here (when a command runs): it registers these groups, so this
module can be imported first or second without a circular import.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import IO, Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
ROW_ID = click.IntRange(1, 2**31 - 1)
PAGE = 50
tenant_option = click.option("--tenant", "tenant_slug", help="tenant slug (default: the only one)")


def _cli() -> Any:
    from yima import cli

    return cli


def handle_errors(command: F) -> F:
    """yima/cli.py's error handling: ``error: <detail>``, exit 2 for bad input, 1 otherwise."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return _cli().handle_errors(command)(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def register(group: click.Group) -> None:
    """Add ``campaigns`` and ``draws`` to the ``yima`` command group."""
    group.add_command(campaigns_group)
    group.add_command(draws_group)


# --- campaigns ----------------------------------------------------------------------------------


@click.group("campaigns")
def campaigns_group() -> None:
    """A brand's campaigns: create from a JSON file, schedule, pause, resume, end."""


@campaigns_group.command("list")
@tenant_option
@click.option("--status", type=click.Choice(["draft", "scheduled", "running", "paused", "ended"]))
@handle_errors
def campaigns_list(tenant_slug: str | None, status: str | None) -> None:
    """The brand's campaigns, newest first."""
    from campaigns import display_status, list_campaigns

    cli = _cli()
    runtime = cli._runtime()
    with runtime.db.read_only() as session:
        tenant = cli.resolve_tenant(session, tenant_slug)
        after = None
        while True:
            page = list_campaigns(
                session, tenant_id=tenant.id, status=status, after=after, limit=PAGE
            )
            for c in page:
                click.echo(
                    f"{c.id}\t{display_status(c)}\t{c.priority}\t{c.starts_at:%Y-%m-%d %H:%M}Z"
                    f"\t{c.ends_at:%Y-%m-%d %H:%M}Z\t{c.name}"
                )
            if len(page) < PAGE:
                break
            after = page[-1].id


@campaigns_group.command("show")
@tenant_option
@click.argument("campaign_id", type=ROW_ID)
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", show_default=True)
@handle_errors
def campaigns_show(tenant_slug: str | None, campaign_id: int, lang: str) -> None:
    """A campaign: its state, commitments and rules in plain words."""
    from campaigns import describe, display_status, get_campaign_or_raise, spec_of

    cli = _cli()
    runtime = cli._runtime()
    with runtime.db.read_only() as session:
        tenant = cli.resolve_tenant(session, tenant_slug)
        c = get_campaign_or_raise(session, tenant_id=tenant.id, campaign_id=campaign_id)
        spec = spec_of(c)
        click.echo(f"campaign {c.id}: {c.name} ({display_status(c)}, priority {c.priority})")
        if c.seed_hash:
            click.echo(f"seed hash:  {c.seed_hash}")
            click.echo(f"table hash: {c.table_hash}")
        if c.seed_revealed:
            click.echo(f"seed:       {c.seed_revealed}")
        for line in describe(spec, "en" if lang == "en" else "zh"):
            click.echo(f"  {line}")


@campaigns_group.command("create")
@tenant_option
@click.option("--file", "source", type=click.File("rb"), required=True, help="the JSON config")
@handle_errors
def campaigns_create(tenant_slug: str | None, source: IO[bytes]) -> None:
    """Create a draft campaign from a JSON file (422 names each wrong field)."""
    from campaigns import create_campaign

    raw = _read_json(source, "file")
    with _cli().unit_of_work() as (_runtime, session):
        tenant = _cli().resolve_tenant(session, tenant_slug)
        campaign = create_campaign(session, tenant_id=tenant.id, raw=raw, actor=_cli().CLI_ACTOR)
        _audit(session, tenant.id, "create", campaign.id)
        click.echo(f"campaign {campaign.id} created (draft): {campaign.name}")


def _audit(session: Any, tenant_id: int, action: str, campaign_id: int) -> None:
    """Record a CLI change of a campaign in the audit log, as the console's changes are."""
    from core.services import record_audit

    record_audit(
        session,
        tenant_id=tenant_id,
        actor=_cli().CLI_ACTOR,
        action=f"campaigns.{action}",
        target_type="campaign",
        target_id=campaign_id,
    )


def _life_command(action: str, done: str, summary: str) -> None:
    @campaigns_group.command(action, help=summary)
    @tenant_option
    @click.argument("campaign_id", type=ROW_ID)
    @handle_errors
    def command(tenant_slug: str | None, campaign_id: int) -> None:
        import campaigns

        act = getattr(campaigns, f"{action}_campaign")
        with _cli().unit_of_work() as (runtime, session):
            tenant = _cli().resolve_tenant(session, tenant_slug)
            campaign = act(session, runtime, tenant_id=tenant.id, campaign_id=campaign_id)
            _audit(session, tenant.id, action, campaign.id)
            click.echo(f"campaign {campaign.id} {done} (now {campaign.status})")


_life_command("schedule", "scheduled", "Publish a draft: seal its seed, publish its commitments.")
_life_command("pause", "paused", "Pause a scheduled or running campaign.")
_life_command("resume", "resumed", "Resume a paused campaign.")
_life_command("end", "ended", "End a campaign now and reveal its draw's seed.")


# --- draws --------------------------------------------------------------------------------------


@click.group("draws")
def draws_group() -> None:
    """Provably fair draws: verify a campaign's draws, export them for an auditor."""


@draws_group.command("verify")
@click.argument("campaign_id", type=ROW_ID, required=False)
@tenant_option
@click.option(
    "--file",
    "source",
    type=click.File("rb"),
    help="verify an exported draws.json offline (no database); '-' reads standard input",
)
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@handle_errors
def draws_verify(
    campaign_id: int | None, tenant_slug: str | None, source: IO[bytes] | None, as_json: bool
) -> None:
    """Recompute every draw of an ended campaign from its revealed seed. Exit 0: all fair;
    1: problems found; 2: the seed is not revealed yet."""
    from campaigns import verify_campaign, verify_export

    if (campaign_id is None) == (source is None):
        raise click.UsageError("name a CAMPAIGN_ID or give --file, one of the two")
    if source is not None:
        found = verify_export(_read_json(source, "file"))
    else:
        assert campaign_id is not None
        cli = _cli()
        runtime = cli._runtime()
        with runtime.db.read_only() as session:
            tenant = cli.resolve_tenant(session, tenant_slug)
            found = verify_campaign(session, tenant_id=tenant.id, campaign_id=campaign_id)
    if as_json:
        click.echo(json.dumps(found.to_json(), ensure_ascii=False, indent=2))
    else:
        _print_verification(found)
    raise SystemExit(0 if found.ok else 1)


def _print_verification(found: Any) -> None:
    from campaigns import yuan_text

    verdict = "OK" if found.ok else f"{found.problem_count} PROBLEM(S)"
    click.echo(f"campaign {found.campaign_id}: {found.draws:,} draw(s) replayed: {verdict}")
    click.echo(f"  seed        {found.seed_hex}")
    click.echo(
        f"  commitments {'match' if found.commitments_ok else 'DO NOT MATCH'} "
        f"(seed {found.seed_hash[:16]}…, table {found.table_hash[:16]}…)"
    )
    for prize in found.per_prize:
        stock = "unlimited" if prize.stock is None else f"stock {prize.stock}"
        click.echo(
            f"  {prize.key}: won {prize.won}, given as fallback {prize.fallback_given} ({stock})"
        )
    budget = f" of a budget of {yuan_text(found.budget_fen)}" if found.budget_fen else ""
    click.echo(f"  given {yuan_text(found.spent_fen)}{budget}")
    for problem in found.problems:
        click.secho(f"  problem: {problem}", fg="red")
    if found.problem_count > len(found.problems):
        click.secho(f"  … and {found.problem_count - len(found.problems)} more", fg="red")


@draws_group.command("export")
@click.argument("campaign_id", type=ROW_ID)
@tenant_option
@handle_errors
def draws_export(campaign_id: int, tenant_slug: str | None) -> None:
    """Print an ended campaign's draws, seed, table and commitments as JSON (for an auditor:
    ``yima draws verify --file`` checks it with no database)."""
    from campaigns import export_draws

    cli = _cli()
    runtime = cli._runtime()
    with runtime.db.read_only() as session:
        tenant = cli.resolve_tenant(session, tenant_slug)
        document = export_draws(session, tenant_id=tenant.id, campaign_id=campaign_id)
    click.echo(json.dumps(document, ensure_ascii=False, separators=(",", ":")))


def _read_json(source: IO[bytes], field: str) -> Any:
    from core.errors import ValidationFailedError

    try:
        return json.loads(source.read())
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailedError.field(field, "not valid JSON") from None
