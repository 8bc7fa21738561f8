"""Redis Sentinel ([redis] sentinels, master_name): the primary is found
through the sentinels, followed through a failover (ordered with SENTINEL
FAILOVER, or forced by SIGKILL of the primary) with no failed client request,
and hits resume on the new primary within a stated bound."""

import re
import signal
import threading
import time

import pytest

from conftest import (KEY_PREFIX, SENTINEL_MASTER as NAME, SLOW, closed_port, fetch,
                      render_config, user_key, user_path, wait_until)

# From the moment the sentinels name the new primary until both gateways
# answer hits from it. Their down-after is 1 s; usergate follows
# +switch-master at once and otherwise asks again at its next reconnect
# (backoff at most 5 s).
SWITCH_BOUND_S = 40.0 if SLOW else 10.0
# The same when usergate hears no +switch-master: it learns of the failover
# only when the sentinels demote the old primary (they reconfigure it within
# their 10 s INFO period, closing its clients) or a write meets READONLY.
UNHEARD_BOUND_S = 80.0 if SLOW else 30.0
# From SIGKILL of the primary until the sentinels name another.
FAILOVER_BOUND_S = 60.0 if SLOW else 30.0


def sentinel_sections(sentinels, password=None, sentinel_password=None):
    redis = {"sentinels": sentinels.addresses(), "master_name": NAME,
             # Unused with sentinels: a closed port proves nothing goes there.
             "address": "127.0.0.1:%d" % closed_port()}
    if password:
        redis["password"] = password
    if sentinel_password:
        redis["sentinel_password"] = sentinel_password
    return {"redis": redis}


class Loop:
    """Client threads fetching through every gateway until stopped; every
    answer that is not a 200 is a client-visible error."""

    def __init__(self, gws, paths):
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.count, self.failures, self.caches = 0, [], {}
        self.threads = [threading.Thread(target=self.run, args=(gw, paths), daemon=True)
                        for gw in gws for _ in range(2)]
        for t in self.threads:
            t.start()

    def run(self, gw, paths):
        i = 0
        while not self.stop_ev.is_set():
            p = paths[i % len(paths)]
            i += 1
            try:
                r = gw.get(p, timeout=10)
                bad = None if r.status == 200 else (r.status, r.text[:200])
                cache = r.header("X-Cache")
            except OSError as e:
                bad, cache = repr(e), None
            with self.lock:
                self.count += 1
                self.caches[cache] = self.caches.get(cache, 0) + 1
                if bad:
                    self.failures.append((p, bad))

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(30)
        return self.count, self.failures


def mget_calls(node):
    info = node.cmd("INFO", "commandstats")
    m = re.search(rb"cmdstat_mget:calls=(\d+)", info)
    return int(m.group(1)) if m else 0


def hits_from(gws, path, new, old=None):
    """Each gateway answers a hit with exactly one MGET on `new` and none on
    `old` (a hit by identity is one MGET)."""
    for gw in gws:
        for node in (new, old):
            if node is not None:
                node.cmd("CONFIG", "RESETSTAT")
        if fetch(gw, path).xcache != "HIT":
            return False
        if mget_calls(new) != 1 or (old is not None and mget_calls(old) != 0):
            return False
    return True


def writes_invalidate_both(gws, ident, tag):
    """A write through one gateway is never followed by a stale read through
    the other."""
    for i, (writer, reader) in enumerate(((gws[0], gws[1]), (gws[1], gws[0]))):
        name = "%s-%d" % (tag, i)
        r = writer.post(user_path("v1s", ident), {"FriendlyName": name})
        assert r.status == 200, r
        for f in ("v1s", "v1", "v2"):
            assert fetch(reader, user_path(f, ident)).json["friendly_name"] == name


def setup_gateways(gateway_factory, mock, sentinels, **kw):
    gws = [gateway_factory(sentinel_sections(sentinels, **kw)) for _ in range(2)]
    mock.add_user("ada", friendly_name="v0")
    paths = [user_path(f, "ada") for f in ("v1s", "v1", "v2")]
    for gw in gws:
        wait_until(lambda: gw.metrics().get_value("usergate_redis_up") == 1, timeout=15,
                   what="usergate connected to the primary the sentinels named")
        for p in paths:
            fetch(gw, p)
            fetch(gw, p, expect_cache="HIT")
    return gws, paths


def follow(gws, paths, new, old, t_named):
    wait_until(lambda: hits_from(gws, paths[0], new, old), timeout=SWITCH_BOUND_S, interval=0.2,
               what="hits from the new primary")
    return time.monotonic() - t_named


def test_found_through_the_sentinels(gateway_factory, mock, sentinel_set):
    primary, replica, sentinels = sentinel_set
    gws, paths = setup_gateways(gateway_factory, mock, sentinels)
    assert hits_from(gws, paths[0], primary, replica)
    for gw in gws:
        assert "primary of %s from sentinels" % NAME in gw.stderr()
    writes_invalidate_both(gws, "ada", "before")


def test_sentinel_failover_under_load(gateway_factory, mock, sentinel_set):
    primary, replica, sentinels = sentinel_set
    gws, paths = setup_gateways(gateway_factory, mock, sentinels)
    loop = Loop(gws, paths)
    time.sleep(0.5)
    assert sentinels.cmd(0, "SENTINEL", "FAILOVER", NAME) == "OK"
    wait_until(lambda: sentinels.primary_port() == replica.port, timeout=FAILOVER_BOUND_S,
               interval=0.1, what="the sentinels promote the replica")
    t_named = time.monotonic()
    time.sleep(1.0)  # the loop keeps running across the switch
    count, failures = loop.stop()
    assert failures == [], failures[:5]
    assert count > 50, count
    took = follow(gws, paths, replica, primary, t_named)
    print("hits from the new primary: checked %.2f s after the sentinels named it" % took)
    writes_invalidate_both(gws, "ada", "after")
    for gw in gws:
        assert "+switch-master" in gw.stderr() or "ROLE says" in gw.stderr() or \
            "READONLY" in gw.stderr() or "asking the sentinels" in gw.stderr(), gw.stderr()[-3000:]


def test_primary_killed_under_load(gateway_factory, mock, sentinel_set):
    primary, replica, sentinels = sentinel_set
    gws, paths = setup_gateways(gateway_factory, mock, sentinels)
    loop = Loop(gws, paths)
    time.sleep(0.5)
    primary.kill()
    try:
        wait_until(lambda: sentinels.primary_port() == replica.port, timeout=FAILOVER_BOUND_S,
                   interval=0.1, what="the sentinels promote the replica")
    except BaseException:
        print(sentinels.logs())
        raise
    t_named = time.monotonic()
    time.sleep(1.0)
    count, failures = loop.stop()
    assert failures == [], failures[:5]  # fail open while Redis was gone
    assert count > 50, count
    took = follow(gws, paths, replica, None, t_named)
    print("hits from the new primary: checked %.2f s after the sentinels named it" % took)
    writes_invalidate_both(gws, "ada", "after")


def test_failover_replays_recent_invalidations(gateway_factory, mock, sentinel_set):
    """Replication is asynchronous: an invalidation the old primary took may
    never reach the replica that replaces it. So each gateway sends its recent
    invalidations again to the new primary: the version of a user written
    just before the failover is replaced once more there, and only there,
    by the gateway that wrote it."""
    primary, replica, sentinels = sentinel_set
    gws, paths = setup_gateways(gateway_factory, mock, sentinels)
    mock.add_user("bob", friendly_name="b0")
    for p in (user_path("v1s", "bob"), user_path("v2", "bob")):
        fetch(gws[1], p)
    assert gws[0].post(user_path("v1s", "ada"), {"FriendlyName": "v1"}).status == 200
    vkey = user_key("v", "ada")
    wait_until(lambda: replica.cmd("GET", vkey) == primary.cmd("GET", vkey), timeout=5,
               what="the replica has the write's version")
    before = replica.cmd("GET", vkey)
    bob_before = replica.cmd("GET", user_key("v", "bob"))
    assert before and bob_before
    assert sentinels.cmd(0, "SENTINEL", "FAILOVER", NAME) == "OK"
    wait_until(lambda: replica.cmd("GET", vkey) != before, timeout=SWITCH_BOUND_S,
               what="ada's invalidation replayed on the new primary")
    m0, m1 = gws[0].metrics(), gws[1].metrics()
    assert m0.get_value("usergate_invalidations_replayed_total") >= 1
    assert m0.get_value("usergate_redis_primary_changes_total") >= 1
    assert m1.get_value("usergate_redis_primary_changes_total") >= 1
    # gateway 1 wrote nothing: it replays nothing, and bob (only read) keeps
    # his version.
    assert m1.get_value("usergate_invalidations_replayed_total") == 0
    assert replica.cmd("GET", user_key("v", "bob")) == bob_before
    assert "sending 1 invalidation of the last 60 s again" in gws[0].stderr()
    writes_invalidate_both(gws, "ada", "after")


@pytest.mark.parametrize("sentinel_set", [True], indirect=True)
def test_auth_for_sentinels_and_data_nodes(gateway_factory, mock, sentinel_set):
    primary, replica, sentinels = sentinel_set
    gws, paths = setup_gateways(gateway_factory, mock, sentinels, password="data-secret-1",
                                sentinel_password="sentinel-secret-1")
    assert hits_from(gws, paths[0], primary, replica)
    # A wrong sentinel password: said in the log, without the secret, and
    # requests still answered (from Twilio) while no primary is known.
    bad = gateway_factory(sentinel_sections(sentinels, password="data-secret-1",
                                            sentinel_password="wrong-secret-9"))
    wait_until(lambda: "AUTH failed" in bad.stderr(), timeout=10, what="the AUTH failure logged")
    assert "wrong-secret-9" not in bad.stderr()
    assert bad.metrics().get_value("usergate_redis_up") == 0
    r = fetch(bad, paths[0])
    assert r.json["identity"] == "ada" and r.xcache != "HIT"


CHANNEL = KEY_PREFIX + "invalidations"
LOCAL = {"cache": {"local_entries": "1000", "local_ttl": "60"}}
LOCAL_BOUND_S = 3.0 if SLOW else 0.5  # as in test_local_tier.py


def warm_local(gw, paths):
    wait_until(lambda: gw.metrics().get_value("usergate_local_up") == 1, timeout=SWITCH_BOUND_S,
               what="local tier subscribed")
    for p in paths:
        fetch(gw, p)
        fetch(gw, p)
    before = gw.metrics().get_value("usergate_local_hits_total")
    for p in paths:
        fetch(gw, p, expect_cache="HIT")
    assert gw.metrics().get_value("usergate_local_hits_total") == before + len(paths)


def read_fresh(gw, paths, want, bound):
    t0 = time.monotonic()
    for p in paths:
        while fetch(gw, p).json["friendly_name"] != want:
            assert time.monotonic() - t0 < bound, ("stale", p)


def test_local_tier_through_a_failover(gateway_factory, mock, sentinel_set):
    """The local tier's subscription follows the primary too: emptied when the
    old one goes, back on the new one, and coherent there."""
    primary, replica, sentinels = sentinel_set
    sections = dict(sentinel_sections(sentinels), **LOCAL)
    gws = [gateway_factory(sections) for _ in range(2)]
    mock.add_user("ada", friendly_name="v0")
    paths = [user_path(f, "ada") for f in ("v1s", "v1", "v2")]
    for gw in gws:
        warm_local(gw, paths)
    flushes = [gw.metrics().get_value("usergate_local_flushes_total") for gw in gws]
    assert sentinels.cmd(0, "SENTINEL", "FAILOVER", NAME) == "OK"
    wait_until(lambda: sentinels.primary_port() == replica.port, timeout=FAILOVER_BOUND_S,
               what="the sentinels promote the replica")
    for gw, before in zip(gws, flushes):
        wait_until(lambda: gw.metrics().get_value("usergate_local_flushes_total") > before,
                   timeout=SWITCH_BOUND_S, what="the local tier emptied with the old primary")
        warm_local(gw, paths)
    subscribers = replica.cmd("PUBSUB", "NUMSUB", CHANNEL)
    assert subscribers[1] == 2, subscribers  # both instances listen on the new primary
    for i in range(1, 4):
        writer, reader = gws[i % 2], gws[(i + 1) % 2]
        assert writer.post(user_path("v1s", "ada"), {"FriendlyName": "v%d" % i}).status == 200
        read_fresh(reader, paths, "v%d" % i, LOCAL_BOUND_S)


def test_reload_moves_between_address_and_sentinels(gateway_factory, mock, redis, sentinel_set):
    """SIGHUP from a plain address to sentinels and back: both connections
    (requests and the local tier's subscription) move."""
    primary, replica, sentinels = sentinel_set
    gw = gateway_factory(LOCAL)
    ref = gateway_factory(sentinel_sections(sentinels))
    mock.add_user("ada", friendly_name="v0")
    paths = [user_path(f, "ada") for f in ("v1s", "v1", "v2")]
    warm_local(gw, paths)
    assert primary.cmd("PUBSUB", "NUMSUB", CHANNEL)[1] == 0

    def reload(redis_section):
        sections = gw.sections
        sections["redis"] = dict(sections["redis"], **redis_section)
        for k, v in list(sections["redis"].items()):
            if v is None:
                del sections["redis"][k]
        with open(gw.conf, "w") as f:
            f.write(render_config(sections))
        n = gw.stderr().count("configuration reloaded")
        gw.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: gw.stderr().count("configuration reloaded") > n, what="reload")

    reload({"sentinels": sentinels.addresses(), "master_name": NAME})
    wait_until(lambda: primary.cmd("PUBSUB", "NUMSUB", CHANNEL)[1] == 1,
               timeout=SWITCH_BOUND_S, what="the subscription moved to the sentinels' primary")
    warm_local(gw, paths)
    assert ref.post(user_path("v2", "ada"), {"FriendlyName": "v1"}).status == 200
    read_fresh(gw, paths, "v1", LOCAL_BOUND_S)
    assert hits_from([ref], paths[0], primary, redis)

    reload({"sentinels": None, "master_name": None})
    wait_until(lambda: redis.cmd("PUBSUB", "NUMSUB", CHANNEL)[1] == 1,
               timeout=SWITCH_BOUND_S, what="the subscription moved back")
    assert primary.cmd("PUBSUB", "NUMSUB", CHANNEL)[1] == 0
    warm_local(gw, paths)


def test_failover_unheard_by_the_watched_sentinel(gateway_factory, mock, sentinel_set):
    """The sentinel usergate watches is frozen (SIGSTOP) through a failover, so
    no +switch-master reaches it: usergate still finds the new primary (its
    connection to the demoted node is closed or answers READONLY, the frozen
    sentinel misses its deadline, the next one answers) within the bound."""
    primary, replica, sentinels = sentinel_set
    gws, paths = setup_gateways(gateway_factory, mock, sentinels)
    sentinels.procs[0].send_signal(signal.SIGSTOP)  # the first asked, and watched
    try:
        assert sentinels.cmd(1, "SENTINEL", "FAILOVER", NAME) == "OK"
        wait_until(lambda: sentinels.primary_port(1) == replica.port, timeout=FAILOVER_BOUND_S,
                   what="the sentinels promote the replica")
        t_named = time.monotonic()
        # A write now may meet the demoted node: it must still be read back.
        writes_invalidate_both(gws, "ada", "unheard")
        wait_until(lambda: hits_from(gws, paths[0], replica, primary), timeout=UNHEARD_BOUND_S,
                   interval=0.2, what="hits from the new primary")
        print("hits from the new primary %.2f s after the sentinels named it"
              % (time.monotonic() - t_named))
    finally:
        sentinels.procs[0].send_signal(signal.SIGCONT)
    for gw in gws:
        assert "+switch-master" not in gw.stderr()
