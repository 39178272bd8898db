"""Phone numbers as personal data: normalised, encrypted at rest, found by keyed hash, masked.

A member's phone is stored twice and never in clear: AES-256-GCM under a key derived from the
tenant's ``pii`` data key (core: wrapped by the master key), and an HMAC-SHA256 of the normalised
number under another key derived from it, which is what sign-in looks up (unique per tenant).
The same phone at two brands has unrelated hashes. Shown anywhere, a phone is masked:
``138****5678``.

Mainland China mobile numbers are accepted as ``13812345678``, ``+86 138 1234 5678``,
``0086-138-1234-5678``; they are kept as ``+8613812345678``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.errors import ValidationFailedError

_SEPARATORS = re.compile(r"[\s\-()]")
_CN_MOBILE = re.compile(r"^1[3-9][0-9]{9}$")
CIPHER_VERSION = b"\x01"


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

    def seal(self, phone: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return CIPHER_VERSION + nonce + AESGCM(self.seal_key).encrypt(nonce, phone.encode(), None)

    def open(self, sealed: bytes) -> str:
        if sealed[:1] != CIPHER_VERSION:
            raise ValueError("unknown phone cipher version")
        try:
            return AESGCM(self.seal_key).decrypt(sealed[1:13], sealed[13:], None).decode()
        except InvalidTag as exc:
            raise ValueError("the phone does not open under this tenant's key") from exc
