import pytest

from tests.models.real_backend import real_backend


@pytest.fixture(scope="session")
def encoder_backend():
    return real_backend()
