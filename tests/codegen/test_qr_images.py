"""QR symbols, PNG/SVG images and their ZIPs, checked by independent decoders.

Every image is decoded the way a scanner would see it: PNG bytes through Pillow, SVG through
resvg (a separate renderer), then zxing-cpp, which also reports the symbol's version, error
correction and mask so the spec is checked from the outside.
"""

from __future__ import annotations

import io
import random
import tracemalloc
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import pytest
import qrcode
import resvg_py
import zxingcpp
from qrcode import util as qr_util

from codegen.print_files import images
from codegen.print_files.images import (
    render_png,
    render_svg,
    write_png_zip,
    write_svg_zip,
)
from codegen.print_files.qr import QrSpec, choose_spec, qr_matrix

BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
EC_LEVEL = {"L": 1, "M": 0, "Q": 3, "H": 2}  # qrcode's constants


def short_url(rng: random.Random, host: str = "YIMA.EXAMPLE.COM") -> str:
    token = "".join(rng.choice(BASE32) for _ in range(29))
    return f"HTTPS://{host}/C/{token}"


def gs1_url(rng: random.Random, *, signed: bool) -> str:
    serial = "".join(rng.choice(URLSAFE) for _ in range(20))
    url = f"https://yima.example.com/01/06901234567892/10/L2026A/21/{serial}"
    if signed:
        url += "?8030=" + "".join(rng.choice(URLSAFE) for _ in range(86))
    return url


FORMS = {
    "short": lambda rng: short_url(rng),
    "gs1": lambda rng: gs1_url(rng, signed=False),
    "gs1-signed": lambda rng: gs1_url(rng, signed=True),
}


def decode(image: Any) -> list[Any]:
    # QR only, as a phone's scanner would: 1-D readers find stray "barcodes" in module patterns
    return list(zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode))


def assert_decodes_to(image: Any, url: str, spec: QrSpec) -> None:
    found = decode(image)
    assert [b.text for b in found] == [url]
    extra = found[0].extra
    assert extra["Version"] == str(spec.version)
    assert extra["ECLevel"] == spec.error_correction
    assert extra["DataMask"] == spec.mask


def png_image(data: bytes) -> Any:
    image = PIL.Image.open(io.BytesIO(data))  # an independent PNG decoder
    image.load()
    return image


def svg_image(data: bytes) -> Any:
    # an independent SVG renderer
    return png_image(resvg_py.svg_to_bytes(svg_string=data.decode("ascii")))


# --- the symbol --------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["YIMA.CN", "SCAN.YIMA.EXAMPLE.CN", "SCAN.YIMAEXAMPLE2.COM"])
def test_short_url_with_host_up_to_21_chars_is_version_3_at_m(host: str) -> None:
    assert len(host) <= 21
    url = short_url(random.Random(3), host)
    spec = choose_spec(url)
    assert (spec.version, spec.error_correction, spec.mode) == (3, "M", "alphanumeric")
    assert qr_matrix(url, spec).shape == (29, 29)


def test_a_host_one_char_longer_no_longer_fits_version_3() -> None:
    url = short_url(random.Random(3), "SCAN.YIMAEXAMPLE23.COM")  # 22 characters
    assert choose_spec(url).version == 4


def test_gs1_url_is_byte_mode_at_the_smallest_version() -> None:
    url = gs1_url(random.Random(4), signed=True)
    spec = choose_spec(url, "M")
    assert spec.mode == "byte"
    reference = qrcode.QRCode(error_correction=EC_LEVEL["M"])
    reference.add_data(qr_util.QRData(url.encode(), mode=qr_util.MODE_8BIT_BYTE))
    reference.best_fit()
    assert spec.version == reference.version


@pytest.mark.parametrize("version", range(1, 41))
def test_matrix_equals_qrcode_module_for_module(version: int) -> None:
    """The fast path must draw what qrcode draws with the same version and mask."""
    rng = random.Random(version)
    for ec in "LMQH":
        mask = rng.randrange(8)
        mode = "alphanumeric" if (version + "LMQH".index(ec)) % 2 else "byte"
        spec = QrSpec(version, ec, mask, mode)  # type: ignore[arg-type]
        # a URL that fills the symbol to its last data bit or close to it
        capacity = qrcode.util.BIT_LIMIT_TABLE[EC_LEVEL[ec]][version]
        header = 4 + qr_util.length_in_bits(
            qr_util.MODE_ALPHA_NUM if mode == "alphanumeric" else qr_util.MODE_8BIT_BYTE, version
        )
        length = (
            (capacity - header) * 2 // 11 if mode == "alphanumeric" else (capacity - header) // 8
        )
        alphabet = BASE32 + ":/." if mode == "alphanumeric" else URLSAFE + "/?=&"
        url = "".join(rng.choice(alphabet) for _ in range(length))
        reference = qrcode.QRCode(
            version=version, error_correction=EC_LEVEL[ec], mask_pattern=mask, border=0
        )
        mode_bits = qr_util.MODE_ALPHA_NUM if mode == "alphanumeric" else qr_util.MODE_8BIT_BYTE
        reference.add_data(qr_util.QRData(url.encode(), mode=mode_bits))
        reference.make(fit=False)
        expected = np.array(reference.modules, dtype=bool)
        assert np.array_equal(qr_matrix(url, spec), expected), (version, ec, mode)
        with pytest.raises(ValueError, match="url"):
            qr_matrix(url + url[-1] * 2, spec)


def test_url_outside_the_spec_mode_is_refused() -> None:
    spec = choose_spec(short_url(random.Random(5)))
    with pytest.raises(ValueError, match="url"):
        qr_matrix("https://yima.example.com/c/abc", spec)
    with pytest.raises(ValueError, match="url"):
        choose_spec("HTTPS://YIMA.EXAMPLE.COM/C/É")


# --- PNG ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    url: str
    spec: QrSpec
    module_px: int
    quiet_zone: int


def png_cases(count: int) -> list[Case]:
    rng = random.Random(20260)
    specs: dict[tuple[str, str], QrSpec] = {}
    cases = []
    for i in range(count):
        form = list(FORMS)[i % 3]
        ec = "LMQH"[(i // 3) % 4]
        url = FORMS[form](rng)
        spec = specs.setdefault((form, ec), choose_spec(url, ec))
        cases.append(Case(url, spec, module_px=1 + i % 8, quiet_zone=1 + (i // 8) % 4))
    return cases


def test_png_sample_decodes_to_exactly_its_url() -> None:
    cases = png_cases(240)
    assert len({c.url for c in cases}) == 240
    assert len({c.spec.version for c in cases}) >= 6
    for case in cases:
        data = render_png(qr_matrix(case.url, case.spec), case.module_px, case.quiet_zone)
        image = png_image(data)
        side = (case.spec.size + 2 * case.quiet_zone) * case.module_px
        assert (image.format, image.mode, image.size) == ("PNG", "1", (side, side))
        assert_decodes_to(image, case.url, case.spec)


def test_png_is_dark_on_light_with_the_quiet_zone_light() -> None:
    url = short_url(random.Random(6))
    spec = choose_spec(url)
    image = png_image(render_png(qr_matrix(url, spec), module_px=3, quiet_zone=4))
    pixels = np.array(image.convert("L"))
    assert (pixels[:12, :].min(), pixels[:, :12].min()) == (255, 255)  # quiet zone is white
    assert pixels[12:15, 12:33].max() == 0  # the finder pattern's top edge is black


# --- SVG ---------------------------------------------------------------------------------------


def test_svg_is_well_formed_and_decodes_to_its_url() -> None:
    for case in png_cases(48):
        data = render_svg(qr_matrix(case.url, case.spec), case.module_px + 1, case.quiet_zone)
        root = ET.fromstring(data)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert root.get("shape-rendering") == "crispEdges"
        assert len(root.findall("{http://www.w3.org/2000/svg}path")) == 1
        side = (case.spec.size + 2 * case.quiet_zone) * (case.module_px + 1)
        assert root.get("width") == str(side)
        assert_decodes_to(svg_image(data), case.url, case.spec)


# --- ZIP ---------------------------------------------------------------------------------------


class WriteOnly:
    """An HTTP-response-like sink: no seek, no tell, no read."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_streamed_zip_holds_one_decodable_image_per_item(fmt: str) -> None:
    rng = random.Random(7)
    urls = [gs1_url(rng, signed=bool(i % 2)) for i in range(30)]
    spec = choose_spec(max(urls, key=len))
    items = [(f"codes/{i:06d}_ü.{fmt}", url) for i, url in enumerate(urls)]
    sink = WriteOnly()
    writer = write_png_zip if fmt == "png" else write_svg_zip
    assert writer(sink, iter(items), spec, module_px=3, quiet_zone=2) == 30

    with zipfile.ZipFile(io.BytesIO(bytes(sink.buffer))) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == [name for name, _ in items]
        expected_method = zipfile.ZIP_STORED if fmt == "png" else zipfile.ZIP_DEFLATED
        for (name, url), info in zip(items, archive.infolist(), strict=True):
            assert info.compress_type == expected_method
            data = archive.read(name)
            image = png_image(data) if fmt == "png" else svg_image(data)
            assert_decodes_to(image, url, spec)


def test_zip64_records_are_written_when_needed_and_read_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Lowered limits stand in for 65,535 members and 4 GiB offsets."""
    monkeypatch.setattr(images, "_ZIP16_MAX", 3)
    monkeypatch.setattr(images, "_ZIP32_MAX", 2_000)
    rng = random.Random(8)
    urls = [short_url(rng) for _ in range(12)]
    spec = choose_spec(urls[0])
    out = io.BytesIO()
    assert write_png_zip(out, ((f"{i}.png", u) for i, u in enumerate(urls)), spec) == 12
    data = out.getvalue()
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data  # zip64 end record and locator
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        infos = archive.infolist()
        assert [i.filename for i in infos] == [f"{i}.png" for i in range(12)]
        assert infos[-1].header_offset > 2_000
        for i, url in enumerate(urls):
            assert_decodes_to(png_image(archive.read(f"{i}.png")), url, spec)


def test_zip_memory_does_not_grow_with_the_number_of_members(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(images, "_SPOOL_BYTES", 16 << 10)
    spec = choose_spec(short_url(random.Random(9)))

    class Discard:
        def write(self, data: bytes) -> int:
            return len(data)

    def peak(count: int) -> int:
        rng = random.Random(count)
        items = ((f"{i:09d}.png", short_url(rng)) for i in range(count))
        tracemalloc.start()
        try:
            write_png_zip(Discard(), items, spec, module_px=1, quiet_zone=1)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak(50)  # builds the spec's template and numpy's caches, which stay
    small, large = peak(500), peak(4_000)  # both past the spool's switch to disk
    # zipfile would hold 4,000 ZipInfo objects here (about 2 MB)
    assert large < small + (16 << 10), (small, large)


@pytest.mark.parametrize(
    "name", ["", "/etc/passwd", "../up.png", "a/../../b.png", "a\\b.png", "dir/", "a//b.png"]
)
def test_unsafe_member_names_are_refused(name: str) -> None:
    url = short_url(random.Random(10))
    with pytest.raises(ValueError, match="name"):
        write_png_zip(io.BytesIO(), [(name, url)], choose_spec(url))


# --- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"module_px": 0}, "module_px"),
        ({"module_px": 51}, "module_px"),
        ({"module_px": 2.5}, "module_px"),
        ({"module_px": True}, "module_px"),
        ({"quiet_zone": -1}, "quiet_zone"),
        ({"quiet_zone": 21}, "quiet_zone"),
    ],
)
def test_bad_image_options_name_the_field(kwargs: dict[str, object], field: str) -> None:
    url = short_url(random.Random(11))
    spec = choose_spec(url)
    matrix = qr_matrix(url, spec)
    for render in (render_png, render_svg):
        with pytest.raises(ValueError, match=field):
            render(matrix, **kwargs)  # type: ignore[arg-type]
    for writer in (write_png_zip, write_svg_zip):
        out = io.BytesIO()
        with pytest.raises(ValueError, match=field):
            writer(out, [("a.png", url)], spec, **kwargs)  # type: ignore[arg-type]
        assert out.getvalue() == b""  # refused before anything was written


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"version": 0}, "version"),
        ({"version": 41}, "version"),
        ({"error_correction": "X"}, "error_correction"),
        ({"mask": 8}, "mask"),
        ({"mode": "kanji"}, "mode"),
    ],
)
def test_bad_spec_fields_are_named(kwargs: dict[str, object], field: str) -> None:
    fields: dict[str, object] = {
        "version": 3,
        "error_correction": "M",
        "mask": 0,
        "mode": "alphanumeric",
    }
    with pytest.raises(ValueError, match=field):
        QrSpec(**{**fields, **kwargs})  # type: ignore[arg-type]


def test_bad_error_correction_and_oversized_url_are_named() -> None:
    with pytest.raises(ValueError, match="error_correction"):
        choose_spec(short_url(random.Random(12)), "m")
    with pytest.raises(ValueError, match="url"):
        choose_spec("https://yima.example.com/" + "a" * 3000, "H")
