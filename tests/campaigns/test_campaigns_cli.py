"""A campaign run from the command line, and its draws checked by ``yima draws verify`` — from
the database, or offline from the file ``yima draws export`` wrote, by someone with no access
to the platform. The exit code says the answer: 0 fair, 1 problems, 2 not revealed yet."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

import yima.cli
from core.runtime import Runtime
from core.services import list_audit
from tests.campaigns.helpers import brand_with_members, config, scan_reward
from yima.campaigns_cli import register

START = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
END = START + dt.timedelta(days=7)


def yima_command() -> click.Group:
    """``yima`` itself once it registers these commands; until then a group holding them."""
    if "draws" in yima.cli.main.commands:
        return yima.cli.main
    group = click.Group("yima")
    register(group)
    return group


def invoke(*args: str) -> Result:
    return CliRunner().invoke(yima_command(), list(args), catch_exceptions=False)


def run(*args: str) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result.output


def test_a_campaign_is_run_and_its_draws_verified_from_the_command_line(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with runtime.db.unit_of_work() as session:
        brand, people = brand_with_members(session, runtime)
    spec = tmp_path / "campaign.json"
    spec.write_text(
        json.dumps(config(starts_at=START.isoformat(), ends_at=END.isoformat())),
        encoding="utf-8",
    )
    made = run("campaigns", "create", "--file", str(spec), "--tenant", "acme")
    assert "created (draft): 双十一扫码有礼" in made
    cid = made.split()[1]
    assert f"{cid}\tdraft\t100\t" in run("campaigns", "list", "--tenant", "acme")
    assert "scheduled (now running)" in run("campaigns", "schedule", cid, "--tenant", "acme")

    early = invoke("draws", "verify", cid, "--tenant", "acme")
    assert early.exit_code == 2 and "its seed is revealed when it ends" in early.output
    assert invoke("draws", "export", cid, "--tenant", "acme").exit_code == 2

    now = dt.datetime.now(dt.UTC)
    for serial in range(1, 21):
        with runtime.db.unit_of_work() as session:
            scan_reward(session, runtime, brand, people[serial % 3], serial, now=now)
    assert "paused" in run("campaigns", "pause", cid, "--tenant", "acme")
    assert "resumed (now running)" in run("campaigns", "resume", cid, "--tenant", "acme")
    shown = run("campaigns", "show", cid, "--tenant", "acme", "--lang", "en")
    assert "seed hash:" in shown and "Runs from" in shown and "seed:" not in shown
    assert "ended (now ended)" in run("campaigns", "end", cid, "--tenant", "acme")
    assert "seed:" in run("campaigns", "show", cid, "--tenant", "acme")
    with runtime.db.read_only() as session:
        # Every change made from the command line is in the brand's audit log, as the console's.
        logged = [e.action for e in list_audit(session, tenant_id=brand.tenant_id)]
    assert sorted(a for a in logged if a.startswith("campaigns.")) == [
        "campaigns.create",
        "campaigns.end",
        "campaigns.pause",
        "campaigns.resume",
        "campaigns.schedule",
    ]

    verified = run("draws", "verify", cid, "--tenant", "acme")
    assert f"campaign {cid}: 20 draw(s) replayed: OK" in verified
    assert "commitments match" in verified
    as_json = json.loads(run("draws", "verify", cid, "--tenant", "acme", "--json"))
    assert as_json["ok"] is True and as_json["draws"] == 20 and as_json["problems"] == []

    exported = tmp_path / "draws.json"
    exported.write_text(run("draws", "export", cid, "--tenant", "acme"), encoding="utf-8")

    # Offline: no database is opened to verify a file.
    def no_database() -> Any:
        raise AssertionError("verifying a file must not open the database")

    monkeypatch.setattr(yima.cli, "_runtime", no_database)
    offline = run("draws", "verify", "--file", str(exported))
    assert f"campaign {cid}: 20 draw(s) replayed: OK" in offline

    document = json.loads(exported.read_text(encoding="utf-8"))
    document["draws"][4]["slot"] += 1
    exported.write_text(json.dumps(document), encoding="utf-8")
    tampered = invoke("draws", "verify", "--file", str(exported), "--json")
    assert tampered.exit_code == 1
    found = json.loads(tampered.output)
    assert not found["ok"] and "the seed gives slot" in found["problems"][0]
    assert "problem: draw 5" in invoke("draws", "verify", "--file", str(exported)).output


def test_bad_input_exits_2_with_the_field_at_fault(runtime: Runtime, tmp_path: Path) -> None:
    with runtime.db.unit_of_work() as session:
        brand_with_members(session, runtime, count=1)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(
        json.dumps(config(starts_at=START.isoformat(), ends_at=END.isoformat(), priority=-1)),
        encoding="utf-8",
    )
    refused = invoke("campaigns", "create", "--file", str(wrong), "--tenant", "acme")
    assert refused.exit_code == 2 and "priority" in refused.output
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json", encoding="utf-8")
    assert invoke("draws", "verify", "--file", str(garbage)).exit_code == 2
    assert invoke("campaigns", "create", "--file", str(garbage)).exit_code == 2
    assert invoke("draws", "verify").exit_code == 2  # neither a campaign nor a file
    missing = invoke("campaigns", "end", "999", "--tenant", "acme")
    assert missing.exit_code == 2 and "no campaign 999" in missing.output
    assert invoke("campaigns", "list", "--tenant", "nobody").exit_code == 2
