"""Phones as personal data: one format, sealed at rest, found by a keyed hash, masked."""

from __future__ import annotations

import threading

import pytest

from core import services as core_services
from core.errors import ValidationFailedError
from core.runtime import Runtime
from members.identity import PhoneVault, mask_phone, normalize_phone
from tests.conftest import MASTER_KEY
from tests.factories import make_brand


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
