"""LoadOnce, what a worker keeps loaded: one load per key however many threads ask, no thread waiting behind
another key's load, failures passed to every asker and tried again by the next, the oldest pushed out."""

import threading

import pytest

from trainer.worker.loaded import LoadOnce


def test_a_kept_key_answers_while_another_key_loads():
    cache = LoadOnce()
    cache.get("kept", lambda: "ready")
    answered = threading.Event()

    def slow():
        # Held until another thread has read the kept key: with the lock held here, it never could.
        assert answered.wait(timeout=60), "a read of another key waited behind this load"
        return "slow"

    loader = threading.Thread(target=cache.get, args=("slow", slow))
    loader.start()
    reader = threading.Thread(target=lambda: cache.get("kept", pytest.fail) == "ready" and answered.set())
    reader.start()
    reader.join(timeout=60)
    loader.join(timeout=60)
    assert answered.is_set() and "slow" in cache


def test_threads_asking_for_a_key_while_it_loads_share_that_one_load():
    cache, started, release, calls = LoadOnce(), threading.Event(), threading.Event(), []

    def first():
        calls.append("first")
        started.set()
        release.wait(timeout=60)
        return object()

    results = {}
    a = threading.Thread(target=lambda: results.update(a=cache.get("k", first)))
    a.start()
    assert started.wait(timeout=60)
    b = threading.Thread(target=lambda: results.update(b=cache.get("k", lambda: calls.append("second"))))
    b.start()
    b.join(timeout=0.5)
    assert b.is_alive() and calls == ["first"]  # waiting for the first load, not loading again
    release.set()
    a.join(timeout=60)
    b.join(timeout=60)
    assert results["a"] is results["b"] and calls == ["first"]


def test_a_failed_load_reaches_every_waiting_asker_and_the_next_ask_tries_again():
    cache, started, release = LoadOnce(), threading.Event(), threading.Event()

    def broken():
        started.set()
        release.wait(timeout=60)
        raise OSError("disk gone")

    errors = []

    def ask():
        try:
            cache.get("k", broken)
        except OSError as exc:
            errors.append(str(exc))

    first = threading.Thread(target=ask)
    first.start()
    assert started.wait(timeout=60)
    second = threading.Thread(target=ask)
    second.start()
    second.join(timeout=0.5)
    release.set()
    first.join(timeout=60)
    second.join(timeout=60)
    assert errors == ["disk gone", "disk gone"]
    assert "k" not in cache and cache.get("k", lambda: "mended") == "mended"


def test_only_the_newest_are_kept_and_each_pushed_out_is_dropped():
    dropped = []
    cache = LoadOnce(keep=2, drop=dropped.append)
    for key in (1, 2, 3):
        cache.get(key, lambda key=key: f"version {key}")
    assert dropped == ["version 1"] and 1 not in cache and 2 in cache and 3 in cache
    assert cache.get(2, pytest.fail) == "version 2"
    cache.clear()
    assert dropped == ["version 1", "version 2", "version 3"] and 3 not in cache


def test_two_models_built_at_once_in_one_process_both_come_out_whole(tiny_model_path, monkeypatch):
    """transformers patches process-wide state while it builds a model: a second load finishing inside the
    first's would get an untied head on the meta device and leave weight tying switched off for good."""
    import torch
    from transformers import LlamaForCausalLM

    from trainer.core.loop import load_base

    inside, release = threading.Event(), threading.Event()
    real_init = LlamaForCausalLM.__init__

    def held_init(self, config):
        real_init(self, config)
        if not inside.is_set():  # the first load pauses here, inside from_pretrained's patches
            inside.set()
            release.wait(timeout=60)

    monkeypatch.setattr(LlamaForCausalLM, "__init__", held_init)
    built = {}
    first = threading.Thread(target=lambda: built.setdefault("first", load_base(str(tiny_model_path))[0]))
    first.start()
    assert inside.wait(timeout=60)
    second = threading.Thread(target=lambda: built.setdefault("second", load_base(str(tiny_model_path))[0]))
    second.start()
    second.join(timeout=5)  # without the lock it finishes here, inside the first's patches
    release.set()
    first.join(timeout=60)
    second.join(timeout=60)
    assert set(built) == {"first", "second"}
    for lm in built.values():
        assert not any(p.is_meta for p in lm.parameters())
        assert lm.lm_head.weight.data_ptr() == lm.get_input_embeddings().weight.data_ptr()
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(built["first"](ids).logits, built["second"](ids).logits)
