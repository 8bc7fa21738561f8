"""Coherence under races: a fetch that overlaps a write must never put the
pre-write user (or a pre-create 404) back into the cache."""

import threading
import time

from conftest import fetch, user_path, users_path


def slow_fetch_in_background(gw, mock, path, seconds):
    """Start a GET whose upstream answer is computed now but arrives late."""
    mock.fail(prefix=path, method="GET", count=1, delay_after=seconds)
    box = {}
    t = threading.Thread(target=lambda: box.update(r=gw.get(path, timeout=10)))
    t.start()
    # wait until the mock has computed the answer (the request is logged)
    deadline = time.time() + 5
    while not [r for r in mock.requests("GET", path)] and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    return t, box


def test_delete_during_slow_fetch_is_not_undone(gateway, mock):
    assert gateway.post(users_path("v1s"), {"Identity": "racer"}).status == 201
    path = user_path("v1s", "racer")
    mock.reset()
    t, box = slow_fetch_in_background(gateway, mock, path, 1.0)
    # the delete completes while the old answer is still on its way back
    d = gateway.request("DELETE", path)
    assert d.status == 204, d
    t.join(10)
    assert box["r"].status == 200  # the overlapping fetch itself saw the old user
    time.sleep(0.1)
    # ... but it must not have been stored: the next fetch goes upstream -> 404
    after = gateway.get(path)
    assert after.status == 404, after
    assert after.xcache in ("MISS",), after


def test_create_during_slow_404_is_not_hidden(gateway, mock):
    path = user_path("v2", "newcomer")
    t, box = slow_fetch_in_background(gateway, mock, path, 1.0)
    c = gateway.post(users_path("v2"), {"Identity": "newcomer"})
    assert c.status == 201, c
    t.join(10)
    assert box["r"].status == 404
    time.sleep(0.1)
    r = gateway.get(path)
    assert r.status == 200 and r.json["identity"] == "newcomer", r


def test_update_during_slow_fetch_shows_new_fields(gateway, mock):
    assert gateway.post(users_path("v1"), {"Identity": "upd", "FriendlyName": "old"}).status == 201
    path = user_path("v1", "upd")
    t, box = slow_fetch_in_background(gateway, mock, path, 1.0)
    u = gateway.post(path, {"FriendlyName": "new"})
    assert u.status == 200 and u.json["friendly_name"] == "new", u
    t.join(10)
    time.sleep(0.1)
    for _ in range(2):
        r = gateway.get(path)
        assert r.status == 200 and r.json["friendly_name"] == "new", r


def test_fetch_after_write_is_cached_again(gateway, mock):
    """Tombstones do not stop caching for fetches that start after the write."""
    assert gateway.post(users_path("v1s"), {"Identity": "again"}).status == 201
    path = user_path("v1s", "again")
    fetch(gateway, path, 200, "MISS")
    fetch(gateway, path, 200, "HIT")
    assert gateway.post(path, {"FriendlyName": "x"}).status == 200
    fetch(gateway, path, 200, "MISS")
    fetch(gateway, path, 200, "HIT")


def test_write_with_unknown_outcome_still_invalidates(gateway_factory, mock):
    gw = gateway_factory({"upstream": {"timeout_ms": "500", "max_retries": "0"}})
    mock.add_user("unsure", friendly_name="before")
    path = user_path("v1s", "unsure")
    fetch(gw, path, expect_cache="MISS")
    fetch(gw, path, expect_cache="HIT")
    # Twilio applies the update but the answer never arrives in time.
    mock.fail(prefix=path, method="POST", count=1, delay_after=1.5)
    r = gw.post(path, {"FriendlyName": "after"})
    assert r.status == 504, r
    time.sleep(1.2)  # the mock finishes applying it
    r = fetch(gw, path, expect_cache="MISS")
    assert r.json["friendly_name"] == "after", r
