"""Independent readers for print files: Pillow and pypdfium2 rasterise, zxing-cpp decodes."""

from __future__ import annotations

import io

import zxingcpp
from PIL import Image


def decode_png(data: bytes) -> list[str]:
    image = Image.open(io.BytesIO(data))
    image.load()
    return [r.text for r in zxingcpp.read_barcodes(image.convert("L"))]


def decode_pdf(data: bytes, scale: float = 4.0) -> list[list[str]]:
    """The QR texts found on each page."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data)
    try:
        pages = []
        for page in pdf:
            bitmap = page.render(scale=scale, grayscale=True)
            image = bitmap.to_pil()
            pages.append([r.text for r in zxingcpp.read_barcodes(image)])
            page.close()
        return pages
    finally:
        pdf.close()
