"""The documentation stays true to the code: every command it shows runs something that exists, every link
into the repository lands on a file, and every setting the code reads is on the configuration page."""

import re
from pathlib import Path

import pytest

from bench.__main__ import BENCHMARKS

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CONFIGURATION = (REPO / "docs" / "configuration.md").read_text()

# Read from the environment but not settings a person chooses: set by the shell, by Django, by `accelerate`
# for the processes of a run, or by the train worker for the processes of a run it launches.
NOT_SETTINGS = {"BASH_SOURCE", "PID", "RESTARTS", "DJANGO_SETTINGS_MODULE", "PYTHONPATH", "CUDA_VISIBLE_DEVICES",
                "LOCAL_RANK", "RANK", "WORLD_SIZE", "RUN_CLAIM_WORKER", "RUN_CLAIM_ATTEMPT"}
# Programs the docs may name besides the project's own entry points.
TOOLS = {"pip", "source", "export", "cd", "celery", "vllm", "accelerate", "git", "apt-get", "sudo", "redis-server",
         "psql", "nginx", "tensorboard", "mlflow", "curl"}


def commands() -> list[tuple[str, str]]:
    """(page, command) for every line of every ```bash block, leading VAR=value assignments dropped."""
    found = []
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = re.sub(r"\"[^\"]*\"|'[^']*'", '""', line).split(" #")[0].strip()  # quoted text: not commands
                if line.startswith("#"):
                    continue
                for part in re.split(r"&&|;|\|", line):
                    words = [w for w in part.split() if not re.fullmatch(r"[A-Z_][A-Z_0-9]*=\S*", w)]
                    if words and not words[0].startswith("#"):
                        found.append((page.name, " ".join(words)))
    return found


def inline_commands() -> list[tuple[str, str]]:
    """(page, command) for every `python -m ...` and `python manage.py ...` written inline."""
    return [(page.name, code) for page in PAGES
            for code in re.findall(r"`((?:python -m|python manage\.py) [^`]+)`", page.read_text())]


def test_the_docs_show_commands_at_all():
    assert len(commands()) >= 10 and len(inline_commands()) >= 10


@pytest.mark.parametrize("page,command", commands() + inline_commands())
def test_every_command_in_the_docs_names_a_real_entry_point(page, command):
    from django.core.management import get_commands

    words = command.split()
    if len(words) > 3 and re.fullmatch(r"[A-Z]+", words[3]):  # a placeholder: python -m bench NAME
        words = words[:3]
    program = words[0].removeprefix(".venv/bin/")
    if program.startswith("./"):
        assert (REPO / program).is_file(), f"{page}: {command}: no {program}"
    elif program in ("python", "python3") and words[1:2] == ["manage.py"]:
        assert words[2] in get_commands(), f"{page}: {command}: no management command {words[2]!r}"
    elif program in ("python", "python3") and words[1:2] == ["-m"]:
        module = words[2]
        if module == "bench" and len(words) > 3 and not words[3].startswith("-"):
            assert words[3] in {*BENCHMARKS, "list", "quick"}, f"{page}: {command}: no benchmark {words[3]!r}"
        else:
            import importlib.util

            assert module in ("pip", "venv") or importlib.util.find_spec(module), f"{page}: {command}: no {module}"
    elif program in ("python", "python3") and words[1:2] == ["-c"]:
        pass
    else:
        assert program in TOOLS, f"{page}: {command}: {program!r} is neither the project's nor a known tool"


def test_every_link_into_the_repository_lands_on_a_file():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.name} -> {target}")
    assert not broken


def settings_read_by_the_code() -> set[str]:
    python = [p for top in ("alignment_site", "trainer", "users") for p in (REPO / top).rglob("*.py")]
    pattern = re.compile(r"(?:env_(?:bool|int|float|str|path|choice|urls)|_raw|environ\.get|getenv)\(\s*\"([A-Z][A-Z_0-9]+)\""
                         r"|environ\[\"([A-Z][A-Z_0-9]+)\"\]")
    names = {a or b for p in [*python, REPO / "manage.py"] for a, b in pattern.findall(p.read_text())}
    for script in ("run.sh", "test.sh", "scripts_common.sh"):
        names |= set(re.findall(r"\$\{([A-Z][A-Z_0-9]+)", (REPO / script).read_text()))
    return names


def test_every_setting_the_code_reads_is_on_the_configuration_page():
    names = settings_read_by_the_code()
    assert {"DATABASE_URL", "DB_PATIENCE_SECONDS", "PORT", "VLLM_API_KEY"} <= names  # the reader finds them
    missing = sorted(n for n in names - NOT_SETTINGS if f"`{n}`" not in CONFIGURATION)
    assert not missing, f"read by the code, not in docs/configuration.md: {missing}"
