"""Security: every request stays inside its grant, and no client can hurt
another. Each refusal asserts its status, its Twilio error code, and that the
mock upstream saw nothing (its request count is unchanged)."""

import http.client
import json
import os
import re
import select
import socket
import subprocess
import time
import urllib.parse

import pytest

from conftest import (ACCOUNT, CLIENT, OTHER_SERVICE, SERVICE, TOKEN, USERGATE_BIN, RawConn,
                      assert_twilio_error, basic, base_env, free_port, http_request,
                      render_config, user_path, users_path, wait_until)

READER = ("reader", "reader-secret-1")  # allow = fetch only
SUBBER = ("subber", "subber-secret-1")  # allow = sub
ADMIN_TOKEN = "admin-token-0123456789"


def sections(extra_clients=True, **over):
    s = {
        "client reader": {"key": READER[0], "secret": READER[1], "services": "*",
                          "allow": "fetch"},
        "client subber": {"key": SUBBER[0], "secret": SUBBER[1], "services": "*",
                          "allow": "sub"},
    } if extra_clients else {}
    s.update(over)
    return s


@pytest.fixture
def gw(gateway_factory):
    return gateway_factory(sections())


class Upstream:
    """Asserts that a block of refusals reached no upstream at all."""

    def __init__(self, mock):
        self.mock = mock

    def __enter__(self):
        self.before = len(self.mock.requests())
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            after = self.mock.requests()[self.before:]
            assert after == [], "refused requests reached Twilio: %r" % after


def refused(resp, status, code):
    return assert_twilio_error(resp, status, code)


# --------------------------------------------------------------------------- route confinement

CONFINEMENT_400 = [
    # {Sid} segments that are dot segments, empty, or decode to '/', in any spelling
    "/v1/Users/..", "/v1/Users/.", "/v1/Users/%2e%2e", "/v1/Users/%2E%2E", "/v1/Users/.%2e",
    "/v1/Users/%2e", "/v1/Users/a%2Fb", "/v1/Users/a%2fb", "/v1/Users/%2F", "/v1/Users/",
    "/v1/Services/%s/Users/.." % SERVICE, "/v2/Services/%s/Users/%%2e%%2E" % SERVICE,
    "/v1/Users/../Conversations", "/v1/Users/%2e%2e/Conversations",
    # item segments likewise
    "/v1/Users/alice/Conversations/..", "/v1/Users/alice/Conversations/%2E%2e",
    "/v1/Users/alice/Conversations/a%2Fb", "/v1/Users/alice/Conversations/",
    "/v2/Services/%s/Users/carol/Channels/." % SERVICE,
    # invalid UTF-8 and other bad bytes
    "/v1/Users/%C3%28", "/v1/Users/%ED%A0%80", "/v1/Users/%FF", "/v1/Users/a%00b",
    # malformed service SIDs
    "/v1/Services/IS123/Users/alice", "/v1/Services//Users/alice",
]

CONFINEMENT_404 = [
    "/v1/Configuration", "/v1/Services", "/v1/Services/%s" % SERVICE,
    "/v1/Services/%s/Roles" % SERVICE, "/v1/Services/%s/Conversations" % SERVICE,
    "/v2/Services/%s/Channels" % SERVICE, "/v1/Credentials", "/2010-04-01/Accounts",
    "/v1/Users/alice/Conversations/CH0/Messages", "/v1/Users/alice/Roles",
    "//v1/Users/alice", "/v1//Users/alice", "/v1/Users/alice/", "/v1/users/alice",
    "/v1/Users/alice/Conversations/x/../../..",
]


def test_fetch_only_client_cannot_leave_the_route_table(gw, mock):
    """The first version let a fetch-only client reach other Twilio paths
    with our credentials. Every spelling of a way out is refused before
    Twilio, whatever method."""
    mock.add_user("alice")
    with Upstream(mock):
        for client in (READER, SUBBER, CLIENT):
            for path in CONFINEMENT_400:
                for method in ("GET", "POST", "DELETE"):
                    r = gw.request(method, path, auth=client)
                    # 400 for a bad segment; 405 where the method does not
                    # exist on the shape; never anything that went upstream.
                    assert r.status in (400, 405), (client[0], method, path, r)
                    assert_twilio_error(r)
            for path in CONFINEMENT_404:
                r = gw.get(path, auth=client)
                assert r.status in (400, 404), (client[0], path, r)
                assert_twilio_error(r)


def test_dot_segments_are_400_20001(gw, mock):
    with Upstream(mock):
        for path in ("/v1/Users/..", "/v1/Users/%2E%2e", "/v1/Users/alice/Conversations/.."):
            refused(gw.get(path, auth=SUBBER if "Conversations" in path else READER), 400, 20001)


def test_absolute_form_and_host_cannot_redirect_upstream(gw, mock):
    mock.add_user("alice")
    with Upstream(mock):
        c = RawConn(gw.port)
        c.send("GET http://evil.example/v1/Users/alice HTTP/1.1\r\nHost: evil.example\r\n"
               "Authorization: %s\r\n\r\n" % basic(*READER))
        status, _, body, _ = c.response()
        c.close()
        assert status == 404, body
    # A good request with a hostile Host goes to the configured upstream, with
    # the upstream's own Host.
    c = RawConn(gw.port)
    c.send("GET /v1/Users/alice HTTP/1.1\r\nHost: evil.example:1\r\nAuthorization: %s\r\n\r\n"
           % basic(*READER))
    status, _, body, _ = c.response()
    c.close()
    assert status == 200, body
    sent = mock.requests(method="GET")[-1]
    assert sent["headers"]["host"] != "evil.example:1", sent
    assert sent["path"] == "/v1/Users/alice", sent


def test_queries_are_rebuilt_from_validated_parameters(gateway_factory, mock):
    gw = gateway_factory(sections(**{"client app": {"allow": "fetch, list, sub"}}))
    with Upstream(mock):
        for path in ("/v1/Users?PageSize=5&Evil=1", "/v1/Users?PageSize=5&PageSize=6",
                     "/v1/Users?PageToken=a&PageToken=b", "/v1/Users/alice?x=1",
                     "/v1/Users/alice/Conversations/CH1?PageSize=5",
                     "/v1/Users/alice/Conversations?Foo=bar",
                     "/v2/Services/%s/Users/bob/Bindings?BindingType=sms" % SERVICE,
                     "/v1/Users?PageToken=%FF"):
            refused(gw.get(path), 400, 20001)
    # A PageToken holding '&' and '=' stays one parameter upstream.
    gw.get("/v1/Users?PageSize=5&PageToken=a%26Evil%3D1")  # the mock refuses the token
    sent = mock.requests(method="GET", prefix="/v1/Users")[-1]
    q = urllib.parse.parse_qs(sent["path"].split("?", 1)[1])
    assert q == {"PageSize": ["5"], "PageToken": ["a&Evil=1"]}, sent["path"]
    r = gw.get("/v1/Users/alice/Conversations?PageSize=7")
    sent = mock.requests(method="GET")[-1]
    assert sent["path"] == "/v1/Users/alice/Conversations?PageSize=7", sent


def test_sub_resource_forms_follow_the_spec(gw, mock):
    conv = "/v1/Users/alice/Conversations/CH" + "0" * 32
    chan = "/v2/Services/%s/Users/alice/Channels/general" % SERVICE
    bad = [
        (conv, {"Evil": "1"}),
        (conv, {"NotificationLevel": "loud"}),
        (conv, {"NotificationLevel": "muted", "NotificationLevel2": "x"}),
        (conv, {"LastReadMessageIndex": "-1"}),
        (conv, {"LastReadTimestamp": "yesterday"}),
        (conv, {"LastConsumedMessageIndex": "1"}),  # a Chat field on Conversations
        (chan, {"LastReadMessageIndex": "1"}),      # and the other way round
        (chan, {"FriendlyName": "x"}),
    ]
    with Upstream(mock):
        for path, form in bad:
            refused(gw.post(path, form, auth=SUBBER), 400, 20001)
        r = gw.post(conv, "NotificationLevel=muted&NotificationLevel=default",
                    headers={"Content-Type": "application/x-www-form-urlencoded"}, auth=SUBBER)
        refused(r, 400, 20001)
    good = {"NotificationLevel": "muted", "LastReadMessageIndex": "7",
            "LastReadTimestamp": "2026-11-29T10:00:00Z"}
    gw.post(conv, good, auth=SUBBER)
    sent = mock.requests(method="POST")[-1]
    assert sent["path"] == conv
    assert urllib.parse.parse_qs(sent["body"].decode()) == {k: [v] for k, v in good.items()}
    gw.post(chan, {"LastConsumedMessageIndex": "3", "NotificationLevel": "default"},
            auth=SUBBER)
    assert mock.requests(method="POST")[-1]["path"] == chan


def test_webhook_header_is_only_true_or_false(gw, mock):
    with Upstream(mock):
        r = gw.post(users_path("v1"), {"Identity": "wh"},
                    headers={"X-Twilio-Webhook-Enabled": "yes please"})
        refused(r, 400, 20001)
    r = gw.post(users_path("v1"), {"Identity": "wh"}, headers={"X-Twilio-Webhook-Enabled": "true"})
    assert r.status == 201, r
    assert mock.requests(method="POST")[-1]["headers"]["x-twilio-webhook-enabled"] == "true"


# --------------------------------------------------------------------------- grants

def test_networks_grant(gateway_factory, mock):
    mock.add_user("alice")
    gw = gateway_factory(sections(**{
        "client far": {"key": "far", "secret": "far-secret-123", "networks": "10.0.0.0/8, unix"},
        "client near": {"key": "near", "secret": "near-secret-12", "networks": "127.0.0.0/8"},
    }))
    with Upstream(mock):
        r = gw.get(user_path("v1", "alice"), auth=("far", "far-secret-123"))
        j = refused(r, 403, 20403)
        assert "127.0.0.1" in j["message"], j
    assert gw.get(user_path("v1", "alice"), auth=("near", "near-secret-12")).status == 200


def test_one_rule_for_sid_case(gateway_factory, mock):
    """Grants, cache keys, invalidation and upstream paths all use the SID
    with its hex digits in lower case, however a client spells it."""
    upper = OTHER_SERVICE[:2] + OTHER_SERVICE[2:].upper()
    gw = gateway_factory(sections(**{
        "client one": {"key": "one", "secret": "one-secret-123", "services": upper},
    }))
    u = mock.add_user("casey", service=OTHER_SERVICE)
    one = ("one", "one-secret-123")
    r = gw.get(user_path("v2", "casey", service=upper), auth=one)
    assert r.status == 200 and r.xcache == "MISS", r
    time.sleep(0.05)
    assert mock.requests(method="GET")[-1]["path"] == user_path("v2", "casey",
                                                                   service=OTHER_SERVICE)
    # the same entry, however the SIDs are spelt
    sid_upper = "US" + u["sid"][2:].upper()
    r = gw.get(user_path("v2", sid_upper, service=OTHER_SERVICE), auth=one)
    assert r.status == 200 and r.xcache == "HIT", r
    # a write spelt in upper case invalidates the lower-case entry
    r = gw.post(user_path("v2", sid_upper, service=upper), {"FriendlyName": "New"})
    assert r.status == 200, r
    r = gw.get(user_path("v2", "casey", service=OTHER_SERVICE), auth=one)
    assert r.status == 200 and r.xcache == "MISS" and r.json["friendly_name"] == "New", r
    # and a grant for one service does not cover another in any case
    with Upstream(mock):
        refused(gw.get(user_path("v2", "casey", service=SERVICE.upper().replace("IS", "IS", 1)),
                       auth=one), 403, 20403)


# --------------------------------------------------------------------------- rate limits

def throttled(gw, client, reason):
    return gw.metrics().get(("usergate_client_throttled_total",
                             frozenset({("client", client), ("reason", reason)})), 0)


def test_client_rate_limit(gateway_factory, mock):
    mock.add_user("alice")
    gw = gateway_factory(sections(**{
        # a token every 2 s: a slow (sanitized) run cannot refill it by accident
        "client slow": {"key": "slow", "secret": "slow-secret-12", "rate": "0.5", "burst": "3"},
    }))
    slow = ("slow", "slow-secret-12")
    statuses = [gw.get(user_path("v1", "alice"), auth=slow).status for _ in range(3)]
    assert statuses == [200, 200, 200], statuses
    before = len(mock.requests())
    r = gw.get(user_path("v1", "alice"), auth=slow)
    refused(r, 429, 20429)
    assert int(r.header("Retry-After")) in (1, 2), r
    assert len(mock.requests()) == before
    assert throttled(gw, "slow", "rate") == 1
    # other clients are not affected
    assert gw.get(user_path("v1", "alice")).status == 200
    time.sleep(2.1)
    assert gw.get(user_path("v1", "alice"), auth=slow).status == 200


def test_per_action_rate_limit(gateway_factory, mock):
    mock.add_user("alice")
    gw = gateway_factory(sections(**{
        "client w": {"key": "w", "secret": "w-secret-12345", "rate.create": "0.5",
                     "burst.create": "1"},
    }))
    w = ("w", "w-secret-12345")
    assert gw.post(users_path("v1"), {"Identity": "c1"}, auth=w).status == 201
    with Upstream(mock):
        r = gw.post(users_path("v1"), {"Identity": "c2"}, auth=w)
        refused(r, 429, 20429)
        assert int(r.header("Retry-After")) in (1, 2), r
    for _ in range(5):  # fetches are not creates
        assert gw.get(user_path("v1", "alice"), auth=w).status == 200


def test_failed_authentications_are_throttled_per_address(gateway_factory, mock):
    mock.add_user("alice")
    gw = gateway_factory({"server": {"auth_failures_per_minute": "5"}})
    path = user_path("v1", "alice")
    with Upstream(mock):
        for i in range(5):
            refused(gw.get(path, auth=(CLIENT[0], "wrong-%d" % i)), 401, 20003)
        # out of attempts: even the right secret is not compared now
        r = gw.get(path, auth=CLIENT)
        refused(r, 429, 20429)
        assert int(r.header("Retry-After")) >= 1, r
        refused(gw.get(path, auth=None), 429, 20429)
    assert throttled(gw, "-", "auth") == 2


# --------------------------------------------------------------------------- connection hygiene

def test_slow_head_gets_408_within_header_timeout(gateway_factory, mock):
    gw = gateway_factory({"server": {"header_timeout_ms": "600", "idle_timeout_ms": "60000"}})
    c = RawConn(gw.port, timeout=5)
    head = "GET %s HTTP/1.1\r\nHost: gw\r\nAuthorization: %s\r\n" % (
        user_path("v1", "alice"), basic(*CLIENT))
    t0 = time.monotonic()
    for ch in head:  # a byte every 50 ms resets an idle timer, not this one
        if select.select([c.sock], [], [], 0.05)[0]:
            break  # answered
        c.send(ch)
    status, _, body, _ = c.response()
    took = time.monotonic() - t0
    assert status == 408, body
    assert json.loads(body)["code"] == 20001
    assert took < 2.5, took
    assert c.closed_by_peer()
    assert mock.requests() == []


def test_slow_body_gets_408_within_body_timeout(gateway_factory, mock):
    gw = gateway_factory({"server": {"body_timeout_ms": "500"}})
    c = RawConn(gw.port)
    c.send("POST %s HTTP/1.1\r\nHost: gw\r\nAuthorization: %s\r\n"
           "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nIde"
           % (users_path("v1"), basic(*CLIENT)))
    t0 = time.monotonic()
    for _ in range(10):
        if select.select([c.sock], [], [], 0.2)[0]:
            break
        c.send("n")
    status, _, _, _ = c.response()
    assert status == 408
    assert time.monotonic() - t0 < 2.5
    assert mock.requests() == []


def open_connections(gw):
    return gw.metrics().get(("usergate_connections", frozenset()), 0)


def hold(gw, n):
    """n idle connections, once the start-up probe's connection is gone. A
    request answered on a new connection first: the accept queue is in
    order, so the probe was accepted before it (a gauge read at 0 before the
    probe's accept would let the probe take one of the n slots)."""
    c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    c.request("GET", "/")
    c.getresponse().read()
    c.close()
    wait_until(lambda: open_connections(gw) == 0, what="no client connections")
    held = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(n)]
    wait_until(lambda: open_connections(gw) == n, what="%d connections" % n)
    return held


def test_connection_limits_answer_503_and_close(gateway_factory, mock):
    gw = gateway_factory({"server": {"max_connections": "4", "max_connections_per_ip": "0"}})
    held = hold(gw, 4)
    c = RawConn(gw.port)
    status, headers, body, _ = c.response()
    assert status == 503 and headers.get("connection") == "close", (headers, body)
    assert json.loads(body)["code"] == 20503
    assert c.closed_by_peer()
    for s in held:
        s.close()
    time.sleep(0.2)
    m = gw.metrics()
    assert m.get(("usergate_connections_refused_total",
                  frozenset({("reason", "total")})), 0) >= 1
    assert gw.get(user_path("v1", "nobody")).status == 404  # room again


def test_per_address_connection_limit(gateway_factory, mock):
    gw = gateway_factory({"server": {"max_connections_per_ip": "3"}})
    held = hold(gw, 3)
    r = RawConn(gw.port)
    status, _, body, _ = r.response()
    assert status == 503 and b"this address" in body, body
    for s in held:
        s.close()
    wait_until(lambda: gw.metrics().get_value("usergate_connections") == 0, timeout=5,
               what="the held connections to close")
    assert gw.get(user_path("v1", "nobody")).status == 404


def test_max_requests_per_connection(gateway_factory, mock):
    mock.add_user("alice")
    gw = gateway_factory({"server": {"max_requests_per_connection": "3"}})
    c = RawConn(gw.port)
    req = "GET %s HTTP/1.1\r\nHost: gw\r\nAuthorization: %s\r\n\r\n" % (
        user_path("v1", "alice"), basic(*CLIENT))
    seen = []
    for _ in range(3):
        c.send(req)
        s, h, _, _ = c.response()
        seen.append((s, h.get("connection")))
    assert seen[:2] == [(200, None), (200, None)], seen
    assert seen[2] == (200, "close"), seen
    assert c.closed_by_peer()


def test_slowloris_does_not_starve_a_good_client(gateway_factory, mock):
    mock.add_user("alice")
    gw = gateway_factory({"server": {"header_timeout_ms": "1500", "max_connections_per_ip": "0"}})
    slow = []
    for _ in range(300):
        s = socket.create_connection(("127.0.0.1", gw.port))
        s.sendall(b"GET /v1/Users/alice HTTP/1.1\r\nHost: x\r\n")
        slow.append(s)
    t0 = time.monotonic()
    bad = []
    while time.monotonic() - t0 < 3:
        for s in slow[:50]:  # keep dribbling
            try:
                s.sendall(b"X-a: b\r\n")
            except OSError:
                pass
        r = gw.get(user_path("v1", "alice"), timeout=2)
        if r.status != 200:
            bad.append(r)
        time.sleep(0.05)
    assert not bad, bad[:3]
    # and the slow ones were answered 408 and closed, not left hanging
    time.sleep(0.5)
    closed = 0
    for s in slow:
        s.settimeout(0.5)
        try:
            data = s.recv(65536)
            closed += data.startswith(b"HTTP/1.1 408") or data == b""
        except OSError:
            closed += 1
        s.close()
    assert closed == len(slow), closed


# --------------------------------------------------------------------------- HTTP/1.1 framing

FRAMING_400 = [
    ("no Host in 1.1", "GET /v1/Users/alice HTTP/1.1\r\nAuthorization: {A}\r\n\r\n"),
    ("two Hosts", "GET /v1/Users/alice HTTP/1.1\r\nHost: a\r\nHost: b\r\nAuthorization: {A}\r\n\r\n"),
    ("CL and TE", "POST /v1/Users HTTP/1.1\r\nHost: a\r\nAuthorization: {A}\r\n"
                  "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("two CLs", "POST /v1/Users HTTP/1.1\r\nHost: a\r\nAuthorization: {A}\r\n"
                "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
    ("obs-fold", "GET /v1/Users/alice HTTP/1.1\r\nHost: a\r\nAuthorization: {A}\r\n"
                 "Content-Length: 0\r\n 5\r\n\r\n"),
    ("bare CR", "GET /v1/Users/alice HTTP/1.1\rHost: a\r\nAuthorization: {A}\r\n\r\n"),
    ("NUL", "GET /v1/Users/al\x00ice HTTP/1.1\r\nHost: a\r\nAuthorization: {A}\r\n\r\n"),
    ("space before colon", "GET /v1/Users/alice HTTP/1.1\r\nHost : a\r\nAuthorization: {A}\r\n\r\n"),
]


@pytest.mark.parametrize("what,raw", FRAMING_400, ids=[w for w, _ in FRAMING_400])
def test_bad_framing_is_refused_and_nothing_after_it_runs(gateway, mock, what, raw):
    mock.add_user("alice")
    a = basic(*CLIENT)
    smuggled = ("DELETE /v1/Users/alice HTTP/1.1\r\nHost: a\r\nAuthorization: %s\r\n\r\n" % a)
    c = RawConn(gateway.port)
    c.send(raw.replace("{A}", a) + smuggled)
    status, headers, body, _ = c.response()
    assert status in (400, 501), (what, status, body)
    assert headers.get("connection") == "close", headers
    assert c.closed_by_peer()
    time.sleep(0.2)
    assert mock.requests() == [], mock.requests()
    assert mock.get_user("alice") is not None


def test_http10_with_transfer_encoding_closes_after_the_answer(gateway, mock):
    c = RawConn(gateway.port)
    body = "Identity=te10"
    c.send("POST %s HTTP/1.0\r\nConnection: keep-alive\r\nAuthorization: %s\r\n"
           "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
           "%x\r\n%s\r\n0\r\n\r\n" % (users_path("v1"), basic(*CLIENT), len(body), body)
           + "DELETE %s HTTP/1.1\r\nHost: a\r\nAuthorization: %s\r\n\r\n"
           % (user_path("v1", "te10"), basic(*CLIENT)))
    status, _, _, _ = c.response()
    assert status in (201, 400, 501), status
    assert c.closed_by_peer()
    assert mock.requests(method="DELETE") == []


def test_trailers_count_against_max_header_bytes(gateway_factory, mock):
    gw = gateway_factory({"server": {"max_header_bytes": "1024"}})
    c = RawConn(gw.port)
    c.send("POST %s HTTP/1.1\r\nHost: a\r\nAuthorization: %s\r\n"
           "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
           "5\r\nIdent\r\n0\r\n" % (users_path("v1"), basic(*CLIENT))
           + "".join("X-T%d: %s\r\n" % (i, "v" * 60) for i in range(30)) + "\r\n")
    status, _, _, _ = c.response()
    assert status == 431
    assert mock.requests() == []


@pytest.mark.parametrize("auth,path,status,code", [
    (("app", "wrong-secret-123"), users_path("v1"), 401, 20003),
    (READER, users_path("v1"), 403, 20403),
    (CLIENT, "/v1/Roles", 404, 20404),
    (CLIENT, "/v1/Services/IS1/Users", 400, 20001),
])
def test_expect_100_only_after_admission(gw, mock, auth, path, status, code):
    c = RawConn(gw.port)
    c.send("POST %s HTTP/1.1\r\nHost: gw\r\nAuthorization: %s\r\n"
           "Content-Type: application/x-www-form-urlencoded\r\nExpect: 100-continue\r\n"
           "Content-Length: 14\r\n\r\n" % (path, basic(*auth)))
    s, h, b, _ = c.response()
    assert s == status, (s, b)  # the final answer, never a 100 first
    assert json.loads(b)["code"] == code
    assert h.get("connection") == "close", h
    assert c.closed_by_peer()
    assert mock.requests() == []


# --------------------------------------------------------------------------- identities, logs

def test_invalid_utf8_identities_are_refused(gw, mock):
    with Upstream(mock):
        for path in ("/v1/Users/%C3%28", "/v1/Users/%80abc", "/v1/Users/a%F5%80%80%80"):
            refused(gw.get(path), 400, 20001)
        refused(gw.post(users_path("v1"), "Identity=%C3%28",
                        headers={"Content-Type": "application/x-www-form-urlencoded"}),
                400, 20001)


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_access_log_stays_valid_whatever_the_client_sends(gateway_factory, mock, fmt):
    gw = gateway_factory({"server": {"access_log": fmt, "log_identities": "on"}})
    nasty = ["a\"b", "a\\b", "a b=c", "\u00e9\u4e2d\U0001f600", "x%0Ay", "%C3%28", "%FF%FE"]
    for n in nasty:
        gw.get("/v1/Users/" + (n if "%" in n else urllib.parse.quote(n, safe="")))
    c = RawConn(gw.port)
    c.send(b"GET /v1/Users/\xff\xfe\x80 HTTP/1.1\r\nHost: a\r\nAuthorization: "
           + basic(*CLIENT).encode() + b"\r\n\r\n")
    c.response()
    c.close()
    time.sleep(0.2)
    raw = open(gw.stderr_path, "rb").read()
    text = raw.decode("utf-8")  # strict: any invalid byte fails here
    lines = [l for l in text.splitlines() if '"msg":"access"' in l or " access id=" in l]
    assert len(lines) >= len(nasty) + 1, lines
    for l in lines:
        if fmt == "json":
            rec = json.loads(l[l.index("{"):])
            assert rec["msg"] == "access", rec
        else:
            assert "\n" not in l and "\r" not in l


# --------------------------------------------------------------------------- admin listener

def test_admin_token_guards_purges(gateway_factory, mock):
    gw = gateway_factory({"server": {"admin_token": ADMIN_TOKEN}})
    path = "/cache/services/%s" % SERVICE
    r = http_request(gw.admin_port, "DELETE", path, auth=None)
    refused(r, 401, 20003)
    assert r.header("WWW-Authenticate", "").startswith("Bearer"), r
    r = http_request(gw.admin_port, "DELETE", path, auth="Bearer wrong-token-0123456789")
    refused(r, 401, 20003)
    r = http_request(gw.admin_port, "DELETE", path, auth="Bearer " + ADMIN_TOKEN)
    assert r.status == 200, r
    # metrics stay open unless asked otherwise
    assert http_request(gw.admin_port, "GET", "/metrics", auth=None).status == 200


def test_admin_token_for_metrics(gateway_factory, mock):
    gw = gateway_factory({"server": {"admin_token": ADMIN_TOKEN,
                                     "admin_token_for_metrics": "on"}})
    refused(http_request(gw.admin_port, "GET", "/metrics", auth=None), 401, 20003)
    assert http_request(gw.admin_port, "GET", "/metrics",
                        auth="Bearer " + ADMIN_TOKEN).status == 200
    assert http_request(gw.admin_port, "GET", "/healthz", auth=None).status == 200


def test_admin_bounds_requests_and_connections(gateway_factory, mock):
    gw = gateway_factory({"server": {"admin_max_connections": "2"}})
    r = http_request(gw.admin_port, "GET", "/metrics", auth=None,
                     headers={"X-Big": "a" * 20000})
    assert r.status >= 400, r
    held = []
    for _ in range(2):
        c = RawConn(gw.admin_port)
        c.send("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        assert c.response()[0] == 200
        held.append(c)
    c = RawConn(gw.admin_port)
    c.send("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
    s, _, b, _ = c.response()
    assert s == 503, b
    for h in held:
        h.close()
    time.sleep(0.3)
    assert http_request(gw.admin_port, "GET", "/healthz", auth=None).status == 200


# --------------------------------------------------------------------------- secrets

def run_check(tmp_path, text, mode=0o600, env=None):
    conf = tmp_path / "check.conf"
    conf.write_text(text)
    os.chmod(conf, mode)
    return subprocess.run([USERGATE_BIN, "-t", "-c", str(conf)], capture_output=True, text=True,
                          env=base_env(env), timeout=20)


BASE = ("[upstream]\naccount_sid = %s\nauth_token = %s\n"
        "conversations_url = http://127.0.0.1:1\nchat_url = http://127.0.0.1:1\n" % (ACCOUNT, TOKEN))


def test_secret_files_must_not_be_readable_by_others(tmp_path):
    r = run_check(tmp_path, BASE, mode=0o644)
    assert r.returncode == 1, r
    assert re.search(r"check\.conf:3: .*readable by group or others", r.stdout + r.stderr), r
    assert TOKEN not in r.stdout + r.stderr
    secret = tmp_path / "client.secret"
    secret.write_text("client-secret-123\n")
    os.chmod(secret, 0o640)
    r = run_check(tmp_path, BASE + "[client c]\nsecret_file = %s\n" % secret)
    assert r.returncode == 1 and "client.secret is readable" in r.stdout + r.stderr, r
    # strict_permissions = off downgrades it to a warning
    r = run_check(tmp_path, "[server]\nstrict_permissions = off\n" + BASE, mode=0o644)
    assert r.returncode == 0, r
    assert "readable by group or others" in r.stdout + r.stderr, r


def test_weak_and_insecure_settings_are_refused(tmp_path):
    r = run_check(tmp_path, BASE + "[client c]\nsecret = short\n")
    assert r.returncode == 1 and "shorter than 12 bytes" in r.stdout + r.stderr, r
    assert "short" not in (r.stdout + r.stderr).replace("shorter", "")
    r = run_check(tmp_path, BASE.replace("http://127.0.0.1:1", "http://twilio.internal"))
    assert r.returncode == 1 and "clear text" in r.stdout + r.stderr, r
    r = run_check(tmp_path, BASE.replace("http://127.0.0.1:1", "http://twilio.internal")
                  + "allow_insecure_upstream = on\n")
    assert r.returncode == 0, r
    r = run_check(tmp_path, "[server]\nadmin_listen = 0.0.0.0:9\n" + BASE)
    assert r.returncode == 1 and "admin_token_file" in r.stdout + r.stderr, r
    r = run_check(tmp_path, "[server]\nadmin_listen = 0.0.0.0:9\nadmin_token = %s\n" % ADMIN_TOKEN
                  + BASE)
    assert r.returncode == 0, r


def test_secrets_never_reach_logs_metrics_or_errors(gateway_factory, mock, tmp_path):
    client_secret = "client-secret-SENTINEL-1"
    gw = gateway_factory({"server": {"log_level": "debug", "admin_token": ADMIN_TOKEN,
                                     "auth_failures_per_minute": "3"},
                          "client app": {"secret": client_secret}})
    me = ("app", client_secret)
    mock.add_user("alice")
    bodies = []
    for auth in (me, ("app", client_secret + "x"), ("app", client_secret[:-1]),
                 (client_secret, client_secret), None, me):
        bodies.append(gw.get(user_path("v1", "alice"), auth=auth).text)
    bodies.append(gw.post(users_path("v1"), {"Identity": "x", "Attributes": client_secret},
                          auth=me).text)
    http_request(gw.admin_port, "DELETE", "/cache/services/%s" % SERVICE,
                 auth="Bearer " + ADMIN_TOKEN[:-1])
    metrics = http_request(gw.admin_port, "GET", "/metrics", auth=None).text
    gw.stop()
    check = run_check(tmp_path, render_config(gw.sections))
    everything = gw.stderr() + metrics + "".join(bodies) + check.stdout + check.stderr
    for secret in (client_secret, TOKEN, ADMIN_TOKEN, ADMIN_TOKEN[:-1]):
        assert secret not in everything, secret
