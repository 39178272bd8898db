"""PDF label sheets: a grid of vector QR symbols, each with its human-readable code underneath.

Each symbol is drawn as one filled path of rectangles -- maximal horizontal runs of dark modules,
stacked runs merged vertically -- in module units under one transformation matrix, so a label
costs a few kilobytes of integers rather than a float per module; the modules every symbol of
the batch shares (finder, timing, alignment, format) are one form XObject. The path goes in through
reportlab's ``Canvas.addLiteral``: ``beginPath().rect()`` would format every number through
reportlab's ``fp_str``, one Python call per number, for some 600 rectangles per version-9 label.

Memory: reportlab keeps every finished page's content stream (uncompressed text) in memory until
``save()``, where it compresses and writes the whole document to ``out``. So memory grows with
the label count: 2.6 KB (version 3) to 10 KB (version 9) per label, measured by
bench/bench_pdf.py. Keep a PDF to about 10,000 labels and split larger runs into several files.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from reportlab import rl_config
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

from codegen.print_files.images import ByteSink
from codegen.print_files.qr import QrSpec, fixed_modules, qr_matrix

FONT_NAME = "Courier"  # a built-in monospaced font: no embedding, every character distinct
MIN_FONT_SIZE_PT = 4.0
_ASCENT = 0.63  # Courier cap height, in em
_DESCENT = 0.16  # below the baseline, in em


@dataclass(frozen=True, slots=True)
class LabelSheet:
    """A sheet of equal labels in a grid. Lengths in millimetres, font size in points.

    The default is an A4 sheet of 5 x 13 = 65 labels of 38.1 x 21.2 mm (the common
    "65 per sheet" stock). ``qr_size_mm`` is the symbol without its quiet zone;
    ``quiet_zone`` (modules) is kept clear inside the label around the symbol, and the text
    sits below it. Raises ValueError naming the field when the labels do not fit the page.
    """

    page_width_mm: float = 210.0
    page_height_mm: float = 297.0
    columns: int = 5
    rows: int = 13
    label_width_mm: float = 38.1
    label_height_mm: float = 21.2
    margin_left_mm: float = 4.7
    margin_top_mm: float = 10.7
    gap_x_mm: float = 2.5
    gap_y_mm: float = 0.0
    qr_size_mm: float = 14.0
    quiet_zone: int = 4
    font_size_pt: float = 6.0
    cut_lines: bool = False

    def __post_init__(self) -> None:
        for name in ("columns", "rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
                raise ValueError(f"{name}: must be an integer 1..100 (got {value!r})")
        if isinstance(self.quiet_zone, bool) or not isinstance(self.quiet_zone, int):
            raise ValueError(f"quiet_zone: must be an integer 0..20 (got {self.quiet_zone!r})")
        if not 0 <= self.quiet_zone <= 20:
            raise ValueError(f"quiet_zone: must be an integer 0..20 (got {self.quiet_zone!r})")
        for name in ("page_width_mm", "page_height_mm", "label_width_mm", "label_height_mm"):
            if not 0 < getattr(self, name) <= 2000:
                raise ValueError(f"{name}: must be > 0 and <= 2000 mm")
        for name in ("margin_left_mm", "margin_top_mm", "gap_x_mm", "gap_y_mm"):
            if not 0 <= getattr(self, name) <= 2000:
                raise ValueError(f"{name}: must be >= 0 and <= 2000 mm")
        if not MIN_FONT_SIZE_PT <= self.font_size_pt <= 72:
            raise ValueError(f"font_size_pt: must be {MIN_FONT_SIZE_PT}..72")
        used_x = (
            self.margin_left_mm
            + self.columns * self.label_width_mm
            + (self.columns - 1) * self.gap_x_mm
        )
        if used_x > self.page_width_mm + 1e-9:
            raise ValueError(
                f"columns: {self.columns} labels of {self.label_width_mm} mm with their gaps and "
                f"margin take {used_x:.1f} mm, wider than the {self.page_width_mm} mm page"
            )
        used_y = (
            self.margin_top_mm + self.rows * self.label_height_mm + (self.rows - 1) * self.gap_y_mm
        )
        if used_y > self.page_height_mm + 1e-9:
            raise ValueError(
                f"rows: {self.rows} labels of {self.label_height_mm} mm with their gaps and "
                f"margin take {used_y:.1f} mm, taller than the {self.page_height_mm} mm page"
            )
        text_mm = self.font_size_pt * (_ASCENT + _DESCENT) / mm
        if not 0 < self.qr_size_mm <= min(self.label_width_mm, self.label_height_mm - text_mm):
            raise ValueError(
                f"qr_size_mm: must be > 0 and leave room for {text_mm:.1f} mm of text "
                f"in a {self.label_width_mm} x {self.label_height_mm} mm label"
            )

    @property
    def labels_per_page(self) -> int:
        return self.columns * self.rows

    def check_fits(self, spec: QrSpec) -> None:
        """Raise ValueError naming ``qr_size_mm`` if the symbol of ``spec`` with its quiet zone
        and the text line do not fit a label."""
        quiet_mm = self.quiet_zone * self.qr_size_mm / spec.size
        text_mm = self.font_size_pt * (_ASCENT + _DESCENT) / mm
        need_w = self.qr_size_mm + 2 * quiet_mm
        need_h = self.qr_size_mm + 2 * quiet_mm + text_mm
        if need_w > self.label_width_mm + 1e-9 or need_h > self.label_height_mm + 1e-9:
            raise ValueError(
                f"qr_size_mm: a version-{spec.version} symbol of {self.qr_size_mm} mm with a "
                f"{self.quiet_zone}-module quiet zone and text needs {need_w:.1f} x "
                f"{need_h:.1f} mm, more than the {self.label_width_mm} x "
                f"{self.label_height_mm} mm label"
            )


def _module_rectangles(matrix: npt.NDArray[np.bool_]) -> str:
    """PDF ``re`` operators covering the dark modules, in module units (row 0 at y = 0).

    Maximal horizontal runs, then runs with the same columns in consecutive rows merged into
    one taller rectangle: fewer operators than runs alone, and no seams inside a run.
    """
    rows, cols = matrix.shape
    padded = np.zeros((rows, cols + 2), dtype=np.int8)
    padded[:, 1:-1] = matrix
    edges = np.diff(padded, axis=1)
    run_r, run_c = np.nonzero(edges == 1)
    _, end_c = np.nonzero(edges == -1)
    run_n = end_c - run_c
    # group identical (column, length) runs, rows ascending; a new rectangle starts where the
    # key changes or a row is skipped
    order = np.lexsort((run_r, run_n, run_c))
    r, c, n = run_r[order], run_c[order], run_n[order]
    starts = np.ones(len(r), dtype=bool)
    starts[1:] = (c[1:] != c[:-1]) | (n[1:] != n[:-1]) | (r[1:] != r[:-1] + 1)
    first = np.flatnonzero(starts)
    heights = np.diff(np.append(first, len(r)))
    quads = np.stack((c[first], r[first], n[first], heights), axis=1).ravel().tolist()
    # one %-format over the whole path runs in C; a generator of f-strings is 1.5x slower
    return ("%d %d %d %d re " * len(first)) % tuple(quads)


_A85_LOCK = threading.Lock()


@contextlib.contextmanager
def _binary_streams() -> Iterator[None]:
    """Let reportlab write compressed streams as binary instead of ASCII85 text.

    ASCII85 only matters for 7-bit channels; here it made files 25% larger and took 40% of the
    time of a 10,000-label sheet (reportlab encodes it in pure Python). The setting is global
    and read when ``save()`` formats the streams, so it is switched for that call only.
    """
    with _A85_LOCK:
        previous = rl_config.useA85
        rl_config.useA85 = 0
        try:
            yield
        finally:
            rl_config.useA85 = previous


def _fit_font_size(text: str, width_pt: float, preferred: float) -> float:
    size = preferred
    natural = stringWidth(text, FONT_NAME, size)
    if natural > width_pt:
        size = preferred * width_pt / natural
    if size < MIN_FONT_SIZE_PT:
        raise ValueError(f"text: {text!r} is too long for the label even at {MIN_FONT_SIZE_PT} pt")
    return size


def write_pdf_labels(
    out: ByteSink,
    items: Iterable[tuple[str, str]],
    spec: QrSpec,
    sheet: LabelSheet | None = None,
) -> int:
    """Write a PDF of label sheets to ``out`` and return the number of labels.

    Each ``(url, text)`` item becomes one label, filled row by row: a vector QR symbol of
    ``url`` encoded with ``spec``, and ``text`` centred below it in Courier (set smaller than
    ``sheet.font_size_pt`` when needed to fit the label width, never below 4 pt). Nothing is
    written to ``out`` until the document is complete. Raises ValueError naming the field for
    a sheet that does not fit ``spec``, a URL that does not fit ``spec``, or text too long.
    """
    sheet = sheet or LabelSheet()
    sheet.check_fits(spec)
    page_w = sheet.page_width_mm * mm
    page_h = sheet.page_height_mm * mm
    label_w = sheet.label_width_mm * mm
    label_h = sheet.label_height_mm * mm
    pitch_x = (sheet.label_width_mm + sheet.gap_x_mm) * mm
    pitch_y = (sheet.label_height_mm + sheet.gap_y_mm) * mm
    module = sheet.qr_size_mm * mm / spec.size
    quiet = sheet.quiet_zone * module
    qr_size = sheet.qr_size_mm * mm
    text_width = label_w - 2 * mm  # keep the text 1 mm off each edge of the label

    canvas = Canvas(out, pagesize=(page_w, page_h), pageCompression=1, invariant=1)
    canvas.setTitle("Yima QR labels")
    canvas.setCreator("Yima")
    # Finder, timing and alignment patterns are the same on every label: draw them once as a
    # form and let each label reference it (10-20% fewer rectangles per label).
    fixed, fixed_dark = fixed_modules(spec)
    form = "yima-qr-fixed"
    canvas.beginForm(form, 0, 0, spec.size, spec.size)
    canvas.addLiteral(f"{_module_rectangles(fixed_dark)} f")
    canvas.endForm()
    per_page = sheet.labels_per_page
    count = 0
    for url, text in items:
        slot = count % per_page
        if slot == 0 and count:
            canvas.showPage()
        row, col = divmod(slot, sheet.columns)
        left = sheet.margin_left_mm * mm + col * pitch_x
        top = page_h - sheet.margin_top_mm * mm - row * pitch_y
        if sheet.cut_lines:
            canvas.setStrokeGray(0.8)
            canvas.setLineWidth(0.25)
            canvas.rect(left, top - label_h, label_w, label_h, stroke=1, fill=0)
        qr_left = left + (label_w - qr_size) / 2
        qr_top = top - quiet
        rectangles = _module_rectangles(qr_matrix(url, spec) & ~fixed)
        # y axis flipped so matrix rows count downwards from the symbol's top edge
        canvas.addLiteral(f"q 0 g {module:.4f} 0 0 {-module:.4f} {qr_left:.3f} {qr_top:.3f} cm")
        canvas.doForm(form)
        canvas.addLiteral(f"{rectangles} f Q" if rectangles else "Q")
        size = _fit_font_size(text, text_width, sheet.font_size_pt)
        canvas.setFont(FONT_NAME, size)
        baseline = qr_top - qr_size - quiet - _ASCENT * size
        canvas.drawCentredString(left + label_w / 2, baseline, text)
        count += 1
    canvas.showPage()
    with _binary_streams():
        canvas.save()
    return count
