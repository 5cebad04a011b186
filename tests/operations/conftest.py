"""Fixtures of the operations tests."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client


@pytest.fixture
def admin_client_():
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client
