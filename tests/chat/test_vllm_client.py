"""The vLLM client and server keeping, without a vLLM server: what a real one cannot be made to do on cue (break
off mid-reply) is played by a small HTTP server, and a left-behind server by a sleeping process."""

import base64
import io
import json
import os
import subprocess
import sys
import time
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from trainer.core.batch_generation import GenerationRequest
from trainer.core.vllm import VLLMEngine, VLLMUnavailable


def chunk(text: str, finish=None) -> bytes:
    return f"data: {json.dumps({'choices': [{'index': 0, 'text': text, 'finish_reason': finish}]})}\n\n".encode()


class FakeServer(BaseHTTPRequestHandler):
    """Serves /v1/models (max_model_len 64) and a completion stream chosen by the test."""

    script: list[bytes] = []
    bodies: list[dict] = []
    auth_seen: list[str] = []  # the Authorization header of every request

    def do_GET(self):  # noqa: N802
        FakeServer.auth_seen.append(self.headers.get("Authorization", ""))
        body = json.dumps({"data": [{"id": "m", "max_model_len": 64}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802
        FakeServer.auth_seen.append(self.headers.get("Authorization", ""))
        FakeServer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for part in FakeServer.script:
            self.wfile.write(part)
            self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def fake():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeServer.bodies, FakeServer.auth_seen = [], []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def engine(tiny_model_path, fake):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    return VLLMEngine(lambda _name: fake, "m", tokenizer, torch.randn(tokenizer.vocab_size + 100, 64))


def ask(engine, tokens=200, soft=None):
    request = engine.submit(GenerationRequest([{"role": "user", "content": "Hi"}], soft, max_new_tokens=tokens,
                                              temperature=0.0))
    pieces = []
    with pytest.raises(Exception) as failure:
        for piece in request.stream(timeout=30):
            pieces.append(piece)
        raise AssertionError("no error")  # reached only when the stream ended without one
    return request, pieces, failure.value


def test_a_stream_that_breaks_off_fails_and_keeps_the_text_so_far(engine):
    FakeServer.script = [chunk("Hello"), chunk(" there")]  # then the connection closes: no finish, no [DONE]
    request, pieces, error = ask(engine)
    assert pieces == ["Hello", " there"]
    assert isinstance(error, VLLMUnavailable) and "stopped in the middle of the reply" in error.reason


def test_an_aborted_reply_fails_rather_than_ending_as_done(engine):
    FakeServer.script = [chunk("Hel"), chunk("", "abort"), b"data: [DONE]\n\n"]
    _, pieces, error = ask(engine)
    assert pieces == ["Hel"] and isinstance(error, VLLMUnavailable) and "aborted" in error.reason


def test_a_finished_reply_ends_cleanly_and_says_when_it_was_cut(engine):
    FakeServer.script = [chunk("One"), chunk(" two", "length"),
                         b'data: {"choices": [], "usage": {"completion_tokens": 2}}\n\n', b"data: [DONE]\n\n"]
    request = engine.submit(GenerationRequest([{"role": "user", "content": "Hi"}], torch.randn(4, 64),
                                              max_new_tokens=200, temperature=0.0))
    assert "".join(request.stream(timeout=30)) == "One two"
    assert request.cut and request.tokens == 2 and request.error is None
    body = FakeServer.bodies[-1]
    positions = 1 + 4 + len(request.prompt_ids)  # BOS, the vectors, the prompt
    assert body["max_tokens"] == 64 - positions  # capped so that prompt and reply fit the server's 64
    assert body["temperature"] == 0.0 and body["stream"] is True and body["model"] == "m"
    embeds = torch.load(io.BytesIO(base64.b64decode(body["prompt_embeds"])))
    assert embeds.shape == (positions, 64)


def test_a_repetition_penalty_travels_to_the_server_only_when_asked_for(engine):
    for penalty in (1.0, 1.3):
        FakeServer.script = [chunk("One", "stop"), b"data: [DONE]\n\n"]
        request = engine.submit(GenerationRequest([{"role": "user", "content": "Hi"}], max_new_tokens=8,
                                                  temperature=0.0, repetition_penalty=penalty))
        assert "".join(request.stream(timeout=30)) == "One"
        assert FakeServer.bodies[-1].get("repetition_penalty") == (None if penalty == 1.0 else 1.3)


def test_a_prompt_longer_than_the_server_takes_says_which_setting_to_change(engine):
    FakeServer.script = []
    request = engine.submit(GenerationRequest([{"role": "user", "content": "word " * 200}], None,
                                              max_new_tokens=10, temperature=0.0))
    with pytest.raises(ValueError, match="CHAT_MAX_PROMPT_TOKENS"):
        list(request.stream(timeout=30))


def test_a_server_left_by_a_killed_worker_is_stopped_by_the_next(settings, tmp_path, test_redis):
    from trainer.worker import vllm

    settings.DATA_DIR = tmp_path
    (tmp_path / "run").mkdir()
    # The left-behind server is no child of this process (as after a killed worker: init reaps it), in a
    # session of its own like the servers the worker starts.
    server = int(subprocess.run(["bash", "-c", "setsid bash -c 'exec -a \"vllm serve\" sleep 120' >/dev/null 2>&1 & "
                                "echo $!"], capture_output=True, text=True, check=True).stdout)
    dead_worker = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_worker.wait()
    left = tmp_path / "run" / f"vllm-version-7.{dead_worker.pid}.pid"
    left.write_text(f"{dead_worker.pid} {server}\n")
    mine = tmp_path / "run" / f"vllm-version-8.{os.getpid()}.pid"  # this worker's own: left alone
    mine.write_text(f"{os.getpid()} {os.getpid()}\n")
    vllm._stop_orphans()
    deadline = time.monotonic() + 30
    while vllm.process_alive(server) and "vllm" in vllm.command_line(server) and time.monotonic() < deadline:
        time.sleep(0.1)  # init reaps it
    assert "vllm" not in vllm.command_line(server)
    assert not left.exists() and mine.exists()


def test_a_pid_file_whose_server_pid_now_names_another_program_stops_nothing(settings, tmp_path, test_redis):
    from trainer.worker import vllm

    settings.DATA_DIR = tmp_path
    (tmp_path / "run").mkdir()
    stranger = subprocess.Popen(["sleep", "120"], start_new_session=True)  # the pid the file names, reused
    dead_worker = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_worker.wait()
    left = tmp_path / "run" / f"vllm-version-7.{dead_worker.pid}.pid"
    left.write_text(f"{dead_worker.pid} {stranger.pid}\n")
    try:
        vllm._stop_orphans()
        assert stranger.poll() is None and not left.exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_the_status_page_is_red_for_a_server_that_answers_without_a_key(fake, settings):
    from trainer import health

    settings.SERVING_BACKEND, settings.VLLM_URL = "vllm", [fake]
    (check,) = health.check_vllm(redis_ok=False)
    assert not check.ok and "answers without asking for a key" in check.detail and "--api-key" in check.fix


def test_vllm_args_may_not_move_the_workers_servers_off_loopback():
    from trainer.core.vllm import server_command

    command = server_command("python", "/m", "version-1", 8001, ["--dtype", "float32"], api_key="k3y")
    assert command[command.index("--host") + 1] == "127.0.0.1" and "--api-key=k3y" in command
    for args in (["--host", "0.0.0.0"], ["--host=0.0.0.0"]):
        with pytest.raises(ValueError, match="VLLM_ARGS may not set --host"):
            server_command("python", "/m", "version-1", 8001, args, api_key="k3y")


def test_every_request_carries_the_key(engine, fake):
    engine.api_key = "s3cret"
    FakeServer.script = [chunk("Hi", finish="stop"), b"data: [DONE]\n\n"]
    ask(engine, tokens=4)
    assert FakeServer.auth_seen and set(FakeServer.auth_seen) == {"Bearer s3cret"}


def test_a_model_no_remote_server_serves_is_refused_with_a_command_that_starts_a_closed_one(fake, settings):
    from trainer.worker.vllm import ExternalServers

    settings.SERVING_BACKEND, settings.VLLM_URL, settings.VLLM_API_KEY = "vllm", [fake], "k3y"
    with pytest.raises(VLLMUnavailable) as caught:
        ExternalServers().url("version-7", "/shared/runs/7/model/merged")
    reason = caught.value.reason
    assert "no server serves the model 'version-7'" in reason and f"{fake} serves other models" in reason
    assert "vllm serve /shared/runs/7/model/merged --served-model-name version-7" in reason
    assert "--host <its private address>" in reason and '--api-key "$VLLM_API_KEY"' in reason


def test_an_orphan_server_of_another_user_is_left_alone_and_its_starting_entry_cleared(settings, tmp_path,
                                                                                       test_redis, monkeypatch):
    from trainer.worker import vllm

    settings.DATA_DIR = tmp_path
    (tmp_path / "run").mkdir()
    dead_worker = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_worker.wait()
    left = tmp_path / "run" / f"vllm-version-9.{dead_worker.pid}.pid"
    left.write_text(f"{dead_worker.pid} 424242\n")
    vllm._publish("version-9", state="starting")
    monkeypatch.setattr(vllm, "_is_vllm_server", lambda pid: True)  # a vLLM server, but another user's

    def not_ours(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(vllm.os, "killpg", not_ours)
    vllm._stop_orphans()  # no exception: the entry and the pid file go, the process is not ours to stop
    assert not left.exists() and "version-9" not in vllm.states()


def test_a_key_that_starts_with_a_dash_reaches_the_server_as_the_key():
    """One generated key in 64 starts with "-": given as its own argument, vLLM's parser took it for an option
    and the server refused to start."""
    import argparse

    from trainer.core.vllm import server_command

    command = server_command("python", "/m", "version-1", 8001, [], api_key="-Xk3y_")
    parser = argparse.ArgumentParser()  # vLLM's --api-key takes one or more keys
    parser.add_argument("--api-key", nargs="+")
    parsed, _ = parser.parse_known_args(command[3:])
    assert parsed.api_key == ["-Xk3y_"]

