#!/usr/bin/env bash
# Set everything up and run the product on http://127.0.0.1:${PORT:-8000}
source "$(dirname "$0")/scripts_common.sh"

ensure_venv requirements.txt
ensure_redis
say "Preparing the model (the first time converts the bundled SmolLM2, about 30 s)"
python manage.py provision_model
say "Migrating the database"
python manage.py migrate --noinput -v0
say "Demo accounts"
python manage.py create_demo_accounts

mkdir -p data/logs
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
say "Starting the Celery workers (generate, train); logs in data/logs/"
# Threads, not solo: concurrent replies of different people share one forward pass
# (trainer/serving.py batches them; GENERATE_BATCH_SIZE, GENERATE_BATCH_WAIT_MS).
celery -A alignment_site worker -Q generate -c "${GENERATE_CONCURRENCY:-8}" --pool threads -n generate@%h -l info >data/logs/generate.log 2>&1 &
PIDS+=($!)
celery -A alignment_site worker -Q train -c 1 --pool solo -n train@%h -l info >data/logs/train.log 2>&1 &
PIDS+=($!)
say "Serving on http://127.0.0.1:${PORT:-8000}  (Ctrl+C stops everything)"
uvicorn alignment_site.asgi:application --host 127.0.0.1 --port "${PORT:-8000}" &
PIDS+=($!)
wait -n "${PIDS[@]}"
die "a process stopped; see data/logs/"
