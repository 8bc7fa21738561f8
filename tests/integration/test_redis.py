"""Redis is an accelerator, not a dependency: down, stalled or absent at start,
requests are still answered from upstream; when it returns, hits resume."""

import time

from conftest import fetch, upstream_fetches, user_path, users_path, wait_until


def redis_up(gw):
    return gw.metrics().get_value("usergate_redis_up", default=None)


def hits_resume(gw, path, timeout=12):
    def hit():
        r = gw.get(path)
        assert r.status == 200, r
        return r.xcache == "HIT"
    wait_until(hit, timeout=timeout, interval=0.2, what="X-Cache: HIT after Redis came back")


def test_redis_down_then_back(gateway, mock, redis):
    mock.add_user("alice")
    path = user_path("v1s", "alice")
    fetch(gateway, path, 200, "MISS")
    fetch(gateway, path, 200, "HIT")
    assert gateway.admin("/readyz").status == 200
    assert redis_up(gateway) == 1

    redis.stop()
    before = len(upstream_fetches(mock, path))
    for _ in range(5):
        t = time.monotonic()
        r = gateway.get(path)
        assert r.status == 200 and r.json["identity"] == "alice", r
        assert r.xcache in ("MISS", "BYPASS"), r
        assert time.monotonic() - t < 2.0, "slow answer with Redis down"
    assert len(upstream_fetches(mock, path)) == before + 5
    # writes still work (invalidation fails open) and so do 404s
    c = gateway.post(users_path("v1s"), {"Identity": "bert"})
    assert c.status == 201, c
    assert gateway.get(user_path("v1s", "nobody")).status == 404

    def not_ready():
        r = gateway.admin("/readyz")
        return r if r.status == 503 else None
    r = wait_until(not_ready, timeout=6, what="/readyz 503 with Redis down")
    assert isinstance(r.json, dict) and r.json, r
    wait_until(lambda: redis_up(gateway) == 0, timeout=6, what="usergate_redis_up 0")
    assert gateway.admin("/healthz").status == 200

    redis.start()
    hits_resume(gateway, path)
    wait_until(lambda: redis_up(gateway) == 1, timeout=6, what="usergate_redis_up 1")
    wait_until(lambda: gateway.admin("/readyz").status == 200, timeout=6, what="/readyz 200")
    # after the outage the create of bert is visible (no stale negative)
    r = gateway.get(user_path("v1s", "bert"))
    assert r.status == 200, r


def test_redis_stalled_fails_open_quickly(gateway_factory, mock, redis):
    gw = gateway_factory(overrides={"redis": {"timeout_ms": "200"}})
    mock.add_user("carl")
    path = user_path("v2", "carl")
    fetch(gw, path, 200, "MISS")
    fetch(gw, path, 200, "HIT")
    redis.pause()
    try:
        for _ in range(3):
            t = time.monotonic()
            r = gw.get(path, timeout=10)
            took = time.monotonic() - t
            assert r.status == 200 and r.json["identity"] == "carl", r
            assert r.xcache in ("MISS", "BYPASS"), r
            assert took < 2.0, "%.2fs with a stalled Redis and timeout_ms = 200" % took
        m = gw.metrics()
        errs = sum(m.find("usergate_cache_lookups_total", result="error").values()) + \
            sum(m.find("usergate_cache_lookups_total", result="bypass").values())
        assert errs >= 1, "no error/bypass lookups counted while Redis stalled"
    finally:
        redis.resume()
    hits_resume(gw, path)


def test_redis_absent_at_start(gateway_factory, mock, redis):
    redis.stop()
    gw = gateway_factory()
    mock.add_user("dina")
    path = user_path("v1", "dina")
    r = gw.get(path)
    assert r.status == 200 and r.xcache in ("MISS", "BYPASS"), r
    assert gw.admin("/readyz").status == 503
    assert gw.admin("/healthz").status == 200
    redis.start()
    hits_resume(gw, path)
    wait_until(lambda: gw.admin("/readyz").status == 200, timeout=6, what="/readyz 200")
