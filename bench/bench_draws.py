"""Benchmark: prize draws on PostgreSQL — throughput, what a draw adds to a scan, and proof that
nothing was over-issued.

Run: ``.venv/bin/python bench/bench_draws.py [--workers 2,4] [--threads 32] [--seconds 10]`` from
the repository root (about 6 minutes with the defaults). PostgreSQL at
``--database`` (default ``$YIMA_BENCH_DATABASE_URL``, else 127.0.0.1:5432/test), in a private
schema (``yima_bench_draws``) created, migrated and dropped. No Redis: the reward-fraud counters
live in each process (``campaigns/fraud.py``), as in the embedded default.

(a) Draws per second. ``--workers`` processes (spawned) each run units of work —
    ``campaigns.reward_scan``, the scan's step 5, through the process's group commit as the scan
    app runs a scan (core/group_commit.py) — for distinct codes and members (worker w scans as
    members w, w + W, ...: no two workers queue on one member's rows), for ``--seconds``, all
    released together after ``--warm`` untimed scans each. Each worker count runs with one
    thread a worker (a sync web worker: every unit a transaction of its own) and with each of
    ``--threads`` (a threaded web worker, gunicorn ``--threads``: the units the threads have
    ready together share a transaction and its commit; the run says how many units a commit).
    The brand runs one campaign (扫码抽奖): the default fraud rules and a draw of a hot prize (a
    goods prize worth 500 fen, probability 1/2, 10,000,000 in stock: half the draws take a unit
    and spend from the budget) and "thanks" (1/2, also the fallback), a budget of ¥10,000,000
    and per-member limits (50 draws a day, 50 wins) checked on every draw but never reached; the
    draw is the whole reward (no points), so a unit is a draw: the code's reward row, the
    member's counters, the stock and budget, the outbox. Variants, each its own brand: stock and
    budget in 16 shards (``campaigns/lifecycle.py``), the same with 10 points a scan (the points
    ledger's statements added: the full step 5), the prize's stock in 1 shard, and both in 1
    shard: what sharding buys. Next to them: the same scans for a brand with no campaign (the
    programme's points only), and the floor — worker processes each running transactions of one
    UPDATE and one INSERT (SQLAlchemy Core, as ``bench/floor_app.py``), one thread each. Every
    shape (workers x threads) runs all of them; the best counts. Printed per run: the CPU per
    unit (the workers' own, and their PostgreSQL backends' plus the WAL writer's and
    checkpointer's, from /proc) and what the backends were doing, sampled from
    ``pg_stat_activity`` every 20 ms (in Python, running a statement, waiting for a row lock —
    on which statement —, waiting for the WAL). A first run, not counted, grows the new tables.
    Then the database is asked whether anything was over-issued: every stock shard's ``issued <=
    stock``, every budget shard's ``spent <= limit``, units issued = prizes won, money spent =
    the prizes' value, each (prize, shard, unit) once, and no member past the limits.
(b) What a draw adds to a scan, in one process: ``campaigns.reward_scan`` in its unit of work
    (the group commit with one thread: a transaction of its own)
    timed per call with ``perf_counter`` (commit included) for a brand running the draw campaign
    (16 shards) and a brand with no campaign at all (the programme's points only), alternated
    call by call over member pools of the same size scanned in the same order, after ``--warm``
    untimed scans of each. Median and p99 of each and the difference of medians; the floors: a
    bare ``SELECT 1`` round trip and a ``BEGIN; SELECT 1; COMMIT`` unit of work. One more pass of
    each counts the statements sent (psycopg ``Cursor.execute``) and the time spent waiting for
    each kind, so the rest of a scan's time is Python.

``--profile`` runs worker 0 of each (a) run under cProfile, timed in CPU time (a wall-clock
profile charges a worker's wait for a core to whatever it was running), and prints where that
time goes: by function, then cumulative for Yima's packages and SQLAlchemy.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import cProfile
import datetime as dt
import io
import itertools
import multiprocessing as mp
import os
import pstats
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

import psycopg
from sqlalchemy import create_engine, text

import campaigns
import members
from bench.machine import cpu_model, machine
from campaigns import lifecycle
from core.config import Settings
from core.runtime import Runtime, set_runtime, upgrade_database
from tests.factories import make_brand

TARGETS = {"draws_per_s": 2_000.0, "added_ms": 3.0}
DEFAULT_DATABASE = os.environ.get(
    "YIMA_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
HOT_STOCK = 10_000_000
HOT_VALUE_FEN = 500
BUDGET_FEN = 1_000_000_000
DAY_LIMIT = 50
WIN_LIMIT = 50
SERIALS_PER_RUN = 1_000_000  # codes of one (a) run: worker w scans run + w * SPAN + i
SERIALS_PER_WORKER = 100_000
COUNTER_ROWS = 10_000
WORKER_APP = "yima-bench-draws-worker"  # application_name of the (a) workers' connections


def say(line: str = "") -> None:
    print(line, flush=True)


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ok(passed: bool) -> str:
    return "pass" if passed else "FAIL"


def cpu_sample() -> tuple[int, int]:
    """(total, idle) jiffies of the whole machine."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values), values[3] + values[4]


def cpu_busy(seconds: float = 1.0) -> float:
    total0, idle0 = cpu_sample()
    time.sleep(seconds)
    total1, idle1 = cpu_sample()
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def wait_for_quiet(max_wait: float, threshold: float = 0.15) -> str:
    """Wait (up to ``max_wait`` s) until the machine is idle: the runs share it with nobody."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = cpu_busy(2.0)
    note = f"cpu busy before the run {busy:.0%}"
    return note if busy <= threshold else note + " (NOT QUIET: other work shares the machine)"


def process_cpu(pids: Sequence[int]) -> float:
    """CPU seconds (user + system) used so far by the processes ``pids`` that still exist."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def postgres_helpers() -> list[int]:
    """PostgreSQL's own processes (WAL writer, checkpointer, background writer, ...): the work
    they do for our transactions counts as the database's."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith("postgres: ") and any(
            word in cmd for word in ("walwriter", "checkpointer", "background writer")
        ):
            found.append(int(entry.name))
    return found


def schema_url(url: str, schema: str) -> str:
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix) :]
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def admin(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


# --- the brands -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pool:
    """A brand, its members and its campaign (None: no campaign at all): plain values."""

    label: str
    tenant_id: int
    batch_id: int
    sku: str
    member_ids: tuple[int, ...]
    campaign_id: int | None
    hot_prize_id: int | None


def campaign_config(now: dt.datetime, points: int) -> dict[str, Any]:
    return {
        "name": "扫码抽奖 bench",
        "starts_at": (now - dt.timedelta(hours=1)).isoformat(),
        "ends_at": (now + dt.timedelta(days=30)).isoformat(),
        "earn": {"points_per_scan": points},
        "draw": {
            "prizes": [
                {
                    "key": "hot",
                    "name": "热门奖品",
                    "kind": "goods",
                    "probability": "1/2",
                    "stock": HOT_STOCK,
                    "value_fen": HOT_VALUE_FEN,
                },
                {"key": "thanks", "name": "谢谢参与", "kind": "thanks", "probability": "1/2"},
            ],
            "fallback": "thanks",
            "budget_fen": BUDGET_FEN,
            "draws_per_member_per_day": DAY_LIMIT,
            "wins_per_member": WIN_LIMIT,
        },
        "fraud": {},  # the default rules
    }


def make_pool(
    runtime: Runtime,
    slug: str,
    member_count: int,
    *,
    campaign: bool,
    stock_shards: int = 16,
    budget_shards: int = 16,
    points: int = 0,
) -> Pool:
    """A brand with ``member_count`` members (joined a year ago) and, with ``campaign``, the draw
    campaign running, its stock and budget split in (up to) that many shards."""
    now = dt.datetime.now(dt.UTC)
    with runtime.db.unit_of_work() as session:
        brand = make_brand(session, runtime, slug=slug, quantity=100_000_000)
        session.execute(
            text(
                "INSERT INTO members_members (tenant_id, created_at) "
                "SELECT :t, :at FROM generate_series(1, :n)"
            ),
            {"t": brand.tenant_id, "at": now - dt.timedelta(days=365), "n": member_count},
        )
        ids = tuple(
            session.scalars(
                text("SELECT id FROM members_members WHERE tenant_id = :t ORDER BY id"),
                {"t": brand.tenant_id},
            )
        )
        campaign_id = hot = None
        if campaign:
            made = lifecycle.create_campaign(
                session, tenant_id=brand.tenant_id, raw=campaign_config(now, points), actor="bench"
            )
            saved = lifecycle.STOCK_SHARDS, lifecycle.BUDGET_SHARDS
            lifecycle.STOCK_SHARDS, lifecycle.BUDGET_SHARDS = stock_shards, budget_shards
            try:
                lifecycle.schedule_campaign(
                    session, runtime, tenant_id=brand.tenant_id, campaign_id=made.id
                )
            finally:
                lifecycle.STOCK_SHARDS, lifecycle.BUDGET_SHARDS = saved
            campaign_id = made.id
            hot = next(p.id for p in lifecycle.prizes_of(session, made.id) if p.key == "hot")
    return Pool(slug, brand.tenant_id, brand.batch_id, f"{slug}-SKU-1", ids, campaign_id, hot)


def signed_in(pool: Pool, member_id: int) -> members.SignedIn:
    return members.SignedIn(
        pool.tenant_id, member_id, 0, None, dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    )


def reward(runtime: Runtime, pool: Pool, member_id: int, serial: int) -> campaigns.ScanReward:
    """One scan's step 5 through the process's group commit, as the scan service runs a scan: in
    a transaction of its own when it is alone, shared with the units other threads of the
    process have ready at the same moment otherwise (core/group_commit.py)."""
    facts = campaigns.ScanFacts(
        tenant_id=pool.tenant_id,
        batch_id=pool.batch_id,
        serial=serial,
        sku=pool.sku,
        verdict="genuine",
        timezone="Asia/Shanghai",
    )
    member = signed_in(pool, member_id)
    return runtime.db.group_commit.run(
        lambda session: campaigns.reward_scan(session, runtime, member=member, facts=facts)
    )


# --- (a) draws per second -----------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One worker's share of a run."""

    kind: str  # "draws" | "floor"
    settings: dict[str, Any]
    pool: Pool | None
    worker: int
    workers: int
    threads: int  # threads per worker, their units of work through the group commit
    first_serial: int
    seconds: float
    warm: int
    profile: bool


@dataclass(frozen=True)
class Done:
    worker: int
    units: int
    elapsed: float
    cpu: float  # this process's CPU seconds in the timed window
    outcomes: dict[str, int]
    profile: str
    transactions: int = 0  # the group commit's transactions in the timed window


def _floor_unit(engine: Any, rng: Any) -> None:
    with engine.begin() as conn:
        row = rng.randint(1, COUNTER_ROWS)
        conn.execute(text("UPDATE bench_counter SET n = n + 1 WHERE id = :id"), {"id": row})
        conn.execute(
            text("INSERT INTO bench_events (at, payload) VALUES (now(), CAST(:p AS jsonb))"),
            {"p": f'{{"row": {row}, "device": "bench-floor"}}'},
        )


def run_worker(job: Job, start: Any, finish: Any, results: Any) -> None:
    """A spawned worker: its own runtime (or bare engine for the floor), warm-up untimed, then
    units of work until ``job.seconds`` have passed since every worker was released."""
    import random

    rng = random.Random(job.worker)
    runtime = Runtime(Settings(**job.settings))
    set_runtime(runtime)
    outcomes: Counter[str] = Counter()
    tally = threading.Lock()
    try:
        unit: Callable[[int], None]
        if job.kind == "floor":
            engine = create_engine(
                runtime.settings.resolved_database_url, pool_size=2, max_overflow=0
            )

            def unit(i: int) -> None:
                _floor_unit(engine, rng)

        else:
            pool = job.pool
            assert pool is not None
            ids = pool.member_ids
            # Worker w scans as members w, w + W, w + 2W, ...: workers never share a member (no
            # queueing on one member's rows), and a member is seen again only after len(ids) / W
            # scans of this worker.
            mine = ids[job.worker :: job.workers]

            def unit(i: int) -> None:
                got = reward(runtime, pool, mine[i % len(mine)], job.first_serial + i)
                draw = got.draw
                drawn = f"{draw.outcome} {draw.prize_key}" if draw else "no draw"
                with tally:
                    outcomes[f"{got.why}, {drawn}"] += 1

        for i in range(job.warm):
            unit(SERIALS_PER_WORKER - 1 - i)  # serials of their own, at the end of the range
        outcomes.clear()
        group = runtime.db.group_commit
        transactions0 = group.batches
        start.wait()
        # CPU time, not wall time: with more processes than cores a wall-clock profile charges
        # the time a worker waits for a core (or the database) to whatever it was running.
        profiler = cProfile.Profile(time.process_time) if job.profile else None
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        deadline = t0 + job.seconds
        done = 0
        if profiler is not None:
            profiler.enable()
        if job.threads == 1:
            while time.perf_counter() < deadline:
                unit(done)
                done += 1
        else:
            # Each thread takes the next unit number; the units of threads that are ready
            # together share a transaction (core/group_commit.py).
            numbers = itertools.count()
            counted = threading.Lock()

            def loop() -> None:
                nonlocal done
                while time.perf_counter() < deadline:
                    unit(next(numbers))
                    with counted:
                        done += 1

            threads = [threading.Thread(target=loop) for _ in range(job.threads)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        elapsed = time.perf_counter() - t0
        if profiler is not None:
            profiler.disable()
        cpu = time.process_time() - cpu0
        report = ""
        if profiler is not None:
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(r"campaigns|members|core|sqlalchemy", 25)
            report = out.getvalue()
        results.put(
            Done(
                job.worker,
                done,
                elapsed,
                cpu,
                dict(outcomes),
                report,
                group.batches - transactions0,
            )
        )
        # Connections stay open until the parent has read their backends' CPU time.
        finish.wait(timeout=300)
    except BaseException as exc:  # the parent reports it
        results.put(Done(job.worker, -1, 0.0, 0.0, {"error": 1}, repr(exc)))
    finally:
        set_runtime(None)
        runtime.close()


@dataclass(frozen=True)
class Run:
    label: str
    workers: int
    threads: int
    transactions: int  # through the group commit (0 for the floor, which does not use it)
    units: int
    seconds: float
    worker_cpu: float  # the workers' own CPU seconds
    database_cpu: float  # their PostgreSQL backends' and PostgreSQL's helpers' CPU seconds
    machine_busy: float  # share of the machine's CPU busy during the run
    outcomes: Counter[str]
    waits: Counter[str]  # what the backends were doing, sampled
    profile: str

    @property
    def rate(self) -> float:
        return self.units / self.seconds

    @property
    def shape(self) -> str:
        """How the run was made: worker processes, and threads sharing commits in each."""
        if self.threads == 1:
            return f"{self.workers} workers"
        batch = self.units / max(self.transactions, 1)
        return f"{self.workers} workers x {self.threads} threads ({batch:.1f} units a commit)"

    def waits_text(self) -> str:
        total = sum(self.waits.values()) or 1
        return "; ".join(f"{what} {n / total:.0%}" for what, n in self.waits.most_common(6))

    def cpu_text(self) -> str:
        cores = os.cpu_count() or 1
        busy = self.machine_busy * cores * self.seconds
        other = max(busy - self.worker_cpu - self.database_cpu, 0.0)
        per = 1e3 / max(self.units, 1)
        return (
            f"CPU per unit: workers (Python) {self.worker_cpu * per:.2f} ms + PostgreSQL "
            f"{self.database_cpu * per:.2f} ms; machine {self.machine_busy:.0%} busy "
            f"(other processes {other / max(busy, 1e-9):.0%} of that)"
        )


def run_parallel(
    label: str,
    kind: str,
    settings: dict[str, Any],
    pool: Pool | None,
    workers: int,
    first_serial: int,
    args: argparse.Namespace,
    threads: int = 1,
) -> Run:
    ctx = mp.get_context("spawn")
    start, finish = ctx.Barrier(workers + 1), ctx.Barrier(workers + 1)
    results = ctx.Queue()
    jobs = [
        Job(
            kind,
            settings,
            pool,
            w,
            workers,
            threads,
            first_serial + w * SERIALS_PER_WORKER,
            args.seconds,
            args.warm,
            args.profile and w == 0 and kind == "draws",
        )
        for w in range(workers)
    ]
    procs = [ctx.Process(target=run_worker, args=(job, start, finish, results)) for job in jobs]
    for p in procs:
        p.start()
    try:
        start.wait(timeout=300)
        total0, idle0 = cpu_sample()
        monitor = Monitor(args.monitor_url)
        watched = monitor.pids + postgres_helpers()
        db0 = process_cpu(watched)
        done = [results.get(timeout=args.seconds + 300) for _ in procs]
        db1 = process_cpu(watched)
        total1, idle1 = cpu_sample()
        waits = monitor.stop()
        with contextlib.suppress(threading.BrokenBarrierError):
            finish.wait(timeout=60)
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    failed = [d for d in done if d.units < 0]
    if failed:
        raise RuntimeError(f"{label}: worker failed: {failed[0].profile}")
    outcomes: Counter[str] = Counter()
    for d in done:
        outcomes.update(d.outcomes)
    return Run(
        label,
        workers,
        threads,
        sum(d.transactions for d in done),
        sum(d.units for d in done),
        max(d.elapsed for d in done),
        sum(d.cpu for d in done),
        db1 - db0,
        1.0 - (idle1 - idle0) / max(total1 - total0, 1),
        outcomes,
        waits,
        next((d.profile for d in done if d.profile), ""),
    )


def _statement_head(query: str) -> str:
    words = query.split()
    verb = words[0].upper() if words else "?"
    table = next(
        (words[i + 1] for i, w in enumerate(words[:-1]) if w.upper() in ("INTO", "UPDATE", "FROM")),
        "",
    )
    return f"{verb} {table}".strip()


def classify(state: str | None, wait_type: str | None, wait_event: str | None, query: str) -> str:
    """What a worker's backend is doing, in words."""
    if state == "idle":
        return "worker in Python, between transactions"
    if state == "idle in transaction":
        return "worker in Python, inside its transaction"
    if wait_type is None:
        return "PostgreSQL running a statement"
    if wait_type == "Lock":
        return f"waiting for a row lock ({wait_event}): {_statement_head(query)}"
    if wait_event is not None and "WAL" in wait_event:
        return "waiting for the WAL (commit)"
    return f"waiting: {wait_type}/{wait_event}"


class Monitor:
    """What the workers' PostgreSQL backends are doing, sampled from ``pg_stat_activity`` every
    ``interval`` seconds on a connection of its own; and their pids (for their CPU time)."""

    _QUERY = (
        "SELECT pid, state, wait_event_type, wait_event, query FROM pg_stat_activity"
        " WHERE application_name = %s"
    )

    def __init__(self, url: str, interval: float = 0.02) -> None:
        self.conn = psycopg.connect(url, autocommit=True, application_name="yima-bench-monitor")
        self.interval = interval
        self.samples: Counter[str] = Counter()
        self.pids = [row[0] for row in self.conn.execute(self._QUERY, (WORKER_APP,))]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for _pid, state, wait_type, wait_event, query in self.conn.execute(
                self._QUERY, (WORKER_APP,), prepare=True
            ):
                self.samples[classify(state, wait_type, wait_event, query or "")] += 1

    def stop(self) -> Counter[str]:
        self._stop.set()
        self._thread.join()
        self.conn.close()
        return self.samples


@dataclass(frozen=True)
class Audit:
    text: str
    passed: bool


def audit(runtime: Runtime, pool: Pool) -> Audit:
    """Was anything over-issued? Asked of the database after the runs on ``pool``'s campaign."""
    c = pool.campaign_id
    with runtime.db.engine.connect() as conn:
        stock, issued, shards, stock_ok = conn.execute(
            text(
                "SELECT sum(stock), sum(issued), count(*), bool_and(issued <= stock)"
                " FROM campaigns_stock_shards WHERE prize_id = :p"
            ),
            {"p": pool.hot_prize_id},
        ).one()
        limit, spent, budget_shards, budget_ok = conn.execute(
            text(
                "SELECT sum(limit_fen), sum(spent_fen), count(*), bool_and(spent_fen <= limit_fen)"
                " FROM campaigns_budget_shards WHERE campaign_id = :c"
            ),
            {"c": c},
        ).one()
        draws, won, given_fen, units, distinct_units = conn.execute(
            text(
                "SELECT count(*), count(*) FILTER (WHERE outcome = 'won' AND prize_id = :p),"
                " coalesce(sum(value_fen), 0), count(unit),"
                " count(DISTINCT (prize_id, shard, unit)) FILTER (WHERE unit IS NOT NULL)"
                " FROM campaigns_rewards WHERE draw_campaign_id = :c"
            ),
            {"c": c, "p": pool.hot_prize_id},
        ).one()
        most_draws, most_wins = conn.execute(
            text(
                "SELECT coalesce(max(draws), 0), coalesce(max(wins), 0)"
                " FROM campaigns_member_counts WHERE campaign_id = :c"
            ),
            {"c": c},
        ).one()
    checks = {
        "issued <= stock in every shard": bool(stock_ok),
        "spent <= limit in every budget shard": bool(budget_ok),
        "units issued = prizes won": issued == won == units,
        "budget spent = value given": spent == given_fen == won * HOT_VALUE_FEN,
        "(prize, shard, unit) unique": units == distinct_units,
        "member limits held": most_draws <= DAY_LIMIT and most_wins <= WIN_LIMIT,
    }
    passed = all(checks.values())
    lines = (
        f"{draws:,} draws, {won:,} hot prizes won; stock {shards} shards: issued {issued:,} of "
        f"{stock:,}; budget {budget_shards} shards: spent {spent:,} of {limit:,} fen; "
        f"{units:,} units, {distinct_units:,} distinct; busiest member {most_draws} draws, "
        f"{most_wins} wins (limits {DAY_LIMIT}/{WIN_LIMIT})\n    "
        + "; ".join(f"{name}: {ok(v)}" for name, v in checks.items())
    )
    return Audit(lines, passed)


# --- (b) what a draw adds -----------------------------------------------------------------------


class DriverCalls:
    """Statements sent through psycopg (``Cursor.execute``, by verb and table) and commits, with
    the time spent waiting for each kind, while the block runs (this process only)."""

    def __init__(self) -> None:
        self.count: dict[str, float] = defaultdict(float)
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def counting(self) -> Iterator[DriverCalls]:
        cursor_class: Any = psycopg.Cursor
        connection_class: Any = psycopg.Connection
        execute, commit = cursor_class.execute, connection_class.commit
        me = self

        def timed(key: str, call: Callable[[], Any]) -> Any:
            t0 = time.perf_counter()
            try:
                return call()
            finally:
                me.count[key] += 1
                me.seconds[key] += time.perf_counter() - t0

        def timed_execute(cursor: Any, query: Any, *a: Any, **k: Any) -> Any:
            head = _statement_head(query) if isinstance(query, str) else "?"
            return timed(head, lambda: execute(cursor, query, *a, **k))

        def timed_commit(conn: Any) -> None:
            timed("COMMIT", lambda: commit(conn))

        cursor_class.execute = timed_execute
        connection_class.commit = timed_commit
        try:
            yield self
        finally:
            cursor_class.execute = execute
            connection_class.commit = commit

    def per(self, n: int) -> DriverCalls:
        out = DriverCalls()
        out.count = {k: v / n for k, v in self.count.items()}
        out.seconds = {k: v / n for k, v in self.seconds.items()}
        return out


@dataclass(frozen=True)
class Latency:
    draw: list[float]
    plain: list[float]
    select1: list[float]
    empty_uow: list[float]


def bench_latency(
    runtime: Runtime, drawing: Pool, plain: Pool, n: int, warm: int, base: int
) -> tuple[Latency, DriverCalls, DriverCalls]:
    """(b): the two groups alternated call by call, codes from ``base`` on."""
    members_n = len(drawing.member_ids)
    for i in range(warm):
        m = i % members_n
        reward(runtime, drawing, drawing.member_ids[m], base + i)
        reward(runtime, plain, plain.member_ids[m], base + i)
    with_draw: list[float] = []
    without: list[float] = []
    for i in range(warm, warm + n):
        m = i % members_n
        t0 = time.perf_counter()
        reward(runtime, plain, plain.member_ids[m], base + i)
        without.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        got = reward(runtime, drawing, drawing.member_ids[m], base + i)
        with_draw.append(time.perf_counter() - t0)
        assert got.draw is not None, got
    # Floors, in the same process and pool.
    select1: list[float] = []
    empty: list[float] = []
    with psycopg.connect(runtime.settings.resolved_database_url.replace("+psycopg", "")) as raw:
        raw.autocommit = True
        for _ in range(n):
            t0 = time.perf_counter()
            raw.execute("SELECT 1", prepare=True).fetchall()
            select1.append(time.perf_counter() - t0)
    for _ in range(n):
        t0 = time.perf_counter()
        with runtime.db.unit_of_work() as session:
            session.execute(text("SELECT 1"))
        empty.append(time.perf_counter() - t0)
    # One more pass of each, counting what goes to the database.
    counted = min(n, 300)
    after = warm + n
    plain_calls, draw_calls = DriverCalls(), DriverCalls()
    for i in range(after, after + counted):
        m = i % members_n
        with plain_calls.counting():
            reward(runtime, plain, plain.member_ids[m], base + i)
        with draw_calls.counting():
            reward(runtime, drawing, drawing.member_ids[m], base + i)
    return (
        Latency(with_draw, without, select1, empty),
        plain_calls.per(counted),
        draw_calls.per(counted),
    )


def calls_text(calls: DriverCalls, total_ms: float) -> str:
    """Statements per scan and the milliseconds spent in the driver for each kind."""
    statements = sum(v for k, v in calls.count.items() if k != "COMMIT")
    parts = ", ".join(
        f"{k} ×{calls.count[k]:.2g} {ms * 1e3:.2f} ms"
        for k, ms in sorted(calls.seconds.items(), key=lambda kv: -kv[1])
    )
    waiting = sum(calls.seconds.values()) * 1e3
    return (
        f"{statements:.3g} statements + commit per scan; in psycopg's execute and commit (round "
        f"trips and the driver) {waiting:.2f} ms of the median {total_ms:.2f} ms, the rest "
        f"({max(total_ms - waiting, 0):.2f} ms) Python above the driver: {parts}"
    )


# --- the run ------------------------------------------------------------------------------------


def engine_version(runtime: Runtime) -> str:
    with runtime.db.engine.connect() as conn:
        version = str(conn.execute(text("SHOW server_version")).scalar_one()).split()[0]
        fsync = conn.execute(text("SHOW synchronous_commit")).scalar_one()
        autovacuum = conn.execute(text("SHOW autovacuum")).scalar_one()
    return f"PostgreSQL {version} (synchronous_commit {fsync}, autovacuum {autovacuum})"


def run(args: argparse.Namespace, workdir: Path) -> int:
    say(f"machine: {machine()}")
    say(wait_for_quiet(args.quiet_wait))
    url = schema_url(args.database, args.schema)
    with admin(args.database) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{args.schema}"')
    _schema_created.append((args.database, args.schema))
    upgrade_database(url)
    settings: dict[str, Any] = {
        "env": "test",
        "database_url": url,
        "data_dir": workdir / "data",
        "master_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        "secret_key": secrets.token_urlsafe(36),
        "task_mode": "inline",  # a goods prize sends no task; nothing else is dispatched
        "scan_host": "yima.example.com",
    }
    runtime = Runtime(Settings(**settings))
    set_runtime(runtime)
    with runtime.db.engine.begin() as db:
        db.execute(text("CREATE TABLE bench_counter (id int PRIMARY KEY, n bigint NOT NULL)"))
        db.execute(
            text(
                "CREATE TABLE bench_events (id bigserial PRIMARY KEY, at timestamptz NOT NULL,"
                " payload jsonb NOT NULL)"
            )
        )
        db.execute(
            text("INSERT INTO bench_counter SELECT g, 0 FROM generate_series(1, :n) g"),
            {"n": COUNTER_ROWS},
        )
    say(f"{engine_version(runtime)}; schema {args.schema}; no Redis")
    worker_counts = [int(w) for w in args.workers.split(",")]
    try:
        variants = [
            make_pool(runtime, "sharded", args.members, campaign=True),
            make_pool(runtime, "with-points", args.members, campaign=True, points=10),
            make_pool(runtime, "stock-in-one", args.members, campaign=True, stock_shards=1),
            make_pool(
                runtime,
                "all-in-one",
                args.members,
                campaign=True,
                stock_shards=1,
                budget_shards=1,
            ),
        ]
        drawing = make_pool(runtime, "drawing", args.members, campaign=True, points=10)
        plain = make_pool(runtime, "plain", args.members, campaign=False)
        with runtime.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("VACUUM ANALYZE"))
        say(
            f"6 brands of {args.members:,} members: 'sharded' (a draw and no points; stock and "
            "budget in 16 shards), 'with-points' (the same draw and 10 points a scan), "
            "'stock-in-one' (the prize's stock in 1 shard, budget in 16), 'all-in-one' (both in "
            "1), 'drawing' (10 points and the draw, 16 shards, for (b)) and 'plain' (no campaign: "
            "the programme's 10 points)"
        )
        args.monitor_url = url.replace("+psycopg", "")
        args_settings = {
            **settings,
            "data_dir": str(settings["data_dir"]),
            "database_url": f"{url}&application_name={WORKER_APP}",
        }

        # (a)
        say("\n(a) draws per second")
        runs: list[Run] = []
        serial = 1
        # The first run after the tables were made pays for growing them (new pages, index
        # splits): measured at 1.7x the database CPU per draw of later runs. Not counted.
        warm = run_parallel(
            "warm-up", "draws", args_settings, variants[0], max(worker_counts), serial, args
        )
        serial += SERIALS_PER_RUN
        say(f"  warm-up (not counted): {warm.rate:,.0f}/s")
        kinds: list[tuple[str, Pool | None]] = [
            ("floor", None),
            *(("draws", v) for v in variants),
            ("draws", plain),
        ]
        shapes = [
            (workers, threads)
            for workers in worker_counts
            for threads in sorted({1, *(int(t) for t in args.threads.split(","))})
        ]
        for workers, threads in shapes:
            for kind, pool in kinds:
                if pool is None:
                    if threads > 1:
                        continue  # the floor is one transaction per unit, by definition
                    label = "floor UPDATE+INSERT"
                elif pool.campaign_id is None:
                    label = "scans, no campaign"
                else:
                    label = f"draws, {pool.label}"
                r = run_parallel(label, kind, args_settings, pool, workers, serial, args, threads)
                serial += SERIALS_PER_RUN
                runs.append(r)
                say(
                    f"  {label:<20} {r.shape}: {r.rate:7,.0f}/s "
                    f"({r.units:,} in {r.seconds:.1f} s)  {r.cpu_text()}"
                )
                say(f"    backends: {r.waits_text()}")
                if pool is not None:
                    say(f"    outcomes: {dict(r.outcomes.most_common())}")
                if r.profile:
                    say("    -- cProfile of worker 0 (tottime) --")
                    for line in r.profile.splitlines():
                        if line.strip():
                            say("    | " + line)
        audits = {p.label: audit(runtime, p) for p in variants}
        for label, a in audits.items():
            say(f"  audit {label}: {a.text}")

        # (b)
        say("\n(b) what a draw adds to a scan (one process)")
        latency, plain_calls, draw_calls = bench_latency(
            runtime, drawing, plain, args.scans, args.warm, serial
        )
        med_d, med_p = statistics.median(latency.draw) * 1e3, statistics.median(latency.plain) * 1e3
        p99_d, p99_p = pct(latency.draw, 99) * 1e3, pct(latency.plain, 99) * 1e3
        added = med_d - med_p
        say(f"  with the draw campaign: median {med_d:.2f} ms, p99 {p99_d:.2f} ms")
        say(
            f"  no campaign at all:     median {med_p:.2f} ms, p99 {p99_p:.2f} ms "
            f"(n={args.scans:,} each, alternated)"
        )
        say(f"  added: {added:+.2f} ms median, {p99_d - p99_p:+.2f} ms p99")
        floor_rt = statistics.median(latency.select1) * 1e3
        floor_uow = statistics.median(latency.empty_uow) * 1e3
        say(
            f"  floor: SELECT 1 round trip {floor_rt:.3f} ms; unit of work BEGIN/SELECT 1/COMMIT "
            f"{floor_uow:.2f} ms (medians)"
        )
        say(f"  no campaign: {calls_text(plain_calls, med_p)}")
        say(f"  with draw:   {calls_text(draw_calls, med_d)}")
        draw_audit = audit(runtime, drawing)
        say(f"  audit drawing: {draw_audit.text}")
    finally:
        set_runtime(None)
        runtime.close()

    def best(label: str, threads: int | None = None) -> Run:
        return max(
            (r for r in runs if r.label == label and threads in (None, r.threads)),
            key=lambda r: r.rate,
        )

    b_sharded, b_points, b_stock1, b_all1 = (best(f"draws, {v.label}") for v in variants)
    b_floor, b_plain = best("floor UPDATE+INSERT"), best("scans, no campaign")
    alone = best("draws, sharded", threads=1)
    passed_audits = all(a.passed for a in audits.values()) and draw_audit.passed
    say(f"\n== summary  (nproc={os.cpu_count()}, {cpu_model()}, loadavg={os.getloadavg()[0]:.2f})")
    tried = f"best of {args.workers} workers x {args.threads} threads"
    rows = [
        ("figure", "target", "measured"),
        (
            f"draws/s, 16 shards ({tried})",
            ">= 2,000/s",
            f"{b_sharded.rate:,.0f}/s with {b_sharded.shape} "
            f"{ok(b_sharded.rate >= TARGETS['draws_per_s'])}",
        ),
        (
            "draws/s, 16 shards, a transaction each",
            "—",
            f"{alone.rate:,.0f}/s with {alone.shape} (sharing commits: "
            f"{b_sharded.rate / alone.rate:.2f}x)",
        ),
        (
            "scans/s with 10 points and the draw",
            "—",
            f"{b_points.rate:,.0f}/s with {b_points.shape} "
            f"(points only: {b_points.rate / b_plain.rate:.0%} of that)",
        ),
        (
            "draws/s, the stock in 1 shard",
            "—",
            f"{b_stock1.rate:,.0f}/s with {b_stock1.shape} "
            f"(16 shards: {b_sharded.rate / max(b_stock1.rate, 1e-9):.2f}x)",
        ),
        (
            "draws/s, stock and budget in 1 shard",
            "—",
            f"{b_all1.rate:,.0f}/s with {b_all1.shape} "
            f"(16 shards: {b_sharded.rate / max(b_all1.rate, 1e-9):.2f}x)",
        ),
        (
            "scans/s with no campaign (points only)",
            "—",
            f"{b_plain.rate:,.0f}/s with {b_plain.shape} "
            f"(the draws: {b_sharded.rate / b_plain.rate:.0%} of it)",
        ),
        (
            "floor: UPDATE+INSERT transactions/s",
            "—",
            f"{b_floor.rate:,.0f}/s with {b_floor.shape} "
            f"(the draws: {b_sharded.rate / b_floor.rate:.0%} of it)",
        ),
        ("nothing over-issued (stock, budget, units)", "all hold", ok(passed_audits)),
        (
            "a draw added to a scan, median",
            "<= 3 ms",
            f"{added:+.2f} ms (scan {med_d:.2f} vs {med_p:.2f} ms; p99 {p99_d:.2f} vs "
            f"{p99_p:.2f} ms) {ok(added <= TARGETS['added_ms'])}",
        ),
        ("floor: SELECT 1 / empty unit of work", "—", f"{floor_rt:.3f} ms / {floor_uow:.2f} ms"),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for i, row in enumerate(rows):
        say(" | ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
        if i == 0:
            say("-+-".join("-" * w for w in widths))
    return 0 if passed_audits else 1


_schema_created: list[tuple[str, str]] = []


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    parser.add_argument("--schema", default="yima_bench_draws")
    parser.add_argument(
        "--workers", default="2,4", help="worker processes for (a), a comma list: each is run"
    )
    parser.add_argument(
        "--threads",
        default="32",
        help="threads per worker for (a), a comma list: 1 (always run, with the floor) is a"
        " transaction per unit; more share commits through the group commit (the scan app on"
        " gunicorn --threads)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each (a) run")
    parser.add_argument("--warm", type=int, default=200, help="untimed scans first, per worker")
    parser.add_argument("--members", type=int, default=20_000, help="members per brand")
    parser.add_argument("--scans", type=int, default=2_000, help="timed scans per group in (b)")
    parser.add_argument("--profile", action="store_true", help="cProfile worker 0 of each run")
    parser.add_argument(
        "--quiet-wait", type=float, default=30.0, help="seconds to wait for an idle machine"
    )
    parser.add_argument("--timeout", type=int, default=1800, help="give up after this long")
    parser.add_argument("--keep", action="store_true", help="keep the schema for a look")
    args = parser.parse_args()

    def _terminate(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, _terminate)
    signal.alarm(args.timeout)
    workdir = Path(tempfile.mkdtemp(prefix="yima-bench-draws-"))
    try:
        return run(args, workdir)
    except KeyboardInterrupt as exc:
        say(f"\ninterrupted ({exc}): cleaning up")
        return 130
    finally:
        signal.alarm(0)
        if args.keep:
            say(f"kept schema {args.schema}")
        else:
            for database, schema in _schema_created:
                with contextlib.suppress(Exception), admin(database) as conn:
                    conn.execute("SET lock_timeout = '30s'")
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
