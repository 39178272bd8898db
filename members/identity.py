"""Phone numbers as personal data: normalised, encrypted at rest, found by keyed hash, masked.

A member's phone is stored twice and never in clear: AES-256-GCM under a key derived from the
tenant's ``pii`` data key (core: wrapped by the master key), and an HMAC-SHA256 of the normalised
number under another key derived from it, which is what sign-in looks up (unique per tenant).
The same phone at two brands has unrelated hashes. Shown anywhere, a phone is masked:
``138****5678``.

Mainland China mobile numbers are accepted as ``13812345678``, ``+86 138 1234 5678``,
``0086-138-1234-5678``; they are kept as ``+8613812345678``.

On top of that: members found or enrolled by phone (first sign-in creates the member, with a
referral code of its own and, when it came through someone's code, its referrer), the profile a
member edits (nickname, birthday, gender, region) and what a member sees of its points. What a
brand's staff see of members is in ``members/directory.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import after_commit, utcnow
from core.errors import ConflictError, ValidationFailedError
from core.keyring import SealError, open_sealed, seal
from core.models import Tenant
from core.runtime import Runtime
from core.services import data_key, get_tenant_by_slug, tenant_today
from members.engagement import reward_referral
from members.errors import BrandNotFoundError, MemberErasedError
from members.ledger import balance_of
from members.models import (
    GENDERS,
    LOT_STATUSES,
    Member,
    PointsLot,
    Tier,
)
from members.services import get_member_or_raise
from members.tiers import check_upgrade

_SEPARATORS = re.compile(r"[\s\-()]")
_CN_MOBILE = re.compile(r"^1[3-9][0-9]{9}$")


def normalize_phone(text: object) -> str:
    """``+86`` and the 11 digits of a mainland mobile number, or a 422 naming ``phone``."""
    if not isinstance(text, str) or len(text) > 32:
        raise ValidationFailedError.field("phone", "a mainland China mobile number: 13812345678")
    digits = _SEPARATORS.sub("", text)
    for prefix in ("+86", "0086"):
        if digits.startswith(prefix):
            digits = digits[len(prefix) :]
            break
    if not _CN_MOBILE.match(digits):
        raise ValidationFailedError.field("phone", "a mainland China mobile number: 13812345678")
    return "+86" + digits


def mask_phone(phone: str) -> str:
    """``138****5678`` for ``+8613812345678``."""
    digits = phone[3:] if phone.startswith("+86") else phone
    return digits[:3] + "****" + digits[-4:]


def _derive(data_key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(data_key)


@dataclass(frozen=True)
class PhoneVault:
    """A tenant's phone keys, derived from its ``pii`` data key."""

    hash_key: bytes
    seal_key: bytes

    @classmethod
    def of(cls, data_key: bytes) -> PhoneVault:
        return cls(_derive(data_key, b"yima/phone/hash"), _derive(data_key, b"yima/phone/seal"))

    def lookup_hash(self, phone: str) -> str:
        """The keyed hash sign-in finds a member by (64 hex characters)."""
        return hmac.new(self.hash_key, phone.encode(), hashlib.sha256).hexdigest()

    def block_hash(self, phone: str) -> str:
        """A keyed hash of the number's block (the first seven digits of the national number,
        号段 + HLR: ``+86 138 1234``), 16 hex characters."""
        key = _derive(self.hash_key, b"yima/phone/block")
        national = phone.removeprefix("+86")
        return hmac.new(key, national[:7].encode(), hashlib.sha256).hexdigest()[:16]

    def seal(self, phone: str) -> bytes:
        return seal(self.seal_key, phone.encode())

    def code_hash(self, phone_hash: str, code: str) -> str:
        """The keyed hash a one-time code is stored as, bound to the phone it was sent to."""
        key = _derive(self.hash_key, b"yima/otp")
        return hmac.new(key, f"{phone_hash}:{code}".encode(), hashlib.sha256).hexdigest()

    def open(self, sealed: bytes) -> str:
        try:
            return open_sealed(self.seal_key, sealed).decode()
        except SealError as exc:
            raise ValueError(f"the phone does not open under this tenant's key: {exc}") from exc


# --- a tenant's phone keys, kept per process ----------------------------------------------------

_vaults: weakref.WeakKeyDictionary[Runtime, dict[int, PhoneVault]] = weakref.WeakKeyDictionary()
_vaults_lock = threading.Lock()


def phone_vault(session: Session, runtime: Runtime, tenant_id: int) -> PhoneVault:
    """The tenant's phone keys. Remembered by this process once the transaction that read (or
    made) the tenant's data key commits: a key made in a transaction that then rolls back is
    never remembered."""
    with _vaults_lock:
        known = _vaults.get(runtime, {}).get(tenant_id)
    if known is not None:
        return known
    vault = PhoneVault.of(
        data_key(
            session,
            master_key=runtime.settings.master_key_bytes,
            tenant_id=tenant_id,
            purpose="pii",
        )
    )

    def remember() -> None:
        with _vaults_lock:
            _vaults.setdefault(runtime, {})[tenant_id] = vault

    after_commit(session, remember)
    return vault


def tenant_of_brand(session: Session, brand: str) -> Tenant:
    """The tenant whose slug is ``brand``, or a 404 naming ``brand``."""
    tenant = get_tenant_by_slug(session, brand) if len(brand) <= 40 else None
    if tenant is None:
        raise BrandNotFoundError(f"no brand {brand!r}", errors={"brand": "unknown brand"})
    return tenant


# --- members by phone -------------------------------------------------------------------------

# No 0/O or 1/I: codes are read aloud and typed by hand. 32^8 = 2^40 codes per brand.
REFERRAL_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
REFERRAL_LENGTH = 8
_SOURCE = re.compile(r"^[a-z0-9_.-]{1,32}$")


def new_referral_code() -> str:
    return "".join(secrets.choice(REFERRAL_ALPHABET) for _ in range(REFERRAL_LENGTH))


@dataclass(frozen=True)
class Enrolled:
    """The member a phone names, and whether this call created it."""

    member: Member
    created: bool


def member_by_phone_hash(session: Session, *, tenant_id: int, phone_hash: str) -> Member | None:
    return session.scalar(
        select(Member).where(Member.tenant_id == tenant_id, Member.phone_hash == phone_hash)
    )


def get_member_by_phone(
    session: Session, runtime: Runtime, *, tenant_id: int, phone: str
) -> Member | None:
    """The brand's member with this phone (any spelling of it), or None."""
    vault = phone_vault(session, runtime, tenant_id)
    return member_by_phone_hash(
        session, tenant_id=tenant_id, phone_hash=vault.lookup_hash(normalize_phone(phone))
    )


def _referrer_of(session: Session, tenant_id: int, code: str | None) -> int | None:
    if not code or len(code.strip()) > 16:
        return None
    return session.scalar(
        select(Member.id).where(
            Member.tenant_id == tenant_id,
            Member.referral_code == code.strip().upper(),
            Member.status == "active",
        )
    )


def enrol_member(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    phone: str,
    source: str = "scan",
    channel: str | None = None,
    referral_code: str | None = None,
    now: dt.datetime | None = None,
) -> Enrolled:
    """The brand's member with this phone, created on first use.

    A new member gets a referral code of its own and, when ``referral_code`` names an active
    member of the same brand, that member as referrer (who is then rewarded; an unknown code
    is ignored). The unique (tenant, phone hash) decides between concurrent first sign-ins:
    the loser's insert fails inside a savepoint and it reads the winner's member.
    """
    phone = normalize_phone(phone)
    if not _SOURCE.match(source):
        raise ValidationFailedError.field("source", "1-32 characters of a-z, 0-9, '_', '.', '-'")
    if channel is not None and (not channel.strip() or len(channel) > 64):
        raise ValidationFailedError.field("channel", "1-64 characters")
    now = now or utcnow()
    vault = phone_vault(session, runtime, tenant_id)
    phone_hash = vault.lookup_hash(phone)
    found = member_by_phone_hash(session, tenant_id=tenant_id, phone_hash=phone_hash)
    if found is not None:
        if found.phone_block is None:
            # Members enrolled before the phone block was kept (migration 0007) get it at their
            # next sign-in, so the reward-fraud rule on number blocks sees them too.
            found.phone_block = vault.block_hash(phone)
            session.flush()
        return Enrolled(found, False)
    referrer_id = _referrer_of(session, tenant_id, referral_code)
    for _attempt in range(16):
        member = Member(
            tenant_id=tenant_id,
            created_at=now,
            status="active",
            phone_hash=phone_hash,
            phone_sealed=vault.seal(phone),
            phone_masked=mask_phone(phone),
            phone_block=vault.block_hash(phone),
            source=source,
            channel=channel.strip() if channel else None,
            referrer_id=referrer_id,
            referral_code=new_referral_code(),
            growth=0,
            last_active_at=now,
        )
        try:
            with session.begin_nested():
                session.add(member)
                session.flush()
        except IntegrityError:
            found = member_by_phone_hash(session, tenant_id=tenant_id, phone_hash=phone_hash)
            if found is not None:
                return Enrolled(found, False)  # a concurrent first sign-in won
            continue  # the referral code was taken: draw another
        if referrer_id is not None:
            reward_referral(session, runtime, tenant_id=tenant_id, member_id=member.id)
        # A new member enters the brand's ladder at once (its entry tier, when there is one).
        check_upgrade(session, runtime, tenant_id=tenant_id, member_id=member.id, now=now)
        return Enrolled(member, True)
    raise ConflictError("could not allocate a referral code; try again")


# --- the profile a member edits ---------------------------------------------------------------

NICKNAME_MAX = 32
OLDEST_BIRTHDAY = dt.date(1900, 1, 1)
PROFILE_FIELDS = ("nickname", "birthday", "gender", "region")
# ISO 3166-1 country, ISO 3166-2 division, or a Chinese city after the province: CN-ZJ/杭州市.
_REGION = re.compile(r"^[A-Z]{2}(?:-[A-Z0-9]{1,3}(?:/[^/\s]{1,40})?)?$")


def check_nickname(value: object) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not 1 <= len(text) <= NICKNAME_MAX or not text.isprintable():
        raise ValidationFailedError.field("nickname", f"1-{NICKNAME_MAX} printable characters")
    return text


def check_birthday(value: object, *, today: dt.date) -> dt.date:
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise ValidationFailedError.field("birthday", "a date, YYYY-MM-DD")
    if not OLDEST_BIRTHDAY <= value < today:
        raise ValidationFailedError.field("birthday", "a past date, not before 1900-01-01")
    return value


def check_gender(value: object) -> str:
    if value not in GENDERS:
        raise ValidationFailedError.field("gender", f"one of {', '.join(GENDERS)}")
    return str(value)


def check_region(value: object) -> str:
    """A region code: ``CN``, ``CN-ZJ`` or ``CN-ZJ/杭州市`` (the head upper-cased); the country
    must exist, the rest is checked for shape (traceability holds the lists of divisions)."""
    text = value.strip() if isinstance(value, str) else ""
    head, slash, city = text.partition("/")
    text = head.upper() + slash + city
    if len(text) > 64 or not _REGION.match(text):
        raise ValidationFailedError.field("region", "a region code such as CN-ZJ or CN-ZJ/杭州市")
    import pycountry  # the ISO 3166-1 list; divisions and cities are checked for shape only

    if pycountry.countries.get(alpha_2=text[:2]) is None:
        raise ValidationFailedError.field("region", f"{text[:2]!r} is not an ISO 3166-1 country")
    return text


def update_profile(
    session: Session,
    *,
    tenant_id: int,
    member_id: int,
    changes: Mapping[str, Any],
    today: dt.date | None = None,
) -> Member:
    """Change the given profile fields (None clears one); all are checked before any is set."""
    member = get_member_or_raise(session, tenant_id=tenant_id, member_id=member_id)
    if member.status != "active":
        raise MemberErasedError(f"member {member_id} was erased")
    today = today or tenant_today(session, tenant_id)
    checked: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in PROFILE_FIELDS:
            raise ValidationFailedError.field(name, "not a profile field")
        if value is None:
            checked[name] = None
        elif name == "nickname":
            checked[name] = check_nickname(value)
        elif name == "birthday":
            checked[name] = check_birthday(value, today=today)
        elif name == "gender":
            checked[name] = check_gender(value)
        else:
            checked[name] = check_region(value)
    for name, value in checked.items():
        setattr(member, name, value)
    session.flush()
    return member


# --- what a member sees -----------------------------------------------------------------------

EXPIRING_GROUPS = 12


def tier_of(session: Session, tier_id: int | None) -> dict[str, Any] | None:
    tier = session.get(Tier, tier_id) if tier_id is not None else None
    return None if tier is None else {"id": tier.id, "name": tier.name, "rank": tier.rank}


def points_summary(
    session: Session, *, member_id: int, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Spendable and pending points, and when what is held expires (soonest first)."""
    balance = balance_of(session, member_id)
    rows = session.execute(
        select(PointsLot.expires_at, func.sum(PointsLot.remaining))
        .where(
            PointsLot.member_id == member_id,
            PointsLot.status.in_(LOT_STATUSES),
            PointsLot.remaining > 0,
            PointsLot.expires_at.is_not(None),
            PointsLot.expires_at > (now or utcnow()),
        )
        .group_by(PointsLot.expires_at)
        .order_by(PointsLot.expires_at)
        .limit(EXPIRING_GROUPS)
    ).all()
    expiring = [{"at": at, "points": int(points)} for at, points in rows]
    return {
        "active": balance.active,
        "pending": balance.pending,
        "next_expiry": expiring[0] if expiring else None,
        "expiring": expiring,
    }


def describe_me(
    session: Session, *, member: Member, now: dt.datetime | None = None
) -> dict[str, Any]:
    """What the member sees of itself (the consumer API's ``Me``)."""
    points = points_summary(session, member_id=member.id, now=now)
    return {
        "id": member.id,
        "phone": member.phone_masked,
        "nickname": member.nickname,
        "birthday": member.birthday,
        "gender": member.gender,
        "region": member.region,
        "tier": tier_of(session, member.tier_id),
        "points": {
            "active": points["active"],
            "pending": points["pending"],
            "next_expiry": points["next_expiry"],
        },
        "growth": member.growth,
        "referral_code": member.referral_code,
    }
