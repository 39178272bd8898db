"""Envelope encryption of tenant keys under the master key.

A key version's 32-byte secret is wrapped with AES-256-GCM under the master key, the key id
and tenant id bound as associated data, so a wrapped secret copied onto another row or tenant
fails to unwrap. The master key never reaches the database.
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

WRAP_VERSION = b"\x01"


class KeyUnwrapError(Exception):
    """A wrapped key does not open under this master key (wrong key or tampered row)."""


def _aad(key_id: int, tenant_id: int) -> bytes:
    return f"yima/code-key/{key_id}/{tenant_id}".encode()


def wrap_secret(master_key: bytes, *, key_id: int, tenant_id: int, secret: bytes) -> bytes:
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(master_key).encrypt(nonce, secret, _aad(key_id, tenant_id))
    return WRAP_VERSION + nonce + sealed


def unwrap_secret(master_key: bytes, *, key_id: int, tenant_id: int, wrapped: bytes) -> bytes:
    if wrapped[:1] != WRAP_VERSION:
        raise KeyUnwrapError(f"key {key_id}: unknown wrapping version")
    try:
        return AESGCM(master_key).decrypt(wrapped[1:13], wrapped[13:], _aad(key_id, tenant_id))
    except InvalidTag as exc:
        raise KeyUnwrapError(
            f"key {key_id}: does not open under this master key (wrong YIMA_MASTER_KEY?)"
        ) from exc


def _data_aad(tenant_id: int, purpose: str) -> bytes:
    return f"yima/data-key/{purpose}/{tenant_id}".encode()


def wrap_data_key(master_key: bytes, *, tenant_id: int, purpose: str, secret: bytes) -> bytes:
    """A tenant's data key (personal data at rest) wrapped like a code key, bound to its tenant
    and purpose."""
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(master_key).encrypt(nonce, secret, _data_aad(tenant_id, purpose))
    return WRAP_VERSION + nonce + sealed


def unwrap_data_key(master_key: bytes, *, tenant_id: int, purpose: str, wrapped: bytes) -> bytes:
    if wrapped[:1] != WRAP_VERSION:
        raise KeyUnwrapError(f"data key {purpose} of tenant {tenant_id}: unknown wrapping version")
    try:
        return AESGCM(master_key).decrypt(
            wrapped[1:13], wrapped[13:], _data_aad(tenant_id, purpose)
        )
    except InvalidTag as exc:
        raise KeyUnwrapError(
            f"data key {purpose} of tenant {tenant_id}: does not open under this master key"
        ) from exc
