"""Benchmark: QR PNG and SVG images per second on one core, against qrcode's default path.

Run from the repository root:  .venv/bin/python bench/bench_qr.py [--count N]

Prints the machine, the floor measured in the same run (qrcode's default ``make_image`` path per
code: version fitting, eight-mask search, Pillow PNG / qrcode's SVG path), our figures with and
without the streamed ZIP, and the ratios. Target: >= 800 images/s per core for PNG and SVG.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

import qrcode
import qrcode.image.svg
from qrcode import util as qr_util

from bench.machine import cpu_model
from codegen.print_files.images import (
    render_png,
    render_svg,
    write_png_zip,
    write_svg_zip,
)
from codegen.print_files.qr import choose_spec, qr_matrix

TARGET_PER_S = 800
BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def machine() -> str:
    return (
        f"machine: nproc={os.cpu_count()} cpu={cpu_model()!r} "
        f"python={platform.python_version()} (single process, one core)"
    )


def urls(form: str, count: int) -> list[str]:
    rng = random.Random(form)
    if form == "short":
        return [
            "HTTPS://YIMA.EXAMPLE.COM/C/" + "".join(rng.choice(BASE32) for _ in range(29))
            for _ in range(count)
        ]
    return [
        "https://yima.example.com/01/06901234567892/10/L2026A/21/"
        + "".join(rng.choice(URLSAFE) for _ in range(20))
        + "?8030="
        + "".join(rng.choice(URLSAFE) for _ in range(86))
        for _ in range(count)
    ]


def rate(work: Callable[[list[str]], object], batch: list[str]) -> float:
    """Items per second of the best of three runs (the least disturbed by the machine)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        work(batch)
        best = min(best, time.perf_counter() - start)
    return len(batch) / best


class Discard:
    """A sink that keeps nothing, so the figure is the writer's, not a buffer's."""

    def write(self, data: bytes) -> int:
        return len(data)


def floor_png(items: list[str]) -> None:
    for url in items:
        qrcode.make(url).save(io.BytesIO())


def floor_svg(items: list[str]) -> None:
    for url in items:
        qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage).save(io.BytesIO())


def measure(form: str, count: int, floor_count: int) -> bool:
    """Print one URL form's figures; True when both ZIP writers meet the target."""
    batch = urls(form, count)
    spec = choose_spec(batch[0])
    floor_batch = batch[:floor_count]
    print(f"\n{form}: e.g. {batch[0]}  ({len(batch[0])} chars)")
    print(
        f"  spec: version {spec.version}-{spec.error_correction}, mask {spec.mask}, "
        f"{spec.mode} mode"
    )
    mode = qr_util.MODE_ALPHA_NUM if spec.mode == "alphanumeric" else qr_util.MODE_8BIT_BYTE
    level = {"L": 1, "M": 0, "Q": 3, "H": 2}[spec.error_correction]

    def qrcode_fixed_matrix(items: list[str]) -> None:
        for url in items:
            symbol = qrcode.QRCode(
                version=spec.version, error_correction=level, mask_pattern=spec.mask
            )
            symbol.add_data(qr_util.QRData(url.encode(), mode=mode))
            symbol.make(fit=False)

    def ours_matrix(items: list[str]) -> None:
        for url in items:
            qr_matrix(url, spec)

    def ours_png(items: list[str]) -> None:
        for url in items:
            render_png(qr_matrix(url, spec), 4, 4)

    def ours_svg(items: list[str]) -> None:
        for url in items:
            render_svg(qr_matrix(url, spec), 4, 4)

    def ours_png_zip(items: list[str]) -> None:
        write_png_zip(Discard(), ((f"{i}.png", u) for i, u in enumerate(items)), spec)

    def ours_svg_zip(items: list[str]) -> None:
        write_svg_zip(Discard(), ((f"{i}.svg", u) for i, u in enumerate(items)), spec)

    floors = {"png": rate(floor_png, floor_batch), "svg": rate(floor_svg, floor_batch)}
    fixed = rate(qrcode_fixed_matrix, batch[:1000])
    print(f"  qrcode matrix, fixed version+mask: {fixed:9.0f} /s (why qr_matrix has a fast path)")
    print(f"  qr_matrix:                         {rate(ours_matrix, batch):9.0f} /s")
    ok = True
    for kind, single, zipped in (
        ("png", ours_png, ours_png_zip),
        ("svg", ours_svg, ours_svg_zip),
    ):
        r_single, r_zip = rate(single, batch), rate(zipped, batch)
        floor = floors[kind]
        verdict = "met" if r_zip >= TARGET_PER_S else "MISSED"
        print(f"  floor: qrcode.make {kind} ({len(floor_batch)} codes): {floor:9.0f} /s")
        print(
            f"  render_{kind}(qr_matrix):          {r_single:9.0f} /s"
            f" = {r_single / floor:5.1f}x floor"
        )
        print(
            f"  write_{kind}_zip:                   {r_zip:9.0f} /s"
            f" = {r_zip / floor:5.1f}x floor (target {TARGET_PER_S}/s {verdict})"
        )
        ok = ok and r_zip >= TARGET_PER_S
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=5_000, help="codes per measurement")
    parser.add_argument("--floor-count", type=int, default=150, help="codes for the floor")
    args = parser.parse_args()
    print(machine())
    results = [measure(form, args.count, args.floor_count) for form in ("short", "gs1-signed")]
    print(f"\nresult: {'all targets met' if all(results) else 'TARGET MISSED'}")


if __name__ == "__main__":
    main()
