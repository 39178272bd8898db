"""Benchmark: a whole print-file job through the platform (create_export → chunk tasks →
assembly → sealed file), the path `yima batches export` and the API take.

Run: ``.venv/bin/python bench/bench_export.py [--n 10000000] [--format txt|csv] [--workers 1|2]``

Uses a throw-away SQLite database under a temporary directory; ``--workers 2`` runs the chunk
tasks on the in-process pool of two threads (the embedded default), ``1`` inline. Reports codes/s
from the request to the sealed file and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import base64
import resource
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from bench.machine import machine


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--format", default="txt", choices=["txt", "csv"])
    parser.add_argument("--workers", type=int, default=1, choices=[1, 2])
    args = parser.parse_args()

    import codegen
    from core import services as core_services
    from core.config import Settings
    from core.runtime import Runtime, set_runtime
    from core.tasks import wait_for_in_process_tasks

    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            task_mode="inline" if args.workers == 1 else "thread",
            master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        )
        runtime = Runtime(settings)
        set_runtime(runtime)
        runtime.migrate()
        with runtime.db.unit_of_work() as session:
            tenant = core_services.create_tenant(session, slug="bench", name="Bench")
            product = codegen.create_product(session, tenant_id=tenant.id, sku="B", name="B")
            batch = codegen.create_batch(
                session,
                runtime=runtime,
                tenant_id=tenant.id,
                product_id=product.id,
                lot="L1",
                quantity=args.n,
            )
        codegen.key_ring_cache(runtime).ring()
        started = time.perf_counter()
        with runtime.db.unit_of_work() as session:
            export_id = codegen.create_export(
                session,
                runtime=runtime,
                tenant_id=tenant.id,
                batch_id=batch.id,
                fmt=args.format,
                actor="bench",
            ).id
        wait_for_in_process_tasks()
        elapsed = time.perf_counter() - started
        with runtime.db.unit_of_work() as session:
            export = codegen.get_export_or_raise(session, tenant_id=tenant.id, export_id=export_id)
            assert export.status == "done", export.status
            size = export.file_size or 0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"machine: {machine()}")
        print(
            f"{args.format} export job, {args.n:,} codes, {export.chunks_total} chunks, "
            f"{args.workers} worker(s): {elapsed:.2f} s = {args.n / elapsed:,.0f} codes/s, "
            f"file {size / 1e6:,.0f} MB, peak RSS {rss:,.0f} MB"
        )
        runtime.close()


if __name__ == "__main__":
    main()
