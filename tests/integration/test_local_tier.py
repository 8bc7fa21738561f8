"""The local tier ([cache] local_entries): hits answered in process, kept
coherent across instances through Redis pub/sub, emptied when that
subscription is lost, and bounded in size."""

import time

from conftest import (ACCOUNT, FAMILIES, SERVICE, SLOW, TOKEN, fetch, q, user_key, user_path,
                      wait_until)
from twilio_events import signed, user_event

LOCAL = {"cache": {"local_entries": "1000", "local_ttl": "60"},
         "webhooks": {"enabled": "on", "public_url": "https://gw.example.com/twilio/events"}}
# How long after a write was answered another instance may still answer from
# its local tier: the invalidation message's trip through Redis (README).
BOUND_S = 3.0 if SLOW else 0.5


def local_hits(gw):
    return gw.metrics().get_value("usergate_local_hits_total")


def warm(gws, ident):
    paths = [user_path(f, q(ident)) for f in FAMILIES]
    for gw in gws:
        wait_until(lambda: gw.metrics().get_value("usergate_local_up") == 1, timeout=10,
                   what="local tier subscribed")
        for p in paths:
            fetch(gw, p)  # a miss: stored in Redis
            fetch(gw, p)  # a Redis hit: kept in the local tier
        before = local_hits(gw)
        for p in paths:
            fetch(gw, p, expect_cache="HIT")
        assert local_hits(gw) == before + len(paths), "not answered from the local tier"
    return paths


def fresh_within(gw, paths, want, bound):
    """Every path answers `want` within bound seconds, and keeps doing so."""
    t0 = time.monotonic()
    for p in paths:
        while True:
            r = fetch(gw, p)
            if r.json["friendly_name"] == want:
                break
            assert time.monotonic() - t0 < bound, ("stale after %.3f s" % (time.monotonic() - t0),
                                                    p, r)
    for _ in range(3):
        for p in paths:
            assert fetch(gw, p).json["friendly_name"] == want
    return time.monotonic() - t0


def test_write_through_one_evicts_the_other(gateway_factory, mock):
    gws = [gateway_factory(LOCAL), gateway_factory(LOCAL)]
    mock.add_user("ada", friendly_name="v0")
    paths = warm(gws, "ada")
    for i in range(1, 6):
        writer, reader = gws[i % 2], gws[(i + 1) % 2]
        r = writer.post(user_path("v1s", "ada"), {"FriendlyName": "v%d" % i})
        assert r.status == 200, r
        # the writer's own tier forgot it before answering
        for p in paths:
            assert fetch(writer, p).json["friendly_name"] == "v%d" % i
        fresh_within(reader, paths, "v%d" % i, BOUND_S)
    m = gws[0].metrics()
    assert m.get_value("usergate_local_invalidations_total") >= 5
    assert m.get_value("usergate_local_hits_total") > 0


def test_purge_and_event_evict_every_instance(gateway_factory, mock):
    gws = [gateway_factory(LOCAL), gateway_factory(LOCAL)]
    u = mock.add_user("bob", friendly_name="v0")
    paths = warm(gws, "bob")
    # a purge through one instance's admin listener
    mock.outside_update("bob", friendly_name="purged", announce=False)
    r = gws[0].admin("/cache/services/%s" % SERVICE, method="DELETE")
    assert r.status == 200, r
    for gw in gws:
        fresh_within(gw, paths, "purged", BOUND_S)
    warm(gws, "bob")
    # a Twilio event delivered to one instance
    u, _ = mock.outside_update("bob", friendly_name="evented", announce=False)
    ctype, body, params, _ = user_event("conversations", "updated", u, ACCOUNT)
    url, sig = signed(TOKEN, LOCAL["webhooks"]["public_url"], body, params)
    r = gws[1].request("POST", "/twilio/events", body,
                       headers={"Content-Type": ctype, "X-Twilio-Signature": sig}, auth=None)
    assert r.status == 200, r
    for gw in gws:
        fresh_within(gw, paths, "evented", BOUND_S)


def test_lost_subscription_flushes_the_tier(gateway_factory, mock, redis):
    gw = gateway_factory(LOCAL)
    mock.add_user("cy", friendly_name="v0")
    paths = warm([gw], "cy")
    flushes = gw.metrics().get_value("usergate_local_flushes_total")
    # The user changes and its Redis version goes, with no message (as if
    # the message had been published while the subscription was down).
    redis.cmd("CLIENT", "KILL", "TYPE", "pubsub")
    mock.outside_update("cy", friendly_name="v1", announce=False)
    redis.cmd("DEL", user_key("v", "cy"))
    # No answer from the tier it had: it was emptied when the connection went.
    for p in paths:
        r = fetch(gw, p)
        assert r.json["friendly_name"] == "v1", (p, r)
    m = gw.metrics()
    assert m.get_value("usergate_local_flushes_total") > flushes
    # it comes back by itself
    wait_until(lambda: gw.metrics().get_value("usergate_local_up") == 1, timeout=10,
               what="resubscribed")
    warm([gw], "cy")


def test_the_tier_is_bounded(gateway_factory, mock):
    gw = gateway_factory({"cache": {"local_entries": "20"}})
    wait_until(lambda: gw.metrics().get_value("usergate_local_up") == 1, timeout=10,
               what="local tier subscribed")
    for i in range(100):
        mock.add_user("u%d" % i)
        for _ in range(3):
            fetch(gw, user_path("v2", "u%d" % i))
    m = gw.metrics()
    assert 0 < m.get_value("usergate_local_entries") <= 20, m.find("usergate_local_entries")
    # the most recent ones are still served locally
    before = local_hits(gw)
    fetch(gw, user_path("v2", "u99"), expect_cache="HIT")
    assert local_hits(gw) == before + 1


def test_off_by_default(gateway_factory, mock):
    gw = gateway_factory()
    mock.add_user("dee")
    for _ in range(3):
        fetch(gw, user_path("v1", "dee"))
    m = gw.metrics()
    assert m.get_value("usergate_local_hits_total") == 0
    assert m.get_value("usergate_local_up") == 0


def test_reload_keeps_the_tier_coherent(gateway_factory, mock):
    import signal
    gws = [gateway_factory(LOCAL), gateway_factory(LOCAL)]
    mock.add_user("eve", friendly_name="v0")
    paths = warm(gws, "eve")
    for gw in gws:
        gw.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "configuration reloaded" in gw.stderr(), what="reload")
    r = gws[0].post(user_path("v2", "eve"), {"FriendlyName": "v1"})
    assert r.status == 200, r
    fresh_within(gws[1], paths, "v1", BOUND_S)


def test_subscribe_refused_is_said_and_the_tier_stays_off(gateway_factory, mock, redis):
    """An ACL user that may not use the invalidation channel: Redis refuses
    the SUBSCRIBE with NOPERM. usergate says so once (then at debug level
    while it retries with back-off), keeps the tier off and keeps serving."""
    assert redis.cmd("ACL", "SETUSER", "nochan", "on", ">nochan-secret-1", "~*", "+@all",
                     "resetchannels") == "OK"
    gw = gateway_factory(dict(LOCAL, redis={"username": "nochan",
                                            "password": "nochan-secret-1"}))
    wait_until(lambda: "NOPERM" in gw.stderr(), timeout=10,
               what="the refused subscription reported")
    mock.add_user("ann", friendly_name="v0")
    path = user_path("v1s", "ann")
    for _ in range(3):
        assert fetch(gw, path).status == 200
    m = gw.metrics()
    assert m.get_value("usergate_local_up") == 0
    assert m.get_value("usergate_local_hits_total") == 0
    time.sleep(2)  # it goes on retrying; the warning is not repeated
    warnings = [l for l in gw.stderr().splitlines() if "NOPERM" in l and " warning " in l]
    assert len(warnings) == 1, warnings
    assert "nochan-secret-1" not in gw.stderr()
