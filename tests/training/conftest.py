import pytest

from tests.factories import population


@pytest.fixture
def people(db):
    """Six simulated people (two hidden groups), three rated conversations each: what the worker tests train on."""
    return population(people=6, conversations=3)
