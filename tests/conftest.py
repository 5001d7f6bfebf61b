from tests.models_fixtures import bundled_model_path, tiny_model_path  # noqa: F401
from tests.personas import browser, outsider, owner, owner_client, page, staff  # noqa: F401
from tests.services import asgi_server, generate_worker, services_dir, test_redis  # noqa: F401
