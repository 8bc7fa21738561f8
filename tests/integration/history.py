"""A history checker for usergate's consistency guarantees (in the spirit of
Jepsen's Knossos/Elle, small and ours).

Two usergate instances share one real redis-server and the mock Twilio.
Client threads run random fetch/create/update/delete operations on a few
users, through all three API families and by SID and identity, while a
fault thread injects trouble: slow, failing (5xx) and throttling (429)
upstream reads; writes Twilio applies but answers after the gateway's
timeout; writes Twilio applies only after the gateway gave up; Redis
SIGKILL + restart; Redis stalls (SIGSTOP); SIGHUP reloads. Every
operation's invocation and completion are recorded; the mock records, as
ground truth, every change in the order and at the time it was applied.

The history is then checked against the guarantees README states:
  - right user: a fetch by SID answers that SID's user, by identity that
    identity's user, and only with a state Twilio really had;
  - read-your-writes: a fetch invoked after a write through usergate was
    answered (2xx) returns that write's state or a newer one (stale windows
    off), on either instance, in any family;
  - unknown outcomes: after a write whose outcome was unknown (5xx, 502,
    504), once Twilio applied it and the hold plus RELAX_S have passed, no
    fetch returns an older state;
  - bounded staleness while Redis was failing: writes that overlapped a
    Redis fault are checked from the fault's end + RELAX_S on;
  - outside writes: an "outside writer" changes users directly at the mock
    (as an end user's SDK does) and has the mock deliver Twilio's signed
    event for each change to a random instance, as a random kind
    (Conversations or Chat webhook, Event Streams), late (up to
    OUTSIDE_DELAY_S) and sometimes twice, so events also arrive out of
    order; once usergate answered 200 to a change's event, no fetch on any
    instance returns an older state (relaxed like writes when Redis was
    failing);
  - no hang: every operation is answered within HANG_S.
A violation prints the seed and the relevant excerpt of the history.
"""

import bisect
import collections
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.parse

from conftest import SERVICE, http_request, redis_command, user_path, users_path
from twilio_events import Sink

IDENTITIES = ["ada", "bob", "c\u00e9cile", "d+1@x.io"]
FAMILIES = ("v1", "v1s", "v2")

# The gateway settings the history runs with. Short TTLs with the stale
# windows on keep background refreshes, stale-if-error answers and locks
# busy; read-your-writes holds with them on (an invalidated entry is never
# served, not even as stale). Short timeouts make faults bite often.
# HISTORY_OLD=1 leaves out the keys an older build does not know, to show
# what the checker finds there.
PUBLIC_URL = "https://gw.example.com/twilio/events"
OUTSIDE_DELAY_S = 0.8
GATEWAY = {
    "server": {"max_connections_per_ip": "0"},
    "webhooks": {"enabled": "on", "public_url": PUBLIC_URL},
    "upstream": {"timeout_ms": "700", "max_retries": "1", "queue_timeout_ms": "1000",
                 "writes_per_second": "1000", "connect_timeout_ms": "500"},
    "redis": {"timeout_ms": "150"},
    "cache": {"ttl": "2", "negative_ttl": "2", "stale_while_revalidate": "5",
              "stale_if_error": "10", "lock_timeout_ms": "400",
              "unknown_write_hold_ms": "1500"},
}
# Even seeds: a long TTL and no stale windows, so a wrongly stored answer
# stays to be read (the short TTL of odd seeds hides it within seconds).
LONG_TTL = {"ttl": "300", "negative_ttl": "300", "stale_while_revalidate": "0",
            "stale_if_error": "0"}


# With the local tier on, another instance may answer from its tier until the
# invalidation message reached it: read-your-writes holds from the write's
# answer plus this (README: the local tier's bound).
LOCAL_SLACK_S = 0.5


def gateway_settings(seed, local=False):
    import copy
    g = copy.deepcopy(GATEWAY)
    if local:
        g["cache"].update({"local_entries": "1000", "local_ttl": "30"})
    if seed % 2 == 0:
        g["cache"].update(LONG_TTL)
    if os.environ.get("HISTORY_OLD"):
        del g["cache"]["unknown_write_hold_ms"]
        del g["webhooks"]
    return g
HOLD_S = 1.5
RELAX_S = 11.0  # reconnect back-off (<= 5 s) + retry back-off (<= 5 s) + timeouts
HANG_S = 12.0   # README's no-hang bound for these settings, with margin


class Op:
    __slots__ = ("id", "thread", "gw", "kind", "identity", "by_sid", "sid", "family", "token",
                 "t0", "t1", "status", "body", "error", "xcache")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))

    def __repr__(self):
        b = self.body if isinstance(self.body, dict) else None
        got = ("%s(%s)" % (b.get("friendly_name"), (b.get("sid") or "")[-6:])) if b else ""
        return ("#%d gw%d %-6s %-9s %s %-3s %s [%.3f..%.3f] -> %s %s%s%s"
                % (self.id, self.gw, self.kind, self.identity,
                   ("sid:" + self.sid[-6:]) if self.by_sid else "id", self.family or "",
                   self.token or "", self.t0, self.t1 or -1, self.status, got,
                   (" " + self.xcache) if self.xcache else "",
                   (" ERR " + self.error) if self.error else ""))


class History:
    def __init__(self, gateways, mock, redis, seed, duration, threads=8, faults=True,
                 outside_writer=True, local=False, sentinels=None, cluster=None):
        self.gws = gateways
        self.mock = mock
        self.redis = redis
        self.seed = seed
        self.duration = duration
        self.threads = threads
        self.faults = faults
        self.ops = []
        self.lock = threading.Lock()
        self.next_id = 0
        self.sids = collections.defaultdict(set)  # identity -> SIDs ever seen
        self.fault_log = []  # (t0, t1, what)
        self.redis_faults = []  # (t0, t1)
        self.outside_writer = outside_writer
        self.local = local  # local tiers on: pub/sub losses among the faults, LOCAL_SLACK_S
        # Sentinel-managed Redis: failovers instead of kills and stalls; a
        # Redis Cluster: reshardings.
        self.sentinels = sentinels
        self.cluster = cluster
        self.outside = []  # (seq, identity, sid, token, applied at)
        self.t_start = None
        # Odd seeds: few users, many writes (races between fetches and
        # writes). Even seeds: more users, rarer writes, so an answer stored
        # wrongly lives long enough to be read.
        if seed % 2:
            self.identities, self.weights = IDENTITIES, [14, 1.5, 2, 1]
        else:
            self.identities = IDENTITIES + ["u%d" % i for i in range(8)]
            self.weights = [100, 1, 1.5, 0.7]

    # ---- workload
    def _op_id(self):
        with self.lock:
            self.next_id += 1
            return self.next_id

    def _run_op(self, rng, tid):
        gi = rng.randrange(len(self.gws))
        gw = self.gws[gi]
        ident = rng.choice(self.identities)
        kind = rng.choices(["fetch", "create", "update", "delete"], self.weights)[0]
        family = rng.choice(FAMILIES)
        op = Op(id=self._op_id(), thread=tid, gw=gi, kind=kind, identity=ident, family=family)
        with self.lock:
            known = sorted(self.sids[ident])
        op.by_sid = bool(known) and kind != "create" and rng.random() < 0.4
        if op.by_sid:
            op.sid = rng.choice(known)
        name = op.sid if op.by_sid else urllib.parse.quote(ident, safe="")
        path = users_path(family) if kind == "create" else user_path(family, name)
        if kind in ("create", "update"):
            op.token = "%s-%d" % (kind[0], op.id)
        form = {"FriendlyName": op.token}
        if kind == "create":
            form["Identity"] = ident
        method = {"fetch": "GET", "create": "POST", "update": "POST", "delete": "DELETE"}[kind]
        # Some fetches insist on Twilio (a refresh that may meet a background one).
        headers = {"Cache-Control": "no-cache"} if kind == "fetch" and rng.random() < 0.1 else None
        op.t0 = time.monotonic()
        try:
            r = http_request(gw.port, method, path, form if method == "POST" else None,
                             headers=headers, timeout=HANG_S + 8)
            op.status = r.status
            op.body = r.json
            op.xcache = r.xcache
        except Exception as e:  # noqa: BLE001 - a hang or reset is a finding
            op.error = "%s: %s" % (type(e).__name__, e)
        op.t1 = time.monotonic()
        if isinstance(op.body, dict) and op.body.get("sid", "").startswith("US"):
            with self.lock:
                self.sids[ident].add(op.body["sid"])
        with self.lock:
            self.ops.append(op)

    def _client(self, tid, deadline):
        rng = random.Random(self.seed * 7919 + tid)
        while time.monotonic() < deadline:
            self._run_op(rng, tid)

    # ---- changes made outside usergate
    def _outside(self, rng, deadline):
        n = 0
        while time.monotonic() < deadline - 0.5:
            time.sleep(rng.uniform(0.05, 0.4))
            ident = rng.choice(self.identities)
            n += 1
            token = "o-%d" % n
            try:
                u, seq = self.mock.outside_update(ident, friendly_name=token, announce=False)
            except KeyError:  # deleted (or not created yet) at Twilio
                continue
            with self.lock:
                self.sids[ident].add(u["sid"])
                self.outside.append((seq, ident, u["sid"], token, time.monotonic()))
            gw = rng.choice(self.gws)
            sink = Sink(gw.port, PUBLIC_URL, kind=rng.choice(["conversations", "chat",
                                                               "eventstreams"]), retries=60)
            self.mock.events.deliver(sink, "updated", u, seq,
                                     delay=rng.uniform(0, OUTSIDE_DELAY_S),
                                     copies=rng.choice([1, 1, 2]))

    def _outside_ops(self):
        """Each acknowledged outside change as a write that binds fetches from
        its acknowledgement on."""
        self.mock.events.join(HANG_S + 20)
        ops = []
        for seq, ident, sid, token, t in self.outside:
            acked = self.mock.events.acked(seq)
            if acked is None:
                continue
            ops.append(Op(id=-seq, thread=-1, gw=-1, kind="outside", identity=ident,
                          by_sid=False, sid=sid, family="", token=token, t0=t, t1=acked,
                          status=200))
        return ops

    # ---- faults
    def _fault(self, rng, deadline):
        m = self.mock
        while time.monotonic() < deadline - 1:
            time.sleep(rng.uniform(0.05, 0.3))
            redis_faults = (["redis_failover"] * 2 if self.sentinels
                            else ["redis_reshard", "redis_reshard", "redis_kill_master"]
                            if self.cluster
                            else ["redis_kill", "redis_stall"])
            what = rng.choice(["slow", "5xx", "429", "late_answer", "late_apply", "sighup",
                               "none"] + redis_faults + (["sub_kill"] * 2 if self.local else []))
            t0 = time.monotonic()
            if what == "slow":
                m.fail(prefix="/", method="GET", delay=rng.uniform(0.1, 0.5), count=rng.randint(1, 6))
            elif what == "5xx":
                m.fail(prefix="/", method="GET", status=500, count=rng.randint(1, 4))
            elif what == "429":
                m.fail(prefix="/", method="GET", status=429, count=rng.randint(1, 4),
                       headers={"Retry-After": "0"})
            elif what == "late_answer":  # applied now, answered after the gateway's timeout
                m.fail(prefix="/", method=rng.choice(["POST", "DELETE"]), delay_after=1.0,
                       count=rng.randint(1, 3))
            elif what == "late_apply":  # applied only after the gateway gave up
                m.fail(prefix="/", method=rng.choice(["POST", "DELETE"]), delay=1.0,
                       count=rng.randint(1, 3))
            elif what == "redis_kill":
                self.redis.kill()
                time.sleep(rng.uniform(0.1, 0.6))
                self.redis.start()
            elif what == "redis_failover":
                try:
                    self.sentinels.failover()
                except (AssertionError, RuntimeError):  # one still in progress
                    what = "redis_failover_refused"
            elif what == "redis_reshard":  # slots (and their keys) move between masters
                (src, _), (dst, _) = rng.sample(self.cluster.masters(), 2)
                try:
                    self.cluster.reshard(src, dst, rng.randint(50, 600))
                except AssertionError:  # e.g. src has fewer slots left
                    what = "redis_reshard_refused"
            elif what == "redis_kill_master":  # its replica takes over; it comes back as one
                _, victim = rng.choice(self.cluster.masters())
                victim.kill()
                time.sleep(rng.uniform(2.0, 4.0))
                victim.start()
            elif what == "redis_stall":
                self.redis.pause()
                time.sleep(rng.uniform(0.2, 0.6))
                self.redis.resume()
            elif what == "sighup":
                rng.choice(self.gws).proc.send_signal(signal.SIGHUP)
            elif what == "sub_kill":  # the local tiers' invalidation subscriptions drop
                try:
                    ports = ([n.port for n in self.cluster.live()] if self.cluster
                             else [self.sentinels.primary_port()] if self.sentinels
                             else [self.redis.port])
                    for port in ports:
                        redis_command(port, "CLIENT", "KILL", "TYPE", "pubsub")
                except Exception:  # noqa: BLE001 - Redis may be down from another fault
                    pass
            t1 = time.monotonic()
            self.fault_log.append((t0, t1, what))
            if what.startswith("redis"):
                self.redis_faults.append((t0, t1))
            time.sleep(rng.uniform(0.2, 1.0))
            m.clear_failures()

    def run(self):
        for i, ident in enumerate(self.identities[::2]):
            u = self.mock.add_user(ident, friendly_name="seed-%d" % i)
            self.sids[ident].add(u["sid"])
        self.t_start = time.monotonic()
        deadline = self.t_start + self.duration
        ts = [threading.Thread(target=self._client, args=(i, deadline), daemon=True)
              for i in range(self.threads)]
        if self.faults:
            ts.append(threading.Thread(target=self._fault, args=(random.Random(self.seed), deadline),
                                       daemon=True))
        if self.outside_writer:
            ts.append(threading.Thread(target=self._outside,
                                       args=(random.Random(self.seed * 31 + 7), deadline),
                                       daemon=True))
        for t in ts:
            t.start()
        for t in ts:
            t.join(self.duration + HANG_S + 30)
        self.mock.clear_failures()
        self.ops += self._outside_ops()
        return self

    # ---- the checks
    def check(self):
        """A list of violations (strings), each with its excerpt; self.classes
        counts them by what they look like."""
        self.classes = collections.Counter()
        hist = collections.defaultdict(list)  # identity -> history entries (default service)
        for h in self.mock.history:
            if h["service"] == SERVICE:
                hist[h["identity"]].append(h)
        self._index(hist)
        self._views = {}
        out = []
        ops = sorted(self.ops, key=lambda o: o.t0)
        writes = [o for o in ops if o.kind != "fetch"]
        for o in ops:
            if o.kind == "outside":
                continue  # Twilio's delivery, not a request to usergate
            if o.error or o.t1 - o.t0 > HANG_S:
                self.classes["hang (defect 1)"] += 1
                out.append(self._report("no hang", o, "took %.1f s (bound %.1f s)%s"
                                        % (o.t1 - o.t0, HANG_S,
                                           (": " + o.error) if o.error else ""), hist, writes))
        for f in ops:
            if f.kind != "fetch" or f.error or f.status not in (200, 404):
                continue
            problem = self._check_fetch(f, hist[f.identity])
            if problem:
                self.classes[self._classify(f)] += 1
                out.append(self._report("read", f, problem, hist, writes))
        return out

    def _index(self, hist):
        """For each user (identity, and each SID's own life), the writes that
        bind later fetches: (from when, history position, write), sorted by
        from-when, with running maxima, so a fetch finds what it must
        reflect by binary search."""
        tokens = {}
        deletions = collections.defaultdict(list)
        for ident, h in hist.items():
            for e in h:
                if e["friendly_name"] and not e["deleted"]:
                    tokens.setdefault(e["friendly_name"], (e["seq"], e["t"], e["sid"]))
                if e["deleted"]:
                    deletions[ident].append(e)
        rows = collections.defaultdict(list)  # key -> [(start, seq, write)]
        for w in self.ops:
            if w.kind == "fetch" or w.error:
                continue
            eff = None
            if w.kind in ("create", "update", "outside"):
                eff = tokens.get(w.token)
            else:
                for e in deletions[w.identity]:
                    if e["t"] >= w.t0 - 0.05 and (not w.by_sid or e["sid"] == w.sid):
                        eff = (e["seq"], e["t"], e["sid"])
                        break
            if eff is None:
                continue
            seq, applied, sid = eff
            status = w.status or 0
            if 200 <= status < 300:
                start = w.t1
            elif status >= 500:
                if applied > w.t1 + HOLD_S:
                    continue  # applied after the hold: only the TTL bounds it
                start = max(applied, w.t1 + HOLD_S) + 0.5
            else:
                continue
            relax = self._relaxed_from(w)
            if relax is not None:
                start = max(start, relax)
            if self.local:
                start += LOCAL_SLACK_S
            rows[("id", w.identity)].append((start, seq, w))
            rows[("sid", sid)].append((start, seq, w))
        self.bound = {}
        for key, r in rows.items():
            r.sort(key=lambda x: x[0])
            starts, best, best_w = [], [], []
            m, mw = -2, None
            for start, seq, w in r:
                if seq > m:
                    m, mw = seq, w
                starts.append(start)
                best.append(m)
                best_w.append(mw)
            self.bound[key] = (starts, best, best_w)

    def _classify(self, f):
        """What a read violation looks like, after the defects of issue 10:
        by the writes between the state it returned and the fetch."""
        w = self.last_required
        if w is not None and w.kind == "outside":
            return "stale after Twilio's event was acknowledged (issue 11)"
        since = self.returned_t if self.returned_t is not None else f.t0 - 10
        # the writes that made it stale: answered since, or in flight when it
        # stopped being current (Twilio may apply a write after answering it)
        between = [x for x in self.ops if x.kind != "fetch" and x.identity == f.identity
                   and x.t1 and (since - 0.5 <= x.t1 <= f.t0 or x.t0 - 0.1 <= since <= x.t1 + 2.5)]
        faults = [(a, b, what) for a, b, what in self.fault_log if since - 0.5 <= b and a <= f.t0]

        def overlaps(x, kind):
            return any(what == kind and a - 0.5 <= x.t1 and x.t0 <= b + 0.5
                       for a, b, what in faults)
        if any((x.status or 0) >= 500 for x in between):
            return "unknown outcome re-cached (defect 6)"
        if any(what == "redis_kill" for _, _, what in faults):
            return "stored across a Redis restart (defect 3)"
        if any(overlaps(x, "redis_stall") for x in between):
            return "invalidation lost while Redis stalled (defect 8)"
        if f.xcache in ("MISS", "BYPASS"):
            return "joined a fetch older than the write (defect 2)"
        return "stale cache hit after a write"

    def _view(self, f, h):
        """A fetch's view of the history (the identity's, or one SID's life),
        indexed once per view: seqs and times in order, the last deletion,
        and the last position of each (sid, friendly_name) state. Long soak
        histories make scanning them per fetch quadratic."""
        key = (f.identity, f.sid if f.by_sid else None)
        v = self._views.get(key)
        if v is None:
            entries = [e for e in h if e["sid"] == f.sid] if f.by_sid else h
            states = {}
            for e in entries:
                if not e["deleted"]:
                    states[(e["sid"], e["friendly_name"])] = e["seq"]
            v = {"seqs": [e["seq"] for e in entries], "ts": [e["t"] for e in entries],
                 "last_deleted": max([e["seq"] for e in entries if e["deleted"]] + [-1]),
                 "states": states}
            self._views[key] = v
        return v

    def _state_seq(self, f, v):
        """The latest history position whose state the fetch's answer shows."""
        if f.status == 404:
            return v["last_deleted"], None  # deleted, or not created yet (-1)
        b = f.body or {}
        if f.by_sid and b.get("sid") != f.sid:
            return None, "asked for SID %s, got user %s" % (f.sid, b.get("sid"))
        if b.get("identity") != f.identity:
            return None, "asked for %r, got identity %r" % (f.identity, b.get("identity"))
        seq = v["states"].get((b.get("sid"), b.get("friendly_name")))
        if seq is None:
            return None, "state (%s, %s) never existed at Twilio" % (b.get("sid"),
                                                                     b.get("friendly_name"))
        return seq, None

    def _relaxed_from(self, w):
        """When a write met Redis trouble (during a fault, or while an
        instance was still reconnecting after one), the time from which its
        invalidation is guaranteed to have landed (else None)."""
        for a, b in self.redis_faults:
            if a - 1.0 <= w.t1 and w.t0 <= b + RELAX_S:
                return max(b, w.t1) + RELAX_S
        return None

    def _check_fetch(self, f, h):
        # A fetch by SID follows that user's life (a SID is never reused: it
        # stays 404 once deleted, whatever is created under its identity
        # later); a fetch by identity follows the identity's.
        v = self._view(f, h)
        top, wrong = self._state_seq(f, v)
        if wrong:
            return wrong
        # when the state it returned stopped being current (for _classify)
        j = bisect.bisect_right(v["seqs"], top)
        self.returned_t = v["ts"][j] if j < len(v["ts"]) else None
        starts, best, best_w = self.bound.get(("sid", f.sid) if f.by_sid else ("id", f.identity),
                                              ([], [], []))
        i = bisect.bisect_left(starts, f.t0)  # writes binding from before f.t0
        self.last_required = best_w[i - 1] if i else None
        if i and top < best[i - 1]:
            return ("returned history state %s, but %r was answered before this fetch began "
                    "(needs state >= %d)" % (top, best_w[i - 1], best[i - 1]))
        return None

    def _report(self, what, o, problem, hist, writes):
        lines = ["VIOLATION (%s) seed=%d: %s" % (what, self.seed, problem), "  op: %r" % o]
        lo, hi = o.t0 - 6, o.t1 + 0.5
        rel = [w for w in writes if w.identity == o.identity and w.t1 and w.t1 >= lo and w.t0 <= hi]
        if rel:
            lines.append("  writes to %r around it:" % o.identity)
            lines += ["    %r" % w for w in rel]
        h = [e for e in hist.get(o.identity, []) if lo <= e["t"] <= hi]
        if h:
            lines.append("  Twilio's history of %r then:" % o.identity)
            lines += ["    seq %d at %.3f: %s %s" % (e["seq"], e["t"], e["sid"][-6:],
                                                      "DELETED" if e["deleted"]
                                                      else e["friendly_name"]) for e in h]
        f = [x for x in self.fault_log if x[1] >= lo and x[0] <= hi]
        if f:
            lines.append("  faults then: " + ", ".join("%s [%.3f..%.3f]" % (w, a, b)
                                                       for a, b, w in f))
        return "\n".join(lines)

    def hits(self):
        return sum(1 for o in self.ops if o.kind == "fetch" and o.xcache == "HIT")

    def summary(self):
        c = collections.Counter((o.kind, o.status) for o in self.ops)
        late = sum(1 for r in self.mock.events.log if not r["ok"])
        return ("seed %d: %d ops, %d cache hits (%s); %d faults (%s); %d outside changes, "
                "%d event deliveries (%d refused and redelivered)") % (
            self.seed, len(self.ops), self.hits(), ", ".join("%s %s: %d" % (k, s, n)
                                                for (k, s), n in sorted(c.items(), key=str)),
            len(self.fault_log), ", ".join(sorted({w for _, _, w in self.fault_log})),
            len(self.outside), len(self.mock.events.log), late)
