"""Benchmark: the scan service in its production shape, next to its floors, in one run.

Run: ``.venv/bin/python bench/bench_scan.py [--duration 15]`` (needs ``wrk``; PostgreSQL and
Redis as below). Everything goes to 127.0.0.1 and every run is bounded in time.

The production shape: ``gunicorn --workers 2 --worker-class sync yima.wsgi:scan_app`` with
``YIMA_ENV=production``, PostgreSQL (a private schema, ``yima_bench`` by default, dropped at the
end) and Redis (a database of its own, flushed at the start and the end). The floors are served
by ``bench/floor_app.py`` with the same gunicorn settings, one server at a time, each measured at
``--connections`` (16, 32, 64) with ``wrk -t2`` for ``--duration`` seconds; the best is kept:

- valid scans (first scans and re-scans mixed: codes drawn from a pool of ``--pool`` codes of a
  1,000,000-code batch, a hot set of ``--hot`` of them drawn ``--hot-share`` of the time, devices
  from a pool of ``--devices``) against ``POST /floor``: one transaction of one UPDATE and one
  INSERT; then both again paced at half their measured throughput for the latency;
- the forged-code flood (valid tokens with their last character changed, and random base32)
  against ``GET /hello``, with the database's own counters read before and after to show that no
  request queried it (the invalid scans are written in bulk by a background thread: reported
  apart); the same flood as pages (``GET /c/<token>``), and on a server with the default per-IP
  limits (the 429 path);
- a code's context on a re-scan read from Redis (the process cache bypassed) next to a raw
  ``GET`` of the same key.

wrk 4 measures latency from when it sends a request, and a paced connection waits for its
answer before its next request (coordinated omission): under a stall the percentiles look
better than a user would see them. The load generator shares the two cores with the server.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

import numpy as np
import psycopg
import redis

from bench.machine import cpu_model, machine

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
LUA = BENCH / "scan_load.lua"
BIN = Path(sys.executable).parent
HOST = "yima.example.com"
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
# The highest per-client limits the settings accept: far above what a run reaches, so the
# flood measures the counterfeit answer and not the 429 path (measured on its own).
UNLIMITED = 1_000_000

TARGETS = {"valid": 0.60, "flood": 0.80, "p99_ms": 50.0, "lookup_ms": 1.0}


def loadavg() -> str:
    return "loadavg=(" + ", ".join(f"{x:.2f}" for x in os.getloadavg()) + ")"


def say(text: str = "") -> None:
    print(text, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_busy(seconds: float = 1.0) -> float:
    """The share of the machine's CPU time spent busy over ``seconds`` (all processes)."""

    def sample() -> tuple[int, int]:
        values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def wait_for_quiet(max_wait: float, threshold: float = 0.15) -> str:
    """Wait (up to ``max_wait`` s) until the machine is idle: the runs share it with nobody."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = cpu_busy(2.0)
    note = f"cpu busy before the run {busy:.0%}"
    return note if busy <= threshold else note + " (NOT QUIET: other work shares the machine)"


# --- statement counting: gunicorn hooks, active only with ``-c bench/bench_scan.py`` ----------
#
# The flood's server loads this file as its gunicorn config: each worker counts the SQL
# statements and pool checkouts SQLAlchemy makes, by thread (requests run on the main thread
# of a sync worker, the invalid-scan spool on its own), and writes them out when it exits.

_statement_counts: dict[str, int] = {}
KEY_RING_LOAD = "key-ring load"


def post_fork(server: Any, worker: Any) -> None:
    import threading

    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    def thread_name() -> str:
        current = threading.current_thread()
        return "request" if current is threading.main_thread() else current.name

    def bump(key: str, n: int = 1) -> None:
        _statement_counts[key] = _statement_counts.get(key, 0) + n

    @event.listens_for(Engine, "before_cursor_execute")
    def _statement(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"
        if "core_code_keys" in statement:
            verb = KEY_RING_LOAD  # the key ring's load: at start, then every 30 s per worker
        where = thread_name()
        bump(f"{where}|statements|{verb}")
        if executemany:
            bump(f"{where}|rows|{verb}", len(parameters))

    @event.listens_for(Pool, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        bump(f"{thread_name()}|checkouts|")


def worker_exit(server: Any, worker: Any) -> None:
    out = os.environ.get("YB_STATEMENT_LOG")
    if out:
        Path(out, f"{os.getpid()}.json").write_text(json.dumps(_statement_counts))


def read_statement_counts(directory: Path) -> dict[str, int]:
    total: dict[str, int] = {}
    for path in directory.glob("*.json"):
        for key, n in json.loads(path.read_text()).items():
            total[key] = total.get(key, 0) + n
    return total


# --- servers --------------------------------------------------------------------------------


class Server:
    """A gunicorn in its own process group, stopped (the whole group) by :meth:`stop`."""

    def __init__(
        self,
        name: str,
        target: str,
        *,
        env: dict[str, str],
        cwd: Path,
        log_dir: Path,
        ready_path: str,
        workers: int,
        config: Path | None = None,
        threads: int = 1,
    ) -> None:
        self.name, self.target, self.env, self.cwd, self.config = name, target, env, cwd, config
        self.ready_path, self.workers, self.threads = ready_path, workers, threads
        self.port = free_port()
        self.log = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        cmd = [
            str(BIN / "gunicorn"),
            "--workers",
            str(self.workers),
            *(
                ["--worker-class", "sync"]
                if self.threads == 1
                else ["--worker-class", "gthread", "--threads", str(self.threads)]
            ),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--log-level",
            "warning",
        ]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        cmd.append(self.target)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _live_servers.append(self)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer {self.ready_path}; see {self.log}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        # The workers (same group) may outlive the arbiter by a moment.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        if self in _live_servers:
            _live_servers.remove(self)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def pids(self) -> list[int]:
        """The arbiter's workers (for a profiler)."""
        assert self.proc is not None
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True
        ).stdout
        return [int(p) for p in out.split()]

    @contextlib.contextmanager
    def running(self) -> Iterator[Server]:
        self.start()
        try:
            yield self
        finally:
            self.stop()


_live_servers: list[Server] = []


# --- wrk ------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    label: str
    connections: int
    rps: float
    requests: int
    non_2xx: int
    socket_errors: str
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    raw: str = field(repr=False)
    foreign: float = 0.0  # cores other processes used meanwhile
    sent: int = 0  # answers over every attempt (a disturbed run is run again)

    @property
    def errors(self) -> str:
        parts = []
        if self.non_2xx:
            parts.append(f"{self.non_2xx:,} non-2xx")
        if self.socket_errors:
            parts.append(f"socket errors: {self.socket_errors}")
        return "; ".join(parts) or "no errors"


def cpu_ticks() -> dict[int, tuple[str, int, int]]:
    """Every process's (command, process group, CPU ticks used so far)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        rest = raw[raw.rindex(")") + 2 :].split()
        out[int(entry.name)] = (comm, int(rest[2]), int(rest[11]) + int(rest[12]))
    return out


# What a run legitimately uses besides the server under test.
OURS = {"wrk", "postgres", "redis-server"}


def foreign_cores(before: dict[int, tuple[str, int, int]], seconds: float) -> float:
    """CPU (in cores) used since ``before`` by processes that are not part of the run."""
    ours = {s.proc.pid for s in _live_servers if s.proc is not None} | {os.getpid()}
    used = 0
    for pid, (comm, pgrp, ticks) in cpu_ticks().items():
        if comm in OURS or pgrp in ours or pid in ours:
            continue
        used += ticks - before.get(pid, (comm, pgrp, 0))[2]
    return used / os.sysconf("SC_CLK_TCK") / max(seconds, 1e-9)


@dataclass
class Policy:
    retries: int = 2  # a run disturbed by other work is run again, this many times at most
    max_foreign: float = 0.15  # cores of other work that mark a run as disturbed
    quiet_wait: float = 120.0


POLICY = Policy()


def run_wrk(
    label: str,
    url: str,
    *,
    connections: int,
    duration: float,
    env: dict[str, str],
    latency: bool = False,
) -> WrkResult:
    """One wrk run; run again (after waiting for quiet) while other work disturbed it."""
    sent, attempt = 0, 0
    while True:
        before, t0 = cpu_ticks(), time.monotonic()
        r = _run_wrk_once(
            label, url, connections=connections, duration=duration, env=env, latency=latency
        )
        r.foreign = foreign_cores(before, time.monotonic() - t0)
        sent += r.requests
        if r.foreign <= POLICY.max_foreign or attempt >= POLICY.retries:
            r.sent = sent
            return r
        attempt += 1
        say(
            f"    ({label} -c{connections}: disturbed, other processes used {r.foreign:.2f} "
            f"cores; {wait_for_quiet(POLICY.quiet_wait)}; again)"
        )


def _run_wrk_once(
    label: str,
    url: str,
    *,
    connections: int,
    duration: float,
    env: dict[str, str],
    latency: bool = False,
) -> WrkResult:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration:g}s", "--timeout", "5s", "-s", str(LUA)]
    if latency:
        cmd.append("--latency")
    cmd.append(url)
    full_env = {**os.environ, **env}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=duration + 60)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{out}")
    rps = re.search(r"Requests/sec:\s*([\d.]+)", out)
    result = re.search(r"YB_RESULT (.*)", out)
    if rps is None or result is None:
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    fields = dict(kv.split("=") for kv in result.group(1).split())
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    sock = re.search(r"Socket errors:\s*(.*)", out)
    return WrkResult(
        label=label,
        connections=connections,
        rps=float(rps.group(1)),
        requests=int(fields["requests"]),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sock.group(1).strip() if sock else "",
        p50_ms=int(fields["p50_us"]) / 1000,
        p99_ms=int(fields["p99_us"]) / 1000,
        mean_ms=float(fields["mean_us"]) / 1000,
        max_ms=int(fields["max_us"]) / 1000,
        raw=out,
    )


def best_of(
    label: str, url: str, *, connections: list[int], duration: float, env: dict[str, str]
) -> tuple[WrkResult, list[WrkResult]]:
    results = []
    for c in connections:
        r = run_wrk(label, url, connections=c, duration=duration, env=env)
        say(
            f"  {label:<34} -c{c:<3} {r.rps:>9,.0f} req/s  p50 {r.p50_ms:6.1f} ms  "
            f"p99 {r.p99_ms:6.1f} ms  ({r.requests:,} answered; {r.errors}; "
            f"others {r.foreign:.2f} cores)"
        )
        results.append(r)
    return max(results, key=lambda r: r.rps), results


def paced(
    label: str,
    url: str,
    *,
    rate: float,
    duration: float,
    env: dict[str, str],
    connections: int = 16,
) -> WrkResult:
    """A run paced (wrk ``delay()``) to about ``rate`` requests/s: a short pilot, then the run."""
    delay = max(1.0, connections * 1000.0 / rate)
    pilot = run_wrk(
        label,
        url,
        connections=connections,
        duration=min(5.0, duration),
        env={**env, "YB_DELAY_MS": f"{delay:.3f}"},
        latency=True,
    )
    # One correction: each connection's cycle is its pause plus the answer's latency.
    cycle = connections * 1000.0 / rate
    delay = max(1.0, cycle - pilot.mean_ms)
    r = run_wrk(
        label,
        url,
        connections=connections,
        duration=duration,
        env={**env, "YB_DELAY_MS": f"{delay:.3f}"},
        latency=True,
    )
    say(
        f"  {label:<34} -c{connections:<3} target {rate:,.0f}/s, offered {r.rps:,.0f}/s "
        f"(pause {delay:.1f} ms): p50 {r.p50_ms:.2f} ms  p99 {r.p99_ms:.2f} ms  "
        f"max {r.max_ms:.1f} ms  ({r.errors}; others {r.foreign:.2f} cores)"
    )
    return r


# --- database -------------------------------------------------------------------------------


def with_schema(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def one(conn: psycopg.Connection[Any], sql: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row


def admin(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


@dataclass
class DbCounters:
    xacts: int
    tables: dict[str, tuple[int, int, int, int]]  # reads (seq + idx scans), ins, upd, del


def db_counters(url: str, schema: str) -> DbCounters:
    # A fresh connection each time: statistics are per backend until flushed, and a backend
    # flushes at exit; this one adds its own transaction (subtracted by the caller).
    with admin(url) as conn:
        xacts = one(
            conn,
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()",
        )[0]
        rows = conn.execute(
            "SELECT relname, coalesce(seq_scan, 0) + coalesce(idx_scan, 0), n_tup_ins, "
            "n_tup_upd, n_tup_del FROM pg_stat_user_tables WHERE schemaname = %s",
            (schema,),
        ).fetchall()
    return DbCounters(
        int(xacts), {r[0]: (int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows}
    )


# --- the run --------------------------------------------------------------------------------


@dataclass
class Setup:
    workdir: Path
    admin_url: str  # no schema
    url: str  # with the schema's search_path
    schema: str
    redis_url: str
    env: dict[str, str]  # the scan app's production environment
    valid_file: Path
    forged_file: Path
    batch_id: int
    tenant_id: int


def production_env(args: argparse.Namespace, url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YIMA_")}
    env.update(
        {
            "YIMA_ENV": "production",
            "YIMA_DATABASE_URL": url,
            "YIMA_REDIS_URL": args.redis,
            "YIMA_SECRET_KEY": secrets.token_urlsafe(36)[:48],
            "YIMA_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "YIMA_DATA_DIR": str(data_dir),
            "YIMA_SCAN_HOST": HOST,
            "YIMA_INVALID_SCANS_PER_IP_PER_MINUTE": str(UNLIMITED),
            "YIMA_INVALID_SCANS_PER_DEVICE_PER_MINUTE": str(UNLIMITED),
        }
    )
    return env


def prepare(args: argparse.Namespace, workdir: Path) -> Setup:
    schema = args.schema
    url = with_schema(args.database, schema)
    with admin(args.database) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
    _schema_created.append((args.database, schema))
    redis.Redis.from_url(args.redis).flushdb()
    env = production_env(args, url, workdir / "data")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(BIN / "yima"), "db", "upgrade"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"yima db upgrade failed:\n{proc.stdout}{proc.stderr}")
    with admin(url) as conn:
        conn.execute("CREATE TABLE bench_counter (id integer PRIMARY KEY, n bigint NOT NULL)")
        conn.execute("INSERT INTO bench_counter SELECT g, 0 FROM generate_series(1, 10000) g")
        conn.execute(
            "CREATE TABLE bench_events (id bigserial PRIMARY KEY, "
            "at timestamptz NOT NULL, payload jsonb NOT NULL)"
        )
        conn.execute("VACUUM ANALYZE bench_counter")
    say(f"schema {schema} migrated and floor tables created in {time.perf_counter() - t0:.1f} s")

    import codegen
    from codegen.tokens import mint_short_array
    from core import services as core_services
    from core.config import load_settings
    from core.runtime import Runtime

    runtime = Runtime(load_settings(**_settings_overrides(env)))
    try:
        t0 = time.perf_counter()
        with runtime.db.unit_of_work() as session:
            tenant = core_services.create_tenant(session, slug="bench", name="Bench Tea Co.")
            product = codegen.create_product(
                session,
                tenant_id=tenant.id,
                sku="BENCH-250",
                name="明前龙井 bench tea 250 g",
                specification="250 g tin",
                shelf_life_days=540,
            )
            batch = codegen.create_batch(
                session,
                runtime=runtime,
                tenant_id=tenant.id,
                product_id=product.id,
                lot="BENCH1",
                quantity=args.codes,
                url_form="short",
                factory="Hangzhou",
            )
            tenant_id, batch_id, key_id = tenant.id, batch.id, batch.key_id
        codegen.key_ring_cache(runtime).invalidate()
        key = codegen.key_ring_cache(runtime).ring().get(key_id)
        assert key is not None
        rng = np.random.default_rng(args.seed)
        serials = np.arange(1, args.codes + 1, dtype=np.uint64)
        tokens = mint_short_array(key, batch_id, serials)  # (N, 29) ASCII
        pool = rng.choice(args.codes, size=min(args.pool, args.codes), replace=False)
        prefix = f"HTTPS://{HOST.upper()}/C/"
        valid_file = workdir / "valid_codes.txt"
        with valid_file.open("w") as fh:
            for row in tokens[pool]:
                fh.write(prefix + row.tobytes().decode() + "\n")
        # Forged: half real tokens with the last character changed (a known key: the tenant is
        # found, the check fails), half random base32 (no such key).
        n_forged = args.forged
        tampered = tokens[rng.choice(args.codes, size=n_forged // 2, replace=False)].copy()
        alphabet = np.frombuffer(B32.encode(), dtype=np.uint8)
        lookup = np.zeros(256, dtype=np.uint8)
        lookup[alphabet] = np.arange(32, dtype=np.uint8)
        tampered[:, -1] = alphabet[lookup[tampered[:, -1]] ^ 0b10000]  # flips a used bit
        random_tokens = alphabet[rng.integers(0, 32, size=(n_forged - n_forged // 2, 29))]
        forged = np.concatenate([tampered, random_tokens.astype(np.uint8)])
        rng.shuffle(forged)
        forged_file = workdir / "forged_codes.txt"
        forged_tokens_file = workdir / "forged_tokens.txt"
        ring = codegen.key_ring_cache(runtime).ring()
        from codegen.tokens import InvalidToken, verify_code

        with forged_file.open("w") as fh, forged_tokens_file.open("w") as th:
            for row in forged:
                token = row.tobytes().decode()
                if not isinstance(verify_code(ring, token), InvalidToken):
                    continue  # astronomically unlikely; never send a valid code as forged
                fh.write(prefix + token + "\n")
                th.write(token + "\n")
        say(
            f"data: tenant, product, batch {batch_id} of {args.codes:,} short codes; "
            f"{len(pool):,} valid and {n_forged:,} forged codes written in "
            f"{time.perf_counter() - t0:.1f} s"
        )
    finally:
        runtime.close()
    return Setup(
        workdir=workdir,
        admin_url=args.database,
        url=url,
        schema=schema,
        redis_url=args.redis,
        env=env,
        valid_file=valid_file,
        forged_file=forged_file,
        batch_id=batch_id,
        tenant_id=tenant_id,
    )


def _settings_overrides(env: dict[str, str]) -> dict[str, str]:
    return {k[len("YIMA_") :].lower(): v for k, v in env.items() if k.startswith("YIMA_")}


_schema_created: list[tuple[str, str]] = []


def smoke_test(url: str, setup: Setup) -> None:
    """A few scans by hand: the verdicts the load relies on, before any load."""

    def post(code: str, device: str) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(
            url + "/api/v1/scans",
            data=json.dumps({"code": code, "device_id": device}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    # The last valid code of the pool file (far outside the hot set) and a forged one.
    code = setup.valid_file.read_text().splitlines()[-1]
    forged = setup.forged_file.read_text().splitlines()[0]
    seen = [
        post(code, "smoke-device-1"),
        post(code, "smoke-device-1"),
        post(code, "smoke-device-2"),
        post(forged, "smoke-device-1"),
    ]
    verdicts = [v.get("verdict", f"HTTP {s}") for s, v in seen]
    expected = ["genuine", "genuine", "already_verified", "counterfeit"]
    say(f"smoke test: first, same-device re-scan, other device, forged -> {verdicts}")
    if verdicts != expected:
        raise RuntimeError(f"the scan API does not answer as expected: {seen}")


def count_valid(setup: Setup) -> dict[str, int]:
    with admin(setup.url) as conn:
        states = one(
            conn,
            "SELECT count(*), coalesce(sum(scan_count), 0), coalesce(sum(device_count), 0) "
            "FROM anti_fraud_code_states",
        )
        verdicts = dict(
            conn.execute(
                "SELECT verdict, count(*) FROM anti_fraud_scans WHERE batch_id IS NOT NULL "
                "GROUP BY verdict"
            ).fetchall()
        )
    codes, scans, devices = (int(x) for x in states)
    return {
        "scans": scans,
        "first": codes,
        "other_device": devices - codes,
        "same_device": scans - devices,
        **{f"v:{k}": int(v) for k, v in verdicts.items()},
    }


def invalid_rows(setup: Setup) -> tuple[int, int]:
    """Invalid scans written, and by how many transactions (distinct inserting xids)."""
    with admin(setup.url) as conn:
        rows, xacts = one(
            conn,
            "SELECT count(*), count(DISTINCT xmin::text) FROM anti_fraud_scans "
            "WHERE invalid_reason IS NOT NULL",
        )
    return int(rows), int(xacts)


def lookup_bench(setup: Setup, n: int) -> tuple[list[float], list[float], list[float]]:
    """``load_code_context`` served by Redis (process cache cleared before each call), a raw
    ``GET`` of the same key, and the process-cache hit, in ms."""
    import codegen
    import codegen.services as codegen_services
    from core.config import load_settings
    from core.runtime import Runtime

    runtime = Runtime(load_settings(**_settings_overrides(setup.env)))
    try:
        with runtime.db.read_only() as session:
            assert codegen.load_code_context(runtime, session, setup.batch_id) is not None
            key = codegen_services._context_key(setup.batch_id)
            client = runtime.redis
            assert client.get(key), "the context was not cached in Redis"
            clock = time.perf_counter_ns
            via_redis, raw, local = [], [], []
            for _ in range(n):
                codegen_services._contexts.clear()
                t0 = clock()
                codegen.load_code_context(runtime, session, setup.batch_id)
                via_redis.append((clock() - t0) / 1e6)
            for _ in range(n):
                t0 = clock()
                client.get(key)
                raw.append((clock() - t0) / 1e6)
            for _ in range(n):
                t0 = clock()
                codegen.load_code_context(runtime, session, setup.batch_id)
                local.append((clock() - t0) / 1e6)
    finally:
        runtime.close()
    return via_redis, raw, local


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per wrk run")
    parser.add_argument(
        "--connections",
        default="16,32,64",
        help="wrk connection counts tried for each app (the best is kept)",
    )
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--schema", default="yima_bench")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads per worker of the valid-scan server and its floor (the scan app is deployed"
        " with 32: scans ready together share a commit, core/group_commit.py)",
    )
    parser.add_argument("--codes", type=int, default=1_000_000, help="codes in the batch")
    parser.add_argument("--pool", type=int, default=200_000, help="valid codes the load draws")
    parser.add_argument("--hot", type=int, default=5_000, help="hot set: the re-scanned codes")
    parser.add_argument("--hot-share", type=float, default=0.4)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--forged", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=20260)
    parser.add_argument(
        "--skip-extras", action="store_true", help="skip the page flood and the 429 run"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="seconds to wait for an idle machine before each server",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help="runs again a run that other work on the machine disturbed",
    )
    parser.add_argument(
        "--max-foreign",
        type=float,
        default=0.15,
        help="cores of other processes' CPU that mark a run as disturbed",
    )
    parser.add_argument("--keep", action="store_true", help="keep the schema and the work dir")
    args = parser.parse_args()
    connections = [int(c) for c in args.connections.split(",")]
    POLICY.retries, POLICY.max_foreign = args.retries, args.max_foreign
    POLICY.quiet_wait = args.quiet_wait

    if shutil.which("wrk") is None:
        say("wrk is not installed: apt-get install -y wrk")
        return 2

    def _terminate(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # Also SIGINT: a shell starting us in the background would have it ignored.
    signal.signal(signal.SIGINT, _terminate)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)

    workdir = Path(tempfile.mkdtemp(prefix="yima-bench-scan-"))
    try:
        return run(args, connections, workdir)
    except KeyboardInterrupt:
        say("\ninterrupted: cleaning up")
        return 130
    finally:
        for server in list(_live_servers):
            server.stop()
        if not args.keep:
            for database, schema in _schema_created:
                with contextlib.suppress(Exception), admin(database) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            with contextlib.suppress(Exception):
                redis.Redis.from_url(args.redis).flushdb()
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            say(f"kept schema {args.schema} and {workdir}")


def run(args: argparse.Namespace, connections: list[int], workdir: Path) -> int:
    d = args.duration
    say(f"machine: {machine()}")
    say(
        f"wrk -t2 -c{{{args.connections}}} -d{d:g}s on 127.0.0.1; gunicorn --workers "
        f"{args.workers} --worker-class sync for every app, one server at a time"
        + (
            f" (valid scans and their floor: gthread, --threads {args.threads})"
            if args.threads > 1
            else ""
        )
    )
    setup = prepare(args, workdir)
    log_dir = workdir
    floor_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("YIMA_")},
        "YIMA_FLOOR_DATABASE_URL": setup.url,
    }
    valid_load = {
        "YB_CODES": str(setup.valid_file),
        "YB_HOT": str(args.hot),
        "YB_HOT_SHARE": str(args.hot_share),
        "YB_DEVICES": str(args.devices),
    }
    forged_load = {"YB_CODES": str(setup.forged_file), "YB_DEVICES": str(args.devices)}
    results: dict[str, Any] = {}

    # 1. A code's context on a re-scan, from Redis (before any load: nothing else runs).
    say("\n== state lookup on a re-scan: codegen.load_code_context served by Redis")
    say(f"  {wait_for_quiet(args.quiet_wait)}")
    via_redis, raw, local = lookup_bench(setup, args.lookups)
    results["lookup"] = (
        statistics.median(via_redis),
        pct(via_redis, 99),
        statistics.median(raw),
        pct(raw, 99),
        statistics.median(local),
    )
    say(
        f"  load_code_context (process cache cleared each call): median "
        f"{results['lookup'][0]:.3f} ms  p99 {results['lookup'][1]:.3f} ms  (n={args.lookups:,})"
    )
    say(
        f"  floor: raw Redis GET of the same key:                median "
        f"{results['lookup'][2]:.3f} ms  p99 {results['lookup'][3]:.3f} ms"
    )
    say(
        f"  process-cache hit (what most re-scans cost):           median "
        f"{results['lookup'][4] * 1000:.1f} us   {loadavg()}"
    )

    # 2. Floors: one UPDATE + one INSERT, and hello-world.
    say("\n== floors: bench/floor_app.py (bare Flask), same gunicorn settings")
    floor = Server(
        "floor",
        "floor_app:app",
        env=floor_env,
        cwd=BENCH,
        log_dir=log_dir,
        ready_path="/hello",
        workers=args.workers,
        threads=args.threads,
    )
    say(f"  {wait_for_quiet(args.quiet_wait)}")
    with floor.running():
        floor_best, floor_all = best_of(
            "POST /floor (UPDATE + INSERT)",
            floor.url + "/floor",
            connections=connections,
            duration=d,
            env={"YB_MODE": "bare", "YB_PATH": "/floor"},
        )
        hello_best, _ = best_of(
            "GET /hello",
            floor.url + "/hello",
            connections=connections,
            duration=d,
            env={"YB_MODE": "bare", "YB_METHOD": "GET", "YB_PATH": "/hello"},
        )
        floor_lat = paced(
            "POST /floor at half its throughput",
            floor.url + "/floor",
            rate=floor_best.rps / 2,
            duration=d,
            env={"YB_MODE": "bare", "YB_PATH": "/floor"},
        )
    with admin(setup.url) as conn:
        committed = one(conn, "SELECT sum(n) FROM bench_counter")[0]
    answered = sum(r.sent for r in floor_all)
    say(
        f"  floor transactions committed: {committed:,} (wrk counted {answered:,} answers "
        f"in the throughput runs, plus the latency runs)"
    )

    # 3. Valid scans.
    say("\n== valid scans: POST /api/v1/scans, yima.wsgi:scan_app (YIMA_ENV=production)")
    scan_server = Server(
        "scan",
        "yima.wsgi:scan_app",
        env=setup.env,
        cwd=ROOT,
        log_dir=log_dir,
        ready_path="/healthz",
        workers=args.workers,
        threads=args.threads,
    )
    say(f"  {wait_for_quiet(args.quiet_wait)}")
    with scan_server.running():
        smoke_test(scan_server.url, setup)
        valid_best, valid_all = best_of(
            "valid scans",
            scan_server.url + "/api/v1/scans",
            connections=connections,
            duration=d,
            env=valid_load,
        )
        valid_lat = paced(
            "valid scans at half their throughput",
            scan_server.url + "/api/v1/scans",
            rate=valid_best.rps / 2,
            duration=d,
            env=valid_load,
        )
    mix = count_valid(setup)
    say(
        f"  recorded {mix['scans']:,} valid scans: {mix['first']:,} first scans, "
        f"{mix['same_device']:,} re-scans by the same device, {mix['other_device']:,} by "
        f"another device; verdicts "
        + ", ".join(f"{k[2:]} {v:,}" for k, v in sorted(mix.items()) if k.startswith("v:"))
    )
    if any(r.non_2xx for r in valid_all) or valid_lat.non_2xx:
        say(f"  WARNING: non-2xx answers during valid scans; see {scan_server.log}")

    # 4. The forged-code flood. Its server counts, in each worker, the SQL statements and
    # pool checkouts by thread (gunicorn hooks above); the database's own counters around the
    # server's whole life check the same from the other side.
    say("\n== forged-code flood: POST /api/v1/scans with forged codes (limits raised)")
    counts_dir = workdir / "statements"
    counts_dir.mkdir()
    flood_server = Server(
        "flood",
        "yima.wsgi:scan_app",
        env={**setup.env, "YB_STATEMENT_LOG": str(counts_dir)},
        cwd=ROOT,
        log_dir=log_dir,
        ready_path="/healthz",
        workers=args.workers,
        config=Path(__file__).resolve(),
    )
    say(f"  {wait_for_quiet(args.quiet_wait)}")
    rows_before, xids_before = invalid_rows(setup)
    before = db_counters(setup.admin_url, setup.schema)
    t_start = time.monotonic()
    with flood_server.running():
        flood_best, flood_all = best_of(
            "forged codes",
            flood_server.url + "/api/v1/scans",
            connections=connections,
            duration=d,
            env=forged_load,
        )
        time.sleep(2.5)  # the spool's last flush (about once a second per worker)
    lifetime = time.monotonic() - t_start
    time.sleep(0.5)  # the workers' backends report their statistics as they exit
    after = db_counters(setup.admin_url, setup.schema)
    rows_after, xids_after = invalid_rows(setup)
    counted = read_statement_counts(counts_dir)
    flood_requests = sum(r.sent for r in flood_all)
    flush_rows, flush_xacts = rows_after - rows_before, xids_after - xids_before
    xact_delta = after.xacts - before.xacts - 1  # minus the "before" meter's own transaction
    reads = {t: after.tables.get(t, (0,) * 4)[0] - v[0] for t, v in before.tables.items()}
    reads = {t: n for t, n in reads.items() if n}

    def tally(where: str, what: str) -> dict[str, int]:
        return {
            k.split("|")[2]: n
            for k, n in counted.items()
            if k.split("|")[0] == where and k.split("|")[1] == what
        }

    request_statements = tally("request", "statements")
    ring_refresh = float(setup.env.get("YIMA_KEYRING_REFRESH_SECONDS", "30"))
    # What the periodic refresh alone costs, whatever the traffic: one load per worker at
    # start and one per refresh period.
    ring_allowed = args.workers * (1 + int(lifetime // ring_refresh) + 1)
    request_checkouts = sum(tally("request", "checkouts").values())
    spool = "yima-invalid-scans"
    spool_statements = tally(spool, "statements")
    spool_rows = tally(spool, "rows")
    others = sorted({k.split("|")[0] for k in counted} - {"request", spool})
    if len(list(counts_dir.glob("*.json"))) != args.workers:
        say(
            f"  WARNING: statement counts from {len(list(counts_dir.glob('*.json')))} of "
            f"{args.workers} workers"
        )
    say(
        f"  {flood_requests:,} forged codes answered in {len(flood_all)} runs; in the workers "
        f"(SQLAlchemy events, by thread):"
    )
    ring_loads = request_statements.pop(KEY_RING_LOAD, 0)
    request_queries = sum(request_statements.values())
    say(
        f"    request threads: {request_queries} statements {request_statements or ''}".rstrip()
        + " besides "
        f"{ring_loads} key-ring loads ({request_checkouts} pool checkouts in all); the "
        f"{ring_refresh:g}-s refresh alone accounts for up to {ring_allowed}, the rest are "
        f"reloads for codes naming an unknown key (at most 1/s per worker)"
    )
    say(f"    background spool: {spool_statements} statements writing {spool_rows} rows")
    for name in others:
        say(f"    thread {name}: {tally(name, 'statements')}")
    say(
        f"  PostgreSQL over the server's life ({lifetime:.0f} s): {xact_delta:,} transactions "
        f"in database 'test' (any client); {flush_xacts:,} of them wrote the "
        f"{flush_rows:,} invalid scans (distinct xmin); table reads in {setup.schema}: "
        + (", ".join(f"{t} {n:,}" for t, n in sorted(reads.items())) or "none")
    )
    results["flood_db"] = (request_queries, flush_xacts, flush_rows, flood_requests)
    if any(r.non_2xx for r in flood_all):
        say(f"  WARNING: non-2xx answers during the flood; see {flood_server.log}")

    extras: list[tuple[str, str]] = []
    if not args.skip_extras:
        say("\n== extras: the flood as pages, and the 429 path with the default limits")
        page_env = {
            "YB_MODE": "page",
            "YB_CODES": str(workdir / "forged_tokens.txt"),
            "YB_PATH": "/c/",
        }
        with Server(
            "pages",
            "yima.wsgi:scan_app",
            env=setup.env,
            cwd=ROOT,
            log_dir=log_dir,
            ready_path="/healthz",
            workers=args.workers,
        ).running() as pages:
            page = run_wrk(
                "forged pages GET /c/<token>",
                pages.url,
                connections=flood_best.connections,
                duration=d,
                env=page_env,
            )
        say(
            f"  forged pages GET /c/<token>     -c{page.connections}: {page.rps:,.0f} req/s "
            f"p99 {page.p99_ms:.1f} ms ({page.errors}) = {page.rps / hello_best.rps:.0%} of "
            f"hello {loadavg()}"
        )
        extras.append(
            (
                "forged-code flood as HTML pages",
                f"{page.rps:,.0f}/s ({page.rps / hello_best.rps:.0%} of hello)",
            )
        )
        limited_env = {
            k: v for k, v in setup.env.items() if not k.startswith("YIMA_INVALID_SCANS_PER_")
        }
        with Server(
            "limited",
            "yima.wsgi:scan_app",
            env=limited_env,
            cwd=ROOT,
            log_dir=log_dir,
            ready_path="/healthz",
            workers=args.workers,
        ).running() as limited:
            r429 = run_wrk(
                "forged codes, default limits",
                limited.url + "/api/v1/scans",
                connections=flood_best.connections,
                duration=d,
                env=forged_load,
            )
        share = r429.non_2xx / max(r429.requests, 1)
        say(
            f"  forged codes, default limits    -c{r429.connections}: {r429.rps:,.0f} req/s "
            f"p99 {r429.p99_ms:.1f} ms; {share:.1%} answered 429 = "
            f"{r429.rps / hello_best.rps:.0%} of hello {loadavg()}"
        )
        extras.append(
            (
                "flood on the 429 path (default limits)",
                f"{r429.rps:,.0f}/s ({r429.rps / hello_best.rps:.0%} of hello), {share:.1%} 429",
            )
        )

    # Summary.
    valid_ratio = valid_best.rps / floor_best.rps
    flood_ratio = flood_best.rps / hello_best.rps
    lk = results["lookup"]
    say("\n== summary  " + f"(nproc={os.cpu_count()}, {cpu_model()}, {loadavg()})")
    say(
        "wrk 4 paces by closed loop (delay()): latency excludes queueing before a send "
        "(coordinated omission); p99 under a stall reads low."
    )
    rows = [
        ("figure", "target", "measured", "floor (same run)", "ratio", ""),
        (
            "valid scans, throughput",
            "≥ 60 % of floor",
            f"{valid_best.rps:,.0f}/s (-c{valid_best.connections})",
            f"UPDATE+INSERT {floor_best.rps:,.0f}/s (-c{floor_best.connections})",
            f"{valid_ratio:.0%}",
            ok(valid_ratio >= TARGETS["valid"]),
        ),
        (
            "valid scans, p99 at half load",
            "≤ 50 ms",
            f"p50 {valid_lat.p50_ms:.1f} / p99 {valid_lat.p99_ms:.1f} ms at {valid_lat.rps:,.0f}/s",
            f"p50 {floor_lat.p50_ms:.1f} / p99 {floor_lat.p99_ms:.1f} ms at {floor_lat.rps:,.0f}/s",
            "",
            ok(valid_lat.p99_ms <= TARGETS["p99_ms"]),
        ),
        (
            "forged-code flood, throughput",
            "≥ 80 % of hello",
            f"{flood_best.rps:,.0f}/s (-c{flood_best.connections})",
            f"hello {hello_best.rps:,.0f}/s (-c{hello_best.connections})",
            f"{flood_ratio:.0%}",
            ok(flood_ratio >= TARGETS["flood"]),
        ),
        (
            "forged-code flood, DB queries",
            "0 on the request path",
            f"request path: {request_queries} + {ring_loads} key-ring loads per "
            f"{flood_requests:,} requests; background: {flush_xacts} bulk inserts of "
            f"{flush_rows:,} rows",
            "",
            f"{(request_queries + ring_loads) / max(flood_requests, 1):.4f}/req",
            ok(request_queries == 0)
            if ring_loads <= ring_allowed
            else "FAIL: traffic-driven key-ring loads",
        ),
        (
            "state lookup on a re-scan (Redis)",
            "≤ 1 ms median",
            f"median {lk[0]:.3f} ms, p99 {lk[1]:.3f} ms",
            f"raw GET median {lk[2]:.3f} ms",
            f"{lk[0] / lk[2]:.1f}x",
            ok(lk[0] <= TARGETS["lookup_ms"]),
        ),
    ]
    rows += [(name, "—", value, "", "", "") for name, value in extras]
    disturbed = [
        r
        for r in (floor_best, hello_best, valid_best, flood_best, valid_lat, floor_lat)
        if r.foreign > POLICY.max_foreign
    ]
    if disturbed:
        say(
            "DISTURBED (other work on the machine during the run): "
            + ", ".join(f"{r.label} -c{r.connections} ({r.foreign:.2f} cores)" for r in disturbed)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for i, r in enumerate(rows):
        say(" | ".join(cell.ljust(widths[j]) for j, cell in enumerate(r)).rstrip())
        if i == 0:
            say("-+-".join("-" * w for w in widths))
    return 0


def ok(passed: bool) -> str:
    return "pass" if passed else "FAIL"


if __name__ == "__main__":
    sys.exit(main())
