"""Gunicorn settings for either Yima app (``yima.wsgi:scan_app`` or ``yima.wsgi:console_app``).

Sync workers: the apps are short CPU-bound requests against PostgreSQL. ``--bind`` and
``--workers`` on the command line override these (the one-machine stack does).

The scan app is started with ``--threads 32`` (gunicorn then runs its threaded worker): scans
that a worker's threads have ready at the same moment share one transaction and one commit
(core/group_commit.py), which doubles the draws two workers make per second on two cores
(bench/bench_draws.py). A lone scan still commits on its own at once.
"""

import multiprocessing

bind = "0.0.0.0:8000"
workers = max(2, multiprocessing.cpu_count())
worker_class = "sync"
timeout = 60
graceful_timeout = 30
keepalive = 5
max_requests = 20000
max_requests_jitter = 2000
accesslog = "-"
errorlog = "-"
forwarded_allow_ips = "*"


def worker_exit(server, worker):
    """A worker leaving (shutdown, or the restart after max_requests) writes what it still
    holds, such as spooled evidence of forged scans, before its connections close."""
    from core.runtime import close_runtime

    close_runtime()
