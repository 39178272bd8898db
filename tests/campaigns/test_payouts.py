"""Cash red envelopes: one payment per merchant order number, however often and from wherever it
is retried; WeChat's limits answered as "retry" with a wait; lost responses; claim and refund."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import multiprocessing.synchronize
import threading
from collections import Counter
from pathlib import Path

import pytest

from campaigns.payouts import (
    PayoutRequest,
    PayoutResult,
    RecordingPayoutProvider,
    merchant_order_no,
)

T0 = dt.datetime(2024, 5, 1, 4, 0, tzinfo=dt.UTC)  # 12:00 in Beijing
MCH = "1900000109"


class Clock:
    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


def order(number: int) -> str:
    return merchant_order_no(MCH, dt.date(2024, 5, 1), number)


def envelope(number: int, recipient: str = "member:42", amount_fen: int = 888) -> PayoutRequest:
    return PayoutRequest(
        merchant_order_no=order(number),
        recipient=recipient,
        amount_fen=amount_fen,
        act_name="Spring scan-and-win",
        wishing="恭喜发财",
        client_ip="10.0.0.1",
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def provider(tmp_path: Path, clock: Clock) -> RecordingPayoutProvider:
    return RecordingPayoutProvider(tmp_path / "wechat.sqlite", clock=clock)


def test_merchant_order_no_is_wechats_28_character_shape_and_deterministic() -> None:
    number = merchant_order_no("1900000109", dt.date(2024, 5, 1), 1234567)
    assert number == "1900000109" + "20240501" + "0001234567"
    assert len(number) == 28 and number.isalnum()
    assert merchant_order_no("1900000109", dt.date(2024, 5, 1), 1234567) == number
    assert merchant_order_no("1900000109", dt.date(2024, 5, 2), 1234567) != number
    assert merchant_order_no(MCH, dt.date(2024, 5, 1), 9_999_999_999).endswith("9999999999")


@pytest.mark.parametrize(
    ("merchant_id", "day", "number"),
    [
        ("190000010", dt.date(2024, 5, 1), 1),  # 9 digits
        ("19000001090", dt.date(2024, 5, 1), 1),  # 11 digits
        ("19000001a9", dt.date(2024, 5, 1), 1),
        ("１９００００01０9", dt.date(2024, 5, 1), 1),  # full-width digits are not [0-9]
        (MCH, dt.date(2024, 5, 1), 10**10),  # 11 digits
        (MCH, dt.date(2024, 5, 1), -1),
        (MCH, dt.datetime(2024, 5, 1, tzinfo=dt.UTC), 1),  # a moment, not a day
    ],
)
def test_merchant_order_no_refuses_bad_inputs(merchant_id: str, day: dt.date, number: int) -> None:
    with pytest.raises(ValueError):
        merchant_order_no(merchant_id, day, number)


def test_a_retried_order_number_pays_once_and_answers_with_the_same_ref(
    provider: RecordingPayoutProvider, clock: Clock
) -> None:
    first = provider.send(envelope(1))
    assert first.outcome == "sent" and first.code == "SUCCESS" and first.provider_ref
    clock.advance(seconds=5)  # inside the per-user minute: a retry is not a second envelope
    again = provider.send(envelope(1))
    assert again == PayoutResult("sent", "SUCCESS", provider_ref=first.provider_ref)
    assert provider.count_paid() == 1 and provider.paid_total_fen() == 888

    state = provider.query(order(1))
    assert (state.status, state.amount_fen, state.provider_ref) == ("sent", 888, first.provider_ref)
    assert state.sent_at == T0 and state.received_at is None and state.refunded_at is None


def test_the_same_number_with_another_amount_or_recipient_is_refused(
    provider: RecordingPayoutProvider,
) -> None:
    assert provider.send(envelope(1)).outcome == "sent"
    assert provider.send(envelope(1, amount_fen=999)) == PayoutResult("failed", "PARAM_ERROR")
    assert provider.send(envelope(1, recipient="member:7")) == PayoutResult("failed", "PARAM_ERROR")
    assert provider.count_paid() == 1 and provider.paid_total_fen() == 888
    assert provider.count_paid("member:7") == 0


@pytest.mark.parametrize(
    "changes",
    [
        {"merchant_order_no": "1" * 29},
        {"merchant_order_no": "1900000109-2024"},
        {"merchant_order_no": ""},
        {"recipient": ""},
        {"act_name": "x" * 33},
        {"wishing": "福" * 129},
    ],
)
def test_fields_wechat_would_refuse_are_param_errors(
    provider: RecordingPayoutProvider, changes: dict[str, str]
) -> None:
    request = PayoutRequest(**{**envelope(1).__dict__, **changes})
    assert provider.send(request) == PayoutResult("failed", "PARAM_ERROR")
    assert provider.count_paid() == 0


def test_amounts_outside_1_to_200_yuan_fail_for_good(
    provider: RecordingPayoutProvider, clock: Clock
) -> None:
    assert provider.send(envelope(1, amount_fen=99)) == PayoutResult("failed", "MONEY_LIMIT")
    assert provider.send(envelope(2, amount_fen=20001)) == PayoutResult("failed", "MONEY_LIMIT")
    assert provider.count_paid() == 0
    assert provider.send(envelope(3, amount_fen=100)).outcome == "sent"
    clock.advance(minutes=1)
    assert provider.send(envelope(4, amount_fen=20000)).outcome == "sent"
    assert provider.paid_total_fen() == 20100


def test_one_envelope_per_recipient_per_minute(
    provider: RecordingPayoutProvider, clock: Clock
) -> None:
    assert provider.send(envelope(1)).outcome == "sent"
    clock.advance(seconds=20)
    assert provider.send(envelope(2)) == PayoutResult("retry", "FREQ_LIMIT", retry_after=40.0)
    assert provider.send(envelope(3, recipient="member:7")).outcome == "sent"
    assert provider.query(order(2)).status == "unknown"  # a refused send pays nothing

    clock.advance(seconds=40)
    assert provider.send(envelope(2)).outcome == "sent"
    assert provider.count_paid("member:42") == 2


def test_ten_envelopes_per_recipient_per_beijing_day(tmp_path: Path) -> None:
    clock = Clock(dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.UTC))  # 22:00 in Beijing
    provider = RecordingPayoutProvider(tmp_path / "wechat.sqlite", clock=clock)
    for number in range(10):
        assert provider.send(envelope(number)).outcome == "sent"
        clock.advance(minutes=1)
    # 22:10 Beijing: the day is full until Beijing midnight (16:00 UTC), not UTC midnight.
    assert provider.send(envelope(10)) == PayoutResult(
        "retry", "SENDNUM_LIMIT", retry_after=110 * 60.0
    )
    assert provider.send(envelope(11, recipient="member:7")).outcome == "sent"
    clock.now = dt.datetime(2024, 5, 1, 16, 0, tzinfo=dt.UTC)
    assert provider.send(envelope(10)).outcome == "sent"
    assert provider.count_paid("member:42") == 11


def test_merchant_rate_limit_per_minute(tmp_path: Path, clock: Clock) -> None:
    provider = RecordingPayoutProvider(
        tmp_path / "wechat.sqlite", merchant_per_minute=3, clock=clock
    )
    for number in range(3):
        assert provider.send(envelope(number, recipient=f"member:{number}")).outcome == "sent"
        clock.advance(seconds=10)
    # 30 s in: the window holds envelopes from 0, 10 and 20 s; the one from 0 s leaves at 60 s.
    refused = provider.send(envelope(3, recipient="member:3"))
    assert refused == PayoutResult("retry", "FREQ_LIMIT", retry_after=30.0)
    clock.advance(seconds=30)
    assert provider.send(envelope(3, recipient="member:3")).outcome == "sent"
    assert provider.send(envelope(4, recipient="member:4")).outcome == "retry"
    assert provider.count_paid() == 4


def test_a_lost_response_is_paid_and_the_retry_gets_the_same_envelope(
    provider: RecordingPayoutProvider, clock: Clock
) -> None:
    provider.fail_next("SYSTEMERROR", after_paying=True)
    lost = provider.send(envelope(1))
    assert (lost.outcome, lost.code, lost.provider_ref) == ("retry", "SYSTEMERROR", None)
    assert lost.retry_after is not None and lost.retry_after > 0
    paid = provider.query(order(1))
    assert paid.status == "sent"  # "retry" did not mean "not paid"

    clock.advance(seconds=2)
    retried = provider.send(envelope(1))
    assert retried == PayoutResult("sent", "SUCCESS", provider_ref=paid.provider_ref)
    assert provider.count_paid() == 1 and provider.paid_total_fen() == 888


def test_injected_faults_without_payment_are_shared_through_the_file(
    tmp_path: Path, provider: RecordingPayoutProvider, clock: Clock
) -> None:
    provider.fail_next("TIMEOUT", times=2)
    other_worker = RecordingPayoutProvider(tmp_path / "wechat.sqlite", clock=clock)
    assert other_worker.send(envelope(1)).code == "TIMEOUT"
    assert provider.send(envelope(1)).code == "TIMEOUT"
    assert provider.count_paid() == 0 and provider.query(order(1)).status == "unknown"
    assert other_worker.send(envelope(1)).outcome == "sent"
    assert provider.query(order(1)).status == "sent"


def test_opening_the_envelope_marks_it_received(
    provider: RecordingPayoutProvider, clock: Clock
) -> None:
    ref = provider.send(envelope(1)).provider_ref
    clock.advance(hours=3)
    opened = provider.claim(order(1))
    assert (opened.status, opened.provider_ref) == ("received", ref)
    assert opened.received_at == T0 + dt.timedelta(hours=3)

    clock.advance(days=10)  # an opened envelope is never refunded
    state = provider.query(order(1))
    assert state.status == "received" and state.received_at == T0 + dt.timedelta(hours=3)
    assert provider.claim(order(1)) == state  # opening it again changes nothing
    with pytest.raises(LookupError):
        provider.claim(order(2))


def test_an_envelope_unopened_for_72_hours_goes_back_to_the_merchant(
    provider: RecordingPayoutProvider, clock: Clock
) -> None:
    provider.send(envelope(1))
    clock.advance(minutes=1)
    provider.send(envelope(2))
    clock.advance(hours=71, minutes=58)
    assert provider.query(order(1)).status == "sent"

    clock.advance(minutes=1)  # 72 h after the first envelope, 71 h 59 min after the second
    refunded = provider.query(order(1))
    assert refunded.status == "refunded"
    assert refunded.refunded_at == T0 + dt.timedelta(hours=72)
    assert [state.status for state in provider.envelopes()] == ["refunded", "sent"]
    assert [state.merchant_order_no for state in provider.envelopes()] == [order(1), order(2)]
    with pytest.raises(ValueError):
        provider.claim(order(1))


def test_an_order_number_never_sent_is_unknown(provider: RecordingPayoutProvider) -> None:
    state = provider.query(order(9))
    assert state.status == "unknown" and state.provider_ref is None and state.amount_fen is None


def test_the_same_number_from_20_threads_pays_once(provider: RecordingPayoutProvider) -> None:
    start = threading.Barrier(20)
    results: list[PayoutResult] = []

    def send() -> None:
        start.wait()
        results.append(provider.send(envelope(1)))

    threads = [threading.Thread(target=send) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 20 and {r.outcome for r in results} == {"sent"}
    assert len({r.provider_ref for r in results}) == 1
    assert provider.count_paid() == 1 and provider.paid_total_fen() == 888


def test_limits_hold_under_concurrency(provider: RecordingPayoutProvider) -> None:
    start = threading.Barrier(20)
    results: list[PayoutResult] = []

    def send(number: int) -> None:
        start.wait()
        results.append(provider.send(envelope(number)))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Twenty different prizes for one member in the same minute: exactly one is paid.
    assert Counter(r.code for r in results) == {"SUCCESS": 1, "FREQ_LIMIT": 19}
    assert provider.count_paid("member:42") == 1


def _send_from_another_process(
    path: str,
    start: multiprocessing.synchronize.Barrier,
    results: multiprocessing.Queue[tuple[str, str | None]],
) -> None:
    provider = RecordingPayoutProvider(path)
    start.wait()
    result = provider.send(envelope(1))
    results.put((result.outcome, result.provider_ref))


def test_the_same_number_from_4_processes_pays_once(tmp_path: Path) -> None:
    path = str(tmp_path / "wechat.sqlite")
    # spawn: each worker is a fresh interpreter, like a replacement worker process.
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(4)
    results: multiprocessing.Queue[tuple[str, str | None]] = context.Queue()
    workers = [
        context.Process(target=_send_from_another_process, args=(path, start, results))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    answers = [results.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert {outcome for outcome, _ref in answers} == {"sent"}
    assert len({ref for _outcome, ref in answers}) == 1
    provider = RecordingPayoutProvider(path)
    assert provider.count_paid() == 1 and provider.envelopes()[0].provider_ref == answers[0][1]
