"""Retries only where safe: GETs on connection failure, 5xx and 429 (with
back-off and Retry-After, bounded by max_retries and the deadline); writes
only when they never reached Twilio."""

import time

from conftest import (SERVICE, assert_twilio_error, closed_port, fetch, upstream_fetches,
                      user_path, users_path)


def _retries(gw):
    return gw.metrics().get_value("usergate_upstream_retries_total")


def test_get_retried_on_500_then_succeeds(gateway, mock):
    mock.add_user("flaky")
    path = user_path("v1s", "flaky")
    mock.fail(prefix=path, method="GET", status=500, count=2)
    r = fetch(gateway, path, expect_cache="MISS")
    assert r.json["identity"] == "flaky"
    assert len(upstream_fetches(mock, path)) == 3
    assert _retries(gateway) == 2


def test_get_retried_on_reset_connection(gateway, mock):
    mock.add_user("resetme")
    path = user_path("v2", "resetme")
    mock.fail(prefix=path, method="GET", drop=True, count=1)
    assert fetch(gateway, path).json["identity"] == "resetme"
    assert len(upstream_fetches(mock, path)) == 2


def test_get_429_honours_retry_after(gateway_factory, mock):
    gw = gateway_factory({"upstream": {"timeout_ms": "5000"}})
    mock.add_user("throttled")
    path = user_path("v1", "throttled")
    mock.fail(prefix=path, method="GET", status=429, count=1, headers={"Retry-After": "1"})
    r = fetch(gw, path)
    assert r.json["identity"] == "throttled"
    times = [x["time"] for x in upstream_fetches(mock, path)]
    assert len(times) == 2 and times[1] - times[0] >= 0.95, times
    m = gw.metrics()
    assert m.get_value("usergate_upstream_throttled_total") == 1
    assert m.get_value("usergate_upstream_retries_total") == 1


def test_retry_after_beyond_the_deadline_is_not_waited_for(gateway_factory, mock):
    gw = gateway_factory({"upstream": {"timeout_ms": "2000"}})
    mock.add_user("later")
    path = user_path("v1s", "later")
    mock.fail(prefix=path, method="GET", status=429, count=1, headers={"Retry-After": "30"})
    t0 = time.monotonic()
    r = gw.get(path)
    assert_twilio_error(r, status=429)
    assert time.monotonic() - t0 < 1.5
    assert len(upstream_fetches(mock, path)) == 1


def test_get_gives_up_after_max_retries(gateway_factory, mock):
    gw = gateway_factory({"upstream": {"max_retries": "3"}})
    mock.add_user("down")
    path = user_path("v2", "down")
    mock.fail(prefix=path, method="GET", status=503)
    r = gw.get(path)
    assert_twilio_error(r, status=503)  # Twilio's own error, passed through
    assert len(upstream_fetches(mock, path)) == 4
    assert _retries(gw) == 3
    mock.clear_failures()


def test_writes_that_reached_twilio_are_never_retried(gateway, mock):
    u = mock.add_user("writer")
    path = user_path("v1s", u["sid"])
    mock.fail(prefix=path, method="POST", status=500, count=1)
    r = gateway.post(path, {"FriendlyName": "x"})
    assert_twilio_error(r, status=500)
    assert len(mock.requests("POST", path)) == 1
    mock.fail(prefix=path, method="DELETE", drop=True, count=1)
    r = gateway.delete(path)
    assert_twilio_error(r, status=502)
    assert len(mock.requests("DELETE", path)) == 1
    mock.fail(prefix=users_path("v2"), method="POST", status=503, count=1)
    r = gateway.post(users_path("v2"), {"Identity": "newbie"})
    assert_twilio_error(r, status=503)
    assert len(mock.requests("POST", users_path("v2"))) == 1
    assert _retries(gateway) == 0


def test_write_that_never_left_is_retried(gateway_factory, mock):
    port = closed_port()
    gw = gateway_factory({"upstream": {"conversations_url": "http://127.0.0.1:%d" % port,
                                       "chat_url": "http://127.0.0.1:%d" % port,
                                       "max_retries": "2"}})
    r = gw.post(users_path("v1s"), {"Identity": "nowhere"})
    assert_twilio_error(r, status=502)
    assert _retries(gw) == 2  # connection refused: provably never sent
    r = gw.get(user_path("v1s", "nowhere"))
    assert_twilio_error(r, status=502)
    assert _retries(gw) == 4
