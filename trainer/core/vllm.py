"""Generation through a vLLM server: each request's prompt goes as input embeddings, the reply comes back as a
stream.

The server (``vllm serve MODEL --enable-prompt-embeds``) holds one model: the base model, or a version's
merged folder (its LoRA folded in). A person's vectors are not in the model; they travel with each request:
the worker builds the prompt's embeddings exactly as training placed them (``sequences.prompt_embeddings``:
BOS, the vectors, the templated prompt), ``torch.save``s them, and posts them base64-encoded to the
OpenAI-compatible completions endpoint with ``stream=true``. vLLM batches concurrent requests itself
(continuous batching), so different people's replies share the model's forward passes without our batcher.

``VLLMEngine`` has the ``BatchScheduler``'s interface (``submit`` a ``GenerationRequest``, read its
``deltas``), so the generate worker relays either the same way. Pure Python, torch and ``requests``: no
Django, so it can be benchmarked alone.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from typing import Callable

import torch

from trainer.core.batch_generation import END, GenerationRequest, encoded
from trainer.core.sequences import prompt_embeddings

CONNECT_SECONDS = 5
READ_SECONDS = 300  # between two chunks of a stream: a busy server may queue a request this long


class VLLMUnavailable(RuntimeError):
    """No vLLM server answers for this model; ``reason`` says why and what to do."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"vLLM at {url or '(none)'}: {reason}")
        self.url, self.reason = url, reason


def server_command(python: str, folder, name: str, port: int, args: list[str], api_key: str = "") -> list[str]:
    """The command that serves ``folder`` as ``name`` on 127.0.0.1:``port``, taking prompt embeddings; with
    ``api_key`` it answers only requests that carry it (``Authorization: Bearer``). ``args`` may not move it
    off the loopback address (``--host``): the server deserialises the tensors it is sent."""
    if any(a == "--host" or a.startswith("--host=") for a in args):
        raise ValueError("VLLM_ARGS may not set --host: the servers the worker starts listen on 127.0.0.1 only "
                         "(anyone who reaches one gets free inference and sends it tensors to unpickle). To serve "
                         "other machines, run `vllm serve` there with --api-key, bound to a private address, and "
                         "set VLLM_URL and VLLM_API_KEY.")
    # One argument: a generated key may start with "-", which as a separate argument reads as an option.
    key = [f"--api-key={api_key}"] if api_key else []
    return [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder), "--served-model-name",
            name, "--enable-prompt-embeds", "--host", "127.0.0.1", "--port", str(port), *key, *args]


def auth(api_key: str = "") -> dict:
    """The request headers that carry ``api_key`` (none without one)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}




def healthy(url: str, timeout: float = 2.0, api_key: str = "") -> bool:
    """Whether the server at ``url`` answers its health check (ready to serve)."""
    import requests

    try:
        return requests.get(f"{url}/health", timeout=timeout, headers=auth(api_key)).status_code == 200
    except requests.RequestException:
        return False


def encode_embeddings(embeds: torch.Tensor) -> str:
    """What vLLM's ``prompt_embeds`` field takes: a base64 ``torch.save`` of an (L, H) tensor."""
    buffer = io.BytesIO()
    torch.save(embeds.detach().cpu().contiguous(), buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def served_models(url: str, timeout: float = 3.0, api_key: str = "") -> dict[str, int | None]:
    """The model names a server at ``url`` serves, each with its longest sequence (prompt and reply, tokens);
    raises VLLMUnavailable when it does not answer (or refuses the key)."""
    import requests

    try:
        response = requests.get(f"{url}/v1/models", timeout=timeout, headers=auth(api_key))
        if response.status_code == 401:
            raise VLLMUnavailable(url, "refuses the API key: set VLLM_API_KEY to the key the server was started "
                                       "with (--api-key)")
        response.raise_for_status()
        return {m["id"]: m.get("max_model_len") for m in response.json().get("data", [])}
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise VLLMUnavailable(url, f"does not answer ({exc.__class__.__name__}: {exc})") from exc


class VLLMEngine:
    """Streams requests through a vLLM server serving ``model``; one thread per request while it streams.

    ``locate(model)`` returns the base URL of a server serving it (starting one if that is its job); it is
    called for every request, in the request's thread, so a server that moved or restarted is found again.
    ``embedding`` is the served model's (V, H) input embedding matrix.
    """

    def __init__(self, locate: Callable[[str], str], model: str, tokenizer, embedding: torch.Tensor,
                 name: str = "vllm", extra: dict | None = None, api_key: str = ""):
        self.locate, self.model, self.tokenizer, self.embedding, self.name = locate, model, tokenizer, embedding, name
        self.api_key = api_key  # sent with every request (Authorization: Bearer)
        self.hidden = embedding.shape[1]
        self.extra = extra or {}  # more request fields (the benchmark's ignore_eos)
        self._longest: dict[str, int | None] = {}  # server URL -> its max_model_len for this model

    def submit(self, request: GenerationRequest) -> GenerationRequest:
        encoded(self.tokenizer, request)  # templated and cut here, like the batcher
        if request.soft_prompt is not None and request.soft_prompt.shape[-1] != self.hidden:
            raise ValueError(f"vectors of width {request.soft_prompt.shape[-1]} for a model of width {self.hidden}")
        threading.Thread(target=self._run, args=(request,), name=f"{self.name}-request", daemon=True).start()
        return request

    def close(self) -> None:
        """Nothing to release here: the server's life is its owner's (``trainer.worker.vllm``)."""

    def payload(self, request: GenerationRequest, longest: int | None = None) -> dict:
        """The completion request; ``longest`` (the server's max_model_len) caps the reply so that prompt and
        reply fit, as the HF path's cache has no such limit."""
        embeds = prompt_embeddings(self.embedding, self.tokenizer, request.prompt_ids, request.soft_prompt)
        max_tokens = request.max_new_tokens
        if longest is not None:
            if embeds.shape[0] >= longest:
                raise ValueError(f"the prompt has {embeds.shape[0]} positions and the vLLM server takes at most "
                                 f"{longest}: lower CHAT_MAX_PROMPT_TOKENS or raise --max-model-len (VLLM_ARGS)")
            max_tokens = min(max_tokens, longest - embeds.shape[0])
        greedy = request.temperature <= 0
        body = {"model": self.model, "prompt_embeds": encode_embeddings(embeds), "max_tokens": max_tokens,
                "temperature": 0.0 if greedy else request.temperature, "top_p": 1.0 if greedy else request.top_p,
                "stream": True, "stream_options": {"include_usage": True}}
        if request.seed is not None and request.temperature > 0:
            body["seed"] = request.seed
        if request.repetition_penalty != 1.0:  # with prompt embeddings vLLM sees only the reply's own ids
            body["repetition_penalty"] = request.repetition_penalty
        return {**body, **self.extra}

    def _run(self, request: GenerationRequest) -> None:
        import requests

        request.batch_size = 0  # vLLM batches continuously: no fixed batch to record
        url = ""
        try:
            url = self.locate(self.model)  # may wait for a server to start
            if request.cancelled:  # stopped while it waited
                return
            if url not in self._longest:
                self._longest[url] = served_models(url, api_key=self.api_key).get(self.model)
            with requests.post(f"{url}/v1/completions", json=self.payload(request, self._longest[url]), stream=True,
                               timeout=(CONNECT_SECONDS, READ_SECONDS), headers=auth(self.api_key)) as response:
                if response.status_code >= 400:
                    raise _http_error(url, response)
                if not self._relay(request, response) and not request.cancelled:
                    raise VLLMUnavailable(url, "the server stopped in the middle of the reply (stopped, restarted "
                                               "or out of memory; see its log)")
        except requests.RequestException as exc:
            request.error = VLLMUnavailable(url, f"the request failed ({exc.__class__.__name__}: {exc})")
        except BaseException as exc:  # every waiting caller must hear about it
            request.error = exc
        finally:
            request.deltas.put(END)

    def _relay(self, request: GenerationRequest, response) -> bool:
        """Server-sent events → text deltas. Returns True when the reply ended (a finish reason and the stream's
        end), False when the stream broke off or the request was cancelled (closing the connection makes vLLM
        abort the request)."""
        finished = False
        for line in response.iter_lines(decode_unicode=True):
            if request.cancelled or (request.should_stop is not None and request.should_stop()):
                request.cancelled = True
                return False
            if not line or not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return finished
            chunk = json.loads(data)
            if "error" in chunk:
                raise RuntimeError(f"vLLM: {chunk['error'].get('message', chunk['error'])}")
            for choice in chunk.get("choices") or ():
                request.tokens += 1  # a chunk per generated token; the usage at the end has the exact count
                if choice.get("text"):
                    request.deltas.put(choice["text"])
                reason = choice.get("finish_reason")
                if reason == "abort":
                    raise VLLMUnavailable(response.url, "the server aborted the reply (stopping or out of memory)")
                if reason is not None:
                    finished = True
                    request.cut = reason == "length"
            usage = chunk.get("usage")
            if usage:
                request.tokens = usage.get("completion_tokens", request.tokens)


def _http_error(url: str, response) -> Exception:
    try:
        message = response.json().get("error", {}).get("message") or response.text
    except ValueError:
        message = response.text
    if response.status_code == 404:  # the server runs, but not this model: it was restarted with another
        return VLLMUnavailable(url, f"does not serve this model ({message[:300]})")
    return RuntimeError(f"vLLM at {url} answered {response.status_code}: {message[:500]}")


def answers_without_key(url: str, timeout: float = 3.0) -> bool:
    """Whether the server at ``url`` serves its model list to a request with no key (an open server)."""
    import requests

    try:
        return requests.get(f"{url}/v1/models", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False
