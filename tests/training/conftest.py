import pytest

from tests.factories import population


@pytest.fixture
def workdir(tmp_path, settings):
    """A folder for a real worker's artifacts and log; stale runs are reaped 4 s after their last heartbeat."""
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    settings.TRAIN_HEARTBEAT_TIMEOUT = 4
    return tmp_path


@pytest.fixture
def people(db):
    """Six simulated people (two hidden groups), three rated conversations each: what the worker tests train on."""
    return population(people=6, conversations=3)
