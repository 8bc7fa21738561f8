"""Several gateways sharing one Redis: writes and purges on one are seen by
the others at once, cold misses are fetched once across instances (a Redis
lock), a dead lock holder does not make anyone hang, and Redis trouble (a
SIGKILL, a stalled server) never reaches clients."""

import threading
import time

from conftest import (ACCOUNT, FAMILIES, KEY_PREFIX, OTHER_SERVICE, SERVICE, assert_twilio_error,
                      fetch, parallel, q, upstream_fetches, user_key, user_path, users_path,
                      wait_until)


def _pair(gateway_factory, overrides=None):
    return gateway_factory(overrides), gateway_factory(overrides)


def _burst(gws_and_counts, path):
    """Concurrent GETs of path: the given number through each gateway."""
    gws = [gw for gw, n in gws_and_counts for _ in range(n)]
    return parallel(len(gws), lambda i: gws[i].get(path, timeout=20), join_timeout=30)


def test_write_on_a_is_seen_on_b_in_every_family(gateway_factory, mock):
    a, b = _pair(gateway_factory)
    for wf in FAMILIES:  # the family the write goes through
        ident = "shared-" + wf
        c = a.post(users_path(wf), {"Identity": ident, "FriendlyName": "before"})
        assert c.status == 201, c
        usid = c.json["sid"]
        for gw in (a, b):  # warm every family on both instances, by identity and SID
            for f in FAMILIES:
                assert fetch(gw, user_path(f, ident)).status == 200
                assert fetch(gw, user_path(f, usid)).status == 200
        u = a.post(user_path(wf, usid), {"FriendlyName": "after"})
        assert u.status == 200, u
        for gw in (b, a):
            for f in FAMILIES:
                for key in (ident, usid):
                    r = gw.get(user_path(f, key))
                    assert r.status == 200 and r.json["friendly_name"] == "after", (wf, f, key, r)
        d = a.delete(user_path(wf, ident))
        assert d.status == 204, d
        for gw in (b, a):
            for f in FAMILIES:
                for key in (ident, usid):
                    r = gw.get(user_path(f, key))
                    assert r.status == 404, (wf, f, key, r)


def test_purge_user_on_a_empties_bs_view(gateway_factory, mock, redis):
    a, b = _pair(gateway_factory)
    u = mock.add_user("purged")
    keep = mock.add_user("kept")
    for key in ("purged", u["sid"], "kept"):
        fetch(b, user_path("v1s", key))
        fetch(b, user_path("v1s", key), expect_cache="HIT")
    r = a.admin("/cache/services/%s/users/purged" % SERVICE, method="DELETE")
    assert r.status == 200 and r.json["purged"] == "user", r
    # both its keys went (identity and SID), nothing else did; the SID
    # first: a fetch by identity would put the alias back
    fetch(b, user_path("v1s", u["sid"]), expect_cache="MISS")
    r = a.admin("/cache/services/%s/users/purged" % SERVICE, method="DELETE")
    fetch(b, user_path("v1s", "purged"), expect_cache="MISS")
    fetch(b, user_path("v1s", "kept"), expect_cache="HIT")
    # by SID: both keys go as well
    fetch(b, user_path("v1s", keep["sid"]), expect_cache="HIT")
    r = a.admin("/cache/services/%s/users/%s" % (SERVICE, keep["sid"]), method="DELETE")
    assert r.status == 200, r
    fetch(b, user_path("v1s", "kept"), expect_cache="MISS")
    r = a.admin("/cache/services/%s/users/%s" % (SERVICE, keep["sid"]), method="DELETE")
    fetch(b, user_path("v1s", keep["sid"]), expect_cache="MISS")
    m = a.metrics()
    assert m.get_value("usergate_cache_purges_total") == 4


def test_purge_service_leaves_other_services(gateway_factory, mock, redis):
    a, b = _pair(gateway_factory)
    names = ["svc-user-%d" % i for i in range(30)] + ["odd:name@x.com", "sp ace"]
    for n in names:
        mock.add_user(n)
        fetch(b, user_path("v2", q(n)))
        fetch(b, user_path("v1", q(n)))
    mock.add_user("elsewhere", service=OTHER_SERVICE)
    fetch(b, user_path("v2", "elsewhere", service=OTHER_SERVICE))
    r = a.admin("/cache/services/%s" % SERVICE, method="DELETE")
    assert r.status == 200 and r.json["purged"] == "service", r
    assert r.json["deleted"] >= 2 * len(names), r
    for n in names:
        fetch(b, user_path("v2", q(n)), expect_cache="MISS")
    fetch(b, user_path("v2", "elsewhere", service=OTHER_SERVICE), expect_cache="HIT")
    left = [k for k in redis.keys(KEY_PREFIX + "u:*") if OTHER_SERVICE.encode() in k]
    assert left, "the other service's entry must survive"


def test_purge_routes_refuse_bad_input(gateway):
    for path, status in (("/cache/services/ISnope", 400),
                         ("/cache/services/%s/users/%s" % (SERVICE, "a" * 300), 400),
                         ("/cache/services/%s/users/" % SERVICE, 404),
                         ("/cache/services/%s/groups/x" % SERVICE, 404),
                         ("/cache/everything", 404)):
        r = gateway.admin(path, method="DELETE")
        assert_twilio_error(r, status=status)
    r = gateway.admin("/cache/services/%s" % SERVICE, method="GET")
    assert_twilio_error(r, status=405)


def test_100_concurrent_cold_fetches_make_one_upstream_request(gateway, mock):
    mock.add_user("cold")
    path = user_path("v1s", "cold")
    mock.fail(prefix=path, method="GET", count=1, delay=0.5)
    rs = _burst([(gateway, 100)], path)
    assert len(rs) == 100 and all(r.status == 200 for r in rs), [r for r in rs if r.status != 200]
    assert all(r.json["identity"] == "cold" for r in rs)
    assert len(upstream_fetches(mock, path)) == 1
    m = gateway.metrics()
    assert m.get_value("usergate_cache_lookups_total", route="/v1/Services/{ServiceSid}/Users/{Sid}",
                       result="coalesced") >= 90


def test_cold_fetches_across_two_instances_are_fetched_once(gateway_factory, mock):
    a, b = _pair(gateway_factory)
    for i in range(3):
        ident = "cross-%d" % i
        mock.add_user(ident)
        path = user_path("v2", ident)
        mock.fail(prefix=path, method="GET", count=1, delay=0.4)
        rs = _burst([(a, 50), (b, 50)], path)
        assert len(rs) == 100 and all(r.status == 200 for r in rs)
        assert all(r.json["identity"] == ident for r in rs)
        n = len(upstream_fetches(mock, path))
        assert n == 1, "%d upstream fetches for %s" % (n, ident)
    ma, mb = a.metrics(), b.metrics()
    served = ma.get_value("usergate_cache_lock_total", result="served") + \
        mb.get_value("usergate_cache_lock_total", result="served")
    assert served >= 3


def test_lock_holder_that_died_does_not_make_clients_hang(gateway_factory, mock, redis):
    gw = gateway_factory({"cache": {"lock_timeout_ms": "400"}})
    mock.add_user("orphan")
    # Another instance took the lock and died: nobody will release it.
    lock = user_key("l", "orphan", "v1s")
    redis.cmd("SET", lock, "dead-owner", "PX", "60000")
    t0 = time.monotonic()
    r = gw.get(user_path("v1s", "orphan"))
    waited = time.monotonic() - t0
    assert r.status == 200 and r.json["identity"] == "orphan", r
    assert 0.3 <= waited < 5, waited
    assert redis.cmd("GET", lock) == b"dead-owner"  # not ours to delete
    assert gw.metrics().get_value("usergate_cache_lock_total", result="timeout") == 1


def test_lock_released_by_its_holder_is_taken_over(gateway_factory, mock, redis):
    gw = gateway_factory({"cache": {"lock_timeout_ms": "5000"}})
    mock.add_user("handover")
    lock = user_key("l", "handover", "v2")
    redis.cmd("SET", lock, "other", "PX", "60000")
    box = {}
    t = threading.Thread(target=lambda: box.update(r=gw.get(user_path("v2", "handover"))))
    t.start()
    time.sleep(0.3)
    assert "r" not in box  # waiting for the holder
    redis.cmd("DEL", lock)  # the holder failed (no entry) and let go
    t.join(10)
    assert box["r"].status == 200, box
    assert gw.metrics().get_value("usergate_cache_lock_total", result="acquired") == 1
    time.sleep(0.1)
    assert redis.cmd("EXISTS", lock) == 0  # released after the store
    fetch(gw, user_path("v2", "handover"), expect_cache="HIT")


def test_redis_sigkill_under_load_loses_no_request(gateway_factory, mock, redis):
    gw = gateway_factory({"redis": {"timeout_ms": "100"}})
    idents = ["steady-%d" % i for i in range(5)]
    for n in idents:
        mock.add_user(n)
        fetch(gw, user_path("v1s", n))
    results, stop = [], threading.Event()

    def loop():
        i = 0
        while not stop.is_set():
            r = gw.get(user_path("v1s", idents[i % len(idents)]), timeout=10)
            results.append((time.monotonic(), r.status, r.xcache))
            i += 1

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.7)
    redis.kill()
    killed = time.monotonic()
    time.sleep(1.0)
    redis.start()  # same port, empty
    restarted = time.monotonic()
    wait_until(lambda: any(t > restarted and x == "HIT" for t, _, x in results[-200:]),
               timeout=20, what="hits after the Redis restart")
    stop.set()
    for t in threads:
        t.join(15)
    failed = [r for r in results if r[1] != 200]
    assert not failed, failed[:5]
    assert any(t < killed and x == "HIT" for t, _, x in results)
    assert any(killed < t < restarted for t, _, _ in results), "requests kept flowing while down"
    m = gw.metrics()
    assert m.get_value("usergate_redis_up") == 1
    assert m.get_value("usergate_redis_reconnects_total") >= 1


def test_stalled_redis_opens_the_breaker_then_closes_it(gateway_factory, mock, redis):
    gw = gateway_factory({"redis": {"timeout_ms": "100"}})
    mock.add_user("brk")
    path = user_path("v1", "brk")
    fetch(gw, path, expect_cache="MISS")
    redis.pause()
    try:
        for _ in range(8):
            assert gw.get(path).status == 200
        m = gw.metrics()
        assert m.get_value("usergate_redis_breaker_open") == 1, m.find("usergate_redis_breaker_open")
        assert m.get_value("usergate_redis_breaker_trips_total") == 1
        before = m.get_value("usergate_redis_errors_total", kind="timeout")
        for _ in range(10):  # skipped, not timed out one by one
            assert gw.get(path).status == 200
        after = gw.metrics().get_value("usergate_redis_errors_total", kind="timeout")
        assert after - before <= 1, (before, after)
    finally:
        redis.resume()
    wait_until(lambda: gw.get(path).xcache == "HIT", timeout=20, what="hits after the breaker")
    assert gw.metrics().get_value("usergate_redis_breaker_open") == 0
