"""Benchmark: minting and verifying tokens on one core, next to the raw AES floor.

Run: ``.venv/bin/python bench/bench_tokens.py [--n 1000000] [--repeat 3]``

Each figure is the best of ``--repeat`` runs (the machine may be shared); the median is shown
beside it. The floor is one AES-256-ECB ``update_into`` over N blocks: the short format costs
one block per token, the gs1 format ten (FF1 rounds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bench.machine import machine
from codegen.tokens import (
    KeyMaterial,
    KeyRing,
    mint_gs1_serial,
    mint_gs1_serial_array,
    mint_short,
    mint_short_array,
    verify_gs1,
    verify_gs1_array,
    verify_short,
    verify_short_array,
    verify_short_batch,
)

GTIN = "09506000134352"
LOT = "LOT-2024"


def measure(label: str, items: int, fn: Callable[[], object], repeat: int, unit: str) -> None:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    best, median = min(times), statistics.median(times)
    print(
        f"{label:<44} {items / best:>14,.0f} {unit}/s  (median {items / median:,.0f}; n={items:,})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, rep = args.n, args.repeat
    print(f"machine: {machine()}")

    key = KeyMaterial(key_id=1, tenant_id=1, root_secret=bytes(range(32)))
    ring = KeyRing([key])
    serials = np.arange(1, n + 1, dtype=np.uint32)

    enc = Cipher(algorithms.AES(key.short_key), modes.ECB()).encryptor()
    blocks = np.zeros(n * 16, np.uint8)
    out = np.empty(n * 16 + 16, np.uint8)
    measure(
        "floor: AES-256-ECB update_into, N blocks",
        n,
        lambda: enc.update_into(blocks.data, out.data),
        rep,
        "blocks",
    )

    measure("mint_short_array", n, lambda: mint_short_array(key, 7, serials), rep, "tokens")
    measure(
        "mint_short (one at a time)",
        100_000,
        lambda: [mint_short(key, 7, s) for s in range(1, 100_001)],
        rep,
        "tokens",
    )

    arr = mint_short_array(key, 7, serials)
    tokens = [row.decode() for row in arr.view("S29").ravel()]
    one = tokens[: min(n, 200_000)]
    measure(
        "verify_short (one at a time)",
        len(one),
        lambda: [verify_short(ring, t) for t in one],
        rep,
        "tokens",
    )
    measure(
        "verify_short_batch (list[str] -> objects)",
        n,
        lambda: verify_short_batch(ring, tokens),
        rep,
        "tokens",
    )
    measure(
        "verify_short_array ((N,29) uint8 -> columns)",
        n,
        lambda: verify_short_array(ring, arr),
        rep,
        "tokens",
    )

    measure(
        "mint_gs1_serial_array (FF1 vectorised)",
        n,
        lambda: mint_gs1_serial_array(key, 7, serials, GTIN, LOT),
        rep,
        "serials",
    )
    gs1 = mint_gs1_serial_array(key, 7, serials, GTIN, LOT)
    measure("verify_gs1_array", n, lambda: verify_gs1_array(ring, GTIN, LOT, gs1), rep, "serials")
    texts = [row.decode() for row in gs1[:20_000].view("S20").ravel()]
    measure(
        "mint_gs1_serial (one at a time)",
        20_000,
        lambda: [mint_gs1_serial(key, 7, s, GTIN, LOT) for s in range(1, 20_001)],
        rep,
        "serials",
    )
    measure(
        "verify_gs1 (one at a time)",
        len(texts),
        lambda: [verify_gs1(ring, GTIN, LOT, t) for t in texts],
        rep,
        "serials",
    )
    print(f"machine after: {machine()}")


if __name__ == "__main__":
    main()
