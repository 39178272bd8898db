"""Scans of codes that failed verification: answered with no database query, recorded after.

The scan service answers a forged code from the code alone, so a flood never reaches the
database. The evidence (when, a keyed hash of what was scanned, why it failed, IP as the tenant's
privacy setting says, device, region) is spooled in process memory and written in bulk once a
second by a background thread. What a process holds when it dies (at most about a second of
invalid scans) is lost; valid scans are never spooled: they are committed before their answer.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, bindparam, text

from core.db import UTCDateTime, driver_cursor, utcnow
from core.runtime import Runtime

log = logging.getLogger("yima.anti_fraud")

MAX_SPOOL = 200_000  # beyond this the oldest are dropped (and counted): memory stays bounded
FLUSH_SECONDS = 1.0

_COLUMNS = (
    "scanned_at",
    "tenant_id",
    "token_hash",
    "invalid_reason",
    "signals",
    "device",
    "ip",
    "user_agent",
    "country",
    "province",
    "city",
    "place_source",
    "place_precision",
)
# PostgreSQL takes the spool by COPY: a tenth of the client's and the server's work per row of
# the INSERT below (measured in bench/bench_scan.py's flood, where the flush shares the cores).
_COPY = f"COPY anti_fraud_scans ({', '.join(_COLUMNS)}, verdict) FROM STDIN"
_INSERT = text(
    "INSERT INTO anti_fraud_scans (scanned_at, tenant_id, token_hash, invalid_reason, verdict, "
    "signals, device, ip, user_agent, country, province, city, place_source, place_precision) "
    "VALUES (:scanned_at, :tenant_id, :token_hash, :invalid_reason, 'counterfeit', :signals, "
    ":device, :ip, :user_agent, :country, :province, :city, :place_source, :place_precision)"
).bindparams(bindparam("scanned_at", type_=UTCDateTime()), bindparam("signals", type_=JSON()))


@dataclass
class _Spool:
    rows: collections.deque[dict[str, Any]]
    dropped: int = 0


class InvalidScanSpool:
    """A bounded in-memory spool of invalid scans, flushed to the database in bulk."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._spool = _Spool(collections.deque(maxlen=MAX_SPOOL))
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def add(self, row: dict[str, Any]) -> None:
        with self._lock:
            if len(self._spool.rows) == MAX_SPOOL:
                self._spool.dropped += 1
            self._spool.rows.append(row)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="yima-invalid-scans", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("could not write invalid scans; keeping them for the next try")

    def stop(self) -> None:
        """Write what is spooled and stop the writer (the runtime is closing)."""
        self._stopped = True
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=10)
        try:
            self.flush()
        except Exception:
            log.exception("could not write the last invalid scans")

    def flush(self) -> int:
        """Write everything spooled; returns how many rows were written."""
        with self._lock:
            rows = list(self._spool.rows)
            self._spool.rows.clear()
            dropped, self._spool.dropped = self._spool.dropped, 0
        if dropped:
            log.warning("dropped %d invalid scans: the spool was full", dropped)
        if not rows:
            return 0
        try:
            with self._runtime.db.unit_of_work() as session:
                if session.get_bind().dialect.name == "postgresql":
                    _copy_rows(session, rows)
                else:
                    session.execute(_INSERT, rows)
        except Exception:
            with self._lock:  # keep them (newest win if the spool fills meanwhile)
                self._spool.rows.extendleft(reversed(rows))
            raise
        return len(rows)


def _copy_rows(session: Any, rows: list[dict[str, Any]]) -> None:
    cursor = driver_cursor(session)
    with cursor.copy(_COPY) as copy:
        for row in rows:
            values = [row[name] for name in _COLUMNS]
            values[4] = json.dumps(values[4])
            values.append("counterfeit")
            copy.write_row(values)


_spools: dict[int, InvalidScanSpool] = {}
_spools_lock = threading.Lock()


def token_hash(runtime: Runtime, token: str) -> str:
    """The keyed hash an invalid code is recorded as (never the code itself)."""
    key = runtime.settings.secret_key.encode()
    return hmac.new(key, token.encode("utf-8", "replace"), hashlib.sha256).hexdigest()[:32]


def spool_for(runtime: Runtime) -> InvalidScanSpool:
    with _spools_lock:
        spool = _spools.get(runtime.key)
        if spool is None:
            spool = _spools[runtime.key] = InvalidScanSpool(runtime)
            runtime.on_close(lambda: _close_spool(runtime.key))
        return spool


def _close_spool(key: int) -> None:
    with _spools_lock:
        spool = _spools.pop(key, None)
    if spool is not None:
        spool.stop()


def invalid_scan_row(
    runtime: Runtime,
    *,
    token: str,
    reason: str,
    tenant_id: int | None,
    ip: str | None,
    stored_ip: str | None,
    device: str | None,
    user_agent: str | None,
    place: dict[str, Any],
) -> dict[str, Any]:
    return {
        "scanned_at": utcnow(),
        "tenant_id": tenant_id,
        "token_hash": token_hash(runtime, token[:4096]),
        "invalid_reason": reason,
        "signals": [f"invalid:{reason}"],
        "device": device,
        "ip": stored_ip,
        "user_agent": (user_agent or "")[:300] or None,
        "country": place.get("country"),
        "province": place.get("province"),
        "city": place.get("city"),
        "place_source": place.get("source", "none"),
        "place_precision": place.get("precision", "unknown"),
    }
