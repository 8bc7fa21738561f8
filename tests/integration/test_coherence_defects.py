"""One focused regression test per coherence defect of issue 10, each of
which failed on the build before per-user versions (the history checker
found the same classes at random; these pin each one down)."""

import threading
import time

import pytest

from conftest import (ACCOUNT, CLIENT, KEY_PREFIX, OTHER_SERVICE, SERVICE, RawConn, basic, fetch,
                      user_key, user_path, users_path, wait_until)


def old_key(kind, name, family=None):
    """The key layout before per-user hash tags, so these tests reproduce
    their defects on the old build too (harmless for the current one)."""
    mid = "%s:%s:" % (family, SERVICE) if family else "%s:" % SERVICE
    return "%s%s:%s:%s%s" % (KEY_PREFIX, kind, ACCOUNT, mid, name)


def put(gw, path, **form):
    r = gw.post(path, form)
    assert r.status in (200, 201), r
    return r.json


# 1. A request that joins a stale-while-revalidate refresh, which then finds
#    the cross-instance lock held, was never answered (and its disconnect
#    read freed memory).
def test_1_joining_a_background_refresh_never_hangs(gateway_factory, mock, redis):
    gw = gateway_factory({"cache": {"ttl": "1", "stale_while_revalidate": "60",
                                    "lock_timeout_ms": "500"}})
    mock.add_user("stalest")
    fetch(gw, user_path("v2", "stalest"), 200, "MISS")
    time.sleep(1.2)  # stale now
    # Another instance holds the lock and never finishes.
    for lock in (user_key("l", "stalest", "v2"), old_key("l", "stalest", "v2")):
        redis.cmd("SET", lock, "someone-else", "PX", "60000")
    # Pipelined: the first starts a background refresh (STALE), the second
    # (no-cache) must not wait on that refresh.
    c = RawConn(gw.port, timeout=8)
    req = "GET %s HTTP/1.1\r\nHost: a\r\nAuthorization: %s\r\n%s\r\n"
    c.send(req % (user_path("v2", "stalest"), basic(*CLIENT), "")
           + req % (user_path("v2", "stalest"), basic(*CLIENT), "Cache-Control: no-cache\r\n"))
    t0 = time.monotonic()
    s1, h1, _, _ = c.response()
    s2, h2, _, _ = c.response()
    took = time.monotonic() - t0
    c.close()
    assert (s1, h1.get("x-cache")) == (200, "STALE"), h1
    assert s2 == 200, h2
    assert took < 3, took  # lock_timeout_ms, not forever


# 2. A fetch that starts after a write was answered could join a fetch that
#    started before it, and get the pre-write user (or a 404 after a 201).
def test_2_a_fetch_after_a_write_never_joins_an_older_fetch(gateway, mock):
    mock.add_user("joiner", friendly_name="before")
    path = user_path("v1s", "joiner")
    mock.fail(prefix=path, method="GET", delay_after=1.0, count=1)  # slow, pre-write answer
    box = {}
    t = threading.Thread(target=lambda: box.update(r=gateway.get(path)))
    t.start()
    time.sleep(0.3)
    put(gateway, path, FriendlyName="after")
    r = gateway.get(path)  # began after the write was answered
    t.join(10)
    assert box["r"].json["friendly_name"] == "before"
    assert r.status == 200 and r.json["friendly_name"] == "after", r


def test_2b_no_404_after_a_201(gateway, mock):
    path = user_path("v2", "newcomer")
    mock.fail(prefix=path, method="GET", delay_after=1.0, count=1)
    box = {}
    t = threading.Thread(target=lambda: box.update(r=gateway.get(path)))
    t.start()
    time.sleep(0.3)
    assert gateway.post(users_path("v2"), {"Identity": "newcomer"}).status == 201
    r = gateway.get(path)
    t.join(10)
    assert box["r"].status == 404
    assert r.status == 200, r


# 2c. The same, found by the history checker in the first per-user design: a
#     fetch by a SID whose alias is not cached has no version to compare, so
#     it joined a fetch that began before a delete (by identity) was answered.
def test_2c_no_version_no_joining_a_fetch_already_upstream(gateway, mock):
    u = mock.add_user("unaliased", friendly_name="before")
    path = user_path("v2", u["sid"])  # never fetched: no alias
    mock.fail(prefix=path, method="GET", delay_after=1.0, count=1)
    box = {}
    t = threading.Thread(target=lambda: box.update(r=gateway.get(path)))
    t.start()
    time.sleep(0.3)
    assert gateway.delete(user_path("v1s", "unaliased")).status == 204
    r = gateway.get(path)
    t.join(10)
    assert box["r"].status == 200
    assert r.status == 404, r


# 3. After a Redis restart, a fetch that began before it could store a user
#    deleted meanwhile (its lookup saw no invalidation state, and after the
#    restart there was none either), then serve it as a HIT.
def test_3_redis_restart_cannot_bring_a_deleted_user_back(gateway, mock, redis):
    mock.add_user("phoenix")
    path = user_path("v1s", "phoenix")
    mock.fail(prefix=path, method="GET", delay_after=1.5, count=1)  # answer fetched pre-delete
    box = {}
    t = threading.Thread(target=lambda: box.update(r=gateway.get(path, timeout=10)))
    t.start()
    time.sleep(0.3)
    assert gateway.delete(path).status == 204
    redis.kill()
    redis.start()
    wait_until(lambda: gateway.metrics().get_value("usergate_redis_up") == 1, timeout=10,
               what="redis back")
    t.join(10)
    assert box["r"].status == 200  # the slow fetch itself began before the delete
    time.sleep(0.2)
    for fam in ("v1s", "v2", "v1"):
        r = gateway.get(user_path(fam, "phoenix"))
        assert r.status == 404, (fam, r)


# 4. A create whose answer the parser refuses (\u0000 inside Attributes) did
#    not clear the cached 404s of that identity.
def test_4_create_with_an_unparseable_answer_still_invalidates(gateway, mock):
    path = user_path("v1s", "nully")
    fetch(gateway, path, 404, "MISS")
    fetch(gateway, path, 404, "HIT")
    r = gateway.post(users_path("v1s"), {"Identity": "nully", "Attributes": '{"a":"\\u0000"}'})
    assert r.status == 201, r
    r = gateway.get(path)
    assert r.status == 200, r


# 5. The SID alias could expire before an entry it leads to (each family's
#    store rewrote it with its own jittered TTL): a DELETE by SID (204, no
#    body) then missed the identity's entries.
def test_5_alias_outlives_every_entry(gateway_factory, mock, redis):
    gw = gateway_factory({"cache": {"ttl": "100", "stale_while_revalidate": "0",
                                    "stale_if_error": "0"}})
    u = mock.add_user("aliased")
    for i in range(8):  # many stores, each with its own jitter
        for fam in ("v1s", "v2", "v1"):
            gw.get(user_path(fam, "aliased"), headers={"Cache-Control": "no-cache"})
        time.sleep(0.02)
    alias = redis.cmd("PTTL", user_key("a", u["sid"]))
    entries = [redis.cmd("PTTL", user_key("u", "aliased", fam)) for fam in ("v1", "v1s", "v2")]
    assert all(e > 0 for e in entries), entries
    assert alias >= max(entries) - 50, (alias, entries)


def test_5b_delete_by_sid_without_an_alias_still_invalidates(gateway, mock, redis):
    u = mock.add_user("orphaned")
    fetch(gateway, user_path("v1s", "orphaned"), 200, "MISS")
    fetch(gateway, user_path("v1s", "orphaned"), 200, "HIT")
    for alias in (user_key("a", u["sid"]), old_key("a", u["sid"])):
        redis.cmd("DEL", alias)  # evicted, expired: gone
    assert gateway.delete(user_path("v2", u["sid"])).status == 204
    r = gateway.get(user_path("v1s", "orphaned"))
    assert r.status == 404, r


# 6. A write whose outcome was unknown (gateway timeout) that Twilio applied
#    later was invalidated only once: a fetch in between re-cached the
#    pre-write user for a whole TTL.
def test_6_unknown_outcome_holds_the_user_uncacheable(gateway_factory, mock):
    gw = gateway_factory({"upstream": {"timeout_ms": "500", "max_retries": "0"}})
    mock.add_user("limbo", friendly_name="before")
    path = user_path("v1s", "limbo")
    fetch(gw, path, 200, "MISS")
    mock.fail(prefix=path, method="POST", delay=1.2, count=1)  # applied after we gave up
    r = gw.post(path, {"FriendlyName": "after"})
    assert r.status == 504, r
    r = gw.get(path)  # before Twilio applied it: the old user, and not stored
    assert r.json["friendly_name"] == "before" and r.xcache == "MISS", r
    time.sleep(1.2)  # applied now
    for fam in ("v1s", "v2", "v1"):
        r = gw.get(user_path(fam, "limbo"))
        assert r.json["friendly_name"] == "after", (fam, r)


def test_6b_the_hold_ends_with_a_second_invalidation(gateway_factory, mock, redis):
    gw = gateway_factory({"upstream": {"timeout_ms": "500", "max_retries": "0"},
                          "cache": {"unknown_write_hold_ms": "1500"}})
    mock.add_user("limbo2", friendly_name="before")
    path = user_path("v1s", "limbo2")
    mock.fail(prefix=path, method="POST", delay=1.0, count=1)
    assert gw.post(path, {"FriendlyName": "after"}).status == 504
    assert redis.cmd("EXISTS", user_key("h", "limbo2")) == 1  # held
    version = redis.cmd("GET", user_key("v", "limbo2"))
    time.sleep(2.0)  # Twilio applied it; the hold is over
    assert redis.cmd("EXISTS", user_key("h", "limbo2")) == 0
    assert redis.cmd("GET", user_key("v", "limbo2")) != version  # invalidated again
    fetch(gw, path, 200, "MISS")
    r = fetch(gw, path, 200, "HIT")
    assert r.json["friendly_name"] == "after", r


# 7. /v1/Users stored under the configured default service but invalidated
#    under the body's chat_service_sid: when they differed, a write left the
#    old user cached.
def test_7_default_service_disagreement_still_invalidates(gateway_factory, mock):
    # Configured default: OTHER_SERVICE; Twilio's real default (the mock's): SERVICE.
    gw = gateway_factory({"upstream": {"default_service_sid": OTHER_SERVICE}})
    mock.add_user("misrouted", friendly_name="before")
    fetch(gw, user_path("v1", "misrouted"), 200, "MISS")
    fetch(gw, user_path("v1", "misrouted"), 200, "HIT")
    put(gw, user_path("v1", "misrouted"), FriendlyName="after")
    r = gw.get(user_path("v1", "misrouted"))
    assert r.json["friendly_name"] == "after", r
    assert gw.metrics().get_value("usergate_default_service_mismatch_total") >= 1


# 8. Invalidations lost: one that could not reach Redis (the breaker open,
#    Redis failing) was only logged, so another instance kept serving the
#    pre-write user.
def trip_breaker(gw, redis, path):
    """Stall Redis until gw's breaker opens (three failed commands), then let
    Redis go: gw skips it for a while, the other instance does not."""
    redis.pause()
    try:
        for _ in range(4):
            gw.get(path)
        wait_until(lambda: gw.metrics().get_value("usergate_redis_breaker_open") == 1,
                   timeout=5, what="the breaker to open")
    finally:
        redis.resume()


def test_8_an_invalidation_that_could_not_reach_redis_is_retried(gateway_factory, mock, redis):
    a = gateway_factory({"redis": {"timeout_ms": "100"}})
    b = gateway_factory({"redis": {"timeout_ms": "100"}})
    mock.add_user("retried", friendly_name="before")
    path = user_path("v1s", "retried")
    fetch(b, path, 200, "MISS")
    fetch(b, path, 200, "HIT")
    trip_breaker(a, redis, user_path("v2", "someone"))
    r = a.post(path, {"FriendlyName": "after"})  # its invalidation cannot be sent now
    assert r.status == 200, r
    assert a.get(path).json["friendly_name"] == "after"  # a does not trust its cache for it
    # Invalidations go past an open breaker: it lands as soon as Redis answers.
    wait_until(lambda: a.metrics().get_value("usergate_invalidations_pending") == 0,
               timeout=15, what="the invalidation to land")
    r = b.get(path)
    assert r.json["friendly_name"] == "after", r


def test_8b_a_full_queue_drops_and_counts(gateway_factory, mock, redis):
    a = gateway_factory({"redis": {"timeout_ms": "100"}, "cache": {"invalidation_queue": "0"}})
    mock.add_user("dropped")
    trip_breaker(a, redis, user_path("v2", "someone"))
    assert a.post(user_path("v1s", "dropped"), {"FriendlyName": "x"}).status == 200
    assert a.metrics().get_value("usergate_invalidations_dropped_total") == 1


# Lost invalidations, the eviction kind: README's recommended policies evict
# any usergate key under memory pressure without breaking read-your-writes
# (an evicted version invalidates its entries; an evicted alias only costs
# a lookup). A filler keeps Redis evicting while writes on one instance are
# read back through the other.
@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl"])
def test_read_your_writes_under_eviction(gateway_factory, mock, redis, policy):
    a = gateway_factory()
    b = gateway_factory()
    redis.cmd("CONFIG", "SET", "maxmemory", "4mb")
    redis.cmd("CONFIG", "SET", "maxmemory-policy", policy)
    names = ["ev%d" % i for i in range(25)]
    for n in names:
        mock.add_user(n, friendly_name="v0")
    stop = threading.Event()

    def filler():
        i = 0
        while not stop.is_set():
            try:  # volatile-ttl only evicts keys with a TTL: give the junk one too
                redis.cmd("SET", "junk:%d" % i, "x" * 20000, "PX", "600000")
            except Exception:  # noqa: BLE001 - an OOM refusal is fine here
                pass
            i += 1

    t = threading.Thread(target=filler, daemon=True)
    t.start()
    stale = []
    try:
        for rnd in range(1, 4):
            for n in names:
                for gw in (a, b):  # cache it on both
                    gw.get(user_path("v1s", n))
                    gw.get(user_path("v2", n))
            for n in names:
                assert a.post(user_path("v1s", n), {"FriendlyName": "v%d" % rnd}).status == 200
                for gw, fam in ((b, "v2"), (b, "v1s"), (a, "v2"), (b, "v1")):
                    r = gw.get(user_path(fam, n))
                    if r.json["friendly_name"] != "v%d" % rnd:
                        stale.append((rnd, n, fam, r.xcache, r.json["friendly_name"]))
    finally:
        stop.set()
        t.join(5)
    info = redis.cmd("INFO", "stats").decode()
    evicted = int(info.split("evicted_keys:")[1].split()[0])
    assert evicted > 100, info
    assert not stale, stale[:5]


# ... and the concurrent kind: a fetch in flight across a write, while memory
# pressure evicts the coherence state (old: tombstones, shortest TTL first;
# now: versions, holds). Eviction is played deterministically here: every
# key but the entries themselves goes.
def test_8c_coherence_state_evicted_under_a_fetch_in_flight(gateway, mock, redis):
    mock.add_user("evicted", friendly_name="before")
    path = user_path("v1s", "evicted")
    mock.fail(prefix=path, method="GET", delay_after=1.0, count=1)  # answers the pre-write user
    box = {}
    t = threading.Thread(target=lambda: box.update(r=gateway.get(path)))
    t.start()
    time.sleep(0.3)
    assert gateway.post(path, {"FriendlyName": "after"}).status == 200
    for k in redis.keys("*"):
        if not k.startswith((KEY_PREFIX + "u:").encode()):
            redis.cmd("DEL", k)
    t.join(10)
    assert box["r"].json["friendly_name"] == "before"
    time.sleep(0.1)
    r = gateway.get(path)
    assert r.json["friendly_name"] == "after", r
