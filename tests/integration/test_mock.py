"""The mock Twilio on its own: if these fail, gateway results mean nothing."""

import http.client
import json
import re
import socket
import time

import pytest

from conftest import (ACCOUNT, OTHER_SERVICE, SERVICE, TOKEN, basic, form, http_request, q,
                      user_path, users_path, assert_twilio_error)

UP = (ACCOUNT, TOKEN)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def call(mock, method, path, body=None, auth=UP, headers=None):
    return http_request(mock.port, method, path, body, headers, auth, timeout=5)


def test_create_fetch_shapes_all_families(mock):
    r = call(mock, "POST", "/v1/Users", {"Identity": "alice", "FriendlyName": "Alice A"})
    assert r.status == 201, r
    u = r.json
    assert re.fullmatch(r"US[0-9a-f]{32}", u["sid"])
    assert u["account_sid"] == ACCOUNT and u["chat_service_sid"] == SERVICE
    assert u["identity"] == "alice" and u["friendly_name"] == "Alice A"
    assert u["attributes"] == "{}" and re.fullmatch(r"RL[0-9a-f]{32}", u["role_sid"])
    assert u["url"] == "https://conversations.twilio.com/v1/Users/" + u["sid"]
    assert u["links"]["user_conversations"] == u["url"] + "/Conversations"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", u["date_created"])
    assert re.fullmatch(r"RQ[0-9a-f]{32}", r.header("Twilio-Request-Id"))
    assert r.header("Content-Type") == "application/json"

    v1s = call(mock, "GET", user_path("v1s", "alice"))
    assert v1s.status == 200 and v1s.json["sid"] == u["sid"]
    assert v1s.json["url"] == ("https://conversations.twilio.com/v1/Services/%s/Users/%s"
                               % (SERVICE, u["sid"]))
    v2 = call(mock, "GET", user_path("v2", u["sid"]))
    assert v2.status == 200, v2
    assert v2.json["service_sid"] == SERVICE and "chat_service_sid" not in v2.json
    assert v2.json["joined_channels_count"] == 0
    assert v2.json["url"] == "https://chat.twilio.com/v2/Services/%s/Users/%s" % (SERVICE, u["sid"])
    assert set(v2.json["links"]) == {"user_channels", "user_bindings"}
    assert v2.json["is_online"] is False and v2.json["is_notifiable"] is False
    # other service: not visible
    assert call(mock, "GET", user_path("v2", "alice", OTHER_SERVICE)).status == 404


def test_duplicate_and_validation(mock):
    assert call(mock, "POST", users_path("v2"), {"Identity": "bob"}).status == 201
    dup = call(mock, "POST", users_path("v1s"), {"Identity": "bob"})
    assert_twilio_error(dup, 409, 50201)
    assert dup.json["message"] == "User already exists"
    assert_twilio_error(call(mock, "POST", "/v1/Users", {"FriendlyName": "x"}), 400)
    assert_twilio_error(call(mock, "POST", "/v1/Users", {"Identity": "c", "RoleSid": "RL1"}), 400)
    assert_twilio_error(call(mock, "POST", "/v1/Users", {"Identity": "c", "Attributes": "[1]"}),
                        400)
    nf = call(mock, "GET", "/v1/Users/nobody")
    assert_twilio_error(nf, 404, 20404)
    assert_twilio_error(call(mock, "GET", "/v2/Services/ISbad/Users/x"), 404, 20404)
    assert_twilio_error(call(mock, "GET", "/v1/Conversations"), 404, 20404)


def test_auth(mock):
    for auth in (None, (ACCOUNT, "wrong"), ("ACx", TOKEN), "Bearer abc", "Basic !!!"):
        r = call(mock, "GET", "/v1/Users/alice", auth=auth)
        assert_twilio_error(r, 401, 20003)
    assert mock.requests()[0]["headers"].get("authorization") is None


def test_identity_decoding(mock):
    for ident, variants in (("bob+1@example.com", ["bob+1@example.com", q("bob+1@example.com")]),
                            ("carol smith", ["carol%20smith"]),
                            ("jos\u00e9", ["jos%C3%A9"]),
                            ("x:y;z", ["x:y;z"]),
                            ("100%", ["100%25"])):
        r = call(mock, "POST", users_path("v1s"), form(Identity=ident), headers=FORM)
        assert r.status == 201 and r.json["identity"] == ident, r
        for v in variants:
            f = call(mock, "GET", user_path("v2", v))
            assert f.status == 200 and f.json["identity"] == ident, (v, f)
    # '+' in a path is a plus, never a space
    assert call(mock, "GET", user_path("v1", "carol+smith")).status == 404
    # case-sensitive
    assert call(mock, "POST", "/v1/Users", {"Identity": "Alice"}).status == 201
    assert call(mock, "GET", "/v1/Users/alice").status == 404


def test_update_delete_list_paging(mock):
    sids = [call(mock, "POST", users_path("v2"), {"Identity": "u%d" % i}).json["sid"]
            for i in range(5)]
    up = call(mock, "POST", user_path("v1s", "u0"), {"FriendlyName": "New"})
    assert up.status == 200 and up.json["friendly_name"] == "New"
    d = call(mock, "DELETE", user_path("v1", sids[1]))
    assert d.status == 204 and d.body == b""
    assert call(mock, "GET", user_path("v2", "u1")).status == 404
    p0 = call(mock, "GET", users_path("v2") + "?PageSize=2")
    assert p0.status == 200, p0
    meta = p0.json["meta"]
    assert meta["key"] == "users" and meta["page"] == 0 and meta["page_size"] == 2
    assert [u["identity"] for u in p0.json["users"]] == ["u0", "u2"]
    assert p0.json["users"][0]["is_online"] is None
    assert meta["next_page_url"].startswith("https://chat.twilio.com/v2/Services/")
    nxt = meta["next_page_url"].split("twilio.com", 1)[1]
    p1 = call(mock, "GET", nxt)
    assert [u["identity"] for u in p1.json["users"]] == ["u3", "u4"]
    assert p1.json["meta"]["next_page_url"] is None
    assert p1.json["meta"]["previous_page_url"] is not None
    assert call(mock, "GET", users_path("v1") + "?PageSize=51").status == 400
    assert call(mock, "GET", users_path("v2") + "?PageToken=zz").status == 400


def test_configuration(mock):
    r = call(mock, "GET", "/v1/Configuration")
    assert r.status == 200 and r.json["default_chat_service_sid"] == SERVICE


def test_keepalive_and_log(mock):
    conn = http.client.HTTPConnection("127.0.0.1", mock.port, timeout=5)
    for i in range(3):
        conn.request("POST", "/v1/Users", body=form(Identity="k%d" % i),
                     headers=dict(FORM, Authorization=basic(*UP), **{"X-Twilio-Webhook-Enabled": "true"}))
        r = conn.getresponse()
        r.read()
        assert r.status == 201
        assert not r.will_close
    conn.close()
    log = mock.requests(method="POST")
    assert len(log) == 3
    assert log[0]["headers"]["x-twilio-webhook-enabled"] == "true"
    assert log[0]["body"] == b"Identity=k0"
    assert log[0]["status"] == 201 and json.loads(log[0]["resp_body"])["identity"] == "k0"
    assert mock.stats()["counts"]["POST /v1/Users"] == 3


def test_failure_injection(mock):
    mock.fail(prefix="/v1/Users/a", status=503, count=2)
    assert call(mock, "GET", "/v1/Users/a").status == 503
    assert call(mock, "GET", "/v1/Users/a").status == 503
    assert call(mock, "GET", "/v1/Users/a").status == 404
    mock.fail(prefix="/v1/Users/slow", delay=0.4)
    t = time.monotonic()
    assert call(mock, "GET", "/v1/Users/slow").status == 404
    assert time.monotonic() - t >= 0.35
    mock.fail(prefix="/v1/Users/drop", drop=True)
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        call(mock, "GET", "/v1/Users/drop")
    mock.clear_failures()
    assert call(mock, "GET", "/v1/Users/drop").status == 404


def test_concurrency_stats(mock):
    import threading
    mock.fail(prefix="/v1/Users/c", delay=0.3)
    ts = [threading.Thread(target=call, args=(mock, "GET", "/v1/Users/c%d" % i)) for i in range(5)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(5)
    assert mock.stats()["peak_concurrency"] == 5


def test_control_api_over_http(mock):
    mock.add_user("seeded")
    assert call(mock, "GET", "/v1/Users/seeded").status == 200
    r = call(mock, "GET", "/_mock/requests", auth=None)
    assert r.status == 200 and r.json[0]["path"] == "/v1/Users/seeded"
    s = call(mock, "GET", "/_mock/stats", auth=None)
    assert s.json["counts"]["GET /v1/Users/{Sid}"] == 1
    f = call(mock, "POST", "/_mock/fail", json.dumps({"prefix": "/v1/Users/x", "status": 500,
                                                     "count": 1}), auth=None)
    assert f.status == 200
    assert call(mock, "GET", "/v1/Users/x").status == 500
    assert call(mock, "GET", "/v1/Users/x").status == 404
    assert call(mock, "POST", "/_mock/reset", "", auth=None).status == 200
    assert mock.requests() == []
    assert call(mock, "GET", "/v1/Users/seeded").status == 200   # users kept
    assert call(mock, "POST", "/_mock/reset?users=clear", "", auth=None).status == 200
    assert call(mock, "GET", "/v1/Users/seeded").status == 404


def test_raw_socket_content_length(mock):
    """Keep-alive correctness: two requests on one raw socket."""
    s = socket.create_connection(("127.0.0.1", mock.port), timeout=5)
    req = ("GET /v1/Users/none HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n\r\n"
           % basic(*UP)).encode()
    s.sendall(req * 2)
    data = b""
    deadline = time.monotonic() + 5
    while data.count(b"HTTP/1.1 404") < 2 and time.monotonic() < deadline:
        data += s.recv(65536)
    s.close()
    assert data.count(b"HTTP/1.1 404") == 2
    assert b"Content-Length:" in data
