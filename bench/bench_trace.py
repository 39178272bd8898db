"""Benchmark: the traceability figures (DESIGN §6, §11), in process on PostgreSQL.

Run: ``.venv/bin/python bench/bench_trace.py [--pairs 200000] [--trail-codes 5000] [--scans 2000]``
(about two minutes with the defaults, bounded by ``--timeout``; ``--help`` lists the volumes).

1. Aggregation ingest, target ≥ 50,000 parent/child pairs/s: ``traceability.pack`` of
   ``--pairs`` pairs (items into cases of 24, cases onto pallets of 40) in one upload, committed,
   into a table that already holds ``--preload`` pairs (earlier days of the line); then the path
   a packing line takes on the same volume: ``traceability.resolve_codes`` of the scanned texts
   (offline verification; bare tokens, then short URLs) plus ``traceability.pack``; then ``POST
   /api/v1/trace/packings`` (JSON, then text/csv) through the Flask test client in requests of
   ``--http-chunk`` pairs, when the console has that route. First of all, ``--empty-table-pairs``
   packed right after ANALYZE saw an empty table: a new installation's first big upload.
2. Shipping a pallet of 417 cases × 24 items (10,008 items, activated first):
   ``traceability.ship`` of the pallet to a distributor, committed, target under a second and
   O(cases) rows, not O(items); rows counted in every ``trace_*`` table before and after.
3. Activating a 10,000,000-code range, target under 100 ms and O(1) rows: ``record_activation``
   on fresh batches (median of ``--activations``), and a deactivation of 1,000 codes in the middle
   (it splits the span in three).
4. The journey and diversion check, target ≤ 2 ms median added to a scan:
   ``traceability.code_trail`` + ``anti_fraud.diversion_of`` for items in a case on a pallet
   shipped to a distributor and on to a dealer (both received), ``--trail-codes`` drawn at
   random; then whole ``scan_service.orchestrator.scan`` calls (each in its own unit of work) for
   such codes and for codes of a brand that never used traceability, alternated, and the
   difference of medians.

Everything runs in this process against PostgreSQL at 127.0.0.1 in a private schema
(``yima_bench_trace``, created, migrated and dropped at the end) with no Redis (the in-process
fallbacks); every timing includes the commit. The trace tables get a VACUUM ANALYZE before each
measured step, as autovacuum would give them in service (the development server runs with
autovacuum off). Statements are counted with SQLAlchemy events (the
COPY that ``traceability.pack`` streams through the driver is not a statement). ``--profile`` prints
where the time goes in each measured step (cProfile; the timings then include its overhead).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import cProfile
import io
import json
import os
import pstats
import re
import secrets
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

import numpy as np
import psycopg
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

import codegen
import traceability
from anti_fraud import ScanRequest, diversion_of, geo
from bench.machine import cpu_model, machine
from codegen.tokens import mint_short_array, short_url
from core import services as core_services
from core.config import Settings
from core.runtime import Runtime, set_runtime, upgrade_database
from scan_service import orchestrator
from traceability.packing import MAX_PAIRS

HOST = "yima.example.com"
TARGETS = {"pairs_per_s": 50_000.0, "ship_s": 1.0, "activation_ms": 100.0, "trail_ms": 2.0}
PACKINGS_ROUTE = "/api/v1/trace/packings"
UPLOAD_MAX = MAX_PAIRS  # what one upload may carry
# Places a scan comes from: inside the dealer's city, elsewhere in its province (outside the
# dealer's city, inside its distributor's province), and another province.
PLACES = {
    "Hangzhou": (30.274, 120.155),
    "Ningbo": (29.868, 121.544),
    "Guangzhou": (23.129, 113.264),
}


def say(line: str = "") -> None:
    print(line, flush=True)


def loadavg() -> str:
    return "loadavg=(" + ", ".join(f"{x:.2f}" for x in os.getloadavg()) + ")"


def cpu_busy(seconds: float = 1.0) -> float:
    """The share of the machine's CPU time spent busy over ``seconds`` (all processes)."""

    def sample() -> tuple[int, int]:
        values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(values), values[3] + values[4]  # idle + iowait

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def wait_for_quiet(max_wait: float, threshold: float = 0.15) -> str:
    """Wait (up to ``max_wait`` s) until the machine is idle: the run shares it with nobody."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = cpu_busy(2.0)
    note = f"cpu busy before the run {busy:.0%}"
    return note if busy <= threshold else note + " (NOT QUIET: other work shares the machine)"


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ok(passed: bool) -> str:
    return "pass" if passed else "FAIL"


# --- measuring helpers ------------------------------------------------------------------------


class Statements:
    """SQL statements the engine runs inside the ``with`` block: by verb, their time in the
    driver (round trip included) and the slowest one."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.by_verb: Counter[str] = Counter()
        self.driver_ms = 0.0
        self.slowest = (0.0, "", 0)

    def __enter__(self) -> Statements:
        event.listen(self.engine, "before_cursor_execute", self._before)
        event.listen(self.engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, *_: Any) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    def _after(
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        ms = (time.perf_counter() - conn.info.pop("bench_t0", time.perf_counter())) * 1000
        words = statement.split()
        verb = words[0].upper() if words else "?"
        self.by_verb[verb] += 1
        self.driver_ms += ms
        if ms > self.slowest[0]:
            table = re.search(r"\b(?:FROM|INTO|UPDATE)\s+(\w+)", statement, re.IGNORECASE)
            what = f"{verb} {table.group(1) if table else ''}".strip()
            size = len(parameters) if isinstance(parameters, dict) and not executemany else 0
            self.slowest = (ms, what, size)

    @property
    def total(self) -> int:
        return sum(self.by_verb.values())

    def slowest_text(self) -> str:
        ms, what, size = self.slowest
        return f"slowest {ms:,.1f} ms: {what}" + (f" ({size:,} parameters)" if size else "")

    def __str__(self) -> str:
        parts = ", ".join(f"{v} {n}" for v, n in self.by_verb.most_common())
        return f"{self.total} statements ({parts}), {self.driver_ms:,.1f} ms in the driver"


def trace_rows(engine: Engine) -> dict[str, int]:
    """Rows in every ``trace_*`` table of the schema."""
    with engine.connect() as conn:
        names = (
            conn.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                    "AND tablename LIKE 'trace\\_%' ORDER BY tablename"
                )
            )
            .scalars()
            .all()
        )
        return {
            n: int(conn.execute(text(f'SELECT count(*) FROM "{n}"')).scalar_one()) for n in names
        }


def analyze(engine: Engine) -> None:
    """VACUUM ANALYZE the trace tables, as autovacuum keeps them in service: hint bits set and
    planner statistics fresh (a server with autovacuum off, like the development machine's,
    would have neither)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        names = conn.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "AND tablename LIKE 'trace\\_%'"
            )
        ).scalars()
        for name in list(names):
            conn.execute(text(f'VACUUM (ANALYZE) "{name}"'))


def rows_written(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {t: after[t] - before.get(t, 0) for t in after if after[t] != before.get(t, 0)}


def describe_rows(delta: dict[str, int]) -> str:
    total = sum(delta.values())
    return f"{total:+,} rows (" + ", ".join(f"{t} {n:+,}" for t, n in delta.items()) + ")"


@contextlib.contextmanager
def profiled(enabled: bool, label: str, lines: int = 18) -> Iterator[None]:
    if not enabled:
        yield
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(lines)
        say(f"  -- cProfile: {label} (cumulative) --")
        for line in out.getvalue().splitlines():
            if line.strip() and not line.startswith(("   Ordered by", "   List reduced")):
                say("  | " + line)


# --- the data -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Brand:
    tenant_id: int
    product_id: int
    name: str


@dataclass(frozen=True)
class Batch:
    batch_id: int
    key_id: int
    quantity: int


@dataclass(frozen=True)
class Layout:
    """Items 1..I, then cases, then pallets, in one batch; item i in case i // case_size."""

    pallets: int
    cases_per_pallet: int
    case_size: int

    @property
    def cases(self) -> int:
        return self.pallets * self.cases_per_pallet

    @property
    def items(self) -> int:
        return self.cases * self.case_size

    @property
    def quantity(self) -> int:
        return self.items + self.cases + self.pallets

    @property
    def pairs(self) -> int:
        return self.items + self.cases

    def pallet_serial(self, pallet: int) -> int:
        return self.items + self.cases + pallet + 1

    def serial_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(parents, children) in the order a line packs: a case's items, then the case onto
        its pallet."""
        size = self.case_size
        cases = np.arange(self.cases, dtype=np.int64)
        parents = np.empty((self.cases, size + 1), dtype=np.int64)
        children = np.empty((self.cases, size + 1), dtype=np.int64)
        parents[:, :size] = (self.items + cases + 1)[:, None]
        parents[:, size] = self.items + self.cases + cases // self.cases_per_pallet + 1
        children[:, :size] = cases[:, None] * size + np.arange(1, size + 1)[None, :]
        children[:, size] = self.items + cases + 1
        return parents.ravel(), children.ravel()


class Bench:
    def __init__(self, runtime: Runtime, args: argparse.Namespace) -> None:
        self.runtime = runtime
        self.args = args
        self.engine = runtime.db.engine
        self._lots = 0

    def count_rows(self, table: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one())

    def brand(self, slug: str, name: str) -> Brand:
        with self.runtime.db.unit_of_work() as session:
            tenant = core_services.create_tenant(session, slug=slug, name=name)
            product = codegen.create_product(
                session, tenant_id=tenant.id, sku=f"{slug.upper()}-250", name=f"{name} 250 g"
            )
            return Brand(tenant.id, product.id, name)

    def batch(self, brand: Brand, quantity: int) -> Batch:
        self._lots += 1
        with self.runtime.db.unit_of_work() as session:
            made = codegen.create_batch(
                session,
                runtime=self.runtime,
                tenant_id=brand.tenant_id,
                product_id=brand.product_id,
                lot=f"B{self._lots:04d}",
                quantity=quantity,
                factory="Hangzhou plant",
            )
            return Batch(made.id, made.key_id, quantity)

    def tokens(self, batch: Batch, serials: np.ndarray) -> list[str]:
        """The printed tokens of ``serials``, minted in bulk (``code_for_serial`` is one by one)."""
        cache = codegen.key_ring_cache(self.runtime)
        key = cache.ring().get(batch.key_id)
        if key is None:
            cache.invalidate()
            key = cache.ring().get(batch.key_id)
        assert key is not None, f"key {batch.key_id} is not in the key ring"
        minted = mint_short_array(key, batch.batch_id, serials.astype(np.uint64))
        return [row.decode() for row in minted.view("S29").ravel()]

    def activate_all(self, brand: Brand, batch: Batch) -> None:
        with self.runtime.db.unit_of_work() as session:
            traceability.record_activation(
                session,
                self.runtime,
                tenant_id=brand.tenant_id,
                action="activate",
                scope="range",
                ranges=[traceability.SerialRange(batch.batch_id, 1, batch.quantity)],
                operator="line-1 operator",
                line="L1",
                site="Hangzhou plant",
            )

    def pack_layout(self, brand: Brand, batch: Batch, layout: Layout) -> float:
        parents, children = layout.serial_pairs()
        b = batch.batch_id
        pairs = [
            (traceability.CodeRef(b, p), traceability.CodeRef(b, c))
            for p, c in zip(parents.tolist(), children.tolist(), strict=True)
        ]
        t0 = time.perf_counter()
        for i in range(0, len(pairs), UPLOAD_MAX):  # one upload at most
            with self.runtime.db.unit_of_work() as session:
                done = traceability.pack(
                    session,
                    self.runtime,
                    tenant_id=brand.tenant_id,
                    pairs=pairs[i : i + UPLOAD_MAX],
                    operator="plc",
                )
            assert done.packed == len(pairs[i : i + UPLOAD_MAX]), done
        return time.perf_counter() - t0


# --- 1. aggregation ingest ----------------------------------------------------------------------


@dataclass
class Figure:
    name: str
    target: str
    measured: str
    detail: str
    result: str


def ingest_layout(pairs: int, case_size: int) -> Layout:
    cases_per_pallet = 40
    per_pallet = cases_per_pallet * (case_size + 1)
    return Layout(max(1, round(pairs / per_pallet)), cases_per_pallet, case_size)


def bench_ingest(bench: Bench, brand: Brand, figures: list[Figure]) -> None:
    args, runtime = bench.args, bench.runtime
    layout = ingest_layout(args.pairs, args.case_size)
    n = layout.pairs
    say(
        f"\n== 1. aggregation ingest: {n:,} pairs ({layout.items:,} items into {layout.cases:,} "
        f"cases of {layout.case_size}, cases onto {layout.pallets:,} pallets of "
        f"{layout.cases_per_pallet}), one upload each, committed ({loadavg()})"
    )
    parents, children = layout.serial_pairs()

    # (0) A new installation: the first big upload after autoanalyze saw a (nearly) empty table.
    if args.empty_table_pairs:
        small = ingest_layout(args.empty_table_pairs, args.case_size)
        batch = bench.batch(brand, small.quantity)
        analyze(bench.engine)  # trace_packings is empty: its statistics now say so
        elapsed = bench.pack_layout(brand, batch, small)
        rate = small.pairs / elapsed
        say(
            f"  first upload into a just-analyzed empty table, {small.pairs:,} pairs: "
            f"{elapsed:6.2f} s = {rate:,.0f} pairs/s"
        )
        figures.append(
            Figure(
                f"ingest: first upload into an analyzed empty table, {small.pairs:,} pairs",
                "≥ 50,000 pairs/s",
                f"{rate:,.0f} pairs/s",
                f"{elapsed:.2f} s; the planner thinks the table empty: checks must not scan it",
                ok(rate >= TARGETS["pairs_per_s"]),
            )
        )
    # What earlier days of the line left in the table (the uploads below check against it).
    if args.preload:
        before = bench.count_rows("trace_packings")
        pre = ingest_layout(args.preload, args.case_size)
        analyze(bench.engine)
        elapsed = bench.pack_layout(brand, bench.batch(brand, pre.quantity), pre)
        say(
            f"  preload: {pre.pairs:,} pairs packed in {elapsed:.2f} s "
            f"({pre.pairs / elapsed:,.0f} pairs/s, into a table of {before:,} packings)"
        )

    # (a) the service, given resolved codes.
    batch = bench.batch(brand, layout.quantity)
    b = batch.batch_id
    pairs = [
        (traceability.CodeRef(b, p), traceability.CodeRef(b, c))
        for p, c in zip(parents.tolist(), children.tolist(), strict=True)
    ]
    analyze(bench.engine)
    held = bench.count_rows("trace_packings")
    with Statements(bench.engine) as st, profiled(args.profile, "traceability.pack"):
        t0 = time.perf_counter()
        with runtime.db.unit_of_work() as session:
            done = traceability.pack(
                session, runtime, tenant_id=brand.tenant_id, pairs=pairs, operator="plc", line="L1"
            )
        elapsed = time.perf_counter() - t0
    assert (done.packed, done.already_packed) == (n, 0), done
    rate = n / elapsed
    say(
        f"  traceability.pack (table of {held:,} packings): {elapsed:6.2f} s = "
        f"{rate:>9,.0f} pairs/s; {st}"
    )
    figures.append(
        Figure(
            f"ingest: traceability.pack, {n:,} pairs",
            "≥ 50,000 pairs/s",
            f"{rate:,.0f} pairs/s",
            f"{elapsed:.2f} s, {st.total} statements + COPY; table of {held:,}",
            ok(rate >= TARGETS["pairs_per_s"]),
        )
    )
    # Retried by the line controller: every pair is already there, nothing to do.
    t0 = time.perf_counter()
    with runtime.db.unit_of_work() as session:
        again = traceability.pack(
            session, runtime, tenant_id=brand.tenant_id, pairs=pairs, operator="plc"
        )
    retry = time.perf_counter() - t0
    assert (again.packed, again.already_packed) == (0, n), again
    say(f"  the same upload again (retry):  {retry:6.2f} s = {n / retry:>9,.0f} pairs/s (no-op)")
    del pairs

    # (b) the packing line's path: resolve the scanned texts, then pack.
    for form in ("token", "url"):
        batch = bench.batch(brand, layout.quantity)
        tokens = bench.tokens(batch, np.arange(1, batch.quantity + 1))
        if form == "url":
            tokens = [short_url(HOST, t) for t in tokens]
        texts: list[str] = []
        for p, c in zip(parents.tolist(), children.tolist(), strict=True):
            texts.append(tokens[p - 1])
            texts.append(tokens[c - 1])
        del tokens
        label = "bare tokens" if form == "token" else "short URLs"
        analyze(bench.engine)
        held = bench.count_rows("trace_packings")
        with Statements(bench.engine) as st, profiled(args.profile, f"resolve ({label}) + pack"):
            t0 = time.perf_counter()
            with runtime.db.unit_of_work() as session:
                fields = [f"pairs[{i // 2}].{'child' if i % 2 else 'parent'}" for i in range(2 * n)]
                refs = traceability.resolve_codes(
                    runtime, session, tenant_id=brand.tenant_id, texts=texts, fields=fields
                )
                t_resolved = time.perf_counter()
                done = traceability.pack(
                    session,
                    runtime,
                    tenant_id=brand.tenant_id,
                    pairs=list(zip(refs[0::2], refs[1::2], strict=True)),
                    operator="plc",
                    line="L1",
                )
            elapsed = time.perf_counter() - t0
        assert done.packed == n, done
        rate = n / elapsed
        resolve_s = t_resolved - t0
        say(
            f"  resolve_codes ({label}) + pack: {elapsed:6.2f} s = {rate:>9,.0f} pairs/s "
            f"(resolving {2 * n:,} texts {resolve_s:.2f} s = {2 * n / resolve_s:,.0f} codes/s; "
            f"pack {elapsed - resolve_s:.2f} s; table of {held:,} packings); {st}"
        )
        figures.append(
            Figure(
                f"ingest: resolve_codes ({label}) + pack",
                "≥ 50,000 pairs/s",
                f"{rate:,.0f} pairs/s",
                f"{elapsed:.2f} s: resolve {resolve_s:.2f} s, pack {elapsed - resolve_s:.2f} s",
                ok(rate >= TARGETS["pairs_per_s"]),
            )
        )
        del texts, refs
    bench_ingest_http(bench, brand, layout, figures)


def bench_ingest_http(bench: Bench, brand: Brand, layout: Layout, figures: list[Figure]) -> None:
    """``POST /api/v1/trace/packings`` through the Flask test client, when the console has it."""
    import console

    args, runtime = bench.args, bench.runtime
    app = console.create_app(runtime.settings)
    app_runtime = app.extensions["yima.runtime"]
    set_runtime(runtime)
    try:
        methods = {
            m for r in app.url_map.iter_rules() if r.rule == PACKINGS_ROUTE for m in r.methods or ()
        }
        if "POST" not in methods:
            say(f"  POST {PACKINGS_ROUTE}: not measured, the console has no such route")
            figures.append(
                Figure(
                    f"ingest: POST {PACKINGS_ROUTE}",
                    "≥ 50,000 pairs/s",
                    "not measured",
                    "the console has no such route yet",
                    "skipped",
                )
            )
            return
        with runtime.db.unit_of_work() as session:
            api_key = core_services.create_api_key(
                session, tenant_id=brand.tenant_id, name="bench", role="admin"
            ).token
        client = app.test_client()
        headers = {"Authorization": f"Bearer {api_key}"}
        parents, children = layout.serial_pairs()
        chunk = args.http_chunk
        for form in ("json", "csv"):
            batch = bench.batch(brand, layout.quantity)
            tokens = bench.tokens(batch, np.arange(1, batch.quantity + 1))
            rows = [
                (tokens[p - 1], tokens[c - 1])
                for p, c in zip(parents.tolist(), children.tolist(), strict=True)
            ]
            del tokens
            n = len(rows)
            bodies: list[dict[str, Any]] = []
            for i in range(0, n, chunk):
                part = rows[i : i + chunk]
                if form == "json":
                    pairs = [{"parent": a, "child": b} for a, b in part]
                    body = json.dumps({"pairs": pairs, "line": "L1"})
                    bodies.append({"data": body, "content_type": "application/json"})
                else:
                    csv_text = "parent,child\n" + "".join(f"{a},{b}\n" for a, b in part)
                    bodies.append({"data": csv_text, "content_type": "text/csv"})
            analyze(bench.engine)
            held = bench.count_rows("trace_packings")
            failure = None
            packed = 0
            st = Statements(app_runtime.db.engine)
            with st, profiled(args.profile, f"POST {PACKINGS_ROUTE} ({form})"):
                t0 = time.perf_counter()
                for i, body in enumerate(bodies):
                    answer = client.post(PACKINGS_ROUTE, headers=headers, **body)
                    if answer.status_code >= 300:
                        failure = (
                            f"request {i + 1}: HTTP {answer.status_code} "
                            f"{answer.get_data(as_text=True)[:300]}"
                        )
                        break
                    packed += int(answer.get_json()["packed"])
                elapsed = time.perf_counter() - t0
            name = f"ingest: POST {PACKINGS_ROUTE} ({form})"
            if failure is not None:
                say(f"  POST {PACKINGS_ROUTE} ({form}): failed, {failure}")
                figures.append(Figure(name, "≥ 50,000 pairs/s", "failed", failure[:60], "FAIL"))
                continue
            assert packed == n, (packed, n)
            rate = n / elapsed
            say(
                f"  POST {PACKINGS_ROUTE} ({form}, {len(bodies)} requests of {chunk:,} pairs, "
                f"test client, table of {held:,} packings): {elapsed:6.2f} s = "
                f"{rate:,.0f} pairs/s; {st}; {st.slowest_text()}"
            )
            figures.append(
                Figure(
                    name,
                    "≥ 50,000 pairs/s",
                    f"{rate:,.0f} pairs/s",
                    f"{elapsed:.2f} s, {len(bodies)} requests of {chunk:,} pairs; "
                    f"{st.driver_ms / 1000:.2f} s in the driver",
                    ok(rate >= TARGETS["pairs_per_s"]),
                )
            )
    finally:
        if app_runtime is not runtime:
            app_runtime.close()
        set_runtime(runtime)


# --- 2. shipping a pallet -----------------------------------------------------------------------


@dataclass
class Network:
    distributor_id: int
    dealer_id: int
    layout: Layout
    batch: Batch


def bench_shipping(bench: Bench, brand: Brand, figures: list[Figure]) -> Network:
    args, runtime = bench.args, bench.runtime
    layout = Layout(args.ship_pallets, args.pallet_cases, args.case_size)
    per_pallet = layout.cases_per_pallet * layout.case_size
    say(
        f"\n== 2. shipping a pallet: {layout.pallets} pallets of {layout.cases_per_pallet} cases "
        f"× {layout.case_size} = {per_pallet:,} items, each shipped on its own, committed "
        f"({loadavg()})"
    )
    batch = bench.batch(brand, layout.quantity)
    bench.activate_all(brand, batch)
    packed_s = bench.pack_layout(brand, batch, layout)
    with runtime.db.unit_of_work() as session:
        east = traceability.create_distributor(
            session,
            tenant_id=brand.tenant_id,
            code="ZJ-01",
            name="浙江总代",
            level="provincial",
            regions=["CN-ZJ"],
        )
        dealer = traceability.create_distributor(
            session,
            tenant_id=brand.tenant_id,
            code="HZ-07",
            name="杭州西湖经销商",
            level="dealer",
            parent_id=east.id,
            regions=["CN-ZJ/杭州市"],
        )
        network = Network(east.id, dealer.id, layout, batch)
    say(
        f"  setup: batch of {batch.quantity:,} activated (one range), {layout.pairs:,} pairs "
        f"packed in {packed_s:.2f} s; distributor ZJ-01 (CN-ZJ) and its dealer HZ-07 "
        f"(CN-ZJ/杭州市)"
    )
    analyze(bench.engine)
    times: list[float] = []
    deltas: list[dict[str, int]] = []
    statements: list[Statements] = []
    for p in range(layout.pallets):
        pallet = traceability.CodeRef(batch.batch_id, layout.pallet_serial(p))
        before = trace_rows(bench.engine)
        with Statements(bench.engine) as st, profiled(args.profile and p == 0, "traceability.ship"):
            t0 = time.perf_counter()
            with runtime.db.unit_of_work() as session:
                shipment = traceability.ship(
                    session,
                    runtime,
                    tenant_id=brand.tenant_id,
                    reference=f"DN-{p + 1:04d}",
                    to_distributor_id=network.distributor_id,
                    units=[pallet],
                    operator="warehouse",
                )
                code_count = shipment.code_count
            times.append(time.perf_counter() - t0)
        assert code_count == 1 + layout.cases_per_pallet + per_pallet, code_count
        deltas.append(rows_written(before, trace_rows(bench.engine)))
        statements.append(st)
        say(
            f"  pallet {p + 1}: {times[-1] * 1000:7.1f} ms, {code_count:,} codes shipped, "
            f"{describe_rows(deltas[-1])}; {st}; {st.slowest_text()}"
        )
    median = statistics.median(times)
    rows = max(sum(d.values()) for d in deltas)
    passed = median < TARGETS["ship_s"] and rows <= layout.cases_per_pallet
    figures.append(
        Figure(
            f"ship a pallet of {per_pallet:,} items",
            f"< 1 s; O(cases) rows (≤ {layout.cases_per_pallet})",
            f"{median * 1000:,.0f} ms, {rows} rows",
            f"median of {len(times)}, max {max(times) * 1000:,.0f} ms; "
            f"{statements[-1].total} statements, {statements[-1].slowest_text()}",
            ok(passed),
        )
    )
    # The distributor receives, ships each pallet on to its dealer, who receives it too.
    east_hq = traceability.Located(country="CN", division="CN-ZJ", city="杭州市", precision="city")
    with runtime.db.unit_of_work() as session:
        firsts = traceability.list_shipments(
            session, tenant_id=brand.tenant_id, distributor_id=network.distributor_id, limit=1000
        )
        for s in firsts:
            traceability.receive(
                session,
                tenant_id=brand.tenant_id,
                shipment_id=s.id,
                operator="zj",
                location=east_hq,
            )
        for p in range(layout.pallets):
            onward = traceability.ship(
                session,
                runtime,
                tenant_id=brand.tenant_id,
                reference=f"ZJ-{p + 1:04d}",
                from_distributor_id=network.distributor_id,
                to_distributor_id=network.dealer_id,
                units=[traceability.CodeRef(batch.batch_id, layout.pallet_serial(p))],
                operator="zj-warehouse",
            )
            traceability.receive(
                session,
                tenant_id=brand.tenant_id,
                shipment_id=onward.id,
                operator="hz",
                location=east_hq,
            )
    return network


# --- 3. activation --------------------------------------------------------------------------------


def bench_activation(bench: Bench, brand: Brand, figures: list[Figure]) -> None:
    args, runtime = bench.args, bench.runtime
    n = args.activation_codes
    middle = n // 2
    hole = traceability.SerialRange(0, middle - 499, middle + 500)
    say(
        f"\n== 3. activation: a range of {n:,} codes on a fresh batch, then 1,000 of them "
        f"deactivated in the middle (#{hole.first:,}-#{hole.last:,}), committed; "
        f"{args.activations} times ({loadavg()})"
    )
    on_ms: list[float] = []
    off_ms: list[float] = []
    on_rows: list[int] = []
    off_rows: list[int] = []
    for i in range(args.activations):
        batch = bench.batch(brand, n)
        before = trace_rows(bench.engine)
        with Statements(bench.engine) as st_on, profiled(args.profile and i == 0, "activation"):
            t0 = time.perf_counter()
            with runtime.db.unit_of_work() as session:
                traceability.record_activation(
                    session,
                    runtime,
                    tenant_id=brand.tenant_id,
                    action="activate",
                    scope="range",
                    ranges=[traceability.SerialRange(batch.batch_id, 1, n)],
                    operator="line-1 operator",
                    line="L1",
                    site="Hangzhou plant",
                )
            on_ms.append((time.perf_counter() - t0) * 1000)
        middle_rows = trace_rows(bench.engine)
        with Statements(bench.engine) as st_off:
            t0 = time.perf_counter()
            with runtime.db.unit_of_work() as session:
                traceability.record_activation(
                    session,
                    runtime,
                    tenant_id=brand.tenant_id,
                    action="deactivate",
                    scope="range",
                    ranges=[traceability.SerialRange(batch.batch_id, hole.first, hole.last)],
                    operator="qa",
                    reason="damaged",
                )
            off_ms.append((time.perf_counter() - t0) * 1000)
        after = trace_rows(bench.engine)
        on_delta, off_delta = rows_written(before, middle_rows), rows_written(middle_rows, after)
        on_rows.append(sum(on_delta.values()))
        off_rows.append(sum(off_delta.values()))
        say(
            f"  batch {batch.batch_id}: activate {on_ms[-1]:6.1f} ms, {describe_rows(on_delta)}, "
            f"{st_on}; deactivate {off_ms[-1]:6.1f} ms, "
            f"{describe_rows(off_delta)}, {st_off}"
        )
        with runtime.db.read_only() as session:
            states = [
                traceability.activation_state(session, traceability.CodeRef(batch.batch_id, s))
                for s in (1, hole.first - 1, hole.first, hole.last, hole.last + 1, n)
            ]
        assert [s.active if s else None for s in states] == [True, True, False, False, True, True]
    on, off = statistics.median(on_ms), statistics.median(off_ms)
    figures.append(
        Figure(
            f"activate a {n:,}-code range",
            "< 100 ms; O(1) rows",
            f"{on:,.1f} ms, {max(on_rows)} rows",
            f"median of {len(on_ms)}, max {max(on_ms):,.1f} ms",
            ok(on < TARGETS["activation_ms"] and max(on_rows) <= 3),
        )
    )
    figures.append(
        Figure(
            "deactivate 1,000 codes in its middle",
            "< 100 ms; O(1) rows",
            f"{off:,.1f} ms, {max(off_rows)} rows",
            f"median of {len(off_ms)}, max {max(off_ms):,.1f} ms; the span split in three",
            ok(off < TARGETS["activation_ms"] and max(off_rows) <= 3),
        )
    )


# --- 4. the trail on the scan path ------------------------------------------------------------


def bench_trail(
    bench: Bench, brand: Brand, plain: Brand, network: Network, figures: list[Figure]
) -> None:
    args, runtime = bench.args, bench.runtime
    layout, batch = network.layout, network.batch
    rng = np.random.default_rng(args.seed)
    n = min(args.trail_codes, layout.items)
    serials = (rng.choice(layout.items, size=n, replace=False) + 1).tolist()
    places = [geo.locate_gps(lat, lon, 20.0) for lat, lon in PLACES.values()]
    analyze(bench.engine)
    say(
        f"\n== 4. the trail on the scan path: {n:,} items drawn at random, each in a case on a "
        f"pallet shipped to ZJ-01 and on to HZ-07 (both received); places "
        + ", ".join(PLACES)
        + f" in turn ({loadavg()})"
    )

    def trail_of(session: Any, serial: int) -> traceability.CodeTrail:
        return traceability.code_trail(
            runtime,
            session,
            tenant_id=brand.tenant_id,
            code=traceability.CodeRef(batch.batch_id, serial),
        )

    with runtime.db.read_only() as session:
        sample = trail_of(session, serials[0])
    kinds = [s.kind for s in sample.steps]
    assert sample.active and sample.holder_id == network.dealer_id, sample
    assert sample.regions == ("CN-ZJ/杭州市",), sample.regions
    say(f"  a trail: holder HZ-07, regions {sample.regions}, steps {kinds}")

    # code_trail + diversion_of, each code in its own session (as a scan has), the session's
    # transaction begun before the clock starts: what the trail adds, not what any scan costs.
    for serial in serials[:50]:  # warm-up: caches, pool, prepared plans
        with runtime.db.read_only() as session:
            diversion_of(trail_of(session, serial), places[0])
    clock = time.perf_counter_ns
    trail_ms: list[float] = []
    verdicts: Counter[object] = Counter()
    st = Statements(bench.engine)
    with profiled(args.profile, "code_trail + diversion_of"):
        for i, serial in enumerate(serials):
            with runtime.db.read_only() as session:
                session.execute(text("SELECT 1"))
                with st:
                    t0 = clock()
                    trail = trail_of(session, serial)
                    diverted = diversion_of(trail, places[i % len(places)])
                    trail_ms.append((clock() - t0) / 1e6)
            verdicts[diverted] += 1
    per_call = st.total / n
    med, p99 = statistics.median(trail_ms), pct(trail_ms, 99)
    say(
        f"  code_trail + diversion_of: median {med:.2f} ms, p90 {pct(trail_ms, 90):.2f} ms, "
        f"p99 {p99:.2f} ms, max {max(trail_ms):.1f} ms (n={n:,}); {per_call:.1f} statements "
        f"per call, {st.driver_ms / n:.2f} ms of it in the driver (round trips; the rest is "
        f"Python); diverted {dict(verdicts)}"
    )
    figures.append(
        Figure(
            "code_trail + diversion_of (in process)",
            "≤ 2 ms median",
            f"median {med:.2f} ms, p99 {p99:.2f} ms",
            f"n={n:,}; 2 statements prepared through psycopg (not counted here), "
            f"{per_call:.1f} through SQLAlchemy",
            ok(med <= TARGETS["trail_ms"]),
        )
    )

    # Whole scans: a traced brand's codes next to a brand that never used traceability.
    m = min(args.scans, n)
    plain_batch = bench.batch(plain, max(layout.items, m))
    plain_serials = (rng.choice(plain_batch.quantity, size=m, replace=False) + 1).tolist()
    traced_codes = [
        short_url(HOST, t) for t in bench.tokens(batch, np.array(serials[:m], dtype=np.int64))
    ]
    plain_codes = [
        short_url(HOST, t) for t in bench.tokens(plain_batch, np.array(plain_serials, np.int64))
    ]
    say(
        f"  whole scans, first scans of {m:,} traced codes and {m:,} codes of a brand without "
        f"traceability, alternated, each scan one unit of work (commit included)"
    )

    def scan(code: str, i: int, group: str) -> tuple[float, orchestrator.ScanAnswer]:
        lat, lon = list(PLACES.values())[i % len(PLACES)]
        request = ScanRequest(
            code=code,
            ip="36.22.10.1",
            device=f"bench-{group}-{i}",
            user_agent="bench",
            lat=lat,
            lon=lon,
            accuracy_m=20.0,
        )
        t0 = clock()
        with runtime.db.unit_of_work() as session:
            answer = orchestrator.scan(session, runtime, request)
        return (clock() - t0) / 1e6, answer

    warm = min(20, m // 10)
    for i in range(warm):  # not recorded: first calls
        scan(traced_codes[i], i, "t")
        scan(plain_codes[i], i, "p")
    traced_ms: list[float] = []
    plain_ms: list[float] = []
    traced_st, plain_st = Statements(bench.engine), Statements(bench.engine)
    answers: Counter[tuple[str, str, object]] = Counter()
    with profiled(args.profile, "orchestrator.scan, both groups"):
        for i in range(warm, m):
            order = [("t", traced_codes[i]), ("p", plain_codes[i])]
            if i % 2:
                order.reverse()
            for group, code in order:
                counter = traced_st if group == "t" else plain_st
                with counter:
                    ms, answer = scan(code, i, group)
                (traced_ms if group == "t" else plain_ms).append(ms)
                answers[(group, answer.verdict, answer.diverted)] += 1
    done = m - warm
    bad = {k: v for k, v in answers.items() if k[1] != "genuine"}
    assert not bad, f"unexpected verdicts: {bad}"
    t_med, p_med = statistics.median(traced_ms), statistics.median(plain_ms)
    diff = t_med - p_med
    say(
        f"  traced:   median {t_med:.2f} ms, p99 {pct(traced_ms, 99):.2f} ms; "
        f"{traced_st.total / done:.1f} statements per scan; diverted flags "
        + str({str(k[2]): v for k, v in answers.items() if k[0] == "t"})
    )
    say(
        f"  untraced: median {p_med:.2f} ms, p99 {pct(plain_ms, 99):.2f} ms; "
        f"{plain_st.total / done:.1f} statements per scan through SQLAlchemy (the scan's own "
        "upsert and insert go to psycopg directly and are not counted)"
    )
    say(f"  difference of medians: {diff:+.2f} ms ({loadavg()})")
    figures.append(
        Figure(
            "scan(): traced − untraced brand",
            "≤ 2 ms median",
            f"{diff:+.2f} ms",
            f"{t_med:.2f} vs {p_med:.2f} ms, n={done:,} each; +2 prepared statements "
            f"(psycopg), {(traced_st.total - plain_st.total) / done:+.1f} through SQLAlchemy",
            ok(diff <= TARGETS["trail_ms"]),
        )
    )


# --- the run ------------------------------------------------------------------------------------


def admin(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


def schema_url(url: str, schema: str) -> str:
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix) :]
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def run(args: argparse.Namespace, workdir: Path) -> int:
    say(f"machine: {machine()}")
    say(wait_for_quiet(args.quiet_wait))
    url = schema_url(args.database, args.schema)
    with admin(args.database) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{args.schema}"')
    _schema_created.append((args.database, args.schema))
    t0 = time.perf_counter()
    upgrade_database(url)
    settings = Settings(
        env="test",
        database_url=url,
        data_dir=workdir / "data",
        master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        secret_key=secrets.token_urlsafe(36),
        task_mode="inline",
        scan_host=HOST,
    )
    runtime = Runtime(settings)
    set_runtime(runtime)
    figures: list[Figure] = []
    try:
        bench = Bench(runtime, args)
        brand = bench.brand("tea", "Bench Tea Co.")
        plain = bench.brand("plain", "Plain Water Co.")  # never uses traceability
        say(
            f"schema {args.schema} migrated in {time.perf_counter() - t0:.1f} s; PostgreSQL "
            f"{engine_version(runtime)}, no Redis (in-process fallbacks)"
        )
        started = time.perf_counter()
        chosen = {int(f) for f in args.figures.split(",")}
        if 1 in chosen:
            bench_ingest(bench, brand, figures)
        if chosen & {2, 4}:
            network = bench_shipping(bench, brand, figures)
        if 3 in chosen:
            bench_activation(bench, brand, figures)
        if 4 in chosen:
            bench_trail(bench, brand, plain, network, figures)
        total = time.perf_counter() - started
    finally:
        set_runtime(None)
        runtime.close()

    say(f"\n== summary  (nproc={os.cpu_count()}, {cpu_model()}, {loadavg()}; {total:.0f} s)")
    if args.profile:
        say("(run under cProfile: the timings include the profiler's overhead)")
    rows = [("figure", "target", "measured", "detail", "")]
    rows += [(f.name, f.target, f.measured, f.detail, f.result) for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for i, r in enumerate(rows):
        say(" | ".join(cell.ljust(widths[j]) for j, cell in enumerate(r)).rstrip())
        if i == 0:
            say("-+-".join("-" * w for w in widths))
    say(
        "\nHow to reproduce: "
        + shlex.join([".venv/bin/python", "bench/bench_trace.py", *sys.argv[1:]])
        + f"  (from the repository root; PostgreSQL at {args.database}, schema {args.schema} "
        "is created and dropped)"
    )
    return 0 if all(f.result != "FAIL" for f in figures) else 1


def engine_version(runtime: Runtime) -> str:
    with runtime.db.engine.connect() as conn:
        version = str(conn.execute(text("SHOW server_version")).scalar_one()).split()[0]
        autovacuum = conn.execute(text("SHOW autovacuum")).scalar_one()
    return (
        f"{version} (autovacuum {autovacuum}; the bench runs VACUUM ANALYZE on the trace tables "
        "before each step)"
    )


_schema_created: list[tuple[str, str]] = []


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--schema", default="yima_bench_trace")
    parser.add_argument(
        "--pairs", type=int, default=MAX_PAIRS, help="pairs per ingest upload (at most MAX_PAIRS)"
    )
    parser.add_argument(
        "--preload",
        type=int,
        default=400_000,
        help="pairs packed (untimed) before the ingest figures: earlier days of the line",
    )
    parser.add_argument(
        "--empty-table-pairs",
        type=int,
        default=20_000,
        help="pairs of the first upload after ANALYZE saw an empty table (0: skip)",
    )
    parser.add_argument("--case-size", type=int, default=24, help="items per case")
    parser.add_argument("--pallet-cases", type=int, default=417, help="cases per shipped pallet")
    parser.add_argument("--ship-pallets", type=int, default=3, help="pallets shipped (figure 2)")
    parser.add_argument("--activation-codes", type=int, default=10_000_000)
    parser.add_argument("--activations", type=int, default=5, help="repeats of figure 3")
    parser.add_argument("--trail-codes", type=int, default=5_000, help="codes for figure 4")
    parser.add_argument("--scans", type=int, default=2_000, help="whole scans per group")
    parser.add_argument(
        "--http-chunk",
        type=int,
        default=10_000,
        help="pairs per request to the API (the console caps a body at 2 MB)",
    )
    parser.add_argument("--seed", type=int, default=20261120)
    parser.add_argument(
        "--figures", default="1,2,3,4", help="which figures to measure (4 needs 2's pallets)"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile each measured step")
    parser.add_argument(
        "--quiet-wait", type=float, default=60.0, help="seconds to wait for an idle machine"
    )
    parser.add_argument(
        "--timeout", type=int, default=900, help="give up (and clean up) after this many seconds"
    )
    parser.add_argument("--keep", action="store_true", help="keep the schema for a look")
    args = parser.parse_args()

    def _terminate(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, _terminate)
    signal.alarm(args.timeout)

    workdir = Path(tempfile.mkdtemp(prefix="yima-bench-trace-"))
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
