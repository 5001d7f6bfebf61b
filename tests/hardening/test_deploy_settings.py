"""Production settings: `check --deploy` is clean with the documented settings, a weak SECRET_KEY stops
start-up with what to do, and the SQLite file is readable by its owner only."""

import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    # DJANGO_ALLOW_ASYNC_UNSAFE is set by the browser tests' fixture, SECURE_COOKIES=0 by test.sh (the suite
    # talks plain http): check --deploy rightly warns about both.
    drop = ("SECRET_KEY", "DATABASE_URL", "DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE", "SECURE_COOKIES", "DEBUG")
    base = {k: v for k, v in os.environ.items() if k not in drop}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env={**base, **env}, capture_output=True,
                          text=True, timeout=120)


def test_the_documented_production_settings_pass_check_deploy(tmp_path):
    result = manage("check", "--deploy", SECRET_KEY=secrets.token_urlsafe(50), DATA_DIR=str(tmp_path),
                    ALLOWED_HOSTS="align.example.org")  # DEBUG off is the default
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_a_weak_secret_key_stops_start_up_with_debug_off(tmp_path):
    result = manage("check", DEBUG="0", SECRET_KEY="short-key", DATA_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "SECRET_KEY is too weak for DEBUG off (9 characters" in result.stderr
    assert "secrets.token_urlsafe(50)" in result.stderr


def test_the_sqlite_file_is_readable_by_its_owner_only(tmp_path):
    loose = tmp_path / "old.sqlite3"
    loose.touch(mode=0o644)
    loose.chmod(0o644)
    for path in (tmp_path / "new.sqlite3", loose):
        result = manage("migrate", "-v0", DATA_DIR=str(tmp_path), DATABASE_URL=f"sqlite:///{path}")
        assert result.returncode == 0, result.stderr
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
