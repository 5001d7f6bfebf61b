#!/usr/bin/env bash
# Set everything up and run the product on http://127.0.0.1:${PORT:-8000}
# The web server and the two Celery workers are supervised: one that dies is restarted (and the
# reason logged in $DATA_DIR/logs/supervisor.log); Ctrl+C stops everything.
# ./run.sh --setup: only the set-up (environment, model, database), for the command-line path; no servers.
source "$(dirname "$0")/scripts_common.sh"

SETUP_ONLY=0
[ "${1:-}" = "--setup" ] && SETUP_ONLY=1
# DEBUG is off unless asked for; this local demo (served on 127.0.0.1 only) turns it on when it is unset.
if [ -z "${DEBUG:-}" ] && [ "$SETUP_ONLY" = 0 ]; then
  export DEBUG=1 SECURE_COOKIES="${SECURE_COOKIES:-0}"
  say "DEBUG is on for this local demo (error pages with tracebacks, demo accounts, cookies over plain http);" \
      "on a server run DEBUG=0 ./run.sh (docs/deployment.md)"
fi
ensure_venv requirements.txt
# SERVING_BACKEND=vllm without VLLM_URL: the generate worker starts vLLM servers from their own environment.
# (Not when VLLM_PYTHON names an environment of one's own.)
backend="${SERVING_BACKEND:-hf}"
if [ "${backend,,}" = vllm ] && [ -z "${VLLM_URL:-}" ] && [ -z "${VLLM_PYTHON:-}" ]; then ensure_vllm; fi
[ "$SETUP_ONLY" = 1 ] || ensure_redis
say "Preparing the model (the first time converts the bundled SmolLM2, about 30 s)"
python manage.py provision_model
say "Migrating the database"
python manage.py migrate --noinput -v0
if [ "$SETUP_ONLY" = 1 ]; then
  say "Set up. Activate the environment with: source .venv/bin/activate (then python manage.py help)"
  exit 0
fi
say "Demo accounts"
python manage.py create_demo_accounts

DATA="${DATA_DIR:-$ROOT/data}"
LOGS="$DATA/logs"
mkdir -p "$LOGS" "$DATA/run"

# Each process, exec'd so that its pid is the one supervised.
# Threads, not solo, for `generate`: concurrent replies of different people share one forward pass
# (trainer/worker/serving.py batches them; GENERATE_BATCH_SIZE, GENERATE_BATCH_WAIT_MS).
cmd_generate() { exec celery -A alignment_site worker -Q "${GENERATE_QUEUE:-generate}" -c "${GENERATE_CONCURRENCY:-8}" --pool threads \
  -n generate@%h -l info; }
cmd_train() { exec celery -A alignment_site worker -Q train -c 1 --pool solo -n train@%h -l info; }
cmd_web() { exec python -m alignment_site.web; }  # uvicorn; trusted proxies: FORWARDED_ALLOW_IPS

declare -A PID RESTARTS
launch() {  # $1: generate | train | web
  "cmd_$1" >>"$LOGS/$1.log" 2>&1 &
  PID[$1]=$!
  echo "${PID[$1]}" >"$DATA/run/$1.pid"
}
note() { printf '%s %s\n' "$(date '+%F %T')" "$*" | tee -a "$LOGS/supervisor.log"; }
stop_all() {
  trap - EXIT INT TERM
  kill "${PID[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -f "$DATA"/run/*.pid
}
trap stop_all EXIT
trap 'stop_all; exit 130' INT TERM

say "Starting the Celery workers (generate, train) and the web server; logs in $LOGS/"
for name in generate train web; do launch "$name"; done
say "Serving on http://127.0.0.1:${PORT:-8000}  (Ctrl+C stops everything)"

while true; do
  died="" code=0
  wait -n -p died "${PID[@]}" || code=$?
  [ -n "$died" ] || continue
  for name in "${!PID[@]}"; do
    [ "${PID[$name]}" = "$died" ] || continue
    now=$(date +%s)
    recent="$now"
    for t in ${RESTARTS[$name]:-}; do [ $((now - t)) -lt 60 ] && recent="$recent $t"; done
    RESTARTS[$name]="$recent"
    if [ "$(wc -w <<<"$recent")" -gt 5 ]; then
      note "$name stopped (exit $code) for the sixth time within a minute; giving up. See $LOGS/$name.log"
      die "$name keeps stopping; see $LOGS/$name.log"
    fi
    note "$name (pid $died) stopped with exit $code; restarting it. Its log: $LOGS/$name.log"
    sleep 1
    launch "$name"
  done
done
