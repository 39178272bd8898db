"""Code tokens: minting and offline verification of the three URL formats Yima prints.

Keys
    A key version (:class:`KeyMaterial`) has a ``key_id`` in 1..32767, unique among the keys one
    scan service holds (the token carries it), a ``tenant_id`` and a 32-byte ``root_secret``.
    Working keys come from HKDF-SHA256 (no salt) of the root secret:
    ``short_key`` = 32 bytes, info ``yima/short/v1`` (AES-256);
    ``ff1_key`` = 32 bytes, info ``yima/gs1-ff1/v1`` (AES-256);
    ``signing_key`` = Ed25519 key from a 32-byte seed, info ``yima/gs1-digsig/v1``.
    A code identity is (batch_id in 1..2**32-1, serial in 1..2**27-1).

``short``: 29 characters of the RFC 4648 base32 alphabet ``A-Z2-7``
    token = base32(key_id, 15 bits, 3 chars) || base32(C) without padding (26 chars), where
    C = AES-256-ECB(short_key, P) and P = batch_id (4 bytes BE) || serial (4 bytes BE) || 8 zero
    bytes. The last character holds 2 padding bits, which must be zero (canonical form).
    Verification: strict decode (lower case accepted), key lookup, one AES decryption, then the
    8 zero bytes, serial >= 1 and batch >= 1 must hold. No database is read.
    URL: ``HTTPS://<HOST>/C/<TOKEN>``, all upper case so that QR alphanumeric mode applies;
    with a host of up to 21 characters it is <= 61 characters and fits QR version 3-M.

``gs1`` (GS1 Digital Link): ``https://<host>/01/<gtin14>/10/<lot>/21/<serial>``
    serial = base64url (``A-Za-z0-9-_``, 20 chars, no padding) of 120 bits: key_id (15 bits) ||
    FF1-AES-256(ff1_key, tweak, X) (105 bits), X = batch_id (32) || serial (27) || 46 zero bits,
    tweak = ``b"01" + gtin14 + b"10" + lot`` (FF1 of NIST SP 800-38G, radix 2, n = 105). The
    serial is in GS1 character set 82 and <= 20 characters, as AI 21 requires.

``gs1-digsig``: the gs1 URL with ``?8030=<sig>``, sig = base64url (86 chars, no padding) of the
    Ed25519 signature over the UTF-8 bytes of ``(01)<gtin14>(10)<lot>(21)<serial>``; anyone
    holding the public key can check it (:func:`verify_gs1_signature`).

Bounds (for an adversary without the key; AES and FF1 modelled as pseudorandom permutations)
    * Forgery: a fresh short token decrypts to a uniformly random block among those not yet
      issued, so it is accepted with probability <= 2**64 / (2**128 - q) ~ 2**-64 after q issued
      tokens (the 8 zero bytes); a gs1 serial is accepted with probability ~ 2**-46 (46 zero
      bits) per (GTIN, lot). Both are below DESIGN's 2**-40 per guess. A guess also has to name
      a live key id. With the digsig, forging needs an Ed25519 forgery (~2**128 work).
    * Opacity: tokens of any set of serials are indistinguishable from random strings apart from
      the key id, so they reveal neither order, batch size nor volume.
    * Uniqueness: AES and FF1 are permutations for a fixed key (and tweak), and distinct
      (batch, serial) give distinct inputs, so tokens are unique per key with no lookup; tokens
      of distinct keys differ in the key-id prefix. Within a GS1 (GTIN, lot) the same holds.
    * FF1's known small-domain attacks need domains far below 2**105; they do not apply.
    * Copying a gs1 serial onto another GTIN or lot changes the tweak: it then decrypts to an
      unrelated 105-bit value and passes with probability ~ 2**-46.
"""

from __future__ import annotations

import base64
import gc
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Final
from urllib.parse import parse_qs, quote, unquote, urlsplit

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from codegen.ff1 import FF1, decrypt_radix2, encrypt_radix2

__all__ = [
    "FORMAT_GS1",
    "FORMAT_GS1_DIGSIG",
    "FORMAT_SHORT",
    "GS1_SERIAL_LEN",
    "MAX_BATCH_ID",
    "MAX_KEY_ID",
    "MAX_SERIAL",
    "REASONS",
    "SHORT_TOKEN_LEN",
    "BatchVerification",
    "InvalidToken",
    "KeyMaterial",
    "KeyRing",
    "ParsedCode",
    "Verification",
    "VerifiedCode",
    "gs1_url",
    "gtin_check_digit",
    "is_valid_gtin14",
    "mint_gs1_serial",
    "mint_gs1_serial_array",
    "mint_short",
    "mint_short_array",
    "normalize_gtin",
    "parse_code",
    "short_url",
    "sign_gs1",
    "validate_lot",
    "verify_code",
    "verify_gs1",
    "verify_gs1_array",
    "verify_gs1_signature",
    "verify_short",
    "verify_short_array",
    "verify_short_batch",
]

FORMAT_SHORT: Final = "short"
FORMAT_GS1: Final = "gs1"
FORMAT_GS1_DIGSIG: Final = "gs1-digsig"

MAX_KEY_ID: Final = 2**15 - 1
MAX_BATCH_ID: Final = 2**32 - 1
MAX_SERIAL: Final = 2**27 - 1
SHORT_TOKEN_LEN: Final = 29
GS1_SERIAL_LEN: Final = 20
SIGNATURE_LEN: Final = 86

# Reasons in the order of the status codes of BatchVerification (0 means valid).
REASONS: Final = ("malformed", "unknown_key", "retired_key", "bad_signature", "bad_gtin")

_B32_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B64URL_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_GS1_FF1_BITS: Final = 105
_GS1_ZERO_BITS: Final = 46
_MASK64: Final = 2**64 - 1
_MASK128: Final = 2**128 - 1
_LOT_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,20}", re.ASCII)


# -- keys ------------------------------------------------------------------------------------


def _hkdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


@dataclass(frozen=True)
class KeyMaterial:
    """One key version of a tenant; derives and caches its working keys on construction.

    Equality and hashing use the four declared fields only; the secret is kept out of repr.
    """

    key_id: int
    tenant_id: int
    root_secret: bytes = field(repr=False)
    retired: bool = False
    short_key: bytes = field(init=False, repr=False, compare=False)
    ff1_key: bytes = field(init=False, repr=False, compare=False)
    signing_key: Ed25519PrivateKey = field(init=False, repr=False, compare=False)
    # Per-thread AES contexts: cryptography's contexts are not thread-safe, and building one per
    # call would cost more than the single-block AES call they serve.
    _tls: threading.local = field(init=False, repr=False, compare=False)
    _short_cipher: Cipher[modes.ECB] = field(init=False, repr=False, compare=False)
    _short_prefix: str = field(init=False, repr=False, compare=False)
    _ff1: FF1 = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.key_id <= MAX_KEY_ID:
            raise ValueError(f"key_id must be in 1..{MAX_KEY_ID}, got {self.key_id}")
        if len(self.root_secret) != 32:
            raise ValueError("root_secret must be 32 bytes")
        short_key = _hkdf(self.root_secret, b"yima/short/v1")
        ff1_key = _hkdf(self.root_secret, b"yima/gs1-ff1/v1")
        seed = _hkdf(self.root_secret, b"yima/gs1-digsig/v1")
        cheat = object.__setattr__  # frozen: derived fields are set once, here
        cheat(self, "short_key", short_key)
        cheat(self, "ff1_key", ff1_key)
        cheat(self, "signing_key", Ed25519PrivateKey.from_private_bytes(seed))
        cheat(self, "_tls", threading.local())
        cheat(self, "_short_cipher", Cipher(algorithms.AES(short_key), modes.ECB()))
        cheat(self, "_short_prefix", _b32_int(self.key_id, 3))
        cheat(self, "_ff1", FF1(ff1_key, 2))

    def __reduce__(self) -> tuple[Any, ...]:
        # Derived state (thread-locals, AES contexts) cannot be pickled; rebuild it instead, so
        # that a key can be handed to a worker process.
        return (KeyMaterial, (self.key_id, self.tenant_id, self.root_secret, self.retired))

    def public_key_bytes(self) -> bytes:
        """The raw 32-byte Ed25519 public key that verifies this key's gs1-digsig signatures."""
        return self.signing_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def _short_encryptor(self) -> CipherContext:
        tls = self._tls
        try:
            ctx: CipherContext = tls.enc
        except AttributeError:
            ctx = tls.enc = self._short_cipher.encryptor()
        return ctx

    def _short_decryptor(self) -> CipherContext:
        tls = self._tls
        try:
            ctx: CipherContext = tls.dec
        except AttributeError:
            ctx = tls.dec = self._short_cipher.decryptor()
        return ctx


class KeyRing(Mapping[int, KeyMaterial]):
    """The keys a verifier knows, by key_id; raises ValueError on a duplicate key_id."""

    def __init__(self, keys: Iterable[KeyMaterial] = ()) -> None:
        self._keys: dict[int, KeyMaterial] = {}
        for key in keys:
            if key.key_id in self._keys:
                raise ValueError(f"duplicate key_id {key.key_id} in key ring")
            self._keys[key.key_id] = key

    def __getitem__(self, key_id: int) -> KeyMaterial:
        return self._keys[key_id]

    def __iter__(self) -> Iterator[int]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedCode:
    """A genuine code: who issued it and which (batch, serial) it is."""

    tenant_id: int
    batch_id: int
    serial: int
    key_id: int
    format: str


@dataclass(frozen=True, slots=True)
class InvalidToken:
    """A rejected code; ``reason`` is one of :data:`REASONS`."""

    reason: str


Verification = VerifiedCode | InvalidToken

_MALFORMED: Final = InvalidToken("malformed")
_UNKNOWN_KEY: Final = InvalidToken("unknown_key")
_RETIRED_KEY: Final = InvalidToken("retired_key")
_BAD_SIGNATURE: Final = InvalidToken("bad_signature")
_BAD_GTIN: Final = InvalidToken("bad_gtin")
# By status code; entry 0 (valid) is a placeholder that verify_short_batch overwrites.
_BY_STATUS: Final[tuple[Verification, ...]] = (
    _MALFORMED,
    _MALFORMED,
    _UNKNOWN_KEY,
    _RETIRED_KEY,
    _BAD_SIGNATURE,
    _BAD_GTIN,
)
_ST_VALID, _ST_MALFORMED, _ST_UNKNOWN, _ST_RETIRED, _ST_BAD_SIG = 0, 1, 2, 3, 4


# -- validation helpers ----------------------------------------------------------------------


def _check_identity(batch_id: int, serial: int) -> None:
    if not 1 <= batch_id <= MAX_BATCH_ID:
        raise ValueError(f"batch_id must be in 1..{MAX_BATCH_ID}, got {batch_id}")
    if not 1 <= serial <= MAX_SERIAL:
        raise ValueError(f"serial must be in 1..{MAX_SERIAL}, got {serial}")


def _check_mint_key(key: KeyMaterial) -> None:
    if key.retired:
        raise ValueError(f"key {key.key_id} is retired and mints no new codes")


def _check_serials(serials: np.ndarray) -> np.ndarray:
    arr = np.asarray(serials)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError("serials must be a 1-D integer array")
    if arr.size and (int(arr.min()) < 1 or int(arr.max()) > MAX_SERIAL):
        raise ValueError(f"serials must be in 1..{MAX_SERIAL}")
    return arr


def gtin_check_digit(first13: str) -> int:
    """The GS1 mod-10 check digit for the digits before it (weights 3, 1, 3, ... from the right)."""
    if not first13 or not (first13.isascii() and first13.isdigit()):
        raise ValueError("GTIN digits must be ASCII digits")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(first13)))
    return (10 - total % 10) % 10


def is_valid_gtin14(s: str) -> bool:
    """True when ``s`` is exactly 14 ASCII digits whose last digit is the right check digit."""
    return len(s) == 14 and s.isascii() and s.isdigit() and gtin_check_digit(s[:13]) == int(s[13])


def normalize_gtin(s: str) -> str:
    """A GTIN-8/12/13/14 as the 14-digit form; ValueError naming the problem otherwise."""
    if not (s.isascii() and s.isdigit()):
        raise ValueError(f"GTIN must contain only digits, got {s!r}")
    if len(s) not in (8, 12, 13, 14):
        raise ValueError(f"GTIN must have 8, 12, 13 or 14 digits, got {len(s)}")
    gtin = s.zfill(14)
    expected = gtin_check_digit(gtin[:13])
    if int(gtin[13]) != expected:
        raise ValueError(f"GTIN check digit is {gtin[13]}, expected {expected}")
    return gtin


def validate_lot(lot: str) -> str:
    """Return ``lot`` if it is 1..20 characters of ``[A-Za-z0-9._-]``; ValueError otherwise."""
    if not _LOT_RE.fullmatch(lot):
        raise ValueError("lot must be 1 to 20 characters of A-Z, a-z, 0-9, '.', '_' or '-'")
    return lot


# -- base32 / base64url helpers --------------------------------------------------------------


def _b32_int(value: int, chars: int) -> str:
    return "".join(_B32_ALPHABET[(value >> (5 * (chars - 1 - i))) & 31] for i in range(chars))


# Maps a token character to the digit int(..., 32) reads for it (A->0 ... 7->v); lower case is
# accepted. Every other ASCII character maps to "!", which int() rejects: int() would otherwise
# read signs, underscores, blanks and 0/1/8/9 (not in the alphabet) as valid.
_B32_TRANSLATE: Final = {c: ord("!") for c in range(128)} | {
    ord(ch): ord("0123456789abcdefghijklmnopqrstuv"[i])
    for i, base in enumerate(_B32_ALPHABET)
    for ch in {base, base.lower()}
}

_B32_ASCII: Final = np.frombuffer(_B32_ALPHABET.encode(), dtype=np.uint8)
_B64_ASCII: Final = np.frombuffer(_B64URL_ALPHABET.encode(), dtype=np.uint8)
_B32_VALUES: Final = np.full(256, 255, dtype=np.uint8)
for _i, _ch in enumerate(_B32_ALPHABET):
    _B32_VALUES[ord(_ch)] = _i
    _B32_VALUES[ord(_ch.lower())] = _i
_B64_VALUES: Final = np.full(256, 255, dtype=np.uint8)
_B64_VALUES[_B64_ASCII] = np.arange(64, dtype=np.uint8)
# Char pairs as little-endian uint16 (first char in the low byte), indexed by their 10 bits.
_B32_PAIRS: Final = (
    (_B32_ASCII[:, None].astype(np.uint16) | (_B32_ASCII[None, :].astype(np.uint16) << 8))
    .reshape(-1)
    .astype("<u2")
)
_PAIR_BYTE: Final = np.array([10 * k // 8 for k in range(13)], dtype=np.intp)
_PAIR_SHIFT: Final = np.array([6 - 10 * k % 8 for k in range(13)], dtype=np.uint16)
# Inverse of _B32_PAIRS for either case of each letter; 0xFFFF marks a pair not in the alphabet.
_B32_PAIR_VALUES: Final = np.full(65536, 0xFFFF, dtype=np.uint16)
_b32_codes = np.flatnonzero(_B32_VALUES != 255)
_B32_PAIR_VALUES[_b32_codes[:, None] | (_b32_codes[None, :] << 8)] = (
    _B32_VALUES[_b32_codes][:, None].astype(np.uint16) << 5
) | _B32_VALUES[_b32_codes][None, :]
_SH10_6: Final = np.arange(54, -1, -6, dtype=np.uint64)  # 10 base64 chars of a 60-bit word


def _b32_body(ct: np.ndarray) -> np.ndarray:
    """base32 (26 chars, no padding) of each 16-byte row of ``ct``; returns (N, 26) uint8 ASCII."""
    n = ct.shape[0]
    padded = np.zeros((n, 17), dtype=np.uint8)  # the 2 padding bits of char 26 come from here
    padded[:, :16] = ct
    # Two characters (10 bits) at a time: pair k sits in bytes 10k//8 and 10k//8 + 1, so it is
    # one shift and mask of a 16-bit word, then one lookup in a 1024-entry table of char pairs.
    words = np.take(padded, _PAIR_BYTE, axis=1).astype(np.uint16) << np.uint16(8)
    words |= np.take(padded, _PAIR_BYTE + 1, axis=1)
    words >>= _PAIR_SHIFT
    words &= np.uint16(0x3FF)
    return np.ascontiguousarray(np.take(_B32_PAIRS, words)).view(np.uint8)


def _ecb(ctx: CipherContext, blocks: np.ndarray) -> np.ndarray:
    """One AES-ECB update over all rows of ``blocks`` (N, 16) uint8; returns (N, 16) uint8."""
    n = blocks.shape[0]
    out = np.empty(n * 16 + 16, dtype=np.uint8)  # update_into wants one spare block
    ctx.update_into(np.ascontiguousarray(blocks).reshape(-1).data, out.data)
    return out[: n * 16].reshape(n, 16)


# -- short format ----------------------------------------------------------------------------


def mint_short(key: KeyMaterial, batch_id: int, serial: int) -> str:
    """The 29-character short token of (batch_id, serial) under ``key`` (ValueError if retired)."""
    _check_mint_key(key)
    _check_identity(batch_id, serial)
    block = ((batch_id << 96) | (serial << 64)).to_bytes(16, "big")
    ct = key._short_encryptor().update(block)
    return key._short_prefix + base64.b32encode(ct)[:26].decode("ascii")


def mint_short_array(key: KeyMaterial, batch_id: int, serials: np.ndarray) -> np.ndarray:
    """Short tokens of many serials of one batch: (N, 29) uint8 ASCII, row i for serials[i].

    One AES-ECB call over all N blocks and numpy base32; equal to :func:`mint_short` per row.
    """
    _check_mint_key(key)
    _check_identity(batch_id, 1)
    arr = _check_serials(serials)
    n = arr.shape[0]
    plain = np.zeros((n, 4), dtype=">u4")
    plain[:, 0] = batch_id
    plain[:, 1] = arr
    ct = _ecb(key._short_cipher.encryptor(), plain.view(np.uint8))
    out = np.empty((n, SHORT_TOKEN_LEN), dtype=np.uint8)
    out[:, :3] = np.frombuffer(key._short_prefix.encode("ascii"), dtype=np.uint8)
    out[:, 3:] = _b32_body(ct)
    return out


def verify_short(ring: KeyRing, token: str) -> Verification:
    """Verify one short token offline (no database): its identity, or why it is invalid.

    Lower case is accepted; any other deviation from the canonical 29 characters is "malformed".
    """
    if len(token) != SHORT_TOKEN_LEN or not token.isascii():
        return _MALFORMED
    try:
        value = int(token.translate(_B32_TRANSLATE), 32)
    except ValueError:
        return _MALFORMED
    if value & 3:  # non-zero padding bits: a second spelling of some token
        return _MALFORMED
    key: KeyMaterial | None = ring._keys.get(value >> 130)
    if key is None:
        return _UNKNOWN_KEY
    if key.retired:
        return _RETIRED_KEY
    block = key._short_decryptor().update(((value >> 2) & _MASK128).to_bytes(16, "big"))
    plain = int.from_bytes(block, "big")
    if plain & _MASK64:
        return _BAD_SIGNATURE
    batch_id = plain >> 96
    serial = (plain >> 64) & 0xFFFFFFFF
    if batch_id == 0 or not 1 <= serial <= MAX_SERIAL:
        return _BAD_SIGNATURE
    return VerifiedCode(key.tenant_id, batch_id, serial, key.key_id, FORMAT_SHORT)


@dataclass(frozen=True)
class BatchVerification:
    """Column-wise verdicts for N short tokens.

    ``status[i]`` is 0 for a genuine token, else 1 + the index of its reason in :data:`REASONS`;
    the other columns are meaningful where status is 0 (zero elsewhere).
    """

    status: np.ndarray  # uint8
    tenant_id: np.ndarray  # int64
    key_id: np.ndarray  # int64
    batch_id: np.ndarray  # uint32
    serial: np.ndarray  # uint32

    @property
    def valid(self) -> np.ndarray:
        return self.status == 0

    def reason(self, i: int) -> str | None:
        """The reason row ``i`` was rejected, or None when it is genuine."""
        code = int(self.status[i])
        return None if code == 0 else REASONS[code - 1]


def verify_short_array(ring: KeyRing, tokens: np.ndarray) -> BatchVerification:
    """Verify N tokens given as (N, 29) uint8 ASCII: one AES-ECB call per key id present."""
    arr = np.asarray(tokens, dtype=np.uint8)
    if arr.ndim != 2 or arr.shape[1] != SHORT_TOKEN_LEN:
        raise ValueError("tokens must be an (N, 29) uint8 array")
    n = arr.shape[0]
    # Characters two at a time through a 65536-entry table: each pair of ASCII bytes gives its
    # 10 bits, or 0xFFFF when either byte is outside the alphabet.
    body = np.ascontiguousarray(arr[:, 3:]).view("<u2")
    pairs = np.take(_B32_PAIR_VALUES, body)
    head = np.take(_B32_VALUES, arr[:, :3]).astype(np.int64)
    # The 26th character's 2 low bits are padding and must be zero (canonical form).
    bad = (pairs == 0xFFFF).any(axis=1) | (head == 255).any(axis=1) | ((pairs[:, 12] & 3) != 0)
    key_ids = (head[:, 0] << 10) | (head[:, 1] << 5) | head[:, 2]
    # 13 pairs = 130 bits: three groups of 4 pairs are 3 x 5 bytes, the last pair is byte 15 and
    # the 2 padding bits.
    blocks = np.empty((n, 16), dtype=np.uint8)
    grouped = blocks[:, :15].reshape(n, 3, 5)
    p = pairs[:, :12].reshape(n, 3, 4)
    p0, p1, p2, p3 = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
    grouped[..., 0] = p0 >> 2
    grouped[..., 1] = ((p0 & 3) << 6) | (p1 >> 4)
    grouped[..., 2] = ((p1 & 15) << 4) | (p2 >> 6)
    grouped[..., 3] = ((p2 & 63) << 2) | (p3 >> 8)
    grouped[..., 4] = p3 & 255
    blocks[:, 15] = pairs[:, 12] >> 2
    status = bad.astype(np.uint8)  # 1 == _ST_MALFORMED
    tenant = np.zeros(n, dtype=np.int64)
    batch = np.zeros(n, dtype=np.uint32)
    serial = np.zeros(n, dtype=np.uint32)
    candidates = ~bad
    present = np.unique(key_ids[candidates]) if n else key_ids[:0]
    for kid in present.tolist():
        if len(present) == 1 and not bad.any():
            rows: slice | np.ndarray = slice(None)  # the usual case: one key, all well-formed
        else:
            rows = np.flatnonzero(candidates & (key_ids == kid))
        key = ring.get(kid)
        if key is None or key.retired:
            status[rows] = _ST_UNKNOWN if key is None else _ST_RETIRED
            continue
        plain = _ecb(key._short_cipher.decryptor(), blocks[rows]).view(">u4")
        good = (
            ((plain[:, 2] | plain[:, 3]) == 0)
            & (plain[:, 0] >= 1)
            & (plain[:, 1] >= 1)
            & (plain[:, 1] <= MAX_SERIAL)
        )
        status[rows] = np.where(good, _ST_VALID, _ST_BAD_SIG)
        tenant[rows] = np.where(good, key.tenant_id, 0)
        batch[rows] = np.where(good, plain[:, 0], 0)
        serial[rows] = np.where(good, plain[:, 1], 0)
    key_ids[status != _ST_VALID] = 0
    return BatchVerification(status, tenant, key_ids, batch, serial)


def _tokens_to_array(tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, 29) uint8 rows, and a mask of the tokens of the right length (None: all of them)."""
    n = len(tokens)
    if not n or set(map(len, tokens)) == {SHORT_TOKEN_LEN}:
        sized = None
        picked = tokens
    else:
        sized = np.fromiter(map(len, tokens), dtype=np.int64, count=n) == SHORT_TOKEN_LEN
        picked = [t for t, ok in zip(tokens, sized.tolist(), strict=True) if ok]
    # "replace" turns each non-ASCII character into one "?", so every row stays 29 bytes long
    # and the "?" makes it malformed.
    raw = np.frombuffer("".join(picked).encode("ascii", "replace"), dtype=np.uint8)
    if sized is None:
        return raw.reshape(n, SHORT_TOKEN_LEN), None
    arr = np.zeros((n, SHORT_TOKEN_LEN), dtype=np.uint8)
    arr[sized] = raw.reshape(-1, SHORT_TOKEN_LEN)
    return arr, sized


def verify_short_batch(ring: KeyRing, tokens: Sequence[str]) -> list[Verification]:
    """:func:`verify_short` for many tokens at once, vectorised; results in input order."""
    arr, sized = _tokens_to_array(tokens)
    res = verify_short_array(ring, arr)
    status = res.status
    if sized is not None:
        status[~sized] = _ST_MALFORMED
    valid = status == _ST_VALID
    columns: list[Iterable[int]] = [
        res.tenant_id[valid].tolist(),
        res.batch_id[valid].tolist(),
        res.serial[valid].tolist(),
        res.key_id[valid].tolist(),
    ]
    # Creating a million tracked objects triggers repeated collections of the ever older
    # generations, which doubles the cost; these objects form no cycles, so collect once after.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        made = map(VerifiedCode, *columns, repeat(FORMAT_SHORT))
        if valid.all():
            return list(made)
        out = [_BY_STATUS[code] for code in status.tolist()]
        for i, code in zip(np.flatnonzero(valid).tolist(), made, strict=True):
            out[i] = code
        return out
    finally:
        if gc_was_enabled:
            gc.enable()


def short_url(host: str, token: str) -> str:
    """``HTTPS://<HOST>/C/<TOKEN>``, all upper case so a QR code can use alphanumeric mode."""
    return "HTTPS://" + host.upper() + "/C/" + token.upper()


# -- gs1 format ------------------------------------------------------------------------------


def _gs1_tweak(gtin14: str, lot: str) -> bytes:
    return b"01" + gtin14.encode("ascii") + b"10" + lot.encode("utf-8")


def _gs1_inputs(gtin: str, lot: str) -> tuple[str, bytes]:
    gtin14 = normalize_gtin(gtin)
    validate_lot(lot)
    return gtin14, _gs1_tweak(gtin14, lot)


def mint_gs1_serial(key: KeyMaterial, batch_id: int, serial: int, gtin: str, lot: str) -> str:
    """The 20-character AI 21 serial of (batch_id, serial), bound to ``gtin`` and ``lot``."""
    _check_mint_key(key)
    _check_identity(batch_id, serial)
    _, tweak = _gs1_inputs(gtin, lot)
    plain = (batch_id << 73) | (serial << _GS1_ZERO_BITS)
    ct = key._ff1.encrypt_int(plain, _GS1_FF1_BITS, tweak)
    value = (key.key_id << _GS1_FF1_BITS) | ct
    return base64.urlsafe_b64encode(value.to_bytes(15, "big")).decode("ascii")


def mint_gs1_serial_array(
    key: KeyMaterial, batch_id: int, serials: np.ndarray, gtin: str, lot: str
) -> np.ndarray:
    """AI 21 serials of many serials of one batch: (N, 20) uint8 ASCII, vectorised FF1.

    Equal row by row to :func:`mint_gs1_serial`.
    """
    _check_mint_key(key)
    _check_identity(batch_id, 1)
    arr = _check_serials(serials).astype(np.uint64)
    _, tweak = _gs1_inputs(gtin, lot)
    # FF1 splits the 105 bits into A (first 52) and B (last 53).
    a = (np.uint64(batch_id) << np.uint64(20)) | (arr >> np.uint64(7))
    b = (arr & np.uint64(0x7F)) << np.uint64(_GS1_ZERO_BITS)
    ca, cb = encrypt_radix2(key.ff1_key, tweak, _GS1_FF1_BITS, a, b)
    hi = (np.uint64(key.key_id) << np.uint64(45)) | (ca >> np.uint64(7))
    lo = ((ca & np.uint64(0x7F)) << np.uint64(53)) | cb
    idx = np.empty((arr.shape[0], GS1_SERIAL_LEN), dtype=np.uint64)
    idx[:, :10] = (hi[:, None] >> _SH10_6) & np.uint64(63)
    idx[:, 10:] = (lo[:, None] >> _SH10_6) & np.uint64(63)
    return _B64_ASCII[idx.astype(np.intp)]


def _decode_b64url(text: str, nbytes: int) -> bytes | None:
    """Strict unpadded base64url of exactly ``nbytes`` bytes in canonical form, else None."""
    if len(text) != (nbytes * 4 + 2) // 3 or not text.isascii() or "+" in text or "/" in text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None
    # The decoder skips characters outside the alphabet; re-encoding catches that and non-zero
    # padding bits alike.
    if len(raw) != nbytes or base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
        return None
    return raw


def verify_gs1(ring: KeyRing, gtin: str, lot: str, serial_text: str) -> Verification:
    """Verify a GS1 Digital Link's AI 21 serial against its GTIN-14 and lot, offline."""
    if not is_valid_gtin14(gtin):
        return _BAD_GTIN
    if not _LOT_RE.fullmatch(lot):
        return _MALFORMED
    raw = _decode_b64url(serial_text, 15)
    if raw is None:
        return _MALFORMED
    value = int.from_bytes(raw, "big")
    key: KeyMaterial | None = ring._keys.get(value >> _GS1_FF1_BITS)
    if key is None:
        return _UNKNOWN_KEY
    if key.retired:
        return _RETIRED_KEY
    ct = value & ((1 << _GS1_FF1_BITS) - 1)
    plain = key._ff1.decrypt_int(ct, _GS1_FF1_BITS, _gs1_tweak(gtin, lot))
    if plain & ((1 << _GS1_ZERO_BITS) - 1):
        return _BAD_SIGNATURE
    batch_id = plain >> 73
    serial = (plain >> _GS1_ZERO_BITS) & MAX_SERIAL
    if batch_id == 0 or serial == 0:
        return _BAD_SIGNATURE
    return VerifiedCode(key.tenant_id, batch_id, serial, key.key_id, FORMAT_GS1)


def verify_gs1_array(ring: KeyRing, gtin: str, lot: str, serials: np.ndarray) -> BatchVerification:
    """Verify N AI 21 serials of one GTIN and lot given as (N, 20) uint8 ASCII, vectorised."""
    arr = np.asarray(serials, dtype=np.uint8)
    if arr.ndim != 2 or arr.shape[1] != GS1_SERIAL_LEN:
        raise ValueError("serials must be an (N, 20) uint8 array")
    n = arr.shape[0]
    status = np.zeros(n, dtype=np.uint8)
    tenant = np.zeros(n, dtype=np.int64)
    key_ids = np.zeros(n, dtype=np.int64)
    batch = np.zeros(n, dtype=np.uint32)
    serial = np.zeros(n, dtype=np.uint32)
    if not is_valid_gtin14(gtin):
        status[:] = 1 + REASONS.index("bad_gtin")
        return BatchVerification(status, tenant, key_ids, batch, serial)
    if not _LOT_RE.fullmatch(lot):
        status[:] = _ST_MALFORMED
        return BatchVerification(status, tenant, key_ids, batch, serial)
    vals = _B64_VALUES[arr]
    status[(vals == 255).any(axis=1)] = _ST_MALFORMED
    v64 = vals.astype(np.uint64)
    v64[status != _ST_VALID] = 0
    hi = (v64[:, :10] << _SH10_6).sum(axis=1, dtype=np.uint64)
    lo = (v64[:, 10:] << _SH10_6).sum(axis=1, dtype=np.uint64)
    kid_all = (hi >> np.uint64(45)).astype(np.int64)
    ca = ((hi & np.uint64(2**45 - 1)) << np.uint64(7)) | (lo >> np.uint64(53))
    cb = lo & np.uint64(2**53 - 1)
    tweak = _gs1_tweak(gtin, lot)
    candidates = status == _ST_VALID
    for kid in np.unique(kid_all[candidates]).tolist():
        rows = np.flatnonzero(candidates & (kid_all == kid))
        key = ring.get(kid)
        if key is None or key.retired:
            status[rows] = _ST_UNKNOWN if key is None else _ST_RETIRED
            continue
        pa, pb = decrypt_radix2(key.ff1_key, tweak, _GS1_FF1_BITS, ca[rows], cb[rows])
        b_id = pa >> np.uint64(20)
        s_id = ((pa & np.uint64(2**20 - 1)) << np.uint64(7)) | (pb >> np.uint64(_GS1_ZERO_BITS))
        good = ((pb & np.uint64(2**_GS1_ZERO_BITS - 1)) == 0) & (b_id >= 1) & (s_id >= 1)
        status[rows[~good]] = _ST_BAD_SIG
        ok_rows = rows[good]
        tenant[ok_rows] = key.tenant_id
        key_ids[ok_rows] = kid
        batch[ok_rows] = b_id[good]
        serial[ok_rows] = s_id[good]
    return BatchVerification(status, tenant, key_ids, batch, serial)


def _gs1_message(gtin14: str, lot: str, serial_text: str) -> bytes:
    return f"(01){gtin14}(10){lot}(21){serial_text}".encode()


def sign_gs1(key: KeyMaterial, gtin: str, lot: str, serial_text: str) -> str:
    """AI 8030 value: base64url (86 chars) Ed25519 signature over ``(01)gtin(10)lot(21)serial``."""
    _check_mint_key(key)
    gtin14, _ = _gs1_inputs(gtin, lot)
    sig = key.signing_key.sign(_gs1_message(gtin14, lot, serial_text))
    return base64.urlsafe_b64encode(sig).rstrip(b"=").decode("ascii")


def verify_gs1_signature(
    public_key_bytes: bytes, gtin: str, lot: str, serial_text: str, sig: str
) -> bool:
    """True iff ``sig`` is a valid AI 8030 signature of the element string; public key only."""
    raw = _decode_b64url(sig, 64)
    if raw is None or len(public_key_bytes) != 32 or not is_valid_gtin14(gtin):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key_bytes).verify(
            raw, _gs1_message(gtin, lot, serial_text)
        )
    except InvalidSignature:
        return False
    return True


def gs1_url(host: str, gtin: str, lot: str, serial: str, sig: str | None = None) -> str:
    """``https://<host>/01/<gtin14>/10/<lot>/21/<serial>[?8030=<sig>]`` (host as given)."""
    url = (
        f"https://{host}/01/{normalize_gtin(gtin)}/10/{quote(lot, safe='')}"
        f"/21/{quote(serial, safe='')}"
    )
    return url if sig is None else f"{url}?8030={quote(sig, safe='')}"


# -- parsing and dispatch --------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedCode:
    """What a scanned text names: a short token, or a GS1 Digital Link's GTIN, lot and serial."""

    format: str
    host: str | None = None
    token: str | None = None
    gtin: str | None = None
    lot: str | None = None
    serial: str | None = None
    sig: str | None = None


def parse_code(text: str) -> ParsedCode:
    """Parse a bare short token, a short URL (``/C/<token>``, any case and host) or a GS1
    Digital Link URL (``.../01/<gtin>/10/<lot>/21/<serial>[?8030=<sig>]``).

    Only the shape is checked here (:func:`verify_code` judges the content); ValueError when
    the text is none of these.
    """
    text = text.strip()
    if "://" not in text:
        if len(text) == SHORT_TOKEN_LEN and text.isascii() and text.isalnum():
            return ParsedCode(FORMAT_SHORT, token=text.upper())
        raise ValueError("not a Yima code: neither a token nor a URL")
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("not a Yima code: URL must be http(s) with a host")
    host = parts.hostname
    segments = parts.path.split("/")[1:]
    if len(segments) == 2 and segments[0].upper() == "C" and not parts.query:
        token = unquote(segments[1], errors="strict")
        if len(token) != SHORT_TOKEN_LEN:
            raise ValueError("not a Yima code: short token must be 29 characters")
        return ParsedCode(FORMAT_SHORT, host=host, token=token.upper())
    tail = segments[-6:]
    if len(tail) == 6 and (tail[0], tail[2], tail[4]) == ("01", "10", "21"):
        gtin, lot, serial = (unquote(s, errors="strict") for s in (tail[1], tail[3], tail[5]))
        if not (gtin and lot and serial):
            raise ValueError("not a Yima code: empty GTIN, lot or serial")
        query = parse_qs(parts.query, keep_blank_values=True, errors="strict")
        sigs = query.get("8030", [])
        if len(sigs) > 1:
            raise ValueError("not a Yima code: more than one AI 8030")
        if sigs:
            return ParsedCode(FORMAT_GS1_DIGSIG, host, None, gtin, lot, serial, sigs[0])
        return ParsedCode(FORMAT_GS1, host, None, gtin, lot, serial)
    raise ValueError("not a Yima code: URL path is neither /C/<token> nor a GS1 Digital Link")


def verify_code(ring: KeyRing, text: str) -> Verification:
    """Parse a scanned text and verify it offline; "malformed" when it cannot be parsed."""
    try:
        parsed = parse_code(text)
    except ValueError:
        return _MALFORMED
    if parsed.format == FORMAT_SHORT:
        assert parsed.token is not None
        return verify_short(ring, parsed.token)
    assert parsed.gtin is not None and parsed.lot is not None and parsed.serial is not None
    result = verify_gs1(ring, parsed.gtin, parsed.lot, parsed.serial)
    if parsed.sig is None or not isinstance(result, VerifiedCode):
        return result
    key = ring[result.key_id]
    if not verify_gs1_signature(
        key.public_key_bytes(), parsed.gtin, parsed.lot, parsed.serial, parsed.sig
    ):
        return _BAD_SIGNATURE
    return VerifiedCode(
        result.tenant_id, result.batch_id, result.serial, result.key_id, FORMAT_GS1_DIGSIG
    )


def key_id_of(text: str) -> int | None:
    """The key id a code claims (its first 15 bits), without verifying anything; None when the
    text is not shaped like a code. For attributing invalid scans to a tenant."""
    try:
        parsed = parse_code(text)
    except ValueError:
        return None
    if parsed.token is not None:
        head = parsed.token[:3].upper()
        if len(head) != 3 or any(c not in _B32_ALPHABET for c in head):
            return None
        value = 0
        for c in head:
            value = value * 32 + _B32_ALPHABET.index(c)
        return value or None
    raw = _decode_b64url(parsed.serial or "", 15)
    if raw is None:
        return None
    return (int.from_bytes(raw[:2], "big") >> 1) or None
