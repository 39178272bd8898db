"""Tokens: what a brand, a factory and a consumer's scan rely on (codegen/tokens.py)."""

from __future__ import annotations

import base64
import pickle
import re
import threading

import biip
import numpy as np
import pytest
import qrcode
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from qrcode.exceptions import DataOverflowError

from codegen.tokens import (
    MAX_BATCH_ID,
    MAX_SERIAL,
    InvalidToken,
    KeyMaterial,
    KeyRing,
    ParsedCode,
    VerifiedCode,
    gs1_url,
    gtin_check_digit,
    is_valid_gtin14,
    mint_gs1_serial,
    mint_gs1_serial_array,
    mint_short,
    mint_short_array,
    normalize_gtin,
    parse_code,
    short_url,
    sign_gs1,
    validate_lot,
    verify_code,
    verify_gs1,
    verify_gs1_array,
    verify_gs1_signature,
    verify_short,
    verify_short_array,
    verify_short_batch,
)

B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
GTIN = "09506000134352"
OTHER_GTIN = "09506000134376"
LOT = "L2024-07.a"
HOST = "yima.example.com"
# GS1 General Specifications, character set 82 (allowed in AI 21).
CS82 = re.compile(r"[!\"%&'()*+,\-./0-9:;<=>?A-Z_a-z]{1,20}")


@pytest.fixture(scope="module")
def key() -> KeyMaterial:
    return KeyMaterial(key_id=42, tenant_id=7, root_secret=bytes(range(32)))


@pytest.fixture(scope="module")
def ring(key: KeyMaterial) -> KeyRing:
    return KeyRing([key, KeyMaterial(key_id=9, tenant_id=8, root_secret=bytes(32))])


def _tokens(arr: np.ndarray) -> list[str]:
    return [row.tobytes().decode() for row in arr]


# -- keys ------------------------------------------------------------------------------------


def test_key_derivation_is_the_documented_hkdf(key: KeyMaterial) -> None:
    # Another implementation (a scanner, an auditor) must reproduce tokens from the root secret
    # with nothing but the documented construction.
    short_key = HKDF(hashes.SHA256(), 32, None, b"yima/short/v1").derive(key.root_secret)
    assert key.short_key == short_key
    assert key.ff1_key == HKDF(hashes.SHA256(), 32, None, b"yima/gs1-ff1/v1").derive(
        bytes(range(32))
    )
    block = (5 << 96 | 77 << 64).to_bytes(16, "big")
    enc = Cipher(algorithms.AES(short_key), modes.ECB()).encryptor()
    body = base64.b32encode(enc.update(block)).decode()[:26]
    prefix = "".join(B32[(42 >> s) & 31] for s in (10, 5, 0))
    assert mint_short(key, 5, 77) == prefix + body
    assert len(key.public_key_bytes()) == 32


def test_key_material_validates_and_hides_its_secret() -> None:
    with pytest.raises(ValueError, match="key_id"):
        KeyMaterial(key_id=0, tenant_id=1, root_secret=bytes(32))
    with pytest.raises(ValueError, match="key_id"):
        KeyMaterial(key_id=32768, tenant_id=1, root_secret=bytes(32))
    with pytest.raises(ValueError, match="32 bytes"):
        KeyMaterial(key_id=1, tenant_id=1, root_secret=bytes(16))
    secret = bytes(range(100, 132))
    km = KeyMaterial(key_id=1, tenant_id=1, root_secret=secret)
    assert secret.hex() not in repr(km) and repr(secret) not in repr(km)
    copy = pickle.loads(pickle.dumps(km))  # handed to a worker process
    assert copy == km and mint_short(copy, 1, 1) == mint_short(km, 1, 1)


def test_key_ring_refuses_duplicate_key_ids() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        KeyRing([KeyMaterial(3, 1, bytes(32)), KeyMaterial(3, 2, bytes(range(32)))])


# -- short tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize(("batch_id", "serial"), [(1, 1), (5, 77), (MAX_BATCH_ID, MAX_SERIAL)])
def test_short_round_trip(key: KeyMaterial, ring: KeyRing, batch_id: int, serial: int) -> None:
    token = mint_short(key, batch_id, serial)
    assert len(token) == 29 and set(token) <= set(B32)
    assert verify_short(ring, token) == VerifiedCode(7, batch_id, serial, 42, "short")
    assert verify_code(ring, short_url(HOST, token)) == VerifiedCode(
        7, batch_id, serial, 42, "short"
    )


def test_mint_refuses_out_of_range_identities_and_retired_keys(key: KeyMaterial) -> None:
    for batch_id, serial in [(0, 1), (MAX_BATCH_ID + 1, 1), (1, 0), (1, MAX_SERIAL + 1)]:
        with pytest.raises(ValueError):
            mint_short(key, batch_id, serial)
    with pytest.raises(ValueError, match="serials"):
        mint_short_array(key, 1, np.array([1, MAX_SERIAL + 1]))
    retired = KeyMaterial(key_id=5, tenant_id=7, root_secret=bytes(32), retired=True)
    with pytest.raises(ValueError, match="retired"):
        mint_short(retired, 1, 1)


def test_array_mint_equals_scalar_mint(key: KeyMaterial) -> None:
    serials = np.array([1, 2, 3, 1000, 65_536, MAX_SERIAL], dtype=np.uint32)
    arr = mint_short_array(key, 12345, serials)
    assert arr.shape == (6, 29) and arr.dtype == np.uint8
    assert _tokens(arr) == [mint_short(key, 12345, int(s)) for s in serials]


def test_a_million_consecutive_serials_give_distinct_tokens(key: KeyMaterial) -> None:
    arr = mint_short_array(key, 1, np.arange(1, 1_000_001, dtype=np.uint32))
    assert len(np.unique(arr.view("S29"))) == 1_000_000


def test_tokens_reveal_no_order_or_structure(key: KeyMaterial) -> None:
    n = 100_000
    serials = np.arange(1, n + 1, dtype=np.uint32)
    arr = mint_short_array(key, 3, serials)
    # Neighbours share the key-id prefix, and beyond it only what chance gives (1/32 per char).
    assert (arr[:, :3] == arr[0, :3]).all()
    same_first = float((arr[1:, 3] == arr[:-1, 3]).mean())
    assert same_first < 0.05
    # Every one of the 128 ciphertext bits is set in ~half of the tokens (std 0.0016 here).
    lut = np.zeros(256, dtype=np.uint8)
    lut[np.frombuffer(B32.encode(), np.uint8)] = np.arange(32, dtype=np.uint8)
    vals = lut[arr[:, 3:]]
    bits = ((vals[:, :, None] >> np.arange(4, -1, -1, dtype=np.uint8)) & 1).reshape(n, 130)
    freq = bits[:, :128].mean(axis=0)
    assert np.abs(freq - 0.5).max() < 0.01
    # Sorting the tokens does not sort the serials: rank correlation ~0 (std 0.003 here).
    order = np.argsort(arr.view("S29").ravel(), kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(n)
    assert abs(np.corrcoef(ranks, serials)[0, 1]) < 0.02


def test_every_single_character_change_is_rejected(key: KeyMaterial, ring: KeyRing) -> None:
    tokens = _tokens(mint_short_array(key, 77, np.arange(1, 21)))
    mutated = [
        t[:pos] + ch + t[pos + 1 :]
        for t in tokens
        for pos in range(29)
        for ch in B32
        if ch != t[pos]
    ]
    assert len(mutated) == 20 * 29 * 31
    assert not any(isinstance(r, VerifiedCode) for r in verify_short_batch(ring, mutated))
    assert not any(isinstance(verify_short(ring, t), VerifiedCode) for t in mutated[::7])


def test_random_guesses_with_a_live_key_id_are_all_rejected(
    key: KeyMaterial, ring: KeyRing
) -> None:
    rng = np.random.default_rng(2024)
    values = rng.integers(0, 32, size=(100_000, 26), dtype=np.uint8)
    values[:, 25] &= 0b11100  # canonical padding, so each guess reaches the AES check
    guesses = np.empty((100_000, 29), dtype=np.uint8)
    guesses[:, :3] = mint_short_array(key, 1, np.array([1]))[0, :3]
    guesses[:, 3:] = np.frombuffer(B32.encode(), np.uint8)[values]
    result = verify_short_array(ring, guesses)
    assert not result.valid.any()
    assert {result.reason(i) for i in range(0, 100_000, 97)} == {"bad_signature"}
    assert not any(isinstance(verify_short(ring, t), VerifiedCode) for t in _tokens(guesses[:2000]))


def test_unknown_and_retired_keys(key: KeyMaterial) -> None:
    token = mint_short(key, 1, 1)
    assert verify_short(KeyRing([]), token) == InvalidToken("unknown_key")
    retired = KeyRing([KeyMaterial(42, 7, bytes(range(32)), retired=True)])
    assert verify_short(retired, token) == InvalidToken("retired_key")
    assert verify_short_batch(retired, [token]) == [InvalidToken("retired_key")]
    assert verify_short_batch(KeyRing([]), [token]) == [InvalidToken("unknown_key")]


def test_lower_case_input_is_accepted(key: KeyMaterial, ring: KeyRing) -> None:
    token = mint_short(key, 9, 99)
    expected = VerifiedCode(7, 9, 99, 42, "short")
    assert verify_short(ring, token.lower()) == expected
    assert verify_short_batch(ring, [token.lower()]) == [expected]
    assert verify_code(ring, short_url(HOST, token).lower()) == expected


def test_non_canonical_and_malformed_tokens_are_rejected(key: KeyMaterial, ring: KeyRing) -> None:
    token = mint_short(key, 9, 99)
    last = B32.index(token[-1])
    assert last % 4 == 0
    other_spelling = token[:-1] + B32[last | 1]  # same 128 bits, a padding bit set
    bad = [
        other_spelling,
        token[:-1],
        token + "A",
        token[:-1] + "1",  # 0, 1, 8, 9 are not base32 but int(..., 32) would read them
        "+" + token[1:],
        token[:10] + "_" + token[11:],
        " " + token[1:],
        token[:-1] + "=",
        token[:5] + "\u0663" + token[6:],  # a non-ASCII digit
        "",
    ]
    malformed = InvalidToken("malformed")
    assert [verify_short(ring, t) for t in bad] == [malformed] * len(bad)
    assert verify_short_batch(ring, bad) == [malformed] * len(bad)


def test_batch_verification_equals_one_at_a_time(key: KeyMaterial, ring: KeyRing) -> None:
    other = KeyMaterial(key_id=9, tenant_id=8, root_secret=bytes(32))
    tokens = _tokens(mint_short_array(key, 1, np.arange(1, 200)))
    tokens += _tokens(mint_short_array(other, 2, np.arange(1, 50)))
    tokens += [mint_short(KeyMaterial(300, 1, bytes(32)), 1, 1), "short", tokens[0].lower()]
    tokens += [tokens[3][:-2] + "AA", "Ä" * 29]
    assert verify_short_batch(ring, tokens) == [verify_short(ring, t) for t in tokens]
    assert verify_short_batch(ring, []) == []


def test_verification_is_thread_safe(key: KeyMaterial, ring: KeyRing) -> None:
    # Each thread must get its own AES context: shared ones would return wrong plaintexts.
    tokens = _tokens(mint_short_array(key, 4, np.arange(1, 5001)))
    failures: list[int] = []

    def work(offset: int) -> None:
        for i in range(5000):
            j = (i + offset) % 5000
            result = verify_short(ring, tokens[j])
            if not (isinstance(result, VerifiedCode) and result.serial == j + 1):
                failures.append(j)

    threads = [threading.Thread(target=work, args=(k * 1250,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_short_url_fits_qr_version_3_m(key: KeyMaterial) -> None:
    token = mint_short(key, MAX_BATCH_ID, MAX_SERIAL)
    for host in (HOST, "scan.yima-example.com"):  # 16 and 21 characters
        url = short_url(host, token)
        assert url == f"HTTPS://{host.upper()}/C/{token}" and len(url) <= 61
        qr = qrcode.QRCode(version=3, error_correction=qrcode.constants.ERROR_CORRECT_M)
        qr.add_data(url)
        qr.make(fit=False)
        assert qr.modules_count == 29  # version 3
    # Why upper case: in byte mode the same URL does not fit.
    qr = qrcode.QRCode(version=3, error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(short_url(HOST, token).lower())
    with pytest.raises(DataOverflowError):
        qr.make(fit=False)


# -- GS1 -------------------------------------------------------------------------------------


def test_gtin_helpers() -> None:
    assert gtin_check_digit("0950600013435") == 2
    assert is_valid_gtin14(GTIN) and not is_valid_gtin14("09506000134353")
    assert not is_valid_gtin14("9506000134352")
    assert normalize_gtin("9506000134352") == GTIN  # GTIN-13
    assert normalize_gtin("96385074") == "00000096385074"  # GTIN-8
    assert normalize_gtin("036000291452") == "00036000291452"  # GTIN-12 (UPC-A)
    with pytest.raises(ValueError, match="check digit"):
        normalize_gtin("9506000134353")
    with pytest.raises(ValueError, match="8, 12, 13 or 14 digits"):
        normalize_gtin("95060001343")  # 11 digits
    with pytest.raises(ValueError, match="only digits"):
        normalize_gtin("95060001343 2")


def test_validate_lot() -> None:
    assert validate_lot("A.b_c-9") == "A.b_c-9"
    for lot in ("", "x" * 21, "lot 1", "lot/1", "lötte"):
        with pytest.raises(ValueError, match="lot"):
            validate_lot(lot)


def test_gs1_round_trip_and_character_set(key: KeyMaterial, ring: KeyRing) -> None:
    serial = mint_gs1_serial(key, 31, 4242, "9506000134352", LOT)
    assert CS82.fullmatch(serial) and len(serial) == 20
    assert verify_gs1(ring, GTIN, LOT, serial) == VerifiedCode(7, 31, 4242, 42, "gs1")
    url = gs1_url(HOST, GTIN, LOT, serial)
    assert url == f"https://{HOST}/01/{GTIN}/10/{LOT}/21/{serial}"
    assert verify_code(ring, url) == VerifiedCode(7, 31, 4242, 42, "gs1")


def test_gs1_url_parses_with_an_independent_digital_link_parser(key: KeyMaterial) -> None:
    serial = mint_gs1_serial(key, 31, 4242, GTIN, LOT)
    sig = sign_gs1(key, GTIN, LOT, serial)
    for url in (gs1_url(HOST, GTIN, LOT, serial), gs1_url(HOST, GTIN, LOT, serial, sig)):
        result = biip.parse(url)
        assert result.gs1_digital_link_uri_error is None
        dl = result.gs1_digital_link_uri
        assert dl is not None and result.gtin is not None
        assert result.gtin.value == GTIN
        values = {es.ai.ai: es.value for es in dl.element_strings}
        assert values["01"] == GTIN and values["10"] == LOT and values["21"] == serial
    assert values["8030"] == sig


def test_gs1_array_mint_equals_scalar_and_verifies(key: KeyMaterial, ring: KeyRing) -> None:
    serials = np.array([1, 2, 127, 128, 99_999, MAX_SERIAL], dtype=np.uint32)
    arr = mint_gs1_serial_array(key, 8, serials, GTIN, LOT)
    assert arr.shape == (6, 20)
    assert _tokens(arr) == [mint_gs1_serial(key, 8, int(s), GTIN, LOT) for s in serials]
    result = verify_gs1_array(ring, GTIN, LOT, arr)
    assert result.valid.all() and result.serial.tolist() == serials.tolist()
    assert (result.batch_id == 8).all() and (result.tenant_id == 7).all()


def test_gs1_serial_moved_to_another_lot_or_gtin_fails(key: KeyMaterial, ring: KeyRing) -> None:
    arr = mint_gs1_serial_array(key, 8, np.arange(1, 2001, dtype=np.uint32), GTIN, LOT)
    for gtin, lot in ((GTIN, "L2024-07.b"), (OTHER_GTIN, LOT)):
        moved = verify_gs1_array(ring, gtin, lot, arr)
        assert not moved.valid.any()
        assert moved.reason(0) == "bad_signature"
    serial = arr[0].tobytes().decode()
    assert verify_gs1(ring, GTIN, "OTHER", serial) == InvalidToken("bad_signature")
    assert verify_gs1(ring, OTHER_GTIN, LOT, serial) == InvalidToken("bad_signature")


def test_gs1_rejections(key: KeyMaterial, ring: KeyRing) -> None:
    serial = mint_gs1_serial(key, 8, 1, GTIN, LOT)
    assert verify_gs1(ring, "9506000134352", LOT, serial) == InvalidToken("bad_gtin")
    assert verify_gs1(ring, "09506000134353", LOT, serial) == InvalidToken("bad_gtin")
    assert verify_gs1(ring, GTIN, "bad lot", serial) == InvalidToken("malformed")
    for bad in (serial[:-1], serial + "A", serial[:5] + "+" + serial[6:], serial[:5] + "=" * 15):
        assert verify_gs1(ring, GTIN, LOT, bad) == InvalidToken("malformed")
    assert verify_gs1(KeyRing([]), GTIN, LOT, serial) == InvalidToken("unknown_key")
    retired = KeyRing([KeyMaterial(42, 7, bytes(range(32)), retired=True)])
    assert verify_gs1(retired, GTIN, LOT, serial) == InvalidToken("retired_key")
    flipped = serial[:10] + ("B" if serial[10] != "B" else "C") + serial[11:]
    assert verify_gs1(ring, GTIN, LOT, flipped) == InvalidToken("bad_signature")


def test_digsig_verifies_with_the_public_key_only(key: KeyMaterial, ring: KeyRing) -> None:
    serial = mint_gs1_serial(key, 8, 5, GTIN, LOT)
    sig = sign_gs1(key, GTIN, LOT, serial)
    assert len(sig) == 86 and re.fullmatch(r"[A-Za-z0-9_-]{86}", sig)
    public = key.public_key_bytes()
    assert verify_gs1_signature(public, GTIN, LOT, serial, sig)
    other = mint_gs1_serial(key, 8, 6, GTIN, LOT)
    assert not verify_gs1_signature(public, GTIN, LOT, other, sig)
    assert not verify_gs1_signature(public, GTIN, "L2", serial, sig)
    changed = sig[:10] + ("B" if sig[10] != "B" else "C") + sig[11:]
    assert not verify_gs1_signature(public, GTIN, LOT, serial, changed)
    assert not verify_gs1_signature(bytes(32), GTIN, LOT, serial, sig)

    url = gs1_url(HOST, GTIN, LOT, serial, sig)
    assert url.endswith(f"?8030={sig}")
    assert verify_code(ring, url) == VerifiedCode(7, 8, 5, 42, "gs1-digsig")
    # A genuine serial with another code's signature is caught by the signature.
    other_sig = sign_gs1(key, GTIN, LOT, other)
    swapped = gs1_url(HOST, GTIN, LOT, serial, other_sig)
    assert verify_code(ring, swapped) == InvalidToken("bad_signature")


# -- parsing ---------------------------------------------------------------------------------


def test_parse_code_accepts_the_forms_a_scanner_meets(key: KeyMaterial) -> None:
    token = mint_short(key, 1, 2)
    assert parse_code(token.lower()) == ParsedCode("short", token=token)
    assert parse_code(f"  HTTPS://SCAN.BRAND.CN/C/{token}\n") == ParsedCode(
        "short", host="scan.brand.cn", token=token
    )
    assert parse_code(f"http://scan.brand.cn/c/{token.lower()}").token == token
    parsed = parse_code(f"https://{HOST}/01/{GTIN}/10/LOT%2D1/21/AB%5Fcd?8030=SIG&x=1")
    assert parsed == ParsedCode("gs1-digsig", HOST, None, GTIN, "LOT-1", "AB_cd", "SIG")
    prefixed = parse_code(f"https://{HOST}/shop/01/{GTIN}/10/L1/21/S1")
    assert (prefixed.format, prefixed.gtin, prefixed.lot, prefixed.serial) == (
        "gs1",
        GTIN,
        "L1",
        "S1",
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "ftp://x.cn/C/" + "A" * 29,
        "https://x.cn/C/" + "A" * 28,
        "https://x.cn/D/" + "A" * 29,
        f"https://x.cn/01/{GTIN}/21/S1",
        f"https://x.cn/01/{GTIN}/10//21/S1",
        f"https://x.cn/01/{GTIN}/10/L/21/S?8030=a&8030=b",
    ],
)
def test_parse_code_rejects_other_texts(ring: KeyRing, text: str) -> None:
    with pytest.raises(ValueError):
        parse_code(text)
    assert verify_code(ring, text) == InvalidToken("malformed")


def test_verify_code_reports_a_bad_gtin_in_a_link(key: KeyMaterial, ring: KeyRing) -> None:
    serial = mint_gs1_serial(key, 8, 5, GTIN, LOT)
    url = f"https://{HOST}/01/9506000134352/10/{LOT}/21/{serial}"
    assert verify_code(ring, url) == InvalidToken("bad_gtin")
