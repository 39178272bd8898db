"""Console passwords: scrypt (RFC 7914) from the standard library, in a PHC-style string.

``$scrypt$ln=15,r=8,p=1$<salt>$<key>`` (salt 16 random bytes, key 32 bytes, both base64
without padding): N = 2^15, r = 8 costs 32 MiB and ~0.1 s per guess on one core, which is
what OWASP's password storage guidance asks of scrypt. Hashes written by Werkzeug
(``scrypt:...`` or ``pbkdf2:...``, how users were stored before) still verify, and
:func:`needs_rehash` says when a stored hash should be replaced on the next sign-in (an old
format or weaker parameters). Why scrypt and these numbers: docs/console-access.md.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

from werkzeug.security import check_password_hash

LOG_N = 15
BLOCK_SIZE = 8
PARALLELISM = 1
KEY_BYTES = 32
MIN_LENGTH = 8
MAX_LENGTH = 256  # a longer "password" is a denial of service on the KDF, not a password
_MAXMEM = 64 * 1024 * 1024  # 128 * r * N = 32 MiB, plus scrypt's own overhead
_PREFIX = "$scrypt$"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=2**log_n, r=r, p=p, maxmem=_MAXMEM, dklen=KEY_BYTES
    )


def hash_password(password: str) -> str:
    """The string to store for ``password`` (a fresh salt each time)."""
    salt = secrets.token_bytes(16)
    key = _scrypt(password, salt, LOG_N, BLOCK_SIZE, PARALLELISM)
    return f"{_PREFIX}ln={LOG_N},r={BLOCK_SIZE},p={PARALLELISM}${_b64(salt)}${_b64(key)}"


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    try:
        params, salt, key = stored[len(_PREFIX) :].split("$")
        values = dict(part.split("=", 1) for part in params.split(","))
        log_n, r, p = int(values["ln"]), int(values["r"]), int(values["p"])
        if not (10 <= log_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16):
            return None
        return log_n, r, p, _unb64(salt), _unb64(key)
    except (ValueError, KeyError):
        return None


def verify_password(stored: str | None, password: str) -> bool:
    """True when ``password`` matches ``stored`` (this module's format or Werkzeug's)."""
    if not stored or len(password) > MAX_LENGTH:
        return False
    if stored.startswith(_PREFIX):
        parsed = _parse(stored)
        if parsed is None:
            return False
        log_n, r, p, salt, key = parsed
        return hmac.compare_digest(_scrypt(password, salt, log_n, r, p), key)
    if stored.startswith(("scrypt:", "pbkdf2:")):
        return check_password_hash(stored, password)
    return False


def needs_rehash(stored: str | None) -> bool:
    """True for a hash in an older format or with weaker parameters than today's."""
    if not stored or not stored.startswith(_PREFIX):
        return True
    parsed = _parse(stored)
    return parsed is None or parsed[:3] != (LOG_N, BLOCK_SIZE, PARALLELISM)


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def burn_time(password: str) -> None:
    """Spend a verification's time on nothing: an unknown account must not answer faster."""
    verify_password(_dummy_hash(), password)


def check_new_password(password: object, *, email: str = "") -> str:
    """``password`` if it is acceptable as a new password, else a ValueError saying why
    (the caller names the field)."""
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise ValueError(f"at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise ValueError(f"at most {MAX_LENGTH} characters")
    if "\x00" in password:
        raise ValueError("contains a NUL byte")
    if email and password.strip().lower() == email.strip().lower():
        raise ValueError("must not be the e-mail address")
    return password
