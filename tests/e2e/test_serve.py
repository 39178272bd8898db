"""``yima serve``: both apps in one process on the embedded default, as ``make run`` starts it."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import MASTER_KEY


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def test_serve_answers_scans_and_the_console_api(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YIMA_")}
    env.update({"YIMA_DATA_DIR": str(tmp_path / "var"), "YIMA_MASTER_KEY": MASTER_KEY})
    demo = subprocess.run(
        [sys.executable, "-m", "yima.cli", "demo"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stderr
    local = re.findall(r"try it here: (http://127\.0\.0\.1:8000\S+)", demo.stdout)
    api_key = re.search(r"shown once\): (yk_\S+)", demo.stdout)
    assert len(local) == 2 and api_key
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "yima.cli", "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _get(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.2)
        assert json.loads(_get(f"{base}/console/readyz")[1])["status"] == "ready"
        for url in local:
            status, page = _get(url.replace("http://127.0.0.1:8000", base))
            assert status == 200 and 'data-verdict="genuine"' in page
        spec = json.loads(_get(f"{base}/console/api/v1/openapi.json")[1])
        assert spec["servers"] == [{"url": "/console"}]
        request = urllib.request.Request(
            f"{base}/console/api/v1/batches",
            headers={"Authorization": f"Bearer {api_key.group(1)}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            batches = json.loads(response.read())["items"]
        assert [b["quantity"] for b in batches] == [1000, 100]
    finally:
        server.terminate()
        server.wait(timeout=30)
