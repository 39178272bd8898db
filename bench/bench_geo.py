"""Benchmark: offline geolocation on one core (anti_fraud.geo).

Run: ``.venv/bin/python bench/bench_geo.py [--n 50000] [--repeat 3]``

Prints the one-time load of the place data, then lookups per second. Fixes are drawn three
ways: near known towns (where scans happen: a town picked at random, moved up to ~10 km), anywhere
in China's bounding box (mountains, desert and sea included) and anywhere on Earth (mostly open
sea, the slowest case: the search widens to 300 km before it gives up). Each figure is the best
of ``--repeat`` runs; the median is shown beside it.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from anti_fraud import geo
from bench.machine import machine


def measure(label: str, items: int, fn: Callable[[], object], repeat: int) -> None:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    best, median = min(times), statistics.median(times)
    print(f"{label:<44} {items / best:>12,.0f} /s  (median {items / median:,.0f}; n={items:,})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, rep = args.n, args.repeat
    print(machine())

    t0 = time.perf_counter()
    geo.locate_gps(30.25, 120.15)
    print(f"{'first fix (loads the place data)':<44} {time.perf_counter() - t0:>12.3f} s")

    rng = random.Random(1)
    towns = [t for t in _towns() if -60 < t[0] < 70]
    near = []
    for lat, lon in rng.choices(towns, k=n):
        near.append(
            (
                lat + rng.uniform(-0.09, 0.09),
                max(-180.0, min(180.0, lon + rng.uniform(-0.09, 0.09))),
            )
        )
    china = [(rng.uniform(18, 54), rng.uniform(73, 135)) for _ in range(n)]
    world = [
        (math.degrees(math.asin(rng.uniform(-1, 1))), rng.uniform(-180, 180))
        for _ in range(n // 10)
    ]

    def fixes(points: list[tuple[float, float]]) -> Callable[[], object]:
        return lambda: [geo.locate_gps(lat, lon, 20.0) for lat, lon in points]

    measure("locate_gps, near towns", len(near), fixes(near), rep)
    measure("locate_gps, anywhere in China's box", len(china), fixes(china), rep)
    measure("locate_gps, anywhere on Earth", len(world), fixes(world), rep)

    v4 = [
        f"{rng.randint(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        for _ in range(n)
    ]
    v6 = [f"2400:{rng.randrange(0x10000):x}::{rng.randrange(1, 0x10000):x}" for _ in range(n)]
    measure("locate_ip, IPv4", n, lambda: [geo.locate_ip(ip) for ip in v4], rep)
    measure("locate_ip, IPv6", n, lambda: [geo.locate_ip(ip) for ip in v6], rep)
    key = b"k" * 32
    measure(
        "ip_for_storage, hashed",
        n,
        lambda: [geo.ip_for_storage(ip, "hashed", key) for ip in v4],
        rep,
    )


def _towns() -> list[tuple[float, float]]:
    import gzip
    from importlib import resources

    raw = resources.files("anti_fraud.data").joinpath("places.tsv.gz").read_bytes()
    lines = gzip.decompress(raw).decode().splitlines()[1:]
    return [(float(a), float(b)) for a, b, *_ in (line.split("\t") for line in lines)]


if __name__ == "__main__":
    main()
