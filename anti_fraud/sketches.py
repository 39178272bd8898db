"""HyperLogLog sketches of distinct scanners (Flajolet et al. 2007; linear counting below 3m
distinct items, where the raw estimate is biased).

Why a sketch and not the devices themselves: distinct scanners over a period cannot be added up
from daily counts (the same phone scans on many days), and an exact answer needs every (day,
device) pair of the period: about one row per scan at 10 million scans, a COUNT(DISTINCT) far
beyond a page's 300 ms. A sketch of 2^12 one-byte registers (4 KiB) counts any number of devices
with a standard error of 1.04 / sqrt(4096) = 1.6 %, and sketches merge exactly (register-wise
maximum), so a period of 30 days and 12 batches is 360 sketches merged in about a millisecond.
The hash is 64-bit BLAKE2b of the device identifier: registers reveal nothing of a device.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

P = 12
M = 1 << P
_LOW_BITS = 64 - P
_LOW_MASK = (1 << _LOW_BITS) - 1
_ALPHA = 0.7213 / (1 + 1.079 / M)
EMPTY = bytes(M)


def _hash(item: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(
            item.encode("utf-8", "surrogatepass"), digest_size=8, person=b"yima-hll"
        ).digest(),
        "big",
    )


def hashes_of(items: Iterable[str]) -> npt.NDArray[np.uint64]:
    """64-bit BLAKE2b hashes of ``items`` (the embedded default's hash; PostgreSQL hashes with
    its own ``hashtextextended`` in SQL: each database's sketches are made by one function)."""
    return np.fromiter((_hash(item) for item in items), dtype=np.uint64)


def add_hashes(registers: bytes | None, hashes: npt.NDArray[np.uint64]) -> bytes:
    """``registers`` (or an empty sketch) with the items of these 64-bit hashes added."""
    regs = np.frombuffer(registers or EMPTY, dtype=np.uint8).copy()
    if len(hashes):
        hashes = np.asarray(hashes, dtype=np.uint64)
        idx = (hashes >> np.uint64(_LOW_BITS)).astype(np.int64)
        low = (hashes & np.uint64(_LOW_MASK)).astype(np.float64)  # < 2^53: exact
        # frexp's exponent is the bit length; the rank is the position of the first 1-bit.
        rank = (_LOW_BITS + 1 - np.frexp(low)[1]).astype(np.uint8)
        np.maximum.at(regs, idx, rank)
    return regs.tobytes()


def add_all(registers: bytes | None, items: Iterable[str]) -> bytes:
    """``registers`` (or an empty sketch) with ``items`` added."""
    return add_hashes(registers, hashes_of(items))


def merge(sketches: Iterable[bytes]) -> npt.NDArray[np.uint8]:
    """The register-wise maximum of ``sketches`` (the sketch of their union)."""
    blobs = [bytes(s) for s in sketches]
    if not blobs:
        return np.zeros(M, dtype=np.uint8)
    return np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), M).max(axis=0)


def estimate(registers: npt.NDArray[np.uint8] | bytes) -> int:
    """The estimated number of distinct items added to ``registers``."""
    regs = np.frombuffer(registers, dtype=np.uint8) if isinstance(registers, bytes) else registers
    zeros = int(np.count_nonzero(regs == 0))
    if zeros == M:
        return 0
    if zeros:
        # Linear counting while it is the better estimate: the raw estimate overshoots below
        # about 3m (+3 % at 2.5m, +21 % at 1.2m, measured), linear counting's spread grows above.
        counted = M * math.log(M / zeros)
        if counted <= 3 * M:
            return round(counted)
    return round(_ALPHA * M * M / float(np.sum(np.ldexp(1.0, -regs.astype(np.int32)))))
