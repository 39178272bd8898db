"""Cash red envelopes (现金红包): the payout-provider interface and a recording fake.

What the interface promises (any :class:`PayoutProvider`):

- **Idempotent on the merchant order number.** One prize has one ``merchant_order_no``, built
  deterministically by :func:`merchant_order_no` from the prize's own data, and every send of it,
  however often it is retried and from whichever worker, pays at most one envelope. A repeat with
  the same recipient and amount answers ``"sent"`` with the envelope's ``provider_ref``.
- ``"sent"``: paid (now or earlier). ``"failed"``: refused for good (bad parameters, amount out of
  range, a reused number with other data); never retry it. ``"retry"``: transient. **"retry"
  never means "not paid"**: the request may have paid and only the answer was lost, so the
  caller must retry with the SAME number (a new number could pay twice) or ask ``query``.

How :class:`RecordingPayoutProvider` mirrors WeChat Pay's v2 red-envelope API:

- ``send`` is ``sendredpack``: ``mch_billno`` (``merchant_order_no``: at most 28 characters of
  ``[0-9A-Za-z]``, re-entrant on retry), ``re_openid`` (``recipient``), ``total_amount`` (fen),
  ``act_name`` (≤ 32), ``wishing`` (≤ 128), ``client_ip``; the answer's ``send_listid`` is
  ``provider_ref``. Result codes as WeChat's ``err_code``: ``SUCCESS``; ``PARAM_ERROR`` (bad
  field, or a reused ``mch_billno`` with another recipient or amount); ``MONEY_LIMIT`` (amount
  outside [1, 200] yuan by default); ``SENDNUM_LIMIT`` (the recipient's envelopes today, 10 by
  default; WeChat's day is Beijing time); ``FREQ_LIMIT`` (one envelope per recipient per minute,
  1,800 per merchant per minute); ``SYSTEMERROR`` / ``TIMEOUT`` and others only by fault injection
  (:meth:`RecordingPayoutProvider.fail_next`), the "retry with the original number" case WeChat's
  documentation warns about.
- ``query`` is ``gethbinfo``: ``status`` SENT / RECEIVED / REFUND (here ``sent``, ``received``,
  ``refunded``) with ``send_time``, ``rcv_time`` and ``refund_time``; an envelope not opened
  within ``refund_after`` (WeChat: 72 h) goes back to the merchant.

The fake plays an external system, so it keeps its envelopes in its own SQLite file (never the
caller's database or transaction), opened afresh on every call: threads and processes (a worker
that crashes and its replacement) see the same envelopes and the same injected faults. Each send
runs in one ``BEGIN IMMEDIATE`` transaction, so the limits count exactly; the once-only payment
rests on the file's UNIQUE key on ``mch_billno`` (``INSERT ... ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from core.db import utcnow


@dataclass(frozen=True)
class PayoutRequest:
    # mch_billno: 28 chars max, [0-9A-Za-z]; the SAME on every retry of one prize
    merchant_order_no: str
    recipient: str  # who receives (e.g. "member:42"; a real provider maps it to an openid)
    amount_fen: int
    act_name: str  # campaign name (<= 32 chars)
    wishing: str  # greeting (<= 128 chars)
    client_ip: str | None = None


@dataclass(frozen=True)
class PayoutResult:
    # sent: paid (or already paid for this order no); failed: permanent (never retry);
    # retry: transient, try again later with the SAME order no
    outcome: Literal["sent", "failed", "retry"]
    # provider's code: SUCCESS, SYSTEMERROR, TIMEOUT, FREQ_LIMIT, SENDNUM_LIMIT, PARAM_ERROR,
    # NOTENOUGH, MONEY_LIMIT, ...
    code: str
    provider_ref: str | None = None  # provider's listing id when sent
    retry_after: float | None = None  # seconds, for retry


@dataclass(frozen=True)
class PayoutState:  # what query() reports (gethbinfo)
    merchant_order_no: str
    status: Literal["sending", "sent", "received", "failed", "refunding", "refunded", "unknown"]
    amount_fen: int | None
    provider_ref: str | None
    sent_at: dt.datetime | None
    received_at: dt.datetime | None
    refunded_at: dt.datetime | None


class PayoutProvider(Protocol):
    def send(self, request: PayoutRequest) -> PayoutResult: ...
    def query(self, merchant_order_no: str) -> PayoutState: ...


MERCHANT_ORDER_NO_MAX = 28
_MERCHANT_ID = re.compile(r"[0-9]{10}")
_ORDER_NO = re.compile(r"[0-9A-Za-z]{1,28}")
_ACT_NAME_MAX = 32
_WISHING_MAX = 128
_NUMBER_LIMIT = 10**10


def merchant_order_no(merchant_id: str, day: dt.date, number: int) -> str:
    """WeChat's mch_billno shape: merchant id (10 digits) + yyyymmdd + a 10-digit number unique
    per day. 28 chars.

    Deterministic: pass the prize's own day and number (e.g. the draw's date and id), never the
    date of sending, so a retry after a crash, or after midnight, rebuilds the same number.
    Raises ValueError for a merchant id that is not 10 digits or a number outside 0..10^10-1.
    """
    if not isinstance(merchant_id, str) or not _MERCHANT_ID.fullmatch(merchant_id):
        raise ValueError(f"merchant id must be 10 digits, got {merchant_id!r}")
    if isinstance(day, dt.datetime) or not isinstance(day, dt.date):
        raise ValueError(f"day must be a date (not a datetime), got {day!r}")
    if isinstance(number, bool) or not isinstance(number, int):
        raise ValueError(f"number must be an int, got {number!r}")
    if not 0 <= number < _NUMBER_LIMIT:
        raise ValueError(f"number must have at most 10 digits, got {number}")
    return f"{merchant_id}{day:%Y%m%d}{number:010d}"


# WeChat counts a user's envelopes per Beijing-time day. China has kept UTC+8 without daylight
# saving since 1991, so a fixed offset is exact and needs no tz database.
_SHANGHAI = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICRO = dt.timedelta(microseconds=1)
_MINUTE_US = 60_000_000
_REF_PREFIX = "1000041701"  # shaped like a send_listid; the fake's own, not a real merchant's
# WeChat's minimum interval before retrying the same order ("同笔订单最短重试时间"): 1 s.
_FAULT_RETRY_AFTER = 1.0
_BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS envelopes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    mch_billno TEXT NOT NULL UNIQUE,
    re_openid TEXT NOT NULL,
    total_amount INTEGER NOT NULL,
    act_name TEXT NOT NULL,
    wishing TEXT NOT NULL,
    client_ip TEXT,
    sent_us INTEGER NOT NULL,
    received_us INTEGER
);
CREATE INDEX IF NOT EXISTS envelopes_by_recipient ON envelopes (re_openid, sent_us);
CREATE INDEX IF NOT EXISTS envelopes_by_time ON envelopes (sent_us);
CREATE TABLE IF NOT EXISTS injected_faults (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    err_code TEXT NOT NULL,
    after_paying INTEGER NOT NULL
);
"""

_ENVELOPE_COLUMNS = "seq, mch_billno, re_openid, total_amount, sent_us, received_us"


def _to_us(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return (moment - _EPOCH) // _MICRO


def _from_us(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=us)


def _param_error(request: PayoutRequest) -> bool:
    """True when WeChat would refuse the request's fields (PARAM_ERROR)."""
    return (
        not isinstance(request.merchant_order_no, str)
        or not _ORDER_NO.fullmatch(request.merchant_order_no)
        or not isinstance(request.recipient, str)
        or not request.recipient.strip()
        or isinstance(request.amount_fen, bool)
        or not isinstance(request.amount_fen, int)
        or not isinstance(request.act_name, str)
        or not 0 < len(request.act_name) <= _ACT_NAME_MAX
        or not isinstance(request.wishing, str)
        or not 0 < len(request.wishing) <= _WISHING_MAX
    )


class RecordingPayoutProvider:
    """A WeChat-shaped red-envelope provider that records every envelope in its own SQLite file.

    For development and tests: nothing leaves the machine. Limits are per instance; envelopes and
    injected faults live in the file and are shared by every instance on the same ``path``.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        per_user_per_minute: int = 1,
        per_user_per_day: int = 10,
        merchant_per_minute: int = 1800,
        min_fen: int = 100,
        max_fen: int = 20000,
        refund_after: dt.timedelta = dt.timedelta(hours=72),
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        for name, value in (
            ("per_user_per_minute", per_user_per_minute),
            ("per_user_per_day", per_user_per_day),
            ("merchant_per_minute", merchant_per_minute),
            ("min_fen", min_fen),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if max_fen < min_fen:
            raise ValueError(f"max_fen ({max_fen}) is below min_fen ({min_fen})")
        if refund_after <= dt.timedelta(0):
            raise ValueError("refund_after must be positive")
        self.path = Path(path)
        self.per_user_per_minute = per_user_per_minute
        self.per_user_per_day = per_user_per_day
        self.merchant_per_minute = merchant_per_minute
        self.min_fen = min_fen
        self.max_fen = max_fen
        self.refund_after = refund_after
        self._refund_after_us = refund_after // _MICRO
        self._clock = clock or utcnow
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            # WAL is a property of the file: switch once (switching takes a lock), so that
            # readers never wait for a sending writer.
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                db.execute("PRAGMA journal_mode=WAL")
        with self._transaction() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    # -- the provider interface ------------------------------------------------------------

    def send(self, request: PayoutRequest) -> PayoutResult:
        """Pay ``request`` at most once per merchant order number (sendredpack)."""
        if _param_error(request):
            return PayoutResult("failed", "PARAM_ERROR")
        if not self.min_fen <= request.amount_fen <= self.max_fen:
            return PayoutResult("failed", "MONEY_LIMIT")
        now = self._now()
        with self._transaction() as db:
            # The fault is consumed in the same transaction as the payment, so exactly one send
            # (in whichever thread or process) sees each injected fault.
            fault = db.execute(
                "SELECT seq, err_code, after_paying FROM injected_faults ORDER BY seq LIMIT 1"
            ).fetchone()
            if fault is not None:
                db.execute("DELETE FROM injected_faults WHERE seq = ?", (fault[0],))
                if not fault[2]:
                    return PayoutResult("retry", fault[1], retry_after=_FAULT_RETRY_AFTER)
            result = self._pay(db, request, now)
        if fault is not None:
            # The lost response: whatever happened (usually a payment), the caller hears a
            # transient error and must come back with the same number.
            return PayoutResult("retry", fault[1], retry_after=_FAULT_RETRY_AFTER)
        return result

    def query(self, merchant_order_no: str) -> PayoutState:
        """The envelope's state now (gethbinfo); status ``unknown`` when nothing was paid."""
        now_us = _to_us(self._now())
        with self._connect() as db:
            row = db.execute(
                f"SELECT {_ENVELOPE_COLUMNS} FROM envelopes WHERE mch_billno = ?",
                (merchant_order_no,),
            ).fetchone()
        if row is None:
            return PayoutState(merchant_order_no, "unknown", None, None, None, None, None)
        return self._state(row, now_us)

    # -- the recipient's side and fault injection ------------------------------------------

    def claim(self, merchant_order_no: str, at: dt.datetime | None = None) -> PayoutState:
        """The recipient opens the envelope at ``at`` (default: now): sent → received.

        Opening it again changes nothing. Raises LookupError for an unknown order number and
        ValueError once the envelope has gone back to the merchant (``refund_after`` passed).
        """
        at_us = _to_us(at if at is not None else self._now())
        with self._transaction() as db:
            row = db.execute(
                f"SELECT {_ENVELOPE_COLUMNS} FROM envelopes WHERE mch_billno = ?",
                (merchant_order_no,),
            ).fetchone()
            if row is None:
                raise LookupError(f"no envelope with mch_billno {merchant_order_no!r}")
            sent_us, received_us = row[4], row[5]
            if received_us is None:
                if at_us < sent_us:
                    raise ValueError("an envelope cannot be opened before it was sent")
                if at_us >= sent_us + self._refund_after_us:
                    raise ValueError(f"envelope {merchant_order_no} was refunded, not opened")
                db.execute(
                    "UPDATE envelopes SET received_us = ? WHERE seq = ? AND received_us IS NULL",
                    (at_us, row[0]),
                )
                row = (*row[:5], at_us)
        return self._state(row, at_us)

    def fail_next(self, code: str, *, after_paying: bool = False, times: int = 1) -> None:
        """Make the next ``times`` sends answer "retry" with ``code`` (e.g. SYSTEMERROR, TIMEOUT).

        With ``after_paying`` the envelope is paid as usual and only the answer is lost. Kept in
        the file, so the fault hits the next send from any process.
        """
        if not code or not isinstance(code, str):
            raise ValueError("code must be a non-empty string")
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO injected_faults (err_code, after_paying) VALUES (?, ?)",
                [(code, int(after_paying))] * times,
            )

    # -- for tests and the development console ---------------------------------------------

    def envelopes(self) -> list[PayoutState]:
        """Every envelope paid, in the order they were sent, as query() reports them now."""
        now_us = _to_us(self._now())
        with self._connect() as db:
            rows = db.execute(f"SELECT {_ENVELOPE_COLUMNS} FROM envelopes ORDER BY seq").fetchall()
        return [self._state(row, now_us) for row in rows]

    def paid_total_fen(self) -> int:
        """Fen paid out in envelopes so far (an envelope refunded later still counts once)."""
        with self._connect() as db:
            return int(
                db.execute("SELECT COALESCE(SUM(total_amount), 0) FROM envelopes").fetchone()[0]
            )

    def count_paid(self, recipient: str | None = None) -> int:
        """Envelopes paid, to everyone or to one ``recipient``."""
        with self._connect() as db:
            if recipient is None:
                row = db.execute("SELECT COUNT(*) FROM envelopes").fetchone()
            else:
                row = db.execute(
                    "SELECT COUNT(*) FROM envelopes WHERE re_openid = ?", (recipient,)
                ).fetchone()
        return int(row[0])

    # -- internals ---------------------------------------------------------------------------

    def _now(self) -> dt.datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the clock must return an aware UTC datetime")
        return now

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # A connection per call: safe in any thread, and after a fork nothing is inherited.
        with closing(sqlite3.connect(self.path, isolation_level=None)) as db:
            db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            # WAL with NORMAL survives a crashed process, which is what the fake has to model.
            db.execute("PRAGMA synchronous = NORMAL")
            yield db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            # IMMEDIATE takes the write lock up front: concurrent senders queue on the busy
            # timeout (never a failed lock upgrade), and the limit counts see every payment.
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _pay(
        self, db: sqlite3.Connection, request: PayoutRequest, now: dt.datetime
    ) -> PayoutResult:
        now_us = _to_us(now)
        db.execute("SAVEPOINT pay")
        inserted = db.execute(
            "INSERT INTO envelopes (mch_billno, re_openid, total_amount, act_name, wishing,"
            " client_ip, sent_us) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (mch_billno) DO NOTHING",
            (
                request.merchant_order_no,
                request.recipient,
                request.amount_fen,
                request.act_name,
                request.wishing,
                request.client_ip,
                now_us,
            ),
        )
        if inserted.rowcount == 0:
            # Already paid under this number: WeChat re-enters the order instead of paying again.
            db.execute("RELEASE pay")
            seq, recipient, amount, sent_us = db.execute(
                "SELECT seq, re_openid, total_amount, sent_us FROM envelopes WHERE mch_billno = ?",
                (request.merchant_order_no,),
            ).fetchone()
            if recipient != request.recipient or amount != request.amount_fen:
                return PayoutResult("failed", "PARAM_ERROR")
            return PayoutResult("sent", "SUCCESS", provider_ref=self._ref(seq, sent_us))
        seq = inserted.lastrowid
        assert seq is not None
        refused = self._over_limit(db, request.recipient, now, seq)
        if refused is not None:
            db.execute("ROLLBACK TO pay")
            db.execute("RELEASE pay")
            return refused
        db.execute("RELEASE pay")
        return PayoutResult("sent", "SUCCESS", provider_ref=self._ref(seq, now_us))

    def _over_limit(
        self, db: sqlite3.Connection, recipient: str, now: dt.datetime, seq: int
    ) -> PayoutResult | None:
        """The limit this new envelope ``seq`` would break, counting the envelopes before it."""
        now_us = _to_us(now)
        local = now.astimezone(_SHANGHAI)
        day_start = dt.datetime.combine(local.date(), dt.time(), _SHANGHAI)
        next_day_us = _to_us(day_start + dt.timedelta(days=1))
        (today,) = db.execute(
            "SELECT COUNT(*) FROM envelopes WHERE re_openid = ? AND sent_us >= ? AND seq <> ?",
            (recipient, _to_us(day_start), seq),
        ).fetchone()
        if today >= self.per_user_per_day:
            return PayoutResult(
                "retry", "SENDNUM_LIMIT", retry_after=(next_day_us - now_us) / 1_000_000
            )
        # Sliding one-minute windows: the call may succeed once the oldest envelope that fills
        # the window is a minute old.
        window_start = now_us - _MINUTE_US
        wait = self._window_wait(
            db, "re_openid = ? AND", (recipient,), window_start, seq, self.per_user_per_minute
        )
        if wait is None:
            wait = self._window_wait(db, "", (), window_start, seq, self.merchant_per_minute)
        if wait is not None:
            return PayoutResult("retry", "FREQ_LIMIT", retry_after=(wait - now_us) / 1_000_000)
        return None

    @staticmethod
    def _window_wait(
        db: sqlite3.Connection,
        where: str,
        args: tuple[str, ...],
        window_start: int,
        seq: int,
        limit: int,
    ) -> int | None:
        """When (µs) the window has room again, or None when it has room now."""
        (count,) = db.execute(
            f"SELECT COUNT(*) FROM envelopes WHERE {where} sent_us > ? AND seq <> ?",
            (*args, window_start, seq),
        ).fetchone()
        if count < limit:
            return None
        (oldest,) = db.execute(
            f"SELECT sent_us FROM envelopes WHERE {where} sent_us > ? AND seq <> ?"
            " ORDER BY sent_us LIMIT 1 OFFSET ?",
            (*args, window_start, seq, count - limit),
        ).fetchone()
        return int(oldest) + _MINUTE_US

    @staticmethod
    def _ref(seq: int, sent_us: int) -> str:
        # Shaped like a send_listid (28 digits); unique because seq is.
        day = _from_us(sent_us).astimezone(_SHANGHAI)
        return f"{_REF_PREFIX}{day:%Y%m%d}{seq:010d}"

    def _state(self, row: tuple[int, str, str, int, int, int | None], now_us: int) -> PayoutState:
        seq, billno, _recipient, amount, sent_us, received_us = row
        ref = self._ref(seq, sent_us)
        sent_at = _from_us(sent_us)
        if received_us is not None:
            return PayoutState(
                billno, "received", amount, ref, sent_at, _from_us(received_us), None
            )
        refund_us = sent_us + self._refund_after_us
        if now_us >= refund_us:
            return PayoutState(billno, "refunded", amount, ref, sent_at, None, _from_us(refund_us))
        return PayoutState(billno, "sent", amount, ref, sent_at, None, None)
