from tests.integration.conftest import served  # noqa: F401
