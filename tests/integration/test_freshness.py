"""Freshness policy: stale-while-revalidate, stale-if-error (upstream 5xx, 429,
timeout) within its window and errors after it, Cache-Control no-cache and
no-store."""

import time

from conftest import SERVICE, assert_twilio_error, fetch, upstream_fetches, user_path, wait_until


def _short_ttl(gateway_factory, **cache):
    sections = {"cache": {"ttl": "1", "stale_while_revalidate": "0", "stale_if_error": "0"}}
    sections["cache"].update({k: str(v) for k, v in cache.items()})
    sections["upstream"] = {"timeout_ms": "600", "max_retries": "0"}
    return gateway_factory(sections)


def _expire(seconds=1.2):
    time.sleep(seconds)  # ttl 1 s, ±5 % jitter


def test_stale_while_revalidate_serves_at_once_and_refreshes_once(gateway_factory, mock):
    gw = _short_ttl(gateway_factory, stale_while_revalidate=30)
    mock.add_user("swr", friendly_name="v1")
    path = user_path("v1s", "swr")
    fetch(gw, path, expect_cache="MISS")
    mock.get_user("swr")  # unchanged
    with mock.lock:
        mock._find_locked(SERVICE, "swr")["friendly_name"] = "v2"
    _expire()
    mock.reset()
    # Upstream made slow: a STALE answer must not wait for it.
    mock.fail(prefix=path, method="GET", count=1, delay=0.5)
    t0 = time.monotonic()
    stale = [gw.get(path) for _ in range(5)]
    assert all(r.status == 200 and r.xcache == "STALE" for r in stale), stale
    assert all(r.json["friendly_name"] == "v1" for r in stale)
    assert time.monotonic() - t0 < 0.5, "STALE answers waited for the refresh"
    wait_until(lambda: gw.get(path).xcache == "HIT", what="refreshed entry")
    r = fetch(gw, path, expect_cache="HIT")
    assert r.json["friendly_name"] == "v2", r
    # every STALE answer (ours and wait_until's) shared one refresh
    assert len(upstream_fetches(mock, path)) == 1
    m = gw.metrics()
    assert m.get_value("usergate_cache_lookups_total", route="/v1/Services/{ServiceSid}/Users/{Sid}",
                       result="stale") >= 5


def _stale_if_error_case(gw, mock, ident, inject):
    mock.add_user(ident, friendly_name="kept")
    path = user_path("v2", ident)
    fetch(gw, path, expect_cache="MISS")
    _expire()
    inject(path)
    r = gw.get(path)
    assert r.status == 200 and r.xcache == "STALE", r
    assert r.json["friendly_name"] == "kept" and r.header("Age") is not None
    return path


def test_stale_if_error_on_500_429_and_timeout(gateway_factory, mock):
    gw = _short_ttl(gateway_factory, stale_if_error=30)
    _stale_if_error_case(gw, mock, "sie500",
                         lambda p: mock.fail(prefix=p, method="GET", status=500))
    _stale_if_error_case(gw, mock, "sie429",
                         lambda p: mock.fail(prefix=p, method="GET", status=429))
    _stale_if_error_case(gw, mock, "siehang",
                         lambda p: mock.fail(prefix=p, method="GET", delay=1.5))
    m = gw.metrics()
    assert m.get_value("usergate_cache_lookups_total", route="/v2/Services/{ServiceSid}/Users/{Sid}",
                       result="stale") == 3
    mock.clear_failures()


def test_errors_after_the_stale_if_error_window(gateway_factory, mock):
    gw = _short_ttl(gateway_factory, stale_if_error=1)
    mock.add_user("late", friendly_name="old")
    path = user_path("v1", "late")
    fetch(gw, path, expect_cache="MISS")
    time.sleep(2.3)  # past ttl (1 s) + stale_if_error (1 s)
    mock.fail(prefix=path, method="GET", status=500, count=1)
    r = gw.get(path)
    assert_twilio_error(r, status=500)
    assert r.xcache == "MISS", r
    mock.fail(prefix=path, method="GET", delay=1.5, count=1)
    r = gw.get(path)
    assert_twilio_error(r, status=504)
    mock.fail(prefix=path, method="GET", status=429, count=1)
    r = gw.get(path)
    assert_twilio_error(r, status=429)


def test_no_cache_refreshes_and_no_store_leaves_the_cache_alone(gateway, mock):
    mock.add_user("cc", friendly_name="one")
    path = user_path("v1s", "cc")
    fetch(gateway, path, expect_cache="MISS")
    with mock.lock:
        mock._find_locked(SERVICE, "cc")["friendly_name"] = "two"
    assert fetch(gateway, path, expect_cache="HIT").json["friendly_name"] == "one"
    r = fetch(gateway, path, expect_cache="BYPASS", headers={"Cache-Control": "no-store"})
    assert r.json["friendly_name"] == "two"
    time.sleep(0.1)
    # no-store neither read nor wrote the entry
    assert fetch(gateway, path, expect_cache="HIT").json["friendly_name"] == "one"
    r = fetch(gateway, path, expect_cache="BYPASS", headers={"Cache-Control": "no-cache"})
    assert r.json["friendly_name"] == "two"
    time.sleep(0.1)
    # no-cache refreshed the entry for everybody
    assert fetch(gateway, path, expect_cache="HIT").json["friendly_name"] == "two"
    assert len(upstream_fetches(mock, path)) == 3
