#!/usr/bin/env bash
# The production shape on one machine, without containers: PostgreSQL + Redis (already
# running) + gunicorn for each app + a Celery worker (+ beat). Stops everything on Ctrl-C/TERM.
#
#   YIMA_DATABASE_URL=postgresql://postgres@127.0.0.1/yima YIMA_REDIS_URL=redis://127.0.0.1:6379/0 \
#   YIMA_BROKER_URL=redis://127.0.0.1:6379/1 YIMA_SECRET_KEY=... YIMA_MASTER_KEY=... \
#   deploy/run-stack.sh
#
# Ports: YIMA_STACK_SCAN_PORT (8000) and YIMA_STACK_CONSOLE_PORT (8001); workers per app:
# YIMA_STACK_WEB_WORKERS (2).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$(dirname "$(command -v python)")"
: "${YIMA_DATABASE_URL:?set YIMA_DATABASE_URL to a PostgreSQL URL}"
: "${YIMA_BROKER_URL:?set YIMA_BROKER_URL (redis:// or amqp://)}"
export YIMA_ENV="${YIMA_ENV:-production}"
scan_port="${YIMA_STACK_SCAN_PORT:-8000}"
console_port="${YIMA_STACK_CONSOLE_PORT:-8001}"
web_workers="${YIMA_STACK_WEB_WORKERS:-2}"

"$bin/yima" db upgrade

pids=()
stop() {
  trap - INT TERM EXIT
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

"$bin/gunicorn" --config "$here/gunicorn.conf.py" --bind "127.0.0.1:$scan_port" \
  --workers "$web_workers" --threads 32 yima.wsgi:scan_app &
pids+=($!)
"$bin/gunicorn" --config "$here/gunicorn.conf.py" --bind "127.0.0.1:$console_port" \
  --workers "$web_workers" yima.wsgi:console_app &
pids+=($!)
"$bin/yima" worker --concurrency 2 &
pids+=($!)
if [ "${YIMA_STACK_BEAT:-1}" = 1 ]; then
  "$bin/yima" beat &
  pids+=($!)
fi
echo "yima stack: scan http://127.0.0.1:$scan_port  console http://127.0.0.1:$console_port"
wait -n "${pids[@]}"
