"""The ``yima`` command as a factory operator uses it, in a real subprocess."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MASTER_KEY

YIMA = [sys.executable, "-m", "yima.cli"]


@pytest.fixture
def yima(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith("YIMA_")}
    env.update(
        {
            "YIMA_DATA_DIR": str(tmp_path / "data"),
            "YIMA_DATABASE_URL": database_url,
            "YIMA_MASTER_KEY": MASTER_KEY,
            "YIMA_EXPORT_CHUNK_SIZE": "1000",
        }
    )

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*YIMA, *args], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
        )
        if ok:
            assert done.returncode == 0, done.stderr + done.stdout
        return done

    run("db", "upgrade")
    return run


@pytest.fixture(autouse=True)
def _clean(runtime):  # type: ignore[no-untyped-def]
    # The runtime fixture empties the tables after each test on this backend.
    yield


def test_a_factory_operator_issues_codes_and_prints_them(yima, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    yima("tenants", "create", "tea-co", "--name", "Tea Co.")
    out = yima(
        "products",
        "create",
        "--sku",
        "LJ-250",
        "--name",
        "Longjing 250 g",
        "--gtin",
        "6901234567892",
    ).stdout
    assert "06901234567892" in out
    batch = yima(
        "batches",
        "create",
        "--sku",
        "LJ-250",
        "--lot",
        "L2026A",
        "--quantity",
        "2500",
        "--production-date",
        "2026-11-01",
    ).stdout
    batch_id = batch.split()[1]
    target = tmp_path / "codes.csv"
    exported = yima("batches", "export", batch_id, "--format", "csv", "--out", str(target))
    assert "2,500 codes" in exported.stdout
    rows = list(csv.reader(io.StringIO(target.read_text())))
    assert len(rows) == 2501 and rows[0] == ["serial", "code", "url", "batch", "lot"]
    checked = yima("verify", rows[1234][2]).stdout
    assert f"batch {batch_id}, serial 1234" in checked
    url = rows[1234][2]
    swap = "A" if url[-5] != "A" else "B"  # one middle character changed
    forged = yima("verify", url[:-5] + swap + url[-4:], ok=False)
    assert forged.returncode == 1 and "invalid" in forged.stdout


def test_keys_rotate_and_retire_from_the_cli(yima) -> None:  # type: ignore[no-untyped-def]
    yima("tenants", "create", "tea-co", "--name", "Tea Co.")
    yima("products", "create", "--sku", "LJ", "--name", "Longjing")
    yima("batches", "create", "--sku", "LJ", "--lot", "L1", "--quantity", "10")
    first_key = yima("keys", "list").stdout.split()[0]
    rotated = yima("keys", "rotate").stdout
    assert "now current" in rotated
    retired = yima("keys", "retire", first_key, "--reason", "plates stolen").stdout
    assert "1 batch(es) revoked" in retired
    listing = yima("keys", "list").stdout
    assert f"{first_key}\tretired" in listing and "current" in listing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["products", "create", "--sku", "X", "--name", "X", "--gtin", "6901234567891"], "gtin"),
        (["batches", "create", "--sku", "LJ", "--lot", "L2", "--quantity", "0"], "quantity"),
        (["batches", "create", "--sku", "NOPE", "--lot", "L2", "--quantity", "5"], "SKU"),
        (["batches", "export", "999", "--format", "txt", "--out", "x.txt"], "batch"),
    ],
)
def test_bad_input_is_a_clear_error_naming_the_field(
    yima,
    args: list[str],  # type: ignore[no-untyped-def]
    message: str,
) -> None:
    yima("tenants", "create", "tea-co", "--name", "Tea Co.")
    yima("products", "create", "--sku", "LJ", "--name", "Longjing")
    done = yima(*args, ok=False)
    assert done.returncode == 2
    assert done.stderr.startswith("error:") and message in done.stderr
    assert "Traceback" not in done.stderr


def test_demo_builds_a_brand_with_print_files(yima, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = yima("demo").stdout
    assert "API key (admin, shown once): yk_" in out
    files = sorted(p.name for p in (tmp_path / "data" / "demo").iterdir())
    assert any(f.endswith(".csv") for f in files) and any(f.endswith(".pdf") for f in files)
    again = yima("demo").stdout
    assert "already set up" in again
