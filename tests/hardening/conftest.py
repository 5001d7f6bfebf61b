from tests.collection.conftest import enqueued, sources, surveyed  # noqa: F401  (fixtures shared with collection)
