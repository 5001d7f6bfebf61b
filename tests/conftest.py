import os

from hypothesis import settings as hypothesis_settings

from tests.models_fixtures import bundled_model_path, tiny_model_path  # noqa: F401
from tests.personas import browser, outsider, owner, owner_client, page, staff  # noqa: F401
from tests.services import asgi_server, generate_worker, services_dir, test_redis  # noqa: F401

# Property tests draw the same examples on every run (a failure is the code's, not the draw's); set
# HYPOTHESIS_RANDOM=1 to explore new ones while working on a parser.
hypothesis_settings.register_profile("repeatable", derandomize=True, database=None)
hypothesis_settings.register_profile("explore")
hypothesis_settings.load_profile("explore" if os.environ.get("HYPOTHESIS_RANDOM") == "1" else "repeatable")
