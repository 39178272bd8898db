"""Line print files (TXT, CSV) for variable-data inkjet printers, written column-wise.

Codes come in chunks of N rows as (N, L) uint8 ASCII arrays (see :func:`iter_short_chunks` and
:func:`iter_gs1_chunks`); each chunk is laid out as one (N, row width) uint8 array and written
with a single ``out.write``. Nothing is formatted line by line in Python, and memory is bounded
by the chunk size whatever the number of codes.

TXT: one URL per line, ``<url prefix><code>\\n``.
CSV (UTF-8, ``\\n`` line ends, readable by :mod:`csv`): header ``serial,code,url,batch,lot`` and
one row per code, ``serial`` in decimal without padding.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import IO, Final

import numpy as np

from codegen.tokens import (
    KeyMaterial,
    gs1_url,
    mint_gs1_serial_array,
    mint_short_array,
    short_url,
)

__all__ = [
    "CSV_HEADER",
    "DEFAULT_CHUNK",
    "gs1_url_prefix",
    "iter_gs1_chunks",
    "iter_short_chunks",
    "short_url_prefix",
    "write_csv",
    "write_csv_header",
    "write_txt",
]

DEFAULT_CHUNK: Final = 262_144
CSV_HEADER: Final = b"serial,code,url,batch,lot\n"
_NEWLINE: Final = ord("\n")
_COMMA: Final = ord(",")
# Above this many runs of equal digit count in one chunk, one masked compaction beats writing
# each run separately.
_MAX_RUNS: Final = 16


def short_url_prefix(host: str) -> bytes:
    """``HTTPS://<HOST>/C/`` as bytes: what precedes a short token in its URL."""
    return short_url(host, "").encode("ascii")


def gs1_url_prefix(host: str, gtin: str, lot: str) -> bytes:
    """``https://<host>/01/<gtin14>/10/<lot>/21/`` as bytes: what precedes a gs1 serial."""
    return gs1_url(host, gtin, lot, "").encode("ascii")


def _serial_ranges(first: int, last: int, chunk: int) -> Iterator[np.ndarray]:
    if first > last:
        raise ValueError(f"first serial {first} is after last serial {last}")
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    for start in range(first, last + 1, chunk):
        yield np.arange(start, min(start + chunk, last + 1), dtype=np.uint32)


def iter_short_chunks(
    key: KeyMaterial, batch_id: int, first_serial: int, last_serial: int, chunk: int = DEFAULT_CHUNK
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (serials uint32 (n,), short tokens (n, 29) uint8) for first..last in chunks."""
    for serials in _serial_ranges(first_serial, last_serial, chunk):
        yield serials, mint_short_array(key, batch_id, serials)


def iter_gs1_chunks(
    key: KeyMaterial,
    batch_id: int,
    first_serial: int,
    last_serial: int,
    gtin: str,
    lot: str,
    chunk: int = DEFAULT_CHUNK,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (serials uint32 (n,), AI 21 serials (n, 20) uint8) for first..last in chunks."""
    for serials in _serial_ranges(first_serial, last_serial, chunk):
        yield serials, mint_gs1_serial_array(key, batch_id, serials, gtin, lot)


def _check_codes(codes: np.ndarray) -> np.ndarray:
    arr = np.asarray(codes)
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError("codes must be an (N, L) uint8 array")
    return arr


def write_txt(out: IO[bytes], url_prefix: bytes, tokens: np.ndarray) -> None:
    """Write one line ``url_prefix + code + "\\n"`` per row of ``tokens`` (N, L) uint8."""
    arr = _check_codes(tokens)
    n, width = arr.shape
    p = len(url_prefix)
    rows = np.empty((n, p + width + 1), dtype=np.uint8)
    rows[:, :p] = np.frombuffer(url_prefix, dtype=np.uint8)
    rows[:, p : p + width] = arr
    rows[:, -1] = _NEWLINE
    out.write(rows.tobytes())


def write_csv_header(out: IO[bytes]) -> None:
    """Write the CSV header line ``serial,code,url,batch,lot``."""
    out.write(CSV_HEADER)


def _csv_field(value: bytes) -> bytes:
    """``value`` as one CSV field: quoted (RFC 4180) only when it holds a comma, quote or EOL."""
    if any(ch in value for ch in (b",", b'"', b"\r", b"\n")):
        return b'"' + value.replace(b'"', b'""') + b'"'
    return value


def _decimal_columns(serials: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Right-aligned ASCII digits (N, D) of non-negative ints, and each one's digit count."""
    values = serials.astype(np.uint64)
    top = int(values.max()) if values.size else 0
    width = len(str(top))
    digits = np.empty((values.shape[0], width), dtype=np.uint8)
    count = np.ones(values.shape[0], dtype=np.int64)
    rest = values.copy()
    for col in range(width - 1, -1, -1):
        digits[:, col] = (rest % np.uint64(10)).astype(np.uint8) + ord("0")
        rest //= np.uint64(10)
        if col:
            count += rest > 0
    return digits, count


def write_csv(
    out: IO[bytes],
    serials: np.ndarray,
    tokens: np.ndarray,
    url_prefix: bytes,
    batch_label: bytes,
    lot: bytes,
) -> None:
    """Write one CSV row ``serial,code,url,batch,lot`` per code (no header; see
    :func:`write_csv_header`). ``serials[i]`` is the decimal serial of ``tokens[i]``.
    """
    arr = _check_codes(tokens)
    nums = np.asarray(serials)
    if nums.ndim != 1 or nums.shape[0] != arr.shape[0] or not np.issubdtype(nums.dtype, np.integer):
        raise ValueError("serials must be a 1-D integer array with one entry per token")
    if nums.size and int(nums.min()) < 0:
        raise ValueError("serials must be non-negative")
    n, width = arr.shape
    if n == 0:
        return
    digits, count = _decimal_columns(nums)
    d = digits.shape[1]
    tail = b"," + _csv_field(batch_label) + b"," + _csv_field(lot) + b"\n"
    p = len(url_prefix)
    row_len = d + 1 + width + 1 + p + width + len(tail)
    rows = np.empty((n, row_len), dtype=np.uint8)
    rows[:, :d] = digits
    col = d
    rows[:, col] = _COMMA
    rows[:, col + 1 : col + 1 + width] = arr
    col += 1 + width
    rows[:, col] = _COMMA
    rows[:, col + 1 : col + 1 + p] = np.frombuffer(url_prefix, dtype=np.uint8)
    rows[:, col + 1 + p : col + 1 + p + width] = arr
    rows[:, col + 1 + p + width :] = np.frombuffer(tail, dtype=np.uint8)
    # Rows of serials shorter than the widest start with unused digit columns: drop them. Sorted
    # serials give a few runs of equal digit count, each written as one block.
    skip = d - count
    if not skip.any():
        out.write(rows.tobytes())
        return
    starts = np.flatnonzero(np.diff(skip)) + 1
    if len(starts) < _MAX_RUNS:
        bounds = [0, *starts.tolist(), n]
        for lo, hi in itertools.pairwise(bounds):
            out.write(rows[lo:hi, int(skip[lo]) :].tobytes())
        return
    keep = np.arange(row_len)[None, :] >= skip[:, None]
    out.write(rows[keep].tobytes())
