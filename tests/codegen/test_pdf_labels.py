"""PDF label sheets, checked by rasterising them with PDFium and scanning every label with
zxing-cpp, and by extracting the printed text with pypdf."""

from __future__ import annotations

import io
import math
import random
from typing import Any

import numpy as np
import pypdf
import pypdfium2 as pdfium
import pytest
import zxingcpp

from codegen.print_files.pdf import LabelSheet, write_pdf_labels
from codegen.print_files.qr import QrSpec, choose_spec

BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
DPI = 300
MM_PX = DPI / 25.4


def short_items(count: int, seed: int = 1) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    tokens = ["".join(rng.choice(BASE32) for _ in range(29)) for _ in range(count)]
    return [(f"HTTPS://YIMA.EXAMPLE.COM/C/{t}", t) for t in tokens]


def gs1_items(count: int, seed: int = 2) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    items = []
    for _ in range(count):
        serial = "".join(rng.choice(URLSAFE) for _ in range(20))
        sig = "".join(rng.choice(URLSAFE) for _ in range(86))
        url = f"https://yima.example.com/01/06901234567892/10/L2026A/21/{serial}?8030={sig}"
        items.append((url, serial))
    return items


def render_pages(pdf: bytes) -> list[np.ndarray]:
    document = pdfium.PdfDocument(pdf)
    try:
        return [np.array(page.render(scale=DPI / 72).to_pil().convert("L")) for page in document]
    finally:
        document.close()


def scan(page: np.ndarray) -> list[Any]:
    return list(zxingcpp.read_barcodes(page, formats=zxingcpp.BarcodeFormat.QRCode))


def cell_of(barcode: Any, sheet: LabelSheet) -> tuple[int, int]:
    """The (row, column) of the label the barcode's centre falls in."""
    pos = barcode.position
    corners = [pos.top_left, pos.top_right, pos.bottom_left, pos.bottom_right]
    x = sum(p.x for p in corners) / 4 / MM_PX
    y = sum(p.y for p in corners) / 4 / MM_PX
    column = (x - sheet.margin_left_mm) / (sheet.label_width_mm + sheet.gap_x_mm)
    row = (y - sheet.margin_top_mm) / (sheet.label_height_mm + sheet.gap_y_mm)
    return math.floor(row), math.floor(column)


@pytest.mark.parametrize(("form", "count"), [("short", 150), ("gs1", 70)])
def test_every_label_scans_to_its_url_in_its_cell_with_its_text(form: str, count: int) -> None:
    items = short_items(count) if form == "short" else gs1_items(count)
    spec = choose_spec(items[0][0])
    sheet = LabelSheet()
    out = io.BytesIO()
    assert write_pdf_labels(out, iter(items), spec, sheet) == count

    pdf = out.getvalue()
    pages = render_pages(pdf)
    per_page = sheet.labels_per_page
    assert len(pages) == math.ceil(count / per_page)
    slot_of = {url: i for i, (url, _) in enumerate(items)}
    decoded: set[str] = set()
    for number, page in enumerate(pages):
        found = scan(page)
        assert len(found) == min(per_page, count - number * per_page)
        for barcode in found:
            slot = slot_of[barcode.text] - number * per_page
            assert cell_of(barcode, sheet) == divmod(slot, sheet.columns)
            decoded.add(barcode.text)
    assert decoded == {url for url, _ in items}

    reader = pypdf.PdfReader(io.BytesIO(pdf))
    for number, page in enumerate(reader.pages):
        on_page = items[number * per_page : (number + 1) * per_page]
        assert sorted(page.extract_text().split()) == sorted(text for _, text in on_page)


def test_cut_lines_are_printed_only_when_asked() -> None:
    items = short_items(3)
    spec = choose_spec(items[0][0])

    def left_edge_column(cut_lines: bool) -> np.ndarray:
        sheet = LabelSheet(cut_lines=cut_lines)
        out = io.BytesIO()
        write_pdf_labels(out, items, spec, sheet)
        page = render_pages(out.getvalue())[0]
        x = round(sheet.margin_left_mm * MM_PX)
        top = round(sheet.margin_top_mm * MM_PX)
        return page[top + 20 : top + 40, x - 1 : x + 2]

    assert left_edge_column(False).min() == 255
    assert 100 < left_edge_column(True).min() < 250  # a light grey line, not black


def test_long_text_is_set_smaller_to_stay_on_its_label() -> None:
    url, _ = short_items(1)[0]
    spec = choose_spec(url)
    text = "A" * 40  # 6 pt Courier would be 42 mm wide on a 38.1 mm label
    out = io.BytesIO()
    write_pdf_labels(out, [(url, text)], spec)
    page = pypdf.PdfReader(io.BytesIO(out.getvalue())).pages[0]
    assert page.extract_text().split() == [text]
    with pytest.raises(ValueError, match="text"):
        write_pdf_labels(io.BytesIO(), [(url, "A" * 70)], spec)


def test_url_that_does_not_fit_the_spec_is_refused() -> None:
    spec = choose_spec(short_items(1)[0][0])
    with pytest.raises(ValueError, match="url"):
        write_pdf_labels(io.BytesIO(), gs1_items(1), spec)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"columns": 6}, "columns"),
        ({"rows": 14}, "rows"),
        ({"columns": 0}, "columns"),
        ({"label_width_mm": 0}, "label_width_mm"),
        ({"margin_top_mm": -1}, "margin_top_mm"),
        ({"qr_size_mm": 20}, "qr_size_mm"),
        ({"font_size_pt": 2}, "font_size_pt"),
        ({"quiet_zone": 21}, "quiet_zone"),
    ],
)
def test_sheets_whose_labels_do_not_fit_name_the_field(
    kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        LabelSheet(**kwargs)  # type: ignore[arg-type]


def test_symbol_with_quiet_zone_must_fit_the_label() -> None:
    spec = QrSpec(version=1, error_correction="M", mask=0, mode="alphanumeric")
    sheet = LabelSheet(qr_size_mm=16.0)  # 21 modules: 3 mm of quiet zone each side
    with pytest.raises(ValueError, match="qr_size_mm"):
        write_pdf_labels(io.BytesIO(), [], spec, sheet)
    LabelSheet(qr_size_mm=16.0, quiet_zone=2).check_fits(spec)


def test_default_sheet_is_65_labels_on_a4() -> None:
    sheet = LabelSheet()
    assert sheet.labels_per_page == 65
    assert (sheet.page_width_mm, sheet.page_height_mm) == (210.0, 297.0)
