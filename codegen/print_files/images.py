"""PNG and SVG images of QR symbols, and ZIP archives of them streamed in constant memory.

The PNG writer is direct (1-bit greyscale, no Pillow): a symbol is a few hundred rows of
identical bytes, so packing bits with numpy and one ``zlib.compress`` is all a PNG needs, and it
is several times faster than going through an imaging library.

The ZIP writer is our own rather than :mod:`zipfile`, because ``zipfile`` keeps a ``ZipInfo``
per member in memory until ``close()`` (about 0.5 KB each: 5 GB for ten million caps) and needs
a seekable file for some entries. Here each member is complete in memory before it is written,
so its CRC and sizes go in the local header (no data descriptor, no seeking; an HTTP response
works as ``out``), and central-directory records are spooled to a temporary file that moves to
disk past a few MiB. Zip64 records are written when offsets or the member count need them.
"""

from __future__ import annotations

import struct
import tempfile
import time
import zlib
from collections.abc import Iterable
from typing import Protocol

import numpy as np
import numpy.typing as npt

from codegen.print_files.qr import QrSpec, qr_matrix


class ByteSink(Protocol):
    """Where print files go: anything whose ``write(data)`` writes all of ``data`` -- a file
    opened ``"wb"``, ``io.BytesIO``, a buffered response stream. No seek, tell or read needed."""

    def write(self, data: bytes, /) -> object: ...


MODULE_PX_RANGE = (1, 50)
QUIET_ZONE_RANGE = (0, 20)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_module_px(module_px: int) -> int:
    """Return ``module_px`` if it is an integer 1..50; else raise ValueError naming it."""
    low, high = MODULE_PX_RANGE
    if (
        isinstance(module_px, bool)
        or not isinstance(module_px, int)
        or not low <= module_px <= high
    ):
        raise ValueError(f"module_px: must be an integer {low}..{high} (got {module_px!r})")
    return module_px


def check_quiet_zone(quiet_zone: int) -> int:
    """Return ``quiet_zone`` (modules) if it is an integer 0..20; else raise ValueError naming it.
    The QR specification asks for 4; scanners usually cope with 2."""
    low, high = QUIET_ZONE_RANGE
    if (
        isinstance(quiet_zone, bool)
        or not isinstance(quiet_zone, int)
        or not low <= quiet_zone <= high
    ):
        raise ValueError(f"quiet_zone: must be an integer {low}..{high} (got {quiet_zone!r})")
    return quiet_zone


def _check_matrix(matrix: npt.NDArray[np.bool_]) -> None:
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"matrix: must be a non-empty square array (got shape {matrix.shape})")


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(payload, zlib.crc32(kind)))
    )


def render_png(matrix: npt.NDArray[np.bool_], module_px: int = 4, quiet_zone: int = 4) -> bytes:
    """A 1-bit greyscale PNG of ``matrix`` (True = dark): ``module_px`` pixels per module and a
    light margin of ``quiet_zone`` modules. Raises ValueError naming a bad option."""
    check_module_px(module_px)
    check_quiet_zone(quiet_zone)
    _check_matrix(matrix)
    light = np.pad(~matrix.astype(np.bool_), quiet_zone, constant_values=True)
    row_modules = np.repeat(light, module_px, axis=1)
    width = row_modules.shape[1]
    packed = np.packbits(row_modules, axis=1)
    # every scanline starts with filter type 0 (None); rows repeat module_px times
    lines = np.repeat(np.pad(packed, ((0, 0), (1, 0))), module_px, axis=0)
    ihdr = struct.pack(">IIBBBBB", width, width, 1, 0, 0, 0, 0)
    # level 6 compresses these repetitive rows nearly as well as 9, at a fraction of the time
    idat = zlib.compress(lines.tobytes(), 6)
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _dark_runs(
    matrix: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Horizontal runs of dark modules as (row, first column, length) arrays, row-major."""
    rows, cols = matrix.shape
    padded = np.zeros((rows, cols + 2), dtype=np.int8)
    padded[:, 1:-1] = matrix
    edges = np.diff(padded, axis=1)
    start_r, start_c = np.nonzero(edges == 1)
    _, end_c = np.nonzero(edges == -1)
    return start_r, start_c, end_c - start_c


def render_svg(matrix: npt.NDArray[np.bool_], module_px: int = 4, quiet_zone: int = 4) -> bytes:
    """A compact SVG of ``matrix`` (True = dark): a white background and one path of merged
    horizontal runs in module units, ``module_px`` pixels per module at 100% zoom, a light
    margin of ``quiet_zone`` modules, crisp edges. Raises ValueError naming a bad option."""
    check_module_px(module_px)
    check_quiet_zone(quiet_zone)
    _check_matrix(matrix)
    side = matrix.shape[0] + 2 * quiet_zone
    rows, starts, lengths = _dark_runs(matrix)
    path = "".join(
        f"M{c} {r}h{n}v1h-{n}z"
        for r, c, n in zip(
            (rows + quiet_zone).tolist(),
            (starts + quiet_zone).tolist(),
            lengths.tolist(),
            strict=True,
        )
    )
    px = side * module_px
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{px}" height="{px}" '
        f'viewBox="0 0 {side} {side}" shape-rendering="crispEdges">'
        f'<rect width="{side}" height="{side}" fill="#fff"/>'
        f'<path fill="#000" d="{path}"/></svg>\n'
    ).encode("ascii")


# --- streaming ZIP ----------------------------------------------------------------------------

_ZIP_STORED = 0
_ZIP_DEFLATED = 8
_UTF8_FLAG = 0x800
# Past these a Zip64 record is needed; module-level so tests can lower them.
_ZIP32_MAX = 0xFFFFFFFF
_ZIP16_MAX = 0xFFFF
_SPOOL_BYTES = 4 << 20


def _check_member_name(name: str) -> bytes:
    """A relative, forward-slash name with no ``..``: what unzip tools extract safely."""
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise ValueError(f"name: not a safe relative file name for a ZIP member ({name!r})")
    return name.encode("utf-8")


FIXED_MOMENT = time.struct_time((2020, 1, 1, 0, 0, 0, 2, 1, 0))


def _dos_date_time(moment: time.struct_time) -> tuple[int, int]:
    year = max(moment.tm_year, 1980)
    date = ((year - 1980) << 9) | (moment.tm_mon << 5) | moment.tm_mday
    clock = (moment.tm_hour << 11) | (moment.tm_min << 5) | (moment.tm_sec // 2)
    return date, clock


class StreamingZip:
    """Append-only ZIP writer on a non-seekable stream; memory does not grow with members."""

    def __init__(self, out: ByteSink, moment: time.struct_time = FIXED_MOMENT) -> None:
        self._out = out
        self._offset = 0
        self._count = 0
        # A fixed member date by default: the same chunk written twice gives the same bytes.
        self._date, self._time = _dos_date_time(moment)
        self._central = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._offset += len(data)

    def add(self, name: str, content: bytes, *, deflate: bool) -> None:
        raw_name = _check_member_name(name)
        crc = zlib.crc32(content)
        if deflate:
            packer = zlib.compressobj(6, zlib.DEFLATED, -15)
            stored = packer.compress(content) + packer.flush()
            method = _ZIP_DEFLATED
        else:
            stored = content
            method = _ZIP_STORED
        if len(content) > _ZIP32_MAX or len(stored) > _ZIP32_MAX:
            raise ValueError(f"name: member {name!r} is larger than 4 GiB")
        flags = 0 if name.isascii() else _UTF8_FLAG
        local = struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50,
            20,
            flags,
            method,
            self._time,
            self._date,
            crc,
            len(stored),
            len(content),
            len(raw_name),
            0,
        )
        header_offset = self._offset
        self._write(local + raw_name)
        self._write(stored)

        extra = b""
        offset_field = header_offset
        version = 20
        if header_offset > _ZIP32_MAX:
            # only the offset can overflow: members are small, so sizes stay 32-bit
            extra = struct.pack("<HHQ", 0x0001, 8, header_offset)
            offset_field = 0xFFFFFFFF
            version = 45
        self._central.write(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                (3 << 8) | version,  # made by: Unix, so the mode bits below mean rw-r--r--
                version,
                flags,
                method,
                self._time,
                self._date,
                crc,
                len(stored),
                len(content),
                len(raw_name),
                len(extra),
                0,
                0,
                0,
                0o100644 << 16,
                offset_field,
            )
            + raw_name
            + extra
        )
        self._count += 1

    def abort(self) -> None:
        """Drop the spooled central directory after a failure; the output is unusable."""
        self._central.close()

    def close(self) -> int:
        """Write the central directory and end records; return the number of members."""
        cd_offset = self._offset
        self._central.seek(0)
        while chunk := self._central.read(64 << 10):
            self._write(chunk)
        self._central.close()
        cd_size = self._offset - cd_offset
        count = self._count
        if count >= _ZIP16_MAX or cd_offset > _ZIP32_MAX or cd_size > _ZIP32_MAX:
            zip64_end = self._offset
            self._write(
                struct.pack(
                    "<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, cd_size, cd_offset
                )
            )
            self._write(struct.pack("<IIQI", 0x07064B50, 0, zip64_end, 1))
            self._write(
                struct.pack(
                    "<IHHHHIIH",
                    0x06054B50,
                    0,
                    0,
                    0xFFFF,
                    0xFFFF,
                    0xFFFFFFFF,
                    0xFFFFFFFF,
                    0,
                )
            )
        else:
            self._write(
                struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, cd_size, cd_offset, 0)
            )
        return count


def _write_zip(
    out: ByteSink,
    items: Iterable[tuple[str, str]],
    spec: QrSpec,
    module_px: int,
    quiet_zone: int,
    *,
    svg: bool,
) -> int:
    check_module_px(module_px)
    check_quiet_zone(quiet_zone)
    render = render_svg if svg else render_png
    archive = StreamingZip(out)
    try:
        for name, url in items:
            image = render(qr_matrix(url, spec), module_px, quiet_zone)
            # PNG is already deflated: storing it saves time and loses nothing
            archive.add(name, image, deflate=svg)
    except BaseException:
        archive.abort()
        raise
    return archive.close()


def write_png_zip(
    out: ByteSink,
    items: Iterable[tuple[str, str]],
    spec: QrSpec,
    module_px: int = 4,
    quiet_zone: int = 4,
) -> int:
    """Stream a ZIP of one PNG per ``(file name, url)`` item to ``out`` and return the count.

    Members are stored (PNG is compressed already); memory stays constant for any number of
    items; Zip64 when needed. Raises ValueError naming a bad option, an unsafe name or a URL
    that does not fit ``spec`` (``out`` then holds a truncated archive: discard it).
    """
    return _write_zip(out, items, spec, module_px, quiet_zone, svg=False)


def write_svg_zip(
    out: ByteSink,
    items: Iterable[tuple[str, str]],
    spec: QrSpec,
    module_px: int = 4,
    quiet_zone: int = 4,
) -> int:
    """Stream a ZIP of one SVG per ``(file name, url)`` item to ``out`` and return the count.

    Members are deflated; otherwise as :func:`write_png_zip`.
    """
    return _write_zip(out, items, spec, module_px, quiet_zone, svg=True)
