"""The ``yima`` command as a factory operator uses it, in a real subprocess."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import console
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


def test_a_line_activates_and_packs_from_the_cli(yima, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    yima("tenants", "create", "tea-co", "--name", "Tea Co.")
    yima("products", "create", "--sku", "LJ-250", "--name", "Longjing 250 g")
    batch_id = yima(
        "batches", "create", "--sku", "LJ-250", "--lot", "L1", "--quantity", "1000000"
    ).stdout.split()[1]
    activated = yima("trace", "activate", batch_id, "--first", "1", "--last", "1000000")
    assert "activated 1,000,000 codes" in activated.stdout
    target = tmp_path / "codes.csv"
    yima(
        "batches",
        "export",
        batch_id,
        "--format",
        "csv",
        "--first",
        "1",
        "--last",
        "30",
        "--out",
        str(target),
    )
    urls = [row[2] for row in list(csv.reader(io.StringIO(target.read_text())))[1:]]
    sheet = tmp_path / "packing.csv"
    sheet.write_text("parent,child\n" + "".join(f"{urls[29]},{u}\n" for u in urls[:24]))
    assert "24 packed, 0 already packed" in yima("trace", "pack", str(sheet)).stdout
    assert "0 packed, 24 already packed" in yima("trace", "pack", str(sheet)).stdout
    clash = tmp_path / "clash.csv"
    clash.write_text(f"{urls[28]},{urls[0]}\n")
    refused = yima("trace", "pack", str(clash), ok=False)
    assert refused.returncode == 2 and "already in" in refused.stderr


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
    # A console admin, its password printed once: it signs in to the console.
    email = re.search(r"e-mail (\S+@\S+)", out)
    password = re.search(r"console password \(admin, shown once\): (\S+)", out)
    assert email and password and "http://127.0.0.1:8000/console/" in out
    assert "console password" not in again and "yima users reset-password" in again
    with console.create_app().test_client() as client:
        page = client.get("/sign-in")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        answer = client.post(
            "/sign-in",
            data={
                "csrf_token": token.group(1),
                "brand": "demo",
                "email": email.group(1),
                "password": password.group(1),
            },
        )
        assert answer.status_code == 303
        assert "Yima Demo Tea Co." in client.get("/").text
    # The demo's first tin went from the line to a Hangzhou dealer; the command tells it.
    code = next(line.split()[-1] for line in out.splitlines() if "printed short code" in line)
    journey = yima("trace", "journey", "--lang", "en", code).stdout
    assert journey.splitlines()[1:] == [
        "  2026-11-03 09:30 UTC  Made and activated at 杭州西湖茶厂 L1",
        "  2026-11-03 11:30 UTC  Packed into a case",
        "  2026-11-03 11:30 UTC  Its case was packed onto a pallet",
        "  2026-11-04 09:30 UTC  Shipped to 浙江省总经销",
        "  2026-11-05 09:30 UTC  Received by 浙江省总经销",
        "  2026-11-06 09:30 UTC  Shipped to 杭州西湖茶叶店",
    ]
