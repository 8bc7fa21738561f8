"""The history checker (history.py) over fixed seeds: two instances, one
Redis, random operations with faults, every guarantee of README's
"Consistency guarantees" checked. `make soak` runs it for longer with
random seeds (HISTORY_SEEDS, HISTORY_SECONDS)."""

import os
import random

import pytest

from conftest import SENTINEL_MASTER, merge_sections
from history import History, gateway_settings

SECONDS = float(os.environ.get("HISTORY_SECONDS", "12"))
_seeds = os.environ.get("HISTORY_SEEDS", "")
if _seeds == "random":
    SEEDS = [random.SystemRandom().randrange(1 << 30) for _ in range(3)]
elif _seeds:
    SEEDS = [int(s) for s in _seeds.split(",")]
else:
    SEEDS = [1, 2, 3]


@pytest.mark.parametrize("seed,local", [(s, False) for s in SEEDS] + [(SEEDS[0] + 3, True)])
def test_history(gateway_factory, mock, redis, seed, local):
    """local: both instances with local tiers, and the loss of their
    invalidation subscriptions among the faults."""
    settings = gateway_settings(seed, local)
    gws = [gateway_factory(settings), gateway_factory(settings)]
    check(gws, History(gws, mock, redis, seed, SECONDS, local=local).run(), local)


def test_history_through_sentinel_failovers(gateway_factory, mock, sentinel_set):
    """Redis behind Sentinel, with local tiers: SENTINEL FAILOVER among the
    faults (about every few seconds, as often as the sentinels allow)."""
    primary, _, sentinels = sentinel_set
    seed = SEEDS[0] + 6
    settings = merge_sections(gateway_settings(seed, True), {"redis": {
        "sentinels": sentinels.addresses(), "master_name": SENTINEL_MASTER}})
    gws = [gateway_factory(settings), gateway_factory(settings)]
    h = History(gws, mock, primary, seed, SECONDS, local=True, sentinels=sentinels).run()
    assert any(w == "redis_failover" for _, _, w in h.fault_log), h.fault_log
    check(gws, h, True)


def test_history_on_a_cluster(gateway_factory, mock, redis_cluster):
    """Redis Cluster (three masters with replicas), with local tiers:
    reshardings and master kills among the faults, keys moving while they are
    read and written."""
    seed = SEEDS[0] + 9
    settings = merge_sections(gateway_settings(seed, True), {"redis": {
        "cluster": redis_cluster.seeds()}})
    gws = [gateway_factory(settings), gateway_factory(settings)]
    h = History(gws, mock, None, seed, SECONDS, local=True, cluster=redis_cluster).run()
    assert any(w == "redis_reshard" for _, _, w in h.fault_log), h.fault_log
    check(gws, h, True)


def check(gws, h, local):
    print(h.summary())
    bad = h.check()
    assert len(h.ops) > 100, h.summary()
    assert h.hits() > 50, "the cache was hardly used: " + h.summary()
    if local:
        m = gws[0].metrics()
        assert m.get_value("usergate_local_hits_total") > 20, "the local tier was hardly used"
    acked = [o for o in h.ops if o.kind == "outside"]
    assert len(acked) > 5, "too few outside changes acknowledged: " + h.summary()
    assert not bad, "\n\n".join(bad[:5]) + "\n\n%d violations: %s; %s" % (
        len(bad), dict(h.classes), h.summary())
