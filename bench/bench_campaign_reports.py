"""Benchmark: a campaign's figures (the campaigns dashboard, ``GET /campaigns/<id>/stats|budget|
prizes``) over a campaign with many draws, on PostgreSQL.

Run: ``.venv/bin/python bench/bench_campaign_reports.py [--draws 1000000] [--tail 40000]
[--runs 5]`` from the repository root (PostgreSQL at 127.0.0.1:5432, a private schema created and
dropped; about a minute for a million draws).

Setup (untimed, in SQL with ``generate_series``): one brand running one draw campaign with 10
points a scan, and ``--draws`` reward rows of it over the last day by 200,000 members: half won a
500-fen prize, one in 50 held for review.
Timed:
- the first refresh of the campaign rollups over every draw (``campaigns.refresh_campaign_rollups``,
  what the worker does every minute): rewards counted per second;
- then ``--tail`` more draws land (a minute of draws at 650/s: the most a reader adds to the
  rollups right before the next refresh), and ``campaigns.reports.campaign_stats``,
  ``budget_burn``, ``prize_pools`` and ``campaigns.campaign_figures`` (all of the dashboard's
  numbers of one campaign) are timed, median of ``--runs`` each;
- the same four once the tail is counted too.
Target: the issue's ≤ 300 ms a page.
"""

from __future__ import annotations

import argparse
import base64
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

import psycopg
from sqlalchemy import text

import campaigns
from bench.bench_draws import make_pool, schema_url
from bench.machine import machine
from campaigns import reports
from core.config import Settings
from core.runtime import Runtime, set_runtime, upgrade_database

DATABASE = "postgresql://postgres@127.0.0.1:5432/test"
SCHEMA = "yima_bench_campaign_reports"
TARGET_MS = 300.0

_LOAD = text(
    "INSERT INTO campaigns_rewards (tenant_id, batch_id, serial, member_id, created_at, points,"
    " breakdown, status, reasons, value_fen, draw_campaign_id, outcome)"
    " SELECT :t, :b, g, 1 + g % 200000, now() - (g % 86400) * interval '1 second', 10,"
    " CAST(:breakdown AS json), CASE WHEN g % 50 = 0 THEN 'held' ELSE 'granted' END, '[]',"
    " CASE WHEN g % 2 = 0 THEN 500 ELSE 0 END, :c,"
    " CASE WHEN g % 2 = 0 THEN 'won' ELSE 'nothing' END"
    " FROM generate_series(:first, :last) g"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--draws", type=int, default=1_000_000)
    parser.add_argument("--tail", type=int, default=40_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with psycopg.connect(DATABASE, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        admin.execute(f'CREATE SCHEMA "{SCHEMA}"')
    url = schema_url(DATABASE, SCHEMA)
    runtime = None
    try:
        upgrade_database(url)
        runtime = Runtime(
            Settings(
                env="test",
                database_url=url,
                data_dir=Path(tempfile.mkdtemp(prefix="yima-bench-campaigns-")),
                master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
                secret_key=secrets.token_urlsafe(36),
                task_mode="inline",
            )
        )
        set_runtime(runtime)
        pool = make_pool(runtime, "reports", 100, campaign=True, points=10)
        assert pool.campaign_id is not None
        params = {
            "t": pool.tenant_id,
            "b": pool.batch_id,
            "c": pool.campaign_id,
            "breakdown": f'[[{pool.campaign_id}, "base", 10]]',
        }
        started = time.perf_counter()
        with runtime.db.engine.begin() as db:
            db.execute(_LOAD, {**params, "first": 1, "last": args.draws})
            db.execute(text("ANALYZE campaigns_rewards"))
        print(f"loaded {args.draws:,} draws in {time.perf_counter() - started:.1f} s")
        first = campaigns.refresh_campaign_rollups(runtime, batch_size=50_000)
        print(
            f"first rollup refresh: {first.rewards:,} rewards in {first.seconds:.1f} s "
            f"({first.rewards / first.seconds:,.0f}/s)"
        )
        with runtime.db.engine.begin() as db:
            db.execute(_LOAD, {**params, "first": args.draws + 1, "last": args.draws + args.tail})
        worst = 0.0
        for when in (f"{args.tail:,} draws not yet counted", "all counted"):
            print(f"-- {when}")
            for name, report in (
                ("campaign_stats", reports.campaign_stats),
                ("budget_burn", reports.budget_burn),
                ("prize_pools", reports.prize_pools),
                ("campaign_figures", campaigns.campaign_figures),
            ):
                times = []
                for _ in range(args.runs):
                    with runtime.db.read_only() as session:
                        t0 = time.perf_counter()
                        report(session, tenant_id=pool.tenant_id, campaign_id=pool.campaign_id)
                        times.append((time.perf_counter() - t0) * 1e3)
                median = statistics.median(times)
                worst = max(worst, median)
                print(f"{name:<17} median {median:7.1f} ms (target <= {TARGET_MS:.0f} ms)")
            more = campaigns.refresh_campaign_rollups(runtime, batch_size=50_000)
            assert more.rewards == args.tail or when == "all counted"
        print(f"worst median: {worst:.1f} ms {'pass' if worst <= TARGET_MS else 'FAIL'}")
        return 0
    finally:
        set_runtime(None)
        if runtime is not None:
            runtime.close()
        with psycopg.connect(DATABASE, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')


if __name__ == "__main__":
    sys.exit(main())
