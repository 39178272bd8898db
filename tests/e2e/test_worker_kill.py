"""A generation job survives a worker killed part-way: a real ``yima worker`` process is
SIGKILLed mid-job, a new one resumes it, and the print file has every code exactly once.

The broker is Redis when ``YIMA_TEST_REDIS_URL`` is set, else Kombu's SQLite transport, so the
test runs on a machine with only Python too.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select

import codegen
from codegen.models import Export
from core.runtime import Runtime, set_runtime
from tests.conftest import MASTER_KEY, REDIS_URL, make_settings
from tests.decoding import decode_png
from tests.factories import make_brand


def _broker(tmp_path: Path) -> str:
    if REDIS_URL:
        return REDIS_URL
    return f"sqla+sqlite:///{tmp_path / 'broker.db'}"


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "yima.cli",
                "worker",
                "--concurrency",
                "1",
                "--loglevel",
                "INFO",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_killed_worker_mid_job_resumes_to_a_complete_file(
    runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    broker = _broker(tmp_path)
    if REDIS_URL:
        import redis

        redis.Redis.from_url(REDIS_URL).delete("celery")  # no stale messages of other runs
    settings = make_settings(
        database_url,
        runtime.settings.data_dir,
        task_mode="celery",
        broker_url=broker,
        export_chunk_size=1000,
    )
    job_runtime = Runtime(settings)
    set_runtime(job_runtime)
    env = {k: v for k, v in os.environ.items() if not k.startswith("YIMA_")}
    env.update(
        {
            "YIMA_DATA_DIR": str(settings.data_dir),
            "YIMA_DATABASE_URL": database_url,
            "YIMA_MASTER_KEY": MASTER_KEY,
            "YIMA_BROKER_URL": broker,
            "YIMA_EXPORT_CHUNK_SIZE": "1000",
        }
    )
    log = tmp_path / "worker.log"
    workers: list[subprocess.Popen[bytes]] = []
    try:
        with job_runtime.db.unit_of_work() as session:
            brand = make_brand(session, job_runtime, quantity=8000)
        worker = _start_worker(env, log)
        workers.append(worker)
        with job_runtime.db.unit_of_work() as session:
            export_id = codegen.create_export(
                session,
                runtime=job_runtime,
                tenant_id=brand.tenant_id,
                batch_id=brand.batch_id,
                fmt="png-zip",
                actor="test",
            ).id

        def chunks_done() -> int:
            with job_runtime.db.read_only() as session:
                export = session.get(Export, export_id)
                return export.chunks_done if export else 0

        _wait_for(lambda: chunks_done() >= 2, 120, "two chunks")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
        killed_at = chunks_done()
        assert killed_at < 8, "the worker finished before it could be killed"

        workers.append(_start_worker(env, log))

        def sealed() -> bool:
            with job_runtime.db.read_only() as session:
                status = session.scalar(select(Export.status).where(Export.id == export_id))
                return status == "done"

        _wait_for(sealed, 240, "the resumed job")
        with job_runtime.db.unit_of_work() as session:
            _export, path = codegen.open_export_file(
                session,
                runtime=job_runtime,
                tenant_id=brand.tenant_id,
                export_id=export_id,
                actor="test",
            )
        with zipfile.ZipFile(io.BytesIO(Path(path).read_bytes())) as pack:
            names = pack.namelist()
            serials = sorted(int(n.split("_")[0]) for n in names)
            assert serials == list(range(1, 8001)), "codes missing or repeated"
            sample = [n for n in names if int(n.split("_")[0]) in (1, 1999, 4000, 8000)]
            for name in sample:
                decoded = decode_png(pack.read(name))
                assert isinstance(codegen.verify(job_runtime, decoded[0]), codegen.VerifiedCode)
    except BaseException:
        sys.stderr.write(log.read_text() if log.exists() else "(no worker log)")
        raise
    finally:
        for proc in workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        set_runtime(runtime)
        job_runtime.close()
