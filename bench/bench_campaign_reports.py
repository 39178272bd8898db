"""Benchmark: a campaign's figures (the campaigns dashboard's statistics and budget burn) over a
campaign with many draws, on PostgreSQL.

Run: ``.venv/bin/python bench/bench_campaign_reports.py [--draws 1000000] [--runs 5]`` from the
repository root (PostgreSQL at 127.0.0.1:5432, a private schema created and dropped; under a
minute for a million draws).

Setup (untimed, in SQL with ``generate_series``): one brand running one draw campaign with 10
points a scan, and ``--draws`` reward rows of it over the last day: half won a 500-fen prize, one
in 50 held for review. Timed: ``campaigns.reports.campaign_stats`` and ``budget_burn`` (what the
campaigns dashboard and ``GET /campaigns/<id>/stats|budget`` answer from), median of ``--runs``.
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
    " SELECT :t, :b, g, 1 + g % 100, now() - (g % 86400) * interval '1 second', 10,"
    " CAST(:breakdown AS json), CASE WHEN g % 50 = 0 THEN 'held' ELSE 'granted' END, '[]',"
    " CASE WHEN g % 2 = 0 THEN 500 ELSE 0 END, :c,"
    " CASE WHEN g % 2 = 0 THEN 'won' ELSE 'nothing' END"
    " FROM generate_series(1, :n) g"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--draws", type=int, default=1_000_000)
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
        started = time.perf_counter()
        with runtime.db.engine.begin() as db:
            db.execute(
                _LOAD,
                {
                    "t": pool.tenant_id,
                    "b": pool.batch_id,
                    "c": pool.campaign_id,
                    "n": args.draws,
                    "breakdown": f'[[{pool.campaign_id}, "base", 10]]',
                },
            )
            db.execute(text("ANALYZE campaigns_rewards"))
        print(f"loaded {args.draws:,} draws in {time.perf_counter() - started:.1f} s")
        worst = 0.0
        for name, report in (
            ("campaign_stats", reports.campaign_stats),
            ("budget_burn", reports.budget_burn),
        ):
            times = []
            for _ in range(args.runs):
                with runtime.db.read_only() as session:
                    t0 = time.perf_counter()
                    report(session, tenant_id=pool.tenant_id, campaign_id=pool.campaign_id)
                    times.append((time.perf_counter() - t0) * 1e3)
            median = statistics.median(times)
            worst = max(worst, median)
            print(f"{name:<16} median {median:7.1f} ms (target <= {TARGET_MS:.0f} ms)")
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
