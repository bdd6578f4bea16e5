from tests.integration.conftest import card_client, card_settings, client, emulator, served  # noqa: F401
