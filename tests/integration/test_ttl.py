"""Freshness: Age grows, entries expire after ttl / negative_ttl and the next
answers converge on what upstream says (STALE allowed while revalidating)."""

import time

from conftest import fetch, upstream_fetches, user_path, wait_until


def test_age_grows(gateway, mock):
    mock.add_user("aging")
    path = user_path("v1s", "aging")
    fetch(gateway, path, 200, "MISS")
    time.sleep(1.2)
    r = fetch(gateway, path, 200, "HIT")
    assert int(r.header("Age", "-1")) >= 1, r


def test_positive_entry_expires_after_ttl(gateway_factory, mock):
    gw = gateway_factory(overrides={"cache": {"ttl": "1", "negative_ttl": "1"}})
    mock.add_user("fresh", friendly_name="Old")
    path = user_path("v2", "fresh")
    fetch(gw, path, 200, "MISS")
    r = fetch(gw, path, 200, "HIT")
    assert r.json["friendly_name"] == "Old"
    with mock.lock:  # changed behind the gateway's back
        mock.users[mock.default_service][r.json["sid"]]["friendly_name"] = "New"
    time.sleep(1.3)
    r = gw.get(path)
    assert r.status == 200 and r.xcache in ("STALE", "MISS"), r
    if r.xcache == "MISS":
        assert r.json["friendly_name"] == "New", r

    def converged():
        x = gw.get(path)
        assert x.status == 200, x
        return x.json["friendly_name"] == "New" and x.xcache == "HIT"
    wait_until(converged, timeout=5, interval=0.1, what="the refreshed entry to be served")
    assert len(upstream_fetches(mock, path)) >= 2


def test_negative_entry_expires_after_negative_ttl(gateway_factory, mock):
    gw = gateway_factory(overrides={"cache": {"ttl": "300", "negative_ttl": "1"}})
    path = user_path("v1s", "later")
    fetch(gw, path, 404, "MISS")
    fetch(gw, path, 404, "HIT")
    mock.add_user("later")  # created behind the gateway's back
    time.sleep(1.3)
    wait_until(lambda: gw.get(path).status == 200, timeout=4, interval=0.1,
               what="the negative entry to expire")
