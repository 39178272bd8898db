"""TXT and CSV print files: what the printer receives must be exactly the minted codes."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from codegen.print_files.lines import (
    CSV_HEADER,
    gs1_url_prefix,
    iter_gs1_chunks,
    iter_short_chunks,
    short_url_prefix,
    write_csv,
    write_csv_header,
    write_txt,
)
from codegen.tokens import (
    KeyMaterial,
    gs1_url,
    mint_gs1_serial,
    mint_short,
    mint_short_array,
    short_url,
)

HOST = "yima.example.com"
GTIN = "09506000134352"


@pytest.fixture(scope="module")
def key() -> KeyMaterial:
    return KeyMaterial(key_id=3, tenant_id=1, root_secret=bytes(range(32)))


def test_iter_short_chunks_covers_the_range_exactly(key: KeyMaterial) -> None:
    chunks = list(iter_short_chunks(key, 9, 5, 27, chunk=10))
    assert [c[0].tolist() for c in chunks] == [
        list(range(5, 15)),
        list(range(15, 25)),
        list(range(25, 28)),
    ]
    _serials, tokens = chunks[1]
    assert tokens[0].tobytes().decode() == mint_short(key, 9, 15)
    with pytest.raises(ValueError, match="after"):
        list(iter_short_chunks(key, 9, 10, 9))


def test_txt_lines_equal_short_urls(key: KeyMaterial) -> None:
    out = io.BytesIO()
    prefix = short_url_prefix(HOST)
    for _serials, tokens in iter_short_chunks(key, 9, 1, 1000, chunk=300):
        write_txt(out, prefix, tokens)
    lines = out.getvalue().decode("ascii").split("\n")
    assert lines[-1] == ""  # every line, the last included, ends with a newline
    assert lines[:-1] == [short_url(HOST, mint_short(key, 9, s)) for s in range(1, 1001)]


def test_gs1_txt_lines_equal_gs1_urls(key: KeyMaterial) -> None:
    out = io.BytesIO()
    prefix = gs1_url_prefix(HOST, GTIN, "LOT-7")
    for _serials, codes in iter_gs1_chunks(key, 9, 1, 300, GTIN, "LOT-7", chunk=128):
        write_txt(out, prefix, codes)
    expected = [
        gs1_url(HOST, GTIN, "LOT-7", mint_gs1_serial(key, 9, s, GTIN, "LOT-7"))
        for s in range(1, 301)
    ]
    assert out.getvalue().decode("ascii").splitlines() == expected


def _csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


@pytest.mark.parametrize(
    ("first", "last"),
    [(1, 120), (95, 1_005), (999_990, 1_000_010), (12_345_678, 12_345_700)],
)
def test_csv_rows_equal_minted_codes(key: KeyMaterial, first: int, last: int) -> None:
    # The ranges cross digit-count boundaries inside one chunk (9 -> 10, 99 -> 100, ...).
    out = io.BytesIO()
    write_csv_header(out)
    prefix = short_url_prefix(HOST)
    for serials, tokens in iter_short_chunks(key, 9, first, last, chunk=500):
        write_csv(out, serials, tokens, prefix, b"9", b"LOT-7")
    rows = _csv_rows(out.getvalue())
    assert rows[0] == ["serial", "code", "url", "batch", "lot"]
    expected = []
    for s in range(first, last + 1):
        token = mint_short(key, 9, s)
        expected.append([str(s), token, short_url(HOST, token), "9", "LOT-7"])
    assert rows[1:] == expected
    assert b" " not in out.getvalue()


def test_csv_in_any_serial_order_and_with_quoted_labels(key: KeyMaterial) -> None:
    # Shuffled serials of many digit counts take the masked compaction path.
    rng = np.random.default_rng(5)
    serials = rng.permutation(np.concatenate([np.arange(1, 200), np.arange(99_990, 100_020)]))
    serials = serials.astype(np.uint32)
    tokens = mint_short_array(key, 9, serials)
    out = io.BytesIO()
    write_csv(out, serials, tokens, short_url_prefix(HOST), b'Batch "A", 2024', "批次".encode())
    rows = _csv_rows(out.getvalue())
    assert [r[0] for r in rows] == [str(s) for s in serials.tolist()]
    assert [r[1] for r in rows] == [mint_short(key, 9, int(s)) for s in serials]
    assert {r[3] for r in rows} == {'Batch "A", 2024'} and {r[4] for r in rows} == {"批次"}


def test_csv_header_and_empty_chunk() -> None:
    out = io.BytesIO()
    write_csv_header(out)
    write_csv(out, np.array([], np.uint32), np.empty((0, 29), np.uint8), b"p", b"b", b"l")
    assert out.getvalue() == CSV_HEADER == b"serial,code,url,batch,lot\n"


def test_writers_reject_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="one entry per token"):
        write_csv(io.BytesIO(), np.arange(3), np.zeros((2, 29), np.uint8), b"", b"", b"")
    with pytest.raises(ValueError, match="uint8"):
        write_txt(io.BytesIO(), b"", np.zeros((2, 29), np.int64))
