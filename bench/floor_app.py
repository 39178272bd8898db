"""The floors of the scan benchmark: bare Flask endpoints served with the scan app's settings.

- ``POST /floor``: one PostgreSQL transaction of one UPDATE and one INSERT, the least a recorded
  scan can cost (SQLAlchemy Core, pooled engine, psycopg 3);
- ``GET /hello``: a tiny JSON answer, the least any request costs (the forged-code flood's floor).

Run by ``bench/bench_scan.py`` as ``gunicorn --workers 2 --worker-class sync floor_app:app`` from
this directory; the database URL is ``YIMA_FLOOR_DATABASE_URL`` (tables ``bench_counter`` and
``bench_events``, created by the benchmark). Deliberately imports nothing from Yima.
"""

from __future__ import annotations

import json
import os
import random
from typing import Any

from flask import Flask, jsonify
from sqlalchemy import create_engine, text

COUNTER_ROWS = 10_000

_UPDATE = text("UPDATE bench_counter SET n = n + 1 WHERE id = :id")
_INSERT = text("INSERT INTO bench_events (at, payload) VALUES (now(), CAST(:payload AS jsonb))")


def _url() -> str:
    url = os.environ["YIMA_FLOOR_DATABASE_URL"]
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# Built lazily: gunicorn forks after import, and a pool must not cross a fork. No pre-ping: the
# floor is the least a transaction costs, so anything the app adds counts against the app.
_engine: Any = None


def engine() -> Any:
    global _engine
    if _engine is None:
        _engine = create_engine(_url(), pool_size=5, max_overflow=5)
    return _engine


app = Flask(__name__)


@app.post("/floor")
def floor() -> Any:
    row = random.randint(1, COUNTER_ROWS)
    payload = json.dumps({"row": row, "device": "bench-floor"})
    with engine().begin() as conn:
        conn.execute(_UPDATE, {"id": row})
        conn.execute(_INSERT, {"payload": payload})
    return jsonify(ok=True, row=row)


@app.get("/hello")
def hello() -> Any:
    return jsonify(hello="world")
