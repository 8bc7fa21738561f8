"""Changes made outside usergate (end users' SDKs, the Console, other back
ends) reach the cache through Twilio's own events: signed post-action
webhooks of Conversations and Chat, and Event Streams deliveries. The mock
Twilio signs and delivers them as Twilio does (twilio_events.py, written
from Twilio's published rules); usergate must act on genuine ones only."""

import json
import time
import urllib.parse

import pytest

from conftest import (ACCOUNT, FAMILIES, OTHER_SERVICE, SERVICE, TOKEN, assert_twilio_error,
                      fetch, http_request, q, user_key, user_path, wait_until)
from twilio_events import Sink, signature, signed, user_event

PUBLIC = "https://gw.example.com/twilio/events"
WEBHOOKS = {"webhooks": {"enabled": "on", "public_url": PUBLIC}}
# README's bound: once usergate answered 200 to the event, no read through
# any instance returns the old user. The deliveries themselves are local.
ACK_BOUND_S = 2.0


def warm(gws, user, service=SERVICE):
    """Fetch user through every family, by identity and SID, on every
    gateway, until each is a cache hit."""
    fams = FAMILIES if service == SERVICE else ("v1s", "v2")  # /v1/Users: the default only
    paths = [user_path(f, q(user["identity"]), service) for f in fams]
    paths += [user_path(f, user["sid"], service) for f in fams]
    for gw in gws:
        for p in paths:
            fetch(gw, p)
        for p in paths:
            fetch(gw, p, expect_cache="HIT")
    return paths


def post_event(gw, body, ctype, sig, target="/twilio/events"):
    hdrs = {"Content-Type": ctype}
    if sig is not None:
        hdrs["X-Twilio-Signature"] = sig
    return http_request(gw.port, "POST", target, body, headers=hdrs, auth=None)


def deliver_now(gw, kind, change, user, signed_url=PUBLIC, token=TOKEN, **kw):
    """Sign and POST one event as Twilio would; returns the response."""
    ctype, body, params, _ = user_event(kind, change, user, ACCOUNT, **kw)
    url, sig = signed(token, signed_url, body, params)
    query = urllib.parse.urlsplit(url).query
    return post_event(gw, body, ctype, sig, "/twilio/events" + ("?" + query if query else ""))


@pytest.mark.parametrize("kind", ["conversations", "chat", "eventstreams"])
def test_outside_update_is_served_fresh_everywhere(gateway_factory, mock, kind):
    gws = [gateway_factory(WEBHOOKS), gateway_factory(WEBHOOKS)]
    u = mock.add_user("ada@x.io", friendly_name="before")
    paths = warm(gws, u)
    # Twilio reaches one instance (through the load balancer), at public_url.
    mock.sinks.append(Sink(gws[0].port, PUBLIC, kind=kind))
    _, seq = mock.outside_update("ada@x.io", friendly_name="after")
    wait_until(lambda: mock.events.acked(seq), timeout=ACK_BOUND_S, what="event acknowledged")
    for gw in gws:
        for p in paths:
            r = fetch(gw, p)
            assert r.json["friendly_name"] == "after", (gw.port, p, r)
    m = gws[0].metrics()
    etype = {"conversations": "onUserUpdated", "chat": "onUserUpdated",
             "eventstreams": "com.twilio.conversations.user.updated"}[kind]
    assert m.get_value("usergate_webhook_events_total", source=kind, type=etype,
                       result="invalidated") == 1, m.find("usergate_webhook_events_total")
    assert m.get_value("usergate_webhook_signature_failures_total") == 0
    # the access log names Twilio, the route, the event type and the SID
    # (not the identity)
    line = wait_until(lambda: [x for x in gws[0].stderr().splitlines()
                               if "route=\"webhook\"" in x], timeout=5, what="the access line")
    assert line and "client=twilio" in line[-1] and "event=" + etype in line[-1], line
    assert "status=200" in line[-1] and u["sid"] in line[-1] and "ada@x.io" not in line[-1], line


def test_outside_create_replaces_cached_404(gateway_factory, mock):
    gw = gateway_factory(WEBHOOKS)
    for f in FAMILIES:
        fetch(gw, user_path(f, "newbie"), expect_status=404)
        fetch(gw, user_path(f, "newbie"), expect_status=404, expect_cache="HIT")
    mock.sinks.append(Sink(gw.port, PUBLIC, kind="eventstreams"))
    _, seq = mock.outside_create("newbie", friendly_name="hello")
    wait_until(lambda: mock.events.acked(seq), timeout=ACK_BOUND_S, what="event acknowledged")
    for f in FAMILIES:
        r = fetch(gw, user_path(f, "newbie"))
        assert r.json["friendly_name"] == "hello", r


def test_other_service_from_the_event(gateway_factory, mock):
    gw = gateway_factory(WEBHOOKS)
    u = mock.add_user("bob", service=OTHER_SERVICE, friendly_name="v1")
    paths = warm([gw], u, OTHER_SERVICE)
    for kind in ("conversations", "chat"):
        mock.outside_update("bob", service=OTHER_SERVICE, friendly_name="v-" + kind,
                            announce=False)
        assert deliver_now(gw, kind, "updated", mock.get_user("bob", OTHER_SERVICE)).status == 200
        for p in paths:
            assert fetch(gw, p).json["friendly_name"] == "v-" + kind
    # Event Streams names the service only when its schema carries one
    mock.outside_update("bob", service=OTHER_SERVICE, friendly_name="v-es", announce=False)
    r = deliver_now(gw, "eventstreams", "updated", mock.get_user("bob", OTHER_SERVICE),
                    include_service=True)
    assert r.status == 200, r
    for p in paths:
        assert fetch(gw, p).json["friendly_name"] == "v-es"


def test_forged_and_altered_events_change_nothing(gateway_factory, mock, redis):
    gw = gateway_factory(WEBHOOKS)
    u = mock.add_user("carol", friendly_name="cached")
    paths = warm([gw], u)
    version = redis.cmd("GET", user_key("v", "carol"))
    assert version
    mock.outside_update("carol", friendly_name="changed", announce=False)
    gets = len(mock.requests(method="GET"))
    ctype, body, params, _ = user_event("conversations", "updated", mock.get_user("carol"),
                                        ACCOUNT)
    good = signature(TOKEN, PUBLIC, params)
    jctype, jbody, _, _ = user_event("eventstreams", "updated", mock.get_user("carol"), ACCOUNT)
    jurl, jsig = signed(TOKEN, PUBLIC, jbody, None)
    jq = "/twilio/events?" + urllib.parse.urlsplit(jurl).query
    altered = dict(params, FriendlyName="x")
    attempts = [
        ("unsigned", body, ctype, None, "/twilio/events"),
        ("wrong token", body, ctype, signature("not-" + TOKEN, PUBLIC, params), "/twilio/events"),
        ("signed for another URL", body, ctype,
         signature(TOKEN, "https://evil.example.com/twilio/events", params), "/twilio/events"),
        ("replayed with a changed body",
         urllib.parse.urlencode(altered).encode(), ctype, good, "/twilio/events"),
        ("extra parameter", body + b"&Extra=1", ctype, good, "/twilio/events"),
        ("form signature on a query it did not cover", body, ctype, good, "/twilio/events?x=1"),
        ("JSON without bodySHA256", jbody, jctype, signature(TOKEN, PUBLIC), "/twilio/events"),
        ("JSON replayed with a changed body", jbody.replace(b"carol", b"carl"), jctype, jsig, jq),
        ("JSON with the hash of its changed body",
         jbody + b" ", jctype, jsig, "/twilio/events?bodySHA256=" +
         __import__("hashlib").sha256(jbody + b" ").hexdigest()),
        ("garbage signature", body, ctype, "A" * 28, "/twilio/events"),
        ("not a form", b"%zz", ctype, good, "/twilio/events"),
    ]
    for what, b, ct, sig, target in attempts:
        r = post_event(gw, b, ct, sig, target)
        assert r.status == 403, (what, r)
        assert_twilio_error(r, 403, 20403)
    # nothing reached Redis or Twilio: same version, still hits, no fetch
    assert redis.cmd("GET", user_key("v", "carol")) == version
    for p in paths:
        r = fetch(gw, p, expect_cache="HIT")
        assert r.json["friendly_name"] == "cached"
    assert len(mock.requests(method="GET")) == gets
    m = gw.metrics()
    assert m.get_value("usergate_webhook_signature_failures_total") == len(attempts)
    assert not m.find("usergate_webhook_events_total")
    # the genuine one works
    assert post_event(gw, body, ctype, good).status == 200
    assert fetch(gw, paths[0]).json["friendly_name"] == "changed"


def test_signature_failures_count_against_the_address(gateway_factory, mock):
    gw = gateway_factory(dict(WEBHOOKS, server={"auth_failures_per_minute": "3"}))
    for _ in range(3):
        assert post_event(gw, b"a=1", "application/x-www-form-urlencoded", "x").status == 403
    r = post_event(gw, b"a=1", "application/x-www-form-urlencoded", "x")
    assert_twilio_error(r, 429, 20429)
    assert int(r.header("Retry-After")) >= 1


def test_duplicates_and_reordering(gateway_factory, mock):
    gws = [gateway_factory(WEBHOOKS), gateway_factory(WEBHOOKS)]
    u = mock.add_user("dan", friendly_name="v0")
    paths = warm(gws, u)
    u1, _ = mock.outside_update("dan", friendly_name="v1", announce=False)
    u2, _ = mock.outside_update("dan", friendly_name="v2", announce=False)
    # the newer event first, then the older one twice, to both instances
    for gw in gws:
        assert deliver_now(gw, "conversations", "updated", u2).status == 200
    for p in paths:
        for gw in gws:
            assert fetch(gw, p).json["friendly_name"] == "v2"
    for _ in range(2):
        for gw, kind in zip(gws, ("conversations", "eventstreams")):
            assert deliver_now(gw, kind, "updated", u1).status == 200
            for p in paths:
                # an older event never brings an older state back
                assert fetch(gw, p).json["friendly_name"] == "v2"


def test_batches_and_other_event_types(gateway_factory, mock):
    gw = gateway_factory(WEBHOOKS)
    a = mock.add_user("erin", friendly_name="old")
    warm([gw], a)
    fetch(gw, user_path("v1", "fred"), expect_status=404)
    a, _ = mock.outside_update("erin", friendly_name="new", announce=False)
    f, _ = mock.outside_create("fred", friendly_name="born", announce=False)
    events = []
    for change, user in (("updated", a), ("added", f)):
        events += json.loads(user_event("eventstreams", change, user, ACCOUNT)[1])
    events.insert(1, {"specversion": "1.0", "type": "com.twilio.messaging.message.delivered",
                      "data": {"AccountSid": ACCOUNT}})
    events.append({"specversion": "1.0", "type": "com.twilio.conversations.user.updated",
                   "data": {"AccountSid": "AC" + "9" * 32, "Identity": "erin"}})
    body = json.dumps(events).encode()
    url, sig = signed(TOKEN, PUBLIC, body, None)
    r = post_event(gw, body, "application/json", sig,
                   "/twilio/events?" + urllib.parse.urlsplit(url).query)
    assert r.status == 200, r
    assert r.json == {"events": 4, "invalidated": 2, "ignored": 1, "foreign_account": 1}, r
    assert fetch(gw, user_path("v2", "erin")).json["friendly_name"] == "new"
    assert fetch(gw, user_path("v1", "fred")).json["friendly_name"] == "born"
    m = gw.metrics()
    get = lambda t, res: m.get_value("usergate_webhook_events_total", source="eventstreams",
                                     type=t, result=res)
    assert get("com.twilio.messaging.message.delivered", "ignored") == 1
    assert get("com.twilio.conversations.user.added", "invalidated") == 1
    assert get("com.twilio.conversations.user.updated", "invalidated") == 1
    assert get("com.twilio.conversations.user.updated", "foreign_account") == 1
    # a signed body that is not JSON of that shape: 400, counted, nothing done
    body = b'"nope"'
    url, sig = signed(TOKEN, PUBLIC, body, None)
    r = post_event(gw, body, "application/json", sig,
                   "/twilio/events?" + urllib.parse.urlsplit(url).query)
    assert_twilio_error(r, 400, 20001)


def test_event_by_sid_only(gateway_factory, mock):
    """An event naming only the SID invalidates through the SID's alias."""
    gw = gateway_factory(WEBHOOKS)
    u = mock.add_user("gil", friendly_name="old")
    paths = warm([gw], u)
    mock.outside_update("gil", friendly_name="new", announce=False)
    params = {"EventType": "onUserUpdated", "AccountSid": ACCOUNT, "ChatServiceSid": SERVICE,
              "UserSid": u["sid"]}
    body = urllib.parse.urlencode(params).encode()
    r = post_event(gw, body, "application/x-www-form-urlencoded", signature(TOKEN, PUBLIC, params))
    assert r.status == 200 and r.json.get("invalidated") == 1, r
    for p in paths:
        assert fetch(gw, p).json["friendly_name"] == "new"
    # a SID usergate never saw: nothing of it can be cached
    params["UserSid"] = "US" + "f" * 32
    body = urllib.parse.urlencode(params).encode()
    r = post_event(gw, body, "application/x-www-form-urlencoded", signature(TOKEN, PUBLIC, params))
    assert r.status == 200 and r.json.get("uncached") == 1, r


def test_redis_down_means_503_until_twilio_retries(gateway_factory, mock, redis):
    gw = gateway_factory(dict(WEBHOOKS, cache={"invalidation_queue": "0"}))
    u = mock.add_user("hal", friendly_name="old")
    warm([gw], u)
    redis.kill()
    mock.outside_update("hal", friendly_name="new", announce=False)
    r = deliver_now(gw, "conversations", "updated", mock.get_user("hal"))
    assert_twilio_error(r, 503, 20503)
    m = gw.metrics()
    assert m.get_value("usergate_webhook_events_total", source="conversations",
                       type="onUserUpdated", result="failed") == 1
    redis.start()
    # Twilio delivers again (the mock retries on anything but 2xx)
    mock.sinks.append(Sink(gw.port, PUBLIC, kind="conversations", retries=30))
    u, seq = mock.outside_update("hal", friendly_name="newer")
    wait_until(lambda: mock.events.acked(seq), timeout=15, what="redelivery acknowledged")
    assert fetch(gw, user_path("v1", "hal")).json["friendly_name"] == "newer"


def test_queued_invalidation_is_acknowledged(gateway_factory, mock, redis):
    """With room in the retry queue, Redis being down still gets a 200: the
    invalidation is kept and retried, and this instance bypasses the cache
    for that user meanwhile."""
    gw = gateway_factory(WEBHOOKS)
    u = mock.add_user("ivy", friendly_name="old")
    warm([gw], u)
    redis.kill()
    mock.outside_update("ivy", friendly_name="new", announce=False)
    r = deliver_now(gw, "conversations", "updated", mock.get_user("ivy"))
    assert r.status == 200 and r.json.get("queued") == 1, r
    assert fetch(gw, user_path("v1", "ivy")).json["friendly_name"] == "new"
    redis.start()
    wait_until(lambda: gw.metrics().get_value("usergate_invalidations_pending") == 0, timeout=15,
               what="queued invalidation retried")
    assert fetch(gw, user_path("v2", "ivy")).json["friendly_name"] == "new"


def test_without_public_url_the_host_is_used(gateway_factory, mock):
    gw = gateway_factory({"webhooks": {"enabled": "on"}})
    u = mock.add_user("jo", friendly_name="old")
    paths = warm([gw], u)
    mock.outside_update("jo", friendly_name="new", announce=False)
    direct = "http://127.0.0.1:%d/twilio/events" % gw.port
    assert deliver_now(gw, "chat", "updated", mock.get_user("jo"), signed_url=PUBLIC).status == 403
    assert deliver_now(gw, "chat", "updated", mock.get_user("jo"), signed_url=direct).status == 200
    assert fetch(gw, paths[0]).json["friendly_name"] == "new"


def test_webhook_token_for_api_key_credentials(gateway_factory, mock, tmp_path):
    wtok = "webhook-token-" + "7" * 20
    tok = tmp_path / "webhook_token"
    tok.write_text(wtok + "\n")
    tok.chmod(0o600)
    gw = gateway_factory({"webhooks": {"enabled": "on", "public_url": PUBLIC,
                                       "webhook_auth_token_file": str(tok)}})
    u = mock.add_user("kim", friendly_name="old")
    warm([gw], u)
    mock.outside_update("kim", friendly_name="new", announce=False)
    assert deliver_now(gw, "conversations", "updated", mock.get_user("kim")).status == 403
    assert deliver_now(gw, "conversations", "updated", mock.get_user("kim"),
                       token=wtok).status == 200
    assert fetch(gw, user_path("v1", "kim")).json["friendly_name"] == "new"


def test_the_path_is_not_a_way_around_basic_auth(gateway_factory, mock):
    off = gateway_factory()
    r = post_event(off, b"EventType=onUserUpdated", "application/x-www-form-urlencoded", "x")
    assert_twilio_error(r, 401, 20003)
    on = gateway_factory(WEBHOOKS)
    r = http_request(on.port, "GET", "/twilio/events", auth=None)
    assert_twilio_error(r, 405, 20004)
    # other paths still need Basic auth
    r = http_request(on.port, "POST", "/twilio/events/x", b"", auth=None)
    assert_twilio_error(r, 401, 20003)
    assert mock.requests() == [] or all(x["path"].startswith("/v1/Configuration")
                                        for x in mock.requests())


def test_rest_writes_with_webhooks_enabled(gateway_factory, mock):
    """A write through usergate with X-Twilio-Webhook-Enabled: true makes
    Twilio call back; usergate invalidates once more, harmlessly."""
    gw = gateway_factory(WEBHOOKS)
    mock.sinks.append(Sink(gw.port, PUBLIC, kind="conversations"))
    r = gw.post("/v1/Users", {"Identity": "lee", "FriendlyName": "one"},
                headers={"X-Twilio-Webhook-Enabled": "true"})
    assert r.status == 201, r
    r = gw.post(user_path("v1", "lee"), {"FriendlyName": "two"},
                headers={"X-Twilio-Webhook-Enabled": "true"})
    assert r.status == 200, r
    mock.events.join(5)
    assert [x["status"] for x in mock.events.log] == [200, 200]
    assert fetch(gw, user_path("v2", "lee")).json["friendly_name"] == "two"
