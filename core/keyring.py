"""Envelope encryption of tenant keys under the master key, and the one sealed format every
secret at rest uses.

A key version's 32-byte secret is wrapped with AES-256-GCM under the master key, the key id
and tenant id bound as associated data, so a wrapped secret copied onto another row or tenant
fails to unwrap. The master key never reaches the database.

:func:`seal` / :func:`open_sealed` are that format for any secret under any key: a version
byte, a random 96-bit nonce, the AES-GCM ciphertext and tag; the associated data names what the
secret belongs to (a campaign's seed, a prize claim, a phone number, a TOTP secret), so sealed
bytes moved to another row do not open.
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

WRAP_VERSION = b"\x01"
SEAL_VERSION = WRAP_VERSION


class KeyUnwrapError(Exception):
    """A wrapped key does not open under this master key (wrong key or tampered row)."""


class SealError(ValueError):
    """Sealed bytes that do not open: another key, other associated data, an unknown version
    or tampering."""


def seal(key: bytes, plaintext: bytes, aad: bytes | None = None) -> bytes:
    """``plaintext`` sealed under ``key`` (AES-GCM), bound to ``aad``."""
    nonce = secrets.token_bytes(12)
    return SEAL_VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, sealed: bytes, aad: bytes | None = None) -> bytes:
    """The plaintext of :func:`seal`'s output, or :class:`SealError`."""
    if sealed[:1] != SEAL_VERSION:
        raise SealError("unknown seal version")
    try:
        return AESGCM(key).decrypt(sealed[1:13], sealed[13:], aad)
    except InvalidTag as exc:
        raise SealError("does not open under this key") from exc


def _aad(key_id: int, tenant_id: int) -> bytes:
    return f"yima/code-key/{key_id}/{tenant_id}".encode()


def wrap_secret(master_key: bytes, *, key_id: int, tenant_id: int, secret: bytes) -> bytes:
    return seal(master_key, secret, _aad(key_id, tenant_id))


def unwrap_secret(master_key: bytes, *, key_id: int, tenant_id: int, wrapped: bytes) -> bytes:
    if wrapped[:1] != WRAP_VERSION:
        raise KeyUnwrapError(f"key {key_id}: unknown wrapping version")
    try:
        return open_sealed(master_key, wrapped, _aad(key_id, tenant_id))
    except SealError as exc:
        raise KeyUnwrapError(
            f"key {key_id}: does not open under this master key (wrong YIMA_MASTER_KEY?)"
        ) from exc


def _data_aad(tenant_id: int, purpose: str) -> bytes:
    return f"yima/data-key/{purpose}/{tenant_id}".encode()


def wrap_data_key(master_key: bytes, *, tenant_id: int, purpose: str, secret: bytes) -> bytes:
    """A tenant's data key (personal data at rest) wrapped like a code key, bound to its tenant
    and purpose."""
    return seal(master_key, secret, _data_aad(tenant_id, purpose))


def unwrap_data_key(master_key: bytes, *, tenant_id: int, purpose: str, wrapped: bytes) -> bytes:
    if wrapped[:1] != WRAP_VERSION:
        raise KeyUnwrapError(f"data key {purpose} of tenant {tenant_id}: unknown wrapping version")
    try:
        return open_sealed(master_key, wrapped, _data_aad(tenant_id, purpose))
    except SealError as exc:
        raise KeyUnwrapError(
            f"data key {purpose} of tenant {tenant_id}: does not open under this master key"
        ) from exc
