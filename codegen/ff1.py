"""FF1 format-preserving encryption (NIST SP 800-38G, Rev. 1), on AES from ``cryptography``.

Two entry points:

* :class:`FF1` -- the general algorithm for any radix 2..2**16, one plaintext at a time, written
  step for step after SP 800-38G Algorithms 7 (FF1.Encrypt) and 8 (FF1.Decrypt). Numerals are
  lists of ints; :meth:`FF1.encrypt_str` / :meth:`FF1.decrypt_str` map them through an alphabet.
* :func:`encrypt_radix2` / :func:`decrypt_radix2` -- the same cipher for radix 2, vectorised with
  numpy over many plaintexts that share a key and a tweak. Each Feistel round is one AES-ECB call
  over all N blocks: PRF(P || Q) is a CBC-MAC whose prefix P || Q[:-16] depends only on the key
  and the tweak, so its chaining value is computed once and only the last block, which carries
  the round number and NUM(B), is encrypted per item.

The halves of a radix-2 plaintext are passed as two uint64 arrays: ``a`` holds the first
u = n // 2 bits, ``b`` the last v = n - u bits (each big-endian, i.e. NUM_2 of the bit string).
The vectorised path supports 20 <= n <= 112 bits, so that NUM(B) fits one 64-bit word and the
round's last CBC-MAC block is ``16 - 1 - b`` constant bytes, the round number and b bytes of B.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

__all__ = [
    "FF1",
    "RADIX2_MAX_BITS",
    "RADIX2_MIN_BITS",
    "decrypt_radix2",
    "encrypt_radix2",
]

_ROUNDS = 10
# SP 800-38G Rev. 1 requires radix**minlen >= 1,000,000; for radix 2 that is 20 bits.
_MIN_DOMAIN = 1_000_000
_MAX_LEN = 2**32 - 1
RADIX2_MIN_BITS = 20
RADIX2_MAX_BITS = 112


def _check_key(key: bytes) -> None:
    if len(key) not in (16, 24, 32):
        raise ValueError(f"FF1 key must be 16, 24 or 32 bytes (AES), got {len(key)}")


def _header(radix: int, u: int, n: int, t: int) -> bytes:
    """The 16-byte block P of SP 800-38G Algorithm 7, step 5."""
    return (
        bytes([1, 2, 1])
        + radix.to_bytes(3, "big")
        + bytes([10, u % 256])
        + n.to_bytes(4, "big")
        + t.to_bytes(4, "big")
    )


class FF1:
    """FF1 over AES with a fixed key and radix; thread-safe (each call makes its own AES context).

    ``encrypt(x, tweak)`` and ``decrypt(y, tweak)`` take and return numeral lists of the same
    length n, with radix**n >= 1,000,000 and every numeral in 0..radix-1; ValueError otherwise.
    """

    def __init__(self, key: bytes, radix: int = 10) -> None:
        _check_key(key)
        if not 2 <= radix <= 2**16:
            raise ValueError(f"FF1 radix must be in 2..65536, got {radix}")
        self._cipher = Cipher(algorithms.AES(bytes(key)), modes.ECB())
        self.radix = radix
        # Smallest n with radix**n >= 1,000,000 (and at least 2), by integers to avoid log error.
        min_len = 2
        while radix**min_len < _MIN_DOMAIN:
            min_len += 1
        self.min_len = min_len

    # -- public API -------------------------------------------------------------------------

    def encrypt(self, x: Sequence[int], tweak: bytes = b"") -> list[int]:
        """FF1.Encrypt(K, T, X): the ciphertext numerals of ``x`` under ``tweak``."""
        return self._run(x, tweak, decrypt=False)

    def decrypt(self, y: Sequence[int], tweak: bytes = b"") -> list[int]:
        """FF1.Decrypt(K, T, Y): the plaintext numerals of ``y`` under ``tweak``."""
        return self._run(y, tweak, decrypt=True)

    def encrypt_int(self, value: int, n: int, tweak: bytes = b"") -> int:
        """FF1.Encrypt of the n-numeral string X with NUM_radix(X) == value; returns NUM of Y.

        Same cipher as :meth:`encrypt`, without materialising numeral lists (X[:u] is
        value // radix**v and X[u:] is value % radix**v).
        """
        return self._run_int(value, n, tweak, decrypt=False)

    def decrypt_int(self, value: int, n: int, tweak: bytes = b"") -> int:
        """Inverse of :meth:`encrypt_int`."""
        return self._run_int(value, n, tweak, decrypt=True)

    def encrypt_str(self, text: str, tweak: bytes, alphabet: str) -> str:
        """Encrypt a string whose characters are numerals given by their index in ``alphabet``."""
        return self._map_str(text, tweak, alphabet, decrypt=False)

    def decrypt_str(self, text: str, tweak: bytes, alphabet: str) -> str:
        """Inverse of :meth:`encrypt_str`."""
        return self._map_str(text, tweak, alphabet, decrypt=True)

    # -- the algorithm ----------------------------------------------------------------------

    def _map_str(self, text: str, tweak: bytes, alphabet: str, *, decrypt: bool) -> str:
        if len(alphabet) != self.radix or len(set(alphabet)) != self.radix:
            raise ValueError("alphabet must have exactly `radix` distinct characters")
        index = {ch: i for i, ch in enumerate(alphabet)}
        try:
            numerals = [index[ch] for ch in text]
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} is not in the alphabet") from None
        out = self._run(numerals, tweak, decrypt=decrypt)
        return "".join(alphabet[i] for i in out)

    def _num(self, x: Sequence[int]) -> int:
        """NUM_radix(X), SP 800-38G Algorithm 1."""
        value = 0
        for digit in x:
            value = value * self.radix + digit
        return value

    @staticmethod
    def _cbc(enc: CipherContext, chain: int, data: bytes) -> int:
        """CBC-MAC chaining value after ``data`` (a whole number of blocks), from ``chain``."""
        for off in range(0, len(data), 16):
            block = int.from_bytes(data[off : off + 16], "big") ^ chain
            chain = int.from_bytes(enc.update(block.to_bytes(16, "big")), "big")
        return chain

    def _str(self, value: int, m: int) -> list[int]:
        """STR^m_radix(x), SP 800-38G Algorithm 3 (most significant numeral first)."""
        out = [0] * m
        for i in range(m - 1, -1, -1):
            value, out[i] = divmod(value, self.radix)
        return out

    def _run(self, x: Sequence[int], tweak: bytes, *, decrypt: bool) -> list[int]:
        radix = self.radix
        if any(not 0 <= d < radix for d in x):
            raise ValueError(f"every numeral must be in 0..{radix - 1}")
        n = len(x)
        v = n - n // 2
        value = self._run_int(self._num(x), n, tweak, decrypt=decrypt)
        hi, lo = divmod(value, radix**v)
        return self._str(hi, n - v) + self._str(lo, v)

    def _run_int(self, value: int, n: int, tweak: bytes, *, decrypt: bool) -> int:
        radix = self.radix
        if not self.min_len <= n <= _MAX_LEN:
            raise ValueError(f"FF1 input length must be in {self.min_len}..{_MAX_LEN}, got {n}")
        if not 0 <= value < radix**n:
            raise ValueError(f"value must be in 0..radix**{n} - 1")
        t = len(tweak)
        if t > _MAX_LEN:
            raise ValueError("FF1 tweak is too long")
        u = n // 2
        v = n - u
        # b = ceil(ceil(v * log2(radix)) / 8), computed with integers: the smallest k with
        # 2**k >= radix**v is (radix**v - 1).bit_length(), exact where floating point is not.
        b = ((radix**v - 1).bit_length() + 7) // 8
        d = 4 * ((b + 3) // 4) + 4
        # P || T || [0]^pad is the same in every round: run the CBC-MAC over its whole blocks once
        # and carry the remainder into each round's [i] || NUM(B) part.
        head = _header(radix, u, n, t) + bytes(tweak) + bytes((-t - b - 1) % 16)
        whole = len(head) - len(head) % 16
        enc = self._cipher.encryptor()
        chain0 = self._cbc(enc, 0, head[:whole])
        rest = head[whole:]
        mod_u = radix**u
        mod_v = radix**v
        a_val, b_val = divmod(value, mod_v)
        rounds = range(_ROUNDS - 1, -1, -1) if decrypt else range(_ROUNDS)
        for i in rounds:
            # In decryption the PRF input is NUM(A) rather than NUM(B) (Algorithm 8, step 6.ii).
            src = a_val if decrypt else b_val
            r = self._cbc(enc, chain0, rest + bytes([i]) + src.to_bytes(b, "big"))
            s = r.to_bytes(16, "big")
            for j in range(1, (d + 15) // 16):
                # S = R || CIPH(R xor [j]^16) || ... (Algorithm 7, step 6.iii), only when d > 16.
                s += enc.update((r ^ j).to_bytes(16, "big"))
            y = int.from_bytes(s[:d], "big")
            m_mod = mod_u if i % 2 == 0 else mod_v
            if decrypt:
                b_val, a_val = a_val, (b_val - y) % m_mod
            else:
                a_val, b_val = b_val, (a_val + y) % m_mod
        return a_val * mod_v + b_val


# -- vectorised radix 2 ----------------------------------------------------------------------


class _Radix2Plan:
    """Per (key, tweak, n) constants of the vectorised radix-2 FF1."""

    def __init__(self, key: bytes, tweak: bytes, n: int) -> None:
        _check_key(key)
        if not RADIX2_MIN_BITS <= n <= RADIX2_MAX_BITS:
            raise ValueError(f"radix-2 FF1 supports {RADIX2_MIN_BITS}..{RADIX2_MAX_BITS} bits")
        self.u = n // 2
        self.v = n - self.u
        self.b = (self.v + 7) // 8
        self.d = 4 * ((self.b + 3) // 4) + 4
        t = len(tweak)
        q_fixed = bytes(tweak) + bytes((-t - self.b - 1) % 16)
        head = _header(2, self.u, n, t) + q_fixed
        keep = 16 - 1 - self.b  # constant bytes at the start of the last block
        prefix, tail = head[: len(head) - keep], head[len(head) - keep :]
        cbc = Cipher(algorithms.AES(bytes(key)), modes.CBC(bytes(16))).encryptor()
        chain = cbc.update(prefix)[-16:]
        base = int.from_bytes(chain, "big") ^ (int.from_bytes(tail, "big") << (8 * (self.b + 1)))
        self.hi = np.uint64(base >> 64)
        self.lo = base & (2**64 - 1)
        self.cipher = Cipher(algorithms.AES(bytes(key)), modes.ECB())
        # The low m bits of NUM(S), S = R[:d], are the low bits of R[d-8:d] as one word.
        self.y_off = self.d - 8

    def round_lo(self, i: int) -> np.uint64:
        return np.uint64(self.lo ^ (i << (8 * self.b)))


def _ecb_words(cipher: Cipher[modes.ECB], hi: np.uint64, lo: np.ndarray, y_off: int) -> np.ndarray:
    """AES-ECB over blocks (hi, lo[k]) big-endian; returns R[y_off:y_off+8] of each as uint64."""
    n = lo.shape[0]
    blocks = np.empty((n, 2), dtype=">u8")
    blocks[:, 0] = hi
    blocks[:, 1] = lo
    out = np.empty(n * 16 + 16, dtype=np.uint8)
    cipher.encryptor().update_into(blocks.view(np.uint8).reshape(-1).data, out.data)
    r = out[: n * 16].reshape(n, 16)
    return np.ascontiguousarray(r[:, y_off : y_off + 8]).view(">u8")[:, 0].astype(np.uint64)


def _as_words(values: np.ndarray, bits: int, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D integer array")
    arr = arr.astype(np.uint64)
    if arr.size and int(arr.max()) >> bits:
        raise ValueError(f"{name} has values wider than {bits} bits")
    return arr


def encrypt_radix2(
    key: bytes, tweak: bytes, n: int, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """FF1.Encrypt, radix 2, length n, over many plaintexts given as halves (a: n//2 bits, b: rest).

    Returns the ciphertext halves in the same layout; equal to :meth:`FF1.encrypt` item by item.
    """
    plan = _Radix2Plan(key, tweak, n)
    a_w = _as_words(a, plan.u, "a")
    b_w = _as_words(b, plan.v, "b")
    if a_w.shape != b_w.shape:
        raise ValueError("a and b must have the same length")
    masks = (np.uint64((1 << plan.u) - 1), np.uint64((1 << plan.v) - 1))
    for i in range(_ROUNDS):
        y = _ecb_words(plan.cipher, plan.hi, b_w ^ plan.round_lo(i), plan.y_off)
        c = (a_w + y) & masks[i % 2]
        a_w, b_w = b_w, c
    return a_w, b_w


def decrypt_radix2(
    key: bytes, tweak: bytes, n: int, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """FF1.Decrypt, radix 2: the inverse of :func:`encrypt_radix2` for the same key, tweak, n."""
    plan = _Radix2Plan(key, tweak, n)
    a_w = _as_words(a, plan.u, "a")
    b_w = _as_words(b, plan.v, "b")
    if a_w.shape != b_w.shape:
        raise ValueError("a and b must have the same length")
    masks = (np.uint64((1 << plan.u) - 1), np.uint64((1 << plan.v) - 1))
    for i in range(_ROUNDS - 1, -1, -1):
        y = _ecb_words(plan.cipher, plan.hi, a_w ^ plan.round_lo(i), plan.y_off)
        # uint64 wraps modulo 2**64, a multiple of 2**m, so masking gives the true mod 2**m.
        c = (b_w - y) & masks[i % 2]
        b_w, a_w = a_w, c
    return a_w, b_w
