"""The history checker (history.py) over fixed seeds: two instances, one
Redis, random operations with faults, every guarantee of README's
"Consistency guarantees" checked. `make soak` runs it for longer with
random seeds (HISTORY_SEEDS, HISTORY_SECONDS)."""

import os
import random

import pytest

from conftest import merge_sections
from history import History, gateway_settings

SECONDS = float(os.environ.get("HISTORY_SECONDS", "12"))
_seeds = os.environ.get("HISTORY_SEEDS", "")
if _seeds == "random":
    SEEDS = [random.SystemRandom().randrange(1 << 30) for _ in range(3)]
elif _seeds:
    SEEDS = [int(s) for s in _seeds.split(",")]
else:
    SEEDS = [1, 2, 3]


@pytest.mark.parametrize("seed", SEEDS)
def test_history(gateway_factory, mock, redis, seed):
    gws = [gateway_factory(gateway_settings(seed)), gateway_factory(gateway_settings(seed))]
    h = History(gws, mock, redis, seed, SECONDS).run()
    print(h.summary())
    bad = h.check()
    assert len(h.ops) > 100, h.summary()
    assert h.hits() > 50, "the cache was hardly used: " + h.summary()
    acked = [o for o in h.ops if o.kind == "outside"]
    assert len(acked) > 5, "too few outside changes acknowledged: " + h.summary()
    assert not bad, "\n\n".join(bad[:5]) + "\n\n%d violations: %s; %s" % (
        len(bad), dict(h.classes), h.summary())
