"""Serving on vLLM (SERVING_BACKEND=vllm) with vLLM's CPU build from .venv-vllm (test.sh sets it up).

Two versions of the bundled SmolLM2 are made without training (a seeded random LoRA and user model each, so
their merged weights and their people's vectors differ), and the module starts three real vLLM servers in
the generate worker's own way (``trainer.worker.vllm``'s local mode): the base model and the two merged
folders. Each server holds about 3 GB here; the module's peak is about 12 GB.
"""

import os

import pytest
import torch
from django.conf import settings as django_settings
from django.test import Client, override_settings
from django.urls import reverse

from tests.chat.conftest import TRAINED_USERS
from tests.services import celery_worker_cmd, running, service_env, worker_ready
from tests.sse import events

# Transactional, all of them: pytest-django runs tests in three groups (plain db, transactional, no db), and
# the module's servers (minutes to start) must start once, so its tests stay together in one group.
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SMALL_SERVER = "--dtype float32 --enforce-eager --kv-cache-memory-bytes 268435456 --max-model-len 2048"
PROMPTS = [
    [{"role": "user", "content": "Describe how bread is made, step by step."}],
    [{"role": "user", "content": "What should I know before adopting a cat?"}],
]
TOKENS = 40
RUN_IDS = {1: 970001, 2: 970002}  # the versions' TrainingRun ids, fixed so their servers can start once per module


def _version(folder, base_path, seed: int):
    """A saved run of the bundled model: LoRA B and the user vectors perturbed by a seeded normal."""
    from trainer.core.artifacts import save_run
    from trainer.core.config import TrainConfig
    from trainer.core.loop import build_model, load_base
    from trainer.core.usermodel import UserIndex

    lm, tokenizer = load_base(str(base_path))
    config = TrainConfig(n_user_tokens=4, seed=seed, device="cpu")
    index = UserIndex(list(TRAINED_USERS))
    core = build_model(lm, tokenizer, config, n_users=len(index))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in core.lm.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
        # People's vectors far apart (several times the token embeddings' spread), so that each answers
        # differently and a path that dropped or mixed up the vectors could not pass for one that does not.
        spread = lm.get_input_embeddings().weight.std().item()
        core.user_model.offsets.add_(torch.randn(core.user_model.offsets.shape, generator=generator) * 5 * spread)
    return save_run(folder, core, index, config, base_model=str(base_path))


@pytest.fixture(scope="module")
def vllm_setup(bundled_model_path, tmp_path_factory, django_db_setup, test_redis):
    """Two versions on disk and a vLLM server for the base model and for each version's merged folder."""
    from trainer.worker import serving, vllm

    python = django_settings.VLLM_PYTHON
    if not python.is_file():
        raise RuntimeError(f"vLLM's environment is missing ({python}): ./test.sh sets it up (ensure_vllm).")
    root = tmp_path_factory.mktemp("vllm")
    artifacts = root / "artifacts"
    folders = {seed: _version(artifacts / f"v{seed}" / "model", bundled_model_path, seed) for seed in (1, 2)}
    overrides = dict(SERVING_BACKEND="vllm", VLLM_URL=[], VLLM_ARGS=SMALL_SERVER, VLLM_MAX_SERVERS=3,
                     BASE_MODEL=str(bundled_model_path), DATA_DIR=root, ARTIFACTS_DIR=artifacts)
    with override_settings(**overrides):
        from trainer.core.artifacts import write_merged

        try:
            urls = {"base": vllm.locate(vllm.base_name(bundled_model_path), bundled_model_path)}
            for seed, folder in folders.items():
                urls[seed] = vllm.locate(vllm.version_name(RUN_IDS[seed]),
                                         write_merged(folder, str(bundled_model_path)))
            pid_files = sorted(p.name for p in (root / "run").glob("vllm-*.pid"))  # vllm-<name>.<worker pid>.pid
            states = vllm.states()
            yield {"root": root, "artifacts": artifacts, "folders": folders, "urls": urls, "pid_files": pid_files,
                   "states": states, "overrides": overrides}
        finally:
            vllm.stop_all()
            serving.VERSIONS.clear()
            serving.BASES.clear()


def vllm_key() -> str:
    """The key the module's servers ask for (they were started by this process)."""
    from trainer.worker import vllm

    return vllm.api_key()


def _hf_texts(folder, soft_of, prompts):
    """Greedy replies from the transformers path (the merged model, the same placement)."""
    from trainer.core.artifacts import load_run
    from trainer.core.generation import generate_text

    run = load_run(folder, merge=True)
    return [generate_text(run.model.lm, run.tokenizer, p, soft_prompt=soft_of(run), max_new_tokens=TOKENS,
                          temperature=0.0) for p in prompts], run


def test_the_worker_starts_one_server_per_model_and_says_so(vllm_setup):
    names = ["base-SmolLM2-135M-Instruct", "version-970001", "version-970002"]
    assert vllm_setup["pid_files"] == [f"vllm-{n}.{os.getpid()}.pid" for n in names]
    assert {k: v["state"] for k, v in vllm_setup["states"].items()} == dict.fromkeys(names, "ready")
    from trainer.core.vllm import served_models
    from trainer.worker import vllm

    assert served_models(vllm_setup["urls"][1], api_key=vllm.api_key()) == {"version-970001": 2048}


def test_a_server_the_worker_started_refuses_a_request_without_its_key(vllm_setup):
    import requests

    from trainer.core.vllm import VLLMUnavailable, answers_without_key, auth, served_models
    from trainer.worker import vllm

    url = vllm_setup["urls"]["base"]
    assert requests.get(f"{url}/v1/models", timeout=10).status_code == 401
    assert requests.post(f"{url}/v1/completions", json={"model": "base-SmolLM2-135M-Instruct", "prompt": "Hi",
                                                        "max_tokens": 2}, timeout=10).status_code == 401
    assert requests.get(f"{url}/v1/models", timeout=10, headers=auth(vllm.api_key())).status_code == 200
    assert not answers_without_key(url)
    with pytest.raises(VLLMUnavailable, match="refuses the API key"):
        served_models(url, api_key="not-the-key")


@pytest.mark.parametrize("vectors", ["base", "own", "generic"])
def test_greedy_replies_through_vllm_equal_the_hf_path_token_for_token(vllm_setup, vectors):
    from trainer.core.artifacts import load_user_index, load_user_model, soft_prompt
    from trainer.core.batch_generation import GenerationRequest
    from trainer.core.vllm import VLLMEngine

    folder = vllm_setup["folders"][1]
    if vectors == "base":
        from trainer.core.generation import generate_text
        from trainer.core.loop import load_base

        base = vllm_setup["overrides"]["BASE_MODEL"]
        lm, tokenizer = load_base(base)
        expected = [generate_text(lm, tokenizer, p, max_new_tokens=TOKENS, temperature=0.0) for p in PROMPTS]
        soft, served_folder, url = None, base, vllm_setup["urls"]["base"]
        model_name = "base-SmolLM2-135M-Instruct"
    else:
        user = "web-sim-a" if vectors == "own" else None
        user_model, index = load_user_model(folder), load_user_index(folder)
        soft = soft_prompt(user_model, index, user)
        expected, run = _hf_texts(folder, lambda run: soft, PROMPTS)
        tokenizer, served_folder, url = run.tokenizer, folder / "merged", vllm_setup["urls"][1]
        model_name = "version-970001"
    from trainer.core.artifacts import input_embedding

    engine = VLLMEngine(lambda _name: url, model_name, tokenizer, input_embedding(served_folder),
                        api_key=vllm_key())
    for prompt, hf_text in zip(PROMPTS, expected):
        request = engine.submit(GenerationRequest(prompt, soft, max_new_tokens=TOKENS, temperature=0.0))
        text = "".join(request.stream(timeout=120))
        assert request.tokens >= 32, (request.tokens, text)
        assert text == hf_text


def test_own_and_generic_vectors_give_different_replies_on_vllm(vllm_setup):
    """The vectors reach the model: the same prompt, two people, two replies (else the equality above could
    hold with the vectors dropped on both paths)."""
    from trainer.core.artifacts import input_embedding, load_user_index, load_user_model, soft_prompt
    from trainer.core.batch_generation import GenerationRequest
    from trainer.core.loop import load_base
    from trainer.core.vllm import VLLMEngine

    folder = vllm_setup["folders"][1]
    _, tokenizer = load_base(str(folder / "merged"))
    engine = VLLMEngine(lambda _n: vllm_setup["urls"][1], "version-970001", tokenizer,
                        input_embedding(folder / "merged"), api_key=vllm_key())
    user_model, index = load_user_model(folder), load_user_index(folder)
    texts = {}
    for person in ("web-sim-a", "web-sim-b", None):
        request = engine.submit(GenerationRequest(PROMPTS[0], soft_prompt(user_model, index, person),
                                                  max_new_tokens=TOKENS, temperature=0.0))
        texts[person] = "".join(request.stream(timeout=120))
    assert len(set(texts.values())) == 3, texts


def test_stop_closes_the_request_and_the_server_drops_it(vllm_setup):
    import requests

    from trainer.core.artifacts import input_embedding
    from trainer.core.batch_generation import GenerationRequest
    from trainer.core.loop import load_base
    from trainer.core.vllm import VLLMEngine

    base = vllm_setup["overrides"]["BASE_MODEL"]
    _, tokenizer = load_base(base)
    url = vllm_setup["urls"]["base"]
    engine = VLLMEngine(lambda _n: url, "base-SmolLM2-135M-Instruct", tokenizer, input_embedding(base),
                        extra={"ignore_eos": True}, api_key=vllm_key())
    request = engine.submit(GenerationRequest(PROMPTS[0], None, max_new_tokens=1500, temperature=0.0))
    pieces = []
    for piece in request.stream(timeout=120):
        pieces.append(piece)
        if len(pieces) == 3:
            request.cancelled = True  # what the worker's relay does on Stop
    assert 3 <= request.tokens < 100 and not request.cut

    def running() -> float:
        metrics = requests.get(f"{url}/metrics", timeout=5).text
        lines = [line for line in metrics.splitlines() if line.startswith("vllm:num_requests_running")]
        assert lines, "vLLM's metrics no longer report vllm:num_requests_running"
        return sum(float(line.split()[-1]) for line in lines)

    from tests.services import wait_until

    wait_until(lambda: running() == 0, timeout=5)  # aborted at once, not writing 1,500 tokens (a minute) to no one


def _version_row(setup, seed: int, staff):
    from trainer.models import TrainingRun

    folder = setup["folders"][seed]
    return TrainingRun.objects.create(pk=RUN_IDS[seed], name=f"v{seed}", created_by=staff, config={},
                                      status=TrainingRun.Status.COMPLETED,
                                      artifacts=str(folder.relative_to(setup["artifacts"])))


@pytest.fixture
def vllm_worker(vllm_setup, bundled_model_path, settings, django_db_blocker):
    """A real generate worker (threads pool, as run.sh starts it) with SERVING_BACKEND=vllm on a queue of its
    own, finding the module's servers through VLLM_URL: the mode for servers on other machines."""
    queue = "generate-vllm"
    settings.GENERATE_QUEUE = queue
    settings.SERVING_BACKEND = "vllm"
    settings.VLLM_URL = list(vllm_setup["urls"].values())
    settings.ARTIFACTS_DIR = vllm_setup["artifacts"]
    settings.CHAT_TEMPERATURE = 0.0
    settings.CHAT_MAX_NEW_TOKENS = TOKENS
    name = f"vllm-test-{os.getpid()}@localhost"
    root = vllm_setup["root"]
    with django_db_blocker.unblock():
        env = service_env(bundled_model_path, root / "worker-data", SERVING_BACKEND="vllm", GENERATE_QUEUE=queue,
                          VLLM_URL=",".join(vllm_setup["urls"].values()), ARTIFACTS_DIR=str(vllm_setup["artifacts"]),
                          CHAT_TEMPERATURE="0", CHAT_MAX_NEW_TOKENS=str(TOKENS),
                          VLLM_API_KEY=vllm_key())  # the servers' key, as for servers on another machine
    cmd = celery_worker_cmd(queue, name)
    cmd[cmd.index("--pool") + 1] = "threads"
    cmd[cmd.index("-c") + 1] = "4"
    log = root / "vllm-worker.log"
    with running(cmd, env, log, worker_ready(log, name)) as proc:
        yield {"proc": proc, "log": log}


def _chat(owner, asgi_server, text):
    """Send a message as ``owner`` and read the reply's stream to its end over real HTTP; returns the reply."""
    from users.chat import services

    client = Client()
    client.force_login(owner)
    conversation = services.conversation_create(user=owner)
    reply = services.personal_chat_send(conversation=conversation, text=text)
    seen = list(events(asgi_server + reverse("reply_stream", args=[reply.pk]),
                       session_cookie=client.cookies["sessionid"].value, timeout=300))
    assert seen[-1].name == "done", [e.name for e in seen]
    reply.refresh_from_db()
    tokens = [e for e in seen if e.name == "token"]
    assert len(tokens) >= 3 and reply.content == tokens[-1].text
    return reply


def _hf_reply_text(setup, seed: int, reply, person: str) -> str:
    """What the transformers path writes for this reply: the same messages and settings, the same vectors."""
    from users.conversations.services import reply_generation_settings

    messages, sampling = reply_generation_settings(reply=reply)
    assert sampling["temperature"] == 0.0
    texts, _ = _hf_texts(setup["folders"][seed], lambda run: run.soft_prompt(person), [messages])
    return texts[0]


def test_a_chat_reply_streams_through_the_web_path_on_vllm_and_a_version_switch_changes_the_next_one(
        vllm_setup, vllm_worker, owner, staff, asgi_server):
    from trainer import services as trainer_services
    from trainer.models import Activation
    from users.models import Reply

    first = _version_row(vllm_setup, 1, staff)
    Activation.objects.create(run=first, activated_by=staff)
    reply = _chat(owner, asgi_server, "Describe how bread is made, step by step.")
    assert reply.status == Reply.Status.DONE
    assert reply.serving["backend"] == "vllm" and reply.serving["version"] == first.pk
    assert reply.serving["vectors"] == "personal"
    assert "vLLM" in reply.model_name
    assert reply.content == _hf_reply_text(vllm_setup, 1, reply, "web-alice")

    second = _version_row(vllm_setup, 2, staff)
    trainer_services.run_activate(run=second, user=staff)  # the page's Activate: no restart of anything
    again = _chat(owner, asgi_server, "Describe how bread is made, step by step.")
    assert again.serving["version"] == second.pk
    assert again.content == _hf_reply_text(vllm_setup, 2, again, "web-alice")
    assert again.content != reply.content
    from tests.services import wait_until

    wait_until(lambda: "ready: run 970002" in vllm_worker["log"].read_text(), timeout=60)  # activation prepared it


def test_when_vllm_cannot_be_reached_the_reply_fails_with_a_message_and_nothing_is_lost(
        vllm_setup, owner, staff, settings, test_redis):
    from tests.services import free_port
    from trainer import health
    from trainer.models import Activation
    from trainer.worker import serving, vllm
    from users.chat import services
    from users.models import Reply

    closed = f"http://127.0.0.1:{free_port()}"
    settings.SERVING_BACKEND = "vllm"
    settings.VLLM_URL = [closed]
    settings.ARTIFACTS_DIR = vllm_setup["artifacts"]
    settings.BASE_MODEL = vllm_setup["overrides"]["BASE_MODEL"]
    settings.GENERATE_QUEUE = "nobody-listens"  # the test is the worker: serving.generate_reply in-process
    Activation.objects.create(run=_version_row(vllm_setup, 1, staff), activated_by=staff)
    reply = services.personal_chat_send(conversation=services.conversation_create(user=owner), text="Hello there")
    assert serving.generate_reply(reply.pk) == Reply.Status.FAILED
    reply.refresh_from_db()
    assert reply.error.startswith("This reply could not be finished: the model server (vLLM) could not be reached")
    assert "status page" in reply.error and reply.turn.user_message == "Hello there"
    check = {c.name: c for c in health.check_vllm(redis_ok=True)}[f"vLLM server {closed}"]
    assert not check.ok and "vllm serve" in check.fix
    states = vllm.states()
    assert states["version-970001"]["state"] == "failed" and "vllm serve" in states["version-970001"]["error"]

    client = Client()
    client.force_login(staff)
    page = client.get(reverse("status")).content.decode()
    assert f"vLLM server {closed}" in page and "does not answer" in page


def test_a_local_server_that_cannot_start_fails_the_reply_and_turns_the_status_page_red(
        vllm_setup, settings, tmp_path, test_redis):
    from trainer import health
    from trainer.core.vllm import VLLMUnavailable
    from trainer.worker import vllm

    settings.SERVING_BACKEND = "vllm"
    settings.VLLM_URL = []
    settings.DATA_DIR = tmp_path
    settings.VLLM_PYTHON = tmp_path / "no-such-env" / "bin" / "python"
    with pytest.raises(VLLMUnavailable, match="SERVING_BACKEND=vllm ./run.sh"):
        vllm.locate("version-123", tmp_path)
    checks = health.check_vllm(redis_ok=True)
    assert [c.ok for c in checks] == [False] and "./run.sh" in checks[0].fix
