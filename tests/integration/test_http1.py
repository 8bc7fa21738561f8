"""HTTP/1.1 on the client listener, spoken with raw sockets: keep-alive,
pipelining (in order, even behind a slow upstream), chunked request bodies,
Expect: 100-continue, size limits, HTTP/1.0 and Connection: close."""

import time
import urllib.parse

from conftest import CLIENT, SERVICE, RawConn, basic, user_path, users_path

AUTH = basic(*CLIENT)


def get_req(path, extra=""):
    return "GET %s HTTP/1.1\r\nHost: gw\r\nAuthorization: %s\r\n%s\r\n" % (path, AUTH, extra)


def test_keepalive_two_requests_one_connection(gateway, mock):
    mock.add_user("alice")
    c = RawConn(gateway.port)
    c.send(get_req(user_path("v1s", "alice")))
    s1, h1, b1, v1 = c.response()
    time.sleep(0.05)
    c.send(get_req(user_path("v1s", "alice")))
    s2, h2, b2, v2 = c.response()
    c.close()
    assert (s1, s2) == (200, 200), (h1, b1, h2, b2)
    assert v1 == v2 == "HTTP/1.1"
    assert h1.get("x-cache") == "MISS" and h2.get("x-cache") == "HIT", (h1, h2)
    assert "close" not in h1.get("connection", "").lower()
    assert int(h1["content-length"]) == len(b1)


def test_pipelined_requests_answered_in_order(gateway, mock):
    mock.add_user("slowpoke")
    mock.add_user("bob")
    # bob cached, slowpoke slow upstream: the fast answer must wait its turn
    c0 = RawConn(gateway.port)
    c0.send(get_req(user_path("v1s", "bob")))
    assert c0.response()[0] == 200
    c0.close()
    time.sleep(0.05)
    mock.fail(prefix=user_path("v1s", "slowpoke"), delay=0.5)
    c = RawConn(gateway.port, timeout=10)
    c.send(get_req(user_path("v1s", "slowpoke")) + get_req(user_path("v1s", "bob")) +
           get_req(user_path("v1s", "ghost")))
    got = [c.response() for _ in range(3)]
    c.close()
    import json
    statuses = [g[0] for g in got]
    assert statuses == [200, 200, 404], got
    assert json.loads(got[0][2])["identity"] == "slowpoke"
    assert json.loads(got[1][2])["identity"] == "bob"
    assert got[1][1].get("x-cache") == "HIT", got[1]
    assert json.loads(got[2][2])["code"] == 20404


def test_pipelined_errors_and_successes_keep_order(gateway, mock):
    mock.add_user("carol")
    c = RawConn(gateway.port)
    c.send(get_req("/v1/Users/50%zzoff") + get_req(user_path("v2", "carol")) +
           get_req("/nope") + get_req(user_path("v2", "carol")))
    got = [c.response() for _ in range(4)]
    c.close()
    assert [g[0] for g in got] == [400, 200, 404, 200], got


def test_chunked_request_body_on_create(gateway, mock):
    body = "Identity=chunky&FriendlyName=Chunk%20Y&Attributes=%7B%22k%22%3A1%7D"
    parts = [body[:7], body[7:20], body[20:]]
    chunked = "".join("%x\r\n%s\r\n" % (len(p), p) for p in parts) + "0\r\n\r\n"
    c = RawConn(gateway.port)
    c.send("POST %s HTTP/1.1\r\nHost: gw\r\nAuthorization: %s\r\n"
           "Content-Type: application/x-www-form-urlencoded\r\n"
           "Transfer-Encoding: chunked\r\n\r\n" % (users_path("v1s"), AUTH))
    for piece in (chunked[:10], chunked[10:30], chunked[30:]):
        c.send(piece)
        time.sleep(0.02)
    status, headers, data, _ = c.response()
    # the connection is still usable afterwards
    c.send(get_req(user_path("v1s", "chunky")))
    s2, _, d2, _ = c.response()
    c.close()
    assert status == 201, (headers, data)
    up = mock.requests(method="POST")[-1]
    assert urllib.parse.parse_qs(up["body"].decode()) == {
        "Identity": ["chunky"], "FriendlyName": ["Chunk Y"], "Attributes": ['{"k":1}']}, up
    assert s2 == 200, d2


def test_expect_100_continue(gateway, mock):
    body = "Identity=patient"
    c = RawConn(gateway.port)
    c.send("POST %s HTTP/1.1\r\nHost: gw\r\nAuthorization: %s\r\n"
           "Content-Type: application/x-www-form-urlencoded\r\nExpect: 100-continue\r\n"
           "Content-Length: %d\r\n\r\n" % (users_path("v2"), AUTH, len(body)))
    s1, _, _, v = c.response()
    assert (v, s1) == ("HTTP/1.1", 100)
    c.send(body)
    s2, h2, b2, _ = c.response()
    c.close()
    assert s2 == 201, (h2, b2)
    assert mock.get_user("patient") is not None


def read_error_reply(c, what):
    """The reply to a request usergate refuses mid-stream. A reset before it
    arrives means the server closed without draining (no lingering close)."""
    try:
        return c.response()
    except ConnectionResetError:
        raise AssertionError("connection reset before the %s reply arrived" % what)
    except EOFError as e:
        raise AssertionError("connection closed without a %s reply (%s)" % (what, e))


def test_oversized_headers_431(gateway, mock):
    c = RawConn(gateway.port)
    # headers never finish: the limit must be enforced while they accumulate
    c.send("GET %s HTTP/1.1\r\nHost: gw\r\nAuthorization: %s\r\nX-Big: %s"
           % (user_path("v1s", "alice"), AUTH, "a" * 40000))
    status, headers, body, _ = read_error_reply(c, "431")
    c.close()
    assert status == 431, (headers, body)
    assert mock.requests() == []


def test_many_headers_431(gateway, mock):
    extra = "".join("X-H%d: v\r\n" % i for i in range(200))
    c = RawConn(gateway.port)
    c.send(get_req(user_path("v1s", "alice"), extra))
    status, headers, body, _ = read_error_reply(c, "431")
    c.close()
    assert status in (431, 400), (headers, body)
    assert mock.requests() == []


def test_oversized_body_413(gateway, mock):
    c = RawConn(gateway.port)
    c.send("POST %s HTTP/1.1\r\nHost: gw\r\nAuthorization: %s\r\n"
           "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n"
           % (users_path("v1s"), AUTH, 1024 * 1024))
    c.send("Identity=" + "x" * 80000)
    status, headers, body, _ = read_error_reply(c, "413")
    c.close()
    assert status == 413, (headers, body)
    assert mock.requests() == []
    # chunked bodies are bounded too
    c = RawConn(gateway.port)
    c.send("POST %s HTTP/1.1\r\nHost: gw\r\nAuthorization: %s\r\n"
           "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
           % (users_path("v1s"), AUTH))
    for _ in range(5):
        c.send("4000\r\n" + "y" * 0x4000 + "\r\n")
    status, headers, body, _ = read_error_reply(c, "413")
    c.close()
    assert status == 413, (headers, body)
    assert mock.requests() == []


def test_http10_and_connection_close(gateway, mock):
    mock.add_user("old")
    c = RawConn(gateway.port)
    c.send("GET %s HTTP/1.0\r\nAuthorization: %s\r\n\r\n" % (user_path("v2", "old"), AUTH))
    status, headers, body, _ = c.response()
    assert status == 200, (headers, body)
    assert c.closed_by_peer(), "HTTP/1.0 without keep-alive left the connection open"
    c.close()
    c = RawConn(gateway.port)
    c.send(get_req(user_path("v2", "old"), "Connection: close\r\n"))
    status, headers, body, _ = c.response()
    assert status == 200, (headers, body)
    assert c.closed_by_peer(), "Connection: close left the connection open"
    c.close()


def test_malformed_request_400(gateway, mock):
    c = RawConn(gateway.port)
    c.send("THIS IS NOT HTTP\r\n\r\n")
    status, headers, body, _ = c.response()
    c.close()
    assert status == 400, (headers, body)
    assert mock.requests() == []


def test_request_split_across_many_writes(gateway, mock):
    mock.add_user("trickle")
    req = get_req(user_path("v1", "trickle")).encode()
    c = RawConn(gateway.port)
    for i in range(0, len(req), 7):
        c.send(req[i:i + 7])
        time.sleep(0.002)
    status, headers, body, _ = c.response()
    c.close()
    assert status == 200 and b"trickle" in body, (headers, body)
    assert SERVICE in body.decode()
