"""QR symbols for print files: one encoding choice per batch, a fast module matrix per code.

A batch's URLs share a shape (same length for short URLs, nearly the same for GS1 Digital Link),
so the version, error correction, mask and mode are chosen once with :func:`choose_spec` and every
code of the batch is encoded with that :class:`QrSpec`.

``qrcode`` with a fixed version and mask still spends about 2 ms per version-9 symbol placing
modules one by one in Python (measured: ~540 matrices/s for a GS1 URL with ``?8030=``), which is
below the 800 images/s a print file needs. So :func:`qr_matrix` builds, once per spec, everything
that does not depend on the data -- function patterns, format and version information, the
module placement order, the mask, a Reed-Solomon table -- from ``qrcode``'s own tables and
methods, and per code only encodes the data codewords and scatters their bits with numpy.
The result is identical, module for module, to ``qrcode`` with the same version and mask
(tests/codegen/test_qr_images.py checks this for every version and error correction).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
import qrcode
from qrcode import base as qr_base
from qrcode import constants as qr_constants
from qrcode import util as qr_util

ErrorCorrection = Literal["L", "M", "Q", "H"]
Mode = Literal["alphanumeric", "byte"]

ERROR_CORRECTIONS: tuple[str, ...] = get_args(ErrorCorrection)
MODES: tuple[str, ...] = get_args(Mode)

_EC_LEVEL: dict[str, int] = {
    "L": qr_constants.ERROR_CORRECT_L,
    "M": qr_constants.ERROR_CORRECT_M,
    "Q": qr_constants.ERROR_CORRECT_Q,
    "H": qr_constants.ERROR_CORRECT_H,
}
_MODE_BITS: dict[str, int] = {
    "alphanumeric": qr_util.MODE_ALPHA_NUM,
    "byte": qr_util.MODE_8BIT_BYTE,
}
_ALNUM_VALUE: dict[str, int] = {ch: i for i, ch in enumerate(qr_util.ALPHA_NUM.decode("ascii"))}
_PAD_CODEWORDS: tuple[int, int] = (qr_util.PAD0, qr_util.PAD1)


def check_error_correction(error_correction: str) -> ErrorCorrection:
    """Return ``error_correction`` if it is one of L, M, Q, H; else raise ValueError naming it."""
    if error_correction not in ERROR_CORRECTIONS:
        raise ValueError(f"error_correction: must be one of L, M, Q, H (got {error_correction!r})")
    return error_correction  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class QrSpec:
    """How every code of a batch is encoded: QR version (1..40), error correction, mask (0..7)
    and a single data segment mode.

    Raises ValueError naming the field when a value is out of range.
    """

    version: int
    error_correction: ErrorCorrection
    mask: int
    mode: Mode

    def __post_init__(self) -> None:
        if not isinstance(self.version, int) or not 1 <= self.version <= 40:
            raise ValueError(f"version: must be an integer 1..40 (got {self.version!r})")
        check_error_correction(self.error_correction)
        if not isinstance(self.mask, int) or not 0 <= self.mask <= 7:
            raise ValueError(f"mask: must be an integer 0..7 (got {self.mask!r})")
        if self.mode not in MODES:
            raise ValueError(f"mode: must be one of {', '.join(MODES)} (got {self.mode!r})")

    @property
    def size(self) -> int:
        """Modules per side, without the quiet zone."""
        return self.version * 4 + 17


def url_mode(url: str) -> Mode:
    """The QR mode a URL is encoded in: alphanumeric when every character is in the QR
    alphanumeric set (upper-case short URLs), byte otherwise. Raises ValueError for non-ASCII."""
    if not url.isascii():
        raise ValueError("url: must be ASCII (percent-encode anything else)")
    if all(ch in _ALNUM_VALUE for ch in url):
        return "alphanumeric"
    return "byte"


def _data_bits(length: int, mode: Mode, version: int) -> int:
    """Bits a single segment of ``length`` characters takes, header included."""
    count_bits = int(qr_util.length_in_bits(_MODE_BITS[mode], version))
    payload = 11 * (length // 2) + 6 * (length % 2) if mode == "alphanumeric" else 8 * length
    return 4 + count_bits + payload


def _capacity_bits(version: int, error_correction: ErrorCorrection) -> int:
    blocks = qr_base.rs_blocks(version, _EC_LEVEL[error_correction])
    return 8 * sum(int(block.data_count) for block in blocks)


def choose_spec(sample_url: str, error_correction: str = "M") -> QrSpec:
    """The smallest QR version holding ``sample_url`` as one segment (alphanumeric when it can
    be), with the mask ``qrcode``'s penalty rule picks for that sample, fixed for the batch.

    Pass the longest URL of the batch: a longer one will not fit the spec. Raises ValueError
    naming the field for a bad error correction or a URL too long for version 40.
    """
    level = check_error_correction(error_correction)
    mode = url_mode(sample_url)
    version = next(
        (
            v
            for v in range(1, 41)
            if _data_bits(len(sample_url), mode, v) <= _capacity_bits(v, level)
        ),
        None,
    )
    if version is None:
        raise ValueError(f"url: {len(sample_url)} characters do not fit a QR code at {level}")
    # Any mask decodes; the penalty rule only avoids finder-like blocks and large areas of one
    # colour. Tokens look random, so the mask that suits the sample suits the batch, and fixing
    # it saves evaluating eight masks per code.
    symbol = qrcode.QRCode(version=version, error_correction=_EC_LEVEL[level])
    symbol.add_data(qr_util.QRData(sample_url.encode("ascii"), mode=_MODE_BITS[mode]))
    symbol.data_cache = qr_util.create_data(version, symbol.error_correction, symbol.data_list)
    mask = int(symbol.best_mask_pattern())
    return QrSpec(version=version, error_correction=level, mask=mask, mode=mode)


@functools.cache
def _gf_tables() -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """GF(256) multiplication table (QR polynomial 0x11D) and the exp table."""
    exp = np.array(qr_base.EXP_TABLE[:255] * 2, dtype=np.int32)
    log = np.array(qr_base.LOG_TABLE, dtype=np.int32)
    a = np.arange(256)
    mul = exp[(log[a][:, None] + log[a][None, :]) % 255].astype(np.uint8)
    mul[0, :] = 0
    mul[:, 0] = 0
    return mul, exp[:255].astype(np.uint8)


def _rs_contributions(max_data: int, ec_count: int) -> npt.NDArray[np.uint8]:
    """``table[j, b]`` is the EC remainder of data byte ``b`` standing ``j`` places before the
    end of its block. Reed-Solomon is linear over GF(256), so a block's EC codewords are the
    XOR of its bytes' rows -- one gather and one reduce instead of a polynomial division."""
    mul, exp = _gf_tables()
    # generator g(x) = prod (x - a^i), coefficients highest degree first, monic
    gen = np.array([1], dtype=np.uint8)
    for i in range(ec_count):
        shifted = np.append(gen, 0).astype(np.uint8)
        scaled = np.insert(mul[gen, exp[i]], 0, 0).astype(np.uint8)
        gen = shifted ^ scaled
    low = gen[1:]  # x^e = g_low (mod g) in characteristic 2
    remainders = np.empty((max_data, ec_count), dtype=np.uint8)
    rem = low.copy()
    for j in range(max_data):
        remainders[j] = rem
        carry = rem[0]
        rem = np.append(rem[1:], 0).astype(np.uint8) ^ mul[carry, low]
    # table[j, b, :] = b * remainders[j]
    return mul[np.arange(256)[None, :, None], remainders[:, None, :]]


@dataclass(frozen=True)
class _Template:
    """Everything of a symbol that does not depend on the data, for one spec."""

    size: int
    base: npt.NDArray[np.uint8]  # flat modules: function patterns, and the mask on data cells
    order: npt.NDArray[np.intp]  # flat index of each codeword bit, in placement order
    data_count: int
    block_starts: npt.NDArray[np.intp]
    degree: npt.NDArray[np.intp]  # per data codeword: places before the end of its block
    rs_table: npt.NDArray[np.uint8]
    interleave: npt.NDArray[np.intp]  # final codeword i = concat(data, ec.ravel())[interleave[i]]


def _function_modules(spec: QrSpec) -> list[list[bool | None]]:
    """The symbol with function patterns, format and version information; None on data cells.
    Drawn by ``qrcode``'s own methods so the result matches it exactly."""
    symbol = qrcode.QRCode(
        version=spec.version, error_correction=_EC_LEVEL[spec.error_correction], border=0
    )
    n = spec.size
    symbol.modules_count = n
    symbol.modules = [[None] * n for _ in range(n)]
    symbol.setup_position_probe_pattern(0, 0)
    symbol.setup_position_probe_pattern(n - 7, 0)
    symbol.setup_position_probe_pattern(0, n - 7)
    symbol.setup_position_adjust_pattern()
    symbol.setup_timing_pattern()
    symbol.setup_type_info(False, spec.mask)
    if spec.version >= 7:
        symbol.setup_type_number(False)
    modules: list[list[bool | None]] = symbol.modules
    return modules


@functools.lru_cache(maxsize=16)
def _template(spec: QrSpec) -> _Template:
    n = spec.size
    modules = _function_modules(spec)
    mask_at = qr_util.mask_func(spec.mask)
    base = np.zeros(n * n, dtype=np.uint8)
    order: list[int] = []
    # ISO/IEC 18004 7.7.3: two-module columns from the right, upwards then downwards,
    # skipping the vertical timing column.
    upward = True
    col = n - 1
    while col > 0:
        if col == 6:
            col -= 1
        rows = range(n - 1, -1, -1) if upward else range(n)
        for row in rows:
            for c in (col, col - 1):
                if modules[row][c] is None:
                    order.append(row * n + c)
        upward = not upward
        col -= 2
    for r in range(n):
        for c in range(n):
            cell = modules[r][c]
            base[r * n + c] = bool(mask_at(r, c)) if cell is None else bool(cell)

    blocks = qr_base.rs_blocks(spec.version, _EC_LEVEL[spec.error_correction])
    data_sizes = [b.data_count for b in blocks]
    ec_count = blocks[0].total_count - blocks[0].data_count
    data_count = sum(data_sizes)
    starts = np.cumsum([0, *data_sizes[:-1]])
    degree = np.concatenate([np.arange(k - 1, -1, -1) for k in data_sizes])
    # interleave: data codewords column by column across blocks, then EC codewords likewise
    inter: list[int] = []
    for i in range(max(data_sizes)):
        inter.extend(int(starts[b]) + i for b, k in enumerate(data_sizes) if i < k)
    for i in range(ec_count):
        inter.extend(data_count + b * ec_count + i for b in range(len(blocks)))
    total_bits = 8 * len(inter)
    return _Template(
        size=n,
        base=base,
        order=np.array(order[:total_bits], dtype=np.intp),
        data_count=data_count,
        block_starts=starts.astype(np.intp),
        degree=degree.astype(np.intp),
        rs_table=_rs_contributions(max(data_sizes), ec_count),
        interleave=np.array(inter, dtype=np.intp),
    )


@functools.lru_cache(maxsize=16)
def fixed_modules(spec: QrSpec) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """``(fixed, dark)``: two read-only ``(size, size)`` bool arrays. ``fixed`` is True where a
    module is the same in every symbol of ``spec`` (finder, separator, timing and alignment
    patterns, format and version information); ``dark`` is True where such a module is dark."""
    n = spec.size
    fixed = np.array([[cell is not None for cell in row] for row in _function_modules(spec)])
    dark = _template(spec).base.view(np.bool_).reshape(n, n) & fixed
    fixed.setflags(write=False)
    dark.setflags(write=False)
    return fixed, dark


def _data_codewords(url: str, spec: QrSpec, capacity: int) -> bytes:
    """Mode indicator, character count, data, terminator and pad codewords (ISO 18004 7.4)."""
    if spec.mode == "alphanumeric":
        try:
            values = [_ALNUM_VALUE[ch] for ch in url]
        except KeyError:
            raise ValueError(
                "url: has characters outside the QR alphanumeric set of this batch's spec"
            ) from None
        acc = 0
        for i in range(0, len(values) - 1, 2):
            acc = (acc << 11) | (values[i] * 45 + values[i + 1])
        payload_bits = 11 * (len(values) // 2)
        if len(values) % 2:
            acc = (acc << 6) | values[-1]
            payload_bits += 6
    else:
        if not url.isascii():
            raise ValueError("url: must be ASCII (percent-encode anything else)")
        acc = int.from_bytes(url.encode("ascii"), "big")
        payload_bits = 8 * len(url)
    count_bits = int(qr_util.length_in_bits(_MODE_BITS[spec.mode], spec.version))
    header = (_MODE_BITS[spec.mode] << count_bits) | len(url)
    bits = 4 + count_bits + payload_bits
    capacity_bits = 8 * capacity
    if bits > capacity_bits:
        raise ValueError(
            f"url: needs {bits} bits, version {spec.version}-{spec.error_correction} holds "
            f"{capacity_bits}; choose the spec from the batch's longest URL"
        )
    acc |= header << payload_bits
    terminator = min(4, capacity_bits - bits)
    bits += terminator
    pad_to_byte = -bits % 8
    acc <<= terminator + pad_to_byte
    out = acc.to_bytes((bits + pad_to_byte) // 8, "big")
    pad = capacity - len(out)
    return out + bytes(_PAD_CODEWORDS[i % 2] for i in range(pad))


def qr_matrix(url: str, spec: QrSpec) -> npt.NDArray[np.bool_]:
    """The symbol for ``url`` as a ``(size, size)`` bool array (True = dark), quiet zone excluded,
    encoded with exactly ``spec``'s version, error correction, mask and mode.

    Raises ValueError naming ``url`` when it does not fit the spec or its mode.
    """
    t = _template(spec)
    data = np.frombuffer(_data_codewords(url, spec, t.data_count), dtype=np.uint8)
    contributions = t.rs_table[t.degree, data]
    ec = np.bitwise_xor.reduceat(contributions, t.block_starts, axis=0)
    codewords = np.concatenate((data, ec.ravel()))[t.interleave]
    flat = t.base.copy()
    flat[t.order] ^= np.unpackbits(codewords)
    return flat.view(np.bool_).reshape(t.size, t.size)
