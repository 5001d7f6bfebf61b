#!/usr/bin/env bash
# Set everything up and run the whole test suite (PostgreSQL, Redis, a real
# Celery worker, headless Chromium). Extra arguments go to pytest.
source "$(dirname "$0")/scripts_common.sh"

export DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/9}"
export DATA_DIR="${TEST_DATA_DIR:-$ROOT/.cache/test}"
export SECRET_KEY="test-only-secret-key-$(printf 'abcdefghij%.0s' 1 2 3 4 5)"
# The suite talks plain http to its own servers (DEBUG is off, so cookies would otherwise be https-only).
export SECURE_COOKIES=0
# The suite signs up many accounts from 127.0.0.1; the sign-up limit's own test sets it low again.
export SIGNUPS_PER_ADDRESS="${SIGNUPS_PER_ADDRESS:-10000}"
# The suite chooses its own serving set-up per test: a developer's exported choice must not leak into it.
unset SERVING_BACKEND VLLM_URL VLLM_PYTHON VLLM_ARGS GENERATE_QUEUE

ensure_system_packages() {
  local need=()
  [ -x /usr/bin/chromium ] || need+=(chromium)
  command -v redis-server >/dev/null || need+=(redis-server)
  command -v pg_ctlcluster >/dev/null || need+=(postgresql)
  [ ${#need[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get: install them by hand."
  say "Installing Debian packages: ${need[*]}"
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
}

ensure_postgres() {
  if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then return 0; fi
  say "PostgreSQL is not answering on 127.0.0.1:5432: starting it"
  local version; version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
  [ -n "$version" ] || die "PostgreSQL is installed but has no cluster; create one with pg_createcluster."
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || die "could not start PostgreSQL $version."
  for _ in $(seq 50); do pg_isready -h 127.0.0.1 -p 5432 -q && return 0; sleep 0.2; done
  die "PostgreSQL did not come up on 127.0.0.1:5432."
}

ensure_system_packages
ensure_venv requirements-dev.txt
ensure_vllm  # tests/chat/test_vllm.py serves through vLLM's CPU build (about 2 minutes once, then skipped)
ensure_postgres
ensure_redis
python -m pytest "$@"
