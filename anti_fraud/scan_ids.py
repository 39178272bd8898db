"""Opaque scan ids: what a phone gets back instead of a row id.

A scan id is the base32 of one AES-128 block holding the row id, the scan's month (which names
its partition) and four zero bytes; it reveals neither volume nor order and cannot be guessed
(a random id decrypts to the zero bytes and a valid month with probability < 2^-40). The key
is derived from YIMA_SECRET_KEY.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


@lru_cache(maxsize=8)
def _key(secret: str) -> bytes:
    return HKDF(hashes.SHA256(), 16, salt=None, info=b"yima/scan-id/v1").derive(secret.encode())


_local = threading.local()


def _encryptor(secret: str) -> Any:
    # One ECB context per thread and secret: contexts are not thread-safe, and making one per
    # scan costs more than the encryption.
    cache: dict[str, Any] = _local.__dict__.setdefault("encryptors", {})
    enc = cache.get(secret)
    if enc is None:
        enc = cache[secret] = Cipher(algorithms.AES(_key(secret)), modes.ECB()).encryptor()
    return enc


def encode_scan_id(secret: str, scan_id: int, at: dt.datetime) -> str:
    block = scan_id.to_bytes(8, "big") + (at.year * 100 + at.month).to_bytes(4, "big") + bytes(4)
    return base64.b32encode(_encryptor(secret).update(block)).decode().rstrip("=").lower()


def decode_scan_id(secret: str, text: str) -> tuple[int, int, int] | None:
    """(row id, year, month), or None for anything that is not a scan id of ours."""
    if len(text) != 26 or not text.isascii():
        return None
    try:
        raw = base64.b32decode(text.upper() + "======")
    except ValueError:
        return None
    dec = Cipher(algorithms.AES(_key(secret)), modes.ECB()).decryptor()
    block = dec.update(raw) + dec.finalize()
    if block[12:] != bytes(4):
        return None
    month = int.from_bytes(block[8:12], "big")
    year, month = divmod(month, 100)
    if not (1 <= month <= 12 and 2020 <= year <= 2200):
        return None
    return int.from_bytes(block[:8], "big"), year, month
