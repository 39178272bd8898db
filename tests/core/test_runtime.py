from __future__ import annotations

from pathlib import Path

import pytest

from core.runtime import Runtime
from tests.conftest import REDIS_URL, make_settings


def test_without_redis_the_runtime_has_no_client(tmp_path: Path) -> None:
    runtime = Runtime(make_settings(f"sqlite:///{tmp_path / 'y.db'}", tmp_path))
    assert runtime.redis is None
    runtime.close()


@pytest.mark.skipif(not REDIS_URL, reason="set YIMA_TEST_REDIS_URL to test against Redis")
def test_with_redis_the_runtime_talks_to_it(tmp_path: Path) -> None:
    runtime = Runtime(
        make_settings(f"sqlite:///{tmp_path / 'y.db'}", tmp_path, redis_url=REDIS_URL)
    )
    try:
        assert runtime.redis.ping() is True
        runtime.redis.set("yima:test:runtime", b"1", ex=5)
        assert runtime.redis.get("yima:test:runtime") == b"1"
    finally:
        runtime.redis.delete("yima:test:runtime")
        runtime.close()
