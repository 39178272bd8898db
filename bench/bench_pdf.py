"""Benchmark: PDF label sheets, 10,000 labels against a 30 s target, with reportlab's own QR
widget as the floor.

Run from the repository root:  .venv/bin/python bench/bench_pdf.py [--count N]

Prints the machine, seconds and labels/s for short and GS1 (signed) URLs on the default
5 x 13 A4 sheet, the PDF size, the peak Python memory of the run (tracemalloc, a separate pass),
and the floor measured in the same run: reportlab.graphics.barcode.qr.QrCodeWidget drawn on the
same grid for a few hundred labels, extrapolated to the same count.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from reportlab.graphics import renderPDF
from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas

from bench.machine import cpu_model
from codegen.print_files.pdf import LabelSheet, write_pdf_labels
from codegen.print_files.qr import choose_spec

TARGET_S = 30.0
BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def items(form: str, count: int) -> list[tuple[str, str]]:
    rng = random.Random(form)
    out = []
    for _ in range(count):
        if form == "short":
            token = "".join(rng.choice(BASE32) for _ in range(29))
            out.append((f"HTTPS://YIMA.EXAMPLE.COM/C/{token}", token))
        else:
            serial = "".join(rng.choice(URLSAFE) for _ in range(20))
            sig = "".join(rng.choice(URLSAFE) for _ in range(86))
            url = f"https://yima.example.com/01/06901234567892/10/L2026A/21/{serial}?8030={sig}"
            out.append((url, serial))
    return out


def floor_widget_pdf(labels: list[tuple[str, str]], sheet: LabelSheet) -> None:
    """The same grid drawn with reportlab's QrCodeWidget: what one would write first."""
    canvas = Canvas(io.BytesIO(), pagesize=(sheet.page_width_mm * mm, sheet.page_height_mm * mm))
    size = sheet.qr_size_mm * mm
    per_page = sheet.labels_per_page
    for i, (url, text) in enumerate(labels):
        if i and i % per_page == 0:
            canvas.showPage()
        row, col = divmod(i % per_page, sheet.columns)
        left = (sheet.margin_left_mm + col * (sheet.label_width_mm + sheet.gap_x_mm)) * mm
        top = (
            sheet.page_height_mm
            - sheet.margin_top_mm
            - row * (sheet.label_height_mm + sheet.gap_y_mm)
        ) * mm
        widget = QrCodeWidget(url, barLevel="M", barBorder=0)
        x0, y0, x1, y1 = widget.getBounds()
        drawing = Drawing(size, size, transform=[size / (x1 - x0), 0, 0, size / (y1 - y0), 0, 0])
        drawing.add(widget)
        label_w = sheet.label_width_mm * mm
        renderPDF.draw(drawing, canvas, left + (label_w - size) / 2, top - 2 * mm - size)
        canvas.setFont("Courier", 5)
        canvas.drawCentredString(left + label_w / 2, top - 2 * mm - size - 8, text)
    canvas.showPage()
    canvas.save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=10_000, help="labels per PDF")
    parser.add_argument("--floor-count", type=int, default=200, help="labels for the floor")
    args = parser.parse_args()
    print(
        f"machine: nproc={os.cpu_count()} cpu={cpu_model()!r} "
        f"python={platform.python_version()} (single process, one core)"
    )
    sheet = LabelSheet()
    ok = True
    for form in ("short", "gs1-signed"):
        labels = items(form, args.count)
        spec = choose_spec(labels[0][0])
        print(
            f"\n{form}: version {spec.version}-{spec.error_correction}, {len(labels)} labels, "
            f"{sheet.columns} x {sheet.rows} per A4 page"
        )

        start = time.perf_counter()
        floor_widget_pdf(labels[: args.floor_count], sheet)
        floor_rate = args.floor_count / (time.perf_counter() - start)

        out = io.BytesIO()
        start = time.perf_counter()
        write_pdf_labels(out, labels, spec, sheet)
        seconds = time.perf_counter() - start
        ours_rate = len(labels) / seconds

        tracemalloc.start()
        write_pdf_labels(io.BytesIO(), labels, spec, sheet)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()

        verdict = "met" if seconds <= TARGET_S else "MISSED"
        ok = ok and seconds <= TARGET_S
        print(
            f"  floor: QrCodeWidget ({args.floor_count} labels): {floor_rate:8.0f} labels/s"
            f" -> {len(labels) / floor_rate:6.1f} s for {len(labels)}"
        )
        print(
            f"  write_pdf_labels: {seconds:6.2f} s = {ours_rate:8.0f} labels/s"
            f" = {ours_rate / floor_rate:5.1f}x floor (target <= {TARGET_S:.0f} s {verdict})"
        )
        print(
            f"  PDF {len(out.getvalue()) / 1e6:.1f} MB; peak Python memory {peak / 1e6:.1f} MB"
            f" ({peak / len(labels) / 1e3:.1f} KB per label, held by reportlab until save)"
        )
    print(f"\nresult: {'all targets met' if ok else 'TARGET MISSED'}")


if __name__ == "__main__":
    main()
