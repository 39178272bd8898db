"""FF1 (NIST SP 800-38G): the published samples, and the vectorised radix-2 path against them."""

from __future__ import annotations

import numpy as np
import pytest

from codegen.ff1 import FF1, decrypt_radix2, encrypt_radix2

KEY128 = "2B7E151628AED2A6ABF7158809CF4F3C"
KEY192 = KEY128 + "EF4359D8D580AA4F"
KEY256 = KEY192 + "7F036D6F04FC6A94"
TWEAK10 = "39383736353433323130"
TWEAK36 = "3737373770717273373737"
DIGITS = "0123456789"
BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"

# NIST's FF1samples.pdf (Samples 1 to 9): key, radix, tweak, plaintext, ciphertext.
NIST_SAMPLES = [
    (KEY128, 10, "", "0123456789", "2433477484"),
    (KEY128, 10, TWEAK10, "0123456789", "6124200773"),
    (KEY128, 36, TWEAK36, "0123456789abcdefghi", "a9tv40mll9kdu509eum"),
    (KEY192, 10, "", "0123456789", "2830668132"),
    (KEY192, 10, TWEAK10, "0123456789", "2496655549"),
    (KEY192, 36, TWEAK36, "0123456789abcdefghi", "xbj3kv35jrawxv32ysr"),
    (KEY256, 10, "", "0123456789", "6657667009"),
    (KEY256, 10, TWEAK10, "0123456789", "1001623463"),
    (KEY256, 36, TWEAK36, "0123456789abcdefghi", "xs8a0azh2avyalyzuwd"),
]


@pytest.mark.parametrize(("key", "radix", "tweak", "plain", "cipher"), NIST_SAMPLES)
def test_nist_samples_encrypt_and_decrypt(
    key: str, radix: int, tweak: str, plain: str, cipher: str
) -> None:
    ff1 = FF1(bytes.fromhex(key), radix)
    alphabet = BASE36[:radix]
    assert ff1.encrypt_str(plain, bytes.fromhex(tweak), alphabet) == cipher
    assert ff1.decrypt_str(cipher, bytes.fromhex(tweak), alphabet) == plain


def test_integer_interface_matches_numeral_interface() -> None:
    ff1 = FF1(bytes.fromhex(KEY256), 10)
    numerals = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert ff1.encrypt_int(123456789, 10, bytes.fromhex(TWEAK10)) == int("1001623463")
    assert ff1.encrypt(numerals, bytes.fromhex(TWEAK10)) == [1, 0, 0, 1, 6, 2, 3, 4, 6, 3]
    assert ff1.decrypt_int(1001623463, 10, bytes.fromhex(TWEAK10)) == 123456789


@pytest.mark.parametrize(("radix", "n"), [(2, 20), (62, 8), (10, 60), (2**16, 4), (36, 100)])
def test_round_trip_across_radixes_and_lengths(radix: int, n: int) -> None:
    # (10, 60) and (36, 100) take more than one AES block per round (d > 16).
    rng = np.random.default_rng(radix * 1000 + n)
    ff1 = FF1(bytes(range(32)), radix)
    for _ in range(5):
        x = rng.integers(0, radix, size=n).tolist()
        y = ff1.encrypt(x, b"tweak")
        assert len(y) == n and all(0 <= d < radix for d in y)
        assert ff1.decrypt(y, b"tweak") == x
        assert ff1.decrypt(y, b"other") != x


def test_rejects_inputs_outside_the_standard() -> None:
    ff1 = FF1(bytes(16), 10)
    with pytest.raises(ValueError, match="length"):
        ff1.encrypt([1, 2, 3, 4, 5], b"")  # 10**5 < 1,000,000 (SP 800-38G Rev. 1)
    with pytest.raises(ValueError, match="numeral"):
        ff1.encrypt([1, 2, 3, 4, 5, 6, 7, 10], b"")
    with pytest.raises(ValueError, match="radix"):
        FF1(bytes(16), 1)
    with pytest.raises(ValueError, match="key"):
        FF1(bytes(15), 10)
    with pytest.raises(ValueError, match="alphabet"):
        ff1.encrypt_str("01234567x", b"", DIGITS)


def _bits(value: int, width: int) -> list[int]:
    return [int(ch) for ch in format(value, f"0{width}b")]


@pytest.mark.parametrize("n", [20, 21, 53, 64, 105, 112])
def test_vectorised_radix2_equals_scalar(n: int) -> None:
    rng = np.random.default_rng(n)
    key = rng.bytes(32)
    tweak = rng.bytes(int(rng.integers(0, 40)))
    u, v = n // 2, n - n // 2
    a = rng.integers(0, 2**u, size=64, dtype=np.uint64)
    b = rng.integers(0, 2**v, size=64, dtype=np.uint64)
    ca, cb = encrypt_radix2(key, tweak, n, a, b)
    scalar = FF1(key, 2)
    for i in range(64):
        expected = scalar.encrypt(_bits(int(a[i]), u) + _bits(int(b[i]), v), tweak)
        assert _bits(int(ca[i]), u) + _bits(int(cb[i]), v) == expected
    da, db = decrypt_radix2(key, tweak, n, ca, cb)
    assert np.array_equal(da, a) and np.array_equal(db, b)


def test_vectorised_radix2_rejects_values_wider_than_their_half() -> None:
    with pytest.raises(ValueError, match="wider"):
        encrypt_radix2(bytes(32), b"", 40, np.array([2**20], np.uint64), np.array([0], np.uint64))
    with pytest.raises(ValueError, match="bits"):
        encrypt_radix2(bytes(32), b"", 120, np.zeros(1, np.uint64), np.zeros(1, np.uint64))
