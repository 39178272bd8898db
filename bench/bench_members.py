"""Benchmark: the points ledger on PostgreSQL.

Run: ``.venv/bin/python bench/bench_members.py [--scans 3000] [--lots 1000000]`` from the
repository root (PostgreSQL at 127.0.0.1:5432, a private schema created and dropped).

- Points credit for a scan: the scan's step 5, ``members.reward_scan`` (the brand's programme,
  the tier multiplier, ``credit_scan_points``, growth value, the tier check sent after commit)
  inside a transaction (BEGIN ... COMMIT), median over ``--scans`` codes, next to the same
  transaction without it: the difference is what crediting a scan adds. The members hold a
  tier, so the multiplier is looked up too.
- Expiry of ``--lots`` lots: lots are loaded with COPY (untimed), then ``members.expire_due`` runs
  in batches of 5,000 per transaction until nothing is due; it is resumable (each batch commits,
  each lot is expired once by its business key).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

import psycopg
from sqlalchemy import text

import members
from bench.machine import machine
from core.config import Settings
from core.runtime import Runtime, upgrade_database
from tests.factories import make_brand

TARGETS = {"credit_ms": 2.0, "expiry_s": 60.0}
YEAR = members.Expiry.parse("365d")


def say(line: str = "") -> None:
    print(line, flush=True)


def schema_url(url: str, schema: str) -> str:
    return f"{url}?options=-csearch_path%3D{schema}"


def bench_credit(
    runtime: Runtime, tenant_id: int, tier_id: int, member_ids: list[int], n: int
) -> tuple[float, float, float]:
    with_credit: list[float] = []
    without: list[float] = []
    for i in range(n):
        t0 = time.perf_counter()
        with runtime.db.unit_of_work() as session:
            session.execute(text("SELECT 1"))
        without.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with runtime.db.unit_of_work() as session:
            session.execute(text("SELECT 1"))
            reward = members.reward_scan(
                session,
                runtime,
                member=members.SignedIn(tenant_id, member_ids[i % len(member_ids)], 0, tier_id),
                tenant_id=tenant_id,
                batch_id=1,
                serial=i + 1,
                verdict="genuine",
                timezone="Asia/Shanghai",
            )
            assert reward.applied
        with_credit.append(time.perf_counter() - t0)
    a, b = statistics.median(with_credit) * 1000, statistics.median(without) * 1000
    p99 = sorted(with_credit)[int(len(with_credit) * 0.99)] * 1000
    return a - b, a, p99


def make_tier(runtime: Runtime, tenant_id: int) -> int:
    """A silver tier (x1.5 points) that every member holds."""
    from members.models import Tier

    with runtime.db.unit_of_work() as session:
        tier = Tier(tenant_id=tenant_id, rank=1, name="银卡", min_growth=1_000_000_000)
        tier.benefits = {"points_multiplier": 1.5}
        session.add(tier)
        session.flush()
        session.execute(text("UPDATE members_members SET tier_id = :t"), {"t": tier.id})
        return tier.id


def load_lots(url: str, schema: str, tenant_id: int, member_ids: list[int], n: int) -> None:
    """``n`` expired lots (earn entries + lots + balances) with COPY: the setup, not the figure."""
    past = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with psycopg.connect(url, options=f"-csearch_path={schema}") as conn, conn.cursor() as cur:
        cur.execute("SELECT coalesce(max(id), 0) FROM members_points_entries")
        start = int(cur.fetchone()[0]) + 1  # type: ignore[index]
        with cur.copy(
            "COPY members_points_entries (id, tenant_id, member_id, kind, points, business_key,"
            " reason, actor, ref, created_at) FROM STDIN"
        ) as copy:
            for i in range(n):
                copy.write_row(
                    (
                        start + i,
                        tenant_id,
                        member_ids[i % len(member_ids)],
                        "earn",
                        10,
                        f"load:{i}",
                        "",
                        "bench",
                        "{}",
                        past,
                    )
                )
        with cur.copy(
            "COPY members_points_lots (id, tenant_id, member_id, points, remaining, status,"
            " available_at, expires_at) FROM STDIN"
        ) as copy:
            for i in range(n):
                copy.write_row(
                    (
                        start + i,
                        tenant_id,
                        member_ids[i % len(member_ids)],
                        10,
                        10,
                        "active",
                        past,
                        past + dt.timedelta(days=30),
                    )
                )
        cur.execute(
            "INSERT INTO members_balances (member_id, tenant_id, active, pending, updated_at) "
            "SELECT member_id, tenant_id, sum(remaining), 0, now() FROM members_points_lots "
            f"WHERE id >= {start} GROUP BY member_id, tenant_id ON CONFLICT (member_id) DO UPDATE "
            "SET active = members_balances.active + excluded.active"
        )
        cur.execute(
            "SELECT setval(pg_get_serial_sequence('members_points_entries', 'id'), "
            "(SELECT max(id) FROM members_points_entries))"
        )
        conn.commit()
    with psycopg.connect(url, options=f"-csearch_path={schema}", autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE members_points_lots")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--schema", default="yima_bench_members")
    parser.add_argument("--scans", type=int, default=3_000)
    parser.add_argument("--lots", type=int, default=1_000_000)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2, help="expiry shards run in parallel")
    args = parser.parse_args()
    say(f"machine: {machine()}")
    admin = psycopg.connect(args.database, autocommit=True)
    admin.execute(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE')
    admin.execute(f'CREATE SCHEMA "{args.schema}"')
    url = schema_url(args.database, args.schema)
    try:
        upgrade_database(url)
        with tempfile.TemporaryDirectory() as data:
            # Deferred work (the tier check) runs on a pool thread, as in the web server.
            runtime = Runtime(Settings(database_url=url, data_dir=Path(data), task_mode="thread"))
            with runtime.db.unit_of_work() as session:
                brand = make_brand(session, runtime, quantity=10)
                tenant_id = brand.tenant_id
            with runtime.db.engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO members_members (tenant_id, created_at) "
                        "SELECT :t, now() FROM generate_series(1, :n)"
                    ),
                    {"t": tenant_id, "n": args.members},
                )
                member_ids = [r[0] for r in conn.execute(text("SELECT id FROM members_members"))]
            say(f"{len(member_ids):,} members")

            tier_id = make_tier(runtime, tenant_id)
            added, med, p99 = bench_credit(runtime, tenant_id, tier_id, member_ids, args.scans)
            say(
                f"reward_scan: transaction median {med:.2f} ms (p99 {p99:.2f} ms), "
                f"{added:+.2f} ms over the same transaction without it (n={args.scans:,})"
            )

            t0 = time.perf_counter()
            load_lots(args.database, args.schema, tenant_id, member_ids, args.lots)
            say(f"loaded {args.lots:,} expired lots in {time.perf_counter() - t0:.1f} s (setup)")
            t0 = time.perf_counter()
            expired = members.expire_all(runtime, workers=args.workers, limit=5_000)
            batches = -(-expired // 5_000)
            took = time.perf_counter() - t0
            with runtime.db.unit_of_work() as session:
                bad = members.check_balances(session, tenant_id=tenant_id)
            say(
                f"expire_all: {expired:,} lots in {took:.1f} s ({args.workers} shards in parallel, "
                f"about {batches} batches of 5,000, "
                f"{expired / took:,.0f} lots/s); balances checked against the ledger: "
                f"{len(bad)} mismatches"
            )
            say()
            say("figure                         | target         | measured")
            say("-------------------------------+----------------+-----------------------------")
            say(
                f"points credit for a scan       | <= 2 ms median | {added:+.2f} ms "
                f"(transaction {med:.2f} ms) "
                f"{'pass' if added <= TARGETS['credit_ms'] else 'FAIL'}"
            )
            say(
                f"expiry of {args.lots:,} lots     | <= 60 s        | {took:.1f} s "
                f"{'pass' if took <= TARGETS['expiry_s'] else 'FAIL'}"
            )
            runtime.db.engine.dispose()
    finally:
        with contextlib.suppress(Exception):
            admin.execute(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE')
        admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
