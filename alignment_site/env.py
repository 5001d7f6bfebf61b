"""Typed readers for settings that come from the environment.

Each helper stops start-up with a message naming the variable when its value
cannot be used, instead of falling back silently.
"""

import os
from pathlib import Path
from urllib.parse import unquote, urlparse


class ImproperlyConfiguredEnv(RuntimeError):
    pass


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_str(name: str, default: str) -> str:
    return _raw(name) or default


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (_raw(name) or default).lower()
    if value not in choices:
        raise ImproperlyConfiguredEnv(f"{name}={value!r} is not one of: {', '.join(choices)}.")
    return value


def env_urls(name: str) -> list[str]:
    """A comma-separated list of http(s) base URLs, trailing slashes removed."""
    urls = [u.strip().rstrip("/") for u in (_raw(name) or "").split(",") if u.strip()]
    for url in urls:
        if urlparse(url).scheme not in ("http", "https") or not urlparse(url).netloc:
            raise ImproperlyConfiguredEnv(f"{name}: {url!r} is not an http(s) URL such as http://10.0.0.5:8000.")
    return urls


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfiguredEnv(f"{name}={value!r} is not a boolean: use 1/0, true/false, yes/no or on/off.")


def _number(name: str, default, parse, what: str, minimum, maximum):
    value = _raw(name)
    if value is None:
        return default
    try:
        number = parse(value)
        if number != number or number in (float("inf"), float("-inf")):  # nan and infinities parse as floats
            raise ValueError(value)
    except ValueError:
        raise ImproperlyConfiguredEnv(f"{name}={value!r} is not {what}.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfiguredEnv(f"{name}={number} is below the minimum of {minimum}.")
    if maximum is not None and number > maximum:
        raise ImproperlyConfiguredEnv(f"{name}={number} is above the maximum of {maximum}.")
    return number


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    return _number(name, default, int, "a whole number", minimum, maximum)


def env_float(name: str, default: float, *, minimum: float | None = None, maximum: float | None = None) -> float:
    return _number(name, default, float, "a number", minimum, maximum)


def env_path(name: str, default: Path) -> Path:
    value = _raw(name)
    return Path(value).expanduser().resolve() if value else default


def database_from_url(name: str, url: str | None, sqlite_default: Path) -> dict:
    """Turn DATABASE_URL into a Django DATABASES entry (sqlite:/// or postgres://)."""
    if url is None:
        return _sqlite(sqlite_default)
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path)
        if not path or path == "/":
            raise ImproperlyConfiguredEnv(f"{name}={url!r} names no file: write sqlite:////absolute/path/db.sqlite3.")
        return _sqlite(Path(path))
    if parsed.scheme in {"postgres", "postgresql", "pgsql"}:
        if not parsed.path.strip("/"):
            raise ImproperlyConfiguredEnv(f"{name}={url!r} names no database: write postgres://user@host:5432/dbname.")
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            "CONN_MAX_AGE": 0,
        }
    raise ImproperlyConfiguredEnv(
        f"{name}={url!r} has an unsupported scheme {parsed.scheme!r}: use sqlite:///path or postgres://user@host/db."
    )


def _private(path: Path) -> None:
    """Create the SQLite file readable by its owner only (SQLite gives its -wal and -shm files the same
    mode); tighten one that others can read."""
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    elif path.stat().st_mode & 0o077:
        path.chmod(0o600)


def _sqlite(path: Path) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    _private(path)
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        # WAL lets the web process read while a worker writes; the wait avoids
        # "database is locked" under short write bursts.
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }


def secret_key(name: str, keep_in: Path, debug: bool) -> str:
    """SECRET_KEY from the environment (a weak one refused with DEBUG off), or generated once and kept in
    ``keep_in``, readable by its owner only: the key of this machine's data folder. Several web servers
    that share sessions need one key, set in the environment."""
    value = _raw(name)
    if value:
        if not debug and (len(value) < 50 or len(set(value)) < 5):
            raise ImproperlyConfiguredEnv(
                f"{name} is too weak for DEBUG off ({len(value)} characters, {len(set(value))} different): use at "
                "least 50 characters with at least 5 different ones, e.g. the output of "
                "python -c 'import secrets; print(secrets.token_urlsafe(50))'.")
        return value
    import secrets

    from alignment_site.files import write_once

    return write_once(keep_in, secrets.token_urlsafe(50)).strip()
