"""Phones as personal data: one format, sealed at rest, found by a keyed hash, masked; members
enrolled by phone (once, with referral codes), their profile, their points as they see them,
and members as the brand's staff find and export them."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest

import members
from core import services as core_services
from core.errors import ValidationFailedError
from core.runtime import Runtime
from members.directory import (
    count_members,
    export_rows,
    list_members,
    member_filter,
    member_phone,
    member_profile,
)
from members.errors import BrandNotFoundError
from members.identity import (
    REFERRAL_ALPHABET,
    Enrolled,
    PhoneVault,
    check_region,
    enrol_member,
    get_member_by_phone,
    mask_phone,
    normalize_phone,
    phone_vault,
    points_summary,
    tenant_of_brand,
    update_profile,
)
from members.models import Member
from tests.conftest import MASTER_KEY
from tests.factories import Brand, make_brand


@pytest.mark.parametrize(
    "given", ["13812345678", "+86 138 1234 5678", "0086-138-1234-5678", " (138) 1234-5678 "]
)
def test_the_ways_people_write_a_mobile_number_are_one_number(given: str) -> None:
    assert normalize_phone(given) == "+8613812345678"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "12812345678",
        "1381234567",
        "138123456789",
        "+1 415 555 0100",
        "１３８12345678",
        13812345678,
    ],
)
def test_a_phone_in_the_wrong_format_is_a_clear_error(bad: object) -> None:
    with pytest.raises(ValidationFailedError) as caught:
        normalize_phone(bad)
    assert "phone" in caught.value.errors


def test_a_phone_is_shown_masked() -> None:
    assert mask_phone("+8613812345678") == "138****5678"


def test_each_brand_seals_and_hashes_with_its_own_key(runtime: Runtime) -> None:
    import base64

    master = base64.b64decode(MASTER_KEY)
    with runtime.db.unit_of_work() as session:
        a = make_brand(session, runtime, slug="brand-a").tenant_id
        b = make_brand(session, runtime, slug="brand-b").tenant_id
    keys: dict[int, bytes] = {}
    errors: list[BaseException] = []

    def first_use(tenant_id: int) -> None:
        try:
            with runtime.db.unit_of_work() as session:
                key = core_services.data_key(
                    session, master_key=master, tenant_id=tenant_id, purpose="pii"
                )
            keys.setdefault(tenant_id, key)
            assert keys[tenant_id] == key
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(t,)) for t in (a, b, a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []  # concurrent first uses agree on one key per brand
    phone = normalize_phone("138 1234 5678")
    vault_a, vault_b = PhoneVault.of(keys[a]), PhoneVault.of(keys[b])
    assert vault_a.lookup_hash(phone) == vault_a.lookup_hash(phone)
    assert vault_a.lookup_hash(phone) != vault_b.lookup_hash(phone)
    sealed = vault_a.seal(phone)
    assert phone.encode() not in sealed and b"13812345678" not in sealed
    assert vault_a.open(sealed) == phone
    with pytest.raises(ValueError):
        vault_b.open(sealed)


# --- members by phone -------------------------------------------------------------------------


@pytest.fixture
def brand(runtime: Runtime) -> Brand:
    with runtime.db.unit_of_work() as session:
        return make_brand(session, runtime, quantity=10)


def enrol(runtime: Runtime, tenant_id: int, phone: str, **kw: Any) -> Enrolled:
    with runtime.db.unit_of_work() as session:
        return enrol_member(session, runtime, tenant_id=tenant_id, phone=phone, **kw)


def test_a_member_is_enrolled_once_per_phone_with_a_referral_code_of_its_own(
    runtime: Runtime, brand: Brand
) -> None:
    first = enrol(runtime, brand.tenant_id, "13812345678", channel="shop-42", source="poster")
    assert first.created
    code = first.member.referral_code
    assert code is not None and len(code) == 8 and set(code) <= set(REFERRAL_ALPHABET)
    again = enrol(runtime, brand.tenant_id, "+86 138 1234 5678")
    assert not again.created and again.member.id == first.member.id
    with runtime.db.read_only() as session:
        member = session.get(Member, first.member.id)
        assert member is not None
        assert (member.source, member.channel, member.status) == ("poster", "shop-42", "active")
        assert member.phone_masked == "138****5678" and member.last_active_at is not None
        assert b"13812345678" not in (member.phone_sealed or b"")
    for bad, field in (({"source": "Poster!"}, "source"), ({"channel": " "}, "channel")):
        with pytest.raises(ValidationFailedError) as caught:
            enrol(runtime, brand.tenant_id, "13900000000", **bad)
        assert field in caught.value.errors


def test_a_member_enrolled_without_a_phone_block_gets_it_at_the_next_sign_in(
    runtime: Runtime, brand: Brand
) -> None:
    """Members from before the block was kept: the reward-fraud rule on number blocks sees them
    once they sign in again."""
    first = enrol(runtime, brand.tenant_id, "13812345678").member
    with runtime.db.unit_of_work() as session:
        member = session.get(Member, first.id)
        assert member is not None and member.phone_block is not None
        expected, member.phone_block = member.phone_block, None
    assert enrol(runtime, brand.tenant_id, "138 1234 5678").member.phone_block == expected
    with runtime.db.read_only() as session:
        member = session.get(Member, first.id)
        assert member is not None and member.phone_block == expected


def test_a_referral_code_names_the_referrer_who_is_rewarded(runtime: Runtime, brand: Brand) -> None:
    def referral_points(member_id: int) -> list[tuple[str, int]]:
        with runtime.db.read_only() as session:
            return [
                (e.business_key, e.points)
                for e in members.entries_of(session, member_id=member_id)
                if e.reason == "referral"
            ]

    referrer = enrol(runtime, brand.tenant_id, "13811110000").member
    with runtime.db.unit_of_work() as session:
        rival = make_brand(session, runtime, slug="rival", quantity=10)
    stranger = enrol(runtime, rival.tenant_id, "13811110009").member
    assert referrer.referral_code is not None and stranger.referral_code is not None
    invited = enrol(
        runtime, brand.tenant_id, "13811110001", referral_code=referrer.referral_code.lower()
    )
    assert invited.member.referrer_id == referrer.id
    assert referral_points(referrer.id) == [(f"referral:{invited.member.id}:1", 50)]
    # Signing in again rewards nobody; unknown codes and other brands' codes are ignored.
    enrol(runtime, brand.tenant_id, "13811110001", referral_code=referrer.referral_code)
    unknown = enrol(runtime, brand.tenant_id, "13811110002", referral_code="ZZZZZZZZ")
    foreign = enrol(runtime, brand.tenant_id, "13811110003", referral_code=stranger.referral_code)
    assert unknown.member.referrer_id is None and foreign.member.referrer_id is None
    assert len(referral_points(referrer.id)) == 1
    assert referral_points(stranger.id) == []


def test_referral_codes_are_drawn_again_when_taken(
    runtime: Runtime, brand: Brand, monkeypatch: pytest.MonkeyPatch
) -> None:
    import members.identity

    draws = iter(["AAAAAAAA", "AAAAAAAA", "BBBBBBBB"])
    monkeypatch.setattr(members.identity, "new_referral_code", lambda: next(draws))
    assert enrol(runtime, brand.tenant_id, "13822220000").member.referral_code == "AAAAAAAA"
    assert enrol(runtime, brand.tenant_id, "13822220001").member.referral_code == "BBBBBBBB"


def test_a_brand_key_made_in_a_failed_transaction_is_not_remembered(
    runtime: Runtime, brand: Brand
) -> None:
    with pytest.raises(RuntimeError), runtime.db.unit_of_work() as session:
        phone_vault(session, runtime, brand.tenant_id)  # makes the brand's pii key
        raise RuntimeError("rolled back")
    member = enrol(runtime, brand.tenant_id, "13833330000").member
    with runtime.db.read_only() as session:
        found = get_member_by_phone(
            session, runtime, tenant_id=brand.tenant_id, phone="13833330000"
        )
        assert found is not None and found.id == member.id
        assert (
            member_phone(session, runtime, tenant_id=brand.tenant_id, member_id=member.id)
            == "+8613833330000"
        )


def test_an_unknown_brand_is_a_404_naming_it(runtime: Runtime) -> None:
    with runtime.db.read_only() as session, pytest.raises(BrandNotFoundError) as caught:
        tenant_of_brand(session, "nobody")
    assert caught.value.status == 404 and caught.value.errors == {"brand": "unknown brand"}


# --- the profile ------------------------------------------------------------------------------

TODAY = dt.date(2026, 11, 22)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"nickname": ""}, "nickname"),
        ({"nickname": "   "}, "nickname"),
        ({"nickname": "x" * 33}, "nickname"),
        ({"nickname": "tab\there"}, "nickname"),
        ({"nickname": "zero\u200bwidth"}, "nickname"),
        ({"birthday": TODAY}, "birthday"),
        ({"birthday": dt.date(1899, 12, 31)}, "birthday"),
        ({"birthday": "1990-01-01"}, "birthday"),
        ({"gender": "unknown"}, "gender"),
        ({"region": "ZJ"}, "region"),
        ({"region": "CN-"}, "region"),
        ({"region": "CN-ZJ/杭州市/西湖区"}, "region"),
        ({"region": "China"}, "region"),
        ({"phone_hash": "x"}, "phone_hash"),
        ({"nickname": "fine", "gender": "robot"}, "gender"),
    ],
)
def test_a_bad_profile_change_is_refused_whole(
    runtime: Runtime, brand: Brand, changes: dict[str, Any], field: str
) -> None:
    member_id = enrol(runtime, brand.tenant_id, "13844440000").member.id
    with pytest.raises(ValidationFailedError) as caught, runtime.db.unit_of_work() as session:
        update_profile(
            session, tenant_id=brand.tenant_id, member_id=member_id, changes=changes, today=TODAY
        )
    assert field in caught.value.errors
    with runtime.db.read_only() as session:
        member = session.get(Member, member_id)
        assert member is not None and member.nickname is None and member.gender is None


def test_a_profile_is_set_and_cleared(runtime: Runtime, brand: Brand) -> None:
    member_id = enrol(runtime, brand.tenant_id, "13844440001").member.id
    with runtime.db.unit_of_work() as session:
        update_profile(
            session,
            tenant_id=brand.tenant_id,
            member_id=member_id,
            changes={
                "nickname": "  茶友 🍵 ",
                "birthday": dt.date(1900, 1, 1),
                "gender": "other",
                "region": "us-ca",
            },
            today=TODAY,
        )
    with runtime.db.unit_of_work() as session:
        member = update_profile(
            session,
            tenant_id=brand.tenant_id,
            member_id=member_id,
            changes={"birthday": None, "region": "CN-ZJ/Hangzhou"},
            today=TODAY,
        )
        assert (member.nickname, member.birthday, member.gender, member.region) == (
            "茶友 🍵",
            None,
            "other",
            "CN-ZJ/Hangzhou",
        )
    assert check_region("cn") == "CN" and check_region("CN-ZJ/杭州市") == "CN-ZJ/杭州市"


# --- points as the member sees them, members as the staff see them ------------------------------


def test_points_expiring_soonest_first_and_history_newest_first(
    runtime: Runtime, brand: Brand
) -> None:
    member_id = enrol(runtime, brand.tenant_id, "13855550000").member.id
    t0 = dt.datetime(2026, 11, 22, 4, 0, tzinfo=dt.UTC)
    with runtime.db.unit_of_work() as session:
        for key, points, expiry, pending in (
            ("a", 100, "30d", dt.timedelta(0)),
            ("b", 40, "30d", dt.timedelta(days=1)),
            ("c", 60, "10d", dt.timedelta(0)),
            ("d", 5, "never", dt.timedelta(0)),
        ):
            members.earn(
                session,
                tenant_id=brand.tenant_id,
                member_id=member_id,
                points=points,
                business_key=f"t:{key}",
                expiry=members.Expiry.parse(expiry),
                pending_for=pending,
                now=t0,
            )
        members.spend(
            session,
            tenant_id=brand.tenant_id,
            member_id=member_id,
            points=60,
            business_key="t:spend",
            now=t0,
        )
        summary = points_summary(session, member_id=member_id, now=t0)
        later = points_summary(session, member_id=member_id, now=t0 + dt.timedelta(days=40))
        newest = list(members.entries_of(session, member_id=member_id, limit=2))
        older = list(
            members.entries_of(session, member_id=member_id, after=newest[-1].id, limit=10)
        )
    # The spend took the 10-day lot; what is left expires in 30 days (100 active + 40 pending).
    assert (summary["active"], summary["pending"]) == (105, 40)
    assert summary["expiring"] == [{"at": t0 + dt.timedelta(days=30), "points": 140}]
    assert summary["next_expiry"] == {"at": t0 + dt.timedelta(days=30), "points": 140}
    assert later["expiring"] == [] and later["next_expiry"] is None
    assert [e.points for e in newest] == [-60, 5] and [e.points for e in older] == [60, 40, 100]


def test_staff_filter_and_export_members(runtime: Runtime, brand: Brand) -> None:
    ids = [
        enrol(runtime, brand.tenant_id, f"1386666000{n}", channel=c).member.id
        for n, c in enumerate(("shop", "mall", "shop"))
    ]
    with runtime.db.unit_of_work() as session:
        shop = member_filter(session, runtime, tenant_id=brand.tenant_id, channel="shop")
        by_phone = member_filter(
            session, runtime, tenant_id=brand.tenant_id, phone="+86 138 6666 0001"
        )
        assert [m.id for m in list_members(session, tenant_id=brand.tenant_id, filters=shop)] == [
            ids[0],
            ids[2],
        ]
        assert [
            m.id for m in list_members(session, tenant_id=brand.tenant_id, filters=by_phone)
        ] == [ids[1]]
        assert [
            m.id for m in list_members(session, tenant_id=brand.tenant_id, after_id=ids[0], limit=1)
        ] == [ids[1]]
        assert count_members(session, tenant_id=brand.tenant_id, filters=shop) == (2, ids[2])
        assert by_phone.described() == {"phone": "given"}
        vault = phone_vault(session, runtime, brand.tenant_id)
        with pytest.raises(ValidationFailedError):
            member_filter(session, runtime, tenant_id=brand.tenant_id, status="gone")
        profile = member_profile(
            session, runtime, tenant_id=brand.tenant_id, member_id=ids[1], unmasked=True
        )
        assert profile["phone"] == "+8613866660001" and profile["channel"] == "mall"
    masked = list(export_rows(runtime, tenant_id=brand.tenant_id, filters=shop, upto_id=ids[2]))
    assert [r[1] for r in masked] == ["138****0000", "138****0002"]
    full = list(
        export_rows(
            runtime, tenant_id=brand.tenant_id, filters=shop, upto_id=ids[2], vault=vault, page=1
        )
    )
    assert [r[1] for r in full] == ["+8613866660000", "+8613866660002"]
