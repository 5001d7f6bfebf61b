from tests.models_fixtures import bundled_model_path, tiny_model_path  # noqa: F401
