"""Benchmark: TXT and CSV print files of N short codes, end to end (minting included).

Run: ``.venv/bin/python bench/bench_lines.py [--n 10000000] [--dir /tmp]``

Each case runs in a fresh process (so its peak RSS is its own) and writes a real file; the
two-process cases split the serial range in halves, one file each, and report the wall time of
the parallel section. The floors measured in the same run are one AES-ECB pass over N blocks
(chunked like the writers) and writing the same number of bytes of zeros to a file.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from bench.machine import machine

HOST = "yima.example.com"
CHUNK = 262_144


def _key() -> Any:
    from codegen.tokens import KeyMaterial

    return KeyMaterial(key_id=1, tenant_id=1, root_secret=bytes(range(32)))


def _write(fmt: str, path: str, first: int, last: int, q: Any) -> None:
    from codegen.print_files import lines

    key = _key()
    prefix = lines.short_url_prefix(HOST)
    start = time.time()
    with open(path, "wb") as out:
        if fmt == "csv":
            lines.write_csv_header(out)
        for serials, tokens in lines.iter_short_chunks(key, 7, first, last, CHUNK):
            if fmt == "txt":
                lines.write_txt(out, prefix, tokens)
            else:
                lines.write_csv(out, serials, tokens, prefix, b"7", b"LOT-2024")
    end = time.time()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    q.put((start, end, rss_mb, os.path.getsize(path)))


def _write_bytes(path: str, nbytes: int) -> float:
    """Seconds to write ``nbytes`` of incompressible data to ``path`` in 16 MB writes."""
    chunk = os.urandom(16 << 20)
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        left = nbytes
        while left > 0:
            left -= f.write(chunk[: min(left, len(chunk))])
    return time.perf_counter() - t0


def _floors(n: int, path: str, nbytes: int, q: Any) -> None:
    import numpy as np
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc = Cipher(algorithms.AES(bytes(32)), modes.ECB()).encryptor()
    blocks = np.zeros(CHUNK * 16, np.uint8)
    out = np.empty(CHUNK * 16 + 16, np.uint8)
    t0 = time.perf_counter()
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start) * 16
        enc.update_into(blocks[:m].data, out.data)
    aes = time.perf_counter() - t0
    write = _write_bytes(path, nbytes)
    os.unlink(path)
    q.put((aes, write))


def run_case(fmt: str, n: int, procs: int, directory: str) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    bounds = [1 + n * i // procs for i in range(procs + 1)]
    paths = [os.path.join(directory, f"bench_lines_{fmt}_{procs}p_{i}.{fmt}") for i in range(procs)]
    workers = [
        ctx.Process(target=_write, args=(fmt, paths[i], bounds[i], bounds[i + 1] - 1, q))
        for i in range(procs)
    ]
    for w in workers:
        w.start()
    results = [q.get() for _ in workers]
    for w in workers:
        w.join()
    _check_first_line(fmt, paths[0])
    for p in paths:
        os.unlink(p)
    wall = max(r[1] for r in results) - min(r[0] for r in results)
    return {
        "seconds": wall,
        "codes_per_s": n / wall,
        "peak_rss_mb": max(r[2] for r in results),
        "bytes": sum(r[3] for r in results),
    }


def _check_first_line(fmt: str, path: str) -> None:
    # A fast benchmark of wrong output is worthless: check the first code against the scalar path.
    from codegen.tokens import mint_short, short_url

    with open(path, "rb") as f:
        first = f.readline() if fmt == "txt" else (f.readline(), f.readline())[1]
    token = mint_short(_key(), 7, 1)
    want = short_url(HOST, token) if fmt == "txt" else f"1,{token},{short_url(HOST, token)}"
    assert first.decode().startswith(want), (first, want)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    n = args.n
    print(f"machine: {machine()}")
    print(f"codes: {n:,}  chunk: {CHUNK:,}  dir: {args.dir}")
    # In a VM the first write into never-touched guest memory (page cache) runs several times
    # slower than later ones; write and delete a file as large as the CSV first so that every
    # case meets the same warm page cache, and show both figures.
    warm_path = os.path.join(args.dir, "bench_lines_warmup.bin")
    warm_bytes = 104 * n
    cold = _write_bytes(warm_path, warm_bytes)
    os.unlink(warm_path)
    rate = warm_bytes / cold / 1e6
    print(f"warm-up: wrote and deleted {warm_bytes / 1e6:,.0f} MB at {rate:,.0f} MB/s")
    sizes = {}
    for fmt in ("txt", "csv"):
        for procs in (1, 2):
            r = run_case(fmt, n, procs, args.dir)
            sizes[fmt] = r["bytes"]
            print(
                f"{fmt.upper()} {procs} process{'es' if procs > 1 else ''}: "
                f"{r['seconds']:.2f} s  {r['codes_per_s']:,.0f} codes/s  "
                f"{r['bytes'] / r['seconds'] / 1e6:,.0f} MB/s  "
                f"peak RSS {r['peak_rss_mb']:.0f} MB  file {r['bytes'] / 1e6:,.0f} MB"
            )
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    floor_path = os.path.join(args.dir, "bench_lines_floor.bin")
    p = ctx.Process(target=_floors, args=(n, floor_path, sizes["csv"], q))
    p.start()
    aes, write = q.get()
    p.join()
    print(f"floor: AES-256-ECB over {n:,} blocks (one core): {aes:.2f} s = {n / aes:,.0f} blocks/s")
    print(
        f"floor: writing {sizes['csv'] / 1e6:,.0f} MB (16 MB writes): {write:.2f} s = "
        f"{sizes['csv'] / write / 1e6:,.0f} MB/s"
    )
    print(f"machine after: {machine()}")


if __name__ == "__main__":
    main()
