import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from alignment_site.env import ImproperlyConfiguredEnv, database_from_url, env_bool, env_float, env_int
from tests.models_fixtures import REPO


def test_it_reads_booleans_in_plain_words(monkeypatch):
    monkeypatch.setenv("FLAG", "yes")
    assert env_bool("FLAG", False) is True
    monkeypatch.setenv("FLAG", "off")
    assert env_bool("FLAG", True) is False


def test_it_names_the_variable_of_a_bad_boolean(monkeypatch):
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfiguredEnv, match="DEBUG='maybe' is not a boolean"):
        env_bool("DEBUG", True)


def test_it_refuses_numbers_out_of_range(monkeypatch):
    monkeypatch.setenv("CHAT_MAX_NEW_TOKENS", "0")
    with pytest.raises(ImproperlyConfiguredEnv, match="CHAT_MAX_NEW_TOKENS=0 is below the minimum of 1"):
        env_int("CHAT_MAX_NEW_TOKENS", 256, minimum=1)
    for bad in ("lots", "nan", "inf"):
        monkeypatch.setenv("CHAT_TOP_P", bad)
        with pytest.raises(ImproperlyConfiguredEnv, match=f"CHAT_TOP_P='{bad}' is not a number"):
            env_float("CHAT_TOP_P", 0.9)


def test_it_defaults_to_sqlite_in_wal_mode(tmp_path):
    entry = database_from_url("DATABASE_URL", None, tmp_path / "db.sqlite3")
    assert entry["ENGINE"] == "django.db.backends.sqlite3"
    assert "journal_mode=WAL" in entry["OPTIONS"]["init_command"]


def test_it_reads_a_postgres_url():
    entry = database_from_url("DATABASE_URL", "postgres://bob:s%40cret@db.local:6543/align", Path("/unused"))
    assert (entry["NAME"], entry["USER"], entry["PASSWORD"], entry["HOST"], entry["PORT"]) == (
        "align", "bob", "s@cret", "db.local", "6543")


def test_it_refuses_an_unknown_database_scheme():
    with pytest.raises(ImproperlyConfiguredEnv, match="DATABASE_URL='mysql://x/y' has an unsupported scheme"):
        database_from_url("DATABASE_URL", "mysql://x/y", Path("/unused"))


def test_manage_py_stops_with_a_message_naming_the_bad_variable(tmp_path):
    env = dict(os.environ, DATA_DIR=str(tmp_path), REDIS_URL="redis://127.0.0.1:6379/9",
               CHAT_MAX_MESSAGE_CHARS="many")
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "Configuration error: CHAT_MAX_MESSAGE_CHARS='many' is not a whole number." in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_is_off_by_default_and_the_secret_key_is_generated_once_owner_only(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    env.update(DATA_DIR=str(tmp_path))
    code = "import django; django.setup(); from django.conf import settings; print(settings.DEBUG, settings.SECRET_KEY)"
    runs = [subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=60) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    (debug, key), (_, again) = (r.stdout.split() for r in runs)
    assert debug == "False"
    assert len(key) >= 50 and key == again == (tmp_path / "secret_key.txt").read_text().strip()
    assert stat.S_IMODE((tmp_path / "secret_key.txt").stat().st_mode) == 0o600


def test_the_web_process_never_imports_torch():
    code = (
        "import django, sys; django.setup();"
        "import alignment_site.urls, trainer.tasks, trainer.health, users.conversations.services;"
        "from django.test import Client; Client().get('/login/');"
        "sys.exit('torch imported' if 'torch' in sys.modules else 0)"
    )
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="alignment_site.settings")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
