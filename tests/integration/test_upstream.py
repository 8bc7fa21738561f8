"""Upstream trouble (refused, dropped, slow, 5xx), learning the default
service from /v1/Configuration, and the bound on requests in flight."""

import threading
import time

from conftest import (ACCOUNT, SERVICE, TOKEN, assert_twilio_error, basic, closed_port, fetch,
                      upstream_fetches, user_path, users_path, wait_until)


def test_upstream_unreachable_is_502(gateway_factory, mock):
    gw = gateway_factory(overrides={"upstream": {
        "conversations_url": "http://127.0.0.1:%d" % closed_port()}})
    t = time.monotonic()
    r = gw.get(user_path("v1s", "alice"))
    assert_twilio_error(r, 502)
    r = gw.get(user_path("v1", "alice"))
    assert_twilio_error(r, 502)
    r = gw.post(users_path("v1s"), {"Identity": "alice"})
    assert_twilio_error(r, 502)
    assert time.monotonic() - t < 8
    # chat_url still points at the mock: the other API family works
    mock.add_user("alice")
    r = gw.get(user_path("v2", "alice"))
    assert r.status == 200 and r.json["identity"] == "alice", r
    # an error was not cached as a negative entry
    assert gw.get(user_path("v1s", "alice")).status == 502


def test_upstream_dropping_connections_is_502_and_not_cached(gateway, mock):
    mock.add_user("dora")
    path = user_path("v1s", "dora")
    mock.fail(prefix=path, drop=True)
    r = gateway.get(path)
    assert_twilio_error(r, 502)
    mock.clear_failures()
    fetch(gateway, path, 200, "MISS")
    fetch(gateway, path, 200, "HIT")


def test_upstream_stall_is_504(gateway_factory, mock):
    gw = gateway_factory(overrides={"upstream": {"timeout_ms": "500"}})
    mock.add_user("sleepy")
    path = user_path("v2", "sleepy")
    mock.fail(prefix=path, delay=4)
    t = time.monotonic()
    r = gw.get(path, timeout=15)
    took = time.monotonic() - t
    assert_twilio_error(r, 504)
    assert took < 4, "504 after %.1fs with timeout_ms = 500" % took
    mock.clear_failures()
    r = gw.get(path)
    assert r.status == 200 and r.json["identity"] == "sleepy", r
    # a stalled create is a 504 as well
    mock.fail(prefix=users_path("v2"), delay=4, method="POST")
    r = gw.post(users_path("v2"), {"Identity": "late"}, timeout=15)
    assert_twilio_error(r, 504)


def test_upstream_5xx_passes_through_and_is_not_cached(gateway, mock):
    mock.add_user("ellen")
    path = user_path("v1s", "ellen")
    mock.fail(prefix=path, status=500)
    r = gateway.get(path)
    rec = upstream_fetches(mock, path)[-1]
    assert r.status == 500, r
    assert r.body == rec["resp_body"], r
    assert r.header("Twilio-Request-Id") == rec["resp_headers"]["Twilio-Request-Id"], r
    mock.clear_failures()
    r = fetch(gateway, path, 200)
    assert r.xcache in ("MISS", "STALE"), r
    assert r.json["identity"] == "ellen"


def test_default_service_learned_from_configuration(gateway_factory, mock):
    gw = gateway_factory(overrides={"upstream": {"default_service_sid": None}})
    mock.add_user("fred")
    path = user_path("v1", "fred")
    seen = []

    def cached():
        r = gw.get(path)
        assert r.status == 200 and r.json["identity"] == "fred", r
        seen.append(r.xcache)
        return r.xcache != "BYPASS"

    wait_until(cached, timeout=10, interval=0.1, what="/v1/Users fetches to stop being BYPASS")
    assert seen[-1] in ("MISS", "HIT"), seen
    time.sleep(0.05)
    fetch(gw, path, 200, "HIT")
    conf = mock.requests(method="GET", prefix="/v1/Configuration")
    assert conf, "gateway never asked /v1/Configuration"
    assert conf[0]["headers"]["authorization"] == basic(ACCOUNT, TOKEN)
    # what it learned is the service the /v1/Services route uses: a create there
    # clears a negative entry of /v1/Users
    fetch(gw, user_path("v1", "gail"), 404)
    fetch(gw, user_path("v1", "gail"), 404, "HIT")
    assert gw.post(users_path("v1s", SERVICE), {"Identity": "gail"}).status == 201
    assert gw.get(user_path("v1", "gail")).status == 200


def test_default_service_unknown_is_bypass_then_retried(gateway_factory, mock):
    mock.fail(prefix="/v1/Configuration", status=503)
    gw = gateway_factory(overrides={"upstream": {"default_service_sid": None}})
    mock.add_user("gus")
    path = user_path("v1", "gus")
    # an unknown default never caches a 404
    r = gw.get(user_path("v1", "nobody"))
    assert r.status == 404 and r.xcache == "BYPASS", r
    # nor a user (the reply may teach the gateway the service; later ones may cache)
    r = gw.get(path)
    assert r.status == 200 and r.json["identity"] == "gus", r
    assert r.xcache == "BYPASS", r
    # service routes cache normally meanwhile
    fetch(gw, user_path("v1s", "gus"), 200, "MISS")
    fetch(gw, user_path("v1s", "gus"), 200, "HIT")
    assert mock.requests(prefix="/v1/Configuration"), "never asked /v1/Configuration"
    mock.clear_failures()

    def hit():
        r = gw.get(path)
        assert r.status == 200, r
        return r.xcache == "HIT"

    wait_until(hit, timeout=20, interval=0.25,
               what="/v1/Users hits once /v1/Configuration answers")


def test_max_inflight_bounds_upstream_concurrency(gateway_factory, mock):
    gw = gateway_factory(overrides={"upstream": {"max_inflight": "3"}})
    n = 12
    for i in range(n):
        mock.add_user("par%d" % i)
    mock.fail(prefix="/v1/Services/", delay=0.2)
    results = [None] * n

    def one(i):
        try:
            results[i] = gw.get(user_path("v1s", "par%d" % i), timeout=20)
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = e

    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(25)
    bad = [(i, r) for i, r in enumerate(results)
           if not (hasattr(r, "status") and r.status == 200 and r.json["identity"] == "par%d" % i)]
    assert not bad, bad
    peak = mock.stats()["peak_concurrency"]
    assert 1 <= peak <= 3, "upstream saw %d concurrent requests with max_inflight = 3" % peak


def test_concurrent_identical_fetches_all_answered(gateway, mock):
    mock.add_user("hot")
    path = user_path("v2", "hot")
    mock.fail(prefix=path, delay=0.3)
    results = []
    lock = threading.Lock()

    def one():
        r = gateway.get(path, timeout=15)
        with lock:
            results.append(r)

    ts = [threading.Thread(target=one) for _ in range(10)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(20)
    assert len(results) == 10
    assert all(r.status == 200 and r.json["identity"] == "hot" for r in results), results
    assert len({r.json["sid"] for r in results}) == 1
