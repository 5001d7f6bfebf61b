"""Model folders shared by the whole suite: the bundled SmolLM2, converted once
per machine into a cache folder, and a tiny random Llama with its tokenizer."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("TEST_CACHE_DIR", REPO / ".cache" / "test"))


@pytest.fixture(scope="session")
def bundled_model_path() -> Path:
    from trainer.core.provision import convert_bundled

    return convert_bundled(CACHE, log=lambda *_: None)


@pytest.fixture(scope="session")
def tiny_model_path(bundled_model_path: Path) -> Path:
    """2 layers, hidden size 64, the bundled tokenizer: loads in well under a second."""
    from trainer.core.provision import make_tiny_model

    return make_tiny_model(str(bundled_model_path), CACHE / "models" / "tiny-llama")
