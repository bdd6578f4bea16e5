from tests.integration.conftest import client, emulator, served  # noqa: F401
