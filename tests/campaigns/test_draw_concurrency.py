"""Draws under real concurrency on PostgreSQL: many threads (and processes) drawing at the same
instant never over-issue a prize, never overspend the budget, never pass a member's limits, reward
a code once, and pay a cash prize once — also when the provider's answer is lost.

Every scan runs ``campaigns.reward_scan`` in its own unit of work, or ("shared") through the
process's group commit, as the scan service runs it on a threaded web worker: the scans that
threads have ready together share a transaction (core/group_commit.py).
The processes build their own runtime from the database URL and the master key (the seed is
sealed under the brand's data key), as a second web worker would.
"""

from __future__ import annotations

import datetime as dt
import functools
import multiprocessing as mp
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import campaigns
import members
from campaigns import fulfilment
from campaigns.models import BudgetShard, Fulfilment, MemberCount, Prize, Reward, StockShard
from campaigns.payouts import PayoutRequest, PayoutResult, PayoutState, RecordingPayoutProvider
from campaigns.tasks import deliver as deliver_task
from campaigns.tasks import deliver_due as deliver_due_task
from core.runtime import Runtime, set_runtime
from members.models import PointsEntry
from tests.campaigns.helpers import NOW, live_campaign
from tests.conftest import PG_URL, make_settings
from tests.factories import make_brand

pytestmark = [
    pytest.mark.skipif(not PG_URL, reason="real concurrency: set YIMA_TEST_DATABASE_URL"),
    pytest.mark.parametrize("backend", ["postgresql"]),
]

THANKS = {"key": "thanks", "name": "谢谢参与", "kind": "thanks", "probability": "0"}
TIMEOUT = 300  # seconds a process may take before the test gives up on it


# --- the brand, its members and the campaign ---------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """What a worker (thread or process) needs to scan: plain values, picklable."""

    tenant_id: int
    batch_id: int
    sku: str
    campaign_id: int
    member_ids: tuple[int, ...]
    prizes: dict[str, int] = field(default_factory=dict)  # key -> prize id


def setup(
    runtime: Runtime,
    *,
    member_count: int,
    prizes: list[dict[str, Any]],
    points_per_scan: int = 10,
    **draw: Any,
) -> Setup:
    """A brand with ``member_count`` members and a running campaign whose draw has ``prizes`` (a
    "thanks" fallback is added) and the ``draw`` settings; ``points_per_scan``, fraud rules off."""
    with runtime.db.unit_of_work() as session:
        brand = make_brand(session, runtime, quantity=10_000)
        ids = tuple(
            members.create_member(session, tenant_id=brand.tenant_id).id
            for _ in range(member_count)
        )
        campaign = live_campaign(
            session,
            runtime,
            brand,
            earn={"points_per_scan": points_per_scan},
            draw={"prizes": [*prizes, THANKS], "fallback": "thanks", **draw},
        )
        keys = {
            p.key: p.id
            for p in session.scalars(select(Prize).where(Prize.campaign_id == campaign.id))
        }
        return Setup(brand.tenant_id, brand.batch_id, f"{brand.slug}-SKU-1", campaign.id, ids, keys)


def scan(
    runtime: Runtime, s: Setup, member_id: int, serial: int, shared: bool = False
) -> tuple[str, str | None, str | None]:
    """One rewarded scan in its own transaction, or through the group commit with ``shared``:
    (why, draw outcome, prize key)."""

    def work(session: Session) -> campaigns.ScanReward:
        return campaigns.reward_scan(
            session,
            runtime,
            member=members.SignedIn(s.tenant_id, member_id, 0, None, NOW - dt.timedelta(days=30)),
            facts=campaigns.ScanFacts(
                tenant_id=s.tenant_id,
                batch_id=s.batch_id,
                serial=serial,
                sku=s.sku,
                verdict="genuine",
                timezone="Asia/Shanghai",
            ),
            now=NOW,
        )

    if shared:
        got = runtime.db.group_commit.run(work)
    else:
        with runtime.db.unit_of_work() as session:
            got = work(session)
    if got.draw is None:
        return got.why, None, None
    return got.why, got.draw.outcome, got.draw.prize_key


# --- running work at the same instant ----------------------------------------------------------

Job = tuple[int, int]  # (member id, serial)
SHARED: list[int] = []  # the group commit's transactions in each process of the last "shared" run
Outcome = tuple[str, str | None, str | None]


def in_threads(work: Sequence[Sequence[Any]], attempt: Callable[[Any], Any]) -> list[Any]:
    """Run each thread's share of ``work`` (one list per thread, done in order) with the threads
    released together; exceptions come back as ``("unexpected", repr)``."""
    results: list[Any] = []
    lock = threading.Lock()
    start = threading.Barrier(len(work))

    def run(share: Sequence[Any]) -> None:
        start.wait()
        for item in share:
            try:
                outcome = attempt(item)
            except BaseException as exc:  # reported by the assertions
                outcome = ("unexpected", repr(exc))
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=run, args=(share,)) for share in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _scan_in_process(
    database_url: str,
    data_dir: str,
    master_key: str,
    s: Setup,
    work: list[list[Job]],
    shared: bool,
    ready: Any,
    results: Any,
) -> None:
    """A process of its own (spawned): its own runtime, ``len(work)`` threads scanning; with
    ``shared``, through the process's group commit. Puts (outcomes, transactions)."""
    runtime = Runtime(make_settings(database_url, Path(data_dir), master_key=master_key))
    set_runtime(runtime)
    try:
        ready.wait()  # every process released together
        outcomes = in_threads(work, lambda job: scan(runtime, s, *job, shared=shared))
        results.put((outcomes, runtime.db.group_commit.batches))
    except BaseException as exc:  # pragma: no cover - reported by the parent
        results.put(([("unexpected", repr(exc))], 0))
    finally:
        runtime.close()


def draw_concurrently(
    runtime: Runtime, s: Setup, *, how: str, workers: int, per_worker: int
) -> Counter[Outcome]:
    """``workers`` × ``per_worker`` scans of distinct codes, worker ``w`` scanning as member
    ``w`` (so members never queue on each other): 16 threads of this process, or 4 processes of
    ``workers / 4`` threads each, in a transaction each ("processes") or sharing commits
    ("shared": the group commit, whose transactions are counted in ``SHARED``). Outcomes
    counted."""
    work = [
        [(s.member_ids[w], 1 + w * per_worker + i) for i in range(per_worker)]
        for w in range(workers)
    ]
    if how == "threads":
        return Counter(in_threads(work, lambda job: scan(runtime, s, *job)))
    processes = 4
    ctx = mp.get_context("spawn")
    ready = ctx.Barrier(processes)
    results = ctx.Queue()
    share = workers // processes
    procs = [
        ctx.Process(
            target=_scan_in_process,
            args=(
                runtime.settings.resolved_database_url,
                str(runtime.settings.data_dir),
                runtime.settings.master_key,
                s,
                work[p * share : (p + 1) * share],
                how == "shared",
                ready,
                results,
            ),
        )
        for p in range(processes)
    ]
    for p in procs:
        p.start()
    outcomes: Counter[Outcome] = Counter()
    SHARED.clear()
    try:
        for _ in procs:
            done, transactions = results.get(timeout=TIMEOUT)
            outcomes.update(done)
            SHARED.append(transactions)
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():  # pragma: no cover - only when a child hangs
                p.kill()
    return outcomes


# --- what the database says afterwards ---------------------------------------------------------


def shards_of(session: Session, prize_id: int) -> list[tuple[int, int, int]]:
    return [
        (r.shard, r.stock, r.issued)
        for r in session.scalars(
            select(StockShard).where(StockShard.prize_id == prize_id).order_by(StockShard.shard)
        )
    ]


def units_of(session: Session, prize_id: int) -> list[tuple[int | None, int | None]]:
    return sorted(
        (r.shard, r.unit)
        for r in session.scalars(select(Reward).where(Reward.prize_id == prize_id))
    )


def downgrades(session: Session, campaign_id: int) -> Counter[tuple[str | None, str | None]]:
    rows = session.execute(
        select(Reward.outcome, Reward.downgrade).where(Reward.draw_campaign_id == campaign_id)
    ).all()
    return Counter((r.outcome, r.downgrade) for r in rows)


# --- stock, budget, limits, once per code ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("how", ["threads", "processes", "shared"])
def test_a_prize_of_seven_drawn_by_everyone_at_once_is_given_exactly_seven_times(
    runtime: Runtime, how: str
) -> None:
    s = setup(
        runtime,
        member_count=16,
        prizes=[
            {
                "key": "mug",
                "name": "马克杯",
                "kind": "goods",
                "probability": "1",
                "stock": 7,
                "value_fen": 3900,
            }
        ],
        # A limit nobody reaches: the members' counters are kept, and checked below.
        draws_per_member=1000,
    )
    outcomes = draw_concurrently(runtime, s, how=how, workers=16, per_worker=14)  # 224 draws
    assert outcomes == Counter(
        {("earned", "won", "mug"): 7, ("earned", "fallback", "thanks"): 224 - 7}
    )
    if how == "shared":
        assert sum(SHARED) < 224  # draws did share commits
    mug = s.prizes["mug"]
    with runtime.db.read_only() as session:
        shards = shards_of(session, mug)
        # Every shard issued exactly its stock, none beyond it: 7 in all.
        assert [issued for _s, _stock, issued in shards] == [stock for _s, stock, _i in shards]
        assert sum(stock for _s, stock, _i in shards) == 7
        # Each unit (shard, ordinal) was given once, and all of them were.
        assert units_of(session, mug) == [
            (shard, unit) for shard, stock, _i in shards for unit in range(1, stock + 1)
        ]
        assert downgrades(session, s.campaign_id) == Counter(
            {("won", None): 7, ("fallback", "out_of_stock"): 224 - 7}
        )
        # One outbox row per mug won (waiting for the winner's shipping details).
        assert session.scalar(select(func.count()).select_from(Fulfilment)) == 7
        draws, wins = session.execute(
            select(func.sum(MemberCount.draws), func.sum(MemberCount.wins)).where(
                MemberCount.period == "all"
            )
        ).one()
        assert (draws, wins) == (224, 7)


@pytest.mark.slow
def test_as_many_draws_as_units_at_once_all_win_none_told_out_of_stock(runtime: Runtime) -> None:
    # 48 units in 16 shards of 3, 16 threads drawing 3 times each: near the end every shard
    # with stock is held by another draw, which must be waited for, not reported as empty.
    s = setup(
        runtime,
        member_count=16,
        prizes=[
            {
                "key": "cup",
                "name": "保温杯",
                "kind": "goods",
                "probability": "1",
                "stock": 48,
                "value_fen": 2900,
            }
        ],
    )
    outcomes = draw_concurrently(runtime, s, how="threads", workers=16, per_worker=3)
    assert outcomes == Counter({("earned", "won", "cup"): 48})
    with runtime.db.read_only() as session:
        shards = shards_of(session, s.prizes["cup"])
        assert len(shards) == 16 and all(issued == stock == 3 for _s, stock, issued in shards)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["threads", "processes", "shared"])
def test_a_budget_of_thirty_yuan_pays_exactly_six_five_yuan_prizes(
    runtime: Runtime, how: str
) -> None:
    s = setup(
        runtime,
        member_count=16,
        prizes=[
            {
                "key": "voucher",
                "name": "5 元代金券",
                "kind": "goods",
                "probability": "1",
                "stock": 10_000,
                "value_fen": 500,
            }
        ],
        budget_fen=3_000,
    )
    outcomes = draw_concurrently(runtime, s, how=how, workers=16, per_worker=8)  # 128 draws
    assert outcomes == Counter(
        {("earned", "won", "voucher"): 6, ("earned", "fallback", "thanks"): 128 - 6}
    )
    with runtime.db.read_only() as session:
        budget = session.execute(
            select(func.sum(BudgetShard.spent_fen), func.sum(BudgetShard.limit_fen)).where(
                BudgetShard.campaign_id == s.campaign_id
            )
        ).one()
        assert tuple(budget) == (3_000, 3_000)
        given = session.scalar(
            select(func.sum(Reward.value_fen)).where(Reward.draw_campaign_id == s.campaign_id)
        )
        assert given == 3_000
        # Budget first, then stock: no unit was taken for a prize the budget could not pay.
        assert sum(issued for _s, _st, issued in shards_of(session, s.prizes["voucher"])) == 6
        assert downgrades(session, s.campaign_id) == Counter(
            {("won", None): 6, ("fallback", "budget"): 128 - 6}
        )


@pytest.mark.slow
@pytest.mark.parametrize("shared", [False, True], ids=["alone", "shared"])
@pytest.mark.parametrize("points", [10, 0], ids=["with_points", "draw_only"])
def test_fifty_scans_of_one_member_at_once_draw_three_times_and_win_twice(
    runtime: Runtime, points: int, shared: bool
) -> None:
    # With points, the ledger credit (the member's balance row) already queues the scans one
    # after another; without, only the draw's own counters stand between them and the limits.
    s = setup(
        runtime,
        member_count=1,
        prizes=[
            {
                "key": "p50",
                "name": "50 积分",
                "kind": "goods",
                "probability": "1",
                "stock": 1_000,
                "value_fen": 50,
            }
        ],
        points_per_scan=points,
        draws_per_member_per_day=3,
        wins_per_member=2,
    )
    member_id = s.member_ids[0]
    outcomes = Counter(
        in_threads(
            [[serial] for serial in range(1, 51)],
            lambda n: scan(runtime, s, member_id, n, shared=shared),
        )
    )
    # Every scan is rewarded; only three draw, and only two of those win.
    why = "earned" if points else "no_points"
    assert outcomes == Counter(
        {(why, "won", "p50"): 2, (why, "fallback", "thanks"): 1, (why, None, None): 47}
    )
    with runtime.db.read_only() as session:
        counts = {
            c.period: (c.draws, c.wins)
            for c in session.scalars(select(MemberCount).where(MemberCount.member_id == member_id))
        }
        today = NOW.astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
        assert counts == {"all": (3, 2), today: (3, 2)}
        assert downgrades(session, s.campaign_id) == Counter(
            {("won", None): 2, ("fallback", "member_limit"): 1}
        )
        assert sum(issued for _s, _st, issued in shards_of(session, s.prizes["p50"])) == 2
        balance = members.balance_of(session, member_id)
        assert balance.active + balance.pending == 50 * points


@pytest.mark.slow
@pytest.mark.parametrize("shared", [False, True], ids=["alone", "shared"])
def test_one_code_scanned_by_twenty_members_at_once_is_rewarded_once(
    runtime: Runtime, shared: bool
) -> None:
    s = setup(
        runtime,
        member_count=20,
        prizes=[
            {
                "key": "mug",
                "name": "马克杯",
                "kind": "goods",
                "probability": "1",
                "stock": 5,
                "value_fen": 3900,
            }
        ],
        draws_per_member=1000,  # counters kept (checked below)
    )
    outcomes = Counter(
        in_threads([[m] for m in s.member_ids], lambda m: scan(runtime, s, m, 77, shared=shared))
    )
    assert outcomes == Counter({("earned", "won", "mug"): 1, ("already_claimed", None, None): 19})
    with runtime.db.read_only() as session:
        rewards = session.scalars(select(Reward)).all()
        assert len(rewards) == 1 and rewards[0].serial == 77
        winner = rewards[0].member_id
        credits = session.scalars(select(PointsEntry).where(PointsEntry.kind == "earn")).all()
        assert [(e.member_id, e.points) for e in credits] == [(winner, 10)]
        draws = session.execute(
            select(MemberCount.member_id, MemberCount.draws).where(
                MemberCount.period == "all", MemberCount.draws > 0
            )
        ).all()
        assert [tuple(d) for d in draws] == [(winner, 1)]
        assert sum(issued for _s, _st, issued in shards_of(session, s.prizes["mug"])) == 1
        assert session.scalar(select(func.count()).select_from(Fulfilment)) == 1


# --- cash paid once ----------------------------------------------------------------------------


class WatchedProvider:
    """The recording provider, with each request counted by merchant order number and any two
    sends of one number in flight at the same time noted (two workers delivering one row)."""

    def __init__(self, inner: RecordingPayoutProvider) -> None:
        self.inner = inner
        self.sends: Counter[str] = Counter()
        self.overlaps: list[str] = []
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()

    def send(self, request: PayoutRequest) -> PayoutResult:
        number = request.merchant_order_no
        with self._lock:
            self.sends[number] += 1
            if number in self._in_flight:
                self.overlaps.append(number)
            self._in_flight.add(number)
        try:
            return self.inner.send(request)
        finally:
            with self._lock:
                self._in_flight.discard(number)

    def query(self, merchant_order_no: str) -> PayoutState:
        return self.inner.query(merchant_order_no)


def cash_winners(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, winners: int
) -> tuple[Setup, WatchedProvider, list[int]]:
    """``winners`` members each won a ¥5 red envelope; the delivery tasks were lost (nothing
    delivered yet): the outbox rows, pending."""
    s = setup(
        runtime,
        member_count=winners,
        prizes=[
            {
                "key": "cash",
                "name": "现金红包 ¥5",
                "kind": "cash",
                "probability": "1",
                "stock": winners,
                "amount_fen": 500,
            }
        ],
    )
    # WeChat's one-envelope-a-minute per recipient is lifted: it would refuse a second envelope
    # and so hide one paid twice, which is what these tests look for.
    provider = WatchedProvider(
        RecordingPayoutProvider(tmp_path / "wechat.sqlite", per_user_per_minute=100)
    )
    campaigns.use_payout_provider(runtime, provider)
    with monkeypatch.context() as patched:
        patched.setattr(fulfilment, "send_delivery", lambda session, fulfilment_id: None)
        for n, member_id in enumerate(s.member_ids, start=1):
            assert scan(runtime, s, member_id, n) == ("earned", "won", "cash")
    with runtime.db.read_only() as session:
        rows = session.execute(
            select(Fulfilment.id, Fulfilment.status).order_by(Fulfilment.id)
        ).all()
    assert {r.status for r in rows} == {"pending"}
    return s, provider, [r.id for r in rows]


def paid_rows(runtime: Runtime) -> list[Fulfilment]:
    with runtime.db.read_only() as session:
        return list(session.scalars(select(Fulfilment).order_by(Fulfilment.id)))


@pytest.mark.slow
def test_red_envelopes_delivered_by_tasks_and_the_sweep_at_once_are_paid_once(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    s, provider, ids = cash_winners(runtime, monkeypatch, tmp_path, winners=12)
    # Each row's task three times over (redelivered, acknowledged late) and three beat sweeps,
    # all released together: 39 threads.
    work: list[list[Callable[[], Any]]] = [
        [functools.partial(deliver_task.run, fid)] for fid in ids for _ in range(3)
    ]
    work += [[deliver_due_task.run] for _ in range(3)]
    results = in_threads(work, lambda call: call())
    assert not [r for r in results if isinstance(r, tuple) and r[:1] == ("unexpected",)]

    rows = paid_rows(runtime)
    assert [(r.status, r.attempts) for r in rows] == [("done", 1)] * 12
    envelopes = provider.inner.envelopes()
    assert len(envelopes) == 12 and provider.inner.paid_total_fen() == 12 * 500
    for member_id in s.member_ids:
        assert provider.inner.count_paid(f"member:{member_id}") == 1
    assert {r.provider_ref for r in rows} == {e.provider_ref for e in envelopes}
    # Never two workers on one row: each envelope was asked for once, never twice at a time.
    assert provider.overlaps == []
    assert sorted(provider.sends.values()) == [1] * 12


@pytest.mark.slow
def test_a_red_envelope_whose_answer_was_lost_is_paid_once_when_retried(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    s, provider, (fid,) = cash_winners(runtime, monkeypatch, tmp_path, winners=1)
    provider.inner.fail_next("SYSTEMERROR", after_paying=True)
    assert deliver_task.run(fid) == "retry"  # paid, but all we heard was an error
    (row,) = paid_rows(runtime)
    assert (row.status, row.last_code, row.provider_ref) == ("retry", "SYSTEMERROR", None)
    assert provider.inner.count_paid() == 1
    assert row.next_attempt_at is not None

    # The retry comes due; the sweep and redelivered tasks all try it at once.
    later = row.next_attempt_at + dt.timedelta(seconds=1)

    def sweep() -> None:
        with runtime.db.unit_of_work() as session:
            due = fulfilment.due_deliveries(session, now=later)
        for due_id in due:
            with runtime.db.unit_of_work() as session:
                fulfilment.deliver(session, runtime, fulfilment_id=due_id, now=later)

    def task() -> None:
        with runtime.db.unit_of_work() as session:
            fulfilment.deliver(session, runtime, fulfilment_id=fid, now=later)

    results = in_threads([[sweep]] * 2 + [[task]] * 6, lambda call: call())
    assert not [r for r in results if isinstance(r, tuple) and r[:1] == ("unexpected",)]

    (row,) = paid_rows(runtime)
    envelopes = provider.inner.envelopes()
    assert len(envelopes) == 1, envelopes
    envelope = envelopes[0]
    assert (row.status, row.attempts) == ("done", 2)
    assert row.provider_ref == envelope.provider_ref
    assert (envelope.merchant_order_no, envelope.amount_fen) == (row.merchant_order_no, 500)
    assert provider.inner.count_paid(f"member:{s.member_ids[0]}") == 1
    assert provider.sends == Counter({row.merchant_order_no: 2})
