"""A client that goes away: its upstream GET is cancelled (unless others wait
on the same fetch); its write runs to completion so the cache stays
coherent."""

import socket
import time
import urllib.parse

from conftest import CLIENT, basic, fetch, user_path, users_path, wait_until


def _send_and_leave(gw, method, path, body=b"", wait=0.2):
    s = socket.create_connection(("127.0.0.1", gw.port))
    head = ("%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nContent-Length: %d\r\n"
            % (method, path, basic(*CLIENT), len(body)))
    if body:
        head += "Content-Type: application/x-www-form-urlencoded\r\n"
    s.sendall(head.encode() + b"\r\n" + body)
    time.sleep(wait)
    s.close()


def _inflight(gw):
    return gw.metrics().get_value("usergate_upstream_inflight")


def test_leaving_client_cancels_its_fetch_and_list(gateway, mock):
    mock.add_user("gone")
    for path in (user_path("v1s", "gone"), users_path("v2") + "?PageSize=5"):
        mock.fail(prefix=path.split("?")[0], method="GET", delay=1.5, count=1)
        _send_and_leave(gateway, "GET", path)
        wait_until(lambda: _inflight(gateway) == 0, timeout=1.0, what="upstream call cancelled")
        wait_until(lambda: "status=499" in gateway.stderr(), timeout=2, what="499 logged")
    assert gateway.stderr().count("status=499") == 2


def test_leaving_client_does_not_cancel_a_shared_fetch(gateway, mock):
    import threading
    mock.add_user("shared")
    path = user_path("v2", "shared")
    mock.fail(prefix=path, method="GET", delay=1.0, count=1)
    box = {}
    t = threading.Thread(target=lambda: box.update(r=gateway.get(path)))
    t.start()
    time.sleep(0.2)
    _send_and_leave(gateway, "GET", path)
    t.join(10)
    assert box["r"].status == 200 and box["r"].json["identity"] == "shared"


def test_write_finishes_after_its_client_left(gateway, mock):
    mock.add_user("stay", friendly_name="before")
    path = user_path("v1", "stay")
    fetch(gateway, path, expect_cache="MISS")
    fetch(gateway, path, expect_cache="HIT")
    mock.fail(prefix=path, method="POST", delay=1.0, count=1)
    _send_and_leave(gateway, "POST", path, urllib.parse.urlencode({"FriendlyName": "after"}).encode())
    wait_until(lambda: mock.get_user("stay")["friendly_name"] == "after", timeout=5,
               what="update applied upstream")
    wait_until(lambda: "method=POST" in gateway.stderr(), timeout=5, what="write finished")
    r = fetch(gateway, path)
    assert r.json["friendly_name"] == "after" and r.xcache == "MISS", r
