"""The Redis settings: REDIS_SENTINELS is read strictly, and the Celery broker URL becomes
kombu's sentinel:// URL with the master's name when sentinels are given (and stays
exactly what it was when they are not)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from shop import env
from shop.web import redis_clients

SENTINELS = [("10.0.0.5", 26379), ("sentinel-2", 26380)]


def test_sentinel_addresses_are_host_and_port(monkeypatch):
    monkeypatch.setenv("REDIS_SENTINELS", " sentinel-1:26379, sentinel-2 ,10.0.0.7:5000")
    assert env.get_addresses("REDIS_SENTINELS", default_port=26379) == [
        ("sentinel-1", 26379), ("sentinel-2", 26379), ("10.0.0.7", 5000)]
    monkeypatch.setenv("REDIS_SENTINELS", "")
    assert env.get_addresses("REDIS_SENTINELS", default_port=26379) == []


@pytest.mark.parametrize("bad", ["host:port", ":26379", "host:0", "host:70000", "host:-1"])
def test_a_bad_sentinel_address_stops_the_settings(monkeypatch, bad):
    monkeypatch.setenv("REDIS_SENTINELS", f"ok:26379,{bad}")
    with pytest.raises(ImproperlyConfigured, match="REDIS_SENTINELS"):
        env.get_addresses("REDIS_SENTINELS", default_port=26379)


def test_without_sentinels_the_broker_url_is_left_alone():
    assert redis_clients.broker("redis://redis:6379/1", sentinels=[], master="shop") == (
        "redis://redis:6379/1", {})


def test_with_sentinels_the_broker_asks_them_for_the_master():
    url, options = redis_clients.broker(
        "redis://:s%40cret@ignored:6379/1", sentinels=SENTINELS, master="shop",
        sentinel_password="watch",
    )
    # Each sentinel with the data nodes' password and the database number.
    assert url == "sentinel://:s%40cret@10.0.0.5:26379/1;sentinel://:s%40cret@sentinel-2:26380/1"
    assert options["master_name"] == "shop"
    assert options["sentinel_kwargs"]["password"] == "watch"
    assert options["sentinel_kwargs"]["socket_timeout"] > 0


def test_a_broker_url_of_another_kind_or_already_sentinel_keeps_its_address():
    assert redis_clients.broker("amqp://rabbit//", sentinels=SENTINELS, master="shop") == (
        "amqp://rabbit//", {})
    url, options = redis_clients.broker(
        "sentinel://a:1/15;sentinel://b:2/15", sentinels=SENTINELS, master="shop")
    assert url == "sentinel://a:1/15;sentinel://b:2/15"
    assert options["master_name"] == "shop"


def test_with_sentinels_redis_url_must_be_plain_redis(settings):
    settings.REDIS_SENTINELS = SENTINELS
    settings.REDIS_URL = "rediss://redis:6380/0"
    with pytest.raises(ImproperlyConfigured, match="redis://"):
        redis_clients.client(timeout=1, pool="settings-test")
